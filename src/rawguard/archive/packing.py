"""Pack the decoders' window chunks into full model batches (:class:`rawguard.scoring.WindowBatch`).

The decoders send each file's windows in chunks (:mod:`rawguard.archive.decode`), files from
different decoders interleaved; the model wants batches of exactly ``batch_size`` windows whatever
the files' lengths. :func:`pack_decoded` copies windows into full batches in arrival order and
tells :meth:`rawguard.scoring.WindowScorer.score_batches` which file each row belongs to (the task
number is the stream position and the key); the scorer regroups the scores per file. A file's
chunks arrive in window order (one decoder decodes a whole file), which is all the scorer needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

from rawguard.scoring import WindowBatch
from rawguard.windows import fill_window

__all__ = ["pack_decoded"]


def pack_decoded(
    messages: Iterable[tuple],
    batch_size: int,
    window: int | None,
    min_samples: int = 1,
    on_error: Callable[[int, str], None] | None = None,
) -> Iterator[WindowBatch]:
    """Full batches from decoder messages; error messages go to ``on_error(task, reason)``.

    Args:
        messages: ``("windows", task, length, first, starts, windows float32 [w, window])`` and
            ``("error", task, reason)`` tuples (:mod:`rawguard.archive.decode`).
        batch_size: windows per batch (every batch but the last is full).
        window: window length; ``None``: whole recordings, one per batch (tiled up to ``min_samples``).

    Yields:
        :class:`~rawguard.scoring.WindowBatch` whose ``owners`` and ``opened`` positions are task numbers.
    """
    x = np.empty((batch_size, window), dtype=np.float32) if window is not None else None
    owners: list[int] = []
    opened: list = []
    for message in messages:
        if message[0] == "error":
            if on_error is not None:
                on_error(message[1], message[2])
            continue
        _, task, length, first, starts, windows = message
        if window is None:
            whole = np.empty((1, max(length, min_samples)), dtype=np.float32)
            fill_window(whole[0], windows[0], 0)
            yield WindowBatch(whole, np.array([task], dtype=np.int64), [(task, task, starts, length)])
            continue
        if first == 0:  # the scorer sizes a file's scores from its starts: the first chunk has them all
            opened.append((task, task, starts, length))
        offset = 0
        while offset < windows.shape[0]:
            count = min(batch_size - len(owners), windows.shape[0] - offset)
            x[len(owners):len(owners) + count] = windows[offset:offset + count]
            owners.extend([task] * count)
            offset += count
            if len(owners) == batch_size:
                yield WindowBatch(x, np.array(owners, dtype=np.int64), opened)
                x, owners, opened = np.empty_like(x), [], []
    if owners:
        yield WindowBatch(x[: len(owners)], np.array(owners, dtype=np.int64), opened)
