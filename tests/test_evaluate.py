"""End to end on the shared smoke set: a tiny training run, ``evaluate`` and ``score``, Python and CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from rawguard import Detector
from rawguard.checkpoint import load_checkpoint, save_checkpoint
from rawguard.cli import main
from rawguard.config import load_config
from rawguard.data.cache import Cache
from rawguard.data.prepare import prepare_cache
from rawguard.data.protocols import read_protocol
from rawguard.evaluate import evaluate
from rawguard.scorefiles import read_cm_scores
from rawguard.metrics import compute_eer, per_attack_eer
from rawguard.train import train

from helpers.checkpoints import SHARED, SMOKE

ASV = SHARED / "metrics" / "ASVspoof2019.LA.asv.eval.gi.trl.scores.txt.gz"
# A few-thousand-parameter rawnet-lite on 1 s windows; 30 steps take ~2 s on one thread.
TINY_RUN = [
    "model.name=rawnet-lite", "model.frontend_channels=8", "model.block_channels=[8,16]", "model.gru_hidden=16",
    "data.window=16000", "data.batch_size=8", "eval.window=16000", "eval.hop=8000", "eval.every=15",
    "train.max_steps=30", "train.threads=1", "train.device=cpu", "train.precision=fp32", "augment.enabled=false",
]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Cache:
    if not SMOKE.is_file():
        pytest.skip(f"shared corpus not found at {SHARED}")
    directory = tmp_path_factory.mktemp("smoke") / "cache"
    prepare_cache(read_protocol(SMOKE, SMOKE.parents[1] / "flac"), directory, workers=1, progress=False)
    return Cache.open(directory)


@pytest.fixture(scope="module")
def run(smoke, tmp_path_factory) -> Path:
    """A tiny trained run (train and dev = smoke: this checks plumbing, not generalisation)."""
    out = tmp_path_factory.mktemp("run")
    torch.set_num_threads(1)
    train(load_config(overrides=TINY_RUN), smoke, smoke, out, progress=False)
    assert (out / "best.pt").is_file()
    return out


@pytest.fixture(scope="module")
def evaluated(run, smoke, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("eval")
    torch.set_num_threads(1)
    return out, evaluate(run / "best.pt", smoke.directory, out, progress=False)


def test_evaluate_writes_official_scores_and_metrics(evaluated, smoke, run):
    out, metrics = evaluated
    for name in ("scores.txt", "metrics.json", "report.md", "det.png", "score_hist.png", "per_attack_eer.png", "reliability.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    table = read_cm_scores(out / "scores.txt")
    assert table.utt_ids.tolist() == list(smoke.ids)
    assert table.labels.tolist() == smoke.labels.tolist()
    assert set(table.attacks[table.labels == 0]) == set(np.asarray(smoke.systems)[smoke.labels == 0])
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["n_bonafide"] == 20 and saved["n_spoof"] == 20
    eer, _ = compute_eer(table.scores[table.labels == 1], table.scores[table.labels == 0])
    assert saved["eer_percent"] == pytest.approx(100 * eer)
    low, high = saved["eer_ci95_percent"]  # the bootstrap interval brackets the EER and is reported
    assert low <= saved["eer_percent"] <= high and saved["eer_ci95_resamples"] == 1000
    assert "EER, 95 % bootstrap interval" in (out / "report.md").read_text()
    attacks = per_attack_eer(table.scores, table.labels, table.attacks)
    assert saved["per_attack_eer_percent"] == pytest.approx({k: 100 * v for k, v in attacks.items()})
    assert "min_tdcf" not in saved  # no ASV scores given
    assert 0 <= saved["calibration"]["ece"] <= 1 and 0 <= saved["calibration"]["brier"] <= 1
    assert saved["scoring"]["window"] == 16000 and saved["scoring"]["hop"] == 8000
    # The selection's dev EER was measured with the same policy on the same set.
    selection = load_checkpoint(run / "best.pt")["selection"]
    assert saved["eer_percent"] == pytest.approx(100 * selection["dev_eer"], abs=1e-3)
    report = (out / "report.md").read_text()
    assert "![DET curve](det.png)" in report and "| EER |" in report


def test_detector_scores_match_evaluate(evaluated, smoke, run):
    out, _ = evaluated
    table = read_cm_scores(out / "scores.txt")
    detector = Detector.from_checkpoint(run / "best.pt")
    paths = list(smoke.paths)
    for index in (0, 7, 21, 39):
        from_file = detector.score_file(paths[index])
        from_array = detector.score_array(smoke.waveform(index), 16000)
        assert from_file.score == pytest.approx(table.scores[index], abs=2e-6)  # scores.txt keeps 6 decimals
        assert from_array.score == pytest.approx(from_file.score, abs=1e-6)
        assert from_file.decision == ("bonafide" if from_file.score > detector.threshold else "spoof")


def test_cli_evaluate_scores_several_checkpoints_as_their_mean_calibrated_log_odds(evaluated, run, smoke, tmp_path,
                                                                                    capsys):
    other = tmp_path / "other_run"
    train(load_config(overrides=[*TINY_RUN, "train.seed=1"]), smoke, smoke, other, progress=False)
    singles = [read_cm_scores(evaluated[0] / "scores.txt").scores]
    evaluate(other / "best.pt", smoke.directory, tmp_path / "other_eval", progress=False)
    singles.append(read_cm_scores(tmp_path / "other_eval" / "scores.txt").scores)
    calibrations = [load_checkpoint(path / "best.pt")["selection"]["calibration"] for path in (run, other)]
    expected = np.mean([c["scale"] * s + c["bias"] for c, s in zip(calibrations, singles)], axis=0)

    out = tmp_path / "ensemble"
    assert main(["evaluate", "--checkpoint", str(run / "best.pt"), "--checkpoint", str(other / "best.pt"),
                 "--data", str(smoke.directory), "--out", str(out)]) == 0
    fused = read_cm_scores(out / "scores.txt")
    assert fused.scores == pytest.approx(expected, abs=1e-5)  # singles' scores.txt keep 6 decimals
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["scoring"]["checkpoint"] == f"{run / 'best.pt'}, {other / 'best.pt'}"
    assert "ensemble (mean calibrated log-odds) of" in (out / "report.md").read_text()
    # a member without a dev selection cannot be put on the others' scale: a clear error, exit 1
    state = load_checkpoint(other / "best.pt")
    del state["selection"]
    save_checkpoint(state, tmp_path / "raw.pt")
    with pytest.warns(UserWarning):
        code = main(["evaluate", "--checkpoint", str(run / "best.pt"), "--checkpoint", str(tmp_path / "raw.pt"),
                     "--data", str(smoke.directory), "--out", str(tmp_path / "o")])
    assert code == 1 and "raw.pt: no dev calibration" in capsys.readouterr().err


def test_cli_evaluate_with_asv_scores(run, smoke, tmp_path, capsys):
    if not ASV.is_file():
        pytest.skip("ASV score file not present")
    out = tmp_path / "eval"
    code = main(["evaluate", "--checkpoint", str(run / "best.pt"), "--data", str(smoke.directory), "--out", str(out),
                 "--asv-scores", str(ASV), "--hop", "1.0"])
    assert code == 0
    printed = capsys.readouterr().out
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["min_tdcf"] == saved["min_tdcf_legacy"] > 0
    assert saved["scoring"]["hop"] == 16000
    assert "min t-DCF (ASVspoof 2019)" in printed


def test_cli_evaluate_bad_inputs(run, tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(tmp_path / "none.pt"), "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "none.pt: checkpoint file not found" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(run / "best.pt"), "--data", str(tmp_path / "nocache"), "--out", str(tmp_path / "o")]) == 1
    assert "nocache" in capsys.readouterr().err
    # Samples where seconds are expected: refused before anything is allocated.
    assert main(["evaluate", "--checkpoint", str(run / "best.pt"), "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                 "--window", "32000"]) == 1
    assert "--window: 32000 s is more than 600 s; the option is in seconds" in capsys.readouterr().err


def test_cli_score_folder_with_a_corrupt_file(run, smoke, tmp_path, capsys):
    folder = tmp_path / "audio"
    folder.mkdir()
    for path in list(smoke.paths)[:3]:
        shutil.copy(path, folder)
    corrupt = folder / "corrupt.flac"
    corrupt.write_bytes(Path(smoke.paths[3]).read_bytes()[:1500])
    code = main(["score", "--checkpoint", str(run / "best.pt"), str(folder), "--json"])
    assert code == 1
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert len(rows) == 4
    errors = [r for r in rows if "error" in r]
    assert [Path(r["path"]).name for r in errors] == ["corrupt.flac"]
    scored = [r for r in rows if "error" not in r]
    assert all(r["decision"] in ("bonafide", "spoof") and 0 <= r["probability_bonafide"] <= 1 for r in scored)
    assert all(len(r["windows"]) >= 1 and r["calibrated"] for r in scored)
    assert "3 of 4 files, 1 failed" in captured.err
    # Text output of a long recording: per-window lines and spoof-like ranges.
    long_wav = tmp_path / "long.wav"
    import soundfile as sf

    sf.write(long_wav, np.concatenate([smoke.waveform(i) for i in range(4)]), 16000, subtype="PCM_16")
    assert main(["score", "--checkpoint", str(run / "best.pt"), str(long_wav)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(str(long_wav)) and "P(bona fide)" in lines[0]
    assert sum(" s\tscore " in line for line in lines) > 3
    assert lines[-1].startswith("  spoof-like ranges:")


def test_evaluate_one_class_set_keeps_scores_and_says_why(run, tmp_path, capsys):
    protocol = tmp_path / "bonafide_only.txt"
    protocol.write_text("".join(line + "\n" for line in SMOKE.read_text().splitlines() if line.endswith("bonafide")))
    prepare_cache(read_protocol(protocol, SMOKE.parents[1] / "flac"), tmp_path / "cache", workers=1, progress=False)
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(run / "best.pt"), "--data", str(tmp_path / "cache"), "--out", str(out)]) == 1
    assert "spoof_scores: no scores (both classes are needed" in capsys.readouterr().err
    assert len(read_cm_scores(out / "scores.txt").utt_ids) == 20  # the scores are still there
