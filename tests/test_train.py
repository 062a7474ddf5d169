"""Training loop: a learnable toy task, precision choices, dev selection, signals, bad input.

Tiny rawnet-lite (a few thousand parameters) on 0.25-0.5 s windows, one CPU thread: each training
run takes about a second.
"""

from __future__ import annotations

import math
import signal

import numpy as np
import pytest
import torch

from rawguard.checkpoint import CheckpointError, load_checkpoint
from rawguard.config import ConfigError, load_config
from rawguard.data.protocols import read_protocol
from rawguard.training.log import read_metrics
from rawguard.train import RunExistsError, TrainingError, train

from helpers.training import make_toy_cache, tiny, train_until_sigterm


def test_loss_falls_and_run_files_are_written(toy, tmp_path):
    config = tiny("optim.lr=3e-3", "train.max_steps=40", "train.log_every=5", "eval.every=20",
                  "optim.warmup_steps=5", "train.checkpoint_every=10")
    result = train(config, toy, toy, tmp_path / "run", progress=False)
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    losses = [r["loss"] for r in records if r["type"] == "train"]
    assert len(losses) == 8
    assert np.mean(losses[-2:]) < 0.6 * np.mean(losses[:2]), losses
    assert result.step == 40 and result.stop_reason == "max_steps"
    assert result.best_dev_eer is not None and result.best_dev_eer <= 0.1  # tones vs noise is easy
    for name in ("config.yaml", "last.pt", "best.pt", "metrics.jsonl", "training_curves.png"):
        assert (tmp_path / "run" / name).is_file(), name
    assert load_config(tmp_path / "run" / "config.yaml") == config  # the written config reproduces the run

    best = load_checkpoint(tmp_path / "run" / "best.pt")
    selection = best["selection"]
    assert selection["dev_eer"] == result.best_dev_eer and selection["step"] == result.best_step
    assert selection["window"] == 4000 and selection["hop"] == 4000
    assert set(selection["calibration"]) == {"scale", "bias"} and math.isfinite(selection["threshold"])
    assert best["model_name"] == "rawnet-lite" and best["model_config"]["gru_hidden"] == 16
    # The stored selection is reproducible from best.pt alone: rebuild, score the dev cache, same EER/threshold.
    from rawguard.metrics import compute_eer
    from rawguard.models import create_model
    from rawguard.scoring import score_cache

    model = create_model(best["model_name"], **best["model_config"])
    model.load_state_dict(best["model"])
    scores = score_cache(model, toy, selection["window"], selection["hop"], 64, "cpu", "fp32")
    assert scores.shape == (len(toy),) and scores.dtype == np.float32
    eer, threshold = compute_eer(scores[toy.labels == 1], scores[toy.labels == 0])
    assert (eer, threshold) == (selection["dev_eer"], selection["threshold"])
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert last["step"] == 40 and last["sampler"] == {"epoch": last["epoch"], "batch": last["sampler"]["batch"]}
    assert last["config"] == config.to_dict()
    # the learning rate followed warm-up then cosine decay
    lrs = [r["lr"] for r in records if r["type"] == "train"]
    assert lrs[0] == pytest.approx(3e-3) and lrs[-1] < 0.1 * 3e-3


def test_bf16_autocast_trains_on_cpu(toy, tmp_path):
    overrides = ("optim.lr=3e-3", "train.max_steps=30", "train.log_every=5", "eval.every=0", "optim.warmup_steps=5")
    result = train(tiny("train.precision=bf16", *overrides), toy, toy, tmp_path / "bf16", progress=False)
    fp32 = train(tiny("train.precision=fp32", *overrides), toy, toy, tmp_path / "fp32", progress=False)
    last = load_checkpoint(tmp_path / "bf16" / "last.pt")
    assert result.step == 30 and last["precision"] == "bf16"
    # Autocast computes in bf16 but keeps the weights (and the optimizer's state) in float32.
    assert all(t.dtype == torch.float32 for t in last["model"].values() if t.is_floating_point())
    curves = {run: [r["loss"] for r in read_metrics(tmp_path / run / "metrics.jsonl") if r["type"] == "train"]
              for run in ("bf16", "fp32")}
    assert np.mean(curves["bf16"][-2:]) < 0.6 * np.mean(curves["bf16"][:2]), curves["bf16"]  # it learnt
    assert curves["bf16"] != curves["fp32"]  # bf16 arithmetic really ran (not silently fp32)
    assert curves["bf16"] == pytest.approx(curves["fp32"], abs=0.1)  # and learnt what fp32 learns
    assert result.best_dev_eer is not None and result.best_dev_eer <= 0.1 and fp32.best_dev_eer <= 0.1


