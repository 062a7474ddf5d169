"""Auxiliary classifiers on the detector's utterance embedding (training only).

A small classifier reads the embedding that the detector's output layer ``fc`` reads, and learns a
second task from it: which speaker talks (:mod:`rawguard.training.adversarial`, trained *against*
the encoder) or which spoofing system made the clip (:class:`SystemClassifier`, trained *with* it).
The encoder receives the classifier's gradient times ``encoder_weight``: positive = multi-task
learning, negative = domain-adversarial training (gradient reversal).

The classifier is not part of the model: it hooks ``fc`` in training mode only, so scoring is
untouched, and ``best.pt`` is loaded by ``evaluate`` and ``score`` as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

IGNORE = -1  # target of clips the classifier does not see


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; the gradient times ``factor`` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return ctx.factor * grad, None


def scale_gradient(x: torch.Tensor, factor: float) -> torch.Tensor:
    """``x`` unchanged, with its gradient multiplied by ``factor`` on the way back."""
    return _ScaleGradient.apply(x, factor)


def system_targets(systems: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Integer system targets: every distinct ``system`` value (bona fide's ``-`` included) is a class.

    Args:
        systems: system name per clip ``[N]`` (a cache's ``system`` column).

    Returns:
        ``(targets int64 [N], names)`` with ``names[targets[i]] == systems[i]``.
    """
    names = sorted(set(systems))
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[s] for s in systems], dtype=np.int64), names


class EmbeddingClassifier(nn.Module):
    """A classifier on the input of ``model.fc``; the encoder gets its gradient times ``encoder_weight``.

    A forward pre-hook on ``model.fc`` keeps the embedding ``[B, D]`` of the latest training forward;
    :meth:`loss` classifies it. The hook is inactive in eval mode.

    Args:
        model: a detector whose output layer ``fc`` reads the utterance embedding (rawnet-lite).
        num_classes: number of targets.
        encoder_weight: factor on the gradient that reaches the encoder (the classifier itself
            always learns at full rate): > 0 helps the classifier, < 0 works against it.
        hidden: width of the classifier's hidden layer.
    """

    def __init__(self, model: nn.Module, num_classes: int, encoder_weight: float, hidden: int = 128) -> None:
        super().__init__()
        head = getattr(model, "fc", None)
        if not isinstance(head, nn.Module) or not hasattr(head, "in_features"):
            raise ValueError(f"{type(model).__name__} has no fc output layer to read the embedding from")
        if num_classes < 2:
            raise ValueError(f"an embedding classifier needs >= 2 classes, got {num_classes}")
        self.encoder_weight = encoder_weight
        self.classifier = nn.Sequential(nn.Linear(head.in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
        self._embedding: torch.Tensor | None = None
        self._hook = head.register_forward_pre_hook(self._keep)

    def _keep(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        if module.training:
            self._embedding = inputs[0]

    def loss(self, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the classifier on the last training forward's embedding.

        Args:
            targets: int64 ``[B]`` targets, :data:`IGNORE` for clips to skip.

        Returns:
            Scalar loss (0 when no clip of the batch has a target). Its gradient trains the
            classifier and, scaled by ``encoder_weight``, the encoder.
        """
        if self._embedding is None:
            raise RuntimeError(f"{type(self).__name__}.loss called before a training forward of the model")
        embedding, self._embedding = self._embedding, None
        keep = targets != IGNORE
        if not bool(keep.any()):
            return embedding.sum() * 0.0  # zero, but still a graph: the caller backpropagates it as usual
        logits = self.classifier(scale_gradient(embedding[keep].float(), self.encoder_weight))
        return F.cross_entropy(logits, targets[keep])

    def remove(self) -> None:
        """Detach the hook from the model."""
        self._hook.remove()


class SystemClassifier(EmbeddingClassifier):
    """Multi-task training: name the spoofing system (or bona fide) from the embedding.

    The binary loss only asks *whether* a clip is spoofed; naming *which* system made it asks the
    encoder for each system's own traces. On the shared corpus (BENCHMARKS.md) that helped the
    systems seen in training and hurt unseen ones: off by default.

    Args:
        model: see :class:`EmbeddingClassifier`.
        num_systems: number of system targets (from :func:`system_targets`).
        weight: factor on the gradient the encoder receives from this task.
    """

    def __init__(self, model: nn.Module, num_systems: int, weight: float, hidden: int = 128) -> None:
        super().__init__(model, num_systems, weight, hidden)
