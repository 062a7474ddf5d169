"""The training objective: cross-entropy, label smoothing; the removed one-class softmax refused."""

from __future__ import annotations

import math

import pytest
import torch

from rawguard.config import ConfigError
from rawguard.conventions import BONAFIDE, SPOOF
from rawguard.models import ModelConfigError, create_model, create_model_from_saved
from rawguard.training.build import build_loss
from rawguard.training.losses import cross_entropy
from helpers.training import tiny


def test_cross_entropy_is_torchs():
    logits, labels = torch.randn(6, 2), torch.tensor([0, 1, 1, 0, 1, 0])
    assert torch.allclose(cross_entropy(logits, labels), torch.nn.functional.cross_entropy(logits, labels))


def test_label_smoothing_stops_rewarding_margins_beyond_its_optimum():
    labels = torch.tensor([BONAFIDE])
    margins = torch.linspace(0.0, 12.0, 241)  # logit(bona fide) - logit(spoof)
    smoothed = [cross_entropy(torch.tensor([[0.0, m.item()]]), labels, label_smoothing=0.1).item() for m in margins]
    best = margins[int(torch.tensor(smoothed).argmin())].item()
    assert best == pytest.approx(math.log((2 - 0.1) / 0.1), abs=0.05)  # log(19) = 2.94
    plain = [cross_entropy(torch.tensor([[0.0, m.item()]]), labels).item() for m in margins]
    assert all(a > b for a, b in zip(plain, plain[1:]))  # without it, every larger margin still pays
    # the target is (eps/2, 1 - eps/2): the loss is that cross-entropy, by hand
    logits = torch.tensor([[0.3, 1.2], [2.0, -1.0]])
    both = torch.tensor([BONAFIDE, SPOOF])
    log_p = torch.log_softmax(logits, dim=-1)
    target = torch.tensor([[0.05, 0.95], [0.95, 0.05]])
    assert cross_entropy(logits, both, label_smoothing=0.1).item() == pytest.approx(
        -(target * log_p).sum(-1).mean().item(), rel=1e-6)


def test_label_smoothing_out_of_range_is_a_config_error_and_the_runs_loss_uses_it():
    with pytest.raises(ConfigError, match=r"train.label_smoothing: must be in \[0, 1\)"):
        tiny("train.label_smoothing=1.0")
    config = tiny("train.label_smoothing=0.1")
    loss_fn = build_loss(config, None)
    logits, labels = torch.tensor([[0.0, 8.0]]), torch.tensor([BONAFIDE])
    assert loss_fn(logits, labels).item() == pytest.approx(cross_entropy(logits, labels, label_smoothing=0.1).item())
    assert loss_fn(logits, labels).item() > 10 * cross_entropy(logits, labels).item()  # the run's loss uses it


def test_the_removed_one_class_softmax_is_refused_and_old_linear_head_configs_still_load():
    # Runs and checkpoints written while OC-softmax existed name its keys at their "off" values.
    config = tiny("train.loss=cross_entropy", "train.oc_margins=[0.9,0.2]")
    assert not hasattr(config.train, "loss")
    for key in ("train.loss=oc_softmax", "train.oc_margins=[0.8,0.1]"):
        with pytest.raises(ConfigError, match=r"this option was removed .*What did not help"):
            tiny(key)
    model = create_model("rawnet-lite")
    saved_config = {**model.config.__dict__, "head": "linear", "cosine_scale": 20.0}
    rebuilt = create_model_from_saved("rawnet-lite", saved_config)
    assert isinstance(rebuilt.fc, torch.nn.Linear)
    with pytest.raises(ModelConfigError, match="'head' was removed .*head='cosine'"):
        create_model_from_saved("rawnet-lite", {**saved_config, "head": "cosine"})
