"""Auxiliary classifiers on the embedding: system targets, gradient scaling, the trainer's system task."""

from __future__ import annotations

import pytest
import torch

from rawguard.checkpoint import load_checkpoint
from rawguard.config import ConfigError
from rawguard.models import create_model
from rawguard.train import train
from rawguard.training.embedding_tasks import SystemClassifier, scale_gradient, system_targets
from rawguard.training.log import read_metrics
from train_helpers import make_toy_cache, tiny


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_cache(tmp_path_factory.mktemp("toy"))


def test_every_system_and_bona_fide_is_a_class():
    targets, names = system_targets(["-", "A07", "synth-lpc", "A07", "-"])
    assert names == ["-", "A07", "synth-lpc"]
    assert targets.tolist() == [0, 1, 2, 1, 0]


def test_scale_gradient_is_identity_forward_and_scaled_backward():
    x = torch.randn(4, 3, requires_grad=True)
    y = scale_gradient(x, 0.5)
    assert torch.equal(y, x)
    weights = torch.randn(4, 3)
    (y * weights).sum().backward()
    torch.testing.assert_close(x.grad, 0.5 * weights)


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


def test_training_with_the_system_task_logs_its_loss_resumes_exactly_and_ships_the_detector_alone(toy, tmp_path):
    common = ["train.system_auxiliary=0.3", "optim.schedule=constant", "eval.every=0", "train.log_every=2",
              "train.checkpoint_every=3"]
    train(tiny(*common, "train.max_steps=6"), toy, toy, tmp_path / "straight", progress=False)
    train(tiny(*common, "train.max_steps=3"), toy, toy, tmp_path / "resumed", progress=False)
    train(tiny(*common, "train.max_steps=6"), toy, toy, tmp_path / "resumed", progress=False)
    a, b = load_checkpoint(tmp_path / "straight" / "last.pt"), load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert a["system_classifier"]["classifier.2.weight"].shape[0] == 2  # toy corpus: bona fide and A01
    for name, tensor in a["system_classifier"].items():
        assert torch.equal(tensor, b["system_classifier"][name]), name
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    records = [r for r in read_metrics(tmp_path / "straight" / "metrics.jsonl") if r["type"] == "train"]
    assert records and all(r["system_loss"] > 0 for r in records)
    model = create_model("rawnet-lite", **a["model_config"])
    model.load_state_dict(a["model"])


def test_one_auxiliary_classifier_at_a_time_and_no_negative_weight(toy, tmp_path):
    both = tiny("train.system_auxiliary=0.3", "train.speaker_adversarial=0.1", "train.max_steps=2")
    with pytest.raises(ConfigError, match="train.speaker_adversarial and train.system_auxiliary: one auxiliary"):
        train(both, toy, toy, tmp_path / "r", progress=False)
    with pytest.raises(ConfigError, match="train.system_auxiliary"):
        tiny("train.system_auxiliary=-0.1")
