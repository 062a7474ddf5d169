"""Corpus recipes on small fixture corpora laid out exactly like the real ones.

The real corpora cannot be downloaded here, so each test builds the official folder layout with a few
generated clips and protocol lines in the official formats, then runs the recipe's prepare stage
through the CLI (with lpc copy synthesis, the fastest method) and checks that every set lands in its
cache with the right labels, and that only the train cache holds the copies.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rawguard.cli import main as cli_main
from rawguard.config import load_config
from rawguard.models import create_model
from rawguard.conventions import BONAFIDE, SPOOF
from rawguard.data.cache import Cache
from rawguard.recipes import RECIPES, RecipeError, check_layout, format_command, get_recipe, plan, with_protocols

REPO = Path(__file__).resolve().parents[1]


def _write_clips(folder: Path, ids: list[str], ext: str = ".flac", seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for utt in ids:
        sf.write(folder / f"{utt}{ext}", 0.1 * rng.standard_normal(3200).astype(np.float32), 16000)


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _la2019(root: Path) -> None:
    """ASVspoof 2019 LA: LA/ASVspoof2019_LA_{train,dev,eval}/flac + cm_protocols + asv_scores."""
    for split, letter, attack in (("train", "T", "A01"), ("dev", "D", "A02"), ("eval", "E", "A07")):
        ids = [f"LA_{letter}_{n:07d}" for n in range(1, 5)]
        _write_clips(root / f"LA/ASVspoof2019_LA_{split}/flac", ids)
        suffix = "trn" if split == "train" else "trl"
        _write(
            root / f"LA/ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.{split}.{suffix}.txt",
            [f"LA_00{n} {utt} - {'-' if n < 2 else attack} {'bonafide' if n < 2 else 'spoof'}" for n, utt in enumerate(ids)],
        )
    _write(root / "LA/ASVspoof2019_LA_asv_scores/ASVspoof2019.LA.asv.eval.gi.trl.scores.txt",
           ["bonafide target 7.9", "bonafide nontarget -3.2", "spoof spoof 1.0"])


def _la2021(root: Path, track: str) -> None:
    ids = [f"{track}_E_{n:07d}" for n in range(1, 5)]
    _write_clips(root / f"ASVspoof2021_{track}_eval/flac", ids, seed=1)
    if track == "LA":
        lines = [f"LA_0009 {utt} alaw ita_tx {'-' if n < 2 else 'A07'} {'bonafide' if n < 2 else 'spoof'} notrim eval"
                 for n, utt in enumerate(ids)]
    else:
        lines = [f"LA_0043 {utt} nocodec asvspoof {'-' if n < 2 else 'A19'} {'bonafide' if n < 2 else 'spoof'} notrim "
                 f"progress {'bonafide' if n < 2 else 'traditional_vocoder'} - - - -" for n, utt in enumerate(ids)]
    _write(root / f"keys/{track}/CM/trial_metadata.txt", lines)


def _asvspoof5(root: Path) -> None:
    for split, letter, folder, name in (("train", "T", "flac_T", "ASVspoof5.train.tsv"),
                                        ("dev", "D", "flac_D", "ASVspoof5.dev.track_1.tsv"),
                                        ("eval", "E", "flac_E_eval", "ASVspoof5.eval.track_1.tsv")):
        ids = [f"{letter}_{n:010d}" for n in range(4)]
        _write_clips(root / folder, ids, seed=2)
        _write(root / name, [
            f"{letter}_4850 {utt} F {'-' if n < 2 else 'mp3'} {'-' if n < 2 else '3'} - "
            f"{'-' if n < 2 else 'AC3'} {'bonafide' if n < 2 else 'A05'} {'bonafide' if n < 2 else 'spoof'} -"
            for n, utt in enumerate(ids)
        ])


def _in_the_wild(root: Path) -> None:
    _la2019(root)
    folder = root / "release_in_the_wild"
    _write_clips(folder, [str(n) for n in range(4)], ext=".wav", seed=3)
    _write(folder / "meta.csv", ["file,speaker,label"] + [
        f"{n}.wav,Speaker {n % 2},{'bona-fide' if n < 2 else 'spoof'}" for n in range(4)
    ])


def _shared_layout(root: Path) -> None:
    """v2 protocols train.txt / dev.txt, and v3's train_v3.txt / dev_v3.txt = v2 + two clips each."""
    for name, prefix, v3_prefix in (("train", "RG_T", "RG_U"), ("dev", "RG_D", "RG_V")):
        ids = [f"{prefix}_{n:06d}" for n in range(4)]
        _write_clips(root / "flac", ids, seed=4)
        lines = [f"LS_{n} {utt} - {'-' if n < 2 else 'S01'} {'bonafide' if n < 2 else 'spoof'}"
                 for n, utt in enumerate(ids)]
        _write(root / f"protocols/{name}.txt", lines)
        v3_ids = [f"{v3_prefix}_{n:06d}" for n in range(2)]
        _write_clips(root / "flac", v3_ids, seed=5)
        _write(root / f"protocols/{name}_v3.txt",
               lines + [f"EMODB_0{n} {utt} - {'-' if n < 1 else 'S29'} {'bonafide' if n < 1 else 'spoof'}"
                        for n, utt in enumerate(v3_ids)])


