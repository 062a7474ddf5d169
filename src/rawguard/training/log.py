"""``RUN/metrics.jsonl``: one JSON object per line, one line per log step and per dev evaluation.

Lines are appended and flushed as they happen. On resume from a checkpoint at step ``k``, lines with
``step > k`` (written after that checkpoint by the killed run, possibly the last one half-written) are
dropped, so the resumed run re-writes them and the file ends up identical to an uninterrupted run's
(apart from timing fields).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rawguard.atomic import atomic_open


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All complete records of a metrics file (a torn last line is skipped)."""
    records = []
    path = Path(path)
    if not path.exists():
        return records
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def truncate_metrics(path: str | os.PathLike, step: int) -> int:
    """Keep only records with ``step <= step`` (atomic rewrite); returns how many were dropped."""
    path = Path(path)
    if not path.exists():
        return 0
    lines = path.read_text().splitlines()
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and int(record.get("step", 0)) <= step:
            kept.append(line)
    with atomic_open(path) as handle:
        handle.write("".join(f"{line}\n" for line in kept))
    return len(lines) - len(kept)


class MetricsLog:
    """Append-only writer (a no-op on non-zero DDP ranks: pass ``enabled=False``)."""

    def __init__(self, path: str | os.PathLike, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