def test_fp16_on_cpu_is_a_config_error(toy, tmp_path):
    with pytest.raises(ConfigError, match="train.precision"):
        train(tiny("train.precision=fp16", "train.device=cpu", "train.max_steps=2"), toy, toy, tmp_path / "r", progress=False)


def test_class_weights_and_balanced_sampling_change_training(toy, tmp_path):
    runs = {}
    for name, extra in {"plain": [], "weighted": ["train.class_weights=[0.1,0.9]"], "balanced": ["data.sampling.balanced=true"]}.items():
        train(tiny("train.max_steps=3", "eval.every=0", "train.log_every=1", *extra), toy, toy, tmp_path / name, progress=False)
        runs[name] = [r["loss"] for r in read_metrics(tmp_path / name / "metrics.jsonl") if r["type"] == "train"]
    assert len(runs["plain"]) == 3
    assert runs["weighted"] != runs["plain"] and runs["balanced"] != runs["plain"]


def test_early_stopping_with_patience(toy, tmp_path):
    # lr 0 after warm-up is impossible, so use a tiny lr: the dev EER cannot improve strictly forever.
    config = tiny("optim.lr=1e-9", "optim.schedule=constant", "train.max_steps=200", "eval.every=2", "eval.patience=2")
    result = train(config, toy, toy, tmp_path / "r", progress=False)
    assert result.stop_reason == "early_stopping" and result.step < 200
    dev = [r for r in read_metrics(tmp_path / "r" / "metrics.jsonl") if r["type"] == "dev"]
    assert len(dev) >= 3 and min(r["dev_eer"] for r in dev[-2:]) >= dev[-3]["best_dev_eer"]


def test_selection_starts_at_select_from_and_a_run_stopped_before_it_ships_its_last_weights(toy, tmp_path):
    config = tiny("optim.lr=3e-3", "train.max_steps=12", "eval.every=2", "eval.select_from=0.5")
    result = train(config, toy, toy, tmp_path / "late", progress=False)
    dev = [r for r in read_metrics(tmp_path / "late" / "metrics.jsonl") if r["type"] == "dev"]
    assert [r["step"] for r in dev] == [2, 4, 6, 8, 10, 12]  # every evaluation is logged...
    assert [r["best_dev_eer"] for r in dev[:2]] == [None, None]  # ...none before step 6 can select
    assert result.best_step >= 6 and result.best_dev_eer == min(r["dev_eer"] for r in dev[2:])
    assert load_checkpoint(tmp_path / "late" / "best.pt")["selection"]["step"] == result.best_step
    # a run whose budget ends before select_from still gets a best.pt: its last evaluated weights
    for every in (2, 0):  # the stopping step evaluated in the loop, or only at the end
        run = tmp_path / f"cut{every}"
        stopped = train(tiny("train.max_steps=1000", "train.max_epochs=1", f"eval.every={every}",
                             "eval.select_from=0.5"), toy, toy, run, progress=False)
        assert stopped.stop_reason == "max_epochs" and stopped.best_step == stopped.step < 500
        assert load_checkpoint(run / "best.pt")["selection"]["step"] == stopped.step
    with pytest.raises(ConfigError, match="eval.select_from"):
        tiny("eval.select_from=1.0")


def test_early_every_thins_the_curve_before_select_from_and_changes_neither_training_nor_selection(toy, tmp_path):
    base = ("optim.lr=3e-3", "train.max_steps=12", "eval.select_from=0.5", "train.threads=1")
    dense = train(tiny(*base, "eval.every=2"), toy, toy, tmp_path / "dense", progress=False)
    sparse = train(tiny(*base, "eval.every=2", "eval.early_every=4"), toy, toy, tmp_path / "sparse", progress=False)
    logs = {name: [r for r in read_metrics(tmp_path / name / "metrics.jsonl") if r["type"] == "dev"]
            for name in ("dense", "sparse")}
    assert [r["step"] for r in logs["dense"]] == [2, 4, 6, 8, 10, 12]
    assert [r["step"] for r in logs["sparse"]] == [4, 6, 8, 10, 12]  # step 2 skipped: before select_from
    # the same weights at every step both evaluated, and the same selected model
    assert [r["dev_eer"] for r in logs["sparse"]] == [r["dev_eer"] for r in logs["dense"][1:]]
    assert (sparse.best_step, sparse.best_dev_eer) == (dense.best_step, dense.best_dev_eer)
    assert [r["loss"] for r in read_metrics(tmp_path / "sparse" / "metrics.jsonl") if r["type"] == "train"] == \
        [r["loss"] for r in read_metrics(tmp_path / "dense" / "metrics.jsonl") if r["type"] == "train"]
    with pytest.raises(ConfigError, match="eval.early_every"):
        tiny("eval.early_every=-1")


