"""Speaker-adversarial training: targets, gradient reversal, the hook, the trainer's checks (training and
resuming with it: tests/test_embedding_tasks.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rawguard.config import ConfigError
from rawguard.models import create_model
from rawguard.train import train
from rawguard.training.adversarial import IGNORE, SpeakerAdversary, speaker_targets
from train_helpers import make_toy_cache, tiny


def test_only_speakers_of_both_classes_are_targets():
    speakers = ["ann", "ann", "bob", "tts_voice", "tts_voice", "-", "cid", "cid"]
    labels = np.array([1, 0, 1, 0, 0, 1, 0, 1])
    targets, names = speaker_targets(speakers, labels)
    assert names == ["ann", "cid"]
    assert targets.tolist() == [0, 0, IGNORE, IGNORE, IGNORE, IGNORE, 1, 1]
    with pytest.raises(ValueError, match="3 speakers for 2 labels"):
        speaker_targets(["a", "b", "c"], np.array([0, 1]))


def test_adversary_reads_the_embedding_in_training_only_and_trains_against_the_encoder():
    torch.manual_seed(0)
    model = create_model("rawnet-lite", frontend_channels=8, block_channels=[8, 16], gru_hidden=16)
    adversary = SpeakerAdversary(model, num_speakers=3, strength=1.0)
    x = 0.1 * torch.randn(6, 4000)
    model.eval()
    model(x)
    with pytest.raises(RuntimeError, match="before a training forward"):
        adversary.loss(torch.zeros(6, dtype=torch.long))  # eval forwards are not kept
    model.train()
    model(x)
    targets = torch.tensor([0, 1, 2, IGNORE, 0, 1])
    loss = adversary.loss(targets)
    assert 0 < loss.item() < 5
    loss.backward()
    # The classifier and the encoder both receive gradient; the output layer (after the embedding) none.
    assert adversary.classifier[0].weight.grad.abs().sum() > 0
    assert model.gru.weight_ih_l0.grad.abs().sum() > 0
    assert model.fc.weight.grad is None
    # Reversal: the encoder's gradient is -strength times what plain training of the classifier gives it.
    encoder_grad = model.gru.weight_ih_l0.grad.clone()
    model.zero_grad()
    adversary.strength = -1.0  # no reversal: ordinary descent on the speaker loss
    model(x)
    adversary.loss(targets).backward()
    torch.testing.assert_close(model.gru.weight_ih_l0.grad, -encoder_grad, rtol=1e-4, atol=1e-7)
    # A batch with no speaker target costs nothing and breaks nothing.
    model(x)
    assert adversary.loss(torch.full((6,), IGNORE)).item() == 0.0


def test_adversary_needs_speakers_in_both_classes(tmp_path):
    cache = make_toy_cache(tmp_path / "toy", n_per_class=4)
    # Relabel every clip's speaker so that no speaker has both classes.
    cache.speakers = [f"only_{label}" for label in cache.labels.tolist()]
    with pytest.raises(ConfigError, match="train.speaker_adversarial: .*>= 2 speakers in both classes, got 0"):
        train(tiny("train.speaker_adversarial=0.3", "train.max_steps=2"), cache, cache, tmp_path / "r", progress=False)


def test_negative_strength_is_refused():
    with pytest.raises(ConfigError, match="train.speaker_adversarial"):
        tiny("train.speaker_adversarial=-1")
