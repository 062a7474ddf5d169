"""The windowed scorer: waveforms -> analysis windows -> batched forward passes -> scores.

rawguard scores audio in one way, whoever asks: the :class:`~rawguard.detector.Detector` (files,
arrays, folders), ``rawguard evaluate`` and dev selection during training (:func:`score_cache`)
all go through :class:`WindowScorer`:

- each waveform is cut into windows at :func:`rawguard.windows.window_starts` (``hop`` apart, the
  last aligned to the end; a clip no longer than the window is one tiled window);
- windows of consecutive waveforms are packed into full batches of ``batch_size`` (:func:`pack_windows`),
  because one forward pass per short clip spends most of its time in per-call overhead (the GRU's
  sequential steps; measured ~10x slower than full batches on 2 cores);
- a window's score is ``logit[BONAFIDE] - logit[SPOOF]`` (:func:`rawguard.conventions.score_from_logits`,
  higher = more bona fide); a waveform's score is the mean of its window scores (:attr:`ScoredWave.score`).

``window=None`` scores each waveform whole in one pass (one waveform per batch, tiled up to the
model's ``min_samples`` when shorter).

Streams are lazy and keep only the waveforms whose windows are not all scored yet, so a caller
can feed an unbounded stream (a folder, an archive, a live source) with flat memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from rawguard.conventions import INT16_SCALE, score_from_logits
from rawguard.progress import progress_bar
from rawguard.training.precision import autocast, resolve_precision
from rawguard.windows import fill_window, window_starts

__all__ = ["ScoringError", "ScoredWave", "WindowBatch", "pack_windows", "WindowScorer", "score_cache"]

SAMPLE_DTYPES = (np.dtype(np.int16), np.dtype(np.float32))


class ScoringError(ValueError):
    """A scoring option, waveform or model output that cannot be scored; the message names it."""


@dataclass(frozen=True)
class ScoredWave:
    """The window scores of one waveform.

    Attributes:
        key: what the caller passed with the waveform (an index, a path, ...).
        starts: int64 ``[W]`` window starts in samples (``[0]`` in full-length mode).
        scores: float64 ``[W]`` window scores, ``logit[bona fide] - logit[spoof]`` of each window.
        length: samples in the waveform.
    """

    key: Any
    starts: np.ndarray
    scores: np.ndarray
    length: int

    @property
    def score(self) -> float:
        """The waveform's score: the mean of its window scores."""
        return float(self.scores.mean())


@dataclass(frozen=True)
class WindowBatch:
    """Windows of one forward pass and the waveforms they came from.

    Attributes:
        x: ``[B, window]`` samples (``[1, T]`` in full-length mode), int16 or float32 as the waveforms.
        owners: int64 ``[B]``: position in the input stream of the waveform of each row (a
            waveform's rows are in window order; :func:`pack_windows` keeps them consecutive).
        opened: ``(position, key, starts int64 [W], length)`` of each waveform whose first window is
            in this batch, in stream order (a waveform's windows may continue in later batches).
    """

    x: np.ndarray
    owners: np.ndarray
    opened: list[tuple[int, Any, np.ndarray, int]] = field(default_factory=list)


def _checked_wave(key: Any, wave: np.ndarray, dtype: np.dtype | None) -> np.ndarray:
    if not isinstance(wave, np.ndarray) or wave.ndim != 1 or wave.shape[0] == 0:
        shape = getattr(wave, "shape", type(wave).__name__)
        raise ScoringError(f"waveform {key!r}: expected a non-empty 1-D array, got {shape}")
    if wave.dtype not in SAMPLE_DTYPES:
        raise ScoringError(f"waveform {key!r}: expected int16 or float32 samples, got {wave.dtype}")
    if dtype is not None and wave.dtype != dtype:
        raise ScoringError(f"waveform {key!r}: {wave.dtype} samples in a stream of {dtype} (one sample type per stream)")
    return wave


