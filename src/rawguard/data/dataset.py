"""Training batches from a :class:`~rawguard.data.cache.Cache` (evaluation windows: :mod:`rawguard.scoring`).

Batches are int16 tensors ``[B, window]`` straight from the memory map (half the memory traffic of
float32); the model side converts with :func:`to_float`.

Policies (documented in ``docs/data.md``):

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

from rawguard.conventions import BONAFIDE, COPY_SYSTEM_PREFIX, DEFAULT_WINDOW, INT16_SCALE, SPOOF
from rawguard.data.cache import Cache
from rawguard.windows import fill_window

# Distinguishes the crop stream from the order stream of the same (seed, epoch).
_ORDER_STREAM, _CROP_STREAM = 0, 1


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


def _repeated_permutations(members: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` draws from ``members``: concatenated permutations, cut (each appears equally often, +-1)."""
    repeats = -(-count // len(members))
    return np.concatenate([rng.permutation(members) for _ in range(repeats)])[:count]


def _weighted_draws(members: np.ndarray, weights: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` draws from ``members`` in proportion to ``weights``, shuffled.

    Systematic sampling: each member is drawn ``floor`` or ``ceil`` of ``count * w / sum(w)`` times,
    so an epoch holds what the weights ask for, not a multinomial's noisy version of it.
    """
    cumulative = np.cumsum(weights / weights.sum())
    positions = (rng.random() + np.arange(count)) / count
    picks = np.minimum(np.searchsorted(cumulative, positions, side="right"), len(members) - 1)
    return rng.permutation(members[picks])


def group_weights(groups: list[str], members: np.ndarray, balance: float, within: list[str] | None = None,
                  within_balance: float = 0.0) -> np.ndarray:
    """Draw weights of the clips ``members`` that give each group a share ``∝ count ** (1 - balance)``.

    Groups are spoofing systems (``data.system_balance``) or bona fide speakers
    (``data.speaker_balance``). ``balance`` 0: every clip equally often (groups in proportion to
    their clip counts); 1: every group equally often, however few clips it has; in between, a
    compromise (0.5: ∝ sqrt(count)). On a corpus where a few systems hold most spoofs, the rare
    ones are otherwise seen too seldom to be learnt, and the common ones' artefacts dominate the
    learnt cue; where a few readers hold most bona fide clips, their voices become what "bona
    fide" sounds like.

    With ``within`` (e.g. ``cache.speakers`` inside systems, ``data.spoof_speaker_balance``), each
    group's share is split the same way among its subgroups, with ``within_balance``: a system
    whose train clips are mostly one speaker's then shows its other voices more often.

    Args:
        groups: the group of every clip of the cache (``cache.systems`` or ``cache.speakers``).
        members: cache indices of the clips to weight, ``int64 (N,)``.
        balance: in ``[0, 1]``.
        within: optional subgroup of every clip of the cache.
        within_balance: in ``[0, 1]``; 0 (or no ``within``): every clip of a group equally often.

    Returns:
        ``float64 (N,)`` weights, summing to 1.
    """
    if len(members) == 0:
        return np.zeros(0)
    names = np.array([groups[i] for i in members])
    _, inverse, counts = np.unique(names, return_inverse=True, return_counts=True)
    share = counts.astype(np.float64) ** (1.0 - balance)  # per group
    if within is None or not within_balance:
        weights = share[inverse] / counts[inverse]  # count**(1-b) per group / count per clip
        return weights / weights.sum()
    pairs = np.array([f"{groups[i]}\x00{within[i]}" for i in members])
    _, pair_inverse, pair_counts = np.unique(pairs, return_inverse=True, return_counts=True)
    inner = pair_counts.astype(np.float64) ** (1.0 - within_balance)  # per (group, subgroup)
    inner_total = np.zeros(len(counts))
    np.add.at(inner_total, inverse, inner[pair_inverse] / pair_counts[pair_inverse])  # sum over clips = sum over pairs
    weights = share[inverse] * inner[pair_inverse] / inner_total[inverse] / pair_counts[pair_inverse]
    return weights / weights.sum()


def speaker_matched_weights(speakers: list[str], bonafide: np.ndarray, spoofs: list[tuple[np.ndarray, float]]
                            ) -> np.ndarray:
    """Draw weights of the bona fide clips ``bonafide`` that match each speaker's share of spoof draws.

    Copy-synthesis and voice-conversion spoofs carry the speaker they copy or imitate. When a speaker's
    share of the spoof draws is larger than its share of the bona fide draws (one LJSpeech reader
    with hundreds of vocoded copies, a VCTK voice that a VC system targets), the speaker itself
    becomes evidence for "spoof", a shortcut that fails on unseen speakers. Each speaker's bona fide
    share is raised to ``max(uniform share, spoof share)`` (then all renormalised), so no speaker
    is more often a spoof than bona fide; speakers without spoofs keep their uniform weight and
    spoofs of speakers without bona fide clips (TTS voices) do not count.

    Args:
        speakers: speaker of every clip of the cache.
        bonafide: cache indices of the bona fide clips, ``int64 (Nb,)``.
        spoofs: ``(cache indices, share of the spoof draws)`` per spoof group; within a group every
            clip is drawn equally often.

    Returns:
        ``float64 (Nb,)`` weights, summing to 1.
    """
    bonafide_speakers = np.array([speakers[i] for i in bonafide.tolist()])
    names, per_clip_speaker, bonafide_counts = np.unique(bonafide_speakers, return_inverse=True, return_counts=True)
    spoof_share = np.zeros(len(names))
    position = {name: k for k, name in enumerate(names.tolist())}
    for members, share in spoofs:
        if share <= 0 or len(members) == 0:
            continue
        for i in members.tolist():
            k = position.get(speakers[i])
            if k is not None:
                spoof_share[k] += share / len(members)
    speaker_share = np.maximum(bonafide_counts / len(bonafide), spoof_share)
    weights = speaker_share[per_clip_speaker] / bonafide_counts[per_clip_speaker]
    return weights / weights.sum()


def _check_balance(name: str, value: float, balanced: bool, speaker_matched: bool) -> None:
    """A ``*_balance`` option is in [0, 1], needs balanced sampling, and excludes ``speaker_matched``."""
    if not 0 <= value <= 1:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    if value and not balanced:
        raise ValueError(f"{name} needs balanced sampling")
    if value and speaker_matched:
        raise ValueError(f"{name} and speaker_matched together are not supported")


class TrainBatches:
    """Deterministic, shardable, optionally class-balanced training batches from a cache.

    Args:
        cache: an open :class:`Cache`.
        window: samples per training window (default :data:`DEFAULT_WINDOW`).
        batch_size: windows per batch *per rank*; the global batch is ``batch_size * world_size``.
        seed: base seed; batches are a pure function of ``(seed, epoch, batch index)``.
        balanced: draw each epoch half bona fide, half spoof (see :meth:`epoch_order`).
        copy_share: with ``balanced``, the share of the spoof draws that come from copy-synthesis
            spoofs (systems starting with :data:`COPY_SYSTEM_PREFIX`); ``None``: no split, each
            spoof clip is drawn equally often.
        speaker_matched: with ``balanced``, draw each speaker's bona fide clips at least as often as
            spoofs of that speaker (:func:`speaker_matched_weights`); otherwise every bona fide clip
            equally often.
        system_balance: with ``balanced``, how evenly the spoofing systems share their group's draws
            (:func:`group_weights`): 0 = in proportion to their clip counts (each clip equally
            often), 1 = every system equally often, 0.5 = in proportion to the square root.
        speaker_balance: with ``balanced``, the same for the bona fide speakers' share of the bona
            fide draws.
        spoof_speaker_balance: with ``balanced``, the same for the voices (speaker column) within
            each spoofing system's share of the spoof draws.
        rank, world_size: DDP sharding (see the module docstring).
        prefetch: batches prepared ahead in a background thread (0: none).
        pin_memory: put ``x`` in page-locked memory for faster, asynchronous copies to a GPU
            (``x.to(device, non_blocking=True)``); ignored when CUDA is not available.
        targets: optional int64 ``[len(cache)]`` per-clip targets of an auxiliary task (e.g.
            speaker ids for speaker-adversarial training); when given, every batch is
            ``(x, y, targets[batch clips])``. The draws do not depend on it.
    """

    def __init__(self, cache: Cache, window: int = DEFAULT_WINDOW, batch_size: int = 32, seed: int = 0,
                 balanced: bool = False, rank: int = 0, world_size: int = 1, prefetch: int = 2,
                 pin_memory: bool = False, copy_share: float | None = None, speaker_matched: bool = False,
                 targets: np.ndarray | None = None, system_balance: float = 0.0, speaker_balance: float = 0.0,
                 spoof_speaker_balance: float = 0.0):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        if window <= 0 or batch_size <= 0:
            raise ValueError(f"window and batch_size must be positive, got {window}, {batch_size}")
        if len(cache) == 0:
            raise ValueError(f"{cache.directory}: empty cache")
        self.cache, self.window, self.batch_size, self.seed = cache, window, batch_size, seed
        self.balanced, self.rank, self.world_size, self.prefetch = balanced, rank, world_size, prefetch
        self.pin_memory = pin_memory and torch.cuda.is_available()
        if targets is not None and len(targets) != len(cache):
            raise ValueError(f"targets: {len(targets)} values for a cache of {len(cache)} clips")
        self.targets = None if targets is None else np.asarray(targets, dtype=np.int64)
        self._by_class = [np.flatnonzero(cache.labels == c) for c in (SPOOF, BONAFIDE)]
        if balanced and any(len(members) == 0 for members in self._by_class):
            raise ValueError(f"{cache.directory}: balanced sampling needs both classes in the cache")
        self.copy_share = copy_share
        self._spoof_groups: list[tuple[np.ndarray, float]] | None = None
        if copy_share is not None:
            if not balanced or not 0 <= copy_share <= 1:
                raise ValueError(f"copy_share needs balanced sampling and a value in [0, 1], got {copy_share}")
            spoofs = self._by_class[0]
            is_copy = np.array([cache.systems[i].startswith(COPY_SYSTEM_PREFIX) for i in spoofs], dtype=bool)
            groups = [(spoofs[~is_copy], 1.0 - copy_share), (spoofs[is_copy], copy_share)]
            empty = [name for (members, share), name in zip(groups, ("corpus", "copy-synthesis")) if share > 0
                     and len(members) == 0]
            if empty:
                raise ValueError(f"{cache.directory}: copy_share {copy_share} asks for {empty[0]} spoofs, "
                                 "but the cache has none")
            self._spoof_groups = groups
        for name, value in (("system_balance", system_balance), ("spoof_speaker_balance", spoof_speaker_balance),
                            ("speaker_balance", speaker_balance)):
            _check_balance(name, value, balanced, speaker_matched)
        self.system_balance, self.spoof_speaker_balance = system_balance, spoof_speaker_balance
        # Fixed per cache: each spoof group's clip weights (the groups epoch_order draws from, in order).
        self._spoof_weights: list[np.ndarray] | None = None
        if system_balance or spoof_speaker_balance:
            groups = [members for members, _ in self._spoof_groups] if self._spoof_groups else [self._by_class[0]]
            self._spoof_weights = [
                group_weights(cache.systems, members, system_balance, cache.speakers, spoof_speaker_balance)
                for members in groups
            ]
        self.speaker_balance = speaker_balance
        self._bonafide_weights: np.ndarray | None = None
        if speaker_balance:
            self._bonafide_weights = group_weights(cache.speakers, self._by_class[1], speaker_balance)
        if speaker_matched:
            if not balanced:
                raise ValueError("speaker_matched needs balanced sampling")
            spoof_groups = self._spoof_groups or [(self._by_class[0], 1.0)]
            self._bonafide_weights = speaker_matched_weights(cache.speakers, self._by_class[1], spoof_groups)
        self.epoch_size = 2 * max(len(m) for m in self._by_class) if balanced else len(cache)
        global_batch = batch_size * world_size
        self.batches_per_epoch = self.epoch_size // global_batch
        if self.batches_per_epoch == 0:
            raise ValueError(f"{cache.directory}: {self.epoch_size} windows per epoch is less than one global "
                             f"batch ({batch_size} x {world_size} ranks)")

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Clip indices of one epoch, ``int64 (epoch_size,)``, identical on every rank.

        Plain: a permutation of all clips. Balanced: both classes contribute ``max(class sizes)``
        draws, the larger class as one permutation, the smaller one as as many concatenated
        permutations as needed (each of its clips appears equally often, +-1), then all shuffled.
        With ``copy_share``, the spoof draws are split between corpus spoofs and copies in that
        proportion, each group drawn the same way. With ``speaker_matched`` or ``speaker_balance``,
        the bona fide draws follow :func:`speaker_matched_weights` or :func:`group_weights` instead.
        """
        rng = np.random.default_rng([self.seed, epoch, _ORDER_STREAM])
        if not self.balanced:
            return rng.permutation(len(self.cache))
        per_class = self.epoch_size // 2
        if self._spoof_groups is None:
            spoof_groups = [(self._by_class[0], per_class)]
        else:  # the spoof half split between corpus spoofs and copies
            n_copies = int(round(self._spoof_groups[1][1] * per_class))
            spoof_groups = [(self._spoof_groups[0][0], per_class - n_copies), (self._spoof_groups[1][0], n_copies)]
        # Spoofs first, then bona fide: the order of the draws from rng is that of earlier versions.
        if self._spoof_weights is not None:
            draws = [_weighted_draws(members, weights, count, rng)
                     for (members, count), weights in zip(spoof_groups, self._spoof_weights) if count > 0]
        else:
            draws = [_repeated_permutations(members, count, rng) for members, count in spoof_groups if count > 0]
        bonafide = self._by_class[1]
        if self._bonafide_weights is None:
            draws.append(_repeated_permutations(bonafide, per_class, rng))
        else:
            draws.append(_weighted_draws(bonafide, self._bonafide_weights, per_class, rng))
        return rng.permutation(np.concatenate(draws))

    def _batch(self, order: np.ndarray, epoch: int, b: int) -> tuple[torch.Tensor, ...]:
        global_batch = self.batch_size * self.world_size
        indices = order[b * global_batch:(b + 1) * global_batch]
        # Crop positions for the whole global batch, so sharding does not change what is seen.
        spans = np.maximum(self.cache.lengths[indices] - self.window + 1, 1)
        starts = (np.random.default_rng([self.seed, epoch, b, _CROP_STREAM]).random(global_batch) * spans).astype(np.int64)
        mine = slice(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
        x = torch.empty((self.batch_size, self.window), dtype=torch.int16, pin_memory=self.pin_memory)
        rows = x.numpy()  # shares x's memory: windows are copied once, straight into the batch
        for row, (i, start) in enumerate(zip(indices[mine].tolist(), starts[mine].tolist())):
            fill_window(rows[row], self.cache.waveform(i), start)
        y = torch.from_numpy(self.cache.labels[indices[mine]])
        if self.targets is None:
            return x, y
        return x, y, torch.from_numpy(self.targets[indices[mine]])

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
        """Yield ``(x int16 [B, window], y int64 [B])`` for batches ``start_batch .. batches_per_epoch-1``
        (with a third item, the batch's ``targets`` int64 ``[B]``, when the source has them)."""
        if not 0 <= start_batch <= self.batches_per_epoch:
            raise ValueError(f"start_batch {start_batch} outside 0..{self.batches_per_epoch}")
        order = self.epoch_order(epoch)
        batches = (self._batch(order, epoch, b) for b in range(start_batch, self.batches_per_epoch))
        return _prefetch(batches, self.prefetch)

    def __len__(self) -> int:
        return self.batches_per_epoch
