"""Score audio with a trained checkpoint: arrays, files, folders and long recordings.

Scoring policy (the one of :mod:`rawguard.scoring`, shared with ``rawguard evaluate`` and dev selection):

- a recording is cut into windows of ``window`` samples starting at
  :func:`rawguard.windows.window_starts` (``hop`` apart, the last window aligned to the end so no
  sample is left out); a recording no longer than one window is one window, repeated end to end to
  fill it (the training policy for short clips);
- each window's score is ``logit[bona fide] - logit[spoof]``; the recording's score is the mean over
  its windows, computed by the same :class:`rawguard.scoring.WindowScorer` that
  :func:`rawguard.scoring.score_cache` uses for a cache;
- window and hop come from the checkpoint's dev selection (the policy its threshold was chosen
  with); ``window=None`` scores the whole recording in one pass instead.

Decision: bona fide when ``score > threshold``, the dev EER threshold stored at selection time (the
:mod:`rawguard.metrics` convention). Probability of bona fide: ``sigmoid(scale * score + bias)`` with
the dev-fitted logistic calibration. A checkpoint without ``selection`` (e.g. saved before any dev
evaluation) still works, with threshold 0 and the model's own softmax probability — uncalibrated, and
the detector says so (a warning and :attr:`Detector.notes`).

Windows whose score is at or below the threshold are reported as time ranges that look spoofed.
"""

from __future__ import annotations

import math
import os
import warnings
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from rawguard.calibration import apply_calibration
from rawguard.checkpoint import load_checkpoint
from rawguard.conventions import BONAFIDE, DEFAULT_WINDOW, INT16_SCALE, SAMPLE_RATE, SPOOF, label_name
from rawguard.scoring import ScoredWave, WindowScorer

__all__ = ["DetectorError", "WindowScore", "DetectionResult", "Detector", "find_audio_files"]


class DetectorError(ValueError):
    """Unusable checkpoint contents or input array (names the file or field at fault)."""


@dataclass(frozen=True)
class WindowScore:
    """Score of one analysis window; times in seconds from the start of the recording."""

    start: float
    end: float
    score: float
    probability_bonafide: float


@dataclass(frozen=True)
class DetectionResult:
    """Result of scoring one recording.

    Attributes:
        score: mean window score ``logit[bona fide] - logit[spoof]`` (higher = more bona fide).
        probability_bonafide: calibrated probability of bona fide (softmax if uncalibrated).
        decision: ``"bonafide"`` if ``score > threshold`` else ``"spoof"``.
        threshold: the decision threshold used (dev EER threshold, or 0).
        duration: seconds of audio scored.
        windows: per-window scores, in time order.
        spoofed_ranges: merged ``(start, end)`` second ranges of windows scoring ``<= threshold``.
        calibrated: whether ``probability_bonafide`` comes from a dev-fitted calibration.
        path: the scored file, if any.
    """

    score: float
    probability_bonafide: float
    decision: str
    threshold: float
    duration: float
    windows: tuple[WindowScore, ...]
    spoofed_ranges: tuple[tuple[float, float], ...]
    calibrated: bool
    path: str | None = None

    @property
    def is_bonafide(self) -> bool:
        return self.decision == label_name(BONAFIDE)

    def to_dict(self) -> dict:
        """JSON-ready dict: what ``rawguard score --json`` prints and ``rawguard serve`` answers.

        Windows become dicts, ranges ``[start, end]`` lists, and ``duration`` is keyed
        ``duration_s`` (the API's name, which says its unit).
        """
        out = {("duration_s" if key == "duration" else key): value for key, value in asdict(self).items()}
        out["spoofed_ranges"] = [list(r) for r in self.spoofed_ranges]
        return out


