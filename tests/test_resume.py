"""Exact resume: a run SIGKILLed at a random step and resumed equals the uninterrupted run.

The run is a subprocess (``python -m rawguard.cli train``), killed from outside while it trains, so
nothing in the process gets a chance to clean up; the resumed run must reach the same final weights,
optimizer state and ``metrics.jsonl`` loss curve, bit for bit (CPU, one thread). Augmentation is on
so the loop's own generator is exercised too, and dev evaluation runs mid-way to show it does not
perturb the training random stream.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from rawguard.checkpoint import load_checkpoint
from rawguard.training.log import read_metrics
from helpers.training import TINY, smoke_cache

STEPS = 36
OVERRIDES = TINY + [
    "augment.enabled=true", "model.dropout=0.2", f"train.max_steps={STEPS}", "train.log_every=1",
    "train.checkpoint_every=3", "eval.every=8", "optim.warmup_steps=4",
]


def _command(cache: Path, run: Path) -> list[str]:
    return [sys.executable, "-m", "rawguard.cli", "train", "--train", str(cache), "--dev", str(cache),
            "--out", str(run), "--no-progress", "--set", *OVERRIDES]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def _curve(run: Path, kind: str, keys: tuple[str, ...]) -> list[tuple]:
    return [tuple(r[k] for k in ("step", *keys)) for r in read_metrics(run / "metrics.jsonl") if r["type"] == kind]


def _kill_at_step(cache: Path, run: Path, step: int) -> int:
    """Start a run, SIGKILL it once metrics.jsonl shows ``step``; returns the step last logged."""
    process = subprocess.Popen(_command(cache, run), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    logged = 0
    while process.poll() is None and time.monotonic() < deadline:
        records = read_metrics(run / "metrics.jsonl")
        logged = max([r["step"] for r in records], default=0)
        if logged >= step:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    process.wait()
    assert process.returncode == -signal.SIGKILL, f"run ended before the kill: {process.stderr.read().decode()[-2000:]}"
    return logged


def test_sigkill_at_random_step_then_resume_is_bit_exact(tmp_path):
    cache = tmp_path / "smoke"
    smoke_cache(cache)
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"

    done = subprocess.run(_command(cache, reference), env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]

    kill_step = random.Random().randint(4, STEPS - 12)  # margin: a fast machine runs on while we poll
    logged = _kill_at_step(cache, resumed, kill_step)
    assert logged < STEPS
    partial = load_checkpoint(resumed / "last.pt")
    assert 0 < partial["step"] <= logged  # the kill came after at least one checkpoint

    again = subprocess.run(_command(cache, resumed), env=_env(), capture_output=True, text=True)  # same command
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming {resumed} from step {partial['step']}" in again.stderr

    a, b = load_checkpoint(reference / "last.pt"), load_checkpoint(resumed / "last.pt")
    assert a["step"] == b["step"] == STEPS
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), f"weights differ after resume: {name} (killed at {logged})"
    for key, value in a["optimizer"]["state"].items():
        assert torch.equal(value["exp_avg"], b["optimizer"]["state"][key]["exp_avg"])
    assert _curve(reference, "train", ("loss", "lr")) == _curve(resumed, "train", ("loss", "lr"))
    assert _curve(reference, "dev", ("dev_eer", "threshold")) == _curve(resumed, "dev", ("dev_eer", "threshold"))
    assert len(_curve(resumed, "train", ("loss",))) == STEPS  # no duplicated or missing lines
    best_a, best_b = load_checkpoint(reference / "best.pt"), load_checkpoint(resumed / "best.pt")
    assert best_a["selection"] == best_b["selection"]
