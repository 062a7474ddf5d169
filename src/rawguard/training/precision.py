"""Numeric precision: autocast dtype and gradient scaler for ``fp32`` / ``bf16`` / ``fp16`` / ``auto``."""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

from rawguard.config import ConfigError


def resolve_precision(precision: str, device: torch.device, field: str = "train.precision") -> str:
    """Turn ``auto`` into a concrete choice and reject combinations that cannot work.

    ``auto``: on CUDA, fp32: measured on an H200 (BENCHMARKS.md, "GPU"), bf16 and fp16 autocast made
    both models slower (training 11-20 %, inference 10-37 %): these networks are too small for the
    tensor cores to pay for the casts, and cuDNN already runs fp32 convolutions in TF32. On CPU,
    bf16 where the CPU has AMX tiles (Sapphire Rapids and newer: RawNet2 steps ~2.5x faster in bf16
    there, rawnet-lite's slightly, see BENCHMARKS.md), else fp32: without AMX, CPU bf16 is emulated
    and slower. bf16 autocast keeps fp32 master weights and the loss in fp32, so it needs no scaler
    and is safe to train with; fp16 (CUDA only) trains with a gradient scaler.

    Raises:
        ConfigError: naming ``field`` (the setting the value came from: ``train.precision``,
            ``eval.precision``, a scorer's ``precision``), for fp16 on CPU (no scaler support there)
            or an unknown value.
    """
    if precision == "auto":
        if device.type == "cuda":
            return "fp32"
        return "bf16" if cpu_has_amx() else "fp32"
    if precision not in ("fp32", "bf16", "fp16"):
        raise ConfigError(f"{field}: unknown precision {precision!r} (expected auto, fp32, bf16 or fp16)")
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"{field}: fp16 needs a CUDA device (use bf16 or fp32 on CPU)")
    return precision


def cpu_has_amx() -> bool:
    """True when this CPU has AMX tile instructions (fast bf16 matrix kernels in oneDNN)."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private, present since torch 2.3
    try:
        return bool(probe()) if probe is not None else False
    except RuntimeError:
        return False


def autocast(precision: str, device: torch.device) -> ContextManager:
    """Autocast context for the forward pass (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """A gradient scaler, enabled only for fp16 (bf16 has fp32's exponent range and needs none)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