LAYOUTS = {
    "shared-corpus": _shared_layout,
    "asvspoof2019-la": _la2019,
    "asvspoof2021-la": lambda root: (_la2019(root), _la2021(root, "LA")),
    "asvspoof2021-df": lambda root: (_la2019(root), _la2021(root, "DF")),
    "asvspoof5": _asvspoof5,
    "in-the-wild": _in_the_wild,
}


def test_every_recipe_has_a_fixture_layout():
    assert set(LAYOUTS) == set(RECIPES)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_recipe_prepares_every_set_of_its_layout(name, tmp_path):
    recipe = get_recipe(name)
    root = tmp_path / "corpus"
    LAYOUTS[name](root)
    check_layout(recipe, root)
    out = tmp_path / "out"
    # lpc copies of the 2 train bona fide clips: also checks that the merged train prepare (which
    # detects the train protocol's format instead of being told it) reads every recipe's train format.
    assert cli_main(["recipe", name, "--root", str(root), "--out", str(out), "--stages", "prepare", "--workers", "1",
                     "--copy-synthesis", "lpc"]) == 0
    train = Cache.open(out / "caches" / recipe.train.name)
    v3 = name == "shared-corpus"  # 2 more clips per set, one of them bona fide (and copied)
    assert len(train) == 6 + 3 * v3
    copies = [system == "synth-lpc" for system in train.systems]
    assert sum(copies) == 2 + v3 and set(train.labels[copies].tolist()) == {SPOOF}
    assert sorted(train.labels.tolist()) == sorted([BONAFIDE] * (2 + v3) + [SPOOF] * (4 + 2 * v3))
    for data_set in [recipe.dev, *recipe.evaluations]:
        cache = Cache.open(out / "caches" / data_set.name)
        v3_set = data_set.protocol.endswith("_v3.txt")
        assert len(cache) == 4 + 2 * v3_set, data_set.name
        assert sorted(cache.labels.tolist()) == sorted([0, 0, 1, 1] + [0, 1] * v3_set), data_set.name
        assert "synth-lpc" not in cache.systems, data_set.name


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_config_loads(name):
    config = load_config(get_recipe(name).config)
    assert config.model.name in {"rawnet-lite", "rawnet2"}


def test_missing_layout_names_every_missing_path(tmp_path):
    _la2019(tmp_path)
    (tmp_path / "LA/ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.dev.trl.txt").unlink()
    with pytest.raises(RecipeError, match=r"ASVspoof2019\.LA\.cm\.dev\.trl\.txt") as error:
        check_layout(get_recipe("asvspoof2021-la"), tmp_path)
    assert "trial_metadata.txt" in str(error.value)  # the 2021 keys are missing too
    assert cli_main(["recipe", "asvspoof2019-la", "--root", str(tmp_path), "--out", str(tmp_path / "o")]) == 2


