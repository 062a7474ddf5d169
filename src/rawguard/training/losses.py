"""Training objectives on the ``[B, 2]`` logits (spoof, bona fide) every rawguard model returns.

- ``cross_entropy``: two-class softmax cross-entropy, optionally class-weighted (RawNet2, AASIST).
- ``oc_softmax``: one-class softmax (Zhang, Jiang and Duan, "One-class learning towards synthetic
  voice spoofing detection", IEEE SPL 2021). Bona fide embeddings are pulled within an angle of one
  learnt direction (cosine >= ``m_bonafide``), spoofs pushed beyond another (cosine <= ``m_spoof``),
  and nothing asks the spoofs to gather: the spoof class is everything that is not bona fide, which
  is what an unseen spoofing system is. Needs a cosine head (``model.head=cosine``), whose logits
  are ``scale / 2 * [-c, c]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rawguard.conventions import BONAFIDE

LOSSES = ("cross_entropy", "oc_softmax")


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None,
                  label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean softmax cross-entropy of ``[B, 2]`` logits against ``[B]`` label ids (float32 math).

    With ``label_smoothing`` eps the target puts ``1 - eps / 2`` on the true class and ``eps / 2``
    on the other, so the loss is smallest at a finite logit margin, ``log((2 - eps) / eps)``.
    """
    return F.cross_entropy(logits.float(), labels, weight=weight, label_smoothing=label_smoothing)


def oc_softmax_loss(logits: torch.Tensor, labels: torch.Tensor, scale: float, margin_bonafide: float = 0.9,
                    margin_spoof: float = 0.2, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean one-class softmax loss of a cosine head's ``[B, 2]`` logits.

    ``c = (logit_bonafide - logit_spoof) / scale`` is the cosine; per clip the loss is
    ``softplus(scale * (margin_bonafide - c))`` for bona fide and ``softplus(scale * (c - margin_spoof))``
    for spoofs (the paper's alpha = ``scale`` = 20, m0 = 0.9, m1 = 0.2).

    Args:
        logits: ``[B, 2]`` from :class:`rawguard.models.layers.CosineHead`.
        labels: ``[B]`` label ids (``BONAFIDE`` = 1, ``SPOOF`` = 0).
        scale: the head's scale (alpha).
        margin_bonafide, margin_spoof: cosine margins, ``-1 <= margin_spoof < margin_bonafide <= 1``.
        weight: optional ``[2]`` per-class weights (spoof, bona fide); a weighted mean, as in
            :func:`torch.nn.functional.cross_entropy`.
    """
    if not -1 <= margin_spoof < margin_bonafide <= 1:
        raise ValueError(f"oc_softmax: need -1 <= margin_spoof < margin_bonafide <= 1, got "
                         f"{margin_spoof}, {margin_bonafide}")
    cosine = (logits[:, 1].float() - logits[:, 0].float()) / scale  # [B]
    bonafide = labels == BONAFIDE
    margin = torch.where(bonafide, torch.full_like(cosine, margin_bonafide), torch.full_like(cosine, margin_spoof))
    sign = torch.where(bonafide, torch.ones_like(cosine), -torch.ones_like(cosine))
    per_clip = F.softplus(scale * sign * (margin - cosine))  # [B]
    if weight is None:
        return per_clip.mean()
    w = weight.to(per_clip.dtype)[labels]
    return (w * per_clip).sum() / w.sum()
