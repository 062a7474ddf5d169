"""Cost of each model: training-step and inference throughput on this machine, fp32 and bf16.

Usage::

    python benchmarks/bench_models.py                # full run (~10 min on 2 cores), all models
    python benchmarks/bench_models.py --quick        # ~1 min: fewer timed steps
    python benchmarks/bench_models.py --models rawnet-lite --set gru_hidden=96   # an ablation
    python benchmarks/bench_models.py --profile      # add a per-stage profile of rawnet-lite
    python benchmarks/bench_models.py --device cuda --precisions fp32,bf16,fp16 --batch 128   # a GPU

Training step = forward + cross-entropy + backward + AdamW step on a batch of 32 random
64,600-sample clips; inference = ``eval()`` + ``torch.inference_mode()`` forward on the same batch.
bf16 / fp16 rows wrap the forward (and loss) in ``torch.autocast`` on the model's device (fp16:
CUDA only, with a gradient scaler as in training). On a GPU every timed step ends with
``torch.cuda.synchronize()`` (kernels run asynchronously) and cuDNN picks its fastest algorithms.
seed-literal (``seed_literal.py``) is timed on a 1/10 crop and scaled up (``--seed-shrink``).
Throughput is clips/s; "x real time" is audio seconds processed per wall second. Every model is
measured in the same run, so the ratios between them are meaningful even on a busy machine; the
load average before and after is recorded to show how busy it was. Prints a markdown table and
writes everything to ``benchmarks/results/speed/models_cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_literal import SeedLiteral  # noqa: E402  (benchmarks/ is not a package)

from rawguard.conventions import DEFAULT_WINDOW, SAMPLE_RATE  # noqa: E402
from rawguard.models import create_model  # noqa: E402

MODELS = ("rawnet-lite", "rawnet2", "seed-literal")
RESULTS = Path(__file__).resolve().parent / "results" / "speed" / "models_cpu.json"

# (warm-up steps, timed training steps, timed inference batches) per model. seed-literal's GRU
# walks all 64,600 samples one by one, so one timed step of it takes minutes.
PLAN_FULL = {"rawnet-lite": (2, 10, 20), "rawnet2": (1, 3, 5), "seed-literal": (0, 1, 1)}
PLAN_QUICK = {"rawnet-lite": (1, 3, 5), "rawnet2": (1, 1, 2), "seed-literal": (0, 1, 1)}
# On a GPU a step takes milliseconds: more warm-up (cuDNN autotuning runs in the first steps) and
# more timed steps. seed-literal's first step builds cuDNN's GRU plan for 64,600 steps: warm it up.
PLAN_GPU = {"rawnet-lite": (10, 40, 60), "rawnet2": (5, 20, 40), "seed-literal": (1, 2, 2)}
# seed-literal runs on a crop this many times shorter and its time is scaled up (--seed-shrink 1 for
# the full length): every layer, the GRU included, runs once per sample, so its cost is linear in T,
# and one full-length training step takes minutes on 2 busy cores.
SEED_SHRINK = 10


def build(name: str, overrides: dict) -> nn.Module:
    """A model by name; seed-literal comes from ``benchmarks/seed_literal.py``."""
    if name == "seed-literal":
        return SeedLiteral()
    return create_model(name, **(overrides if name == "rawnet-lite" else {}))


def autocast(precision: str, device: torch.device):
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued kernels (a no-op on CPU), so wall-clock time covers the work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_mflop(model: nn.Module, length: int) -> float:
    """Forward FLOPs per clip (MFLOP; a multiply-add counts 2), counted by torch's FlopCounterMode.

    Covers convolutions, matrix products and the GRU's gate matmuls; element-wise ops (BN, |x|,
    pooling, activations) are not counted, so this is a lower bound on work, not on time.
    """
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(torch.zeros(1, length))
    return counter.get_total_flops() / 1e6


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
               x: torch.Tensor, y: torch.Tensor, precision: str) -> float:
    """Seconds for one training step (forward + loss + backward + AdamW step) on ``x [B, T]``."""
    model.train()
    synchronize(x.device)
    start = time.perf_counter()
    with autocast(precision, x.device):
        loss = F.cross_entropy(model(x).float(), y)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    synchronize(x.device)
    return time.perf_counter() - start


def infer_step(model: nn.Module, x: torch.Tensor, precision: str) -> float:
    """Seconds for one inference forward (eval mode, inference_mode) on ``x [B, T]``."""
    model.eval()
    synchronize(x.device)
    start = time.perf_counter()
    with torch.inference_mode(), autocast(precision, x.device):
        model(x)
    synchronize(x.device)
    return time.perf_counter() - start


def run_interleaved(tasks: list[dict]) -> None:
    """Run every task's steps round-robin (one step of each task per round), filling ``times``.

    Interleaving matters on a shared machine: when a neighbour's load rises or falls during the
    run, it slows every model alike instead of whichever happened to be measured then, so the
    ratios between models stay honest.
    """
    total = sum(t["warmup"] + t["steps"] for t in tasks)
    with tqdm(total=total, desc="benchmark", unit="step") as bar:
        for round_index in range(max(t["warmup"] + t["steps"] for t in tasks)):
            for task in tasks:
                if round_index < task["warmup"] + task["steps"]:
                    bar.set_postfix_str(task["label"])
                    elapsed = task["step"]()
                    if round_index >= task["warmup"]:
                        task["times"].append(elapsed)
                    bar.update()


def summarise(times: list[float], batch: int) -> dict:
    """Median seconds per batch -> clips/s (the median shrugs off a neighbour's burst of work)."""
    ordered = sorted(times)
    median = ordered[len(ordered) // 2]
    return {"s_per_batch": median, "clips_per_s": batch / median, "batches_timed": len(times)}


class _Stop(Exception):
    """Raised by a forward hook to end a forward pass early, carrying that stage's output."""

    def __init__(self, output: torch.Tensor) -> None:
        super().__init__()
        self.output = output


def _stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Top-level stages in execution order (elements of a ModuleList count as stages)."""
    units = []
    for name, child in model.named_children():
        if isinstance(child, nn.ModuleList):
            units += [(f"{name}.{i}", sub) for i, sub in enumerate(child)]
        else:
            units.append((name, child))
    order: list[str] = []
    handles = [m.register_forward_hook(lambda *_, n=n: order.append(n)) for n, m in units]
    with torch.inference_mode():
        model.eval()(torch.zeros(1, model.min_samples))
    for handle in handles:
        handle.remove()
    lookup = dict(units)
    return [(name, lookup[name]) for name in dict.fromkeys(order)]


def _stage_group(name: str) -> str:
    """Coarse stage of a unit: ``frontend_bn`` -> ``frontend``, ``fms.1`` / ``blocks.1`` -> ``block 2``."""
    head, _, index = name.partition(".")
    if index.isdigit():
        return f"block {int(index) + 1}"
    head = head.split("_")[0]
    return "classifier" if head in ("dropout", "fc") else head


def _stage_ends(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The last unit of each coarse stage, in execution order: where to cut the network."""
    ends: list[tuple[str, nn.Module]] = []
    for name, module in _stages(model):
        group = _stage_group(name)
        if ends and ends[-1][0] == group:
            ends[-1] = (group, module)
        else:
            ends.append((group, module))
    return ends


def stage_profile(model: nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int = 3) -> list[dict]:
    """Where the time goes, stage by stage, for inference and for a training step.

    The network is cut after each coarse stage (front-end, each block with its scaling, GRU with
    its input BN, classifier) in turn (a hook raises with that stage's output) and the
    truncated pass is timed: forward only in eval/inference mode, forward + backward of a dummy
    loss in training mode. A stage's cost is the difference from the previous cut, so element-wise
    work between modules (e.g. ``|x|``) is charged to the next stage. The last row is the full
    model (loss and optimizer excluded). Differences of noisy timings can come out negative on a
    busy machine: read the shares, and rerun when neighbours are quiet.
    """

    def run(stop: nn.Module | None, train: bool) -> float:
        handle = stop.register_forward_hook(lambda _m, _i, out: (_ for _ in ()).throw(_Stop(out))) if stop else None
        times = []
        model.train(train)
        for _ in range(repeats + 1):
            start = time.perf_counter()
            with nullcontext() if train else torch.inference_mode():
                try:
                    out = model(x)
                except _Stop as cut:
                    out = cut.output[0] if isinstance(cut.output, tuple) else cut.output
                if train:
                    out.float().square().mean().backward()
                    model.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - start)
        if handle is not None:
            handle.remove()
        return 1e3 * min(times[1:])

    # Warm up first: the first few passes in a fresh process are 10-50x slower here (first touch of
    # freshly allocated memory in this VM, oneDNN kernel creation), which would swamp the deltas.
    for _ in range(4):
        run(None, False)
        run(None, True)
    ends = _stage_ends(model)
    ends[-1] = (ends[-1][0], None)  # the last stage ends at the model's output: run it whole
    rows, previous = [], {"infer": 0.0, "train": 0.0}
    for name, module in ends:
        row = {"stage": name}
        for kind in ("infer", "train"):
            cumulative = run(module, kind == "train")
            row[f"{kind}_ms"] = cumulative - previous[kind]
            previous[kind] = cumulative
        rows.append(row)
    for kind in ("infer", "train"):
        for row in rows:
            row[f"{kind}_share"] = row[f"{kind}_ms"] / previous[kind]
    return rows


def machine() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "mkldnn": torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
    }


