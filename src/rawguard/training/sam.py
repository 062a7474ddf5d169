"""Sharpness-aware minimisation (SAM, Foret et al., ICLR 2021; ASAM, Kwon et al., ICML 2021).

Why: a detector that sits in a flat minimum of the training loss is less sensitive to the shift
between the training systems and new ones; SAM-trained anti-spoofing models generalised better
across corpora (Shim et al., "Multi-Dataset Co-Training with Sharpness-Aware Optimization for
Audio Anti-Spoofing", Interspeech 2023).

A SAM step costs two forward/backward passes:

1. the gradient ``g`` at the weights ``w`` (the ordinary backward pass);
2. :meth:`SharpnessAwareStep.ascend` moves the weights to ``w + e``, ``e = rho * g / ||g||``
   (ASAM: ``e = rho * w^2 g / ||w g||``, a radius relative to each weight's size);
3. a second backward pass there gives the gradient the optimizer uses;
4. :meth:`SharpnessAwareStep.descend` puts the weights back to ``w`` before the optimizer step.

The second pass must not update BatchNorm's running statistics twice per step:
:func:`frozen_batchnorm_statistics` holds them for its duration.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import nn


class SharpnessAwareStep:
    """The weight perturbation of one SAM step, for the parameters given (with ``.grad`` filled)."""

    def __init__(self, parameters: Iterable[nn.Parameter], rho: float, adaptive: bool = False) -> None:
        if rho <= 0:
            raise ValueError(f"SAM radius rho must be > 0, got {rho}")
        self.parameters = [p for p in parameters if p.requires_grad]
        self.rho, self.adaptive = rho, adaptive
        self._saved: list[tuple[nn.Parameter, torch.Tensor]] = []

    @torch.no_grad()
    def ascend(self) -> bool:
        """Move each parameter to ``w + e`` along its gradient; False (nothing moved) if the gradient
        is zero or not finite (an fp16 overflow step, which the scaler will skip anyway)."""
        # T g, with T = |w| for ASAM and the identity for SAM; the move is rho * T (T g) / ||T g||.
        weighted = [(p, p.grad * p.abs() if self.adaptive else p.grad) for p in self.parameters if p.grad is not None]
        if not weighted:
            return False
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(tg.float()) for _, tg in weighted]))
        if not torch.isfinite(norm) or norm == 0:
            return False
        scale = self.rho / norm
        for p, tg in weighted:
            self._saved.append((p, p.detach().clone()))  # restored exactly, not by subtracting
            p.add_((tg * p.abs() if self.adaptive else tg) * scale.to(tg.dtype))
        return True

    @torch.no_grad()
    def descend(self) -> None:
        """Undo :meth:`ascend`: the weights are ``w`` again, bit for bit."""
        for p, saved in self._saved:
            p.copy_(saved)
        self._saved.clear()


@contextlib.contextmanager
def frozen_batchnorm_statistics(model: nn.Module) -> Iterator[None]:
    """BatchNorm layers normalise with the batch as usual but leave their running statistics, and
    their count of batches seen (which ``momentum=None``'s cumulative average divides by), alone."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in layers]
    for m in layers:
        m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch
    try:
        yield
    finally:
        for m, (momentum, count) in zip(layers, saved):
            m.momentum = momentum
            if count is not None:
                m.num_batches_tracked.copy_(count)
