"""Resumable JSON Lines output: append whole lines, survive SIGKILL, score each file once.

A journal is three append-only files next to each other (for ``results.jsonl``):

- ``results.jsonl``: one result per line, exactly the ``rawguard score --json`` object;
- ``results.errors.jsonl``: ``{"path", "reason"}`` for each file that could not be scored;
- ``results.keys.jsonl``: ``{"path", "size", "mtime_ns"}`` of each file with a line above, written
  *after* that line: a key means "this version of this file is done".

Each line goes out in one ``write`` and is flushed before the next file's, so a kill at any moment
leaves at most one torn line at the end of one file, and at most one outcome line without its key.
:meth:`Journal.open` repairs both: it cuts a torn last line, and rewrites the files (atomically,
one by one) without lines that are not both outcome and key, and without files whose size or
mtime changed since they were scored (they are scored again). Whatever subset of those rewrites a
second kill interrupts, the next open reaches the same state: an outcome counts only with its key.

The done set is a sorted ``uint64`` array of :attr:`FileKey.digest` (8 bytes per file).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rawguard.archive.files import FileKey, file_key, path_hash
from rawguard.atomic import atomic_open

__all__ = ["JournalError", "JournalPaths", "Journal", "DoneSet", "repair_torn_tail", "read_done_keys", "last_occurrence"]

FSYNC_INTERVAL_S = 10.0  # a kill loses nothing flushed; fsync bounds what a power cut can lose


class JournalError(RuntimeError):
    """An output file is not a journal this code can resume (names the file and line)."""


@dataclass(frozen=True)
class JournalPaths:
    """The three files of one journal, named after the results file."""

    results: Path
    errors: Path
    keys: Path

    @classmethod
    def for_results(cls, results: str | os.PathLike) -> JournalPaths:
        results = Path(results)
        stem = results.name[: -len(".jsonl")] if results.name.endswith(".jsonl") else results.name
        return cls(results, results.with_name(f"{stem}.errors.jsonl"), results.with_name(f"{stem}.keys.jsonl"))

    def all(self) -> tuple[Path, Path, Path]:
        return self.results, self.errors, self.keys


class DoneSet:
    """Membership test for :attr:`FileKey.digest` values: a sorted ``uint64`` array."""

    def __init__(self, digests: np.ndarray | None = None) -> None:
        self._sorted = np.unique(np.asarray(digests if digests is not None else [], dtype=np.uint64))

    def __len__(self) -> int:
        return int(self._sorted.shape[0])

    def __contains__(self, digest: int) -> bool:
        i = int(np.searchsorted(self._sorted, np.uint64(digest)))
        return i < self._sorted.shape[0] and int(self._sorted[i]) == digest

    def union(self, other: DoneSet) -> DoneSet:
        return DoneSet(np.concatenate([self._sorted, other._sorted]))


def repair_torn_tail(path: Path) -> int:
    """Cut an incomplete last line (no final newline) off ``path``; returns the bytes removed."""
    if not path.exists():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as handle:
        keep, block = size, 1 << 16
        while keep > 0:  # scan backwards for the last newline
            start = max(0, keep - block)
            handle.seek(start)
            chunk = handle.read(keep - start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            keep = start
        if keep < size:
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())
    return size - keep


def _records(path: Path, skip_torn_tail: bool = False) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` of each line of a JSON Lines file; missing file: nothing.

    Raises:
        JournalError: naming file and line, for a line that is not a JSON object with a ``path``
            (a torn last line is skipped instead with ``skip_torn_tail``: another process may be
            writing it).
    """
    if not path.exists():
        return
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if skip_torn_tail and not line.endswith(b"\n"):
                return
            try:
                record = json.loads(line)
            except ValueError as error:
                raise JournalError(f"{path}:{number}: not a JSON line ({error}); move the file away to start over") from error
            if not isinstance(record, dict) or not isinstance(record.get("path"), str):
                raise JournalError(f"{path}:{number}: expected a JSON object with a 'path' string")
            yield number, record


def _key_of(record: dict, where: str) -> FileKey:
    try:
        return FileKey(record["path"], int(record["size"]), int(record["mtime_ns"]))
    except (KeyError, TypeError, ValueError) as error:
        raise JournalError(f"{where}: key line needs 'path', integer 'size' and 'mtime_ns' ({error!r})") from error


def read_done_keys(keys_path: Path) -> DoneSet:
    """Digests of every key line of another process's journal, read-only (its torn tail skipped).

    A key is written after its outcome line, so each key read here is a finished file."""
    digests = array("Q", (_key_of(r, f"{keys_path}:{n}").digest for n, r in _records(keys_path, skip_torn_tail=True)))
    return DoneSet(_as_uint64(digests))


def _as_uint64(values: array) -> np.ndarray:
    return np.frombuffer(values, dtype=np.uint64) if values else np.zeros(0, dtype=np.uint64)


def last_occurrence(hashes: np.ndarray) -> np.ndarray:
    """Boolean mask: True at the last occurrence of each value of ``hashes`` ``[N]``."""
    keep = np.zeros(hashes.shape[0], dtype=bool)
    if hashes.shape[0]:
        _, first_from_end = np.unique(hashes[::-1], return_index=True)
        keep[hashes.shape[0] - 1 - first_from_end] = True
    return keep


