"""CUDA paths: mixed-precision training, pinned-memory batches, GPU scoring, exact resume, DDP.

Every test here needs a CUDA GPU and is skipped without one (CI has none). They run on a GPU
machine through ``benchmarks/gpu_check.sh``; BENCHMARKS.md ("GPU") records the last such run.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from rawguard.augment import AugmentConfig, build_augmenter
from rawguard.checkpoint import load_checkpoint
from rawguard.data.dataset import TrainBatches
from rawguard.detector import Detector
from rawguard.metrics import compute_eer
from rawguard.models import create_model
from rawguard.scoring import score_cache
from rawguard.train import train
from rawguard.training.log import read_metrics
from helpers.training import tiny

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_training_on_cuda_learns_and_reloads_on_cpu(toy, tmp_path, precision):
    config = tiny("train.device=cuda", f"train.precision={precision}", "optim.lr=3e-3", "train.max_steps=40",
                  "train.log_every=5", "eval.every=20", "optim.warmup_steps=5")
    result = train(config, toy, toy, tmp_path / "run", progress=False)
    losses = [r["loss"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["type"] == "train"]
    assert len(losses) == 8 and all(np.isfinite(losses))
    assert np.mean(losses[-2:]) < 0.6 * np.mean(losses[:2]), losses
    assert result.best_dev_eer is not None and result.best_dev_eer <= 0.1  # tones vs noise is easy

    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert last["precision"] == precision
    if precision == "fp16":  # the gradient scaler's state travels with the checkpoint
        assert last["scaler"] and last["scaler"]["scale"] > 0
    # best.pt was written from GPU tensors: it loads on a CPU-only machine and scores the same there.
    best = tmp_path / "run" / "best.pt"
    clips = [toy.waveform(i) for i in range(len(toy))]
    on_cpu = np.array([r.score for r in Detector.from_checkpoint(best, device="cpu").score_arrays(clips)])
    on_gpu = np.array([r.score for r in Detector.from_checkpoint(best, device="cuda").score_arrays(clips)])
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-3, atol=1e-3)
    eer, _ = compute_eer(on_cpu[toy.labels == 1], on_cpu[toy.labels == 0])
    assert eer <= 0.1


def test_pinned_batches_copy_to_the_gpu_asynchronously(toy):
    batches = TrainBatches(toy, window=4000, batch_size=8, seed=0, pin_memory=True)
    x, y = next(batches.epoch(0))
    assert x.is_pinned() and x.dtype == torch.int16 and x.shape == (8, 4000)
    on_gpu = x.to("cuda", non_blocking=True)
    torch.cuda.synchronize()
    assert torch.equal(on_gpu.cpu(), x)


def test_every_augmentation_runs_on_the_gpu_reproducibly(toy):
    config = AugmentConfig(enabled=True)
    for name in config.names():
        setattr(getattr(config, name), "p", 1.0)
    augmenter = build_augmenter(config)
    assert len(augmenter.active) == len(config.names())
    x = torch.stack([torch.from_numpy(toy.waveform(i)[:4000].astype(np.float32) / 32768) for i in range(8)]).cuda()

    def run(seed: int) -> torch.Tensor:
        generator = torch.Generator(device="cuda")
        generator.manual_seed(seed)
        return augmenter(x, generator)

    out = run(0)
    assert out.device.type == "cuda" and out.shape == x.shape and torch.isfinite(out).all()
    assert not torch.equal(out, x)
    assert torch.equal(run(0), out)  # the step's generator alone decides the augmentation


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_gpu_scoring_matches_cpu_scoring(toy, precision):
    torch.manual_seed(0)
    model = create_model("rawnet-lite", frontend_channels=8, block_channels=[8, 16], gru_hidden=16).eval()
    reference = score_cache(model, toy, 4000, 2000, 16, "cpu", "fp32")
    gpu = score_cache(model.cuda(), toy, 4000, 2000, 16, "cuda", precision)
    # An untrained model's scores sit near 0: compare on an absolute scale. cuDNN runs fp32
    # convolutions in TF32 by default on Ampere and newer GPUs, hence 2e-3 for fp32, not 1e-6.
    tolerance = {"fp32": 2e-3, "bf16": 5e-2, "fp16": 1e-2}[precision]
    np.testing.assert_allclose(gpu, reference, atol=tolerance)
    assert np.corrcoef(gpu, reference)[0, 1] > (0.999 if precision == "fp32" else 0.98)


def test_deterministic_cuda_training_resumes_bit_exactly(toy, tmp_path):
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS' condition for determinism
    common = ["train.device=cuda", "train.deterministic=true", "optim.schedule=constant", "eval.every=0",
              "train.log_every=1", "train.checkpoint_every=5"]
    train(tiny(*common, "train.max_steps=12"), toy, toy, tmp_path / "straight", progress=False)
    train(tiny(*common, "train.max_steps=5"), toy, toy, tmp_path / "resumed", progress=False)
    train(tiny(*common, "train.max_steps=12"), toy, toy, tmp_path / "resumed", progress=False)  # extends it
    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert a["step"] == b["step"] == 12
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), f"{name} differs after resuming on the GPU"


def test_ddp_on_one_gpu_with_two_gloo_ranks(toy, tmp_path):
    """Two ranks share the GPU (NCCL refuses two ranks on one device, so gloo carries the
    all-reduce): DDP wrapping with ``device_ids``, SyncBatchNorm, rank-sliced batches and rank-0
    checkpoints on CUDA tensors. With several GPUs, the same command runs NCCL one rank per GPU."""
    run = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "rawguard.cli", "train", "--train", str(toy.directory), "--dev", str(toy.directory), "--out", str(run),
               "--no-progress", "--set", "model.name=rawnet-lite", "model.frontend_channels=8",
               "model.block_channels=[8,16]", "model.gru_hidden=16", "data.window=4000", "eval.window=4000",
               "eval.hop=4000", "data.batch_size=8", "augment.enabled=false", "train.device=cuda",
               "train.dist_backend=gloo", "train.max_steps=6", "eval.every=3", "train.log_every=1"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    last = load_checkpoint(run / "last.pt")
    assert last["world_size"] == 2 and last["step"] == 6
    fingerprints = last["rank_fingerprints"]
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]  # the replicas agree exactly
    assert (run / "best.pt").is_file()


def test_vocoder_trains_on_the_gpu_and_its_file_loads_on_the_cpu(toy, tmp_path):
    from rawguard.copysynth.neural import NeuralVocoder, VocoderConfig, VocoderTrainConfig, train_vocoder

    config = VocoderTrainConfig(minutes=2, max_steps=20, batch_size=4, segment=4096, device="cuda",
                                model=VocoderConfig(channels=16, resblock_kernels=(3,), resblock_dilations=(1,)))
    summary = train_vocoder(toy.directory, tmp_path / "vocoder", config, progress=False)
    assert summary.steps == 20 and np.isfinite(summary.loss)
    saved = load_checkpoint(summary.path)
    assert all(t.device.type == "cpu" for t in saved["model"].values())
    vocoder = NeuralVocoder.load(summary.path)
    wave = toy.waveform(0).astype(np.float32) / 32768
    copy = vocoder(wave)
    assert copy.shape == wave.shape and np.isfinite(copy).all()
    config.max_steps = 30  # resuming on the GPU from the CPU-stored weights
    assert train_vocoder(toy.directory, tmp_path / "vocoder", config, progress=False).steps == 30


def test_compiled_training_on_cuda_matches_eager(toy, tmp_path, capfd):
    overrides = ("train.device=cuda", "optim.lr=3e-3", "train.max_steps=40", "train.log_every=5",
                 "eval.every=20", "optim.warmup_steps=5")
    eager = train(tiny(*overrides), toy, toy, tmp_path / "eager", progress=False)
    compiled = train(tiny(*overrides, "train.compile=true"), toy, toy, tmp_path / "compiled", progress=False)
    assert "train.compile: torch.compile failed" not in capfd.readouterr().err  # Triton compiled it
    curves = [[r["loss"] for r in read_metrics(tmp_path / run / "metrics.jsonl") if r["type"] == "train"]
              for run in ("eager", "compiled")]
    assert curves[1][-1] < 0.6 * curves[1][0], curves[1]
    assert curves[1] == pytest.approx(curves[0], rel=0.05, abs=0.02)
    assert compiled.best_dev_eer is not None and compiled.best_dev_eer <= 0.1 and eager.step == compiled.step


def test_ema_copy_keeps_the_gru_weights_in_one_cudnn_chunk():
    import warnings

    from rawguard.training.ema import ModelEMA, ema_decay_at

    torch.manual_seed(0)
    model = create_model("rawnet-lite").cuda().eval()
    ema = ModelEMA(model, 0.99)
    before = {name: t.clone() for name, t in ema.module.state_dict().items()}
    with torch.no_grad():  # the trained weights move away from the average's starting copy
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    x = torch.randn(2, 16000, device="cuda")
    with warnings.catch_warnings():
        # "RNN module weights are not part of single contiguous chunk of memory": cuDNN would then
        # re-pack the average's GRU weights on every dev evaluation.
        warnings.simplefilter("error")
        ema.module(x)
        decay = ema.update(model)
        out = ema.module(x)
    assert decay == ema_decay_at(0.99, 0)
    # The in-place update reached the weights cuDNN's GRU reads: the average's output is that of a
    # fresh model holding decay * start + (1 - decay) * current.
    current = model.state_dict()
    expected = {name: decay * t + (1 - decay) * current[name] if t.is_floating_point() else current[name]
                for name, t in before.items()}
    for name, value in ema.module.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=1e-6, atol=1e-6)
    reference = create_model("rawnet-lite").cuda().eval()
    reference.load_state_dict(expected)
    with torch.no_grad():
        torch.testing.assert_close(out, reference(x), rtol=1e-4, atol=1e-5)
        assert not torch.allclose(out, model(x), rtol=1e-4, atol=1e-5)  # not simply the trained weights
