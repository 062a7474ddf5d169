"""Decode-once cache, the writer: ``rawguard prepare`` decodes every item of a protocol once into a cache folder.

The folder's layout and its reader are :mod:`rawguard.data.cache`. While :func:`prepare_cache`
runs, the folder also holds ``prepare.json`` (fingerprint of the items and options) and
``journal.tsv`` (one line per finished item, in protocol order). Each clip's samples are written
to the kernel *before* its journal line, so after a SIGKILL the journal is a prefix of the work
that is really on disk; a re-run truncates ``samples.int16`` to the journalled offset and goes on
from the next item. The result is byte-identical to an uninterrupted run, because clips are always
appended in protocol order and nothing in the output depends on timing.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

from rawguard.atomic import fsync_directory, write_text_atomic
from rawguard.audio import AudioError, load_audio
from rawguard.conventions import INT16_SCALE, SAMPLE_RATE, label_name
from rawguard.data.cache import (CACHE_FORMAT, CACHE_VERSION, COMPLETE_FILE, INDEX_COLUMNS, INDEX_FILE, META_FILE,
                                  REJECTED_FILE, SAMPLES_FILE, Cache, CacheError)
from rawguard.data.protocols import Item
from rawguard.progress import progress_bar

STATE_FILE = "prepare.json"
JOURNAL_FILE = "journal.tsv"
LOCK_FILE = ".prepare.lock"

_log = logging.getLogger(__name__)

# fsync at most this often: durable against power loss without an fsync per clip.
_FSYNC_SECONDS = 2.0


# ----------------------------------------------------------------------------------------------
# Decoding (runs in worker processes)


def to_int16(wave: np.ndarray) -> np.ndarray:
    """float32 ``(T,)`` in [-1, 1] -> little-endian int16 ``(T,)`` (``round(x * INT16_SCALE)``, clipped)."""
    return np.clip(np.rint(wave * INT16_SCALE), -32768, 32767).astype("<i2")


def _decode(task: tuple[str, int, float | None]) -> tuple[bool, bytes | str]:
    """Worker: ``(True, int16 bytes)`` or ``(False, reason)``; never raises for one bad file."""
    path, sample_rate, max_duration = task
    try:
        return True, to_int16(load_audio(path, sample_rate, max_duration)).tobytes()
    except AudioError as error:
        return False, error.reason
    except Exception as error:  # a decoder bug on one file must not abort a 70k-file run
        return False, f"unexpected decoder error: {type(error).__name__}: {error}"


def _worker_init(parent: int) -> None:
    """Make workers die with the parent: a SIGKILLed prepare must not leave decoders running."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is handled once, by the parent


def default_workers() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@contextlib.contextmanager
def _decoder(workers: int, n_tasks: int) -> Iterator[Callable[[list], Iterator[tuple[bool, bytes | str]]]]:
    """A function mapping tasks to decode results in task order, in ``workers`` processes.

    ``workers <= 1`` (or a single task) decodes in this process. On Linux the pool forks: it starts
    in milliseconds and, unlike spawn, does not re-import the caller's ``__main__`` (which breaks
    scripts without a main guard and ``python -`` input). Elsewhere the platform default is used.
    The pool is created before the progress bar starts its monitor thread.
    """
    if workers <= 1 or n_tasks <= 1:
        yield lambda tasks: map(_decode, tasks)
        return
    method = "fork" if sys.platform.startswith("linux") else None
    with multiprocessing.get_context(method).Pool(min(workers, n_tasks), initializer=_worker_init, initargs=(os.getpid(),)) as pool:
        yield lambda tasks: pool.imap(_decode, tasks, chunksize=4)


# ----------------------------------------------------------------------------------------------
# Small file helpers


_TSV_UNSAFE = str.maketrans({"\t": " ", "\n": " ", "\r": " "})


def _clean(text: str) -> str:
    """One TSV cell: tabs and line breaks would break the row."""
    return str(text).translate(_TSV_UNSAFE)


def _fingerprint(items: Sequence[Item], sample_rate: int, max_duration: float | None) -> str:
    digest = hashlib.sha256(json.dumps([CACHE_VERSION, sample_rate, max_duration]).encode())
    for item in items:
        row = [item.utt_id, os.path.abspath(item.path), item.label, item.speaker, item.system, item.extra]
        digest.update(json.dumps(row, sort_keys=True).encode() + b"\n")
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------
# Journal: the crash-safe record of finished items


@dataclass
class _Entry:
    ok: bool
    length: int  # samples (0 when rejected)
    reason: str = ""


