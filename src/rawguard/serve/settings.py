"""What a server is configured with: the checkpoint, limits, batching and timeouts."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

__all__ = ["ServeSettings", "SETTINGS_ENV", "file_sha256"]

SETTINGS_ENV = "RAWGUARD_SERVE_SETTINGS"
"""Environment variable that carries the settings (JSON) to uvicorn's worker processes."""


@dataclass(frozen=True)
class ServeSettings:
    """Configuration of ``rawguard serve``.

    Attributes:
        checkpoint: trained checkpoint (``best.pt``), or a list of several scored as one equal-weight
            ensemble of their calibrated log-odds (:func:`rawguard.ensemble.ensemble_detector`).
        max_upload_mb: largest request body, in MB (10^6 bytes).
        max_duration: longest recording or stream, in seconds.
        token: if set, clients must send ``Authorization: Bearer TOKEN`` (streams: ``?token=``).
        max_wait_ms: how long the batching queue waits for more requests once it has one.
        max_batch_windows: most windows gathered into one model call.
        batched: ``False`` scores one request per model call (benchmark baseline).
        read_timeout: longest gap between two chunks of an upload or messages of a stream, seconds.
        upload_timeout: longest time to receive a whole upload, seconds.
        header_timeout: longest time to receive a request's headers, seconds.
        max_files: most files in one multipart request.
        device: where the model runs.
        threads: torch intra-op threads (default: the CPUs divided among the worker processes).
    """

    checkpoint: str | list[str]
    max_upload_mb: float = 100.0
    max_duration: float = 1800.0
    token: str | None = None
    max_wait_ms: float = 5.0
    max_batch_windows: int = 256
    batched: bool = True
    read_timeout: float = 30.0
    upload_timeout: float = 300.0
    header_timeout: float = 10.0
    max_files: int = 16
    device: str = "cpu"
    threads: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_upload_mb", "max_duration", "read_timeout", "upload_timeout", "header_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: must be positive, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms: must be >= 0, got {self.max_wait_ms}")
        for name in ("max_batch_windows", "max_files"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be a positive integer, got {getattr(self, name)}")
        if self.threads is not None and self.threads <= 0:
            raise ValueError(f"threads: must be positive, got {self.threads}")
        if self.token is not None and not self.token.strip():
            raise ValueError("token: must not be empty")

    @property
    def checkpoints(self) -> list[str]:
        """The checkpoint paths, one or several."""
        return [self.checkpoint] if isinstance(self.checkpoint, (str, os.PathLike)) else list(self.checkpoint)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> ServeSettings:
        raw = os.environ.get(SETTINGS_ENV)
        if not raw:
            raise RuntimeError(f"{SETTINGS_ENV} is not set: start the server with `rawguard serve`")
        data = json.loads(raw)
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
