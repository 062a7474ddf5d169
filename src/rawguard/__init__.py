"""rawguard: detect spoofed and synthetic speech from the raw waveform."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "Detector"]


def __getattr__(name: str):
    # Lazy: `import rawguard` must not import torch for users of the pure-numpy parts.
    if name == "Detector":
        from rawguard.detector import Detector

        return Detector
    raise AttributeError(f"module 'rawguard' has no attribute {name!r}")
