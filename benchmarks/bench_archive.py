"""Throughput of ``rawguard score PATH... --out``: end to end against decode-only and model-only.

Measures, in one run on one machine (so the ratios hold even when other jobs share it):

- **decode-only**: the archive's decoder processes (:class:`rawguard.archive.decode.DecodePool`)
  reading, resampling and windowing every file into the queue, drained by a process that does
  nothing else; with 1 process and with as many as there are cores (the same cores end to end has);
- **model-only**: :meth:`WindowScorer.score_windows` on full batches of real windows already in
  memory (PyTorch, and ONNX Runtime with ``--backends torch,onnx``), as windows/s, turned into
  files/s with the folder's window count;
- **end to end**: ``python -m rawguard.cli score --checkpoint CKPT FOLDER --out results.jsonl`` in a
  fresh subprocess (files/s, audio hours per hour, CPU seconds of the whole process tree, peak RSS
  of the process tree sampled every 0.1 s);

on (a) the shared corpus folder, (b) a folder of ``--copies`` symbolic links cycling through it, and
(c) one long recording (corpus clips concatenated) for the real-time factor. ``--profile`` adds
the time of each stage of the network on a batch. The target is end to end >= 80 % of
min(decode-only with all cores, model-only).

Example (2-core VM, 2026-12-04)::

    python benchmarks/bench_archive.py --checkpoint runs/shared_corpus/best.pt --copies 20000 --profile

Writes ``benchmarks/results/archive/archive_cpu.json`` (and prints a markdown table). OpenMP waits
passively (``OMP_WAIT_POLICY=PASSIVE``, set here for every process): on a shared machine busy-waiting
threads burn the cores other processes need.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from rawguard.archive.decode import DecodePool, default_decoders  # noqa: E402
from rawguard.archive.files import iter_audio_files  # noqa: E402
from rawguard.audio import load_audio  # noqa: E402
from rawguard.conventions import SAMPLE_RATE  # noqa: E402
from rawguard.detector import Detector  # noqa: E402

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "flac"
RESULTS = Path(__file__).resolve().parent / "results" / "archive" / "archive_cpu.json"


def cpu_seconds() -> float:
    """User + system CPU of this process and its reaped children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def decode_only(folder: Path, workers: int, window: int | None, hop: int | None) -> dict:
    """Decode and window every file of ``folder`` with ``workers`` decoder processes; count windows."""
    started, cpu0 = time.perf_counter(), cpu_seconds()
    files = windows = failed = 0
    samples = 0
    with DecodePool(workers, window, hop) as pool:
        feeder = threading.Thread(target=lambda: ([pool.submit(i, p) for i, p in enumerate(iter_audio_files([folder]))], pool.finish()))
        feeder.start()
        for message in pool.messages():
            if message[0] == "error":
                failed += 1
                continue
            windows += message[-1].shape[0]
            if message[3] == 0:
                files += 1
                samples += message[2]
        feeder.join()
    wall = time.perf_counter() - started
    return {"workers": workers, "files": files, "failed": failed, "windows": windows, "audio_s": samples / SAMPLE_RATE,
            "wall_s": wall, "cpu_s": cpu_seconds() - cpu0, "files_per_s": files / wall,
            "x_real_time": samples / SAMPLE_RATE / wall}


def real_windows(folder: Path, window: int, hop: int, count: int) -> np.ndarray:
    """``count`` real analysis windows (float32 ``[count, window]``) from the first files of ``folder``."""
    from rawguard.windows import frame

    rows = []
    for path in iter_audio_files([folder]):
        rows.extend(frame(load_audio(path), window, hop)[1])
        if len(rows) >= count:
            break
    return np.stack(rows[:count])


def model_only(model: torch.nn.Module, detector: Detector, windows: np.ndarray, seconds: float) -> dict:
    """Windows/s of full batches through the shared WindowScorer (``model`` in place of the detector's)."""
    from rawguard.scoring import WindowScorer

    scorer = WindowScorer(model, detector.window, detector.hop, detector.batch_size)
    batches = [windows[i:i + detector.batch_size] for i in range(0, len(windows) - detector.batch_size + 1, detector.batch_size)]
    scorer.score_windows(batches[0])  # warm-up (allocations, ONNX Runtime's first run)
    started, cpu0, done = time.perf_counter(), cpu_seconds(), 0
    while time.perf_counter() - started < seconds:
        for batch in batches:
            scorer.score_windows(batch)
            done += batch.shape[0]
    wall = time.perf_counter() - started
    return {"windows": done, "wall_s": wall, "cpu_s": cpu_seconds() - cpu0, "windows_per_s": done / wall}


