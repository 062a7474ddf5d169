"""Speaker-adversarial training: make the detector's utterance embedding carry no speaker identity.

On the shared corpus the dev errors sit on speakers that are rare in train for a given system
(BENCHMARKS.md, "Where the dev errors come from"): the detector partly recognises *who* speaks, not
*how* the audio was made. Domain-adversarial training (Ganin & Lempitsky, 2015) attacks that
directly: a small classifier learns to name the speaker from the embedding the detector's output
layer reads, and a gradient-reversal layer between the two hands the encoder the *negative* of that
classifier's gradient, times ``strength``, so the encoder learns to hide the speaker while the
classifier keeps trying to find it.

Only speakers that occur in both classes are targets. A voice that exists only as spoofs (a TTS
system's single voice) is a class cue, not a nuisance: hiding it would fight the detection task.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rawguard.conventions import BONAFIDE, SPOOF

IGNORE = -1  # speaker target of clips the adversary does not see


def speaker_targets(speakers: list[str], labels: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Integer speaker targets for the adversary.

    Args:
        speakers: speaker name per clip ``[N]`` (a cache's ``speaker`` column; ``-`` = unknown).
        labels: label id per clip ``[N]``.

    Returns:
        ``(targets int64 [N], names)``: ``targets[i]`` indexes ``names`` for clips whose speaker
        has clips of both classes, and is :data:`IGNORE` for the rest (spoof-only or bona-fide-only
        voices, unknown speakers).
    """
    if len(speakers) != len(labels):
        raise ValueError(f"{len(speakers)} speakers for {len(labels)} labels")
    classes: dict[str, set[int]] = {}
    for speaker, label in zip(speakers, labels.tolist()):
        classes.setdefault(speaker, set()).add(label)
    names = sorted(s for s, seen in classes.items() if s not in ("", "-") and seen >= {BONAFIDE, SPOOF})
    index = {name: i for i, name in enumerate(names)}
    targets = np.array([index.get(s, IGNORE) for s in speakers], dtype=np.int64)
    return targets, names


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; the gradient times ``-strength`` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, strength: float) -> torch.Tensor:
        ctx.strength = strength
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.strength * grad, None


def reverse_gradient(x: torch.Tensor, strength: float) -> torch.Tensor:
    """``x`` unchanged, with its gradient multiplied by ``-strength`` on the way back."""
    return _ReverseGradient.apply(x, strength)


class SpeakerAdversary(nn.Module):
    """A speaker classifier on the input of ``model.fc`` behind a gradient-reversal layer.

    A forward pre-hook on ``model.fc`` keeps the embedding ``[B, D]`` of the latest training forward;
    :meth:`loss` classifies it. The hook is inactive in eval mode, so scoring is untouched, and the
    adversary is not part of the model: checkpoints that ``evaluate`` or ``score`` load are unchanged.

    Args:
        model: a detector whose output layer ``fc`` reads the utterance embedding (rawnet-lite).
        num_speakers: number of speaker targets (from :func:`speaker_targets`).
        strength: gradient-reversal factor: how hard the encoder is pushed to hide the speaker.
        hidden: width of the classifier's hidden layer.
    """

    def __init__(self, model: nn.Module, num_speakers: int, strength: float, hidden: int = 128) -> None:
        super().__init__()
        head = getattr(model, "fc", None)
        if not isinstance(head, nn.Module) or not hasattr(head, "in_features"):
            raise ValueError(f"{type(model).__name__} has no fc output layer to read the embedding from")
        if num_speakers < 2:
            raise ValueError(f"speaker-adversarial training needs >= 2 speakers in both classes, got {num_speakers}")
        self.strength = strength
        self.classifier = nn.Sequential(nn.Linear(head.in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_speakers))
        self._embedding: torch.Tensor | None = None
        self._hook = head.register_forward_pre_hook(self._keep)

    def _keep(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        if module.training:
            self._embedding = inputs[0]

    def loss(self, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the speaker classifier on the last training forward's embedding.

        Args:
            targets: int64 ``[B]`` speaker targets, :data:`IGNORE` for clips to skip.

        Returns:
            Scalar loss (0 when no clip of the batch has a target). Its gradient trains the
            classifier and, reversed, the encoder.
        """
        if self._embedding is None:
            raise RuntimeError("SpeakerAdversary.loss called before a training forward of the model")
        embedding, self._embedding = self._embedding, None
        keep = targets != IGNORE
        if not bool(keep.any()):
            return embedding.sum() * 0.0  # zero, but still a graph: the caller backpropagates it as usual
        logits = self.classifier(reverse_gradient(embedding[keep].float(), self.strength))
        return F.cross_entropy(logits, targets[keep])

    def remove(self) -> None:
        """Detach the hook from the model."""
        self._hook.remove()
