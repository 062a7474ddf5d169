"""Throughput and latency of ``rawguard serve`` under concurrent clients, batched against one request
per model call.

Starts the server as a subprocess on loopback (``rawguard serve``, one worker process), and drives it
with N concurrent clients (asyncio + httpx, one connection each), every client posting the same
5-second clip of the shared corpus (multipart, as the web page does) as fast as its answers come
back, for a bounded time and count. Per setting it records requests/s, audio-seconds/s, p50/p99
latency, errors, the server's peak RSS (VmHWM) and its RSS sampled every second, and the CPU time
of server and client. Last, the bare model's cost per window at several batch sizes (the most that
batching can gain).

Settings: clients 1, 8 and 50, each with batching on and off (``--no-batching``); then one longer
run (``--soak-seconds``, default 60) at 50 clients with batching, whose RSS samples show whether
memory stays flat. The client runs on the same machine: its CPU time is reported next to the
server's.

Example (the figures in ``results/serving/``)::

    python benchmarks/bench_serve.py --checkpoint runs/lite/best.pt --seconds 20 \\
        --out benchmarks/results/serving/load_2026-12-04
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Before torch loads (here and in the server): on a machine shared with other jobs, OpenMP's default
# busy-waiting threads burn the CPU they wait for (see bench_inference.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

from rawguard.audio import load_audio  # noqa: E402
from rawguard.conventions import SAMPLE_RATE  # noqa: E402

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"


def five_second_clip(seconds: float = 5.0) -> bytes:
    """A ``seconds``-long 16 kHz FLAC: the smoke list's first clips joined, cut to length."""
    waves, total = [], 0
    for line in (CORPUS / "protocols" / "smoke.txt").read_text().splitlines():
        wave = load_audio(CORPUS / "flac" / f"{line.split()[1]}.flac")
        waves.append(wave)
        total += wave.shape[0]
        if total >= seconds * SAMPLE_RATE:
            break
    buffer = io.BytesIO()
    sf.write(buffer, np.concatenate(waves)[: int(seconds * SAMPLE_RATE)], SAMPLE_RATE, format="FLAC")
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """``rawguard serve`` in a subprocess, started and stopped around one setting."""

    def __init__(self, checkpoint: str, batched: bool, threads: int | None, log: Path):
        self.port = free_port()
        command = [sys.executable, "-m", "rawguard.cli", "serve", "--checkpoint", checkpoint, "--port", str(self.port)]
        command += [] if batched else ["--no-batching"]
        command += [] if threads is None else ["--threads", str(threads)]
        self.log = log.open("w")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)  # inherits OMP_WAIT_POLICY
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start; see {log}")
            time.sleep(0.3)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        self.log.close()


async def drive(url: str, clip: bytes, clients: int, seconds: float, max_requests: int, pid: int) -> dict:
    """``clients`` concurrent posting loops for ``seconds`` or ``max_requests`` answers."""
    latencies: list[float] = []
    errors: list[str] = []
    rss_samples: list[tuple[float, int]] = []
    started = time.perf_counter()
    stop_at = started + seconds

    async def client(http: httpx.AsyncClient) -> None:
        while time.perf_counter() < stop_at and len(latencies) + len(errors) < max_requests:
            sent = time.perf_counter()
            try:
                response = await http.post(url + "/v1/score", files={"file": ("clip.flac", clip, "audio/flac")})
                ok = response.status_code == 200 and "score" in response.json()
                (latencies if ok else errors).append(time.perf_counter() - sent if ok else f"{response.status_code}")
            except httpx.HTTPError as error:
                errors.append(type(error).__name__)

    async def sample_rss() -> None:
        while time.perf_counter() < stop_at:
            rss_samples.append((round(time.perf_counter() - started, 1), rss_kib(pid)))
            await asyncio.sleep(1.0)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        sampler = asyncio.create_task(sample_rss())
        await asyncio.gather(*(client(http) for _ in range(clients)))
        elapsed = time.perf_counter() - started
        sampler.cancel()
    return {"elapsed_s": elapsed, "latencies": latencies, "errors": errors, "rss_samples_kib": rss_samples}


def run_setting(args, clip: bytes, clip_seconds: float, clients: int, batched: bool, seconds: float, log: Path) -> dict:
    server = Server(args.checkpoint, batched, args.threads, log)
    try:
        asyncio.run(drive(server.url, clip, 1, 2.0, 3, server.process.pid))  # warm-up
        cpu_before = cpu_seconds(server.process.pid)
        client_before = resource.getrusage(resource.RUSAGE_SELF)
        outcome = asyncio.run(drive(server.url, clip, clients, seconds, args.max_requests, server.process.pid))
        client_after = resource.getrusage(resource.RUSAGE_SELF)
        server_cpu = cpu_seconds(server.process.pid) - cpu_before
        peak = rss_kib(server.process.pid, "VmHWM")
    finally:
        server.stop()
    latencies = sorted(outcome["latencies"])
    done = len(latencies)
    rss = [kib for _, kib in outcome["rss_samples_kib"]]
    return {
        "clients": clients,
        "batched": batched,
        "requests": done,
        "errors": len(outcome["errors"]),
        "error_kinds": sorted(set(outcome["errors"])),
        "elapsed_s": round(outcome["elapsed_s"], 2),
        "requests_per_s": round(done / outcome["elapsed_s"], 2),
        "audio_s_per_s": round(done * clip_seconds / outcome["elapsed_s"], 1),
        "latency_p50_s": round(statistics.median(latencies), 4) if latencies else None,
        "latency_p99_s": round(float(np.percentile(latencies, 99)), 4) if latencies else None,
        "server_peak_rss_mib": round(peak / 1024, 1),
        "server_rss_first_last_mib": [round(rss[0] / 1024, 1), round(rss[-1] / 1024, 1)] if rss else None,
        "server_cpu_s": round(server_cpu, 1),
        "client_cpu_s": round((client_after.ru_utime + client_after.ru_stime) - (client_before.ru_utime + client_before.ru_stime), 1),
        "rss_samples_kib": outcome["rss_samples_kib"],
    }


