"""Sharpness-aware minimisation: the perturbation's size and direction, its exact undo, BatchNorm
statistics held during the second pass, and a SAM run in the training loop (resume included)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rawguard.checkpoint import load_checkpoint
from rawguard.config import ConfigError
from rawguard.train import train
from rawguard.training.log import read_metrics
from rawguard.training.sam import SharpnessAwareStep, frozen_batchnorm_statistics

from helpers.training import tiny


def _layer_with_gradient(seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    layer = nn.Linear(6, 3)
    layer(torch.randn(5, 6)).square().sum().backward()
    return layer


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.detach().flatten() for t in tensors])


def test_sam_moves_the_weights_rho_along_the_gradient_and_back_exactly():
    layer = _layer_with_gradient()
    before = _flat(layer.parameters()).clone()
    gradient = _flat(p.grad for p in layer.parameters())
    step = SharpnessAwareStep(layer.parameters(), rho=0.05)
    assert step.ascend()
    offset = _flat(layer.parameters()) - before
    assert torch.linalg.vector_norm(offset).item() == pytest.approx(0.05, rel=1e-4)
    assert torch.allclose(offset / 0.05, gradient / torch.linalg.vector_norm(gradient), atol=1e-4)
    step.descend()
    assert torch.equal(_flat(layer.parameters()), before)


def test_asam_radius_is_relative_to_each_weight():
    layer = _layer_with_gradient(1)
    weights = _flat(layer.parameters()).clone()
    gradient = _flat(p.grad for p in layer.parameters())
    step = SharpnessAwareStep(layer.parameters(), rho=0.5, adaptive=True)
    assert step.ascend()
    offset = _flat(layer.parameters()) - weights
    expected = weights.square() * gradient
    expected = 0.5 * expected / torch.linalg.vector_norm(weights.abs() * gradient)
    assert torch.allclose(offset, expected, atol=1e-6)
    # In units of each weight's size the step has length rho.
    assert torch.linalg.vector_norm(offset / weights.abs()).item() == pytest.approx(0.5, rel=1e-4)
    step.descend()
    assert torch.equal(_flat(layer.parameters()), weights)


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), 0.0])
def test_no_perturbation_for_an_overflowed_or_zero_gradient(bad):
    layer = _layer_with_gradient()
    for p in layer.parameters():
        p.grad.fill_(bad)
    before = _flat(layer.parameters()).clone()
    step = SharpnessAwareStep(layer.parameters(), rho=0.05)
    assert not step.ascend()
    step.descend()  # nothing to undo
    assert torch.equal(_flat(layer.parameters()), before)


def test_rho_must_be_positive():
    with pytest.raises(ValueError, match="rho"):
        SharpnessAwareStep(nn.Linear(2, 2).parameters(), rho=0.0)


def test_frozen_batchnorm_normalises_with_the_batch_but_keeps_running_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(1, 4, 3), nn.BatchNorm1d(4)).train()
    model(torch.randn(8, 1, 50))  # some running statistics to keep
    norm = model[1]
    mean, var = norm.running_mean.clone(), norm.running_var.clone()
    x = torch.randn(8, 1, 50) * 3 + 2
    with frozen_batchnorm_statistics(model):
        out = model(x)
    assert torch.equal(norm.running_mean, mean) and torch.equal(norm.running_var, var)
    assert int(norm.num_batches_tracked) == 1  # the second pass is not a batch seen
    assert norm.momentum == 0.1  # restored
    # Training-mode normalisation still used the batch's own statistics.
    assert out.mean(dim=(0, 2)).abs().max() < 1e-5
    model(x)
    assert not torch.equal(norm.running_mean, mean)


def test_frozen_cumulative_batchnorm_keeps_its_average_exact():
    torch.manual_seed(1)
    norm = nn.BatchNorm1d(3, momentum=None).train()  # running stats = mean over the batches seen
    first, second = torch.randn(16, 3, 20), torch.randn(16, 3, 20) + 4
    norm(first)
    with frozen_batchnorm_statistics(norm):
        norm(torch.randn(16, 3, 20) - 9)
    norm(second)
    reference = nn.BatchNorm1d(3, momentum=None).train()
    reference(first)
    reference(second)
    assert norm.momentum is None
    torch.testing.assert_close(norm.running_mean, reference.running_mean)
    assert int(norm.num_batches_tracked) == 2


def test_a_sam_run_learns_differs_from_plain_and_resumes_exactly(toy, tmp_path):
    common = ["optim.lr=3e-3", "optim.schedule=constant", "eval.every=0", "train.log_every=2",
              "train.checkpoint_every=3"]
    sam = common + ["optim.sam_rho=0.05"]
    plain = train(tiny(*common, "train.max_steps=8"), toy, toy, tmp_path / "plain", progress=False)
    straight = train(tiny(*sam, "train.max_steps=8"), toy, toy, tmp_path / "straight", progress=False)
    train(tiny(*sam, "train.max_steps=3"), toy, toy, tmp_path / "resumed", progress=False)
    train(tiny(*sam, "train.max_steps=8"), toy, toy, tmp_path / "resumed", progress=False)
    assert straight.step == plain.step == 8
    a, b = load_checkpoint(tmp_path / "straight" / "last.pt"), load_checkpoint(tmp_path / "resumed" / "last.pt")
    c = load_checkpoint(tmp_path / "plain" / "last.pt")
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert any(not torch.equal(tensor, c["model"][name]) for name, tensor in a["model"].items())


def test_sam_from_switches_sam_on_part_way_and_resumes_across_the_switch(toy, tmp_path):
    common = ["optim.lr=3e-3", "optim.schedule=constant", "eval.every=0", "train.log_every=1",
              "train.checkpoint_every=2", "optim.sam_rho=0.05"]
    # Of a schedule of 8 steps (fixed, so that the interrupted run's has the same length): plain
    # steps 1-4, SAM steps 5-8.
    late = common + ["optim.sam_from=0.5", "optim.decay_steps=8"]
    train(tiny(*common, "optim.sam_rho=0", "train.max_steps=8"), toy, toy, tmp_path / "plain", progress=False)
    train(tiny(*late, "train.max_steps=8"), toy, toy, tmp_path / "late", progress=False)
    train(tiny(*late, "train.max_steps=3"), toy, toy, tmp_path / "resumed", progress=False)
    train(tiny(*late, "train.max_steps=8"), toy, toy, tmp_path / "resumed", progress=False)

    def losses(run):
        return [r["loss"] for r in read_metrics(tmp_path / run / "metrics.jsonl") if r["type"] == "train"]

    plain, late_losses = losses("plain"), losses("late")
    # A step's logged loss is its first pass, at the weights the previous steps left: equal through
    # step 5 (steps 1-4 were plain), different after SAM's first update.
    assert late_losses[:5] == plain[:5]
    assert late_losses[5:] != plain[5:]
    assert losses("resumed") == late_losses  # the switch is a function of the step: exact across a resume
    a, b = load_checkpoint(tmp_path / "late" / "last.pt"), load_checkpoint(tmp_path / "resumed" / "last.pt")
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name


@pytest.mark.parametrize("value", [-0.1, 1.0])
def test_sam_from_outside_zero_to_one_is_a_config_error(value):
    with pytest.raises(ConfigError, match="optim.sam_from"):
        tiny(f"optim.sam_from={value}")


def test_negative_rho_is_a_config_error():
    with pytest.raises(ConfigError, match="optim.sam_rho"):
        tiny("optim.sam_rho=-0.1")
