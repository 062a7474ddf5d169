"""Small layers shared by the architectures: input checks, feature-map scaling, output sizes."""

from __future__ import annotations

import torch
from torch import nn


class WaveformShapeError(ValueError):
    """A model got an input that is not a ``[B, T]`` floating waveform with ``T >= min_samples``."""


def check_waveform(x: torch.Tensor, min_samples: int, model_name: str) -> None:
    """Validate a model input at the module boundary.

    Args:
        x: expected ``[B, T]`` floating point, ``T >= min_samples``.
        min_samples: the model's minimum length.
        model_name: named in the error message.

    Raises:
        WaveformShapeError: naming the model, the expected and the actual shape / dtype.
    """
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return  # shape checks on symbolic sizes would become export guards; the eager path checks
    if x.dim() != 2 or not x.is_floating_point():
        raise WaveformShapeError(
            f"{model_name}: expected a [B, T] float waveform, got shape {list(x.shape)} dtype {x.dtype}"
        )
    if x.shape[1] < min_samples:
        raise WaveformShapeError(
            f"{model_name}: input has {x.shape[1]} samples, fewer than the minimum {min_samples} "
            f"(pad short clips, e.g. by repetition, to at least {min_samples})"
        )


def min_input_length(kernel_size: int, stride: int, pools: list[int] | tuple[int, ...]) -> int:
    """Smallest ``T`` for which an unpadded conv (``kernel_size``, ``stride``) then max-pools of the
    given sizes (floor mode) leave at least one frame: the conv must give ``prod(pools)`` frames."""
    frames = 1
    for pool in pools:
        frames *= pool
    return kernel_size + stride * (frames - 1)


def output_length(num_samples: int, kernel_size: int, stride: int, pools: list[int] | tuple[int, ...]) -> int:
    """Frames left after an unpadded conv (``kernel_size``, ``stride``) and floor-mode max-pools."""
    frames = (num_samples - kernel_size) // stride + 1
    for pool in pools:
        frames //= pool
    return frames


def gru_fp32(gru: nn.GRU, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``gru`` on ``x [B, N, C]`` in float32, even inside a CPU autocast region.

    Under CPU bf16 autocast a GRU becomes one small bf16 matmul per time step, and oneDNN's
    per-call overhead for those made the GRU 2-3x slower than in fp32 (measured, see
    BENCHMARKS.md); the recurrence is also better kept in fp32. Other devices keep autocast.

    Returns:
        ``(outputs [B, N, D * H], hidden [D * layers, B, H])`` as :class:`torch.nn.GRU`.
    """
    if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return gru(x.float())
    return gru(x)


class FeatureMapScaling(nn.Module):
    """RawNet2's filter-wise feature-map scaling: ``x * s + s`` with ``s = sigmoid(W mean_t(x) + b)``.

    A per-channel gate computed from the clip-level average of each channel, so the network can
    emphasise the filters that carry artefacts for this clip. ``[B, C, N]`` -> ``[B, C, N]``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.sigmoid(self.fc(x.mean(dim=-1))).unsqueeze(-1)  # [B, C, 1]
        return x * scale + scale


__all__ = [
    "FeatureMapScaling",
    "WaveformShapeError",
    "check_waveform",
    "gru_fp32",
    "min_input_length",
    "output_length",
]
