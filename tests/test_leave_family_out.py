"""The leave-family-out yardstick's harness (benchmarks/leave_family_out.py) on the real corpus v3
protocols: family grouping, held-out splits, bona fide subsets, and the table's arithmetic."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from rawguard.conventions import BONAFIDE, SPOOF

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import leave_family_out as lfo  # noqa: E402

CORPUS = REPO.parent / "shared" / "corpus"
needs_v3 = pytest.mark.skipif(not (CORPUS / "protocols" / "train_v3.txt").is_file(),
                              reason="needs ../shared/corpus (v3) beside the repository")


@pytest.fixture(scope="module")
def groups() -> dict[str, list[str]]:
    return lfo.group_systems(lfo.read_families(CORPUS / "systems.tsv"))


@pytest.fixture(scope="module")
def v3_items() -> tuple[list, list]:
    return lfo.read_split("train_v3.txt"), lfo.read_split("dev_v3.txt")


@needs_v3
def test_every_system_of_systems_tsv_falls_in_exactly_one_group(groups):
    families = lfo.read_families(CORPUS / "systems.tsv")
    members = [system for systems in groups.values() for system in systems]
    assert sorted(members) == sorted(families) and len(members) == len(set(members)) == 42
    assert groups["lm-tts"] == ["S29", "S31", "S32", "S33", "S34", "S36"]
    assert {"S30", "S35", "S41", "S50"} <= set(groups["diffusion-flow-tts"])  # flow matching and diffusion together
    assert groups["classical"] == ["S01", "S02", "S03", "S04", "S05", "S06", "S11"]
    assert "S24" in groups["neural-vc"] and "S11" not in groups["neural-vc"]  # WORLD-based VC is classical
    assert {"S07", "S08", "S21", "S22", "S47", "S48"} == set(groups["neural-vocoder"])
    assert all(families[s] == "neural-tts" for s in groups["other-neural-tts"])


def test_a_family_no_group_gathers_is_refused_by_name(tmp_path):
    tsv = tmp_path / "systems.tsv"
    tsv.write_text("system\tfamily\tdescription\n-\tbonafide\treal\nS01\tformant\tx\nS99\tcodec-lm\ty\n")
    with pytest.raises(SystemExit, match=r"codec-lm: S99"):
        lfo.group_systems(lfo.read_families(tsv), tsv)
    (tmp_path / "bad.tsv").write_text("id\tkind\nS01\tformant\n")
    with pytest.raises(SystemExit, match="'system' and 'family'"):
        lfo.read_families(tmp_path / "bad.tsv")


@needs_v3
@pytest.mark.parametrize("group", lfo.DEFAULT_GROUPS)
def test_held_out_splits_never_leak_a_held_out_system_into_training(group, groups, v3_items):
    train, dev = v3_items
    held = groups[group]
    sets = lfo.held_out_sets(train, dev, held)
    assert not {item.system for item in sets["train_seen"]} & set(held)
    assert not {item.system for item in sets["dev_seen"]} & set(held)
    # Nothing else is lost: train_seen is train minus exactly the held-out systems' clips.
    assert len(sets["train_seen"]) == sum(item.system not in held for item in train) > 0
    assert len(sets["train_seen"]) < len(train)
    assert sets["dev"] == dev and len(dev) == 1051
    unseen_dev = [item for item in dev if item.system in held]
    assert unseen_dev, f"{group}: no dev clip to measure the unseen EER on"


@needs_v3
def test_dev_v3_bona_fide_subsets_are_the_expected_speakers(v3_items):
    _, dev = v3_items
    speakers = [item.speaker for item in dev if item.system == "-"]
    counts = {name: sum(name in lfo.bonafide_subsets(s) for s in speakers) for name in lfo.SUBSETS}
    # EmoDB (36) + Urdu (17) emotional; Urdu talk shows broadcast; read speech = the LibriSpeech readers.
    assert counts["emotional"] == 53 and counts["broadcast"] == 17
    assert counts["read (LibriSpeech)"] == 139
    assert counts["non-English"] > counts["emotional"]  # also CSS10, CSMSC, Italian MLS, French prompts
    assert lfo.bonafide_subsets("MLS_english_10611") == []
    assert lfo.bonafide_subsets("MLS_italian_280") == ["non-English"]
    assert lfo.bonafide_subsets("URDU_SM6") == ["emotional", "broadcast", "non-English"]
    assert lfo.bonafide_subsets("VCTK_p226") == []


def test_bona_fide_rejection_is_counted_at_the_seen_spoofs_eer_threshold():
    # 4 bona fide (2 read, 2 emotional) and 4 spoofs; the unseen system S99 must not move the threshold.
    scores = np.array([0.9, 0.8, 0.2, 0.6, 0.1, 0.3, 0.95, 0.97])
    labels = np.array([BONAFIDE] * 4 + [SPOOF] * 4)
    systems = np.array(["-", "-", "-", "-", "S01", "S01", "S99", "S99"])
    speakers = ["LS_1", "LS_2", "EMODB_11", "EMODB_12", "x", "x", "x", "x"]
    result = lfo.bonafide_rejection(scores, labels, systems, speakers, held_out=["S99"])
    assert 0.2 <= result["dev_threshold"] < 0.6  # S99's 0.95 and 0.97 would have pushed it above 0.9
    assert result["bonafide_rejection"]["emotional"] == pytest.approx(0.5)  # 0.2 rejected, 0.6 accepted
    assert result["bonafide_rejection"]["read (LibriSpeech)"] == 0.0
    assert result["bonafide_rejection"]["broadcast"] is None and result["n_bonafide_subset"]["emotional"] == 2


def _record(group, seed, unseen, seen, emotional):
    return {"group": group, "seed": seed, "held_out": ["S29", "S31"], "n_unseen": 20, "unseen_eer": unseen,
            "seen_eer": seen, "bonafide_rejection": {**dict.fromkeys(lfo.SUBSETS, None), "emotional": emotional},
            "n_bonafide_subset": dict.fromkeys(lfo.SUBSETS, 53)}


def test_table_gives_mean_and_sample_sd_over_seeds_per_group_and_the_mean_over_groups():
    records = [_record("lm-tts", 0, 0.30, 0.10, 0.40), _record("lm-tts", 1, 0.40, 0.12, 0.20),
               _record("classical", 0, 0.05, 0.08, 0.10)]
    rows = lfo.summarise(records, {"lm-tts": {"unseen_eer": 0.25, "seen_eer": 0.09}}).splitlines()
    assert rows[2].startswith("| LM-based TTS | S29, S31 | 20 | 2 | 35.0 ± 7.1 | 30.0, 40.0 | 25.0 | 11.0 ± 1.4 | "
                              "30.0 (n=53) | - |")
    assert rows[3].startswith("| classical | S29, S31 | 20 | 1 | 5.0 ± - | 5.0 | - | 8.0 ± - | 10.0 (n=53) |")
    # Groups weigh equally whatever their number of seeds: (35 + 5) / 2; no fused mean unless every group has one.
    assert rows[4] == "| **mean over groups** | | | | 20.0 | | - | 9.5 | 23.3 | - | - | - |"


def test_seed_fusion_averages_the_seeds_scores_before_the_eer(tmp_path):
    labels = np.array([BONAFIDE] * 4 + [SPOOF] * 4)
    systems = np.array(["-"] * 4 + ["S29", "S29", "S01", "S01"])
    # Each seed alone misorders one held-out spoof above one bona fide; their mean orders every trial.
    seed_scores = [np.array([1.0, 2.0, 3.0, 4.0, 2.5, -1.0, -2.0, -3.0]),
                   np.array([4.0, 3.0, 2.0, 1.0, -1.0, 2.5, -2.0, -3.0])]
    records = []
    for seed, scores in enumerate(seed_scores):
        (tmp_path / f"lm-tts_seed{seed}").mkdir()
        np.savez(tmp_path / f"lm-tts_seed{seed}" / "lso_scores.npz", scores=scores, labels=labels, systems=systems)
        records.append({"group": "lm-tts", "seed": seed, "held_out": ["S29"]})
    records.append({"group": "classical", "seed": 0, "held_out": ["S01"]})  # one seed: nothing to fuse
    fused = lfo.seed_fusion(records, tmp_path)
    assert list(fused) == ["lm-tts"] and fused["lm-tts"]["seeds"] == [0, 1]
    assert fused["lm-tts"]["unseen_eer"] == 0.0 and fused["lm-tts"]["seen_eer"] == 0.0


def test_fold_overrides_apply_the_profile_the_lever_and_no_copy_share_without_copies(tmp_path):
    from rawguard.config import load_config

    args = lfo.parse_args(["--augment", "channel", "--set", "data.window=32000"])
    overrides = lfo.fold_overrides(2, args)
    config = load_config(args.config, overrides)
    assert config.model.overrides["block_channels"] == [32, 64] and config.train.max_steps == 4000
    assert config.train.seed == 2 and config.train.threads == 1 and config.eval.every == 1000
    assert config.data.sampling.copy_share is None and config.data.window == 32000
    assert config.augment.codec.p == 0.3 and config.augment.telephone.p == 0.3 and config.augment.enabled
    extra = tmp_path / "lpc" / "protocol.csv"
    with_copies = load_config(args.config, lfo.fold_overrides(0, lfo.parse_args(["--profile", "recipe",
                                                                                 "--train-extra", str(extra)])))
    assert with_copies.data.sampling.copy_share == 0.5 and with_copies.train.max_steps == 12000


def _fold_scores(rng: np.random.Generator, separation: float) -> dict:
    """Dev-like trials: 40 bona fide ('-'), 40 seen spoofs (S01), 40 held-out spoofs (S29)."""
    labels = np.array([BONAFIDE] * 40 + [SPOOF] * 80)
    systems = np.array(["-"] * 40 + ["S01"] * 40 + ["S29"] * 40)
    scores = np.concatenate([rng.normal(separation, 1, 40), rng.normal(0, 1, 80)])
    return {"scores": scores.astype(np.float32), "labels": labels, "systems": systems}


def test_model_fusion_weights_never_see_the_held_out_family():
    import lfo_fuse_models as fuse

    rng = np.random.default_rng(0)
    member = _fold_scores(rng, 3.0)
    # A second member that is useless on seen spoofs but would separate the held-out ones perfectly:
    # weights fitted on the seen trials alone must not exploit it.
    cheat = dict(member, scores=np.where(member["systems"] == "S29", -50.0, rng.normal(0, 1, 120)))
    stacked = np.stack([member["scores"], cheat["scores"]], axis=1).astype(np.float64)
    fused = fuse.logistic_fusion(stacked, member["labels"], member["systems"], ["S29"])
    from rawguard.fusion import fit_fusion
    known = member["systems"] != "S29"
    expected = fit_fusion(stacked[known], member["labels"][known]).apply(stacked)
    np.testing.assert_allclose(fused, expected)
    leaky = fit_fusion(stacked, member["labels"]).apply(stacked)
    assert not np.allclose(fused, leaky)


def test_model_fusion_refuses_members_scored_on_different_trials():
    import lfo_fuse_models as fuse

    rng = np.random.default_rng(1)
    record = {"group": "lm-tts", "seed": 0, "held_out": ["S29"]}
    a, b = _fold_scores(rng, 2.0), _fold_scores(rng, 2.0)
    b["systems"] = b["systems"].copy()
    b["systems"][50] = "S02"
    speakers = ["LS_1"] * 120
    with pytest.raises(SystemExit, match="lm-tts seed 0: members scored different dev trials"):
        fuse.fuse_fold([(record, a), (record, b)], speakers)
    fused = fuse.fuse_fold([(record, a), (record, dict(a, scores=a["scores"] + 1))], speakers)
    # Two members differing by a constant: the plain mean ranks trials as either member does.
    alone = fuse.score_run(a["scores"], a["labels"], a["systems"], speakers, ["S29"])
    assert fused["mean"]["unseen_eer"] == pytest.approx(alone["unseen_eer"])


def _write_fold(runs: Path, sweep: str, group: str, seed: int, scores: dict) -> None:
    """A finished leave-family-out run as ``leave_family_out.py`` leaves it: record and scores."""
    run = runs / sweep / f"{group}_seed{seed}"
    run.mkdir(parents=True)
    (run / "lfo_result.json").write_text(json.dumps({"group": group, "seed": seed, "held_out": ["S29"]}))
    np.savez(run / "lso_scores.npz", **scores)


def test_model_fusion_gathers_a_members_seeds_from_several_sweeps(tmp_path):
    import lfo_fuse_models as fuse

    rng = np.random.default_rng(2)
    for seed, sweep in enumerate(["one", "one_seed1"]):
        _write_fold(tmp_path, sweep, "lm-tts", seed, _fold_scores(rng, 2.0))
    _write_fold(tmp_path, "two", "lm-tts", 0, _fold_scores(rng, 1.0))
    gathered = fuse.load_runs(tmp_path, fuse.parse_member("a=one,one_seed1")[1])
    assert sorted(gathered) == [("lm-tts", 0), ("lm-tts", 1)]
    assert fuse.parse_member("a=one,one_seed1") == ("a", ["one", "one_seed1"])
    assert fuse.parse_member("one") == ("one", ["one"])
    with pytest.raises(SystemExit, match="lm-tts seed 0 is in both one and two"):
        fuse.load_runs(tmp_path, ["one", "two"])
    with pytest.raises(SystemExit, match="no finished runs under .*missing"):
        fuse.load_runs(tmp_path, ["one", "missing"])
    with pytest.raises(SystemExit, match="no sweep named"):
        fuse.parse_member("a=")


def test_model_fusion_table_gives_the_spread_over_seeds_and_each_seeds_mean():
    import lfo_fuse_models as fuse

    def result(unseen: float) -> dict:
        return {"unseen_eer": unseen, "seen_eer": 0.1,
                "bonafide_rejection": {subset: 0.0 for subset in fuse.SUBSETS}}

    rows = [{"group": group, "seed": seed, "members": {"a": result(base + 0.02 * seed)},
             "fused": {f: result(base) for f in ("mean", "logistic", "calibrated")}, "reference": None}
            for group, base in (("lm-tts", 0.2), ("neural-vc", 0.3)) for seed in (0, 1)]
    table = fuse.summarise(rows, ["a"], None)
    assert "| lm-tts | 2 | 21.0 ± 1.4 / 10.0 | 20.0 ± 0.0 / 10.0 |" in table
    assert "| mean over groups, seed 0 | | **25.0** / 10.0 |" in table
    assert "| mean over groups, seed 1 | | **27.0** / 10.0 |" in table


def test_scoring_windows_name_each_runs_training_crop_from_its_config(tmp_path):
    import lfo_scoring_windows as windows

    from rawguard.config import load_config
    from rawguard.train import CONFIG_FILE

    assert windows.WINDOWS["0.5 s"] == (8_000, 4_000) and windows.WINDOWS["whole utterance"] == (None, None)
    for name, window in (("half", 8000), ("one", 16000)):
        run = tmp_path / name
        run.mkdir()
        (run / CONFIG_FILE).write_text(load_config("shared_corpus", [f"data.window={window}"]).to_yaml())
        assert windows.training_crop(run) == window / 16000
    with pytest.raises(Exception, match="config.yaml"):
        windows.training_crop(tmp_path / "missing")
