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

from rawguard.augment import ORDER, AugmentConfig, batch_generator, build_augmenter

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"


def prepare_smoke_cache(cache_dir: Path) -> None:
    """Decode the smoke protocol (40 clips) into ``cache_dir`` once (in the main process)."""
    from rawguard.data.prepare import prepare_cache
    from rawguard.data.protocols import read_protocol

    items = read_protocol(CORPUS / "protocols" / "smoke.txt", audio_dir=CORPUS / "flac")
    prepare_cache(items, cache_dir, progress=False)


def smoke_batches(cache_dir: Path, window: int, batch_size: int, seed: int):
    """Endless ``(x int16 [B, window], y int64 [B])`` batches from the smoke cache."""
    from rawguard.data.cache import Cache
    from rawguard.data.dataset import TrainBatches
    from rawguard.data.sampling import Sampling

    # The smoke set has 40 clips: balanced sampling gives an epoch of 40 -> one batch of 32.
    batches = TrainBatches(Cache.open(cache_dir), window, batch_size, seed, sampling=Sampling(balanced=True))
    for epoch in itertools.count():
        yield from batches.epoch(epoch)


class AugmentedBatches(torch.utils.data.IterableDataset):
    """Float32 augmented batches made in DataLoader workers, each batch augmented with the
    generator of its index (:func:`rawguard.augment.batch_generator`), as a trainer would do."""

    def __init__(self, cache_dir: Path, window: int, batch_size: int, cfg: AugmentConfig, seed: int):
        self.cache_dir, self.window, self.batch_size, self.cfg, self.seed = cache_dir, window, batch_size, cfg, seed

    def __iter__(self):
        from rawguard.data.dataset import to_float

        torch.set_num_threads(1)  # one core per worker: the point is to use cores the trainer leaves idle
        info = torch.utils.data.get_worker_info()
        wid, n = (info.id, info.num_workers) if info else (0, 1)
        augment = build_augmenter(self.cfg)
        source = smoke_batches(self.cache_dir, self.window, self.batch_size, self.seed)
        for index, (x, y) in enumerate(source):
            if index % n == wid:  # worker k makes batches k, k + n, ...; each batch its own generator
                yield augment(to_float(x), batch_generator(self.seed, 0, index)), y


