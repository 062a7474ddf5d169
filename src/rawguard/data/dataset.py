"""Training batches from a :class:`~rawguard.data.cache.Cache` (evaluation windows: :mod:`rawguard.scoring`).

Batches are int16 tensors ``[B, window]`` straight from the memory map (half the memory traffic of
float32); the model side converts with :func:`to_float`.

Policies (documented in ``docs/data.md``; which clips an epoch draws is :mod:`rawguard.data.sampling`'s):

- **long clips** (``length > window``): training takes a uniformly random crop; evaluation takes
  windows at :func:`rawguard.windows.window_starts` (hop apart, the last one aligned to the end of the clip).
- **short clips** (``length < window``): repeated end to end ("tiled") until the window is full,
  as the RawNet2 / AASIST baselines do, in training and evaluation alike. Zero padding would let a
  model learn "silence at the end = short clip", which correlates with class in several corpora.
- **determinism**: everything random in epoch ``e``, batch ``b`` comes from generators seeded by
  ``(seed, e)`` (order) and ``(seed, e, b)`` (crops), so ``epoch(e, start_batch=b)`` yields exactly
  the batches an uninterrupted epoch yields from ``b`` on, whatever was consumed before.
- **sharding** (DDP): one global order per epoch; global batch ``b`` is
  ``order[b*B*W : (b+1)*B*W]`` for batch size ``B`` and world size ``W``, and rank ``r`` takes the
  ``r``-th slice of ``B``. Crops are drawn for the whole global batch, so the ranks together see
  exactly what one process with batch ``B*W`` would see. The incomplete last global batch is
  dropped (every rank must run the same number of steps).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from rawguard.conventions import DEFAULT_WINDOW, INT16_SCALE
from rawguard.data.cache import Cache
from rawguard.data.sampling import CROP_STREAM, EpochOrder, Sampling
from rawguard.windows import fill_window



def to_float(x: torch.Tensor) -> torch.Tensor:
    """int16 batch ``[B, T]`` -> float32 ``[B, T]`` in [-1, 1) (``x / INT16_SCALE``), on x's device."""
    if x.dtype != torch.int16:
        raise TypeError(f"expected an int16 batch, got {x.dtype}")
    return x.float() / INT16_SCALE


def _prefetch(batches: Iterable, depth: int) -> Iterator:
    """Run ``batches`` in a background thread, ``depth`` items ahead (numpy copies release the GIL)."""
    if depth <= 0:
        yield from batches
        return
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def offer(item) -> bool:
        # Never block forever: the consumer may have left (break, exception) with the queue full.
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not offer(batch):
                    return
            offer(done)
        except BaseException as error:  # re-raised in the consumer
            offer(error)

    worker = threading.Thread(target=produce, name="rawguard-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = slots.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()  # consumer left early (break, exception): let the producer finish
        worker.join()


class TrainBatches:
    """Deterministic, shardable, optionally class-balanced training batches from a cache.

    Args:
        cache: an open :class:`Cache`.
        window: samples per training window (default :data:`DEFAULT_WINDOW`).
        batch_size: windows per batch *per rank*; the global batch is ``batch_size * world_size``.
        seed: base seed; batches are a pure function of ``(seed, epoch, batch index)``.
        sampling: which clips an epoch draws (:class:`rawguard.data.sampling.Sampling`: class
            balance, copy share, system balance); default: every clip once per epoch.
        rank, world_size: DDP sharding (see the module docstring).
        prefetch: batches prepared ahead in a background thread (0: none).
        pin_memory: put ``x`` in page-locked memory for faster, asynchronous copies to a GPU
            (``x.to(device, non_blocking=True)``); ignored when CUDA is not available.

    Raises:
        ValueError: bad sizes or rank; :class:`rawguard.data.sampling.SamplingError` (a ValueError)
            for a sampling policy the cache cannot serve.
    """

    def __init__(self, cache: Cache, window: int = DEFAULT_WINDOW, batch_size: int = 32, seed: int = 0,
                 sampling: Sampling | None = None, rank: int = 0, world_size: int = 1, prefetch: int = 2,
                 pin_memory: bool = False):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        if window <= 0 or batch_size <= 0:
            raise ValueError(f"window and batch_size must be positive, got {window}, {batch_size}")
        if len(cache) == 0:
            raise ValueError(f"{cache.directory}: empty cache")
        self.cache, self.window, self.batch_size, self.seed = cache, window, batch_size, seed
        self.rank, self.world_size, self.prefetch = rank, world_size, prefetch
        self.pin_memory = pin_memory and torch.cuda.is_available()
        self.sampling = Sampling() if sampling is None else sampling
        self.epoch_order = EpochOrder(cache.labels, cache.systems, self.sampling, seed, str(cache.directory))
        """``epoch_order(epoch)``: the epoch's clip indices, ``int64 (epoch_size,)`` (see EpochOrder)."""
        self.epoch_size = self.epoch_order.epoch_size
        global_batch = batch_size * world_size
        self.batches_per_epoch = self.epoch_size // global_batch
        if self.batches_per_epoch == 0:
            raise ValueError(f"{cache.directory}: {self.epoch_size} windows per epoch is less than one global "
                             f"batch ({batch_size} x {world_size} ranks)")

    def _batch(self, order: np.ndarray, epoch: int, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        global_batch = self.batch_size * self.world_size
        indices = order[b * global_batch:(b + 1) * global_batch]
        # Crop positions for the whole global batch, so sharding does not change what is seen.
        spans = np.maximum(self.cache.lengths[indices] - self.window + 1, 1)
        starts = (np.random.default_rng([self.seed, epoch, b, CROP_STREAM]).random(global_batch) * spans).astype(np.int64)
        mine = slice(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
        x = torch.empty((self.batch_size, self.window), dtype=torch.int16, pin_memory=self.pin_memory)
        rows = x.numpy()  # shares x's memory: windows are copied once, straight into the batch
        for row, (i, start) in enumerate(zip(indices[mine].tolist(), starts[mine].tolist())):
            fill_window(rows[row], self.cache.waveform(i), start)
        return x, torch.from_numpy(self.cache.labels[indices[mine]])

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(x int16 [B, window], y int64 [B])`` for batches ``start_batch .. batches_per_epoch-1``."""
        if not 0 <= start_batch <= self.batches_per_epoch:
            raise ValueError(f"start_batch {start_batch} outside 0..{self.batches_per_epoch}")
        order = self.epoch_order(epoch)
        batches = (self._batch(order, epoch, b) for b in range(start_batch, self.batches_per_epoch))
        return _prefetch(batches, self.prefetch)

    def __len__(self) -> int:
        return self.batches_per_epoch
