"""Checkpoint files: atomic writes and safe loads.

A checkpoint is a ``torch.save`` of a plain dictionary of tensors and Python primitives
(str, int, float, bool, None, list, tuple, dict). It is always read back with
``torch.load(weights_only=True)``, which refuses to unpickle arbitrary objects, so opening a
checkpoint from an untrusted source cannot execute code.

Writes go to a temporary file in the same directory, are flushed and fsync'ed, then renamed over
the target (``os.replace`` is atomic on POSIX): a reader sees either the old complete file or the
new complete file, never a half-written one, even if the writer is killed with SIGKILL.

Keys every rawguard checkpoint has (others are free to add):

- ``format``: :data:`FORMAT` (``"rawguard-checkpoint"``), ``format_version``: int
- ``model_name``: registry name for :func:`rawguard.models.create_model`
- ``model_config``: dict of keyword overrides for that constructor
- ``model``: the model's ``state_dict``
- ``config``: the full resolved run configuration (nested dict)
- ``step``: optimizer steps taken
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from rawguard.atomic import atomic_open

FORMAT = "rawguard-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, corrupt, unsafe or not a rawguard checkpoint."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Atomically write ``state`` to ``path`` (temp file + fsync + rename).

    Args:
        state: dictionary of tensors and Python primitives; ``format`` keys are added.
        path: destination file; its directory is created if needed.

    Returns:
        The destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **state}
    with atomic_open(path, "wb") as handle:
        torch.save(payload, handle)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``: no code execution).

    Raises:
        CheckpointError: naming the path, when the file is missing, truncated or corrupt, holds
            objects other than tensors and primitives, or is not a rawguard checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for truncated / corrupt / unsafe files
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: cannot read checkpoint (truncated, corrupt or unsafe file): {reason}") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a rawguard checkpoint (missing format marker {FORMAT!r})")
    version = state.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is newer than this rawguard supports ({FORMAT_VERSION})"
        )
    return state
