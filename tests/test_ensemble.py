"""Several checkpoints as one detector: the mean of their calibrated log-odds, window by window."""

from __future__ import annotations


import numpy as np
import pytest

from rawguard.calibration import sigmoid
from rawguard.detector import Detector, DetectorError
from rawguard.checkpoint import load_checkpoint
from rawguard.ensemble import ENSEMBLE_MEMBERS, MEMBER_KEYS, ensemble_detector, save_ensemble
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


def test_an_ensemble_file_scores_as_its_members_given_one_by_one(members, tmp_path, capsys, one_thread):
    import json

    from rawguard.cli import main

    bundle = tmp_path / "models" / "ensemble.pt"
    assert main(["ensemble", *map(str, members), "--out", str(bundle)]) == 0
    assert f"rawguard score --checkpoint {bundle} PATH..." in capsys.readouterr().out
    from_file, given = Detector.from_checkpoint(bundle), ensemble_detector(members)
    assert from_file.threshold == pytest.approx(given.threshold) and from_file.model_name == given.model_name
    for clip in corpus_files(2):
        assert from_file.score_file(clip).score == pytest.approx(given.score_file(clip).score, abs=1e-9)
    assert Detector.from_checkpoints([bundle]).score_file(clip).score == pytest.approx(from_file.score_file(clip).score)
    # what `score` prints for the file is what it prints for the members
    assert main(["score", "--checkpoint", str(bundle), str(clip), "--json", "--threads", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["score"] == pytest.approx(given.score_file(clip).score, abs=1e-6)
    # only what scoring needs is kept: no optimiser state, no raw (non-averaged) weights
    saved = load_checkpoint(bundle)
    assert all(set(member) <= set(MEMBER_KEYS) for member in saved[ENSEMBLE_MEMBERS])
    assert saved["ensemble_sources"] == [str(path) for path in members]
    # one file is one model to the ONNX backend too (several --checkpoint are refused there)
    pytest.importorskip("onnxruntime")
    assert main(["score", "--checkpoint", str(bundle), str(clip), "--json", "--backend", "onnx", "--threads", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["score"] == pytest.approx(given.score_file(clip).score, abs=1e-4)


def test_an_ensemble_file_refuses_what_it_could_not_score_and_names_it(members, tmp_path, capsys):
    from rawguard.checkpoint import CheckpointError, save_checkpoint
    from rawguard.cli import main

    out = tmp_path / "ensemble.pt"
    assert main(["ensemble", str(members[0]), "--out", str(out)]) == 1
    assert "two or more checkpoints, got 1" in capsys.readouterr().err
    uncalibrated = save_tiny_checkpoint(tmp_path / "raw.pt", None)
    with pytest.warns(UserWarning):
        assert main(["ensemble", str(members[0]), str(uncalibrated), "--out", str(out)]) == 1
    assert "raw.pt: no dev calibration" in capsys.readouterr().err
    assert main(["ensemble", str(members[0]), str(tmp_path / "missing.pt"), "--out", str(out)]) == 1
    assert "missing.pt: checkpoint file not found" in capsys.readouterr().err
    assert not out.exists()  # nothing written for a refused set
    save_ensemble(members, out)
    with pytest.raises(DetectorError, match="already an ensemble file"):
        save_ensemble([out, members[0]], tmp_path / "nested.pt")
    # a damaged file: a member without weights is named, a truncated file is refused
    state = load_checkpoint(out)
    del state[ENSEMBLE_MEMBERS][1]["model"]
    save_checkpoint(state, tmp_path / "damaged.pt")
    with pytest.raises(DetectorError, match=r"damaged\.pt \[member 1: .*b\.pt\]: checkpoint has no 'model'"):
        Detector.from_checkpoint(tmp_path / "damaged.pt")
    (tmp_path / "cut.pt").write_bytes(out.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"cut\.pt: cannot read checkpoint"):
        Detector.from_checkpoint(tmp_path / "cut.pt")
