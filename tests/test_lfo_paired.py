"""benchmarks/lfo_paired.py: a lever against its control on the same folds, with a paired bootstrap."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import lfo_paired

HELD_OUT = {"lm-tts": ["S29", "S31"], "neural-vc": ["S24", "S42"]}
SYSTEMS = ["S29", "S31", "S24", "S42", "S01"]


def dev_trials(rng: np.random.Generator):
    """A small dev set: 60 bona fide clips of 12 speakers, 20 spoofs of each of 5 systems in 4 voices."""
    labels = np.array([1] * 60 + [0] * 100)  # rawguard.conventions: 1 bona fide, 0 spoof
    systems = np.array(["-"] * 60 + [s for s in SYSTEMS for _ in range(20)])
    speakers = [f"LS_{i // 5}" for i in range(60)] + [f"V{i % 4}" for i in range(100)]
    return labels, systems, speakers


def member(labels, systems, seeds, shift: float, rng) -> dict:
    """``load_runs``-style runs of one model: scores of bona fide ~N(1, 1), seen spoofs ~N(-2, 1),
    held-out spoofs ~N(0 - shift, 1): a larger shift catches more of the held-out family."""
    runs = {}
    for group, out in HELD_OUT.items():
        for seed in seeds:
            scores = np.where(labels == 1, 1.0, np.where(np.isin(systems, out), -shift, -2.0))
            scores = scores + rng.normal(0, 1, labels.size)
            runs[(group, seed)] = ({"group": group, "seed": seed, "held_out": out},
                                   {"scores": scores.astype(np.float32), "labels": labels, "systems": systems})
    return runs


def test_a_lever_that_catches_the_held_out_family_is_lower_in_every_fold_and_resample():
    rng = np.random.default_rng(0)
    labels, systems, speakers = dev_trials(rng)
    lever = member(labels, systems, [0, 1, 2], shift=1.5, rng=rng)
    control = member(labels, systems, [0, 1, 2], shift=0.0, rng=rng)
    result = lfo_paired.compare([lever], [control], speakers, resamples=300)
    assert len(result["folds"]) == 6 and result["folds_lever_lower"] == 6
    assert [row["seed"] for row in result["per_seed"]] == [0, 1, 2]
    low, high = result["difference_interval"]
    assert low < result["difference_mean"] < high < 0 and result["lever_lower_share"] == 1.0
    assert result["lever_interval"][0] < result["lever_mean"] < result["lever_interval"][1]
    text = lfo_paired.summarise(result, "lever", "control")
    assert "lower in 6 of 6 folds" in text and "| LM-based TTS | 0 |" in text


def test_a_side_against_itself_differs_by_nothing_and_fused_members_are_one_model():
    rng = np.random.default_rng(1)
    labels, systems, speakers = dev_trials(rng)
    a, b = member(labels, systems, [0], 1.0, rng), member(labels, systems, [0], 1.0, rng)
    same = lfo_paired.compare([a, b], [a, b], speakers, resamples=200)
    assert same["difference_mean"] == 0 and same["difference_interval"] == (0.0, 0.0)
    assert same["lever_lower_share"] == 0.0
    fused, _ = lfo_paired.side_scores([a, b], ("lm-tts", 0))
    alone, _ = lfo_paired.side_scores([a], ("lm-tts", 0))
    assert fused.shape == alone.shape and not np.allclose(fused, alone)


def test_sides_without_a_shared_fold_or_with_other_trials_are_refused():
    rng = np.random.default_rng(2)
    labels, systems, speakers = dev_trials(rng)
    lever = member(labels, systems, [0], 1.0, rng)
    with pytest.raises(SystemExit, match="share no"):
        lfo_paired.compare([lever], [member(labels, systems, [1], 1.0, rng)], speakers, resamples=200)
    other = member(labels, np.roll(systems, 1), [0], 1.0, rng)
    with pytest.raises(SystemExit, match="different dev trials"):
        lfo_paired.compare([lever], [other], speakers, resamples=200)
    with pytest.raises(SystemExit, match="dev_v3 cache has 3 clips"):
        lfo_paired.compare([lever], [lever], speakers[:3], resamples=200)


def test_whole_speakers_are_drawn():
    rng = np.random.default_rng(3)
    clusters = np.array([0, 0, 0, 1, 2, 2])
    counts = lfo_paired.cluster_counts(clusters, 50, rng)
    assert counts.shape == (50, 6)
    assert (counts[:, 0] == counts[:, 1]).all() and (counts[:, 4] == counts[:, 5]).all()
    assert (counts[:, [0, 3, 4]].sum(axis=1) == 3).all()  # as many speakers drawn as there are


def test_a_member_of_the_next_seed_is_the_same_model_trained_again():
    rng = np.random.default_rng(5)
    labels, systems, speakers = dev_trials(rng)
    runs = member(labels, systems, [0, 1, 2], 1.0, rng)
    shifted = lfo_paired.next_seeds(runs, 1)
    assert shifted[("lm-tts", 0)] is runs[("lm-tts", 1)] and shifted[("lm-tts", 2)] is runs[("lm-tts", 0)]
    assert lfo_paired.next_seeds(runs, 3) == runs
    two_seeds = lfo_paired.compare([runs, shifted], [runs], speakers, resamples=200)
    assert len(two_seeds["folds"]) == 6 and two_seeds["difference_mean"] != 0


def test_a_bad_seed_shift_is_named(tmp_path):
    with pytest.raises(SystemExit, match="seed shift after @ must be a whole number"):
        lfo_paired.parse_side(["a=one@x"], tmp_path, None)