def test_corrupt_last_checkpoint_names_the_file(toy, tmp_path):
    run = tmp_path / "r"
    train(tiny("train.max_steps=2", "eval.every=0"), toy, toy, run, progress=False)
    data = (run / "last.pt").read_bytes()
    (run / "last.pt").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="last.pt"):
        train(tiny("train.max_steps=4", "eval.every=0"), toy, toy, run, progress=False)


def test_existing_run_without_resume_is_refused(toy, tmp_path):
    run = tmp_path / "r"
    train(tiny("train.max_steps=2", "eval.every=0"), toy, toy, run, progress=False)
    with pytest.raises(RunExistsError, match="last.pt"):
        train(tiny("train.max_steps=4", "eval.every=0"), toy, toy, run, resume=False, progress=False)


def test_resume_with_another_model_is_refused(toy, tmp_path):
    run = tmp_path / "r"
    train(tiny("train.max_steps=2", "eval.every=0"), toy, toy, run, progress=False)
    with pytest.raises(TrainingError, match="model"):
        train(tiny("train.max_steps=4", "eval.every=0", "model.gru_hidden=8"), toy, toy, run, progress=False)


def test_resume_on_other_train_data_is_refused_and_same_data_continues(toy, tmp_path):
    other = make_toy_cache(tmp_path / "other", n_per_class=20, seed=1)
    run = tmp_path / "r"
    train(tiny("train.max_steps=2", "eval.every=0"), toy, toy, run, progress=False)
    with pytest.raises(TrainingError, match="other data"):
        train(tiny("train.max_steps=4", "eval.every=0"), other, toy, run, progress=False)
    result = train(tiny("train.max_steps=4", "eval.every=0"), toy, toy, run, progress=False)
    assert result.step == 4


def test_dev_cache_with_one_class_is_refused(toy, tmp_path):
    from rawguard.data.prepare import prepare_cache as prepare

    items = [i for i in read_protocol(toy.directory.parent / "protocol.txt", toy.directory.parent / "audio") if i.label == 1]
    prepare(items[:4], tmp_path / "dev", workers=1, progress=False)
    with pytest.raises(TrainingError, match="both bona fide and spoof"):
        train(tiny("train.max_steps=2"), toy, tmp_path / "dev", tmp_path / "r", progress=False)


def test_cosine_without_length_is_refused(toy, tmp_path):
    with pytest.raises(ValueError, match="max_steps"):
        train(tiny("train.max_minutes=1"), toy, toy, tmp_path / "r", progress=False)


def test_sigterm_saves_a_checkpoint_and_stops_cleanly(toy, tmp_path):
    run = tmp_path / "r"
    config = tiny("train.max_steps=100000", "optim.schedule=constant", "eval.every=0", "train.log_every=1",
                  "train.checkpoint_every=0", "train.checkpoint_minutes=0")
    result = train_until_sigterm(config, toy, toy, run, lambda records: len(records) >= 3)
    assert result.stop_reason == "signal:SIGTERM" and result.exit_code == 128 + signal.SIGTERM
    assert 3 <= result.step < 100000
    last = load_checkpoint(run / "last.pt")
    assert last["step"] == result.step  # the checkpoint holds the very last step taken
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_schedule_warms_up_linearly_then_decays_to_the_floor():
    from rawguard.training.schedule import lr_at

    lrs = [lr_at(s, 1.0, warmup_steps=4, decay_steps=14, min_lr_ratio=0.1) for s in range(20)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))  # monotone decay
    assert lrs[9] == pytest.approx(0.55) and lrs[14] == pytest.approx(0.1) and lrs[19] == pytest.approx(0.1)
    assert lr_at(100, 2.0, schedule="constant") == 2.0
    with pytest.raises(ValueError, match="train.max_steps"):
        lr_at(0, 1.0, schedule="cosine", decay_steps=0)


