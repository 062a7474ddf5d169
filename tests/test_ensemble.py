"""Several checkpoints as one detector: the mean of their calibrated log-odds, window by window."""

from __future__ import annotations


import numpy as np
import pytest

from rawguard.calibration import sigmoid
from rawguard.detector import Detector, DetectorError
from rawguard.ensemble import ensemble_detector
from helpers.checkpoints import SELECTION, WINDOW, corpus_files, save_tiny_checkpoint

OTHER = {**SELECTION, "threshold": -0.4, "calibration": {"scale": 0.6, "bias": 0.9}}


@pytest.fixture
def members(tmp_path):
    return [save_tiny_checkpoint(tmp_path / "a.pt", SELECTION, seed=0), save_tiny_checkpoint(tmp_path / "b.pt", OTHER, seed=1)]


def test_ensemble_scores_are_the_mean_calibrated_log_odds_of_its_members(members, one_thread):
    clips = corpus_files(3)
    ensemble = ensemble_detector(members)
    singles = [Detector.from_checkpoint(path) for path in members]
    for clip in clips:
        fused = ensemble.score_file(clip)
        parts = [single.score_file(clip) for single in singles]
        log_odds = [d.calibration["scale"] * r.score + d.calibration["bias"] for d, r in zip(singles, parts)]
        assert fused.score == pytest.approx(np.mean(log_odds), abs=1e-5)
        assert fused.probability_bonafide == pytest.approx(float(sigmoid(np.array(fused.score))), abs=1e-9)
        assert len(fused.windows) == len(parts[0].windows) > 1  # the members' window policy, kept per window
        for window, *member_windows in zip(fused.windows, *(r.windows for r in parts)):
            expected = np.mean([d.calibration["scale"] * w.score + d.calibration["bias"] for d, w in zip(singles, member_windows)])
            assert window.score == pytest.approx(expected, abs=1e-5)
    expected_threshold = np.mean([d.calibration["scale"] * d.threshold + d.calibration["bias"] for d in singles])
    assert ensemble.threshold == pytest.approx(expected_threshold)
    assert ensemble.model_name == "ensemble[2]:rawnet-lite"


def test_members_must_be_calibrated_alike_and_more_than_one(tmp_path, members):
    uncalibrated = save_tiny_checkpoint(tmp_path / "raw.pt", None)
    with pytest.warns(UserWarning), pytest.raises(DetectorError, match=r"raw\.pt: no dev calibration"):
        ensemble_detector([members[0], uncalibrated])
    other_window = save_tiny_checkpoint(tmp_path / "w.pt", {**SELECTION, "window": WINDOW * 2})
    with pytest.raises(DetectorError, match=r"w\.pt: scored with window 32000"):
        ensemble_detector([members[0], other_window])
    assert ensemble_detector([members[0], other_window], window=WINDOW, hop=WINDOW).window == WINDOW
    with pytest.raises(DetectorError, match="two or more checkpoints, got 1"):
        ensemble_detector(members[:1])


def test_detector_from_checkpoints_is_the_single_detector_for_one_path(members, one_thread):
    clip = corpus_files(1)[0]
    assert Detector.from_checkpoints(members[:1]).score_file(clip) == Detector.from_checkpoint(members[0]).score_file(clip)
    assert Detector.from_checkpoints(members).score_file(clip) == ensemble_detector(members).score_file(clip)


def members_args(paths) -> list[str]:
    return [arg for path in paths for arg in ("--checkpoint", str(path))]


def test_rawguard_score_takes_several_checkpoints(members, tmp_path, capsys, one_thread):
    import json

    from rawguard.cli import main

    clip = corpus_files(1)[0]
    expected = ensemble_detector(members).score_file(clip).to_dict()
    assert main(["score", *members_args(members), str(clip), "--json", "--threads", "1"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["score"] == pytest.approx(expected["score"], abs=1e-6) and printed["threshold"] == expected["threshold"]
    out = tmp_path / "results.jsonl"
    assert main(["score", *members_args(members), str(clip), "--out", str(out), "--threads", "1", "--workers", "1"]) == 0
    (line,) = out.read_text().splitlines()
    assert json.loads(line)["score"] == pytest.approx(expected["score"], abs=1e-6)
    assert main(["score", *members_args(members), str(clip), "--backend", "onnx"]) == 2
    assert "an ensemble runs on the torch backend" in capsys.readouterr().err
