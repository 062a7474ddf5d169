"""Live scoring of audio that arrives in chunks: a pipe, a growing file, a WebSocket.

The stream is cut into the same windows as a whole recording (:func:`window_starts`: ``0, hop,
2*hop, ...``, plus one window aligned to the end when the stream closes), so once a stream has
ended its windows, scores and running score equal what :class:`rawguard.detector.Detector` gives
for the whole recording. Each window is reported as soon as its last sample arrives: the delay is
one window length plus the time to score it.

Pieces, each with one job (the caller scores the windows, synchronously or through the server's
batching queue):

- :class:`PcmDecoder`: raw PCM bytes (any rate, channels, s16le/f32le) -> float32 mono 16 kHz;
- :class:`StreamWindows`: float32 samples -> the windows that are complete;
- :class:`RunningDecision`: window scores -> running score, calibrated probability and decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rawguard.calibration import apply_calibration
from rawguard.conventions import BONAFIDE, INT16_SCALE, SAMPLE_RATE, SPOOF, label_name
from rawguard.scoring import ScoredWave
from rawguard.windows import window_starts

__all__ = ["StreamError", "PcmFormat", "PcmDecoder", "StreamWindows", "RunningDecision", "PCM_FORMATS"]

PCM_FORMATS = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}
"""Sample formats a stream may carry (ffmpeg's names): signed 16-bit or float32, little-endian."""

MAX_CHANNELS = 32


class StreamError(ValueError):
    """A stream's format or content cannot be used (names the field or the reason)."""


@dataclass(frozen=True)
class PcmFormat:
    """How a raw PCM stream is laid out."""

    sample_rate: int = SAMPLE_RATE
    channels: int = 1
    format: str = "s16le"

    def __post_init__(self) -> None:
        if self.format not in PCM_FORMATS:
            raise StreamError(f"format: expected one of {', '.join(PCM_FORMATS)}, got {self.format!r}")
        if not isinstance(self.sample_rate, int) or not 1000 <= self.sample_rate <= 384_000:
            raise StreamError(f"sample_rate: expected an integer between 1000 and 384000 Hz, got {self.sample_rate!r}")
        if not isinstance(self.channels, int) or not 1 <= self.channels <= MAX_CHANNELS:
            raise StreamError(f"channels: expected an integer between 1 and {MAX_CHANNELS}, got {self.channels!r}")

    @classmethod
    def from_dict(cls, data: dict) -> PcmFormat:
        """From a client's JSON message ``{"sample_rate", "channels", "format"}`` (all optional)."""
        if not isinstance(data, dict):
            raise StreamError(f"stream format: expected a JSON object, got {type(data).__name__}")
        unknown = set(data) - {"sample_rate", "channels", "format"}
        if unknown:
            raise StreamError(f"stream format: unknown field(s) {', '.join(sorted(unknown))}")
        return cls(**data)

    @property
    def frame_bytes(self) -> int:
        return PCM_FORMATS[self.format].itemsize * self.channels


class PcmDecoder:
    """Raw PCM bytes in any chunking -> float32 mono samples at :data:`SAMPLE_RATE`.

    A chunk may end inside a sample frame; the partial frame is kept for the next chunk. Other
    rates go through soxr's streaming resampler, so chunk boundaries leave no trace.
    """

    def __init__(self, pcm: PcmFormat = PcmFormat()):
        self.pcm = pcm
        self._partial = b""
        self._resampler = None
        if pcm.sample_rate != SAMPLE_RATE:
            import soxr

            self._resampler = soxr.ResampleStream(pcm.sample_rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")

    def decode(self, data: bytes, last: bool = False) -> np.ndarray:
        """Samples of ``data`` (float32 ``[N]``); ``last=True`` flushes the resampler.

        Raises:
            StreamError: NaN/inf float samples.
        """
        data = self._partial + data
        usable = len(data) - len(data) % self.pcm.frame_bytes
        self._partial = data[usable:]
        frames = np.frombuffer(data[:usable], dtype=PCM_FORMATS[self.pcm.format]).reshape(-1, self.pcm.channels)
        if self.pcm.format == "s16le":
            wave = frames.mean(axis=1, dtype=np.float32) / np.float32(INT16_SCALE)
        else:
            wave = frames.mean(axis=1, dtype=np.float32)
            if not np.isfinite(wave).all():
                raise StreamError(f"audio: {int((~np.isfinite(wave)).sum())} NaN/inf samples")
        if self._resampler is not None:
            wave = self._resampler.resample_chunk(wave, last=last)
        return np.ascontiguousarray(wave, dtype=np.float32)


class StreamWindows:
    """Cuts a growing stream into analysis windows as they complete.

    Keeps only the samples that a future window (or the end-aligned last one) can still need, so
    memory stays at about one window however long the stream runs.

    Args:
        window: window in samples.
        hop: hop between window starts in samples.
    """

    def __init__(self, window: int, hop: int):
        if window <= 0 or hop <= 0:
            raise StreamError(f"window and hop must be positive, got window={window}, hop={hop}")
        self.window, self.hop = window, hop
        self.received = 0  # samples seen so far
        self._next_start = 0  # start of the next regular window
        self._buffer = np.zeros(0, dtype=np.float32)
        self._offset = 0  # stream position of _buffer[0]

    def push(self, samples: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """Add float32 ``[N]`` samples; return ``(start, window [window])`` of each window completed."""
        self._buffer = np.concatenate([self._buffer, samples.astype(np.float32, copy=False)])
        self.received += samples.shape[0]
        ready = []
        while self._next_start + self.window <= self.received:
            begin = self._next_start - self._offset
            ready.append((self._next_start, self._buffer[begin:begin + self.window].copy()))
            self._next_start += self.hop
        # The end-aligned window needs at most the last `window` samples; regular ones from _next_start.
        keep_from = min(self._next_start, max(self.received - self.window, 0))
        self._buffer = self._buffer[keep_from - self._offset:]
        self._offset = keep_from
        return ready

    def finish(self) -> list[tuple[int, np.ndarray]]:
        """Windows still owed when the stream ends: :func:`window_starts` of the whole stream less
        those already returned (the end-aligned one, or the whole stream if shorter than a window,
        which the scorer then tiles as it does a short file)."""
        if self.received == 0:
            return []
        if self._next_start == 0:  # shorter than one window: all of it (the buffer still holds it all)
            return [(0, self._buffer.copy())]
        last = int(window_starts(self.received, self.window, self.hop)[-1])
        if last <= self._next_start - self.hop:
            return []  # the stream ended exactly on a regular window, already returned
        begin = last - self._offset
        return [(last, self._buffer[begin:begin + self.window].copy())]


@dataclass
class RunningDecision:
    """Running score (mean of the window scores so far), calibrated probability and decision.

    Same policy as :class:`rawguard.detector.Detector`: bona fide when the mean score is above the
    dev threshold; probability from the dev-fitted calibration (the model's softmax without one).
    The windows are kept (two numbers each) so that a finished stream gets the whole-recording
    result (:meth:`scored`).
    """

    threshold: float
    calibration: dict | None
    starts: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    _total: float = 0.0

    def add(self, start: int, length: int, score: float) -> dict:
        """Record one window (``start``/``length`` in samples); return its message:
        ``{"start", "end", "score", "running_score", "probability_bonafide", "decision", "threshold"}``
        (times in seconds; probability and decision are the running ones)."""
        self.starts.append(start)
        self.scores.append(float(score))
        self._total += float(score)
        return {
            "start": start / SAMPLE_RATE,
            "end": (start + length) / SAMPLE_RATE,
            "score": float(score),
            "running_score": self.score,
            "probability_bonafide": self.probability,
            "decision": self.decision,
            "threshold": self.threshold,
        }

    @property
    def count(self) -> int:
        return len(self.scores)

    @property
    def score(self) -> float:
        return self._total / self.count if self.count else float("nan")

    @property
    def probability(self) -> float:
        if not self.count:
            return float("nan")
        # Without calibration, sigmoid(score) is the model's softmax P(bona fide), as in Detector.
        return float(apply_calibration(np.array([self.score]), self.calibration or {"scale": 1.0, "bias": 0.0})[0])

    @property
    def decision(self) -> str | None:
        return label_name(BONAFIDE if self.score > self.threshold else SPOOF) if self.count else None

    def scored(self, length: int, key=None) -> ScoredWave:
        """The windows so far as a :class:`~rawguard.scoring.ScoredWave` of a ``length``-sample
        recording (:meth:`Detector.result` makes the ``rawguard score --json`` result of it)."""
        return ScoredWave(key, np.array(self.starts, dtype=np.int64), np.array(self.scores, dtype=np.float64), length)


def stream_messages(detector, chunks, pcm: PcmFormat | None = None):
    """Score a live byte stream window by window, synchronously (``rawguard stream``).

    Args:
        detector: a windowed :class:`rawguard.detector.Detector`.
        chunks: iterable of ``bytes`` in any chunking (raw PCM, or WAV when ``pcm`` is ``None``
            and the stream starts with a RIFF header).
        pcm: the raw stream's format; ``None``: WAV if the stream says so, else 16 kHz mono s16le.

    Yields:
        one :meth:`RunningDecision.add` message per window, as soon as it is complete; the
        end-aligned last window when the stream ends.

    Raises:
        StreamError: a bad WAV header or NaN samples.
    """
    from rawguard.serve.sources import split_wav_header

    if detector.window is None:
        raise StreamError("streams need a windowed detector (window=None scores whole recordings)")
    windows = StreamWindows(detector.window, detector.hop)
    running = RunningDecision(detector.threshold, detector.calibration)
    decoder = None if pcm is None else PcmDecoder(pcm)
    head = b""

    scorer = detector.scorer()

    def scored(ready):
        if not ready:
            return []
        if ready[-1][1].shape[0] < detector.window:  # a stream shorter than one window: tiled, as a short file
            return [running.add(0, ready[0][1].shape[0], scorer.score_waves([ready[0][1]])[0].score)]
        scores = scorer.score_windows(np.stack([window for _, window in ready]))
        return [running.add(start, window.shape[0], score) for (start, window), score in zip(ready, scores)]

    for data in chunks:
        if decoder is None:  # still looking at the first bytes for a WAV header
            head += data
            try:
                found = split_wav_header(head)
            except EOFError:
                continue
            wav_pcm, offset = found if found else (PcmFormat(), 0)
            decoder, data = PcmDecoder(wav_pcm), head[offset:]
        yield from scored(windows.push(decoder.decode(data)))
    if decoder is None and head:
        decoder = PcmDecoder()
        yield from scored(windows.push(decoder.decode(head)))
    if decoder is not None:
        yield from scored(windows.push(decoder.decode(b"", last=True)))
    yield from scored(windows.finish())
