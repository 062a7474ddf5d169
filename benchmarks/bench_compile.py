"""What ``train.compile`` buys: `rawguard train` eager against compiled, end to end, same recipe.

Usage::

    python benchmarks/bench_compile.py                       # the shared-corpus recipe's settings, CPU
    python benchmarks/bench_compile.py --threads 1 --rounds 3 --steps 300
    python benchmarks/bench_compile.py --device cuda --batch 128 --train-split dev   # a GPU

Both sides run :func:`rawguard.train.train` with the recipe's config (``--config``, default
``shared_corpus``: rawnet-lite, 1 s crops, batch 32, augmentation as configured) on the shared
corpus train cache, for ``--warmup`` + ``--steps`` steps with dev evaluation and checkpoints off.
Rates are the ``clips_per_s`` of the loop's own log lines after the warm-up (compilation happens in
the first step, so it is excluded from the rate and reported on its own as the wall time of the
whole call). Eager and compiled runs alternate for ``--rounds`` rounds, so a change in machine load
hits both; the ratio is the median of the per-round ratios. The first compiled run of a machine
compiles from scratch; later ones reuse Inductor's on-disk cache (``TORCHINDUCTOR_CACHE_DIR``).

Writes ``benchmarks/results/speed/compile_cpu_2threads_bf16.json`` (or ``--out``) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench_train import caches  # the shared corpus decoded once (same caches as bench_train.py)
from rawguard.config import load_config
from rawguard.data.cache import Cache
from rawguard.train import train
from rawguard.training.log import read_metrics

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "speed" / "compile_cpu_2threads_bf16.json"


def timed_run(config_name: str, compiled: bool, args: argparse.Namespace, train_cache, dev_cache, run: Path) -> dict:
    """One training call; returns its clips/s after the warm-up and its wall time (compilation included)."""
    config = load_config(config_name, overrides=[
        f"train.device={args.device}", f"train.threads={args.threads}", f"train.compile={str(compiled).lower()}",
        *([f"train.precision={args.precision}"] if args.precision else []), f"data.batch_size={args.batch}",
        f"train.max_steps={args.warmup + args.steps}", "train.max_minutes=0", "train.log_every=1",
        "train.checkpoint_every=0", "train.checkpoint_minutes=0", "eval.every=0", *args.set,
    ])
    shutil.rmtree(run, ignore_errors=True)
    started = time.perf_counter()
    train(config, train_cache, dev_cache, run, resume=False, progress=False)
    wall = time.perf_counter() - started
    lines = [r for r in read_metrics(run / "metrics.jsonl") if r["type"] == "train"][args.warmup:]
    seconds = sum(args.batch / r["clips_per_s"] for r in lines)
    return {"clips_per_s": args.batch * len(lines) / seconds, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="shared_corpus", help="run config to time (default shared_corpus)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", help="train.precision of both sides (default: the config's)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--warmup", type=int, default=20, help="steps dropped from the rate (compilation is in step 1)")
    parser.add_argument("--steps", type=int, default=200, help="timed steps per run")
    parser.add_argument("--rounds", type=int, default=3, help="eager / compiled pairs")
    parser.add_argument("--train-split", default="train", choices=["train", "dev"])
    parser.add_argument("--train-cache", type=Path,
                        help="an existing train cache (default: the corpus split, without the recipe's copy share)")
    parser.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                        help="more overrides for both sides (repeatable)")
    parser.add_argument("--work", type=Path, help="where the caches and runs go (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="rawguard-bench-compile-"))
    train_cache, dev_cache = caches(work, args.train_split)
    if args.train_cache:  # e.g. the recipe's own, with its copy-synthesis spoofs
        train_cache = Cache.open(args.train_cache)
    else:  # the corpus alone has no copies for the recipe's copy share to draw
        args.set = ["data.sampling.copy_share=null", *args.set]
    rounds = []
    for index in range(args.rounds):
        pair = {}
        for name, compiled in (("eager", False), ("compiled", True)):
            pair[name] = timed_run(args.config, compiled, args, train_cache, dev_cache, work / f"run-{name}")
            print(f"round {index + 1} {name:8s} {pair[name]['clips_per_s']:8.1f} clips/s  wall {pair[name]['wall_s']:.1f} s",
                  flush=True)
        pair["ratio"] = pair["compiled"]["clips_per_s"] / pair["eager"]["clips_per_s"]
        rounds.append(pair)

    def median(side: str, key: str) -> float:
        return statistics.median(r[side][key] for r in rounds)

    summary = {
        "eager_clips_per_s": median("eager", "clips_per_s"),
        "compiled_clips_per_s": median("compiled", "clips_per_s"),
        "ratio_median": statistics.median(r["ratio"] for r in rounds),
        "ratio_range": [min(r["ratio"] for r in rounds), max(r["ratio"] for r in rounds)],
        "first_compiled_wall_s": rounds[0]["compiled"]["wall_s"],
        "first_eager_wall_s": rounds[0]["eager"]["wall_s"],
    }
    machine = {
        "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
        "cpu_count": os.cpu_count(), "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "device": torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    recorded = {k: str(v) for k, v in vars(args).items() if k not in ("work", "out")}  # no machine paths
    if args.train_cache:
        recorded["train_cache"] = args.train_cache.name
    args.out.write_text(json.dumps({"args": recorded, "machine": machine,
                                    "rounds": rounds, "summary": summary}, indent=2) + "\n")
    print(f"\n| side | clips/s (median of {args.rounds}) | wall of round 1 (s) |\n|---|---:|---:|")
    print(f"| eager | {summary['eager_clips_per_s']:.1f} | {summary['first_eager_wall_s']:.1f} |")
    print(f"| compiled | {summary['compiled_clips_per_s']:.1f} | {summary['first_compiled_wall_s']:.1f} |")
    low, high = summary["ratio_range"]
    print(f"\ncompiled / eager: {summary['ratio_median']:.2f} (per-round {low:.2f}-{high:.2f}); results in {args.out}")


if __name__ == "__main__":
    main()