def model_only(detector, batch_sizes=(1, 4, 16, 64, 200), seconds: float = 2.0) -> list[dict]:
    """Per-window cost of the bare model at several batch sizes (what batching can gain at most)."""
    scorer = detector.scorer()
    rows = []
    for batch in batch_sizes:
        x = (np.random.default_rng(0).standard_normal((batch, detector.window)) * 0.1).astype(np.float32)
        scorer.score_windows(x)
        started, calls = time.perf_counter(), 0
        while time.perf_counter() - started < seconds:
            scorer.score_windows(x)
            calls += 1
        per_call = (time.perf_counter() - started) / calls
        rows.append({"batch_windows": batch, "ms_per_call": round(1000 * per_call, 2), "ms_per_window": round(1000 * per_call / batch, 2)})
    return rows


def markdown(report: dict) -> str:
    lines = [
        f"# rawguard serve under load, {report['date']}",
        "",
        f"Machine: {report['machine']}. Load average before the run: {report['load_average_before']}.",
        f"Command: `{report['command']}`",
        f"Checkpoint: {report['checkpoint_model']} (window {report['window_s']} s, hop {report['hop_s']} s); "
        f"clip: {report['clip_seconds']} s FLAC, multipart upload; server: one process, OMP_WAIT_POLICY=PASSIVE.",
        "",
        "| clients | batching | requests | errors | req/s | audio s/s | p50 latency | p99 latency | peak RSS | RSS first/last sample | server CPU s | client CPU s |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["runs"]:
        first_last = "/".join(f"{v:.0f}" for v in row["server_rss_first_last_mib"] or [])
        lines.append(
            f"| {row['clients']} | {'on' if row['batched'] else 'off'} | {row['requests']} | {row['errors']} | "
            f"{row['requests_per_s']:.1f} | {row['audio_s_per_s']:.1f} | {1000 * row['latency_p50_s']:.0f} ms | "
            f"{1000 * row['latency_p99_s']:.0f} ms | {row['server_peak_rss_mib']:.0f} MiB | {first_last} MiB | "
            f"{row['server_cpu_s']} | {row['client_cpu_s']} |"
        )
    lines += ["", f"Model alone ({report['model_only_threads']} torch thread(s), the same process as the client, after the runs):", "",
              "| windows per call | ms per call | ms per window |", "|---:|---:|---:|"]
    lines += [f"| {r['batch_windows']} | {r['ms_per_call']} | {r['ms_per_window']} |" for r in report["model_only"]]
    lines += ["", "Batched / unbatched throughput: " + ", ".join(
        f"{clients} clients {ratio:.2f}x" for clients, ratio in report["speedup_batched_over_unbatched"].items())]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--clients", default="1,8,50")
    parser.add_argument("--seconds", type=float, default=20.0, help="time bound per setting (default 20)")
    parser.add_argument("--max-requests", type=int, default=5000, help="count bound per setting")
    parser.add_argument("--soak-seconds", type=float, default=60.0, help="the RSS run at the largest client count (0: skip)")
    parser.add_argument("--threads", type=int, help="server torch threads (default: its own, the CPU count)")
    parser.add_argument("--machine", default=f"{os.cpu_count()}-core VM")
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    args = parser.parse_args()

    clip = five_second_clip()
    clip_seconds = sf.info(io.BytesIO(clip)).duration
    from rawguard.detector import Detector

    detector = Detector.from_checkpoint(args.checkpoint)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    server_log = Path(tempfile.gettempdir()) / "bench_serve_server.log"  # one line per request: not a result
    print(f"server log: {server_log}", file=sys.stderr)
    runs = []
    for clients in [int(c) for c in args.clients.split(",")]:
        for batched in (False, True):
            row = run_setting(args, clip, clip_seconds, clients, batched, args.seconds, server_log)
            print(json.dumps({k: v for k, v in row.items() if k != "rss_samples_kib"}), flush=True)
            runs.append(row)
    if args.soak_seconds > 0:
        clients = max(int(c) for c in args.clients.split(","))
        row = run_setting(args, clip, clip_seconds, clients, True, args.soak_seconds, server_log)
        row["soak"] = True
        print(json.dumps({k: v for k, v in row.items() if k != "rss_samples_kib"}), flush=True)
        runs.append(row)
    speedup = {}
    for clients in sorted({r["clients"] for r in runs}):
        on = [r for r in runs if r["clients"] == clients and r["batched"] and not r.get("soak")]
        off = [r for r in runs if r["clients"] == clients and not r["batched"]]
        if on and off:
            speedup[clients] = round(on[0]["requests_per_s"] / off[0]["requests_per_s"], 2)
    import torch

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    report = {
        "model_only": model_only(detector),
        "model_only_threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d"),
        "machine": args.machine,
        "load_average_before": os.getloadavg()[0],
        "command": "python benchmarks/bench_serve.py " + " ".join(sys.argv[1:]),
        "checkpoint_model": detector.model_name,
        "window_s": detector.window / SAMPLE_RATE,
        "hop_s": detector.hop / SAMPLE_RATE,
        "clip_seconds": clip_seconds,
        "runs": runs,
        "speedup_batched_over_unbatched": speedup,
    }
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
