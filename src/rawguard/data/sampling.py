"""Which clips an epoch of training draws: the ``data.sampling`` section and the epoch order it gives.

:class:`Sampling` is the whole policy, validated in one place and handed whole to
:class:`rawguard.data.dataset.TrainBatches`; :class:`EpochOrder` turns it and a cache into one
epoch's clip indices, a pure function of ``(seed, epoch)``.

- plain: every clip once per epoch, shuffled;
- ``balanced``: half the draws bona fide, half spoof (the smaller class repeated);
- ``copy_share``: of the spoof half, this share from copy-synthesis spoofs (systems ``synth-*``);
- ``system_balance``: spoofing systems share their group's draws in proportion to
  ``count ** (1 - system_balance)`` (0 = by clip counts, 1 = every system equally often).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rawguard.conventions import BONAFIDE, COPY_SYSTEM_PREFIX, SPOOF

# Distinguishes the order stream from the crop stream of the same (seed, epoch).
ORDER_STREAM, CROP_STREAM = 0, 1


class SamplingError(ValueError):
    """A sampling option is out of range, needs another one, or asks for clips the cache lacks."""


@dataclass
class Sampling:
    """The ``data.sampling`` section: how training draws clips (see the module docstring)."""

    balanced: bool = False
    """Draw bona fide and spoof clips equally often (an alternative to ``train.class_weights``)."""
    copy_share: float | None = None
    """With ``balanced``: the share of spoof draws taken from copy-synthesis spoofs (systems
    ``synth-*``, made by ``rawguard synth-spoof``); null = in proportion to their number."""
    system_balance: float = 0.0
    """With ``balanced``: how evenly spoofing systems share the spoof draws (within the corpus
    spoofs and within the copies): 0 = in proportion to their clip counts, 1 = every system
    equally often, 0.5 = in proportion to the square root of the counts."""

    def validate(self, prefix: str = "data.sampling") -> Sampling:
        """Raise :class:`SamplingError` naming ``prefix.<field>`` for the first bad option."""
        if not isinstance(self.balanced, bool):
            raise SamplingError(f"{prefix}.balanced: expected true or false, got {self.balanced!r}")
        if self.copy_share is not None:
            if not 0 <= self.copy_share <= 1:
                raise SamplingError(f"{prefix}.copy_share: must be null or in [0, 1], got {self.copy_share!r}")
            if not self.balanced:
                raise SamplingError(f"{prefix}.copy_share: needs {prefix}.balanced: true "
                                    "(it splits the spoof half of balanced draws)")
        if not 0 <= self.system_balance <= 1:
            raise SamplingError(f"{prefix}.system_balance: must be in [0, 1], got {self.system_balance!r}")
        if self.system_balance and not self.balanced:
            raise SamplingError(f"{prefix}.system_balance: needs {prefix}.balanced: true "
                                "(it reweights the spoof half of balanced draws)")
        return self


def repeated_permutations(members: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` draws from ``members``: concatenated permutations, cut (each appears equally often, +-1)."""
    repeats = -(-count // len(members))
    return np.concatenate([rng.permutation(members) for _ in range(repeats)])[:count]


def weighted_draws(members: np.ndarray, weights: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` draws from ``members`` in proportion to ``weights``, shuffled.

    Systematic sampling: each member is drawn ``floor`` or ``ceil`` of ``count * w / sum(w)`` times,
    so an epoch holds what the weights ask for, not a multinomial's noisy version of it.
    """
    cumulative = np.cumsum(weights / weights.sum())
    positions = (rng.random() + np.arange(count)) / count
    picks = np.minimum(np.searchsorted(cumulative, positions, side="right"), len(members) - 1)
    return rng.permutation(members[picks])


def group_weights(groups: list[str], members: np.ndarray, balance: float) -> np.ndarray:
    """Draw weights of the clips ``members`` that give each group a share ``∝ count ** (1 - balance)``.

    Groups are spoofing systems (``data.sampling.system_balance``). ``balance`` 0: every clip
    equally often (groups in proportion to their clip counts); 1: every group equally often, however
    few clips it has; in between, a compromise (0.5: ∝ sqrt(count)). On a corpus where a few systems
    hold most spoofs, the rare ones are otherwise seen too seldom to be learnt.

    Args:
        groups: the group of every clip of the cache (``cache.systems``).
        members: cache indices of the clips to weight, ``int64 (N,)``.
        balance: in ``[0, 1]``.

    Returns:
        ``float64 (N,)`` weights, summing to 1.
    """
    if len(members) == 0:
        return np.zeros(0)
    names = np.array([groups[i] for i in members])
    _, inverse, counts = np.unique(names, return_inverse=True, return_counts=True)
    share = counts.astype(np.float64) ** (1.0 - balance)  # per group
    weights = share[inverse] / counts[inverse]  # count**(1-b) per group / count per clip
    return weights / weights.sum()


class EpochOrder:
    """The clip indices of each epoch of a cache under a :class:`Sampling` policy.

    Args:
        labels: label of every clip ``int (N,)`` (``cache.labels``).
        systems: system of every clip (``cache.systems``), for ``copy_share`` and ``system_balance``.
        sampling: the policy (validated here).
        seed: base seed; ``order(epoch)`` is a pure function of ``(seed, epoch)``.
        where: names the cache in errors (its directory).

    Raises:
        SamplingError: a bad option, balanced sampling of a one-class cache, or a copy share that
            asks for a kind of spoof the cache has none of.
    """

    def __init__(self, labels: np.ndarray, systems: list[str], sampling: Sampling, seed: int, where: str = "cache"):
        self.sampling = sampling.validate("sampling")
        self.seed, self.size = seed, len(labels)
        self._by_class = [np.flatnonzero(labels == c) for c in (SPOOF, BONAFIDE)]
        if sampling.balanced and any(len(members) == 0 for members in self._by_class):
            raise SamplingError(f"{where}: balanced sampling needs both classes in the cache")
        spoofs = self._by_class[0]
        self._spoof_groups: list[tuple[np.ndarray, float]] = [(spoofs, 1.0)]
        if sampling.copy_share is not None:
            share = sampling.copy_share
            is_copy = np.array([systems[i].startswith(COPY_SYSTEM_PREFIX) for i in spoofs], dtype=bool)
            self._spoof_groups = [(spoofs[~is_copy], 1.0 - share), (spoofs[is_copy], share)]
            for (members, group_share), name in zip(self._spoof_groups, ("corpus", "copy-synthesis")):
                if group_share > 0 and len(members) == 0:
                    raise SamplingError(f"{where}: copy_share {share} asks for {name} spoofs, but the cache has none")
        # Fixed per cache: each spoof group's clip weights (the groups order() draws from, in order).
        self._spoof_weights: list[np.ndarray] | None = None
        if sampling.system_balance:
            self._spoof_weights = [group_weights(systems, members, sampling.system_balance)
                                   for members, _ in self._spoof_groups]
        self.epoch_size = 2 * max(len(m) for m in self._by_class) if sampling.balanced else self.size

    def __call__(self, epoch: int) -> np.ndarray:
        """Clip indices of epoch ``epoch``, ``int64 (epoch_size,)``, identical on every rank.

        Plain: a permutation of all clips. Balanced: both classes contribute ``epoch_size / 2``
        draws, the larger class as one permutation, the smaller one as as many concatenated
        permutations as needed (each of its clips appears equally often, +-1), then all shuffled.
        With ``copy_share``, the spoof draws are split between corpus spoofs and copies in that
        proportion; with ``system_balance``, each spoof group is drawn by :func:`group_weights`.
        """
        rng = np.random.default_rng([self.seed, epoch, ORDER_STREAM])
        if not self.sampling.balanced:
            return rng.permutation(self.size)
        per_class = self.epoch_size // 2
        if len(self._spoof_groups) == 1:
            counts = [per_class]
        else:  # the spoof half split between corpus spoofs and copies
            n_copies = int(round(self._spoof_groups[1][1] * per_class))
            counts = [per_class - n_copies, n_copies]
        # Spoofs first, then bona fide: the order of the draws from rng is part of the run's numerics.
        if self._spoof_weights is not None:
            draws = [weighted_draws(members, weights, count, rng)
                     for (members, _), count, weights in zip(self._spoof_groups, counts, self._spoof_weights)
                     if count > 0]
        else:
            draws = [repeated_permutations(members, count, rng)
                     for (members, _), count in zip(self._spoof_groups, counts) if count > 0]
        draws.append(repeated_permutations(self._by_class[1], per_class, rng))
        return rng.permutation(np.concatenate(draws))
