"""Shared pieces of the training tests: a tiny rawnet-lite config, a learnable toy cache and the
shared corpus's smoke set as a cache (the ``toy`` fixture in conftest.py is built from it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from rawguard.config import load_config
from rawguard.conventions import SAMPLE_RATE
from rawguard.data.cache import Cache
from rawguard.data.prepare import prepare_cache
from rawguard.data.protocols import read_protocol

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
SMOKE_PROTOCOL = SHARED / "corpus" / "protocols" / "smoke.txt"

# A model small enough that a training step takes milliseconds on one CPU thread.
TINY = [
    "model.name=rawnet-lite", "model.frontend_channels=8", "model.block_channels=[8,16]",
    "model.gru_hidden=16", "data.window=8000", "eval.window=8000", "eval.hop=8000",
    "data.batch_size=8", "train.threads=1", "augment.enabled=false",
    # These tests pin down CPU behaviour (bit-exact resume, gloo DDP); the CUDA paths have their own
    # tests in test_cuda.py, so a GPU in the machine must not change what these check.
    "train.device=cpu",
]


def make_toy_cache(directory: Path, n_per_class: int = 24, seed: int = 0) -> Cache:
    """A learnable two-class corpus: bona fide = harmonic tones, spoof = white noise, same level."""
    rng = np.random.default_rng(seed)
    audio = directory / "audio"
    audio.mkdir(parents=True)
    lines = []
    t = np.arange(int(0.6 * SAMPLE_RATE)) / SAMPLE_RATE
    for i in range(2 * n_per_class):
        bonafide = i % 2 == 0
        if bonafide:
            f0 = rng.uniform(100, 300)
            wave = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6)) / k for k in range(1, 6))
        else:
            wave = rng.standard_normal(t.size)
        wave = 0.2 * wave / np.sqrt(np.mean(wave**2))
        utt = f"TOY_{i:04d}"
        sf.write(audio / f"{utt}.flac", wave.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
        lines.append(f"SPK{i % 5} {utt} - {'-' if bonafide else 'A01'} {'bonafide' if bonafide else 'spoof'}")
    protocol = directory / "protocol.txt"
    protocol.write_text("\n".join(lines) + "\n")
    prepare_cache(read_protocol(protocol, audio), directory / "cache", workers=1, progress=False)
    return Cache.open(directory / "cache")


def smoke_cache(directory: Path) -> Cache:
    """The shared corpus' 40-clip smoke set (20 bona fide, 20 spoof) as a cache."""
    if not SMOKE_PROTOCOL.exists():
        pytest.skip(f"shared corpus not found at {SHARED}")
    prepare_cache(read_protocol(SMOKE_PROTOCOL, SMOKE_PROTOCOL.parents[1] / "flac"), directory, workers=1, progress=False)
    return Cache.open(directory)


def tiny(*extra: str, window: int = 4000):
    sizes = [f"data.window={window}", f"eval.window={window}", f"eval.hop={window}"]
    return load_config(overrides=TINY + sizes + list(extra))


def train_until_sigterm(config, train_cache, dev_cache, run: Path, ready) -> Any:
    """``train(...)`` into ``run`` while a thread sends this process SIGTERM once ``ready(records)``
    holds for the run's ``metrics.jsonl`` records; returns the TrainResult. Only signals once the
    loop runs (its handler installed), else SIGTERM would end pytest."""
    import os
    import signal
    import threading
    import time

    from rawguard.train import train
    from rawguard.training.log import read_metrics

    finished = threading.Event()

    def terminate_when_ready() -> None:
        deadline = time.monotonic() + 120
        while not finished.is_set() and time.monotonic() < deadline:
            log = run / "metrics.jsonl"
            if log.exists() and ready(read_metrics(log)):
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.005)

    sender = threading.Thread(target=terminate_when_ready, daemon=True)
    sender.start()
    try:
        return train(config, train_cache, dev_cache, run, progress=False)
    finally:
        finished.set()
        sender.join()
