"""MixStyle: per-channel time statistics mixed across a training batch, identity at evaluation."""

from __future__ import annotations

import pytest
import torch

from rawguard.models import ModelConfigError, create_model
from rawguard.models.mixstyle import MixStyle


def styled_batch(batch: int = 6, channels: int = 4, frames: int = 200) -> torch.Tensor:
    """``[B, C, N]`` frames whose clips have very different per-channel means and spreads."""
    generator = torch.Generator().manual_seed(0)
    content = torch.randn(batch, channels, frames, generator=generator)
    means = torch.arange(batch, dtype=torch.float32).view(batch, 1, 1) * 10.0
    spreads = torch.arange(1, batch + 1, dtype=torch.float32).view(batch, 1, 1)
    return content * spreads + means


def test_eval_mode_and_p_zero_leave_the_features_alone():
    x = styled_batch()
    assert torch.equal(MixStyle(p=1.0).eval()(x), x)
    assert torch.equal(MixStyle(p=0.0).train()(x), x)
    assert torch.equal(MixStyle(p=1.0).train()(x[:1]), x[:1])


def test_training_keeps_each_clips_content_and_moves_its_statistics_between_clips():
    x = styled_batch()
    torch.manual_seed(3)
    y = MixStyle(p=1.0, alpha=2.0).train()(x)  # weights near 0.5: every clip with a partner moves
    assert y.shape == x.shape

    def normalised(t):
        return (t - t.mean(2, keepdim=True)) / t.std(2, keepdim=True, unbiased=False)

    # The frame-to-frame pattern of every clip survives ...
    assert torch.allclose(normalised(y), normalised(x), atol=1e-3)
    # ... while its statistics become convex mixes of the batch's: within the batch's range, and
    # different from its own for most clips.
    own, new = x.mean(2), y.mean(2)  # [B, C]
    assert new.min() >= own.min() - 1e-3 and new.max() <= own.max() + 1e-3
    assert (new - own).abs().amax(dim=1).gt(0.5).sum() >= 3


def test_statistics_do_not_carry_gradient_but_content_does():
    x = styled_batch().requires_grad_(True)
    torch.manual_seed(0)
    MixStyle(p=1.0).train()(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("p, alpha, pattern", [(-0.1, 0.1, "p must"), (1.5, 0.1, "p must"), (0.5, 0.0, "alpha")])
def test_bad_settings_are_refused(p, alpha, pattern):
    with pytest.raises(ValueError, match=pattern):
        MixStyle(p=p, alpha=alpha)


@pytest.mark.parametrize("overrides, pattern", [({"mixstyle": 2.0}, "mixstyle"), ({"mixstyle_alpha": -1.0}, "mixstyle_alpha")])
def test_rawnet_lite_refuses_bad_mixstyle_settings_naming_the_key(overrides, pattern):
    with pytest.raises(ModelConfigError, match=pattern):
        create_model("rawnet-lite", **overrides)


def test_rawnet_lite_with_mixstyle_trains_differently_and_scores_as_without():
    torch.manual_seed(0)
    plain = create_model("rawnet-lite")
    mixing = create_model("rawnet-lite", mixstyle=1.0)
    mixing.load_state_dict(plain.state_dict())  # no parameters of its own: the same checkpoint layout
    waves = 0.1 * torch.randn(4, 16000, generator=torch.Generator().manual_seed(1))
    plain.eval(), mixing.eval()
    with torch.no_grad():
        assert torch.equal(plain(waves), mixing(waves))
    plain.train(), mixing.train()
    torch.manual_seed(2)
    with torch.no_grad():
        assert not torch.allclose(plain(waves), mixing(waves))