def test_plan_selects_on_dev_and_scores_eval_with_asv_scores(tmp_path):
    commands = [step.argv for step in plan(get_recipe("asvspoof2019-la"), tmp_path, tmp_path / "o",
                                           overrides=("train.max_steps=10",))]
    train = next(c for c in commands if c[0] == "train")
    assert train[train.index("--dev") + 1].endswith("caches/dev")
    assert train[-2:] == ["--set", "train.max_steps=10"]
    evaluations = [c for c in commands if c[0] == "evaluate"]
    assert [Path(c[c.index("--out") + 1]).name for c in evaluations] == ["dev", "eval"]
    assert "--asv-scores" in evaluations[1] and "--asv-scores" not in evaluations[0]
    with pytest.raises(RecipeError, match="unknown stage"):
        plan(get_recipe("asvspoof5"), tmp_path, tmp_path, stages=("fit",))
    with pytest.raises(RecipeError, match="unknown recipe 'la19'"):
        get_recipe("la19")


def test_shared_corpus_dry_run_resynthesises_train_bona_fide_before_preparing(tmp_path, capsys):
    root, out = tmp_path / "corpus", tmp_path / "o"
    assert cli_main(["recipe", "shared-corpus", "--root", str(root), "--out", str(out), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [format_command(step.argv) for step in plan(get_recipe("shared-corpus"), root, out)] == lines
    methods = ("lpc", "sinusoidal", "world", "griffin_lim", "neural", "world_vc")
    vocoder = {m: f" --vocoder {out}/vocoder/vocoder.pt" if m == "neural" else "" for m in methods}
    assert lines == [
        f"rawguard prepare {root}/protocols/train_v3.txt --out {out}/caches/train_v3_corpus --audio-dir {root}/flac "
        "--format asvspoof2019",
        f"rawguard train-vocoder {out}/caches/train_v3_corpus --out {out}/vocoder --max-steps 5000 --minutes 9",
        *(f"rawguard synth-spoof --protocol {root}/protocols/train_v3.txt --audio-dir {root}/flac --format asvspoof2019 "
          f"{out}/synth/{m} --method {m}{vocoder[m]}" for m in methods),
        f"rawguard prepare {root}/protocols/train_v3.txt "
        + " ".join(f"{out}/synth/{m}/protocol.csv" for m in methods)
        + f" --out {out}/caches/train_v3 --audio-dir {root}/flac" + " --audio-dir -" * len(methods),
        f"rawguard prepare {root}/protocols/dev_v3.txt --out {out}/caches/dev_v3 --audio-dir {root}/flac "
        "--format asvspoof2019",
        # the v2 dev set is scored too, never used for selection
        f"rawguard prepare {root}/protocols/dev.txt --out {out}/caches/dev --audio-dir {root}/flac "
        "--format asvspoof2019",
        f"rawguard train --train {out}/caches/train_v3 --dev {out}/caches/dev_v3 --out {out}/run --config shared_corpus",
        # the second model of the ensemble: 2-D blocks over the fixed bank's [bands x frames] map
        f"rawguard train --train {out}/caches/train_v3 --dev {out}/caches/dev_v3 --out {out}/run_2d --config "
        "shared_corpus --set model.encoder=2d model.frontend_channels=32 model.frontend_pool=12 "
        "'model.block_pools=[1,3]' 'model.block_channels=[8,16]' model.gru_hidden=64 data.window=16000 "
        "data.batch_size=32 train.compile=true train.max_minutes=12",
        # both models in one file, which is what is evaluated (and what the recipe ships)
        f"rawguard ensemble {out}/run/best.pt {out}/run_2d/best.pt --out {out}/ensemble.pt",
        *(f"rawguard evaluate --checkpoint {out}/ensemble.pt "
          f"--data {out}/caches/{name} --out {out}/eval/{name}" for name in ("dev_v3", "dev")),
    ]


def test_ensemble_members_train_beside_the_first_model_and_take_the_users_overrides(tmp_path, capsys):
    root, out = tmp_path / "corpus", tmp_path / "o"
    assert cli_main(["recipe", "shared-corpus", "--root", str(root), "--out", str(out), "--dry-run",
                     "--stages", "train", "--set", "train.seed=3", "model.gru_hidden=32"]) == 0
    trains = [shlex.split(line)[1:] for line in capsys.readouterr().out.splitlines()]
    assert [c[c.index("--out") + 1] for c in trains] == [f"{out}/run", f"{out}/run_2d"]
    configs = [load_config(c[c.index("--config") + 1], c[c.index("--set") + 1:]) for c in trains]
    models = [create_model(c.model.name, **c.model.overrides).config for c in configs]
    assert [(m.encoder, m.gru_hidden, c.train.seed) for m, c in zip(models, configs)] == [("1d", 32, 3), ("2d", 32, 3)]
    assert models[1].block_channels == (8, 16) and models[1].frontend == models[0].frontend == "fixed_sinc"
    # the 1-D model trains on 0.5 s crops at batch 64, the 2-D one on 1 s crops at batch 32
    assert [(c.data.window, c.data.batch_size) for c in configs] == [(8000, 64), (16000, 32)]
    # --single-model: the first model alone, evaluated alone
    assert cli_main(["recipe", "shared-corpus", "--root", str(root), "--out", str(out), "--dry-run",
                     "--stages", "train,evaluate", "--single-model"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "run_2d" not in "\n".join(lines)
    assert lines[-1] == f"rawguard evaluate --checkpoint {out}/run/best.pt --data {out}/caches/dev --out {out}/eval/dev"
    # a config of the user's own (here RawNet2's) trains alone: the members' overrides are the recipe config's
    assert cli_main(["recipe", "shared-corpus", "--root", str(root), "--out", str(out), "--dry-run",
                     "--stages", "train", "--config", "shared_corpus_rawnet2"]) == 0
    (train,) = capsys.readouterr().out.splitlines()
    assert train.endswith(f"--out {out}/run --config shared_corpus_rawnet2")


def test_shared_corpus_v2_protocols_keep_the_v2_recipe_and_its_budget(tmp_path, capsys):
    root, out = tmp_path / "corpus", tmp_path / "o"
    assert cli_main(["recipe", "shared-corpus", "--root", str(root), "--out", str(out), "--dry-run",
                     "--protocols", "v2", "--copy-synthesis", "lpc", "--set", "train.seed=3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "_v3" not in "\n".join(lines)
    assert lines[-2:] == [
        f"rawguard train --train {out}/caches/train --dev {out}/caches/dev --out {out}/run --config shared_corpus "
        "--set train.max_steps=13000 train.max_minutes=15 train.fit_schedule=false model.frontend=conv "
        "model.frontend_scale=mel "
        "model.spectrum_fft=0 data.window=16000 data.batch_size=32 train.seed=3",  # the user's --set comes last
        f"rawguard evaluate --checkpoint {out}/run/best.pt --data {out}/caches/dev --out {out}/eval/dev",
    ]
    recipe = with_protocols(get_recipe("shared-corpus"), "v2")
    assert (recipe.train.protocol, recipe.dev.protocol, recipe.evaluations) == (
        "protocols/train.txt", "protocols/dev.txt", ())
    assert with_protocols(get_recipe("shared-corpus"), "v3") == get_recipe("shared-corpus")
    with pytest.raises(RecipeError, match=r"no protocols 'v1'; it has v3, v2"):
        with_protocols(get_recipe("shared-corpus"), "v1")
    assert cli_main(["recipe", "asvspoof5", "--root", str(root), "--out", str(out), "--dry-run",
                     "--protocols", "v2"]) == 2
    assert "recipe asvspoof5 has no protocols 'v2'" in capsys.readouterr().err


def test_repeated_set_options_all_reach_the_training_command(tmp_path, capsys):
    assert cli_main(["recipe", "shared-corpus", "--root", str(tmp_path), "--out", str(tmp_path / "o"), "--dry-run",
                     "--set", "train.max_steps=10", "optim.lr=1e-3", "--set", "train.compile=true"]) == 0
    train = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("rawguard train "))
    assert train.endswith("--set train.max_steps=10 optim.lr=1e-3 train.compile=true")


def test_copy_synthesis_none_and_other_recipes_prepare_only_the_corpus(tmp_path, capsys):
    assert cli_main(["recipe", "shared-corpus", "--root", str(tmp_path), "--out", str(tmp_path / "o"), "--dry-run",
                     "--copy-synthesis", "none"]) == 0
    printed = capsys.readouterr().out
    assert "synth-spoof" not in printed and "protocol.csv" not in printed
    assert f"prepare {tmp_path}/protocols/train_v3.txt --out {tmp_path}/o/caches/train_v3 --audio-dir" in printed
    for name, recipe in RECIPES.items():
        if name != "shared-corpus":
            assert recipe.copy_synthesis == (), name
            assert not any(step.argv[0] == "synth-spoof" for step in plan(recipe, tmp_path, tmp_path / "o")), name
    # the train and evaluate stages alone never resynthesise
    assert not any(step.argv[0] == "synth-spoof" for step in plan(get_recipe("shared-corpus"), tmp_path, tmp_path,
                                                       stages=("train", "evaluate")))


def test_without_copies_the_recipe_trains_without_a_copy_share(tmp_path):
    from rawguard.config import load_config

    def train_config(**kwargs):
        step = next(s for s in plan(get_recipe("shared-corpus"), tmp_path, tmp_path / "o", **kwargs)
                    if s.argv[0] == "train")
        overrides = step.argv[step.argv.index("--set") + 1:] if "--set" in step.argv else []
        return load_config(step.argv[step.argv.index("--config") + 1], overrides)

    # shared_corpus.yaml draws half the spoofs from copies; with none made that would fail at the
    # first batch ("copy_share 0.5 asks for copy-synthesis spoofs, but the cache has none").
    assert train_config().data.sampling.copy_share == 0.5
    assert train_config(copy_synthesis=()).data.sampling.copy_share is None
    # a user's own --set still wins
    assert train_config(copy_synthesis=(), overrides=("data.sampling.copy_share=0.3",)).data.sampling.copy_share == 0.3


def test_unknown_copy_synthesis_method_names_it_and_the_valid_ones(tmp_path, capsys):
    with pytest.raises(RecipeError, match=r"'vits'.*griffin_lim, lpc, sinusoidal, world, world_vc, neural"):
        plan(get_recipe("asvspoof5"), tmp_path, tmp_path, copy_synthesis=("lpc", "vits"))
    with pytest.raises(RecipeError, match="more than once"):
        plan(get_recipe("asvspoof5"), tmp_path, tmp_path, copy_synthesis=("lpc", "lpc"))
    assert cli_main(["recipe", "shared-corpus", "--root", str(tmp_path), "--out", str(tmp_path / "o"), "--dry-run",
                     "--copy-synthesis", "lpc,hifigan"]) == 2
    assert "'hifigan'" in capsys.readouterr().err


def test_neural_copy_synthesis_trains_a_vocoder_on_the_train_set_first(tmp_path, capsys):
    root, out = tmp_path / "corpus", tmp_path / "o"
    assert cli_main(["recipe", "shared-corpus", "--root", str(root), "--out", str(out), "--dry-run",
                     "--copy-synthesis", "neural,lpc", "--vocoder-minutes", "2.5", "--vocoder-steps", "300"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:4] == [
        f"rawguard prepare {root}/protocols/train_v3.txt --out {out}/caches/train_v3_corpus --audio-dir {root}/flac "
        "--format asvspoof2019",
        f"rawguard train-vocoder {out}/caches/train_v3_corpus --out {out}/vocoder --max-steps 300 --minutes 2.5",
        f"rawguard synth-spoof --protocol {root}/protocols/train_v3.txt --audio-dir {root}/flac --format asvspoof2019 "
        f"{out}/synth/neural --method neural --vocoder {out}/vocoder/vocoder.pt",
        f"rawguard synth-spoof --protocol {root}/protocols/train_v3.txt --audio-dir {root}/flac --format asvspoof2019 "
        f"{out}/synth/lpc --method lpc",
    ]
    assert lines[4].startswith(f"rawguard prepare {root}/protocols/train_v3.txt {out}/synth/neural/protocol.csv "
                               f"{out}/synth/lpc/protocol.csv --out {out}/caches/train_v3 ")
    # without the neural method there is no vocoder to train
    steps = plan(get_recipe("shared-corpus"), root, out, copy_synthesis=("lpc",))
    assert not any(step.argv[0] == "train-vocoder" for step in steps)
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["recipe", "shared-corpus", "--root", str(root), "--out", str(out), "--dry-run",
                  "--vocoder-minutes", "0"])
    assert exit_info.value.code == 2 and "--vocoder-minutes must be positive" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["recipe", "shared-corpus", "--root", str(root), "--out", str(out), "--dry-run",
                  "--vocoder-steps", "0"])
    assert exit_info.value.code == 2 and "--vocoder-steps must be positive" in capsys.readouterr().err


def test_device_goes_to_the_vocoder_training_and_evaluation(tmp_path, capsys):
    root, out = tmp_path / "corpus", tmp_path / "o"
    assert cli_main(["recipe", "shared-corpus", "--root", str(root), "--out", str(out), "--dry-run",
                     "--device", "cuda", "--set", "train.max_minutes=5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    vocoder = next(line for line in lines if line.startswith("rawguard train-vocoder"))
    train = next(line for line in lines if line.startswith("rawguard train "))
    evaluate = [line for line in lines if line.startswith("rawguard evaluate")]
    assert vocoder.endswith("--device cuda")
    assert train.endswith("--set train.max_minutes=5 train.device=cuda")  # after the user's overrides
    assert evaluate and all(line.endswith("--device cuda") for line in evaluate)
    # Without --device every command keeps its own default.
    commands = [step.argv for step in plan(get_recipe("shared-corpus"), root, out)]
    assert not any("--device" in c or any("train.device" in a for a in c) for c in commands)


def test_the_recipe_runs_in_process_through_library_calls_and_resumes(tmp_path, monkeypatch, capsys):
    """Prepare (with lpc copies), train and evaluate the v3 fixture in this process; no child process
    of rawguard, no rawguard.cli import in the library; a second run skips what is done."""
    def no_child(*args, **kwargs):
        raise AssertionError(f"the recipe started a child process: {args}")

    for name in ("call", "run", "Popen", "check_call", "check_output"):
        monkeypatch.setattr(subprocess, name, no_child)
    root, out = tmp_path / "corpus", tmp_path / "o"
    _shared_layout(root)
    argv = ["recipe", "shared-corpus", "--root", str(root), "--out", str(out), "--workers", "1",
            "--copy-synthesis", "lpc", "--set", "train.max_steps=4", "eval.every=2", "train.log_every=2", "data.batch_size=4",
            "model.frontend_channels=8", "model.block_channels=[8,8]", "model.gru_hidden=8"]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert [line for line in printed.splitlines() if line.startswith("$ ")] == [
        f"$ {step.command}" for step in plan(get_recipe("shared-corpus"), root, out, copy_synthesis=("lpc",),
                                             workers=1, overrides=tuple(argv[argv.index("--set") + 1:]))]
    assert printed.count("trained 4 steps (max_steps)") == 2  # the 1-D model and the 2-D one
    assert printed.rstrip().endswith(f"the recipe's model: rawguard score --checkpoint {out}/ensemble.pt PATH...")
    for name, trials in (("dev_v3", 6), ("dev", 4)):
        metrics = json.loads((out / "eval" / name / "metrics.json").read_text())
        assert metrics["n_trials"] == trials and 0 <= metrics["eer_percent"] <= 100
        assert metrics["scoring"]["checkpoint"] == f"{out}/ensemble.pt"
        assert "ensemble file of 2 models" in (out / "eval" / name / "report.md").read_text()
    best = [(out / run / "best.pt").read_bytes() for run in ("run", "run_2d")]
    assert cli_main(argv) == 0  # everything done: nothing is redone, the selected models are the same files
    again = capsys.readouterr().out
    assert "0 lpc copies written (3 already done)" in again and again.count("trained 4 steps") == 2
    assert [(out / run / "best.pt").read_bytes() for run in ("run", "run_2d")] == best
    code = "import sys, rawguard.recipes; sys.exit(any(m.startswith('rawguard.cli') for m in sys.modules))"
    monkeypatch.undo()
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0, "rawguard.recipes imports rawguard.cli"


def test_a_failed_step_stops_the_recipe_naming_its_command(tmp_path, capsys):
    root, out = tmp_path / "corpus", tmp_path / "o"
    _shared_layout(root)
    (root / "protocols" / "dev_v3.txt").write_text("LS_0 RG_D_000000 - - bonafide\nnot a protocol line\n")
    assert cli_main(["recipe", "shared-corpus", "--root", str(root), "--out", str(out), "--workers", "1",
                     "--copy-synthesis", "none", "--stages", "prepare"]) == 1
    err = capsys.readouterr().err
    assert f"recipe stopped at `rawguard prepare {root}/protocols/dev_v3.txt" in err and "dev_v3.txt" in err
    assert (out / "caches" / "train_v3").is_dir()  # the steps before it ran
    assert not (out / "caches" / "dev").exists()  # and none after it
