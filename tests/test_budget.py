"""train.fit_schedule: the schedule fitted at the first dev evaluation and at each before
eval.select_from to end within train.max_minutes; a resumed run keeps its plan and continues bit for bit."""

from __future__ import annotations

import pytest

import rawguard.train as train_module
from rawguard.checkpoint import load_checkpoint
from rawguard.config import ConfigError
from rawguard.training.budget import FIT_MARGIN, Speed, SpeedMeter, fit_horizon, projected_seconds
from rawguard.training.log import read_metrics
from rawguard.training.state import RunState
from rawguard.train import train

from helpers.training import tiny, train_until_sigterm


def test_projection_counts_the_steps_and_the_evaluations_of_the_horizons_cadence():
    config = tiny("train.max_steps=1000", "eval.every=100")
    speed = Speed(step_s=0.1, eval_s=2.0)
    # from step 100 after 10 s: 900 steps, evaluations at 200 ... 1000
    assert projected_seconds(config, 100, 10.0, speed, 1000) == pytest.approx(10 + 90 + 9 * 2)
    # early_every before select_from: 200, 400 (every 200 below 500), then 500 ... 1000 every 100
    sparse = tiny("train.max_steps=1000", "eval.every=100", "eval.early_every=200", "eval.select_from=0.5")
    assert projected_seconds(sparse, 100, 10.0, speed, 1000) == pytest.approx(10 + 90 + 8 * 2)
    # a horizon off the cadence adds the final evaluation of the last weights
    assert projected_seconds(config, 100, 10.0, speed, 950) == pytest.approx(10 + 85 + (8 + 1) * 2)


def test_fit_keeps_a_schedule_that_fits_and_shortens_one_that_does_not():
    config = tiny("train.max_steps=1000", "train.max_minutes=10", "eval.every=100", "train.log_every=10",
                  "train.fit_schedule=true")
    assert fit_horizon(config, 1000, 100, 10.0, Speed(0.1, 2.0)) == 1000  # 118 s of 570
    slow = Speed(step_s=1.0, eval_s=5.0)
    steps = fit_horizon(config, 1000, 100, 10.0, slow)
    budget = 600 * (1 - FIT_MARGIN)
    assert 100 < steps < 1000 and steps % 10 == 0
    assert projected_seconds(config, 100, 10.0, slow, steps) <= budget  # ends in time...
    assert projected_seconds(config, 100, 10.0, slow, steps + 10) > budget  # ...with no 10 steps to spare
    # a planned run (max_steps now 500) that turns out faster gets its steps back, never more than asked
    assert fit_horizon(tiny("train.max_steps=500", "train.max_minutes=10", "eval.every=100"), 1000, 100, 10.0,
                       Speed(0.1, 2.0)) == 1000
    # out of time already: one more step, the smallest schedule that still moves
    assert fit_horizon(config, 1000, 100, 590.0, slow) == 101


def test_speed_meter_times_steps_from_half_way_to_the_first_evaluation_then_from_it_on():
    meter = SpeedMeter(tiny("train.max_steps=100", "eval.every=20"), start_step=0)
    assert meter.from_step == 10
    elapsed = 5.0  # a slow first (compiled) step, then 0.2 s a step until step 20, 0.1 s after;
    for step in range(1, 41):  # a 3 s evaluation every 20 steps
        elapsed += 0.2 if step <= 20 else 0.1
        meter.step_done(step, elapsed)
        assert (meter.speed() is None) == (step <= 20)  # needs an evaluation's time too
        if step == 20:
            meter.evaluation_done(3.0)
            assert meter.speed() == Speed(pytest.approx(0.2), 3.0)  # the first plan: steps 10-20
            elapsed += 3.0
        if step == 40:
            meter.evaluation_done(1.0)
            elapsed += 1.0
    assert meter.speed() == Speed(pytest.approx(0.1), 2.0)  # later plans: the steps since the first evaluation
    assert SpeedMeter(tiny("train.max_steps=100", "eval.every=20"), start_step=30).from_step == 35  # resumed


