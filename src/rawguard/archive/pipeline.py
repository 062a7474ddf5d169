"""Score an archive: stream the file list, decode in parallel, score full batches, append results.

::

    file list (streamed) ─feeder thread─▶ tasks ─N decoder processes─▶ windows (bounded queue)
        ─pack_decoded─▶ WindowScorer (full batches across files) ─▶ per-file result ─▶ Journal

The feeder skips files outside this rank's shard (:func:`rawguard.archive.files.shard_of`) and
files whose ``(path, size, mtime)`` is already done; the model side writes each file's result as
soon as its last window is scored. Output order is completion order, not the listing's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from rawguard.archive.decode import DecodePool
from rawguard.archive.files import FileKey, file_key, iter_audio_files, shard_of
from rawguard.archive.journal import DoneSet, Journal
from rawguard.archive.packing import pack_decoded
from rawguard.conventions import SAMPLE_RATE
from rawguard.scoring import ScoredWave, WindowBatch, WindowScorer

__all__ = ["ArchiveSummary", "score_archive"]


@dataclass
class ArchiveSummary:
    """Counts of one :func:`score_archive` call (this rank's shard only)."""

    listed: int = 0
    skipped_done: int = 0
    scored: int = 0
    failed: int = 0
    audio_seconds: float = 0.0
    batches: int = 0
    wall_seconds: float = 0.0


class _Feeder(threading.Thread):
    """Streams the file list into the decode pool; keeps the keys of the files in flight."""

    def __init__(self, paths, pool: DecodePool, journal: Journal, also_done: DoneSet, rank: int, world_size: int,
                 summary: ArchiveSummary) -> None:
        super().__init__(name="rawguard-feeder", daemon=True)
        self.paths, self.pool, self.journal, self.also_done = paths, pool, journal, also_done
        self.rank, self.world_size, self.summary = rank, world_size, summary
        self.in_flight: dict[int, FileKey] = {}
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            for index, path in enumerate(iter_audio_files(self.paths)):
                if self.stop.is_set():
                    return
                if self.world_size > 1 and shard_of(path, self.world_size) != self.rank:
                    continue
                self.summary.listed += 1
                # A path that cannot be stat'ed still goes to a decoder, which reports why (missing,
                # not readable); size and mtime -1 mark it, so it is tried again once it exists.
                key = file_key(path) or FileKey(path, -1, -1)
                if self.journal.is_done(key) or key.digest in self.also_done:
                    self.summary.skipped_done += 1
                    continue
                self.in_flight[index] = key
                self.pool.submit(index, path)
        except BaseException as error:  # re-raised by the model side
            self.error = error
        finally:
            self.pool.finish()


def score_archive(
    paths: Iterable[str],
    journal: Journal,
    scorer: WindowScorer,
    make_result: Callable[[ScoredWave, str], dict],
    workers: int = 1,
    rank: int = 0,
    world_size: int = 1,
    also_done: DoneSet | None = None,
    on_file: Callable[[], None] | None = None,
) -> ArchiveSummary:
    """Score every audio file under ``paths`` not yet in ``journal`` (this rank's shard).

    Args:
        paths: files and folders (folders are walked recursively, lazily).
        journal: where results and errors go, and which files are done.
        scorer: the model and window policy (:class:`rawguard.scoring.WindowScorer`).
        make_result: ``(scored file, path)`` -> the result dict written for it.
        workers: decoder processes.
        rank, world_size: this process's shard of the file list.
        also_done: digests done elsewhere (other ranks' journals), skipped too.
        on_file: called after each file's line is written (progress).

    Returns:
        the counts; ``failed`` files are in the journal's errors file.

    Raises:
        DecoderCrashed: a decoder process died (rerun: finished files are kept).
        JournalError, ScoringError (e.g. non-finite model output).
    """
    summary = ArchiveSummary()
    started = time.perf_counter()
    with DecodePool(workers, scorer.window, scorer.hop) as pool:
        feeder = _Feeder(paths, pool, journal, also_done or DoneSet(), rank, world_size, summary)

        def failed(task: int, reason: str) -> None:
            journal.write_error(feeder.in_flight.pop(task), reason)
            summary.failed += 1
            _notify(on_file)

        def counted(batches: Iterable[WindowBatch]) -> Iterator[WindowBatch]:
            for batch in batches:
                summary.batches += 1
                yield batch

        feeder.start()
        finished = False
        try:
            batches = pack_decoded(pool.messages(), scorer.batch_size, scorer.window, scorer.min_samples, failed)
            for scored in scorer.score_batches(counted(batches)):
                key = feeder.in_flight.pop(scored.key)
                journal.write_result(key, make_result(scored, key.path))
                summary.scored += 1
                summary.audio_seconds += scored.length / SAMPLE_RATE
                _notify(on_file)
            finished = True
        finally:
            feeder.stop.set()
            if finished:  # after a failure the feeder may be blocked on a queue no one reads: leave it
                feeder.join()
    if feeder.error is not None:
        raise feeder.error
    summary.wall_seconds = time.perf_counter() - started
    return summary


def _notify(on_file: Callable[[], None] | None) -> None:
    if on_file is not None:
        on_file()
