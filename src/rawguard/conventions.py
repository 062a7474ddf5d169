"""The one place that holds rawguard's conventions.

Every module that needs a sample rate, a label id or a score direction imports it from here, so
there is exactly one source of truth:

- audio is float32 mono at :data:`SAMPLE_RATE` (16 kHz), values in [-1, 1];
- label ids follow ASVspoof: bona fide = :data:`BONAFIDE` (1), spoof = :data:`SPOOF` (0); the model's
  logit index 1 is bona fide;
- a score is *higher = more bona fide* (as in the official ASVspoof score files); rawguard's score is
  ``logit[bonafide] - logit[spoof]``, a log-likelihood-ratio-like number;
- training windows are :data:`DEFAULT_WINDOW` samples (64,600 = ~4.04 s, as the RawNet2 baseline).
"""

from __future__ import annotations

SAMPLE_RATE: int = 16_000
"""Sample rate of every waveform inside rawguard (Hz)."""

BONAFIDE: int = 1
"""Label id (and logit index) of bona fide (genuine human) speech."""

SPOOF: int = 0
"""Label id (and logit index) of spoofed / synthetic speech."""

LABEL_NAMES: dict[int, str] = {BONAFIDE: "bonafide", SPOOF: "spoof"}
"""Canonical label names, as written in ASVspoof protocol and score files."""

DEFAULT_WINDOW: int = 64_600
"""Training / scoring window in samples (RawNet2 / AASIST convention, ~4.04 s at 16 kHz)."""

COPY_SYSTEM_PREFIX: str = "synth-"
"""System names of copy-synthesis spoofs (``rawguard synth-spoof``): ``synth-<method>``."""

INT16_SCALE: float = 32768.0
"""Caches store ``round(x * INT16_SCALE)`` clipped to int16; read back as ``int16 / INT16_SCALE``
(the same mapping libsndfile uses for 16-bit PCM, so 16-bit FLAC/WAV round-trips exactly)."""

HIGHER_SCORE_IS_BONAFIDE: bool = True
"""Score direction: a higher score means more bona fide (ASVspoof convention)."""

# Spellings of the two classes found across corpora (ASVspoof keys, In-the-Wild, folder names).
_LABEL_ALIASES: dict[str, int] = {
    "bonafide": BONAFIDE,
    "bona-fide": BONAFIDE,
    "bona_fide": BONAFIDE,
    "genuine": BONAFIDE,
    "real": BONAFIDE,
    "human": BONAFIDE,
    "1": BONAFIDE,
    "spoof": SPOOF,
    "spoofed": SPOOF,
    "fake": SPOOF,
    "synthetic": SPOOF,
    "deepfake": SPOOF,
    "0": SPOOF,
}


def score_from_logits(logits):
    """rawguard's score, ``logit[bonafide] - logit[spoof]``, of ``[..., 2]`` logits (torch or numpy).

    The one place that fixes the score's definition and direction (higher = more bona fide); the
    trainer's dev scoring, the Detector and the ONNX export all call it.
    """
    return logits[..., BONAFIDE] - logits[..., SPOOF]


def parse_label(value: str) -> int:
    """Map a label spelling (``bonafide``, ``bona-fide``, ``spoof``, ``real``, ``fake``, ...) to its id.

    Raises:
        ValueError: naming the value, when it is not a known spelling of either class.
    """
    key = value.strip().lower()
    if key not in _LABEL_ALIASES:
        known = ", ".join(sorted(_LABEL_ALIASES))
        raise ValueError(f"unknown label {value!r} (expected one of: {known})")
    return _LABEL_ALIASES[key]


def label_name(label: int) -> str:
    """Canonical name (``bonafide`` / ``spoof``) of a label id."""
    try:
        return LABEL_NAMES[int(label)]
    except KeyError:
        raise ValueError(f"unknown label id {label!r} (expected {BONAFIDE} or {SPOOF})") from None
