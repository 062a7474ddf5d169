"""Monitor sets: scored and logged at every dev evaluation, never selected on, and refused with a
clear error when they cannot give an EER."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rawguard.checkpoint import load_checkpoint
from rawguard.conventions import BONAFIDE
from rawguard.data.prepare import prepare_cache
from rawguard.data.protocols import read_protocol
from rawguard.train import TrainingError, train
from rawguard.training.log import read_metrics
from helpers.training import make_toy_cache, tiny

RUN = ["optim.lr=3e-3", "train.max_steps=6", "eval.every=2", "train.log_every=2", "train.checkpoint_every=0"]


def _bonafide_only(toy, out: Path):
    protocol = toy.directory.parent / "protocol.txt"
    items = [i for i in read_protocol(protocol, toy.directory.parent / "audio") if i.label == BONAFIDE]
    prepare_cache(items, out, workers=1, progress=False)
    return out


def test_monitor_sets_are_logged_at_every_evaluation_and_change_nothing_else(toy, tmp_path):
    other = make_toy_cache(tmp_path / "other", n_per_class=6, seed=3)
    train(tiny(*RUN), toy, toy, tmp_path / "plain", progress=False)
    train(tiny(*RUN), toy, toy, tmp_path / "watched", progress=False, monitor={"other": other, "again": toy.directory})
    dev_rows = [r for r in read_metrics(tmp_path / "watched" / "metrics.jsonl") if r["type"] == "dev"]
    assert [r["step"] for r in dev_rows] == [2, 4, 6]
    for row in dev_rows:
        assert 0.0 <= row["other_eer"] <= 1.0
        assert row["again_eer"] == row["dev_eer"]  # the same set scores the same as dev
    # Watching is free of side effects: same weights, same selection, same log otherwise.
    for name in ("last.pt", "best.pt"):
        a, b = load_checkpoint(tmp_path / "plain" / name), load_checkpoint(tmp_path / "watched" / name)
        assert a["selection"] == b["selection"]  # the same step, EER, threshold and calibration
        for key, tensor in a["model"].items():
            assert torch.equal(tensor, b["model"][key]), key
    plain_rows = [r for r in read_metrics(tmp_path / "plain" / "metrics.jsonl") if r["type"] == "dev"]
    assert [r["dev_eer"] for r in plain_rows] == [r["dev_eer"] for r in dev_rows]
    assert "other_eer" not in plain_rows[0]


@pytest.mark.parametrize("name", ["dev", "best_dev", "2sets", "a b", ""])
def test_a_monitor_name_that_is_no_log_field_is_refused_before_training(toy, tmp_path, name):
    with pytest.raises(TrainingError, match="monitor set .*the name must start with a letter"):
        train(tiny(*RUN), toy, toy, tmp_path / "run", progress=False, monitor={name: toy})
    assert not (tmp_path / "run" / "last.pt").exists()


def test_a_monitor_set_without_both_classes_is_refused_with_its_name(toy, tmp_path):
    bona = _bonafide_only(toy, tmp_path / "bona")
    with pytest.raises(TrainingError, match=r"monitor set 'bona': dev cache needs both .* \(it has 24 bona fide, 0 spoof\)"):
        train(tiny(*RUN), toy, toy, tmp_path / "run", progress=False, monitor={"bona": bona})
    assert not (tmp_path / "run" / "last.pt").exists()


def test_cli_monitor_option(toy, tmp_path, capsys):
    from rawguard.cli import main

    base = ["train", "--train", str(toy.directory), "--dev", str(toy.directory), "--no-progress", "--set", *RUN]
    assert main([*base, "--out", str(tmp_path / "a"), "--monitor", "toy"]) == 1
    assert "--monitor 'toy': expected NAME=CACHE" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "b"), "--monitor", f"x={toy.directory}", f"x={toy.directory}"]) == 1
    assert "--monitor: the name 'x' is given twice" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "c"), "--monitor", f"held={tmp_path / 'missing'}"]) == 1
    assert "missing" in capsys.readouterr().err  # the cache error names the folder
    assert main([*base, "--out", str(tmp_path / "d"), "--monitor", f"held={toy.directory}"]) == 0
    rows = [r for r in read_metrics(tmp_path / "d" / "metrics.jsonl") if r["type"] == "dev"]
    assert all("held_eer" in r for r in rows)


def test_how_often_dev_is_evaluated_does_not_change_training(toy, tmp_path):
    # Evaluations run between steps with the training RNG put aside, so monitored and unmonitored
    # runs (and runs evaluated at different rates) are the same training, augmentation included.
    common = [*RUN, "augment.enabled=true", "train.max_steps=8"]
    train(tiny(*common, "eval.every=0"), toy, toy, tmp_path / "never", progress=False)
    train(tiny(*common, "eval.every=1"), toy, toy, tmp_path / "always", progress=False, monitor={"again": toy})
    a, b = load_checkpoint(tmp_path / "never" / "last.pt"), load_checkpoint(tmp_path / "always" / "last.pt")
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    assert len([r for r in read_metrics(tmp_path / "always" / "metrics.jsonl") if r["type"] == "dev"]) == 8
