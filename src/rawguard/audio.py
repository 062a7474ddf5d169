"""Audio decoding: any file libsndfile reads -> float32 mono at 16 kHz, validated.

No torch here: this module is used by ``prepare`` worker processes and by the detector's file path.

Every failure raises :class:`AudioError`, which names the file and the reason (missing, unreadable
or corrupt, truncated, empty, NaN/Inf samples, too long), so a corpus-wide ``prepare`` can log one
line per bad file and carry on.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from rawguard.conventions import SAMPLE_RATE

AUDIO_EXTENSIONS: tuple[str, ...] = (
    ".flac", ".wav", ".ogg", ".opus", ".mp3", ".aif", ".aiff", ".au", ".caf", ".w64", ".rf64",
)
"""File extensions treated as audio when searching folders (preference order for id lookup)."""

# libsndfile reports a WAV whose data chunk is cut short as "data : 96000 (should be 47978)" in its
# log, then silently returns the shorter data; we turn that into a "truncated" error.
_WAV_SHORT_DATA = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
# Streaming writers (ffmpeg to a pipe, some recorders) leave 0 or 0xFFFFFFFF as the data size:
# that is "length unknown", not truncation.
_UNKNOWN_WAV_SIZES = {0, 0xFFFFFFFF}


class AudioError(Exception):
    """An audio file cannot be used; ``path`` and ``reason`` are kept as attributes."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _declared_truncation(info: sf._SoundFileInfo) -> str | None:
    """Reason string if the header promises more data than the file holds, else None."""
    match = _WAV_SHORT_DATA.search(info.extra_info or "")
    if match:
        declared, actual = int(match.group(1)), int(match.group(2))
        if declared not in _UNKNOWN_WAV_SIZES and declared > actual:
            return f"truncated file: header declares {declared} data bytes, file holds {actual}"
    return None


def load_audio(
    path: str | os.PathLike,
    sample_rate: int = SAMPLE_RATE,
    max_duration: float | None = None,
) -> np.ndarray:
    """Decode ``path`` to a float32 mono waveform ``(T,)`` in [-1, 1] at ``sample_rate``.

    Channels are averaged; other sample rates are converted with soxr (``HQ`` quality).

    Args:
        path: any file libsndfile reads (wav, flac, ogg/vorbis/opus, mp3, aiff, ...).
        sample_rate: output rate in Hz (default :data:`rawguard.conventions.SAMPLE_RATE`).
        max_duration: reject files longer than this many seconds (checked from the header before
            decoding, so a multi-hour file is not decoded just to be rejected). ``None``: no limit.

    Returns:
        ``np.ndarray`` of dtype float32 and shape ``(T,)``, ``T >= 1``.

    Raises:
        AudioError: naming ``path`` and the reason, for a missing file, unreadable/corrupt content,
            a truncated file, zero samples, NaN/Inf samples or a duration above ``max_duration``.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "file not found")
    if not path.is_file():
        raise AudioError(path, "not a regular file")
    try:
        info = sf.info(str(path))
    except Exception as error:  # libsndfile raises LibsndfileError / RuntimeError for bad headers
        raise AudioError(path, f"unreadable or corrupt audio: {_first_line(error)}") from error
    if info.samplerate <= 0:
        raise AudioError(path, f"invalid sample rate {info.samplerate} in header")
    if max_duration is not None and info.frames / info.samplerate > max_duration:
        raise AudioError(
            path, f"duration {info.frames / info.samplerate:.1f} s exceeds the maximum of {max_duration:g} s"
        )
    truncated = _declared_truncation(info)
    if truncated:
        raise AudioError(path, truncated)
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as error:  # e.g. "flac decoder lost sync" for a cut FLAC stream
        raise AudioError(path, f"unreadable or corrupt audio: {_first_line(error)}") from error
    # FLAC headers hold the exact frame count; MP3 (Xing/Info tag, or an estimate from the file size)
    # gets two MPEG frames of slack for encoder padding. Decoding fewer means the file was cut short.
    slack = {"FLAC": 0, "MP3": 2 * 1152}.get(info.format)
    if slack is not None and data.shape[0] < info.frames - slack:
        raise AudioError(path, f"truncated file: header declares {info.frames} frames, decoded {data.shape[0]}")
    if data.shape[0] == 0:
        raise AudioError(path, "no samples (empty audio)")
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise AudioError(path, f"{bad} NaN/Inf sample values")
    # Mix down in float64-free float32: averaging keeps the level of a duplicated mono signal.
    wave = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if rate != sample_rate:
        wave = soxr.resample(wave, rate, sample_rate, quality="HQ").astype(np.float32, copy=False)
        if wave.shape[0] == 0:
            raise AudioError(path, f"no samples left after resampling {data.shape[0]} frames to {sample_rate} Hz")
    return np.ascontiguousarray(wave, dtype=np.float32)