def parse_overrides(pairs: list[str]) -> dict:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set expects key=value, got {pair!r}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--quick", action="store_true", help="fewer timed steps")
    parser.add_argument("--seed-shrink", type=int, default=SEED_SHRINK,
                        help=f"time seed-literal on a 1/N crop and scale up (default {SEED_SHRINK}; 1 = full length)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {MODELS}")
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated: fp32, bf16, fp16 (CUDA only)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=DEFAULT_WINDOW, help="samples per clip")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="rawnet-lite config override")
    parser.add_argument("--no-mkldnn", action="store_true", help="disable oneDNN convolutions (ablation)")
    parser.add_argument("--profile", action="store_true", help="add per-stage / per-op profiles of rawnet-lite")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS.name})")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.backends.mkldnn.enabled = not args.no_mkldnn
    torch.manual_seed(0)
    overrides = parse_overrides(args.set)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
    precisions = [p.strip() for p in args.precisions.split(",")]
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available")
    if "fp16" in precisions and device.type != "cuda":
        raise SystemExit("--precisions fp16 needs --device cuda (CPU autocast has no fp16 scaler path)")
    torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN time its algorithms once
    plans = PLAN_GPU if device.type == "cuda" else PLAN_QUICK if args.quick else PLAN_FULL

    result = {
        "machine": machine(), "device": str(device), "threads": args.threads, "batch": args.batch, "length": args.length,
        "quick": args.quick, "rawnet_lite_overrides": overrides, "load_before": os.getloadavg(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "models": {},
    }
    clip_seconds = args.length / SAMPLE_RATE
    tasks = []
    for name in names:
        model = build(name, overrides)
        length, scale = args.length, 1.0
        if name == "seed-literal" and args.seed_shrink > 1:
            length, scale = args.length // args.seed_shrink, float(args.seed_shrink)
        x = (0.1 * torch.randn(args.batch, length)).clamp(-1, 1).to(device)
        y = torch.randint(0, 2, (args.batch,)).to(device)
        result["models"][name] = {
            "params_trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "min_samples": model.min_samples,
            "gru_steps": model.gru_steps(args.length),
            # seed-literal's work is exactly linear in T: count it on a crop (counting walks every op
            # in Python, which for 64,600 GRU steps takes minutes).
            "forward_mflop_per_clip": (forward_mflop(model, args.length // SEED_SHRINK) * SEED_SHRINK
                                       if name == "seed-literal" else forward_mflop(model, args.length)),
            "measured_length": length,
            "extrapolated": scale != 1.0,
        }
        warmup, train_steps, infer_steps = plans[name]
        model.to(device)  # after counting FLOPs, which runs on a CPU tensor
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        for precision in precisions:
            common = {"model": name, "precision": precision, "warmup": warmup, "scale": scale}
            scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
            tasks.append({**common, "kind": "train", "steps": train_steps, "label": f"{name} {precision} train", "times": [],
                          "step": partial(train_step, model, optimizer, scaler, x, y, precision)})
            tasks.append({**common, "kind": "infer", "steps": infer_steps, "label": f"{name} {precision} infer", "times": [],
                          "step": partial(infer_step, model, x, precision)})
        if args.profile and name == "rawnet-lite" and device.type == "cpu":
            result["models"][name]["stage_profile"] = stage_profile(model, x, y)
    run_interleaved(tasks)
    for task in tasks:
        stats = summarise(task["times"], args.batch)
        stats["s_per_batch"] *= task["scale"]
        stats["clips_per_s"] /= task["scale"]
        stats["x_real_time"] = stats["clips_per_s"] * clip_seconds
        result["models"][task["model"]][f"{task['kind']}_{task['precision']}"] = stats
    result["load_after"] = os.getloadavg()
    result["ratios"] = ratios(result["models"], precisions)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result, precisions))
    print(f"\nresults: {args.out}", file=sys.stderr)
    return 0


