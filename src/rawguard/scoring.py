"""Batched inference over a prepared cache: one score per utterance.

An utterance's score is the mean over its windows (``rawguard.data.dataset.eval_batches``) of
``logit[BONAFIDE] - logit[SPOOF]`` (higher = more bona fide, see :mod:`rawguard.conventions`).
Used by the training loop for dev selection and by ``rawguard evaluate``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rawguard.conventions import score_from_logits
from rawguard.data.dataset import eval_batches, to_float
from rawguard.progress import progress_bar
from rawguard.training.precision import autocast, resolve_precision


class ScoringError(RuntimeError):
    """The model produced unusable output (wrong shape, NaN) or the cache has unscored clips."""


@torch.no_grad()
def score_cache(
    model: nn.Module,
    cache,
    window: int,
    hop: int,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    progress: bool = False,
) -> np.ndarray:
    """Score every utterance of ``cache``.

    Args:
        model: maps float32 ``[B, T]`` waveforms to ``[B, 2]`` logits; evaluated in eval mode (its
            previous train/eval mode is restored afterwards).
        cache: a :class:`rawguard.data.cache.Cache`.
        window, hop: scoring window and hop in samples (short clips are padded to one window).
        batch_size: windows per forward pass.
        device: where to run the model (the model must already be there).
        precision: ``fp32``, ``bf16``, ``fp16`` or ``auto`` (autocast for the forward pass).
        progress: show a tqdm bar over the windows.

    Returns:
        float32 ``[N]`` scores in cache order (``cache.ids[i]`` has score ``scores[i]``).

    Raises:
        ScoringError: if the logits are not ``[B, 2]``, are not finite, or a clip got no window.
    """
    device = torch.device(device)
    precision = resolve_precision(precision, device)
    n = len(cache)
    sums = np.zeros(n, dtype=np.float64)
    counts = np.zeros(n, dtype=np.int64)
    was_training = model.training
    model.eval()
    try:
        batches = eval_batches(cache, window, hop, batch_size)
        for x, utt in progress_bar(batches, desc="scoring", unit="batch", disable=not progress, leave=False):
            with autocast(precision, device):
                logits = model(to_float(x.to(device, non_blocking=True)))
            if logits.ndim != 2 or logits.shape[1] != 2 or logits.shape[0] != x.shape[0]:
                raise ScoringError(f"model output: expected [B, 2] logits with B={x.shape[0]}, got {tuple(logits.shape)}")
            logits = logits.float()
            score = score_from_logits(logits).cpu().numpy()
            if not np.all(np.isfinite(score)):
                raise ScoringError("model output: non-finite logits while scoring (diverged training?)")
            index = utt.numpy()
            np.add.at(sums, index, score)
            np.add.at(counts, index, 1)
    finally:
        model.train(was_training)
    if n and counts.min() == 0:
        missing = int(np.flatnonzero(counts == 0)[0])
        raise ScoringError(f"cache clip {cache.ids[missing]!r} received no scoring window")
    return (sums / np.maximum(counts, 1)).astype(np.float32)
