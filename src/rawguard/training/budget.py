"""Fit the schedule into the time budget (``train.fit_schedule``).

``train.max_minutes`` alone is a hard stop: on a machine slower than the one a config was sized
on, it cuts a cosine schedule short at a high learning rate, and the run ships weights that the
schedule's low-rate end never settled (the v3 corpus at 15 minutes stopped at step 10,629 of
13,000 with dev EER still falling). With ``fit_schedule`` the run measures its own speed and, at
its dev evaluations, fits the schedule (``train.max_steps``, and with it the cosine's length,
``eval.select_from``'s boundary and the evaluation cadence) to end within ``max_minutes`` less a
margin: at the first evaluation, and again at each one before the boundary, from the speed
measured since the middle of the steps before the first one (a shared VM's speed moved 2x within
the first minutes of a run, so one early measurement is not enough). From the boundary on the plan
is fixed, so the weights that can be selected come from one schedule. A machine fast enough keeps
the configured steps at every plan, so the run is the same run there. ``max_minutes`` stays the
hard stop behind the plan.

Plans are made on rank 0, shared with every rank and stored in ``last.pt``: a resumed run goes on
with the horizon it had.
"""

from __future__ import annotations

from dataclasses import dataclass

from rawguard.config import RunConfig
from rawguard.training.build import with_horizon
from rawguard.training.selection import evaluation_due

FIT_MARGIN = 0.05
"""Share of ``max_minutes`` a plan leaves unused: a shared VM's speed drifts after the last plan too
(8 % within half an hour, BENCHMARKS.md), and the hard stop should not be what ends a fitted run."""


@dataclass(frozen=True)
class Speed:
    """What a run costs, as measured so far (:class:`SpeedMeter`)."""

    step_s: float
    """Wall-clock seconds per optimizer step: data waits, logging and checkpoints included, evaluations not."""
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


def fit_horizon(config: RunConfig, requested: int, step: int, elapsed_s: float, speed: Speed,
                margin: float = FIT_MARGIN) -> int:
    """The most steps (``<= requested``, a multiple of ``train.log_every`` when fewer) that end within
    ``(1 - margin) * train.max_minutes``; at least ``step + 1``."""
    budget_s = 60.0 * config.train.max_minutes * (1.0 - margin)
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


class SpeedMeter:
    """The run's :class:`Speed`: wall-clock seconds per optimizer step, evaluations not counted
    (logging, data waits and checkpoints counted), and the mean seconds of an evaluation.

    Steps are timed from ``from_step``, half-way to the first dev evaluation after ``start_step``
    (the first half holds start-up and a compiled step's compilation), until that evaluation; once a
    step after it is done, from that evaluation on: the recipe's runs stepped at 610-750 clips/s over
    their first 1,000 steps and at 850-1,240 after, every time, so the first stretch would hold later
    plans back.
    """

    def __init__(self, config: RunConfig, start_step: int) -> None:
        first_evaluation = start_step + 1  # eval.every > 0 with fit_schedule (validated): a step is due
        while not evaluation_due(first_evaluation, config):
            first_evaluation += 1
        self.from_step = start_step + (first_evaluation - start_step) // 2
        self._eval_seconds, self._evaluations = 0.0, 0
        self._start: tuple[int, float, float] | None = None  # (step, elapsed, evaluation seconds so far)
        self._last: tuple[int, float, float] | None = None
        self._first_evaluation: tuple[int, float, float] | None = None  # the step the first evaluation followed

    def step_done(self, step: int, elapsed_s: float) -> None:
        """Optimizer step ``step`` ended ``elapsed_s`` seconds into the run."""
        mark = (step, elapsed_s, self._eval_seconds)
        if step == self.from_step:
            self._start = mark
        self._last = mark

    def evaluation_done(self, seconds: float) -> None:
        if not self._evaluations:
            self._first_evaluation = self._last  # its step's end, before its own seconds
        self._eval_seconds += seconds
        self._evaluations += 1

    def speed(self) -> Speed | None:
        """The speed so far (None until a step after ``from_step`` and an evaluation are done)."""
        start = self._start
        if self._first_evaluation is not None and self._last[0] > self._first_evaluation[0]:
            start = self._first_evaluation
        if start is None or self._last is None or self._last[0] <= start[0] or not self._evaluations:
            return None
        (step0, elapsed0, evals0), (step1, elapsed1, evals1) = start, self._last
        return Speed((elapsed1 - elapsed0 - (evals1 - evals0)) / (step1 - step0),
                     self._eval_seconds / self._evaluations)
