"""Auxiliary classifiers on the embedding: system targets, gradient scaling, the trainer's system task."""

from __future__ import annotations

import pytest
import torch

from rawguard.checkpoint import load_checkpoint
from rawguard.config import ConfigError
from rawguard.models import create_model
from rawguard.train import train
from rawguard.training.adversarial import reverse_gradient
from rawguard.training.embedding_tasks import SystemClassifier, scale_gradient, system_targets
from rawguard.training.log import read_metrics
from train_helpers import tiny


def test_every_system_and_bona_fide_is_a_class():
    targets, names = system_targets(["-", "A07", "synth-lpc", "A07", "-"])
    assert names == ["-", "A07", "synth-lpc"]
    assert targets.tolist() == [0, 1, 2, 1, 0]


@pytest.mark.parametrize("function, factor, gradient_factor", [
    (scale_gradient, 0.5, 0.5),
    (reverse_gradient, 0.25, -0.25),  # gradient reversal: the same, negated
])
def test_gradient_scaling_is_identity_forward_and_scaled_backward(function, factor, gradient_factor):
    x = torch.randn(4, 3, requires_grad=True)
    y = function(x, factor)
    assert torch.equal(y, x)
    weights = torch.randn(4, 3)
    (y * weights).sum().backward()
    torch.testing.assert_close(x.grad, gradient_factor * weights)


def _encoder_gradient(weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The GRU's and the classifier's gradients from the system loss alone, for one encoder weight."""
    torch.manual_seed(0)
    model = create_model("rawnet-lite", frontend_channels=8, block_channels=[8, 16], gru_hidden=16)
    task = SystemClassifier(model, num_systems=3, weight=weight)
    model(0.1 * torch.randn(6, 4000))
    task.loss(torch.tensor([0, 1, 2, 0, 1, 2])).backward()
    return model.gru.weight_ih_l0.grad, task.classifier[0].weight.grad


def test_the_encoder_gets_the_system_gradient_times_its_weight_and_the_classifier_all_of_it():
    encoder_1, classifier_1 = _encoder_gradient(1.0)
    encoder_half, classifier_half = _encoder_gradient(0.5)
    encoder_0, _ = _encoder_gradient(0.0)
    assert encoder_1.abs().sum() > 0
    torch.testing.assert_close(encoder_half, 0.5 * encoder_1, rtol=1e-4, atol=1e-7)
    assert encoder_0.abs().sum() == 0
    torch.testing.assert_close(classifier_half, classifier_1)


@pytest.mark.parametrize("option, state_key, log_key, n_classes", [
    ("train.speaker_adversarial", "speaker_adversary", "speaker_loss", 5),  # the toy corpus' 5 speakers, both classes
    ("train.system_auxiliary", "system_classifier", "system_loss", 2),  # bona fide and A01
])
def test_a_side_task_logs_its_loss_resumes_exactly_and_ships_the_detector_alone(toy, tmp_path, option, state_key,
                                                                                  log_key, n_classes):
    common = [f"{option}=0.3", "optim.schedule=constant", "eval.every=0", "train.log_every=2",
              "train.checkpoint_every=3"]
    train(tiny(*common, "train.max_steps=8"), toy, toy, tmp_path / "straight", progress=False)
    train(tiny(*common, "train.max_steps=3"), toy, toy, tmp_path / "resumed", progress=False)
    train(tiny(*common, "train.max_steps=8"), toy, toy, tmp_path / "resumed", progress=False)
    a, b = load_checkpoint(tmp_path / "straight" / "last.pt"), load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert set(a[state_key]) == {"classifier.0.weight", "classifier.0.bias", "classifier.2.weight", "classifier.2.bias"}
    assert a[state_key]["classifier.2.weight"].shape[0] == n_classes
    for name, tensor in a[state_key].items():
        assert torch.equal(tensor, b[state_key][name]), name
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    records = [r for r in read_metrics(tmp_path / "straight" / "metrics.jsonl") if r["type"] == "train"]
    assert records and all(r[log_key] > 0 for r in records)
    # The shipped checkpoint is the detector alone: it loads into a plain model.
    model = create_model("rawnet-lite", **a["model_config"])
    model.load_state_dict(a["model"])

    # Switching the side task on for a run trained without it is refused, naming the key.
    plain = tmp_path / "plain"
    train(tiny("optim.schedule=constant", "eval.every=0", "train.max_steps=2"), toy, toy, plain, progress=False)
    with pytest.raises(ConfigError, match=f"{option}: .* was trained without it"):
        train(tiny(*common, "train.max_steps=4"), toy, toy, plain, progress=False)


def test_one_auxiliary_classifier_at_a_time_and_no_negative_weight(toy, tmp_path):
    both = tiny("train.system_auxiliary=0.3", "train.speaker_adversarial=0.1", "train.max_steps=2")
    with pytest.raises(ConfigError, match="train.speaker_adversarial and train.system_auxiliary: one auxiliary"):
        train(both, toy, toy, tmp_path / "r", progress=False)
    with pytest.raises(ConfigError, match="train.system_auxiliary"):
        tiny("train.system_auxiliary=-0.1")
