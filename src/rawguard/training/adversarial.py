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
from torch import nn

from rawguard.conventions import BONAFIDE, SPOOF
from rawguard.training.embedding_tasks import IGNORE, EmbeddingClassifier, scale_gradient

__all__ = ["IGNORE", "SpeakerAdversary", "reverse_gradient", "speaker_targets"]


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


def reverse_gradient(x: torch.Tensor, strength: float) -> torch.Tensor:
    """``x`` unchanged, with its gradient multiplied by ``-strength`` on the way back."""
    return scale_gradient(x, -strength)


class SpeakerAdversary(EmbeddingClassifier):
    """A speaker classifier on the input of ``model.fc`` behind a gradient-reversal layer.

    See :class:`rawguard.training.embedding_tasks.EmbeddingClassifier` (the hook, the loss, the
    :data:`IGNORE` targets); the encoder receives the classifier's gradient times ``-strength``.

    Args:
        model: a detector whose output layer ``fc`` reads the utterance embedding (rawnet-lite).
        num_speakers: number of speaker targets (from :func:`speaker_targets`).
        strength: gradient-reversal factor: how hard the encoder is pushed to hide the speaker.
        hidden: width of the classifier's hidden layer.
    """

    def __init__(self, model: nn.Module, num_speakers: int, strength: float, hidden: int = 128) -> None:
        if num_speakers < 2:
            raise ValueError(f"speaker-adversarial training needs >= 2 speakers in both classes, got {num_speakers}")
        super().__init__(model, num_speakers, -strength, hidden)

    @property
    def strength(self) -> float:
        """The gradient-reversal factor (the encoder's weight on this classifier's gradient, negated)."""
        return -self.encoder_weight

    @strength.setter
    def strength(self, value: float) -> None:
        self.encoder_weight = -value