def interleaved(variants: dict, windows: np.ndarray, batch_size: int, rounds: int, seconds: float) -> dict:
    """Model-only windows/s of several scorers, timed in turns (A B C A B C ...) so that a change in
    the machine's load hits them all alike; the median per variant and its ratio to the first."""
    from statistics import median

    batches = [windows[i:i + batch_size] for i in range(0, len(windows) - batch_size + 1, batch_size)]
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for scorer in variants.values():
        scorer.score_windows(batches[0])  # warm-up
    for _ in range(rounds):
        for name, scorer in variants.items():
            started, done = time.perf_counter(), 0
            while time.perf_counter() - started < seconds:
                for batch in batches:
                    scorer.score_windows(batch)
                    done += batch.shape[0]
            rates[name].append(done / (time.perf_counter() - started))
    first = median(next(iter(rates.values())))
    return {name: {"windows_per_s": median(r), "ratio_to_first": median(r) / first, "rounds": r} for name, r in rates.items()}


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants (from /proc)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/status") as handle:
                total += next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmRSS:"))
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    pending += [int(child) for child in handle.read().split()]
        except (OSError, StopIteration):
            continue
    return total


def end_to_end(checkpoint: Path, folder: Path, out_dir: Path, extra: list[str]) -> dict:
    """``rawguard score FOLDER --out`` in a subprocess: wall, CPU of the process tree, peak tree RSS."""
    out = out_dir / f"results-{time.monotonic_ns()}.jsonl"
    command = [sys.executable, "-m", "rawguard.cli", "score", "--checkpoint", str(checkpoint), str(folder), "--out", str(out), *extra]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    while True:  # wait4 (not poll) so the child's rusage, its reaped decoders included, comes back
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        peak = max(peak, tree_rss(process.pid))
        time.sleep(0.1)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    stderr = process.stderr.read()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{stderr[-2000:]}")
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    audio = sum(r["duration_s"] for r in lines)
    shown = ["MODEL.onnx" if arg.endswith(".onnx") else arg for arg in extra]
    return {"command": " ".join(["rawguard", *command[3:5], "CKPT", "FOLDER", "--out", "results.jsonl", *shown]),
            "files": len(lines), "audio_s": audio, "wall_s": wall, "files_per_s": len(lines) / wall,
            "audio_h_per_h": audio / wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": peak / 2**20, "summary": [line.split("; results in")[0] for line in stderr.strip().splitlines()[-1:]]}


def stage_profile(model: torch.nn.Module, batch: np.ndarray, repeats: int = 5) -> list[dict]:
    """Inference time of each stage of the network (forward hooks on its top-level modules, and on
    each item of a ModuleList), on ``batch``; "other" is the rest of ``forward`` (e.g. the
    front-end's log compression, written inline)."""
    times: dict[str, float] = {}
    marks: dict[str, float] = {}
    hooks = []
    stages = []
    for name, module in model.named_children():
        stages += [(f"{name}.{i}", item) for i, item in enumerate(module)] if isinstance(module, torch.nn.ModuleList) else [(name, module)]
    for name, module in stages:
        hooks.append(module.register_forward_pre_hook(lambda m, a, n=name: marks.__setitem__(n, time.perf_counter())))
        hooks.append(module.register_forward_hook(lambda m, a, o, n=name: times.__setitem__(n, times.get(n, 0.0) + time.perf_counter() - marks[n])))
    x = torch.from_numpy(batch)
    with torch.inference_mode():
        model(x)
        times.clear()
        started = time.perf_counter()
        for _ in range(repeats):
            model(x)
        total = time.perf_counter() - started
    for hook in hooks:
        hook.remove()
    times["other"] = total - sum(times.values())
    return [{"stage": n, "ms_per_batch": 1000 * t / repeats, "share": t / total} for n, t in times.items()]


def link_copies(source: Path, target: Path, count: int) -> Path:
    """A folder of ``count`` symbolic links cycling through ``source``'s files (1,000 per subfolder)."""
    files = sorted(source.glob("*.flac"))
    for i in range(count):
        sub = target / f"{i // 1000:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"copy{i:06d}_{files[i % len(files)].name}").symlink_to(files[i % len(files)])
    return target


def long_recordings(source: Path, target: Path, minutes: float, count: int) -> Path:
    """``count`` FLAC files of ``minutes`` each, corpus clips concatenated (each file other clips)."""
    paths = iter(sorted(source.glob("*.flac")))
    target.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        clips, total = [], 0
        while total < minutes * 60 * SAMPLE_RATE:
            clips.append(load_audio(next(paths)))
            total += clips[-1].shape[0]
        sf.write(target / f"long{i}.flac", np.concatenate(clips), SAMPLE_RATE, subtype="PCM_16")
    return target


def startup(checkpoint: Path, source: Path, tmp: Path, extra: list[str]) -> float:
    """Wall seconds of ``rawguard score --out`` on one clip: interpreter, torch, checkpoint, decoders."""
    one = tmp / "one"
    one.mkdir(exist_ok=True)
    if not any(one.iterdir()):
        (one / "clip.flac").symlink_to(sorted(source.glob("*.flac"))[0])
    return end_to_end(checkpoint, one, tmp, extra)["wall_s"]


def measure_folder(name: str, folder: Path, checkpoint: Path, detector: Detector, models: dict, windows: np.ndarray,
                   args: argparse.Namespace, tmp: Path) -> dict:
    """Decode-only (1 and all cores), then model-only and end to end per backend, for one folder."""
    cores = len(os.sched_getaffinity(0))
    row = {"decode_1": decode_only(folder, 1, detector.window, detector.hop),
           "decode_all": decode_only(folder, cores, detector.window, detector.hop)}
    decoded = row["decode_all"]
    per_window_s = decoded["audio_s"] / decoded["windows"]
    for backend, model in models.items():
        model_row = model_only(model, detector, windows, args.model_seconds)
        model_row["x_real_time"] = model_row["windows_per_s"] * per_window_s
        model_row["files_per_s"] = model_row["windows_per_s"] * decoded["files"] / decoded["windows"]
        extra = ["--workers", str(args.workers)] + (["--threads", str(args.threads)] if args.threads else [])
        extra += ["--backend", "onnx", "--onnx", str(tmp / "model.onnx")] if backend == "onnx" else []
        e2e = end_to_end(checkpoint, folder, tmp, extra)
        limit = min(decoded["x_real_time"], model_row["x_real_time"])
        e2e["x_real_time"] = e2e["audio_s"] / e2e["wall_s"]
        e2e["share_of_limit"] = e2e["x_real_time"] / limit
        # The fixed cost of a run (interpreter, torch, checkpoint, spawning decoders), measured
        # right after: what the share would be for a folder too big for it to matter.
        e2e["startup_s"] = startup(checkpoint, args.corpus, tmp, extra)
        running = e2e["wall_s"] - e2e["startup_s"]
        e2e["share_of_limit_after_startup"] = e2e["audio_s"] / running / limit if running > 0.5 * e2e["wall_s"] else None
        row[f"model_{backend}"], row[f"end_to_end_{backend}"] = model_row, e2e
        print(f"{name} {backend}: end to end {e2e['files_per_s']:.1f} files/s = {e2e['x_real_time']:.0f}x real time, "
              f"decode-only ({cores} procs) {decoded['x_real_time']:.0f}x, model-only {model_row['x_real_time']:.0f}x: "
              f"{100 * e2e['share_of_limit']:.0f} % of the limit ({_percent(e2e['share_of_limit_after_startup'])} "
              f"without the {e2e['startup_s']:.1f} s start); peak RSS {e2e['peak_rss_mb']:.0f} MB", flush=True)
    return row


def compare_variants(detector: Detector, models: dict, windows: np.ndarray, args: argparse.Namespace) -> dict:
    """PyTorch fp32 against bf16 autocast and ONNX Runtime, at 1 and 2 threads, interleaved."""
    from rawguard.onnx_backend import OnnxModel
    from rawguard.scoring import WindowScorer

    out = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        variants = {"torch fp32": WindowScorer(detector.model, detector.window, detector.hop),
                    "torch bf16": WindowScorer(detector.model, detector.window, detector.hop, precision="bf16")}
        if "onnx" in models:
            onnx = OnnxModel(models["onnx"].path, threads, models["onnx"].min_samples)
            variants["onnx"] = WindowScorer(onnx, detector.window, detector.hop)
        out[f"{threads} thread(s)"] = interleaved(variants, windows, detector.batch_size, args.compare_rounds, 3.0)
        print(f"{threads} thread(s): " + ", ".join(f"{n} {r['windows_per_s']:.0f} windows/s ({r['ratio_to_first']:.2f}x)"
                                                   for n, r in out[f"{threads} thread(s)"].items()), flush=True)
    torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
    return out


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.0f} %"


