"""Inference real-time factor (RTF) of a rawguard detector on CPU (or a GPU with ``--device cuda``).

Scores about an hour of audio with :class:`rawguard.detector.Detector` exactly as ``rawguard score``
does (windows at ``window_starts``, batched forward passes, mean of window scores), and reports

    RTF = seconds of audio / seconds of wall-clock time   (higher is faster; 1000x = 1 h in 3.6 s)

in two shapes of work:

- ``long``: one hour-long recording (the shared corpus' dev clips concatenated, repeated to 1 h;
  or a generated signal with ``--source noise``), cut into sliding windows;
- ``clips``: the dev clips, ``Detector.score_arrays`` (windows of many clips share batches, as
  ``rawguard score`` on a folder does; clips shorter than a window are tiled to a full window, so
  each costs a whole window), and ``clips/1``: one ``score_array`` call per clip, for comparison.

The model has random weights (speed does not depend on them). Run it when the machine is quiet;
the 1-minute load average is printed with the results. Example::

    python benchmarks/bench_inference.py --threads 2
    python benchmarks/bench_inference.py --device cuda --batch-sizes 64,256,1024

On a GPU the CPU-time columns count the host's work only (feeding windows, collecting scores).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

# Must be set before torch loads OpenMP. On a machine shared with other jobs, OpenMP's default
# busy-waiting threads burn CPU waiting for each other (measured 2-8x slower wall-clock with 2
# threads at load ~8 on 2 cores); passive waiting costs nothing on an idle machine. Run with
# OMP_WAIT_POLICY=ACTIVE to measure torch's default behaviour.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from rawguard.audio import load_audio  # noqa: E402
from rawguard.conventions import DEFAULT_WINDOW, SAMPLE_RATE  # noqa: E402
from rawguard.detector import Detector  # noqa: E402
from rawguard.models import create_model  # noqa: E402

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"


def corpus_clips(limit_seconds: float) -> list[np.ndarray]:
    """Dev clips of the shared corpus, in id order, up to ``limit_seconds`` of audio."""
    clips, total = [], 0.0
    paths = sorted((CORPUS / "flac").glob("RG_D_*.flac"))
    for path in tqdm(paths, desc="loading clips", unit="clip", leave=False):
        clips.append(load_audio(path))
        total += clips[-1].shape[0] / SAMPLE_RATE
        if total >= limit_seconds:
            break
    return clips


def hour_of_audio(source: str, seconds: float) -> np.ndarray:
    """float32 ``[seconds * SAMPLE_RATE]``: corpus clips concatenated and repeated, or coloured noise."""
    n = int(seconds * SAMPLE_RATE)
    if source == "noise" or not CORPUS.is_dir():
        rng = np.random.default_rng(0)
        return (0.1 * np.cumsum(rng.standard_normal(n)) % 1.0 - 0.5).astype(np.float32) * 0.2
    joined = np.concatenate(corpus_clips(seconds))
    return np.resize(joined, n).astype(np.float32)  # np.resize repeats the sequence to length n


def timed(fn, repeats: int) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds (all threads) of each of ``repeats`` calls."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def row(name: str, batch: int, audio_s: float, wall: list[float], cpu: list[float], extra: str = "") -> str:
    median = statistics.median(wall)
    return (f"{name:<8} {batch:>5} {median:>9.3f} {min(wall):>8.3f} {audio_s / median:>10.0f}x "
            f"{audio_s / min(wall):>8.0f}x {statistics.median(cpu):>7.2f} {audio_s / statistics.median(cpu):>8.0f}x{extra}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="rawnet-lite")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default: 2)")
    parser.add_argument("--seconds", type=float, default=3600.0, help="audio length for the long-recording test")
    parser.add_argument("--clip-seconds", type=float, default=600.0, help="audio scored clip by clip (0: skip)")
    parser.add_argument("--batch-sizes", default="16,32,64,128", help="comma-separated windows per forward pass")
    parser.add_argument("--hop", type=int, default=None, help="hop in samples (default: window, no overlap)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--source", choices=["corpus", "noise"], default="corpus")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: cpu)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create_model(args.model)
    n_params = sum(p.numel() for p in model.parameters())
    wave = hour_of_audio(args.source, args.seconds)
    audio_s = wave.shape[0] / SAMPLE_RATE
    if args.device != "cpu":
        torch.backends.cudnn.benchmark = True  # every forward but the last has the same shape
        print(f"device {args.device}: {torch.cuda.get_device_name(torch.device(args.device))}")
    print(f"model {args.model} ({n_params:,} parameters), torch {torch.__version__}, {args.threads} thread(s), "
          f"window {DEFAULT_WINDOW}, hop {args.hop or DEFAULT_WINDOW}, audio {audio_s / 3600:.2f} h ({args.source}), "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}")
    print(f"load average before: {os.getloadavg()[0]:.2f} (cpus: {os.cpu_count()})")
    # Wall-clock RTF depends on what else runs on the machine; CPU-time RTF (audio seconds per CPU
    # second, all threads) hardly does: on an idle machine with N cores, wall RTF lies between
    # 1x and Nx the CPU-time RTF, depending on how well the threads scale.
    print(f"{'shape':<8} {'batch':>5} {'median s':>9} {'best s':>8} {'RTF median':>11} {'RTF best':>9} {'CPU s':>7} {'RTF/CPU':>9}")
    results = {}
    for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
        detector = Detector(model, window=DEFAULT_WINDOW, hop=args.hop, batch_size=batch_size, device=args.device)
        detector.score_array(wave[: 10 * DEFAULT_WINDOW])  # warm-up: allocator, oneDNN kernels
        wall, cpu = timed(lambda: detector.score_array(wave), args.repeats)
        results[batch_size] = statistics.median(cpu)
        print(row("long", batch_size, audio_s, wall, cpu), flush=True)
    if args.clip_seconds > 0 and CORPUS.is_dir():
        clips = corpus_clips(args.clip_seconds)
        clip_s = sum(c.shape[0] for c in clips) / SAMPLE_RATE
        best_batch = min(results, key=results.get)
        detector = Detector(model, window=DEFAULT_WINDOW, hop=args.hop, batch_size=best_batch, device=args.device)
        for name, run in (("clips", lambda: detector.score_arrays(clips)),
                          ("clips/1", lambda: [detector.score_array(c) for c in clips])):
            wall, cpu = timed(run, args.repeats)
            print(row(name, best_batch, clip_s, wall, cpu, f"   ({len(clips)} clips, {clip_s / 60:.1f} min)"), flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
