"""Exponential moving average (EMA) of the model weights, for dev selection and the final model.

After every optimizer step, for every floating-point parameter *and* buffer (BatchNorm's
``running_mean`` / ``running_var``)::

    ema = d * ema + (1 - d) * p,    d = min(decay, (1 + n) / (10 + n))

where ``n`` is the number of updates already applied (TensorFlow's / timm's warm-up: d = 0.1, 0.18,
0.25, ... so the average is not dominated by the random initialisation early on). Integer buffers
(``num_batches_tracked``) are copied. Averaging the BatchNorm statistics is the point: the raw
weights' dev EER jitters from one evaluation to the next with the running statistics of the last
few batches, and the averaged weights and statistics are a steadier model to select and ship.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_decay_at(decay: float, updates: int) -> float:
    """Effective decay of update number ``updates + 1`` (``updates`` already applied), with warm-up."""
    return min(decay, (1 + updates) / (10 + updates))


class ModelEMA:
    """An averaged copy of a model (in eval mode, no gradients), on the model's device.

    Args:
        model: the plain module (unwrap DDP first); copied as the starting average.
        decay: the target decay in (0, 1) (``train.ema_decay``).
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"train.ema_decay: must be in (0, 1) for an EMA, got {decay!r}")
        self.decay = float(decay)
        self.updates = 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        # A deep copy gives every GRU/LSTM weight its own storage; cuDNN wants them in one chunk and
        # otherwise re-packs them (with a warning) on every call. The average updates them in place.
        for module in self.module.modules():
            if isinstance(module, nn.RNNBase):
                module.flatten_parameters()

    @torch.no_grad()
    def update(self, model: nn.Module) -> float:
        """Move the average towards ``model``'s current weights; returns the decay used."""
        decay = ema_decay_at(self.decay, self.updates)
        averaged, current = [], []
        state = model.state_dict()
        for name, ema in self.module.state_dict().items():
            value = state[name]
            if ema.is_floating_point():
                averaged.append(ema)
                current.append(value.to(ema.dtype))
            else:
                ema.copy_(value)
        # lerp: ema + (1 - d) * (p - ema) = d * ema + (1 - d) * p, in one pass over all tensors.
        torch._foreach_lerp_(averaged, current, 1.0 - decay)
        self.updates += 1
        return decay

    def load(self, weights: dict[str, torch.Tensor], updates: int) -> None:
        """Restore the average from a checkpoint (its weights and how many updates it has seen)."""
        self.module.load_state_dict(weights)
        self.updates = int(updates)
