"""Tiny checkpoints and real corpus clips for the scoring, detector, export and evaluation tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from rawguard.checkpoint import save_checkpoint
from rawguard.models import create_model

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
FLAC = SHARED / "corpus" / "flac"
SMOKE = SHARED / "corpus" / "protocols" / "smoke.txt"
TINY_MODEL = {"frontend_channels": 8, "block_channels": [8, 16], "gru_hidden": 16}
WINDOW = 16_000  # 1 s windows keep the tests fast and make corpus clips (1-6 s) multi-window
SELECTION = {"dev_eer": 0.2, "threshold": 0.05, "calibration": {"scale": 1.7, "bias": -0.3}, "window": WINDOW, "hop": WINDOW // 2}


def tiny_model(seed: int = 0) -> torch.nn.Module:
    """A randomly initialised tiny rawnet-lite with non-trivial BatchNorm statistics (so eval mode
    differs from train mode)."""
    torch.manual_seed(seed)
    model = create_model("rawnet-lite", **TINY_MODEL)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    return model


def save_tiny_checkpoint(path: Path, selection: dict | None, seed: int = 0) -> Path:
    """:func:`tiny_model` saved with the documented checkpoint keys (and ``selection`` unless None)."""
    model = tiny_model(seed)
    state = {
        "model_name": "rawnet-lite",
        "model_config": dataclasses.asdict(model.config),
        "model": model.state_dict(),
        "config": {"eval": {"window": WINDOW, "hop": WINDOW // 2}},
        "step": 0,
    }
    if selection is not None:
        state["selection"] = selection
    return save_checkpoint(state, path)


def corpus_files(n: int) -> list[Path]:
    """The first ``n`` dev clips of the shared corpus (skips the test when the corpus is absent)."""
    if not FLAC.is_dir():
        pytest.skip(f"shared corpus not found at {SHARED}")
    return sorted(FLAC.glob("RG_D_*.flac"))[:n]