def time_call(fn, *args) -> float:
    """Seconds one call of ``fn(*args)`` takes."""
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the training process")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers in the 'worker' mode")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=6, help="off/augmented step pairs per round")
    parser.add_argument("--worker-steps", type=int, default=12, help="steps per block in the worker comparison")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--window", type=int, default=64_600)
    parser.add_argument("--model", default="rawnet-lite")
    parser.add_argument("--config", type=Path, default=None,
                        help="augmentation override YAML (default: AugmentConfig defaults)")
    parser.add_argument("--cache", type=Path, default=ROOT / "caches" / "bench_augment_smoke")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "speed")
    args = parser.parse_args(argv)
    if not (CORPUS / "protocols" / "smoke.txt").is_file():
        print(f"shared corpus not found at {CORPUS}", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    from rawguard.data.dataset import to_float
    from rawguard.models import create_model

    cfg = AugmentConfig(enabled=True)  # the light set (augmentation is off by default)
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
        num_workers=args.workers, prefetch_factor=2, persistent_workers=True)
    worker_batches = iter(loader)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    def off_step() -> tuple[float, float]:
        """One training step without augmentation: (step seconds, 0). Times the same batch fetch
        and int16 -> float conversion as :func:`in_step`."""
        t0 = time.perf_counter()
        xb, y = next(source)
        step(to_float(xb), y)
        return time.perf_counter() - t0, 0.0

    def in_step() -> tuple[float, float]:
        """One training step with the augmenter inside it: (step seconds, of which augmentation)."""
        t0 = time.perf_counter()
        xb, y = next(source)
        x = to_float(xb)
        t1 = time.perf_counter()
        x = augment(x, generator)
        t_aug = time.perf_counter() - t1
        step(x, y)
        return time.perf_counter() - t0, t_aug

    def worker_block(n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            x, y = next(worker_batches)
            step(x, y)
        return time.perf_counter() - t0

    def off_block(n: int) -> float:
        return sum(off_step()[0] for _ in range(n))

    load_before = os.getloadavg()
    off_step(), in_step(), worker_block(2)  # warm-up: allocator, worker start-up, first batches
    # (1) In the training step: off and augmented steps alternate one by one, so load changes hit
    # both alike; the ratio of their summed times is taken per round.
    # (2) Per augmentation: each one once per round on a whole batch, relative to that round's step.
    paired = {"off": [], "step": [], "augment": []}
    per_aug: dict[str, list[float]] = {name: [] for name, _ in ORDER}
    x_probe = to_float(next(source)[0])
    for r in range(args.rounds):
        sums = {"off": 0.0, "step": 0.0, "augment": 0.0}
        for i in range(args.steps):
            order = (off_step, in_step) if (r + i) % 2 == 0 else (in_step, off_step)
            for fn in order:
                seconds, aug_seconds = fn()
                sums["off" if fn is off_step else "step"] += seconds
                sums["augment"] += aug_seconds
        for key in paired:
            paired[key].append(sums[key] / args.steps)
        for name, fn in ORDER:
            per_aug[name].append(time_call(fn, x_probe, getattr(cfg, name), generator) / paired["off"][-1])
        print(f"round {r + 1}/{args.rounds}: off {1000 * paired['off'][-1]:.0f} ms/step, in-step "
              f"{1000 * paired['step'][-1]:.0f} ms/step (augmenter {1000 * paired['augment'][-1]:.0f} ms)", flush=True)
    # (3) In data workers: blocks long enough that the workers' prefetch (2 batches) is a small edge.
    worker_ratio = []
    for r in range(args.rounds):
        a, b = off_block(args.worker_steps), worker_block(args.worker_steps)
        worker_ratio.append(a / b)
        print(f"worker round {r + 1}/{args.rounds}: off {1000 * a / args.worker_steps:.0f} ms/step, "
              f"worker {1000 * b / args.worker_steps:.0f} ms/step", flush=True)
    load_after = os.getloadavg()
    del worker_batches, loader

    off_ms = 1000 * float(np.median(paired["off"]))
    ratios = {
        "step": float(np.median(np.array(paired["off"]) / np.array(paired["step"]))),
        "worker": float(np.median(worker_ratio)),
    }
    aug_share = float(np.median(np.array(paired["augment"]) / np.array(paired["off"])))
    share = {name: float(np.median(v)) for name, v in per_aug.items()}
    result = {
        "model": args.model, "batch_size": args.batch_size, "window": args.window, "threads": args.threads,
        "workers": args.workers, "rounds": args.rounds, "steps_per_round": args.steps,
        "worker_steps_per_round": args.worker_steps,
        "load_avg_before": load_before, "load_avg_after": load_after, "cpu_count": os.cpu_count(),
        "torch": torch.__version__, "active": cfg.active(),
        "probabilities": {n: getattr(cfg, n).p for n in cfg.names()},
        "paired_seconds_per_step": paired, "worker_off_over_worker": worker_ratio,
        "clips_per_s_ratio_to_off": ratios, "augmenter_share_of_step": aug_share,
        "per_augmentation_share_of_step_at_p1": share, "train_step_ms_off": off_ms,
    }
    lines = [
        f"rawnet-lite training, batch {args.batch_size} x {args.window} samples, {args.threads} training "
        f"thread(s); {args.rounds} rounds of {args.steps} alternating off/augmented steps; worker mode: "
        f"{args.workers} worker(s), {args.rounds} rounds of {args.worker_steps}-step blocks; load average "
        f"{load_before[0]:.1f} -> {load_after[0]:.1f} on {os.cpu_count()} CPUs; median training step "
        f"without augmentation {off_ms:.0f} ms.",
        "",
        "| where the default augmenter runs | clips/s relative to no augmentation |",
        "|---|---:|",
        f"| in the training step | {ratios['step']:.3f} (augmenter: {100 * aug_share:.1f}% of a step) |",
        f"| in {args.workers} data worker(s) | {ratios['worker']:.3f} |",
        "",
        "Cost of each augmentation applied to every example of a batch (p = 1), as a share of a training",
        "step, and its expected share at the default p:",
        "",
        "| augmentation | % of a step at p = 1 | default p | expected % of a step |",
        "|---|---:|---:|---:|",
    ]
    total = 0.0
    for name, value in share.items():
        p = getattr(cfg, name).p if name in cfg.active() else 0.0
        total += p * value
        lines.append(f"| {name} | {100 * value:.1f} | {p:g} | {100 * p * value:.1f} |")
    lines.append(f"| **sum** | | | **{100 * total:.1f}** |")
    text = "\n".join(lines)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "augment_cost.md").write_text(text + "\n")
    (args.out / "augment_cost.json").write_text(json.dumps(result, indent=2))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
