"""The training loop's own errors (configuration errors are :class:`rawguard.config.ConfigError`)."""

from __future__ import annotations


class TrainingError(RuntimeError):
    """Training cannot start or continue (diverged loss, unusable dev set, incompatible resume)."""


class RunExistsError(FileExistsError):
    """``out_dir`` already holds a run and ``resume=False`` was asked for."""
