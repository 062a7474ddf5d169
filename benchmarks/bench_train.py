"""End-to-end training throughput (data + step) against model-only step throughput.

Usage::

    python benchmarks/bench_train.py                         # rawnet-lite and rawnet2, fp32 and bf16
    python benchmarks/bench_train.py --models rawnet-lite --threads 2 --steps 20
    python benchmarks/bench_train.py --device cuda --batch 128 --steps 100 --train-split dev   # a GPU

For each model and precision, in one process and one after the other:

- **model-only**: forward + cross-entropy + backward + AdamW step on one fixed random batch of
  ``--batch`` x 64,600 samples already in memory (the definition of ``benchmarks/bench_models.py``);
- **end to end**: :func:`rawguard.train.train` on the shared corpus train cache: int16 windows from
  the memory map (random crops, tiling of short clips, the prefetch thread), int16 -> float, the
  learning-rate schedule, the same step, loss logging, ``metrics.jsonl``. Rates come from the
  ``clips_per_s`` of its own log lines after the warm-up steps (dev evaluation and checkpoints are
  excluded by the loop itself and are switched off here anyway).

Model-only and end-to-end alternate for ``--rounds`` rounds and the medians are compared, so a change
in machine load during the run hits both sides (the spread across rounds is printed too).
Augmentation is off (its cost is in the augmentation section of BENCHMARKS.md) and gradient
clipping is off (bench_models.py does not clip).
Writes ``benchmarks/results/speed/train_end_to_end_cpu.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from rawguard.config import load_config
from rawguard.conventions import DEFAULT_WINDOW
from rawguard.data.cache import Cache
from rawguard.data.prepare import prepare_cache
from rawguard.data.protocols import read_protocol
from rawguard.models import create_model
from rawguard.train import train
from rawguard.training.log import read_metrics

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
RESULTS = ROOT / "benchmarks" / "results" / "speed" / "train_end_to_end_cpu.json"


def model_only(name: str, precision: str, batch: int, warmup: int, steps: int, device: torch.device) -> float:
    """Clips/s of the bare training step on one random batch already on ``device``."""
    torch.manual_seed(0)
    model = create_model(name).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    x = (torch.randn(batch, DEFAULT_WINDOW) * 0.1).to(device)
    y = torch.randint(0, 2, (batch,)).to(device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    cast = torch.autocast(device.type, dtype=dtype) if dtype else nullcontext()
    elapsed = 0.0
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with cast:
            logits = model(x)
        scaler.scale(F.cross_entropy(logits.float(), y)).backward()
        scaler.step(optimizer)
        scaler.update()
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # kernels run asynchronously: wait for the step's work
        if i >= warmup:
            elapsed += time.perf_counter() - start
    return batch * steps / elapsed


def end_to_end(name: str, precision: str, batch: int, warmup: int, steps: int, train_cache: Cache,
               dev_cache: Cache, threads: int, prefetch: int, work: Path, device: torch.device) -> float:
    """Clips/s of :func:`rawguard.train.train` after ``warmup`` steps (from its metrics.jsonl)."""
    config = load_config(overrides=[
        f"train.device={device}",
        f"model.name={name}", f"train.precision={precision}", f"data.batch_size={batch}",
        f"data.window={DEFAULT_WINDOW}", f"data.prefetch={prefetch}", f"train.threads={threads}",
        f"train.max_steps={warmup + steps}", "train.log_every=1", "train.checkpoint_every=0",
        "train.checkpoint_minutes=0", "eval.every=0", "eval.window=16000", "eval.hop=16000",
        "optim.schedule=constant", "optim.grad_clip=0", "augment.enabled=false",
    ])
    run = work / f"{name}-{precision}-{prefetch}"
    shutil.rmtree(run, ignore_errors=True)  # a previous benchmark's run: measure afresh
    train(config, train_cache, dev_cache, run, resume=False, progress=False)
    lines = [r for r in read_metrics(run / "metrics.jsonl") if r["type"] == "train"][warmup:]
    seconds = sum(batch / r["clips_per_s"] for r in lines)
    return batch * len(lines) / seconds


def caches(work: Path, train_split: str = "train") -> tuple[Cache, Cache]:
    """A split of the shared corpus (decoded once) to train on and the 40-clip smoke set for the final dev pass."""
    out = []
    for split in (train_split, "smoke"):
        protocol = CORPUS / "protocols" / f"{split}.txt"
        if not protocol.exists():
            sys.exit(f"shared corpus not found: {protocol}")
        prepare_cache(read_protocol(protocol, CORPUS / "flac"), work / split, workers=2, progress=False)
        out.append(Cache.open(work / split))
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["rawnet-lite", "rawnet2"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine has 2 shared cores)")
    parser.add_argument("--prefetch", type=int, default=2, help="data.prefetch of the end-to-end runs")
    parser.add_argument("--steps", type=int, default=0, help="timed steps per measurement (0: 12 lite, 3 rawnet2)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating model-only / end-to-end rounds")
    parser.add_argument("--work", type=Path, help="where the caches and runs go (default: a temporary folder)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    parser.add_argument("--train-split", default="train", choices=["train", "dev"],
                        help="corpus split to train on (dev: a quarter of the decoding, same clips per second)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS.name})")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as rawguard train leaves it: fixed shapes
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        train_cache, dev_cache = caches(work, args.train_split)
        rows = []
        plan = [(m, p) for m in args.models for p in args.precisions]
        for name, precision in tqdm(plan, desc="bench_train", unit="config"):
            steps = args.steps or (12 if name == "rawnet-lite" else 3)
            warmup = (2 if name == "rawnet-lite" else 1) * (5 if device.type == "cuda" else 1)
            only, e2e = [], []
            for _ in range(args.rounds):
                only.append(model_only(name, precision, args.batch, warmup, steps, device))
                e2e.append(end_to_end(name, precision, args.batch, warmup, steps, train_cache, dev_cache,
                                      args.threads, args.prefetch, work, device))
            rows.append({"model": name, "precision": precision, "model_only": only, "end_to_end": e2e,
                         "ratio": statistics.median(e2e) / statistics.median(only), "steps": steps})
    load_after = os.getloadavg()[0]
    meta = {"rounds": args.rounds, "machine": platform.machine(), "cpus": os.cpu_count(), "torch": torch.__version__,
            "threads": args.threads, "batch": args.batch, "window": DEFAULT_WINDOW, "prefetch": args.prefetch,
            "load_before": load_before, "load_after": load_after, "device": str(device),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "train_split": args.train_split}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"device={meta['gpu'] or 'cpu'} threads={args.threads} batch={args.batch} window={DEFAULT_WINDOW} prefetch={args.prefetch} "
          f"load {load_before:.1f} -> {load_after:.1f}")
    print("| model | precision | model-only clips/s, median (range) | end-to-end clips/s, median (range) "
          "| end-to-end / model-only |")
    print("|---|---|---:|---:|---:|")
    for r in rows:
        cells = [f"{statistics.median(v):.1f} ({min(v):.1f}-{max(v):.1f})" for v in (r["model_only"], r["end_to_end"])]
        print(f"| {r['model']} | {r['precision']} | {cells[0]} | {cells[1]} | {r['ratio']:.2f} |")


if __name__ == "__main__":
    main()
