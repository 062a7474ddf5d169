"""Learning-rate schedule: linear warm-up, then cosine decay (or constant).

The schedule is a pure function of the optimizer step, so resuming only needs the step count
(no scheduler object with hidden state to pickle).
"""

from __future__ import annotations

import math


def lr_at(
    step: int,
    base_lr: float,
    warmup_steps: int = 0,
    decay_steps: int = 0,
    schedule: str = "cosine",
    min_lr_ratio: float = 0.0,
) -> float:
    """Learning rate for optimizer step ``step`` (0-based: the first update uses ``lr_at(0)``).

    Warm-up rises linearly ``base_lr / warmup_steps, 2 * base_lr / warmup_steps, ... base_lr``
    (never exactly 0, so the first step moves the weights). Cosine decay then goes from ``base_lr``
    at the end of warm-up to ``min_lr_ratio * base_lr`` at ``decay_steps`` and stays there.

    Raises:
        ValueError: for a cosine schedule without ``decay_steps``, or an unknown schedule name.
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    if schedule != "cosine":
        raise ValueError(f"optim.schedule: unknown schedule {schedule!r} (expected cosine or constant)")
    if decay_steps <= 0:
        raise ValueError(
            "optim.schedule=cosine needs the schedule length: set train.max_steps, train.max_epochs "
            "or optim.decay_steps (or use optim.schedule=constant)"
        )
    span = max(1, decay_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    floor = base_lr * min_lr_ratio
    return floor + 0.5 * (base_lr - floor) * (1.0 + math.cos(math.pi * progress))