@pytest.mark.parametrize("amx, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_on_cpu_follows_amx(monkeypatch, amx, expected):
    from rawguard.training import precision

    monkeypatch.setattr(precision, "cpu_has_amx", lambda: amx)
    assert precision.resolve_precision("auto", torch.device("cpu")) == expected
    assert precision.resolve_precision("auto", torch.device("cuda")) == "fp32"  # measured fastest on an H200
    assert precision.resolve_precision("fp32", torch.device("cpu")) == "fp32"
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        precision.resolve_precision("fp16", torch.device("cpu"))


def test_cli_reports_config_errors_with_the_key(toy, tmp_path, capsys):
    from rawguard.cli import main

    code = main(["train", "--train", str(toy.directory), "--dev", str(toy.directory), "--out", str(tmp_path / "r"),
                 "--set", "optim.lrr=1e-3"])
    assert code == 1
    assert "unknown config key 'optim.lrr' (did you mean optim.lr" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing written for a rejected configuration


def _as_written_before_the_prune(state: dict) -> dict:
    """A checkpoint dict as runs wrote it before data.sampling and the removal of the dead-end options:
    flat sampling keys, the removed options at their "off" values, frontend_mean_norm in model_config."""
    config = state["config"]
    sampling = config["data"].pop("sampling")
    config["data"].update(sampling, speaker_matched=False, speaker_balance=0.0, spoof_speaker_balance=0.0)
    config["train"].update(mixup=0.0, speaker_adversarial=0.0, system_auxiliary=0.0)
    state["model_config"]["frontend_mean_norm"] = False
    return state


def test_a_checkpoint_naming_removed_options_resumes_and_loads_when_they_were_off(toy, tmp_path, capfd):
    from rawguard.checkpoint import save_checkpoint
    from rawguard.detector import Detector

    run = tmp_path / "r"
    train(tiny("train.max_steps=4", "eval.every=4", "data.sampling.balanced=true"), toy, toy, run, progress=False)
    for name in ("last.pt", "best.pt"):
        save_checkpoint(_as_written_before_the_prune(load_checkpoint(run / name)), run / name)
    capfd.readouterr()
    result = train(tiny("train.max_steps=6", "eval.every=4", "data.sampling.balanced=true"), toy, toy, run,
                   progress=False)
    err = capfd.readouterr().err
    assert result.step == 6 and "resuming" in err
    # Only max_steps changed: the old flat keys and the "off" removed options count as today's config.
    assert "resume: configuration changed since the checkpoint: train.max_steps\n" in err, err
    detector = Detector.from_checkpoint(run / "best.pt", device="cpu")
    wave = toy.waveform(0).astype(np.float32) / 32768
    assert math.isfinite(detector.score_array(wave).score)


def test_a_checkpoint_of_a_run_that_used_a_removed_option_is_refused_by_name(toy, tmp_path, capfd):
    from rawguard.checkpoint import save_checkpoint
    from rawguard.models import ModelConfigError, create_model_from_saved

    run = tmp_path / "r"
    train(tiny("train.max_steps=2", "eval.every=0"), toy, toy, run, progress=False)
    state = _as_written_before_the_prune(load_checkpoint(run / "last.pt"))
    state["config"]["train"]["mixup"] = 0.5  # the run trained with mixup
    save_checkpoint(state, run / "last.pt")
    with pytest.raises(TrainingError, match=r"cannot resume: .*train.mixup: this option was removed"):
        train(tiny("train.max_steps=4", "eval.every=0"), toy, toy, run, progress=False)
    state["config"]["train"]["mixup"] = 0.0
    state["model_config"]["frontend_mean_norm"] = True
    with pytest.raises(ModelConfigError, match="'frontend_mean_norm' was removed"):
        create_model_from_saved(state["model_name"], state["model_config"])


def test_a_sampling_policy_the_train_cache_cannot_serve_is_a_config_error_naming_it(toy, tmp_path):
    config = tiny("train.max_steps=2", "data.sampling.balanced=true", "data.sampling.copy_share=0.5")
    with pytest.raises(ConfigError, match=rf"data.sampling: {toy.directory}: copy_share 0.5 asks for copy-synthesis "
                                          "spoofs, but the cache has none"):
        train(config, toy, toy, tmp_path / "r", progress=False)
    assert not (tmp_path / "r" / "last.pt").exists()