def pack_windows(
    waves: Iterable[tuple[Any, np.ndarray]],
    window: int | None,
    hop: int | None = None,
    batch_size: int = 64,
    min_samples: int = 1,
) -> Iterator[WindowBatch]:
    """Pack the windows of a stream of waveforms into batches, in stream and window order.

    Every batch but the last holds exactly ``batch_size`` windows, whatever the waveforms'
    lengths: windows of several short clips share a batch, a long recording spans several.

    Args:
        waves: ``(key, wave)`` pairs; ``wave`` is ``[T]`` int16 (a cache's samples) or float32 in
            [-1, 1), the same dtype for the whole stream. Consumed lazily.
        window: window length in samples; ``None``: each waveform whole, one per batch.
        hop: distance between window starts (default: ``window``).
        batch_size: windows per batch.
        min_samples: in full-length mode, shorter waveforms are tiled up to this length.

    Yields:
        :class:`WindowBatch` (a new array each time: a consumer may keep it).

    Raises:
        ScoringError: naming the key, for an empty, non-1-D or wrongly typed waveform.
    """
    dtype = None
    rows: list[int] = []
    opened: list[tuple[int, Any, np.ndarray, int]] = []
    x = None
    for position, (key, wave) in enumerate(waves):
        wave = _checked_wave(key, wave, dtype)
        dtype = wave.dtype
        if window is None:
            whole = np.empty((1, max(wave.shape[0], min_samples)), dtype=dtype)
            fill_window(whole[0], wave, 0)
            yield WindowBatch(whole, np.array([position], dtype=np.int64), [(position, key, np.zeros(1, np.int64), wave.shape[0])])
            continue
        starts = window_starts(wave.shape[0], window, window if hop is None else hop)
        opened.append((position, key, starts, wave.shape[0]))
        for start in starts.tolist():
            if x is None:
                x = np.empty((batch_size, window), dtype=dtype)
            fill_window(x[len(rows)], wave, start)
            rows.append(position)
            if len(rows) == batch_size:
                yield WindowBatch(x, np.array(rows, dtype=np.int64), opened)
                x, rows, opened = None, [], []
    if rows:
        yield WindowBatch(x[: len(rows)], np.array(rows, dtype=np.int64), opened)


class _Open:
    """A waveform whose window scores are being collected."""

    __slots__ = ("key", "starts", "length", "scores", "filled")

    def __init__(self, key: Any, starts: np.ndarray, length: int):
        self.key, self.starts, self.length = key, starts, length
        self.scores = np.empty(starts.shape[0], dtype=np.float64)
        self.filled = 0


def _scatter(scores: np.ndarray, owners: np.ndarray, unfinished: dict[int, _Open]) -> None:
    """Append each run of rows of one waveform to that waveform's window scores."""
    bounds = np.flatnonzero(np.diff(owners)) + 1
    for first, last in zip([0, *bounds.tolist()], [*bounds.tolist(), len(scores)]):
        entry = unfinished.get(int(owners[first]))
        if entry is None or entry.filled + last - first > entry.scores.shape[0]:
            raise ScoringError(f"batch rows of waveform {int(owners[first])} in the stream do not match "
                               "the windows it was opened with (batches out of order or from another stream?)")
        entry.scores[entry.filled:entry.filled + last - first] = scores[first:last]
        entry.filled += last - first


