"""Share a recipe's wall-clock budget among its training stages (``rawguard recipe --minutes``).

A recipe's data stages (caches, the copy-synthesis vocoder, the copies) take what the machine makes
them take; each training stage has a time budget of its own (``train.max_minutes``, into which
``train.fit_schedule`` fits its cosine). Those budgets were sized on one machine, so on a slower one
the recipe as a whole runs over its target: the shared-corpus recipe took 39-44 of its 45 minutes on
the project's 2-core VMs, 18 of them before the first training step on the slowest. With a budget,
each training stage starts with its share of the time left, in proportion to its own
``max_minutes`` among the training stages still to run, and never more than its own
``max_minutes``: a machine fast enough trains exactly as configured, a slower one trains each model
on a shorter schedule that ends in time instead of running over.

The clock starts with the recipe's invocation: a re-run after a kill skips the finished stages in
seconds and shares the whole budget again among what is left to do.
"""

from __future__ import annotations

from dataclasses import dataclass

RESERVE_MINUTES = 1.0
"""Minutes kept for what follows the last training stage's budget: its final dev evaluation and
plots (0.1-0.2 min past ``max_minutes``), the ensemble file and the evaluations (0.3-0.4 min on the
2-core VMs, BENCHMARKS.md)."""

MIN_SHARE = 0.5
"""The least share of its own ``max_minutes`` a training stage gets. Below about half its minutes a
model is no longer the one the recipe was measured with; past that point the recipe runs over its
budget (and says so) rather than ship such a model."""


@dataclass(frozen=True)
class Share:
    """What a training stage gets of the budget."""

    minutes: float
    """Its ``train.max_minutes``."""
    over_budget: bool
    """Whether that is its least share (:data:`MIN_SHARE`) and more than the time left allows."""


def training_minutes(budget_minutes: float, used_minutes: float, own_minutes: float, later_minutes: float,
                     reserve_minutes: float = RESERVE_MINUTES) -> Share:
    """The ``train.max_minutes`` a training stage starts with.

    Args:
        budget_minutes: the whole recipe's budget.
        used_minutes: the recipe's wall-clock minutes so far.
        own_minutes: the stage's own ``train.max_minutes`` (> 0).
        later_minutes: the sum of the ``train.max_minutes`` of the training stages after it.

    Returns:
        ``own_minutes`` when the time left (less ``reserve_minutes``) covers every training stage to
        come at its own minutes; otherwise the stage's proportional share of it, at least
        ``MIN_SHARE * own_minutes``.
    """
    if own_minutes <= 0:
        raise ValueError(f"a training stage's own minutes must be positive, not {own_minutes}")
    left = budget_minutes - used_minutes - reserve_minutes
    share = left * own_minutes / (own_minutes + later_minutes)
    least = MIN_SHARE * own_minutes
    return Share(min(own_minutes, max(share, least)), over_budget=share < least)
