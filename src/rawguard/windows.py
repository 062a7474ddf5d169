"""Analysis windows of a waveform: where they start, how a short clip fills one, framing.

The one windowing policy of rawguard, shared by training crops, ``rawguard evaluate``, dev
selection and the :class:`~rawguard.detector.Detector` (documented in ``docs/data.md``):

- a clip longer than the window is covered by windows ``hop`` apart, the last one aligned to the
  end so that no sample is left out (:func:`window_starts`);
- a clip no longer than the window is one window, the clip repeated end to end ("tiled") until the
  window is full, as the RawNet2 / AASIST baselines do. Zero padding would let a model learn
  "silence at the end = short clip", which correlates with class in several corpora.

Pure numpy, any sample dtype (int16 from a cache, float32 from a decoder): the functions copy
samples, they never rescale them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["window_starts", "fill_window", "crop_or_pad", "frame"]


def window_starts(length: int, window: int, hop: int) -> np.ndarray:
    """Start offsets of the analysis windows over a clip of ``length`` samples, ``int64 [W]``.

    ``[0]`` for ``length <= window`` (the clip is then tiled); otherwise ``0, hop, 2*hop, ...`` while
    the window fits, plus a last window aligned to the end so that no sample is left out.

    Raises:
        ValueError: ``window`` or ``hop`` is not positive.
    """
    if window <= 0 or hop <= 0:
        raise ValueError(f"window and hop must be positive, got window={window}, hop={hop}")
    if length <= window:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, length - window + 1, hop, dtype=np.int64)
    if starts[-1] + window < length:
        starts = np.append(starts, length - window)
    return starts


def fill_window(out: np.ndarray, wave: np.ndarray, start: int) -> None:
    """Write the window of ``wave`` ``[T]`` starting at ``start`` into ``out`` ``[window]``.

    A clip shorter than the window is tiled from its first sample (``start`` is then ignored).
    Copies straight into ``out`` (e.g. a row of a batch): no temporary array.
    """
    window = out.shape[0]
    if wave.shape[0] >= window:
        out[:] = wave[start:start + window]
        return
    # Repeat-pad with slice copies: one memcpy per repetition.
    filled = 0
    while filled < window:
        n = min(wave.shape[0], window - filled)
        out[filled:filled + n] = wave[:n]
        filled += n


def crop_or_pad(wave: np.ndarray, window: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """One window ``[window]`` of ``wave`` ``[T]``, same dtype.

    Long clips: a uniformly random crop (``rng``) or, with ``rng=None``, the first ``window`` samples.
    Short clips: the clip repeated end to end and cut to ``window``.

    Raises:
        ValueError: ``wave`` is not a non-empty 1-D array.
    """
    if wave.ndim != 1 or wave.shape[0] == 0:
        raise ValueError(f"expected a non-empty 1-D waveform, got shape {tuple(wave.shape)}")
    start = 0
    if rng is not None and wave.shape[0] > window:
        start = int(rng.integers(0, wave.shape[0] - window + 1))
    out = np.empty(window, dtype=wave.dtype)
    fill_window(out, wave, start)
    return out


def frame(wave: np.ndarray, window: int, hop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All analysis windows of one waveform, as a copy.

    Args:
        wave: ``[T]`` samples, any dtype, ``T >= 1``.
        window: window length in samples.
        hop: distance between window starts (default: ``window``, no overlap).

    Returns:
        ``(starts int64 [W], windows [W, window])`` with ``windows[k]`` the window starting at
        ``starts[k]`` (:func:`window_starts`), in ``wave``'s dtype.

    Raises:
        ValueError: an empty or non-1-D ``wave``, or a non-positive ``window``/``hop``.
    """
    if wave.ndim != 1 or wave.shape[0] == 0:
        raise ValueError(f"expected a non-empty 1-D waveform, got shape {tuple(wave.shape)}")
    starts = window_starts(wave.shape[0], window, window if hop is None else hop)
    windows = np.empty((starts.shape[0], window), dtype=wave.dtype)
    for row, start in zip(windows, starts.tolist()):
        fill_window(row, wave, start)
    return starts, windows
