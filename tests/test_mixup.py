"""Mixup: the mixture and its loss by hand, reproducible draws, and mixup runs in the training loop
(it differs from plain training, resumes exactly, and combines with SAM)."""

from __future__ import annotations

import pytest
import torch

from rawguard.checkpoint import load_checkpoint
from rawguard.config import ConfigError
from rawguard.conventions import BONAFIDE, SPOOF
from rawguard.train import train
from rawguard.training.log import read_metrics
from rawguard.training.losses import cross_entropy
from rawguard.training.mixup import mix_batch
from train_helpers import tiny


def test_a_mixture_is_lam_times_one_clip_plus_the_rest_of_its_partner():
    x = torch.randn(6, 100)
    labels = torch.tensor([BONAFIDE, SPOOF] * 3)
    original = x.clone()
    batch = mix_batch(x, labels, alpha=0.4, key=(0, 7, 0, 0))
    assert torch.equal(x, original)  # the input is not modified
    assert 0.0 <= batch.lam <= 1.0
    # Recover the pairing: clip i was mixed with the clip j whose waveform fits the residual.
    for i in range(6):
        residual = batch.x[i] - batch.lam * x[i]
        j = min(range(6), key=lambda k: (residual - (1 - batch.lam) * x[k]).abs().max().item())
        torch.testing.assert_close(batch.x[i], batch.lam * x[i] + (1 - batch.lam) * x[j])
        assert batch.partner_labels[i] == labels[j]
    assert torch.equal(batch.labels, labels)


def test_the_mixed_loss_is_the_same_mixture_of_the_two_losses():
    labels = torch.tensor([BONAFIDE, SPOOF, BONAFIDE, SPOOF])
    batch = mix_batch(torch.randn(4, 50), labels, alpha=1.0, key=(1, 2, 3, 4))
    logits = torch.randn(4, 2)
    expected = batch.lam * cross_entropy(logits, labels) + (1 - batch.lam) * cross_entropy(logits, batch.partner_labels)
    assert batch.loss(cross_entropy, logits).item() == pytest.approx(expected.item(), rel=1e-6)


def test_draws_depend_on_the_key_only():
    x, labels = torch.randn(8, 30), torch.tensor([BONAFIDE, SPOOF] * 4)
    first, again = mix_batch(x, labels, 0.4, (0, 5, 0, 0)), mix_batch(x, labels, 0.4, (0, 5, 0, 0))
    assert first.lam == again.lam and torch.equal(first.x, again.x)
    others = [mix_batch(x, labels, 0.4, (0, step, 0, 0)).lam for step in range(6, 12)]
    assert len(set(others + [first.lam])) == 7  # another step (or rank, micro-batch) draws anew


def test_small_alpha_keeps_most_mixtures_near_one_clip():
    x, labels = torch.randn(4, 10), torch.tensor([BONAFIDE, SPOOF] * 2)
    lams = torch.tensor([mix_batch(x, labels, 0.2, (0, step)).lam for step in range(2000)])
    near_one_clip = ((lams < 0.1) | (lams > 0.9)).float().mean().item()
    assert 0.5 < near_one_clip < 0.75  # Beta(0.2, 0.2): about 0.6
    assert abs(lams.mean().item() - 0.5) < 0.05  # symmetric


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="alpha must be > 0"):
        mix_batch(torch.randn(2, 10), torch.tensor([0, 1]), 0.0, (0,))
    with pytest.raises(ValueError, match="3 waveforms but 2 labels"):
        mix_batch(torch.randn(3, 10), torch.tensor([0, 1]), 0.2, (0,))
    with pytest.raises(ConfigError, match="train.mixup: must be >= 0"):
        tiny("train.mixup=-0.2")
    with pytest.raises(ConfigError, match="train.mixup: not with train.speaker_adversarial"):
        tiny("train.mixup=0.2", "train.system_auxiliary=0.3")


def _losses(run) -> list[float]:
    return [r["loss"] for r in read_metrics(run / "metrics.jsonl") if r["type"] == "train"]


def test_a_mixup_run_differs_from_plain_and_resumes_exactly(toy, tmp_path):
    common = ["optim.lr=3e-3", "optim.schedule=constant", "eval.every=0", "train.log_every=1",
              "train.checkpoint_every=3"]
    mixup = common + ["train.mixup=0.4"]
    train(tiny(*common, "train.max_steps=8"), toy, toy, tmp_path / "plain", progress=False)
    train(tiny(*mixup, "train.max_steps=8"), toy, toy, tmp_path / "straight", progress=False)
    train(tiny(*mixup, "train.max_steps=3"), toy, toy, tmp_path / "resumed", progress=False)
    train(tiny(*mixup, "train.max_steps=8"), toy, toy, tmp_path / "resumed", progress=False)
    plain, mixed = _losses(tmp_path / "plain"), _losses(tmp_path / "straight")
    assert mixed[0] != plain[0]  # the first step already trains on mixtures
    assert _losses(tmp_path / "resumed") == mixed
    a, b = load_checkpoint(tmp_path / "straight" / "last.pt"), load_checkpoint(tmp_path / "resumed" / "last.pt")
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name


def test_mixup_with_sam_and_grad_accum_trains(toy, tmp_path):
    # SAM's second pass must see the first pass's mixtures; two micro-batches mix separately.
    result = train(tiny("optim.lr=3e-3", "eval.every=0", "train.max_steps=6", "train.mixup=0.4",
                        "optim.sam_rho=0.05", "train.grad_accum=2", "train.log_every=1"),
                   toy, toy, tmp_path / "run", progress=False)
    assert result.step == 6
    assert all(0 < loss < 2 for loss in _losses(tmp_path / "run"))
