"""``train.compile``: the training forward through torch.compile (Inductor, C++ on the CPU).

The compiled step must compute what the eager step computes, keep the module's checkpoint keys,
resume exactly, and fall back to eager training (with a warning, same result) when the compiler is
missing. Compiling the tiny model takes a few seconds per process; the tests share one toy cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch

from rawguard.checkpoint import load_checkpoint
from rawguard.detector import Detector
from rawguard.models import create_model
from rawguard.models.layers import WaveformShapeError
from rawguard.training.compile import CompiledForward
from rawguard.training.log import read_metrics
from rawguard.train import train

from helpers.training import TINY, tiny

needs_compiler = pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("c++") is None and shutil.which("clang++") is None,
    reason="torch.compile on the CPU needs a C++ compiler",
)


def _tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("rawnet-lite", frontend_channels=8, block_channels=[8, 16], gru_hidden=16)


def _curve(run) -> list[float]:
    return [r["loss"] for r in read_metrics(run / "metrics.jsonl") if r["type"] == "train"]


@needs_compiler
def test_compiled_forward_and_gradients_match_eager():
    torch.set_num_threads(1)
    model = _tiny_model().train()
    x = torch.randn(4, 4000, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 1, 0])

    def logits_and_grads(call):
        model.zero_grad()
        logits = call(x)
        torch.nn.functional.cross_entropy(logits, y).backward()
        return logits.detach(), [p.grad.clone() for p in model.parameters()]

    state = {k: v.clone() for k, v in model.state_dict().items()}  # BatchNorm statistics move per call
    eager_logits, eager_grads = logits_and_grads(model)
    model.load_state_dict(state)
    compiled = CompiledForward(model, enabled=True)
    compiled_logits, compiled_grads = logits_and_grads(compiled)
    assert compiled.active and not compiled.fell_back
    torch.testing.assert_close(compiled_logits, eager_logits, rtol=1e-4, atol=1e-5)
    for eager, ours in zip(eager_grads, compiled_grads):
        torch.testing.assert_close(ours, eager, rtol=1e-3, atol=1e-5)
    # The compiled callable shares the module's parameters and buffers: one state, plain keys.
    assert set(model.state_dict()) == set(state)


@needs_compiler
def test_compiled_training_learns_keeps_plain_keys_and_loads_for_scoring(toy, tmp_path):
    overrides = ("optim.lr=3e-3", "train.max_steps=30", "train.log_every=5", "eval.every=15", "optim.warmup_steps=5")
    eager = train(tiny(*overrides), toy, toy, tmp_path / "eager", progress=False)
    compiled = train(tiny(*overrides, "train.compile=true"), toy, toy, tmp_path / "compiled", progress=False)
    assert compiled.step == eager.step == 30
    losses = _curve(tmp_path / "compiled")
    assert losses[-1] < 0.6 * losses[0], losses
    # Same computation up to float rounding: the two loss curves stay close.
    assert _curve(tmp_path / "eager") == pytest.approx(losses, rel=0.05, abs=0.02)
    saved = load_checkpoint(tmp_path / "compiled" / "best.pt")
    reference = load_checkpoint(tmp_path / "eager" / "best.pt")
    assert list(saved["model"]) == list(reference["model"])  # no "_orig_mod." prefixes
    assert saved["config"]["train"]["compile"] is True
    detector = Detector.from_checkpoint(tmp_path / "compiled" / "best.pt")
    result = detector.score_array(toy.waveform(0).astype("float32") / 32768.0)
    assert result.score == result.score  # a finite score from the plain, uncompiled module


@needs_compiler
def test_compiled_run_resumes_exactly(toy, tmp_path):
    # A fixed decay length: the schedule must not depend on max_steps, which the resume raises.
    common = ("train.compile=true", "optim.decay_steps=24", "optim.warmup_steps=4", "train.log_every=1",
              "eval.every=0", "model.dropout=0.2", "augment.enabled=true")
    train(tiny(*common, "train.max_steps=24"), toy, toy, tmp_path / "straight", progress=False)
    train(tiny(*common, "train.max_steps=12"), toy, toy, tmp_path / "split", progress=False)
    train(tiny(*common, "train.max_steps=24"), toy, toy, tmp_path / "split", resume=True, progress=False)
    assert _curve(tmp_path / "split") == _curve(tmp_path / "straight")
    straight = load_checkpoint(tmp_path / "straight" / "last.pt")["model"]
    split = load_checkpoint(tmp_path / "split" / "last.pt")["model"]
    for key in straight:
        assert torch.equal(straight[key], split[key]), key


def test_missing_compiler_falls_back_to_eager_with_the_same_result(toy, tmp_path):
    # In a fresh process (the compiler choice and Inductor's caches are process-wide) whose C++
    # compiler does not exist (Inductor reads CXX) and whose compile cache is empty.
    overrides = [*TINY, "data.window=4000", "eval.window=4000", "eval.hop=4000", "train.max_steps=6",
                 "train.log_every=1", "eval.every=0"]

    def run(name: str, *extra: str, **env: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "rawguard.cli", "train", "--train", str(toy.directory), "--dev",
                   str(toy.directory), "--out", str(tmp_path / name), "--no-progress", "--set", *overrides, *extra]
        environment = {**os.environ, "OMP_NUM_THREADS": "1", **env}
        return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)

    fallback = run("fallback", "train.compile=true", CXX="rawguard-no-such-compiler++",
                   TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor-cache"))
    assert fallback.returncode == 0, fallback.stderr[-2000:]
    assert "train.compile: torch.compile failed" in fallback.stderr
    eager = run("eager")
    assert eager.returncode == 0, eager.stderr[-2000:]
    assert _curve(tmp_path / "fallback") == _curve(tmp_path / "eager")  # bit for bit: eager from step 1


def test_a_model_error_surfaces_as_the_models_own_error():
    model = _tiny_model().train()
    compiled = CompiledForward(model, enabled=True, warn=lambda message: None)
    # Dynamo reports the bad input as its own tracing error; the eager retry raises the model's error.
    with pytest.raises(WaveformShapeError, match=r"expected a \[B, T\] float waveform"):
        compiled(torch.randn(2, 3, 4, 5))


def test_disabled_is_a_plain_call():
    model = _tiny_model().eval()
    x = torch.randn(2, 4000)
    plain = CompiledForward(model, enabled=False)
    assert not plain.active
    assert torch.equal(plain(x), model(x))