def table(results: dict) -> str:
    lines = ["| folder | files | audio h | mode | files/s | audio h per h | CPU s | peak RSS MB | share of limit | without start |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for name, row in results.items():
        files, hours = row["decode_all"]["files"], row["decode_all"]["audio_s"] / 3600
        for mode, r in row.items():
            share = f"{_percent(r['share_of_limit'])} | {_percent(r['share_of_limit_after_startup'])}" if "share_of_limit" in r else " |"
            rss = f"{r['peak_rss_mb']:.0f}" if "peak_rss_mb" in r else ""
            lines.append(f"| {name} | {files} | {hours:.2f} | {mode} | {r['files_per_s']:.1f} | {r['x_real_time']:.0f} | "
                         f"{r['cpu_s']:.1f} | {rss} | {share} |")
    return "\n".join(lines)


def _portable(argv: list[str]) -> list[str]:
    """The command line with the checkpoint and corpus paths as placeholders (results files are shared)."""
    out, hide = [], {"--checkpoint": "CKPT", "--corpus": "CORPUS"}
    for i, arg in enumerate(argv):
        out.append(hide[argv[i - 1]] if i and argv[i - 1] in hide else arg)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="folder of audio files (default: the shared corpus)")
    parser.add_argument("--copies", type=int, default=20_000, help="files in the folder of links (0: skip)")
    parser.add_argument("--long-minutes", type=float, default=15.0, help="length of each long recording")
    parser.add_argument("--long-files", type=int, default=4, help="long recordings (0: skip)")
    parser.add_argument("--no-corpus", action="store_true", help="skip the corpus folder itself")
    parser.add_argument("--backends", default="torch,onnx")
    parser.add_argument("--workers", type=int, default=default_decoders(), help="decoder processes end to end")
    parser.add_argument("--threads", type=int, help="torch / ONNX Runtime threads (default: their own choice)")
    parser.add_argument("--model-seconds", type=float, default=15.0, help="seconds of model-only timing per row")
    parser.add_argument("--profile", action="store_true", help="time each stage of the network")
    parser.add_argument("--compare", action="store_true", help="PyTorch fp32 / bf16 / ONNX Runtime, 1 and 2 threads, interleaved")
    parser.add_argument("--compare-rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    detector = Detector.from_checkpoint(args.checkpoint)
    report = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": len(os.sched_getaffinity(0)),
                          "torch": torch.__version__, "python": platform.python_version()},
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load_before": os.getloadavg(),
              "command": "python benchmarks/bench_archive.py " + " ".join(_portable(argv if argv is not None else sys.argv[1:])),
              "model": {"name": detector.model_name, "parameters": sum(p.numel() for p in detector.model.parameters()),
                        "window": detector.window, "hop": detector.hop, "batch_size": detector.batch_size},
              "workers": args.workers, "threads": args.threads or torch.get_num_threads()}
    windows = real_windows(args.corpus, detector.window, detector.hop, 8 * detector.batch_size)
    if args.profile:
        report["profile"] = stage_profile(detector.model, windows[: detector.batch_size])
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-archive-") as tmp:
        tmp = Path(tmp)
        models = {"torch": detector.model}
        if "onnx" in args.backends.split(","):  # exported once, outside the timings, as `rawguard export` would
            from rawguard.export import export_onnx
            from rawguard.onnx_backend import onnx_model

            export_onnx(args.checkpoint, tmp / "model.onnx")
            models["onnx"] = onnx_model(args.checkpoint, detector.model, tmp / "model.onnx", threads=args.threads)
        if args.compare:
            report["interleaved"] = compare_variants(detector, models, windows, args)
        folders = {} if args.no_corpus else {"corpus": args.corpus}
        if args.long_files:
            name = f"{args.long_files} x {args.long_minutes:g} min"
            folders[name] = long_recordings(args.corpus, tmp / "long", args.long_minutes, args.long_files)
        if args.copies:
            folders[f"{args.copies} links"] = link_copies(args.corpus, tmp / "copies", args.copies)
        for name, folder in folders.items():
            results[name] = measure_folder(name, folder, args.checkpoint, detector, models, windows, args, tmp)
    report["results"], report["load_after"] = results, os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(table(results))
    print(f"load average before {report['load_before'][0]:.1f}, after {report['load_after'][0]:.1f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
