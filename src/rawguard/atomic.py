"""Files that are either absent, the old version, or complete: never half written.

Every file rawguard writes for a reader to trust (checkpoints, cache indexes, score files, metrics,
reports, journals) goes through :func:`atomic_open`: the bytes go to a temporary file beside the
target, are flushed and fsync'ed, and the temporary file is renamed over the target (``os.replace``
is atomic on POSIX), then the directory is fsync'ed so the rename survives a crash. A process killed
at any moment leaves at most a ``.NAME.tmp`` file, which the next write of the same target replaces.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["fsync_directory", "atomic_open", "write_text_atomic"]


def fsync_directory(directory: str | os.PathLike) -> None:
    """fsync a directory so a rename inside it survives a crash (no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", tmp_suffix: str = ".tmp",
                sync_directory: bool = True) -> Iterator[IO]:
    """Open ``path`` for writing so that it appears only once the ``with`` block completes.

    Args:
        path: the target file; its directory must exist.
        mode: ``"w"`` (UTF-8 text, ``\\n`` line ends) or ``"wb"``.
        tmp_suffix: suffix of the temporary file ``.NAME<suffix>`` beside the target.
        sync_directory: fsync the folder after the rename; a writer of many files in one folder
            may pass False and call :func:`fsync_directory` once at the end.

    Yields:
        A file handle on the temporary file. If the block raises, the temporary file is removed
        and the target is left as it was.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    tmp = path.with_name(f".{path.name}{tmp_suffix}")
    try:
        with open(tmp, mode, **({"encoding": "utf-8", "newline": "\n"} if mode == "w" else {})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())  # the data reaches the disk before the name does
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync_directory:
        fsync_directory(path.parent)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_open`; returns the path."""
    with atomic_open(path, "w") as handle:
        handle.write(text)
    return Path(path)
