"""The file list of an archive: streamed from disk, keyed for resume, sharded across ranks.

Nothing here holds the whole list: :func:`iter_audio_files` walks folders lazily (directory order,
not sorted, so a folder of a million files costs one directory entry at a time), and a file's
identity for resume is a 64-bit hash of ``(path, size, mtime)`` (:func:`file_key`), 8 bytes per file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from rawguard.audio import AUDIO_EXTENSIONS

__all__ = ["FileKey", "file_key", "path_hash", "iter_audio_files", "shard_of", "prune_nested"]

_MASK64 = (1 << 64) - 1


def _hash64(text: str) -> int:
    # surrogateescape: file names that are not valid UTF-8 still hash (and round-trip) exactly.
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=8).digest(), "little")


def path_hash(path: str) -> int:
    """64-bit hash of a path string (as given, not resolved)."""
    return _hash64(path)


@dataclass(frozen=True)
class FileKey:
    """What makes a scored file the same file on a later run: its path, size and mtime."""

    path: str
    size: int
    mtime_ns: int

    @property
    def digest(self) -> int:
        """64-bit hash of ``(path, size, mtime_ns)``: the resume identity of this version of the file."""
        return _hash64(f"{self.path}\0{self.size}\0{self.mtime_ns}")

    def to_dict(self) -> dict:
        return {"path": self.path, "size": self.size, "mtime_ns": self.mtime_ns}


def file_key(path: str) -> FileKey | None:
    """The :class:`FileKey` of ``path`` now, or ``None`` if it cannot be stat'ed (missing, no access)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return FileKey(path, stat.st_size, stat.st_mtime_ns)


def prune_nested(paths: Iterable[str]) -> list[str]:
    """``paths`` without repeats and without paths inside another given folder (``a a/b`` -> ``a``),
    so that no file is listed twice. Order is kept."""
    given = [os.path.normpath(str(p)) for p in paths]
    folders = [p for p in given if os.path.isdir(p)]
    kept: list[str] = []
    for path in given:
        inside = any(path != folder and os.path.commonpath([os.path.abspath(path), os.path.abspath(folder)])
                     == os.path.abspath(folder) for folder in folders)
        if not inside and path not in kept:
            kept.append(path)
    return kept


def iter_audio_files(paths: Iterable[str | os.PathLike]) -> Iterator[str]:
    """Audio files under ``paths``, lazily: folders are walked recursively (files whose extension is
    in :data:`rawguard.audio.AUDIO_EXTENSIONS`, any case), other paths are yielded as given (a
    missing or bad file then fails when decoded, with its own error). A path is listed once even
    when given twice or inside another given folder. Symbolic links to files are followed; links to
    folders are not (no cycles)."""
    extensions = {ext.lower() for ext in AUDIO_EXTENSIONS}
    for path in prune_nested(paths):
        if os.path.isdir(path):
            yield from _walk(path, extensions)
        else:
            yield path


def _walk(folder: str, extensions: set[str]) -> Iterator[str]:
    pending = [folder]
    while pending:
        directory = pending.pop()
        try:
            entries = os.scandir(directory)
        except OSError:
            continue  # unreadable folder: nothing to list (its files cannot be decoded either)
        with entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                elif os.path.splitext(entry.name)[1].lower() in extensions and entry.is_file():
                    yield entry.path


def shard_of(path: str, world_size: int) -> int:
    """The rank (``0 .. world_size-1``) that scores ``path``: jump consistent hash of the path.

    Deterministic on every machine for the same path string. Going from ``n`` to ``n + 1`` ranks
    moves only about ``1 / (n + 1)`` of the files, all of them to the new rank (Lamping & Veach,
    "A Fast, Minimal Memory, Consistent Hash Algorithm", 2014); the rest keep their rank, and a
    resumed run finds their results where they were.
    """
    if world_size <= 0:
        raise ValueError(f"world_size: expected a positive number of ranks, got {world_size}")
    key, bucket, jump = path_hash(path), -1, 0
    while jump < world_size:
        bucket = jump
        key = (key * 2862933555777941757 + 1) & _MASK64
        jump = int((bucket + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return bucket
