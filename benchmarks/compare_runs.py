"""Compare training runs side by side: dev EER, wall time, throughput, parameters, and a plot of
dev EER against training wall-clock time.

    python benchmarks/compare_runs.py runs/shared/lite runs/shared/rawnet2 --out runs/shared/comparison

Reads each RUN's ``metrics.jsonl`` (training log and dev evaluations), ``best.pt`` (selected step,
model) and, when present, ``RUN/eval-dev/metrics.json`` (``rawguard evaluate`` of best.pt on dev).
Writes ``OUT.md`` (markdown table), ``OUT.json`` and ``OUT.png``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rawguard.checkpoint import load_checkpoint  # noqa: E402
from rawguard.models import create_model_from_saved  # noqa: E402
from rawguard.training.log import read_metrics  # noqa: E402


def _read_log(run: Path) -> tuple[list[dict], list[dict]]:
    lines = read_metrics(run / "metrics.jsonl")
    return [r for r in lines if r.get("type") == "train"], [r for r in lines if r.get("type") == "dev"]


def summarize_run(run: Path) -> dict:
    """One row of the comparison for the run folder ``run``."""
    train_rows, dev_rows = _read_log(run)
    best = load_checkpoint(run / "best.pt")
    last = load_checkpoint(run / "last.pt")
    model = create_model_from_saved(best["model_name"], best["model_config"])
    parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    window = best["config"]["data"]["window"]
    batch = best["config"]["data"]["batch_size"]
    elapsed = float(last.get("elapsed_s", train_rows[-1]["elapsed_s"] if train_rows else 0.0))
    steps = int(last["step"])
    row = {
        "run": run.name,
        "model": best["model_name"],
        "parameters": parameters,
        "window_samples": window,
        "steps": steps,
        "epochs": int(last.get("epoch", 0)),
        "train_minutes": elapsed / 60.0,
        "clips_per_s": steps * batch / elapsed if elapsed else float("nan"),
        "best_step": int(best["selection"]["step"]) if "step" in best["selection"] else int(best["step"]),
        "dev_eer_percent_at_selection": 100.0 * float(best["selection"]["dev_eer"]),
        "dev_curve": [(r["elapsed_s"] if "elapsed_s" in r else None, r["step"], 100.0 * r["dev_eer"]) for r in dev_rows],
    }
    evaluated = run / "eval-dev" / "metrics.json"
    if evaluated.is_file():
        metrics = json.loads(evaluated.read_text())
        row["dev_eer_percent"] = metrics["eer_percent"]
        row["per_attack_eer_percent"] = metrics.get("per_attack_eer_percent", {})
    # Map each dev evaluation to the wall time of the nearest training log line at or before it.
    times = {r["step"]: r["elapsed_s"] for r in train_rows}
    curve = []
    for _, step, eer in row["dev_curve"]:
        known = [s for s in times if s <= step]
        curve.append((times[max(known)] / 60.0 if known else 0.0, step, eer))
    row["dev_curve"] = curve
    return row


def to_markdown(rows: list[dict]) -> str:
    lines = [
        "| model | parameters | window | train wall time | steps (epochs) | clips/s (incl. dev evals) | best step | dev EER % |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        eer = r.get("dev_eer_percent", r["dev_eer_percent_at_selection"])
        lines.append(
            f"| {r['model']} | {r['parameters']:,} | {r['window_samples']:,} | {r['train_minutes']:.1f} min | "
            f"{r['steps']:,} ({r['epochs']}) | {r['clips_per_s']:.1f} | {r['best_step']:,} | {eer:.2f} |"
        )
    attacks = sorted({a for r in rows for a in r.get("per_attack_eer_percent", {})})
    if attacks:
        lines += ["", "Per-system dev EER % (bona fide vs that system):", ""]
        lines.append("| model | " + " | ".join(attacks) + " |")
        lines.append("|---|" + "---:|" * len(attacks))
        for r in rows:
            values = r.get("per_attack_eer_percent", {})
            lines.append(f"| {r['model']} | " + " | ".join(f"{values.get(a, float('nan')):.1f}" for a in attacks) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], out_png: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for r in rows:
        minutes = [m for m, _, _ in r["dev_curve"]]
        eers = [e for _, _, e in r["dev_curve"]]
        ax.plot(minutes, eers, marker="o", label=f"{r['model']} ({r['parameters'] / 1e6:.2f} M params)")
    ax.set_xlabel("training wall-clock time (min)")
    ax.set_ylabel("dev EER (%)")
    ax.set_title("Dev EER against training time (same CPU budget)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (rawguard train --out)")
    parser.add_argument("--out", type=Path, required=True, help="output prefix: OUT.md, OUT.json, OUT.png")
    parser.add_argument("--labels", nargs="+", default=None,
                        help="one name per run for the table and plot (default: the model's name)")
    args = parser.parse_args()
    if args.labels is not None and len(args.labels) != len(args.runs):
        parser.error(f"--labels: {len(args.labels)} names for {len(args.runs)} runs")
    rows = [summarize_run(run) for run in args.runs]
    for row, label in zip(rows, args.labels or []):
        row["model"] = label
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table = to_markdown(rows)
    args.out.with_suffix(".md").write_text(table)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    plot(rows, args.out.with_suffix(".png"))
    print(table)


if __name__ == "__main__":
    main()