def _merge_ranges(ranges: Iterable[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    merged: list[list[float]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return tuple((round(a, 4), round(b, 4)) for a, b in merged)


@dataclass
class Detector:
    """A trained spoofing detector ready to score audio.

    Build it with :meth:`from_checkpoint`; the constructor is for models already in memory.

    Args:
        model: maps float32 ``[B, T]`` waveforms in [-1, 1] at :data:`SAMPLE_RATE` to ``[B, 2]`` logits.
        threshold: decision threshold on the score (bona fide when ``score > threshold``).
        calibration: ``{"scale", "bias"}``, or ``None`` for the softmax probability.
        window: window in samples (``None``: whole recording in one pass).
        hop: hop between windows in samples (default: ``window``).
        device: where the model runs.
        batch_size: windows per forward pass.
        notes: remarks about how this detector was set up (e.g. missing calibration).
        model_name: registry name of the model, when known.
        precision: ``fp32``, ``bf16``, ``fp16`` or ``auto`` (autocast for the forward pass).

    Raises:
        ScoringError: a window shorter than the model's minimum input, a non-positive hop or batch size.
    """

    model: nn.Module
    threshold: float = 0.0
    calibration: dict | None = None
    window: int | None = DEFAULT_WINDOW
    hop: int | None = None
    device: str = "cpu"
    batch_size: int = 64
    notes: list[str] = field(default_factory=list)
    model_name: str | None = None
    precision: str = "fp32"

    def __post_init__(self) -> None:
        self.model.eval()
        self.model.to(self.device)
        self.hop = self.scorer().hop  # checks the policy now, not at the first file

    def scorer(self) -> WindowScorer:
        """The :class:`~rawguard.scoring.WindowScorer` of this detector's model and window policy."""
        return WindowScorer(self.model, self.window, self.hop, self.batch_size, self.device, self.precision)

    @property
    def calibrated(self) -> bool:
        return self.calibration is not None

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        device: str = "cpu",
        window: int | None | str = "checkpoint",
        hop: int | None = None,
        batch_size: int = 64,
    ) -> Detector:
        """Load a rawguard checkpoint (``best.pt`` of a training run), or an ensemble file.

        An ensemble file (``rawguard ensemble``, :func:`rawguard.ensemble.save_ensemble`) holds several
        trained models and loads as one detector over all of them, as :meth:`from_checkpoints` would.

        Args:
            path: checkpoint file (loaded safely, ``weights_only``).
            device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
            window: window in samples; ``"checkpoint"`` (default) takes the dev-selection window
                (or the run config's ``eval.window``, else :data:`DEFAULT_WINDOW`); ``None`` scores
                whole recordings in one pass.
            hop: hop in samples; default the checkpoint's (or ``window``).
            batch_size: windows per forward pass.

        Raises:
            CheckpointError: the file is missing, corrupt or not a rawguard checkpoint.
            DetectorError: naming the path and key, when model keys are missing or do not fit.
        """
        path = Path(path)
        state = load_checkpoint(path, map_location="cpu")
        from rawguard.ensemble import ENSEMBLE_MEMBERS, ensemble_from_bundle

        if ENSEMBLE_MEMBERS in state:  # one file holding several models (``rawguard ensemble``)
            return ensemble_from_bundle(state, path, device=device, window=window, hop=hop, batch_size=batch_size)
        return cls.from_state(state, path, device=device, window=window, hop=hop, batch_size=batch_size)

    @classmethod
    def from_state(
        cls,
        state: dict,
        path: str | os.PathLike,
        device: str = "cpu",
        window: int | None | str = "checkpoint",
        hop: int | None = None,
        batch_size: int = 64,
    ) -> Detector:
        """:meth:`from_checkpoint` of a checkpoint already loaded; ``path`` names it in errors and notes."""
        from rawguard.models import create_model_from_saved

        path = Path(path)
        for key in ("model_name", "model_config", "model"):
            if key not in state:
                raise DetectorError(f"{path}: checkpoint has no {key!r} (not a trained rawguard model?)")
        try:
            model = create_model_from_saved(state["model_name"], dict(state["model_config"]))
            model.load_state_dict(state["model"])
        except (ValueError, RuntimeError, TypeError) as error:
            raise DetectorError(f"{path}: cannot rebuild model {state['model_name']!r}: {str(error).splitlines()[0]}") from error
        selection = state.get("selection")
        eval_config = (state.get("config") or {}).get("eval") or {}
        notes: list[str] = []
        if selection:
            threshold, calibration = _checked_selection(selection, path)
            saved_window, saved_hop = selection.get("window"), selection.get("hop")
        else:
            threshold, calibration = 0.0, None
            saved_window, saved_hop = eval_config.get("window"), eval_config.get("hop")
            notes.append(
                f"{path.name} has no dev selection: decision threshold 0 and uncalibrated softmax probabilities"
            )
            warnings.warn(f"{path}: {notes[-1]}", stacklevel=2)
        if window == "checkpoint":
            window = int(saved_window) if saved_window else DEFAULT_WINDOW
            hop = hop if hop is not None else (int(saved_hop) if saved_hop else None)
        return cls(model, threshold, calibration, window, hop, device, batch_size, notes, str(state["model_name"]))

    @classmethod
    def from_checkpoints(
        cls,
        paths: Iterable[str | os.PathLike],
        device: str = "cpu",
        window: int | None | str = "checkpoint",
        hop: int | None = None,
        batch_size: int = 64,
    ) -> Detector:
        """One checkpoint as :meth:`from_checkpoint`; several as one detector that averages their
        dev-calibrated log-odds window by window (:func:`rawguard.ensemble.ensemble_detector`)."""
        paths = list(paths)
        if len(paths) == 1:
            return cls.from_checkpoint(paths[0], device=device, window=window, hop=hop, batch_size=batch_size)
        from rawguard.ensemble import ensemble_detector

        return ensemble_detector(paths, device=device, window=window, hop=hop, batch_size=batch_size)

    # -- scoring ---------------------------------------------------------------------------------

    def _probability(self, scores: np.ndarray) -> np.ndarray:
        # Without calibration, sigmoid(logit1 - logit0) is exactly the model's softmax P(bona fide).
        return apply_calibration(scores, self.calibration or {"scale": 1.0, "bias": 0.0})

    def window_scores(self, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores of the analysis windows of one recording.

        Args:
            wave: float32 ``[T]`` at :data:`SAMPLE_RATE`.

        Returns:
            ``(starts int64 [W], scores float64 [W])``; with ``window=None`` one window starting at 0.
        """
        (scored,) = self.scorer().score_waves([wave])
        return scored.starts, scored.scores

    def result(self, scored: ScoredWave, path: str | None = None) -> DetectionResult:
        """The :class:`DetectionResult` of window scores from this detector's scorer (:meth:`scorer`).

        For callers that run the scorer themselves (e.g. over a stream or an archive); ``path`` is
        recorded in the result.
        """
        starts, scores, length = scored.starts, scored.scores, scored.length
        probs = self._probability(scores)
        span = length if self.window is None else min(self.window, length)
        windows = tuple(
            WindowScore(start / SAMPLE_RATE, min(start + span, length) / SAMPLE_RATE, float(s), float(p))
            for start, s, p in zip(starts.tolist(), scores, probs)
        )
        score = scored.score
        return DetectionResult(
            score=score,
            probability_bonafide=float(self._probability(np.array([score]))[0]),
            decision=label_name(BONAFIDE if score > self.threshold else SPOOF),
            threshold=self.threshold,
            duration=length / SAMPLE_RATE,
            windows=windows,
            spoofed_ranges=_merge_ranges((w.start, w.end) for w in windows if w.score <= self.threshold),
            calibrated=self.calibrated,
            path=path,
        )

    def score_array(self, x: np.ndarray, sample_rate: int = SAMPLE_RATE, path: str | None = None) -> DetectionResult:
        """Score a waveform.

        Args:
            x: ``[T]`` mono or ``[T, C]`` multi-channel (channels averaged), float in [-1, 1] or int16
                PCM; resampled to :data:`SAMPLE_RATE` (soxr HQ) when ``sample_rate`` differs.
            sample_rate: rate of ``x`` in Hz.
            path: recorded in the result (used by :meth:`score_file`).

        Raises:
            DetectorError: empty, non-finite, wrongly shaped input or a bad sample rate.
        """
        (scored,) = self.scorer().score_waves([_as_waveform(x, sample_rate)])
        return self.result(scored, path)

    def score_arrays(self, xs: Iterable[np.ndarray], sample_rate: int = SAMPLE_RATE) -> list[DetectionResult]:
        """Score several waveforms (as :meth:`score_array`) with their windows batched together."""
        waves = [_as_waveform(x, sample_rate) for x in xs]
        return [self.result(scored, None) for scored in self.scorer().score_waves(waves)]

    def score_file(self, path: str | os.PathLike) -> DetectionResult:
        """Decode any audio file (:func:`rawguard.audio.load_audio`) and score it.

        Raises:
            AudioError: naming the file, when it is missing, corrupt, truncated or empty.
        """
        from rawguard.audio import load_audio

        return self.score_array(load_audio(path), SAMPLE_RATE, path=str(path))

    def score_files(self, paths: Iterable[str | os.PathLike]) -> Iterator[tuple[Path, DetectionResult | Exception]]:
        """Score files in order, batching windows across files; a file that fails yields its exception.

        Files are decoded one by one as the scorer asks for more windows, so a folder of short clips
        runs full batches and memory holds only the files of the batch in flight. Results are the
        same as :meth:`score_file`'s (up to float rounding: batch composition differs).
        """
        from rawguard.audio import AudioError, load_audio

        failed: deque[tuple[int, Path, Exception]] = deque()  # decoding errors not yet yielded, in order

        def decoded() -> Iterator[tuple[tuple[int, Path], np.ndarray]]:
            for number, path in enumerate(map(Path, paths)):
                try:
                    yield (number, path), load_audio(path)
                except (AudioError, OSError) as error:
                    failed.append((number, path, error))

        for scored in self.scorer().score_stream(decoded()):
            number, path = scored.key
            while failed and failed[0][0] < number:
                yield failed.popleft()[1:]
            yield path, self.result(scored, str(path))
        while failed:
            yield failed.popleft()[1:]


def _checked_selection(selection: dict, path: Path) -> tuple[float, dict]:
    try:
        threshold = float(selection["threshold"])
        calibration = {"scale": float(selection["calibration"]["scale"]), "bias": float(selection["calibration"]["bias"])}
    except (KeyError, TypeError, ValueError) as error:
        raise DetectorError(
            f"{path}: checkpoint 'selection' needs numeric 'threshold' and 'calibration' {{'scale', 'bias'}} ({error!r})"
        ) from error
    if not all(math.isfinite(v) for v in (threshold, calibration["scale"], calibration["bias"])):
        raise DetectorError(f"{path}: checkpoint 'selection' holds non-finite threshold/calibration values")
    return threshold, calibration


def _as_waveform(x, sample_rate: int) -> np.ndarray:
    """Validate and convert input audio to float32 mono ``[T]`` at :data:`SAMPLE_RATE`."""
    array = np.asarray(x)
    if array.ndim == 2:
        array = array.mean(axis=1, dtype=np.float32) if array.dtype != np.int16 else array.mean(axis=1) / INT16_SCALE
    elif array.ndim == 1 and array.dtype == np.int16:
        array = array / INT16_SCALE
    elif array.ndim != 1:
        raise DetectorError(f"audio: expected [T] or [T, channels], got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(array.dtype, np.integer):
        raise DetectorError(f"audio: expected float samples in [-1, 1] or int16 PCM, got dtype {array.dtype}")
    if array.shape[0] == 0:
        raise DetectorError("audio: no samples")
    wave = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(wave).all():
        raise DetectorError(f"audio: {int((~np.isfinite(wave)).sum())} NaN/inf samples")
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise DetectorError(f"sample_rate: expected a positive integer in Hz, got {sample_rate!r}")
    if sample_rate != SAMPLE_RATE:
        import soxr

        wave = soxr.resample(wave, int(sample_rate), SAMPLE_RATE, quality="HQ").astype(np.float32, copy=False)
        if wave.shape[0] == 0:
            raise DetectorError(f"audio: no samples left after resampling from {sample_rate} Hz")
    return wave


def find_audio_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files and folders (recursively, by :data:`rawguard.audio.AUDIO_EXTENSIONS`) in order.

    Paths that are not folders are kept as given (a missing or bad file then fails when scored,
    with its own error); folder contents are sorted.
    """
    from rawguard.audio import AUDIO_EXTENSIONS

    extensions = {ext.lower() for ext in AUDIO_EXTENSIONS}
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() in extensions and p.is_file())
        else:
            found.append(path)
    return found