class WindowScorer:
    """A model and a window policy that score streams of waveforms.

    Args:
        model: maps float32 ``[B, T]`` waveforms in [-1, 1) to ``[B, 2]`` logits; it runs in eval
            mode while scoring (its train/eval mode is restored afterwards) and must already be on
            ``device``.
        window: window in samples (at least the model's ``min_samples``); ``None`` scores each
            waveform whole in one pass.
        hop: hop between windows in samples (default: ``window``).
        batch_size: windows per forward pass.
        device: where the model runs.
        precision: ``fp32``, ``bf16``, ``fp16`` or ``auto`` (autocast for the forward pass).

    Raises:
        ScoringError: a non-positive ``window``, ``hop`` or ``batch_size``, or a window shorter than
            the model's minimum input.
    """

    def __init__(self, model: nn.Module, window: int | None, hop: int | None = None, batch_size: int = 64,
                 device: str | torch.device = "cpu", precision: str = "fp32"):
        self.model = model
        self.min_samples = int(getattr(model, "min_samples", 1))
        if window is not None:
            if window < self.min_samples:
                raise ScoringError(f"window: {window} samples is shorter than the model's minimum input {self.min_samples}")
            hop = window if hop is None else hop
            if hop <= 0:
                raise ScoringError(f"hop: must be a positive number of samples, got {hop}")
        if batch_size <= 0:
            raise ScoringError(f"batch_size: must be positive, got {batch_size}")
        self.window, self.hop, self.batch_size = window, hop, batch_size
        self.device = torch.device(device)
        self.precision = resolve_precision(precision, self.device, "precision")

    @contextlib.contextmanager
    def _eval_mode(self) -> Iterator[None]:
        was_training = self.model.training
        self.model.eval()
        try:
            yield
        finally:
            self.model.train(was_training)

    @torch.inference_mode()
    def _forward(self, x: np.ndarray) -> np.ndarray:
        """``[B, T]`` int16 or float32 samples -> float64 ``[B]`` scores (float32 arithmetic)."""
        batch = torch.from_numpy(x).to(self.device, non_blocking=True)
        if batch.dtype == torch.int16:
            batch = batch.float() / INT16_SCALE  # exact: a power of two
        with autocast(self.precision, self.device):
            logits = self.model(batch)
        if logits.ndim != 2 or logits.shape != (x.shape[0], 2):
            raise ScoringError(f"model output: expected [B, 2] logits with B={x.shape[0]}, got {tuple(logits.shape)}")
        scores = score_from_logits(logits.float()).cpu().numpy().astype(np.float64)
        if not np.isfinite(scores).all():
            raise ScoringError("model output: non-finite logits while scoring (diverged training?)")
        return scores

    def score_windows(self, x: np.ndarray) -> np.ndarray:
        """Scores of ready-made windows: ``[B, T]`` int16 or float32 -> float64 ``[B]`` (one forward pass)."""
        with self._eval_mode():
            return self._forward(np.ascontiguousarray(x))

    def score_batches(self, batches: Iterable[WindowBatch], ordered: bool = True) -> Iterator[ScoredWave]:
        """Score packed batches (:func:`pack_windows`) and regroup window scores per waveform.

        Batches may be packed elsewhere (e.g. from decoder processes); rows of several waveforms
        may interleave, as long as each waveform's rows come in window order.

        Args:
            batches: :class:`WindowBatch` in order; a waveform is opened before (or in) the batch
                of its first row.
            ordered: yield waveforms in the order they were opened (stream order); ``False``: each
                as soon as its last window is scored, so short files do not wait behind a long one.

        Raises:
            ScoringError: rows of a waveform that was never opened, more rows than its windows, a
                waveform still missing windows when the batches end, or unusable model output.
        """
        unfinished: dict[int, _Open] = {}  # by stream position, in the order opened
        with self._eval_mode():
            for batch in batches:
                for position, key, starts, length in batch.opened:
                    unfinished[position] = _Open(key, starts, length)
                _scatter(self._forward(batch.x), batch.owners, unfinished)
                finished = []
                for position, entry in unfinished.items():
                    if entry.filled == entry.scores.shape[0]:
                        finished.append(position)
                    elif ordered:
                        break
                for position in finished:
                    entry = unfinished.pop(position)
                    yield ScoredWave(entry.key, entry.starts, entry.scores, entry.length)
        for entry in unfinished.values():
            raise ScoringError(f"waveform {entry.key!r}: {entry.filled} of {entry.scores.shape[0]} windows scored when the batches ended")

    def score_stream(self, waves: Iterable[tuple[Any, np.ndarray]]) -> Iterator[ScoredWave]:
        """Score ``(key, wave)`` pairs lazily, windows batched across waveforms, in stream order.

        Args:
            waves: ``wave`` ``[T]`` int16 or float32 in [-1, 1) at the model's sample rate, one
                dtype per stream.

        Yields:
            one :class:`ScoredWave` per input pair, in input order.

        Raises:
            ScoringError: naming the key of a waveform that cannot be windowed, or for model
                output that is not finite ``[B, 2]`` logits.
        """
        return self.score_batches(pack_windows(waves, self.window, self.hop, self.batch_size, self.min_samples))

    def score_waves(self, waves: Sequence[np.ndarray]) -> list[ScoredWave]:
        """Score a list of waveforms (keys are their indices)."""
        return list(self.score_stream(enumerate(waves)))


def score_cache(
    model: nn.Module,
    cache,
    window: int | None,
    hop: int | None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    progress: bool = False,
) -> np.ndarray:
    """Score every utterance of a prepared cache with :class:`WindowScorer`.

    Args:
        model: see :class:`WindowScorer` (its train/eval mode is restored afterwards).
        cache: a :class:`rawguard.data.cache.Cache` (its int16 samples go to the model unconverted
            until the device: half the memory traffic of float32).
        window, hop, batch_size, device, precision: see :class:`WindowScorer`.
        progress: show a tqdm bar over the utterances.

    Returns:
        float32 ``[N]`` scores in cache order (``cache.ids[i]`` has score ``scores[i]``).

    Raises:
        ScoringError: for model output that is not finite ``[B, 2]`` logits.
    """
    scorer = WindowScorer(model, window, hop, batch_size, device, precision)
    clips = progress_bar(((i, cache.waveform(i)) for i in range(len(cache))), total=len(cache), desc="scoring",
                         unit="clip", disable=not progress, leave=False)
    scores = np.empty(len(cache), dtype=np.float32)
    for scored in scorer.score_stream(clips):
        scores[scored.key] = scored.score
    return scores