def test_fit_schedule_needs_a_step_budget_and_evaluations():
    for missing in (("train.max_minutes=1", "train.max_steps=0", "train.max_epochs=2", "eval.every=10"),
                    ("train.max_minutes=1", "train.max_steps=100", "eval.every=0"),
                    ("train.max_minutes=1", "train.max_steps=100", "eval.every=10", "optim.decay_steps=50")):
        with pytest.raises(ConfigError, match="train.fit_schedule"):
            tiny("train.fit_schedule=true", *missing)


def simulate_machine(monkeypatch, seconds_of_step) -> dict:
    """Make the run's clock advance ``seconds_of_step(n)`` for its n-th optimizer step (evaluations
    cost what they really cost, milliseconds), so plans are exact and do not depend on this
    machine's load; returns the clock (``seconds``)."""
    clock = {"seconds": 0.0, "steps": 0}
    real_step = train_module._optimizer_step

    def timed_step(*args, **kwargs):
        clock["steps"] += 1
        clock["seconds"] += seconds_of_step(clock["steps"])
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "_optimizer_step", timed_step)
    monkeypatch.setattr(RunState, "elapsed", lambda self: self.elapsed_before + clock["seconds"])
    return clock


def test_a_run_that_cannot_finish_its_steps_in_time_ends_its_shortened_schedule_at_the_floor(toy, tmp_path,
                                                                                             monkeypatch):
    simulate_machine(monkeypatch, lambda step: 0.5)  # a slow machine
    run = tmp_path / "fit"
    config = tiny("optim.lr=3e-3", "optim.warmup_steps=5", "optim.min_lr_ratio=0.01", "train.max_steps=100000",
                  "train.max_minutes=5", "train.fit_schedule=true", "eval.every=100", "train.log_every=10")
    result = train(config, toy, toy, run, progress=False)
    records = read_metrics(run / "metrics.jsonl")
    plans = [r for r in records if r["type"] == "plan"]
    assert len(plans) == 1 and plans[0]["step"] == 100 and plans[0]["requested_steps"] == 100000
    assert plans[0]["step_s"] == pytest.approx(0.5)
    # 285 s (95 % of 5 min) less the 50 s spent, at 0.5 s a step: 470 steps more, 570 in all, but the
    # evaluations' milliseconds push 570 just over, and the plan rounds down to train.log_every
    planned = plans[0]["max_steps"]
    assert planned == 560 and plans[0]["projected_minutes"] <= 5 * (1 - FIT_MARGIN)
    # the run ended where the plan put it, with the cosine run down, inside the time budget
    assert (result.stop_reason, result.step) == ("max_steps", planned)
    lrs = [r["lr"] for r in records if r["type"] == "train"]
    assert lrs[-1] < 0.02 * 3e-3 and max(lrs) == pytest.approx(3e-3)
    dev_steps = [r["step"] for r in records if r["type"] == "dev"]
    assert dev_steps == [100, 200, 300, 400, 500, 560]  # the last weights evaluated at the plan's end
    # the checkpoints follow the plan; config.yaml keeps what was asked for
    last = load_checkpoint(run / "last.pt")
    assert last["planned_steps"] == planned and last["config"]["train"]["max_steps"] == planned
    assert last["scheduler"]["decay_steps"] == planned
    assert "max_steps: 100000" in (run / "config.yaml").read_text()


def test_a_run_that_speeds_up_gets_its_steps_back_until_select_from(toy, tmp_path, monkeypatch):
    # The simulated machine: 0.5 s a step for the first 150 steps, then 0.1 s (the 2-core VMs'
    # speed doubled within a run's first minutes).
    clock = simulate_machine(monkeypatch, lambda step: 0.5 if step <= 150 else 0.1)
    config = tiny("train.max_steps=2000", "train.max_minutes=5", "train.fit_schedule=true", "eval.every=100",
                  "eval.select_from=0.5", "train.log_every=10")
    result = train(config, toy, toy, tmp_path / "r", progress=False)
    plans = [r for r in read_metrics(tmp_path / "r" / "metrics.jsonl") if r["type"] == "plan"]
    horizons = [p["max_steps"] for p in plans]
    assert horizons[0] == 560  # planned at step 100 at 0.5 s a step, as a slow machine would be
    assert horizons == sorted(horizons) and horizons[-1] > 1000  # faster: the steps come back, plan by plan
    assert all(p["step"] < 0.5 * p["max_steps"] for p in plans[1:])  # re-planned only before select_from
    assert (result.stop_reason, result.step) == ("max_steps", horizons[-1])
    assert clock["seconds"] <= 5 * 60 * (1 - FIT_MARGIN)