def ratios(models: dict, precisions: list[str]) -> dict:
    """Throughput of rawnet-lite over each other model, per (train/infer, precision)."""
    out = {}
    lite = models.get("rawnet-lite")
    for other in ("rawnet2", "seed-literal"):
        if lite is None or other not in models:
            continue
        for kind in ("train", "infer"):
            for precision in precisions:
                key = f"{kind}_{precision}"
                out[f"rawnet-lite/{other} {key}"] = lite[key]["clips_per_s"] / models[other][key]["clips_per_s"]
    return out


def markdown(result: dict, precisions: list[str]) -> str:
    m = result["machine"]
    gpu = f"{m['gpu']} (CUDA {m['cuda']}, cuDNN {m['cudnn']}); " if result.get("device", "cpu") != "cpu" else ""
    lines = [
        f"Machine: {gpu}{m['cpu']}, {result['threads']} torch threads ({m['cpu_count']} logical CPUs), torch "
        f"{m['torch']}; batch {result['batch']} x {result['length']} samples; load average "
        f"{result['load_before'][0]:.1f} before, {result['load_after'][0]:.1f} after.",
        "",
        "| model | params | GRU steps | fwd MFLOP/clip | precision | train clips/s | infer clips/s | infer x real time |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for name, e in result["models"].items():
        note = f" (timed on {e['measured_length']:,} samples, scaled)" if e["extrapolated"] else ""
        for precision in precisions:
            lines.append(
                f"| {name}{note} | {e['params_trainable']:,} | {e['gru_steps']:,} | {e['forward_mflop_per_clip']:,.0f} "
                f"| {precision} | {e[f'train_{precision}']['clips_per_s']:,.2f} "
                f"| {e[f'infer_{precision}']['clips_per_s']:,.1f} | {e[f'infer_{precision}']['x_real_time']:,.0f} |"
            )
    if result["ratios"]:
        lines += ["", "| ratio | value |", "|---|---:|"]
        lines += [f"| {k} | {v:,.1f}x |" for k, v in result["ratios"].items()]
    lite = result["models"].get("rawnet-lite", {})
    if "stage_profile" in lite:
        rows = lite["stage_profile"]
        lines += ["", "rawnet-lite, fp32, where the time goes (ms per batch of the model cut after each stage, "
                  "minus the previous cut):", "",
                  "| stage | inference ms | share | training fwd+bwd ms | share |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {r['stage']} | {r['infer_ms']:.1f} | {100 * r['infer_share']:.0f}% | {r['train_ms']:.1f} "
                  f"| {100 * r['train_share']:.0f}% |" for r in rows]
        lines.append(f"| whole model | {sum(r['infer_ms'] for r in rows):.1f} | 100% "
                     f"| {sum(r['train_ms'] for r in rows):.1f} | 100% |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
