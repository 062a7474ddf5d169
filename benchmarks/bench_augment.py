"""Cost of augmentation: training clips/s with and without it, in the training step vs in data workers.

Trains rawnet-lite (batch 32, 64,600-sample windows from a cache of the shared corpus's smoke set)
in three modes, interleaved round by round so that the machine's varying load hits all of them alike:

- ``off``: no augmentation;
- ``step``: the augmenter runs inside the training step, on the training device, after the
  int16 -> float conversion (what ``rawguard.train`` does);
- ``worker``: the augmenter runs in ``--workers`` DataLoader worker processes (one torch thread
  each) that prepare augmented batches ahead while the main process trains.

It also times each augmentation alone on a whole batch (``p = 1``), so the expected cost of any
probability setting is ``sum(p * ms)``. Ratios are medians over rounds of one run; absolute numbers
depend on the machine and its load, which is printed.

Example (what BENCHMARKS.md quotes)::

    python benchmarks/bench_augment.py --threads 1 --rounds 5 --steps 6
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rawguard.augment import ORDER, AugmentConfig, build_augmenter

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"


def prepare_smoke_cache(cache_dir: Path) -> None:
    """Decode the smoke protocol (40 clips) into ``cache_dir`` once (in the main process)."""
    from rawguard.data.cache import prepare_cache
    from rawguard.data.protocols import read_protocol

    items = read_protocol(CORPUS / "protocols" / "smoke.txt", audio_dir=CORPUS / "flac")
    prepare_cache(items, cache_dir, progress=False)


def smoke_batches(cache_dir: Path, window: int, batch_size: int, seed: int):
    """Endless ``(x int16 [B, window], y int64 [B])`` batches from the smoke cache."""
    from rawguard.data.cache import Cache
    from rawguard.data.dataset import TrainBatches

    # The smoke set has 40 clips: balanced sampling gives an epoch of 40 -> one batch of 32.
    batches = TrainBatches(Cache.open(cache_dir), window, batch_size, seed, balanced=True)
    for epoch in itertools.count():
        yield from batches.epoch(epoch)


class AugmentedBatches(torch.utils.data.IterableDataset):
    """Float32 augmented batches made in a DataLoader worker (each worker its own seeded stream)."""

    def __init__(self, cache_dir: Path, window: int, batch_size: int, cfg: AugmentConfig, seed: int):
        self.cache_dir, self.window, self.batch_size, self.cfg, self.seed = cache_dir, window, batch_size, cfg, seed

    def __iter__(self):
        from rawguard.data.dataset import to_float

        torch.set_num_threads(1)  # one core per worker: the point is to use cores the trainer leaves idle
        info = torch.utils.data.get_worker_info()
        wid, n = (info.id, info.num_workers) if info else (0, 1)
        generator = torch.Generator().manual_seed(self.seed * 1000 + wid)
        augment = build_augmenter(self.cfg)
        source = smoke_batches(self.cache_dir, self.window, self.batch_size, self.seed + wid)
        for x, y in itertools.islice(source, wid, None, n):
            yield augment(to_float(x), generator), y


def time_each_augmentation(cfg: AugmentConfig, x: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median ms to apply each augmentation to the whole batch ``x`` ``[B, T]``."""
    generator = torch.Generator().manual_seed(0)
    out = {}
    for name, fn in ORDER:
        sub = getattr(cfg, name)
        fn(x, sub, generator)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(x, sub, generator)
            times.append(time.perf_counter() - t0)
        out[name] = 1000 * float(np.median(times))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the training process")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers in the 'worker' mode")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=6, help="timed training steps per mode per round")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--window", type=int, default=64_600)
    parser.add_argument("--model", default="rawnet-lite")
    parser.add_argument("--config", type=Path, default=None,
                        help="augmentation override YAML (default: AugmentConfig defaults)")
    parser.add_argument("--cache", type=Path, default=ROOT / "caches" / "bench_augment_smoke")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if not (CORPUS / "protocols" / "smoke.txt").is_file():
        print(f"shared corpus not found at {CORPUS}", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    from rawguard.data.dataset import to_float
    from rawguard.models import create_model

    cfg = AugmentConfig()
    if args.config is not None:
        import yaml

        cfg = AugmentConfig.from_dict((yaml.safe_load(args.config.read_text()) or {}).get("augment", {}))
    augment = build_augmenter(cfg)
    torch.manual_seed(0)
    model = create_model(args.model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    prepare_smoke_cache(args.cache)
    source = smoke_batches(args.cache, args.window, args.batch_size, 0)
    loader = torch.utils.data.DataLoader(
        AugmentedBatches(args.cache, args.window, args.batch_size, cfg, 0), batch_size=None,
        num_workers=args.workers, prefetch_factor=4, persistent_workers=True)
    worker_batches = iter(loader)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    def run(mode: str, n: int) -> float:
        """Clips/s over ``n`` training steps in ``mode`` (data loading and augmentation included)."""
        t0 = time.perf_counter()
        for _ in range(n):
            if mode == "worker":
                x, y = next(worker_batches)
            else:
                xb, y = next(source)
                x = to_float(xb)
                if mode == "step":
                    x = augment(x, generator)
            step(x, y)
        return n * args.batch_size / (time.perf_counter() - t0)

    load_before = os.getloadavg()
    modes = ["off", "step", "worker"]
    for mode in modes:
        run(mode, 2)  # warm-up: allocator, worker start-up, first batches
    rates: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(args.rounds):
        for mode in modes[r % 3:] + modes[: r % 3]:  # rotate the order each round
            rates[mode].append(run(mode, args.steps))
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{m} {rates[m][-1]:.1f}" for m in modes) + " clips/s",
              flush=True)
    x, _ = next(source)
    per_aug = time_each_augmentation(cfg, to_float(x), repeats=3)
    load_after = os.getloadavg()
    del worker_batches, loader

    median = {m: float(np.median(rates[m])) for m in modes}
    ratios = {m: float(np.median(np.array(rates[m]) / np.array(rates["off"]))) for m in ("step", "worker")}
    step_ms = 1000 * args.batch_size / median["off"]
    expected = sum(getattr(cfg, name).p * ms for name, ms in per_aug.items() if name in cfg.active())
    result = {
        "model": args.model, "batch_size": args.batch_size, "window": args.window, "threads": args.threads,
        "workers": args.workers, "rounds": args.rounds, "steps_per_round": args.steps,
        "load_avg_before": load_before, "load_avg_after": load_after, "cpu_count": os.cpu_count(),
        "torch": torch.__version__, "active": cfg.active(),
        "probabilities": {n: getattr(cfg, n).p for n in cfg.names()},
        "clips_per_s": rates, "median_clips_per_s": median, "ratio_to_off": ratios,
        "per_augmentation_ms_per_batch": per_aug, "expected_augment_ms_per_batch": expected,
        "train_step_ms_off": step_ms,
    }
    lines = [
        f"rawnet-lite training, batch {args.batch_size} x {args.window} samples, {args.threads} training "
        f"thread(s), {args.workers} worker(s); {args.rounds} interleaved rounds x {args.steps} steps; "
        f"load average {load_before[0]:.1f} -> {load_after[0]:.1f} on {os.cpu_count()} CPUs.",
        "",
        "| mode | median clips/s | ratio to off (median of per-round ratios) |",
        "|---|---:|---:|",
        f"| off | {median['off']:.1f} | 1.00 |",
        f"| in the training step | {median['step']:.1f} | {ratios['step']:.2f} |",
        f"| in {args.workers} data worker(s) | {median['worker']:.1f} | {ratios['worker']:.2f} |",
        "",
        f"Each augmentation on a whole batch (p = 1), ms; train step without augmentation: {step_ms:.0f} ms.",
        "",
        "| augmentation | ms per batch | default p | expected ms per batch |",
        "|---|---:|---:|---:|",
    ]
    for name, ms in per_aug.items():
        p = getattr(cfg, name).p if name in cfg.active() else 0.0
        lines.append(f"| {name} | {ms:.0f} | {p:g} | {p * ms:.1f} |")
    lines.append(f"| **all (expected)** | | | **{expected:.0f}** ({100 * expected / step_ms:.0f}% of a step) |")
    text = "\n".join(lines)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "augment_cost.md").write_text(text + "\n")
    (args.out / "augment_cost.json").write_text(json.dumps(result, indent=2))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
