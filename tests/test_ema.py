"""EMA of the weights (``train.ema_decay``): the update rule, its warm-up, dev selection and resume.

Training runs use the tiny rawnet-lite of test_train on its toy corpus (about a second each).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rawguard.checkpoint import load_checkpoint
from rawguard.config import ConfigError, load_config
from rawguard.training.ema import ModelEMA, ema_decay_at
from rawguard.training.log import read_metrics
from rawguard.train import train
from helpers.training import make_toy_cache, tiny

STEPS = 12
# A fixed schedule length, so a run stopped at step k and resumed follows the same learning rates.
RUN = ["train.max_steps=12", "optim.decay_steps=12", "optim.warmup_steps=2", "eval.every=4",
       "train.log_every=1", "model.dropout=0.2", "augment.enabled=true"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_cache(tmp_path_factory.mktemp("toy"), n_per_class=12)


@pytest.fixture(scope="module")
def runs(toy, tmp_path_factory):
    """The same run without and with an EMA: ``{"off": RUN_DIR, "on": RUN_DIR}``."""
    root = tmp_path_factory.mktemp("runs")
    threads = torch.get_num_threads()
    try:
        train(tiny(*RUN), toy, toy, root / "off", progress=False)
        train(tiny(*RUN, "train.ema_decay=0.9"), toy, toy, root / "on", progress=False)
    finally:
        torch.set_num_threads(threads)
    return {"off": root / "off", "on": root / "on"}


def _tiny_module() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 1), nn.BatchNorm1d(1))


def _fill(module: nn.Module, value: float) -> None:
    with torch.no_grad():
        for tensor in module.state_dict().values():
            if tensor.is_floating_point():
                tensor.fill_(value)


def test_update_averages_parameters_and_float_buffers_and_copies_integer_buffers():
    model = _tiny_module()
    ema = ModelEMA(model, decay=0.5)
    _fill(ema.module, 1.0)
    _fill(model, 3.0)
    model[1].num_batches_tracked.fill_(7)
    ema.updates = 100  # past the warm-up: the decay is 0.5 itself
    assert ema.update(model) == 0.5
    state = ema.module.state_dict()
    for name in ("0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var"):
        assert torch.equal(state[name], torch.full_like(state[name], 2.0)), name  # 0.5 * 1 + 0.5 * 3
    assert state["1.num_batches_tracked"].item() == 7 and ema.updates == 101
    assert ema.update(model) == 0.5
    assert torch.equal(ema.module.state_dict()["1.running_var"], torch.tensor([2.5]))  # 0.5 * 2 + 0.5 * 3
    # the model itself is untouched, and the copy takes no part in autograd
    assert all(torch.equal(t, torch.full_like(t, 3.0)) for t in model.state_dict().values() if t.is_floating_point())
    assert not any(p.requires_grad for p in ema.module.parameters()) and not ema.module.training


def test_update_in_float64_matches_the_formula():
    model = _tiny_module().double()
    ema = ModelEMA(model, decay=0.99)
    start = {k: v.clone() for k, v in ema.module.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    decay = ema.update(model)
    assert decay == pytest.approx(0.1)  # the first update, in the warm-up
    for name, value in model.state_dict().items():
        if value.is_floating_point():
            expected = decay * start[name] + (1 - decay) * value
            torch.testing.assert_close(ema.module.state_dict()[name], expected, rtol=1e-15, atol=1e-15)


def test_warmup_follows_one_plus_n_over_ten_plus_n_up_to_the_decay():
    assert [ema_decay_at(0.999, n) for n in range(3)] == [1 / 10, 2 / 11, 3 / 12]
    assert ema_decay_at(0.999, 10_000) == 0.999  # (1 + n) / (10 + n) passes 0.999 near n = 8990
    assert ema_decay_at(0.5, 7) == 8 / 17 and ema_decay_at(0.5, 8) == 0.5
    ema = ModelEMA(_tiny_module(), decay=0.999)
    model = _tiny_module()
    assert [ema.update(model) for _ in range(3)] == [1 / 10, 2 / 11, 3 / 12]


@pytest.mark.parametrize("value, message", [
    ("1", r"train.ema_decay: must be in \[0, 1\) \(0 = off\), got 1.0"),
    ("1.5", r"train.ema_decay: must be in \[0, 1\)"),
    ("-0.1", r"train.ema_decay: must be in \[0, 1\)"),
    ("nan", r"train.ema_decay: must be in \[0, 1\)"),
    ("fast", r"train.ema_decay: expected a number"),
])
def test_bad_decay_is_rejected_naming_the_field(value, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[f"train.ema_decay={value}"])


def test_default_is_off_and_valid_values_load():
    assert load_config().train.ema_decay == 0.0
    assert load_config(overrides=["train.ema_decay=0.999"]).train.ema_decay == 0.999
    assert load_config(overrides=["train.ema_decay=0"]).train.ema_decay == 0.0


def test_ema_off_writes_no_ema_state_and_on_leaves_training_itself_unchanged(runs):
    off, on = (load_checkpoint(runs[k] / "last.pt") for k in ("off", "on"))
    assert "ema" not in off and "raw_model" not in off
    assert [r["ema"] for r in read_metrics(runs["off"] / "metrics.jsonl") if r["type"] == "dev"] == [False] * 3
    # The average is a bystander: the trained weights and the loss curve are those of the run without it.
    for name, tensor in off["model"].items():
        assert torch.equal(tensor, on["raw_model"][name]), name
    losses = {k: [r["loss"] for r in read_metrics(runs[k] / "metrics.jsonl") if r["type"] == "train"] for k in runs}
    assert losses["on"] == losses["off"] and len(losses["on"]) == STEPS


def test_ema_weights_are_evaluated_selected_and_written_as_the_model(toy, runs):
    from rawguard.metrics import compute_eer
    from rawguard.models import create_model
    from rawguard.scoring import score_cache

    last, best = load_checkpoint(runs["on"] / "last.pt"), load_checkpoint(runs["on"] / "best.pt")
    assert last["ema"] == {"decay": 0.9, "updates": STEPS} and best["ema"]["decay"] == 0.9
    assert any(not torch.equal(last["model"][k], last["raw_model"][k]) for k in last["model"])
    assert any(not torch.equal(best["model"][k], last["raw_model"][k]) for k in best["model"])
    assert any(not torch.equal(best["model"][k], best["raw_model"][k]) for k in best["model"])
    dev = [r for r in read_metrics(runs["on"] / "metrics.jsonl") if r["type"] == "dev"]
    assert [r["ema"] for r in dev] == [True] * 3 and {"dev_eer", "threshold", "best_dev_eer"} <= set(dev[0])
    # best.pt's selection is that of its "model" (the average): scoring it reproduces EER and threshold.
    selection = best["selection"]
    model = create_model(best["model_name"], **best["model_config"])
    model.load_state_dict(best["model"])
    scores = score_cache(model, toy, selection["window"], selection["hop"], 64, "cpu", "fp32")
    eer, threshold = compute_eer(scores[toy.labels == 1], scores[toy.labels == 0])
    assert (eer, threshold) == (selection["dev_eer"], selection["threshold"])
    # the BatchNorm statistics are averaged too
    stats = [k for k in best["model"] if k.endswith("running_var")]
    assert stats and any(not torch.equal(last["model"][k], last["raw_model"][k]) for k in stats)


def test_resume_with_ema_is_exact(toy, runs, tmp_path):
    run = tmp_path / "r"
    train(tiny(*RUN, "train.ema_decay=0.9", "train.max_steps=5"), toy, toy, run, progress=False)
    assert load_checkpoint(run / "last.pt")["ema"]["updates"] == 5
    train(tiny(*RUN, "train.ema_decay=0.9"), toy, toy, run, progress=False)
    a, b = load_checkpoint(runs["on"] / "last.pt"), load_checkpoint(run / "last.pt")
    assert a["step"] == b["step"] == STEPS and a["ema"] == b["ema"]
    for key in ("model", "raw_model"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name} differs after resume"
    losses = [[r["loss"] for r in read_metrics(d / "metrics.jsonl") if r["type"] == "train"] for d in (runs["on"], run)]
    assert losses[0] == losses[1]


def test_old_checkpoint_without_ema_resumes_and_can_switch_it_on(toy, tmp_path, capsys):
    run = tmp_path / "r"
    train(tiny(*RUN, "train.max_steps=5"), toy, toy, run, progress=False)
    # A last.pt from before the field existed: no train.ema_decay in its config.
    saved = load_checkpoint(run / "last.pt")
    del saved["config"]["train"]["ema_decay"]
    from rawguard.checkpoint import save_checkpoint

    save_checkpoint({k: v for k, v in saved.items() if not k.startswith("format")}, run / "last.pt")
    capsys.readouterr()
    train(tiny(*RUN, "train.max_steps=8"), toy, toy, run, progress=False)
    assert "train.ema_decay" not in capsys.readouterr().err  # a missing key counts as its default
    assert "ema" not in load_checkpoint(run / "last.pt")
    # Switched on at resume: the average starts from the restored weights, warm-up from scratch.
    train(tiny(*RUN, "train.ema_decay=0.9"), toy, toy, run, progress=False)
    assert "configuration changed since the checkpoint: train.ema_decay" in capsys.readouterr().err
    last = load_checkpoint(run / "last.pt")
    assert last["step"] == STEPS and last["ema"]["updates"] == STEPS - 8