def _rewrite_keeping(path: Path, keep: np.ndarray) -> None:
    """Atomically replace ``path`` with only its lines where ``keep`` (one flag per line) is True."""
    with open(path, "rb") as source, atomic_open(path, "wb") as target:
        for line, kept in zip(source, keep.tolist()):
            if kept:
                target.write(line)


@dataclass
class OpenSummary:
    """What :meth:`Journal.open` found: files done, and lines dropped to make the journal whole."""

    done: int = 0
    torn_bytes: int = 0
    changed: int = 0
    dropped_lines: int = 0


class Journal:
    """Append-only writer of one journal (see the module docstring). Use :meth:`open`.

    Holds an exclusive ``flock`` on the results file while open: a second process writing the same
    journal is refused instead of interleaving lines.
    """

    def __init__(self, paths: JournalPaths, done: DoneSet, summary: OpenSummary, lock_handle) -> None:
        self.paths = paths
        self.done = done
        self.summary = summary
        self._lock = lock_handle
        self._results = open(paths.results, "a", encoding="utf-8")
        self._errors = open(paths.errors, "a", encoding="utf-8")
        self._keys = open(paths.keys, "a", encoding="utf-8")
        self._last_sync = time.monotonic()

    @classmethod
    def open(cls, results: str | os.PathLike) -> Journal:
        """Open (create or resume) the journal of ``results``.

        Raises:
            JournalError: another process holds the journal, or a line other than the last one of
                a file is not a journal line.
        """
        paths = JournalPaths.for_results(results)
        paths.results.parent.mkdir(parents=True, exist_ok=True)
        lock = open(paths.results, "a", encoding="utf-8")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            lock.close()
            raise JournalError(f"{paths.results}: another process is writing this file") from error
        try:
            done, summary = _recover(paths)
        except BaseException:
            lock.close()
            raise
        return cls(paths, done, summary, lock)

    def is_done(self, key: FileKey) -> bool:
        """Whether this version of the file (path, size, mtime) already has an outcome."""
        return key.digest in self.done

    def write_result(self, key: FileKey, record: dict) -> None:
        """Append a result line (``record`` as ``rawguard score --json`` prints it), then its key."""
        self._append(self._results, record, key)

    def write_error(self, key: FileKey, reason: str) -> None:
        """Append ``{"path", "reason"}`` to the errors file, then the key."""
        self._append(self._errors, {"path": key.path, "reason": reason}, key)

    def _append(self, handle, record: dict, key: FileKey) -> None:
        handle.write(json.dumps(record) + "\n")
        handle.flush()  # the outcome is on disk (page cache) before its key: a kill cannot reverse them
        self._keys.write(json.dumps(key.to_dict()) + "\n")
        self._keys.flush()
        if time.monotonic() - self._last_sync > FSYNC_INTERVAL_S:
            self.sync()

    def sync(self) -> None:
        for handle in (self._results, self._errors, self._keys):
            handle.flush()
            os.fsync(handle.fileno())
        self._last_sync = time.monotonic()

    def close(self) -> None:
        if self._results.closed:
            return
        self.sync()
        for handle in (self._results, self._errors, self._keys, self._lock):
            handle.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _recover(paths: JournalPaths) -> tuple[DoneSet, OpenSummary]:
    """Repair a journal after any kill and return its done set (see the module docstring)."""
    summary = OpenSummary(torn_bytes=sum(repair_torn_tail(p) for p in paths.all()))
    # Keys: the last key of a path wins; it is valid while the file still has that size and mtime
    # (a file gone from disk keeps its result: it may be on a volume that is not mounted).
    key_paths, key_digests, current = array("Q"), array("Q"), array("b")
    for number, record in _records(paths.keys):
        key = _key_of(record, f"{paths.keys}:{number}")
        now = file_key(key.path)
        key_paths.append(path_hash(key.path))
        key_digests.append(key.digest)
        current.append(now is None or now == key)
    key_hashes = _as_uint64(key_paths)
    keep_keys = last_occurrence(key_hashes) & (np.frombuffer(current, dtype=np.int8) != 0 if current else np.zeros(0, bool))
    summary.changed = int((last_occurrence(key_hashes) & ~keep_keys).sum())
    valid_paths = np.unique(key_hashes[keep_keys])
    # Outcomes: the last line of each validly keyed path, in either file.
    outcome_hashes = {p: _as_uint64(array("Q", (path_hash(r["path"]) for _, r in _records(p))))
                      for p in (paths.results, paths.errors)}
    both = np.concatenate([outcome_hashes[paths.results], outcome_hashes[paths.errors]])
    keep_both = last_occurrence(both) & np.isin(both, valid_paths)
    split = outcome_hashes[paths.results].shape[0]
    keep_outcome = {paths.results: keep_both[:split], paths.errors: keep_both[split:]}
    keep_keys &= np.isin(key_hashes, both[keep_both])  # a key whose outcome line is gone is void
    for path, keep in ((paths.results, keep_outcome[paths.results]), (paths.errors, keep_outcome[paths.errors]),
                       (paths.keys, keep_keys)):
        if not keep.all():
            summary.dropped_lines += int((~keep).sum())
            _rewrite_keeping(path, keep)
    done = DoneSet(_as_uint64(key_digests)[keep_keys])
    summary.done = len(done)
    return done, summary
