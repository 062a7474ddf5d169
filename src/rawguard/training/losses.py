"""The training objective on the ``[B, 2]`` logits (spoof, bona fide) every rawguard model returns:
two-class softmax cross-entropy, optionally class-weighted (RawNet2, AASIST) and label-smoothed.

One-class softmax (OC-softmax, Zhang, Jiang and Duan, IEEE SPL 2021) with a cosine output layer
was an option until ``3f12610``; it trained more slowly than cross-entropy and made unseen
families harder on the leave-family-out yardstick (BENCHMARKS.md, "What did not help").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None,
                  label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean softmax cross-entropy of ``[B, 2]`` logits against ``[B]`` label ids (float32 math).

    With ``label_smoothing`` eps the target puts ``1 - eps / 2`` on the true class and ``eps / 2``
    on the other, so the loss is smallest at a finite logit margin, ``log((2 - eps) / eps)``.
    """
    return F.cross_entropy(logits.float(), labels, weight=weight, label_smoothing=label_smoothing)
