"""Data pipeline speed: ``prepare`` files/s on the shared corpus, and training windows/s from a cache.

Usage (from the repository root, with ``../shared/corpus`` beside it)::

    python benchmarks/bench_data.py                      # dev split (762 clips), workers 1 and 2
    python benchmarks/bench_data.py --protocol ../shared/corpus/protocols/train.txt --workers 2

All numbers of one run come from the same machine and minute; compare ratios within a run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rawguard.conventions import DEFAULT_WINDOW
from rawguard.data.cache import Cache
from rawguard.data.dataset import TrainBatches
from rawguard.data.prepare import prepare_cache
from rawguard.data.sampling import Sampling
from rawguard.data.protocols import read_protocol
from rawguard.scoring import pack_windows

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"


def bench_prepare(items, workers: int, root: Path) -> tuple[float, Cache]:
    out = root / f"cache_w{workers}"
    start = time.perf_counter()
    summary = prepare_cache(items, out, workers=workers, progress=False)
    seconds = time.perf_counter() - start
    print(f"prepare  workers={workers}: {len(items)} files in {seconds:.2f} s = {len(items) / seconds:7.1f} files/s "
          f"({summary.seconds / seconds:6.0f} s of audio per s; {summary.rejected} rejected)")
    return seconds, Cache.open(out)


def windows_per_second(batches, limit_windows: int) -> tuple[float, float]:
    """Drain ``batches`` until ``limit_windows`` windows are done: (windows per wall second, per CPU second).

    The CPU-time rate (this process, all threads) is what the loader costs; on a machine shared with
    other jobs it is steadier than the wall-clock rate, which also counts time spent descheduled.
    """
    count, start, cpu = 0, time.perf_counter(), time.process_time()
    for x, _ in batches:
        count += x.shape[0]
        if count >= limit_windows:
            break
    return count / (time.perf_counter() - start), count / (time.process_time() - cpu)


@contextlib.contextmanager
def memmap_slicing(cache: Cache):
    """Slice the ``np.memmap`` itself, as caches did before they kept a plain ndarray view of it."""
    view = cache.samples
    cache._samples = view.base
    try:
        yield
    finally:
        cache._samples = view


def view_vs_memmap(cache: Cache, batch_size: int, window: int, windows: int, rounds: int = 7) -> tuple[float, float]:
    """Windows per CPU-second with the cache's plain view and with the np.memmap, rounds interleaved.

    Alternating (and swapping which goes first) spreads page-cache, allocator and load drift over
    both, which timing one after the other does not.
    """
    rates: dict[bool, list[float]] = {False: [], True: []}
    for r in range(rounds):
        for use_memmap in (False, True) if r % 2 == 0 else (True, False):
            stream = train_stream(cache, batch_size, window, prefetch=0, sampling=Sampling(balanced=True))
            with memmap_slicing(cache) if use_memmap else contextlib.nullcontext():
                rates[use_memmap].append(windows_per_second(stream, windows)[1])
    return float(np.median(rates[False])), float(np.median(rates[True]))


def train_stream(cache: Cache, batch_size: int, window: int, **options):
    loader = TrainBatches(cache, window=window, batch_size=batch_size, seed=0, **options)
    epoch = 0
    while True:
        yield from loader.epoch(epoch)
        epoch += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", default=str(CORPUS / "protocols" / "dev.txt"))
    parser.add_argument("--audio-dir", default=str(CORPUS / "flac"))
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts to time")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW)
    parser.add_argument("--windows", type=int, default=60_000, help="windows drawn per loader measurement")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the loader itself is numpy)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, load {load:.1f}, "
          f"python {platform.python_version()}, torch {torch.__version__}, torch threads {args.threads}")
    items = read_protocol(args.protocol, audio_dir=args.audio_dir)
    with tempfile.TemporaryDirectory(prefix="rawguard-bench-") as tmp:
        cache = None
        for workers in (int(w) for w in args.workers.split(",")):
            _, cache = bench_prepare(items, workers, Path(tmp))
        print(f"cache: {len(cache)} clips, {cache.seconds / 3600:.2f} h, "
              f"{(Path(cache.directory) / 'samples.int16').stat().st_size / 2**20:.0f} MiB int16")
        windows_per_second(train_stream(cache, args.batch_size, args.window), 2000)  # warm the page cache
        cases = {
            "train, prefetch=0": dict(prefetch=0),
            "train, prefetch=2": dict(prefetch=2),
            "train balanced, prefetch=0": dict(prefetch=0, sampling=Sampling(balanced=True)),
        }
        for name, options in cases.items():
            wall, cpu = windows_per_second(train_stream(cache, args.batch_size, args.window, **options), args.windows)
            print(f"loader   {name:<28} {wall:8.0f} windows/s wall, {cpu:8.0f} per CPU-second "
                  f"({args.window} samples, batch {args.batch_size})")
        view, memmap = view_vs_memmap(cache, args.batch_size, args.window, args.windows // 7)
        print(f"loader   plain view / np.memmap slicing: {view:.0f} / {memmap:.0f} windows per CPU-second, "
              f"ratio {view / memmap:.2f} (balanced, prefetch=0, median of 7 interleaved rounds)")
        clips = ((i, cache.waveform(i)) for i in range(len(cache)))
        packed = ((batch.x, batch.owners) for batch in pack_windows(clips, args.window, args.window // 2, args.batch_size))
        wall, cpu = windows_per_second(packed, 10**9)
        print(f"loader   {'eval, hop=window/2':<28} {wall:8.0f} windows/s wall, {cpu:8.0f} per CPU-second")


if __name__ == "__main__":
    main()
