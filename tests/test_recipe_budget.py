"""rawguard recipe --minutes: the training stages share what the data stages leave of the whole
recipe's budget, each at most its own train.max_minutes."""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path

import pytest

from rawguard.cli import main as cli_main
from rawguard.config import load_config
from rawguard.recipe_budget import MIN_SHARE, RESERVE_MINUTES, training_minutes
from rawguard.recipes import Step, get_recipe, plan, run, with_protocols


def test_a_fast_machine_trains_every_model_its_own_minutes():
    share = training_minutes(45, used_minutes=15, own_minutes=14, later_minutes=12)
    assert (share.minutes, share.over_budget) == (14, False)
    # the last stage, after a first one that ended early: still no more than its own
    assert training_minutes(45, used_minutes=25, own_minutes=12, later_minutes=0).minutes == 12


def test_a_slow_machine_shares_what_is_left_in_proportion_to_the_own_minutes():
    # 20 of 45 minutes gone before training: 24 left after the reserve, 14 : 12 of it
    share = training_minutes(45, used_minutes=20, own_minutes=14, later_minutes=12)
    assert share.minutes == pytest.approx((45 - 20 - RESERVE_MINUTES) * 14 / 26)
    assert not share.over_budget
    # the second stage gets what the first left, whatever the first took
    assert training_minutes(45, used_minutes=33.5, own_minutes=12, later_minutes=0).minutes == pytest.approx(10.5)


def test_a_stage_never_gets_less_than_its_least_share_and_says_the_budget_is_overrun():
    share = training_minutes(45, used_minutes=40, own_minutes=14, later_minutes=12)
    assert share.minutes == pytest.approx(MIN_SHARE * 14) and share.over_budget
    with pytest.raises(ValueError, match="positive"):
        training_minutes(45, used_minutes=0, own_minutes=0, later_minutes=12)


class FakeClock:
    """Seconds that move only when a stub step says it took time."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _stubbed(steps: list[Step], clock: FakeClock, minutes_taken: dict[str, float], ran: list[list[str]]) -> list[Step]:
    """The recipe's steps with calls that record their argv and advance ``clock`` instead of running."""
    def stub(step: Step) -> Step:
        def call() -> str:
            ran.append(step.argv)
            clock.now += 60 * minutes_taken.get(step.argv[0], 0.0)
            return "done"
        retime = None if step.with_minutes is None else (lambda m: stub(step.with_minutes(m)))
        return replace(step, call=call, with_minutes=retime)
    return [stub(step) for step in steps]


def _train_minutes(argv: list[str]) -> float:
    overrides = argv[argv.index("--set") + 1:] if "--set" in argv else []
    return load_config(argv[argv.index("--config") + 1], overrides).train.max_minutes


def test_run_gives_each_model_its_share_of_what_the_data_stages_left(tmp_path: Path):
    recipe = get_recipe("shared-corpus")
    steps = plan(recipe, tmp_path / "corpus", tmp_path / "out")
    assert [step.train_minutes for step in steps if step.argv[0] == "train"] == [14, 12]
    assert all(step.train_minutes == 0 for step in steps if step.argv[0] != "train")

    # A slow machine: the vocoder takes its 9 minutes, each of the six copy sets 2 and each of the four
    # prepares 0.5 (23 before training), and each model its whole share.
    clock, ran, echoed = FakeClock(), [], []
    taken = {"train-vocoder": 9, "synth-spoof": 2, "prepare": 0.5}
    before_training = sum(taken.get(step.argv[0], 0) for step in steps if step.argv[0] != "train")
    steps = _stubbed(steps, clock, taken, ran)

    def train_takes_its_minutes(text: str) -> None:
        echoed.append(text)
        if text.startswith("$ rawguard train "):  # the echoed command is the one that runs
            minutes = _train_minutes(shlex.split(text[2:])[1:])
            clock.now += 60 * minutes

    run(steps, echo=train_takes_its_minutes, minutes=45, clock=clock)
    train_calls = [argv for argv in ran if argv[0] == "train"]
    first, second = (_train_minutes(argv) for argv in train_calls)
    assert first == pytest.approx((45 - before_training - RESERVE_MINUTES) * 14 / 26, abs=0.01)
    assert second == pytest.approx(45 - before_training - first - RESERVE_MINUTES, abs=0.01)
    assert (clock.now - 1000) / 60 == pytest.approx(45 - RESERVE_MINUTES, abs=0.02)
    notes = [text for text in echoed if text.startswith("recipe budget:")]
    assert len(notes) == 2 and f"{before_training:.1f} of 45 minutes used" in notes[0]
    assert "train.max_minutes=14" in notes[0] and "run over" not in notes[0]
    # the user's overrides stay in the command, the share comes last
    assert train_calls[1][-1].startswith("train.max_minutes=") and "train.max_minutes=12" in train_calls[1]


def test_without_a_budget_or_on_a_fast_machine_the_commands_are_the_plans(tmp_path: Path):
    steps = plan(get_recipe("shared-corpus"), tmp_path / "corpus", tmp_path / "out")
    for minutes, taken in ((0, {"train-vocoder": 60}), (45, {"train-vocoder": 5})):
        clock, ran = FakeClock(), []
        echoed: list[str] = []
        run(_stubbed(steps, clock, taken, ran), echo=echoed.append, minutes=minutes, clock=clock)
        assert ran == [step.argv for step in steps]
        assert not [text for text in echoed if text.startswith("recipe budget:")]


def test_the_budget_option_and_config_errors_are_checked_before_anything_runs(tmp_path: Path, capsys):
    root, out = tmp_path / "corpus", tmp_path / "o"
    with pytest.raises(SystemExit):
        cli_main(["recipe", "shared-corpus", "--root", str(root), "--out", str(out), "--minutes", "-1"])
    assert "--minutes must be >= 0" in capsys.readouterr().err
    # a mistyped override fails at once, naming the run, not after the data stages
    assert cli_main(["recipe", "shared-corpus", "--root", str(root), "--out", str(out), "--dry-run",
                     "--set", "train.max_stepz=3"]) == 2
    err = capsys.readouterr().err
    assert f"training config of {out}/run" in err and "train.max_steps" in err
    # the v2 protocols were measured without a budget
    assert get_recipe("shared-corpus").minutes == 45 and with_protocols(get_recipe("shared-corpus"), "v2").minutes == 0