class _Journal:
    """Appends clips to ``samples.int16`` and one line per item to ``journal.tsv``, in order."""

    def __init__(self, directory: Path):
        self.samples_path = directory / SAMPLES_FILE
        self.journal_path = directory / JOURNAL_FILE
        self.entries: list[_Entry] = []
        self.offset = 0
        self._recover()
        self._samples = open(self.samples_path, "ab")
        self._journal = open(self.journal_path, "ab")
        self._last_sync = time.monotonic()

    def _recover(self) -> None:
        """Keep the longest consistent journal prefix; cut both files back to it."""
        raw = self.journal_path.read_bytes() if self.journal_path.exists() else b""
        size = self.samples_path.stat().st_size if self.samples_path.exists() else 0
        good_bytes = 0
        for line in raw.split(b"\n")[:-1]:  # the last piece lacks "\n": unfinished or empty
            entry = self._parse(line, len(self.entries))
            if entry is None or 2 * (self.offset + entry.length) > size:
                break  # damaged line, or samples that never reached the disk (power loss)
            self.entries.append(entry)
            self.offset += entry.length
            good_bytes += len(line) + 1
        with open(self.samples_path, "ab") as handle:
            handle.truncate(2 * self.offset)
        with open(self.journal_path, "ab") as handle:
            handle.truncate(good_bytes)

    @staticmethod
    def _parse(line: bytes, position: int) -> _Entry | None:
        parts = line.decode("utf-8", errors="replace").split("\t")
        if len(parts) != 4 or parts[0] != str(position) or parts[1] not in ("ok", "rej") or not parts[2].isdigit():
            return None
        return _Entry(parts[1] == "ok", int(parts[2]), parts[3])

    def append(self, result: tuple[bool, bytes | str]) -> None:
        ok, payload = result
        if ok:
            self._samples.write(payload)
            self._samples.flush()  # samples reach the kernel before the line that vouches for them
            entry = _Entry(True, len(payload) // 2)
        else:
            entry = _Entry(False, 0, _clean(payload))
        line = f"{len(self.entries)}\t{'ok' if entry.ok else 'rej'}\t{entry.length}\t{entry.reason}\n"
        self._journal.write(line.encode("utf-8"))
        self._journal.flush()
        self.entries.append(entry)
        self.offset += entry.length
        if time.monotonic() - self._last_sync > _FSYNC_SECONDS:
            self.sync()

    def sync(self) -> None:
        os.fsync(self._samples.fileno())
        os.fsync(self._journal.fileno())
        self._last_sync = time.monotonic()

    def close(self) -> None:
        self.sync()
        self._samples.close()
        self._journal.close()


# ----------------------------------------------------------------------------------------------
# Summary


@dataclass
class PrepareSummary:
    """What a cache holds: clip counts and seconds per class and per system."""

    out_dir: Path
    clips: int
    rejected: int
    resumed: int = 0  # items already finished by an earlier, interrupted run
    decoded: int = 0  # items decoded by this run
    seconds: float = 0.0
    per_class: dict[str, list] = field(default_factory=dict)  # name -> [clips, seconds]
    per_system: dict[str, list] = field(default_factory=dict)

    def _progress_note(self) -> str:
        if self.resumed and not self.decoded:
            return " (already complete: nothing decoded)"
        return f" (resumed: {self.resumed} items were already done)" if self.resumed else ""

    def format(self) -> str:
        """Human-readable table (clips and hours per class and system)."""
        lines = [f"cache {self.out_dir}: {self.clips} clips, {self.seconds / 3600:.3f} h, {self.rejected} rejected"
                 + self._progress_note()]
        for title, table in (("class", self.per_class), ("system", self.per_system)):
            lines.append(f"  {title:<12} {'clips':>8} {'hours':>9}")
            lines.extend(f"  {name:<12} {n:>8} {sec / 3600:>9.3f}" for name, (n, sec) in sorted(table.items()))
        return "\n".join(lines)


def _tally(labels: np.ndarray, systems: Sequence[str], lengths: np.ndarray, sample_rate: int):
    per_class: dict[str, list] = {}
    per_system: dict[str, list] = {}
    for label, system, length in zip(labels.tolist(), systems, lengths.tolist()):
        seconds = length / sample_rate
        for table, key in ((per_class, label_name(label)), (per_system, system)):
            entry = table.setdefault(key, [0, 0.0])
            entry[0] += 1
            entry[1] += seconds
    def rounded(table: dict[str, list]) -> dict[str, list]:  # sorted, millisecond seconds: stable JSON
        return {key: [n, round(sec, 3)] for key, (n, sec) in sorted(table.items())}

    return rounded(per_class), rounded(per_system)


# ----------------------------------------------------------------------------------------------
# prepare


@contextlib.contextmanager
def _exclusive(out_dir: Path, wait: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on ``out_dir`` (POSIX ``flock``; released by the kernel on SIGKILL).

    Two ``prepare`` runs appending to the same files would interleave clips: the second one fails,
    or with ``wait`` blocks until the first is done (and then finds its complete cache).
    """
    if fcntl is None:  # Windows: no advisory locks here, run one prepare per folder
        yield
        return
    lock_path = out_dir / LOCK_FILE
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise CacheError(f"{out_dir}: another `rawguard prepare` is writing this cache folder") from None
            _log.info("%s: another `rawguard prepare` is writing this cache folder; waiting for it", out_dir)
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        # The empty lock file stays: deleting it would let two later runs lock two different inodes.
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _check_items(items: Sequence[Item]) -> None:
    if not items:
        raise CacheError("no items to prepare")
    for item in items:
        for name in ("utt_id", "speaker", "system"):
            value = getattr(item, name)
            if not value or value != _clean(value):
                raise CacheError(f"item {item.utt_id!r}: field {name} {value!r} is empty or has a tab or line break")


_CACHE_FILES = (COMPLETE_FILE, META_FILE, INDEX_FILE, REJECTED_FILE, SAMPLES_FILE, JOURNAL_FILE, STATE_FILE)
_UNKNOWN = "unknown"  # fingerprint of cache files we cannot attribute: never equal to a real one


def _held_fingerprint(out_dir: Path) -> str | None:
    """Fingerprint of the (complete or unfinished) cache in ``out_dir``; None if it holds none."""
    for marker, source in ((COMPLETE_FILE, META_FILE), (STATE_FILE, STATE_FILE)):
        if (out_dir / marker).exists():
            try:
                return json.loads((out_dir / source).read_text()).get("fingerprint", _UNKNOWN)
            except (OSError, ValueError, AttributeError):
                return _UNKNOWN
    if (out_dir / SAMPLES_FILE).exists() or (out_dir / JOURNAL_FILE).exists():
        return _UNKNOWN
    return None


def _remove_cache(out_dir: Path) -> None:
    """Delete rawguard's cache files (only those) from ``out_dir``, ``COMPLETE`` first.

    Files are unlinked, never truncated: a process that still has the old ``samples.int16`` mapped
    keeps reading the old data instead of crashing with SIGBUS.
    """
    for name in _CACHE_FILES:
        (out_dir / name).unlink(missing_ok=True)
        if name == COMPLETE_FILE:
            fsync_directory(out_dir)  # from here on no reader can open the old cache
    fsync_directory(out_dir)


def _claim_folder(out_dir: Path, fingerprint: str, n_items: int, replace: bool) -> None:
    """Make ``out_dir`` hold (the start of) the cache with this fingerprint.

    A cache of other items/options there is replaced with a warning, or refused (``replace=False``):
    never mixed with the new one.
    """
    held = _held_fingerprint(out_dir)
    if held == fingerprint:
        return
    if held is not None:
        what = "a complete" if (out_dir / COMPLETE_FILE).exists() else "an unfinished"
        if not replace:
            raise CacheError(f"{out_dir}: holds {what} cache of a different protocol or options; "
                             "use another --out folder, delete this one, or allow replacing it")
        _log.warning("%s: holds %s cache of a different protocol or options: replacing it", out_dir, what)
        _remove_cache(out_dir)
    write_text_atomic(out_dir / STATE_FILE, json.dumps({"format": CACHE_FORMAT, "version": CACHE_VERSION,
                                                    "fingerprint": fingerprint, "items": n_items}) + "\n")
    fsync_directory(out_dir)


def prepare_cache(
    items: Sequence[Item],
    out_dir: str | os.PathLike,
    workers: int | None = None,
    progress: bool = True,
    sample_rate: int = SAMPLE_RATE,
    max_duration: float | None = None,
    replace: bool = True,
    wait: bool = False,
) -> PrepareSummary:
    """Decode every item once into a cache folder (atomic, resumable; see the module docstring).

    Args:
        items: utterances in the order they are stored (e.g. from :func:`read_protocol`).
        out_dir: cache folder (created). If it already holds the complete cache of the same items
            and options, nothing is decoded; an interrupted one is resumed.
        workers: decoder processes (default: all usable cores; ``<= 1`` decodes in this process).
        progress: show a tqdm bar (rate, ETA).
        sample_rate: stored sample rate.
        max_duration: reject clips longer than this (seconds); ``None``: no limit.
        replace: when ``out_dir`` holds a cache of *other* items or options, delete it (with a
            logged warning) and start over; ``False`` raises :class:`CacheError` instead.
        wait: when another ``prepare`` is writing ``out_dir``, wait for it to finish instead of
            failing (runs that share caches, e.g. two benchmark sweeps started together).

    Returns:
        :class:`PrepareSummary` (``rejected > 0`` means see ``rejected.tsv``).

    Raises:
        CacheError: the folder holds a cache of other items/options (``replace=False``), another
            ``prepare`` is writing it (without ``wait``), an item has an unusable field, or no file
            at all could be decoded (``rejected.tsv`` then lists why).
    """
    out_dir = Path(out_dir)
    _check_items(items)
    fingerprint = _fingerprint(items, sample_rate, max_duration)
    out_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(out_dir, wait):
        return _prepare(items, out_dir, fingerprint, workers, progress, sample_rate, max_duration, replace)


def _prepare(items: Sequence[Item], out_dir: Path, fingerprint: str, workers: int | None, progress: bool,
             sample_rate: int, max_duration: float | None, replace: bool) -> PrepareSummary:
    """The body of :func:`prepare_cache`, run while holding the folder's lock."""
    _claim_folder(out_dir, fingerprint, len(items), replace)
    if (out_dir / COMPLETE_FILE).exists():  # the same cache, finished earlier: nothing to do
        cache = Cache.open(out_dir)
        for name in (JOURNAL_FILE, STATE_FILE):  # left over if killed right after COMPLETE
            (out_dir / name).unlink(missing_ok=True)
        return _summary(out_dir, cache.labels, cache.systems, cache.lengths, sample_rate,
                        rejected=cache.meta["rejected"], resumed=len(items))
    journal = _Journal(out_dir)
    resumed = len(journal.entries)
    tasks = [(os.path.abspath(item.path), sample_rate, max_duration) for item in items[resumed:]]
    try:
        with _decoder(workers if workers is not None else default_workers(), len(tasks)) as decode:
            with progress_bar(total=len(items), initial=resumed, unit="clip", desc="prepare", disable=not progress,
                      smoothing=0.1) as bar:
                for result in decode(tasks):
                    journal.append(result)
                    bar.update(1)
    finally:
        journal.close()
    return _finish(out_dir, items, journal.entries, fingerprint, sample_rate, max_duration, resumed)


def _summary(out_dir, labels, systems, lengths, sample_rate, rejected, resumed, decoded=0) -> PrepareSummary:
    per_class, per_system = _tally(labels, systems, lengths, sample_rate)
    return PrepareSummary(out_dir, len(labels), rejected, resumed, decoded, float(lengths.sum()) / sample_rate,
                          per_class, per_system)


def _finish(out_dir: Path, items: Sequence[Item], entries: list[_Entry], fingerprint: str,
            sample_rate: int, max_duration: float | None, resumed: int) -> PrepareSummary:
    """Write index, rejected list and meta from the journal, then COMPLETE; drop the journal."""
    # rejected.tsv has no header so that its line count is the number of rejected files.
    index_rows, rejected_rows = ["\t".join(INDEX_COLUMNS)], []
    offset = 0
    kept: list[int] = []
    for position, (item, entry) in enumerate(zip(items, entries, strict=True)):
        path = _clean(os.path.abspath(item.path))
        if entry.ok:
            extra = json.dumps(item.extra, sort_keys=True, ensure_ascii=False)
            index_rows.append("\t".join([item.utt_id, str(offset), str(entry.length), label_name(item.label),
                                         item.speaker, item.system, path, _clean(extra)]))
            offset += entry.length
            kept.append(position)
        else:
            rejected_rows.append("\t".join([item.utt_id, path, entry.reason]))
    write_text_atomic(out_dir / REJECTED_FILE, "".join(row + "\n" for row in rejected_rows))
    if not kept:
        fsync_directory(out_dir)
        raise CacheError(f"{out_dir}: none of the {len(items)} files could be decoded; "
                         f"reasons in {out_dir / REJECTED_FILE}")
    labels = np.array([items[i].label for i in kept], dtype=np.int64)
    lengths = np.array([entries[i].length for i in kept], dtype=np.int64)
    summary = _summary(out_dir, labels, [items[i].system for i in kept], lengths, sample_rate,
                       rejected=len(items) - len(kept), resumed=resumed, decoded=len(items) - resumed)
    meta = {
        "format": CACHE_FORMAT, "version": CACHE_VERSION, "sample_rate": sample_rate, "dtype": "<i2",
        "int16_scale": INT16_SCALE, "clips": summary.clips, "rejected": summary.rejected,
        "samples": int(lengths.sum()), "seconds": round(summary.seconds, 3), "max_duration": max_duration,
        "per_class": summary.per_class, "per_system": summary.per_system, "fingerprint": fingerprint,
    }
    write_text_atomic(out_dir / INDEX_FILE, "\n".join(index_rows) + "\n")
    write_text_atomic(out_dir / META_FILE, json.dumps(meta, indent=1, sort_keys=True) + "\n")
    fsync_directory(out_dir)
    write_text_atomic(out_dir / COMPLETE_FILE, f"{CACHE_FORMAT} {CACHE_VERSION}\n")
    fsync_directory(out_dir)
    for name in (JOURNAL_FILE, STATE_FILE):
        (out_dir / name).unlink(missing_ok=True)
    return summary
