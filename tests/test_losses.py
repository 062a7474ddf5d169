"""Training objectives: cross-entropy and one-class softmax (OC-softmax) with its cosine head."""

from __future__ import annotations

import math

import pytest
import torch

from rawguard.checkpoint import load_checkpoint
from rawguard.config import ConfigError
from rawguard.conventions import BONAFIDE, SPOOF, score_from_logits
from rawguard.models import create_model
from rawguard.models.layers import CosineHead
from rawguard.train import train
from rawguard.training.losses import cross_entropy, oc_softmax_loss
from helpers.training import make_toy_cache, tiny


def _logits_for(cosines: list[float], scale: float = 20.0) -> torch.Tensor:
    c = torch.tensor(cosines)
    return torch.stack([-0.5 * scale * c, 0.5 * scale * c], dim=-1)


def test_oc_softmax_matches_the_papers_formula():
    logits = _logits_for([0.95, 0.5, 0.95, 0.1])
    labels = torch.tensor([BONAFIDE, BONAFIDE, SPOOF, SPOOF])
    expected = [math.log1p(math.exp(20 * (0.9 - 0.95))), math.log1p(math.exp(20 * (0.9 - 0.5))),
                math.log1p(math.exp(20 * (0.95 - 0.2))), math.log1p(math.exp(20 * (0.1 - 0.2)))]
    loss = oc_softmax_loss(logits, labels, scale=20.0)
    assert loss.item() == pytest.approx(sum(expected) / 4, rel=1e-5)
    # class weights give a weighted mean, as cross_entropy's do
    weighted = oc_softmax_loss(logits, labels, scale=20.0, weight=torch.tensor([1.0, 3.0]))
    assert weighted.item() == pytest.approx((3 * expected[0] + 3 * expected[1] + expected[2] + expected[3]) / 8,
                                            rel=1e-5)


def test_oc_softmax_rejects_margins_in_the_wrong_order():
    with pytest.raises(ValueError, match="margin_spoof < margin_bonafide"):
        oc_softmax_loss(_logits_for([0.0]), torch.tensor([BONAFIDE]), 20.0, margin_bonafide=0.2, margin_spoof=0.9)


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


def test_label_smoothing_out_of_range_or_with_oc_softmax_is_a_config_error():
    with pytest.raises(ConfigError, match=r"train.label_smoothing: must be in \[0, 1\)"):
        tiny("train.label_smoothing=1.0")
    with pytest.raises(ConfigError, match="train.label_smoothing: only with train.loss: cross_entropy"):
        tiny("train.loss=oc_softmax", "model.head=cosine", "train.label_smoothing=0.1")
    config = tiny("train.label_smoothing=0.1")
    from rawguard.training.build import build_loss

    loss_fn = build_loss(config, create_model(config.model.name, **config.model.overrides), None)
    logits, labels = torch.tensor([[0.0, 8.0]]), torch.tensor([BONAFIDE])
    assert loss_fn(logits, labels).item() == pytest.approx(cross_entropy(logits, labels, label_smoothing=0.1).item())
    assert loss_fn(logits, labels).item() > 10 * cross_entropy(logits, labels).item()  # the run's loss uses it


def test_cosine_head_scores_scale_times_cosine():
    head = CosineHead(4, scale=10.0)
    with torch.no_grad():
        head.direction.copy_(torch.tensor([2.0, 0.0, 0.0, 0.0]))
    x = torch.tensor([[3.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [-1.0, 1.0, 0.0, 0.0]])
    logits = head(x)
    assert logits.shape == (3, 2)
    assert torch.allclose(score_from_logits(logits), torch.tensor([10.0, 0.0, -10.0 / math.sqrt(2)]), atol=1e-5)
    with pytest.raises(ValueError, match="scale must be > 0"):
        CosineHead(4, scale=0.0)


def test_oc_softmax_training_separates_two_classes_by_angle():
    torch.manual_seed(0)
    head = CosineHead(8, scale=20.0)
    bonafide_centre = torch.randn(8)
    x = torch.cat([bonafide_centre + 0.3 * torch.randn(64, 8), torch.randn(64, 8)])
    labels = torch.cat([torch.full((64,), BONAFIDE), torch.full((64,), SPOOF)])
    optimizer = torch.optim.SGD(head.parameters(), lr=0.5)
    first = oc_softmax_loss(head(x), labels, 20.0).item()
    for _ in range(200):
        optimizer.zero_grad()
        oc_softmax_loss(head(x), labels, 20.0).backward()
        optimizer.step()
    assert oc_softmax_loss(head(x), labels, 20.0).item() < 0.5 * first
    cosines = score_from_logits(head(x)).detach() / 20.0
    # the learnt direction is the bona fide cluster's: bona fide within the margin, spoofs spread around 0
    assert torch.nn.functional.cosine_similarity(head.direction, bonafide_centre, dim=0) > 0.95
    assert cosines[:64].mean() > 0.9 and cosines[64:].mean() < 0.3


def test_rawnet_lite_cosine_head_and_bad_head_name():
    model = create_model("rawnet-lite", head="cosine", cosine_scale=16.0)
    assert isinstance(model.fc, CosineHead) and model.fc.scale == 16.0
    scores = score_from_logits(model.eval()(torch.randn(2, 8000) * 0.1))
    assert scores.shape == (2,) and scores.abs().max() <= 16.0 + 1e-4
    with pytest.raises(ValueError, match="'head' must be one of \\['linear', 'cosine'\\], got 'arc'"):
        create_model("rawnet-lite", head="arc")


def test_oc_softmax_without_a_cosine_head_is_a_config_error(tmp_path):
    # checked on the built model (whatever the architecture), before the first step
    toy = make_toy_cache(tmp_path / "toy", n_per_class=4)
    with pytest.raises(ConfigError, match="train.loss: oc_softmax needs a cosine output layer"):
        train(tiny("train.loss=oc_softmax"), toy, toy, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "last.pt").exists()
    with pytest.raises(ConfigError, match="train.loss: must be one of cross_entropy, oc_softmax"):
        tiny("train.loss=hinge")
    with pytest.raises(ConfigError, match="train.oc_margins"):
        tiny("train.loss=oc_softmax", "model.head=cosine", "train.oc_margins=[0.2,0.9]")


def test_oc_softmax_run_trains_saves_and_reloads_the_cosine_head(tmp_path):
    toy = make_toy_cache(tmp_path / "toy", n_per_class=12)
    config = tiny("train.loss=oc_softmax", "model.head=cosine", "train.max_steps=30", "eval.every=10",
                  "optim.lr=3e-3")
    result = train(config, toy, toy, tmp_path / "run", progress=False)
    assert result.step == 30 and result.best_dev_eer is not None and result.best_dev_eer < 0.25
    saved = load_checkpoint(tmp_path / "run" / "best.pt")
    assert saved["model_config"]["head"] == "cosine"
    assert "fc.direction" in saved["model"]
