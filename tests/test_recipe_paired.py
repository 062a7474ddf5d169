"""benchmarks/recipe_paired.py: whole recipe runs of a lever against its control on the same dev trials."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import recipe_paired

# 24 bona fide clips of 6 speakers and 24 spoofs of 4 systems by 3 speakers: S20 and S21 LM-based TTS,
# S22 and S23 neural vocoders.
BONA = [(f"LS_{i % 6}", f"B{i:02d}", "-", "bonafide") for i in range(24)]
SPOOF = [(f"X{i % 3}", f"S{i:02d}", f"S{20 + i % 4}", "spoof") for i in range(24)]
TRIALS = BONA + SPOOF


def write_corpus(tmp_path: Path) -> list[str]:
    protocol = tmp_path / "dev_v3.txt"
    protocol.write_text("".join(f"{spk} {utt} - {system} {key}\n" for spk, utt, system, key in TRIALS))
    families = {"S20": "lm-tts", "S21": "lm-tts", "S22": "neural-vocoder", "S23": "neural-vocoder"}
    (tmp_path / "systems.tsv").write_text("system\tfamily\n-\tbonafide\n"
                                          + "".join(f"{s}\t{f}\n" for s, f in families.items()))
    (tmp_path / "flac").mkdir()
    for _, utt, *_ in TRIALS:  # the protocol reader looks every id up among the audio files
        (tmp_path / "flac" / f"{utt}.flac").touch()
    return ["--protocol", str(protocol), "--audio-dir", str(tmp_path / "flac"),
            "--systems", str(tmp_path / "systems.tsv")]


def write_run(tmp_path: Path, name: str, scores: np.ndarray, trials=TRIALS) -> str:
    path = tmp_path / name / recipe_paired.DEV_SCORES
    path.parent.mkdir(parents=True)
    rows = [f"{utt} {system} {key} {score:.4f}\n" for (_, utt, system, key), score in zip(trials, scores)]
    path.write_text("".join(reversed(rows)))  # another order than the first run's: matched by id
    return str(tmp_path / name)


def overlapping(overlap: int, rng: np.random.Generator) -> np.ndarray:
    """Scores where ``overlap`` bona fide clips fall below every spoof's maximum (EER grows with it)."""
    bona = rng.uniform(1.0, 2.0, len(BONA))
    bona[:overlap] = rng.uniform(-2.0, 0.0, overlap)
    spoof = rng.uniform(-1.0, 0.5, len(SPOOF))
    return np.concatenate([bona, spoof])


def test_a_better_lever_is_lower_on_every_paired_resample(tmp_path, capsys):
    options = write_corpus(tmp_path)
    rng = np.random.default_rng(0)
    lever = [write_run(tmp_path, f"lever{i}", overlapping(0, rng)) for i in range(2)]
    control = [write_run(tmp_path, f"control{i}", overlapping(6, rng)) for i in range(2)]
    out = tmp_path / "paired.json"
    assert recipe_paired.main(["--lever", *lever, "--control", *control, *options, "--resamples", "300",
                               "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["eers"][:2] == [0.0, 0.0]
    assert all(eer > 0.1 for eer in result["eers"][2:])
    assert result["difference_mean"] == pytest.approx(-np.mean(result["eers"][2:]))
    assert result["difference_interval"][1] < 0
    assert result["lever_lower_share"] == 1.0
    assert set(result["groups"]) == {"lm-tts", "neural-vocoder"}
    assert all(side["lever"] == 0.0 < side["control"] for side in result["groups"].values())
    printed = capsys.readouterr().out
    assert "lever minus control: **-" in printed
    assert "| LM-based TTS | 0.0 |" in printed


def test_identical_runs_differ_by_nothing(tmp_path):
    options = write_corpus(tmp_path)
    scores = overlapping(4, np.random.default_rng(1))
    out = tmp_path / "paired.json"
    recipe_paired.main(["--lever", write_run(tmp_path, "a", scores), "--control", write_run(tmp_path, "b", scores),
                        *options, "--resamples", "200", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["difference_mean"] == 0.0
    assert result["difference_interval"] == [0.0, 0.0]
    assert result["lever_interval"] == result["control_interval"]
    assert result["lever_interval"][0] < result["lever_mean"] < result["lever_interval"][1]


def test_a_trade_between_families_shows_in_the_family_means(tmp_path):
    options = write_corpus(tmp_path)
    scores = overlapping(0, np.random.default_rng(3))
    lever, control = scores.copy(), scores.copy()
    lm_tts = len(BONA) + np.flatnonzero([system in ("S20", "S21") for _, _, system, _ in SPOOF])
    vocoders = len(BONA) + np.flatnonzero([system in ("S22", "S23") for _, _, system, _ in SPOOF])
    lever[lm_tts] += 2.5  # the lever passes LM-based TTS as bona fide, the control the vocoders
    control[vocoders] += 2.5
    out = tmp_path / "paired.json"
    recipe_paired.main(["--lever", write_run(tmp_path, "a", lever), "--control", write_run(tmp_path, "b", control),
                        *options, "--resamples", "100", "--out", str(out)])
    groups = json.loads(out.read_text())["groups"]
    assert groups["lm-tts"]["lever"] > 0.5 > groups["lm-tts"]["control"] == 0.0
    assert groups["neural-vocoder"]["control"] > 0.5 > groups["neural-vocoder"]["lever"] == 0.0


def test_runs_of_other_trials_or_without_scores_are_named(tmp_path):
    options = write_corpus(tmp_path)
    scores = overlapping(2, np.random.default_rng(2))
    full = write_run(tmp_path, "full", scores)
    short = write_run(tmp_path, "short", scores[1:], TRIALS[1:])
    with pytest.raises(SystemExit, match=r"short/eval/dev_v3/scores.txt: scores other trials than"):
        recipe_paired.main(["--lever", full, "--control", short, *options])
    with pytest.raises(SystemExit, match=r"empty: no eval/dev_v3/scores.txt"):
        recipe_paired.main(["--lever", full, "--control", str(tmp_path / "empty"), *options])
