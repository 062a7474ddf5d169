"""Merge the per-rank journals of a multi-process run into one results file (rank 0, at the end).

``DIR/part-<rank>.jsonl`` (and ``.errors.jsonl``) -> ``DIR/results.jsonl`` (and
``DIR/results.errors.jsonl``). Deterministic and idempotent: the output is rebuilt from the parts
each time (parts in rank order, lines in file order; a path found twice keeps its last line) and
replaces the previous one atomically, so re-running the merge, or the whole command, gives the same
files.
"""

from __future__ import annotations

import json
import os
import re
from array import array
from pathlib import Path

import numpy as np

from rawguard.archive.files import path_hash
from rawguard.archive.journal import JournalError, JournalPaths, last_occurrence
from rawguard.atomic import atomic_open

__all__ = ["part_path", "list_parts", "merge_parts", "MERGED_NAME"]

MERGED_NAME = "results.jsonl"
_PART = re.compile(r"^part-(\d+)\.jsonl$")


def part_path(out_dir: str | os.PathLike, rank: int) -> Path:
    """``DIR/part-<rank>.jsonl``: the journal of one rank."""
    return Path(out_dir) / f"part-{rank}.jsonl"


def list_parts(out_dir: str | os.PathLike) -> list[JournalPaths]:
    """The journals of every rank that ever wrote to ``out_dir``, in rank order."""
    found = []
    for path in Path(out_dir).iterdir() if Path(out_dir).is_dir() else ():
        match = _PART.match(path.name)
        if match:
            found.append((int(match.group(1)), JournalPaths.for_results(path)))
    return [paths for _, paths in sorted(found, key=lambda item: item[0])]


def _complete_lines(path: Path):
    if not path.exists():
        return
    with open(path, "rb") as handle:
        for line in handle:
            if line.endswith(b"\n"):  # a rank killed mid-line: its torn tail is not a result
                yield line


def _merge_files(sources: list[Path], target: Path) -> int:
    hashes = array("Q")
    for source in sources:
        for number, line in enumerate(_complete_lines(source), 1):
            try:
                hashes.append(path_hash(json.loads(line)["path"]))
            except (ValueError, KeyError, TypeError) as error:
                raise JournalError(f"{source}:{number}: not a result line with a 'path' ({error!r})") from error
    all_hashes = np.frombuffer(hashes, dtype=np.uint64) if hashes else np.zeros(0, np.uint64)
    keep = last_occurrence(all_hashes)
    with atomic_open(target, "wb") as out:
        flags = iter(keep.tolist())
        for source in sources:
            for line in _complete_lines(source):
                if next(flags):
                    out.write(line)
    return int(keep.sum())


def merge_parts(out_dir: str | os.PathLike) -> tuple[int, int]:
    """Merge every ``part-<rank>`` journal of ``out_dir``; returns ``(results, errors)`` line counts.

    Raises:
        JournalError: a part holds a line that is not a JSON object with a ``path``.
    """
    parts = list_parts(out_dir)
    merged = JournalPaths.for_results(Path(out_dir) / MERGED_NAME)
    results = _merge_files([p.results for p in parts], merged.results)
    errors = _merge_files([p.errors for p in parts], merged.errors)
    return results, errors
