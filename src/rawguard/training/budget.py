"""Fit the schedule into the time budget (``train.fit_schedule``).

``train.max_minutes`` alone is a hard stop: on a machine slower than the one a config was sized
on, it cuts a cosine schedule short at a high learning rate, and the run ships weights that the
schedule's low-rate end never settled (the v3 corpus at 15 minutes stopped at step 10,629 of
13,000 with dev EER still falling). With ``fit_schedule`` the run measures its own speed up to its
first dev evaluation and, once, shortens the schedule (``train.max_steps``, and with it the cosine's
length, ``eval.select_from``'s boundary and the evaluation cadence) so that it ends within
``max_minutes`` less a margin for drift. A machine fast enough keeps the configured steps, so the
run is the same run there. ``max_minutes`` stays the hard stop behind the plan.

The plan is made on rank 0, shared with every rank and stored in ``last.pt``: a resumed run keeps
its horizon, so it continues bit for bit as the run it resumes would have.
"""

from __future__ import annotations

from dataclasses import dataclass

from rawguard.config import RunConfig
from rawguard.training.build import with_horizon
from rawguard.training.selection import evaluation_due

FIT_MARGIN = 0.05
"""Share of ``max_minutes`` the plan leaves unused: the speed of a shared VM drifts by ~8 % within
half an hour (BENCHMARKS.md), and the hard stop should not be what ends a fitted run."""


@dataclass(frozen=True)
class Speed:
    """What a run costs, measured on its first steps."""

    step_s: float
    """Seconds per optimizer step, data wait included, evaluation and checkpoints not."""
    eval_s: float
    """Seconds of one dev evaluation, its checkpoints included."""


def projected_seconds(config: RunConfig, step: int, elapsed_s: float, speed: Speed, horizon: int) -> float:
    """Seconds the whole run takes if it ends at step ``horizon``, from ``step`` after ``elapsed_s``.

    Counts the optimizer steps left, the dev evaluations the horizon's cadence puts among them
    (``eval.early_every`` before ``horizon * eval.select_from``) and the final one.
    """
    planned = with_horizon(config, horizon)
    evaluations = sum(evaluation_due(s, planned) for s in range(step + 1, horizon + 1))
    if not evaluation_due(horizon, planned):
        evaluations += 1  # the loop evaluates the last weights when it stops
    return elapsed_s + (horizon - step) * speed.step_s + evaluations * speed.eval_s


def fit_horizon(config: RunConfig, step: int, elapsed_s: float, speed: Speed, margin: float = FIT_MARGIN) -> int:
    """The most steps (``<= train.max_steps``, a multiple of ``train.log_every`` when shortened)
    that end within ``(1 - margin) * train.max_minutes``; at least ``step + 1``."""
    budget_s = 60.0 * config.train.max_minutes * (1.0 - margin)
    requested = config.train.max_steps
    if projected_seconds(config, step, elapsed_s, speed, requested) <= budget_s:
        return requested
    low, high = step + 1, requested  # projected time grows with the horizon: bisect on it
    while low < high:
        middle = (low + high + 1) // 2
        if projected_seconds(config, step, elapsed_s, speed, middle) <= budget_s:
            low = middle
        else:
            high = middle - 1
    rounded = low - low % config.train.log_every
    return max(rounded, step + 1)


class SpeedProbe:
    """Measures :class:`Speed` up to the first dev evaluation after ``start_step``.

    Seconds per step are wall-clock seconds over the second half of those steps (the first half holds
    start-up and a compiled step's compilation), so logging, data waits and checkpoints count; the
    evaluation's cost is that first evaluation's own.
    """

    def __init__(self, config: RunConfig, start_step: int) -> None:
        plan_step = start_step + 1  # eval.every > 0 with fit_schedule (validated): a step is due
        while not evaluation_due(plan_step, config):
            plan_step += 1
        self.plan_step = plan_step
        self.from_step = start_step + (plan_step - start_step) // 2
        self._elapsed: dict[int, float] = {}

    def step_done(self, step: int, elapsed_s: float) -> None:
        """Record that optimizer step ``step`` ended ``elapsed_s`` seconds into the run."""
        if step in (self.from_step, self.plan_step):
            self._elapsed[step] = elapsed_s

    def speed(self, eval_s: float) -> Speed:
        """The speed measured once :attr:`plan_step` is done, with its evaluation of ``eval_s`` seconds."""
        end = self._elapsed[self.plan_step]
        start = self._elapsed.get(self.from_step, 0.0)  # (a run resumed at its from_step: since the start)
        return Speed((end - start) / max(1, self.plan_step - self.from_step), eval_s)
