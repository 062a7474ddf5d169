"""Plot dev EER curves of several runs from their ``metrics.jsonl`` alone, against training clips
seen (step x batch), so runs with different batch sizes line up; for run folders whose checkpoints
are gone (e.g. runs made on a borrowed GPU, see ``converge_on_gpu.sh``).

    python benchmarks/plot_dev_curves.py lite.metrics.jsonl:256:rawnet-lite rawnet2.metrics.jsonl:32:RawNet2 \
        --out curves.png [--title TEXT]

Each argument is ``METRICS_JSONL:BATCH:LABEL``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rawguard.training.log import read_metrics  # noqa: E402


def dev_curve(path: Path) -> tuple[list[int], list[float]]:
    """Steps and dev EERs (%) of the dev evaluations logged in ``path`` (a run's metrics.jsonl)."""
    dev = [row for row in read_metrics(path) if row["type"] == "dev"]
    if not dev:
        raise SystemExit(f"{path}: no dev evaluations logged")
    return [row["step"] for row in dev], [100.0 * row["dev_eer"] for row in dev]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="METRICS_JSONL:BATCH:LABEL")
    parser.add_argument("--out", type=Path, required=True, help="output image (.png)")
    parser.add_argument("--title", default="dev EER against training clips seen")
    args = parser.parse_args(argv)

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for spec in args.runs:
        path, batch, label = spec.split(":", 2)
        steps, eers = dev_curve(Path(path))
        clips = [step * int(batch) / 1e6 for step in steps]
        best = min(range(len(eers)), key=eers.__getitem__)
        (line,) = ax.plot(clips, eers, marker=".", label=f"{label} (best {eers[best]:.2f} %)")
        ax.plot(clips[best], eers[best], "o", color=line.get_color(), markersize=8, fillstyle="none")
    ax.set_xlabel("training clips seen (millions)")
    ax.set_ylabel("dev EER %")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title(args.title)
    ax.legend()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