def test_select_from_follows_the_plan(toy, tmp_path, monkeypatch):
    monkeypatch.setattr(train_module, "fit_horizon", lambda config, requested, step, elapsed, speed: 40)
    config = tiny("optim.lr=3e-3", "train.max_steps=1000", "train.max_minutes=30", "train.fit_schedule=true",
                  "eval.every=4", "eval.early_every=8", "eval.select_from=0.5")
    result = train(config, toy, toy, tmp_path / "r", progress=False)
    dev = [r for r in read_metrics(tmp_path / "r" / "metrics.jsonl") if r["type"] == "dev"]
    # planned at the first evaluation (step 8); then every 8 steps until step 20 (half of 40), every 4 after
    assert [r["step"] for r in dev] == [8, 16, 20, 24, 28, 32, 36, 40]
    assert [r["best_dev_eer"] for r in dev[:2]] == [None, None] and result.best_step >= 20


def test_a_fast_enough_machine_keeps_every_step(toy, tmp_path):
    config = tiny("train.max_steps=30", "train.max_minutes=5", "train.fit_schedule=true", "eval.every=10")
    result = train(config, toy, toy, tmp_path / "r", progress=False)
    plans = [r for r in read_metrics(tmp_path / "r" / "metrics.jsonl") if r["type"] == "plan"]
    assert [p["max_steps"] for p in plans] == [30] and (result.stop_reason, result.step) == ("max_steps", 30)


def test_without_a_time_budget_a_fitted_config_runs_every_step(toy, tmp_path, monkeypatch):
    # `--set train.max_minutes=0` on a config that fits its schedule (the recipe's, the demo's) lifts
    # the time limit: nothing is planned, the configured cosine runs to its end.
    monkeypatch.setattr(train_module, "fit_horizon", lambda *args: pytest.fail("planned without a time budget"))
    config = tiny("train.max_steps=30", "train.max_minutes=0", "train.fit_schedule=true", "eval.every=10")
    result = train(config, toy, toy, tmp_path / "r", progress=False)
    records = read_metrics(tmp_path / "r" / "metrics.jsonl")
    assert not [r for r in records if r["type"] == "plan"] and (result.stop_reason, result.step) == ("max_steps", 30)
    assert load_checkpoint(tmp_path / "r" / "last.pt").get("planned_steps") is None


def test_a_fitted_run_resumes_with_its_plan_bit_for_bit(toy, tmp_path, monkeypatch):
    # The plan depends on the clock; fix it at 40 steps so both runs plan the same.
    monkeypatch.setattr(train_module, "fit_horizon", lambda config, requested, step, elapsed, speed: 40)
    config = tiny("optim.lr=3e-3", "train.max_steps=1000", "train.max_minutes=30", "train.fit_schedule=true",
                  "eval.every=4", "train.log_every=1", "train.checkpoint_every=0", "train.checkpoint_minutes=0")
    whole = train(config, toy, toy, tmp_path / "whole", progress=False)
    assert (whole.stop_reason, whole.step) == ("max_steps", 40)

    run = tmp_path / "cut"
    cut = train_until_sigterm(config, toy, toy, run,
                              lambda records: any(r["type"] == "plan" for r in records) and len(records) >= 14)
    assert cut.stop_reason == "signal:SIGTERM" and 4 <= cut.step < 40
    assert load_checkpoint(run / "last.pt")["planned_steps"] == 40
    monkeypatch.setattr(train_module, "fit_horizon", lambda *args: pytest.fail("a planned run planned again"))
    resumed = train(config, toy, toy, run, progress=False)
    assert (resumed.stop_reason, resumed.step) == ("max_steps", 40)
    curves = {name: [(r["step"], r["loss"], r["lr"]) for r in read_metrics(tmp_path / name / "metrics.jsonl")
                     if r["type"] == "train"] for name in ("whole", "cut")}
    assert curves["cut"] == curves["whole"]
    weights = [load_checkpoint(tmp_path / name / "last.pt")["model"] for name in ("whole", "cut")]
    assert all((weights[0][k] == weights[1][k]).all() for k in weights[0])
