"""One command's worth of archive scoring: output layout, ranks, resume, merge.

``--out results.jsonl`` (a name ending in ``.jsonl``): one process writes that journal.
``--out DIR`` (anything else, required with several ranks): rank ``r`` writes
``DIR/part-<r>.jsonl`` and, when every rank is done, rank 0 merges the parts into
``DIR/results.jsonl`` (:mod:`rawguard.archive.merge`). Ranks come from torchrun's environment
(``RANK``, ``WORLD_SIZE``; gloo on CPU, NCCL on GPUs); each scores its shard of the file list
(:func:`rawguard.archive.files.shard_of`) and skips files done in any part of ``DIR``, so a rerun
with more or fewer ranks does not score a finished file again.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from rawguard.archive.journal import DoneSet, Journal, read_done_keys
from rawguard.archive.merge import list_parts, merge_parts, part_path
from rawguard.archive.pipeline import ArchiveSummary, score_archive

__all__ = ["ArchiveRun", "RankInfo", "rank_info", "output_paths", "run_archive"]

# Ranks finish their shards at different times and wait for the slowest before the merge: the
# process group's default 30-minute timeout would abort a long archive at that barrier.
BARRIER_TIMEOUT = timedelta(days=7)


@dataclass(frozen=True)
class RankInfo:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0


def rank_info() -> RankInfo:
    """Read ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (set by torchrun)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return RankInfo()
    return RankInfo(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))


def output_paths(out: str | os.PathLike, ranks: RankInfo) -> tuple[Path, Path | None]:
    """``(this rank's journal, folder to merge or None)`` for ``--out``.

    Raises:
        ValueError: a ``.jsonl`` file with several ranks (each rank needs its own part).
    """
    out = Path(out)
    if out.suffix == ".jsonl":
        if ranks.world_size > 1:
            raise ValueError(f"--out {out}: with {ranks.world_size} ranks give a folder (each rank writes part-<rank>.jsonl there)")
        return out, None
    return part_path(out, ranks.rank), out


@dataclass
class ArchiveRun:
    """What :func:`run_archive` did on this rank."""

    summary: ArchiveSummary
    journal: Path
    resumed: int
    dropped_lines: int
    torn_bytes: int
    merged: tuple[int, int] | None = None
    merged_path: Path | None = None


def _done_elsewhere(merge_dir: Path | None, own: Path) -> DoneSet:
    done = DoneSet()
    for part in list_parts(merge_dir) if merge_dir is not None else []:
        if part.results != own:
            done = done.union(read_done_keys(part.keys))
    return done


def run_archive(
    paths: Iterable[str],
    out: str | os.PathLike,
    scorer,
    make_result: Callable,
    workers: int,
    ranks: RankInfo | None = None,
    dist_backend: str = "gloo",
    on_file: Callable[[], None] | None = None,
) -> ArchiveRun:
    """Score ``paths`` into ``out`` on this rank; with several ranks, rank 0 merges at the end.

    Args:
        scorer, make_result, workers, on_file: see :func:`rawguard.archive.pipeline.score_archive`.
        ranks: this process's rank (default: from torchrun's environment).
        dist_backend: process-group backend with several ranks (``gloo``; ``nccl`` on GPUs).

    Raises:
        ValueError, JournalError, DecoderCrashed, ScoringError.
    """
    ranks = ranks or rank_info()
    journal_path, merge_dir = output_paths(out, ranks)
    group = _join_group(ranks, dist_backend)
    finished = False
    try:
        with Journal.open(journal_path) as journal:
            found = journal.summary
            summary = score_archive(paths, journal, scorer, make_result, workers, ranks.rank, ranks.world_size,
                                    _done_elsewhere(merge_dir, journal_path), on_file)
        run = ArchiveRun(summary, journal_path, found.done, found.dropped_lines, found.torn_bytes)
        if group is not None:
            group.barrier()  # every part is complete before rank 0 reads them
        if merge_dir is not None and ranks.rank == 0:
            run.merged, run.merged_path = merge_parts(merge_dir), merge_dir / "results.jsonl"
        finished = True
        return run
    finally:
        if group is not None:
            if finished:
                group.barrier()  # no rank tears down while rank 0 still talks to it
            group.destroy_process_group()


def _join_group(ranks: RankInfo, backend: str):
    if ranks.world_size <= 1:
        return None
    import torch
    import torch.distributed as dist

    if backend == "nccl":  # NCCL's barrier runs on the current device: this rank's, not GPU 0
        torch.cuda.set_device(ranks.local_rank % torch.cuda.device_count())
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=BARRIER_TIMEOUT)
    return dist
