"""Logistic score fusion: fitted on dev, applied to held-out trials, on real published score files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from rawguard.cli import main
from rawguard.conventions import BONAFIDE, SPOOF
from rawguard.fusion import FusionError, fit_fusion, fuse_score_files
from rawguard.metrics import compute_eer

METRICS = Path(__file__).resolve().parents[1].parent / "shared" / "metrics"
SYSTEMS = ("rawgat_mul.txt.gz", "rawbmamba_19LA.txt.gz")


def _eer(lines: list[str]) -> float:
    fields = [line.split() for line in lines]
    scores = np.array([float(f[3]) for f in fields])
    bona = np.array([f[2] == "bonafide" for f in fields])
    return 100 * compute_eer(scores[bona], scores[~bona])[0]


@pytest.fixture(scope="module")
def published_halves(tmp_path_factory) -> dict[str, list[Path]]:
    """Two published ASVspoof 2019 LA eval score files, each cut into a 'dev' and a 'held-out' half.

    The halves are split by utterance id (same trials in both systems' files); the held-out
    files are written in reverse order so that fusion must align trials by id, not by line.
    """
    if not all((METRICS / name).is_file() for name in SYSTEMS):
        pytest.skip(f"published score files not found in {METRICS}")
    out = tmp_path_factory.mktemp("published")
    files: dict[str, list[Path]] = {"dev": [], "held_out": []}
    for name in SYSTEMS:
        with gzip.open(METRICS / name, "rt") as handle:
            lines = sorted(line for line in handle if line.strip())
        stem = name.split(".")[0]
        for half, picked in (("dev", lines[0::2]), ("held_out", lines[1::2][::-1])):
            path = out / f"{stem}_{half}.txt"
            path.write_text("".join(picked))
            files[half].append(path)
    return files


def test_fusion_of_two_published_systems_beats_each_on_held_out_trials(published_halves, tmp_path):
    out = tmp_path / "fused.txt"
    summary = fuse_score_files(published_halves["held_out"], published_halves["dev"], out)
    fused_lines = out.read_text().splitlines()
    held_out_lines = published_halves["held_out"][0].read_text().splitlines()
    assert len(fused_lines) == len(held_out_lines) == summary["fused"]["trials"]
    # The official format: the same trials, ids, attacks and keys as the inputs.
    assert sorted(line.split()[:3] for line in fused_lines) == sorted(line.split()[:3] for line in held_out_lines)
    system_eers = [system["eer"] for system in summary["systems"]]
    assert system_eers[0] == pytest.approx(_eer(held_out_lines))
    assert summary["fused"]["eer"] == pytest.approx(_eer(fused_lines), abs=1e-3)  # 6-decimal rounding of the file
    assert summary["fused"]["eer"] < min(system_eers)
    assert all(weight > 0 for weight in summary["fusion"]["weights"])  # both systems carry information
    sidecar = json.loads(Path(f"{out}.fusion.json").read_text())
    assert sidecar == json.loads(json.dumps(summary))


def test_fused_score_is_the_log_likelihood_ratio_whatever_the_dev_class_ratio():
    # Bona fide N(+1, 1), spoof N(-1, 1): the true LLR is 2 s, independent of how many of each dev holds.
    rng = np.random.default_rng(0)
    bona, spoof = rng.normal(1, 1, 4000), rng.normal(-1, 1, 12000)
    scores = np.concatenate([bona, spoof])[:, None]
    labels = np.concatenate([np.full(bona.size, BONAFIDE), np.full(spoof.size, SPOOF)])
    fusion = fit_fusion(scores, labels)
    assert fusion.weights[0] == pytest.approx(2.0, abs=0.1)
    assert fusion.bias == pytest.approx(0.0, abs=0.06)
    assert fusion.dev_prior_log_odds == pytest.approx(np.log(1 / 3))


def test_an_uninformative_system_gets_almost_no_weight():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 5000)
    informative = np.where(labels == BONAFIDE, 1.0, -1.0) + rng.normal(0, 1, labels.size)
    noise = rng.normal(0, 5, labels.size)
    fusion = fit_fusion(np.stack([informative, noise], axis=1), labels)
    assert abs(fusion.weights[1]) * 5 < 0.05 * fusion.weights[0]  # per standard deviation of each input


def _write(path: Path, rows: list[tuple[str, str, str, float]]) -> Path:
    path.write_text("".join(f"{u} {a} {k} {s}\n" for u, a, k, s in rows))
    return path


ROWS = [("u1", "-", "bonafide", 2.0), ("u2", "A01", "spoof", -1.0), ("u3", "-", "bonafide", 0.5), ("u4", "A02", "spoof", 0.1)]


def test_a_trial_missing_from_one_file_is_named(tmp_path):
    full = _write(tmp_path / "a.txt", ROWS)
    short = _write(tmp_path / "b.txt", ROWS[:3])
    with pytest.raises(FusionError, match=r"b\.txt: no score for utterance 'u4'"):
        fuse_score_files([full, short], [full, full], tmp_path / "out.txt")
    with pytest.raises(FusionError, match=r"b\.txt: no score for utterance 'u4'"):
        fuse_score_files([full, full], [full, short], tmp_path / "out.txt")
    assert not (tmp_path / "out.txt").exists()


def test_conflicting_labels_and_unequal_file_counts_are_refused(tmp_path):
    good = _write(tmp_path / "a.txt", ROWS)
    relabelled = _write(tmp_path / "b.txt", [("u1", "A01", "spoof", 2.0), *ROWS[1:]])
    with pytest.raises(FusionError, match=r"b\.txt: utterance 'u1' is labelled differently"):
        fuse_score_files([good, relabelled], [good, good], tmp_path / "out.txt")
    with pytest.raises(FusionError, match="one dev score file per system: 2 score file"):
        fuse_score_files([good, good], [good], tmp_path / "out.txt")


def test_cli_writes_fused_scores_and_reports_errors(tmp_path, capsys):
    a = _write(tmp_path / "a.txt", ROWS)
    b = _write(tmp_path / "b.txt", [(u, at, k, s * 0.5 + 0.1) for u, at, k, s in ROWS])
    assert main(["fuse", str(a), str(b), "--dev", str(a), str(b), "--out", str(tmp_path / "f.txt")]) == 0
    assert "fused" in capsys.readouterr().out
    assert len((tmp_path / "f.txt").read_text().splitlines()) == len(ROWS)
    (tmp_path / "bad.txt").write_text("u1 - bonafide nan\n")
    assert main(["fuse", str(tmp_path / "bad.txt"), "--dev", str(a), "--out", str(tmp_path / "g.txt")]) == 1
    assert "bad.txt:1" in capsys.readouterr().err
