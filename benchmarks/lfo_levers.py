"""Every lever judged on the leave-family-out yardstick, in one chart and one table.

Reads finished sweeps' records (``benchmarks/results/generalisation/<name>.json``, written by
``leave_family_out.py``) and, per sweep, the unseen EER of each held-out modern family (mean and
spread over its seeds), their mean, and the mean seen EER. Nothing is retrained. The chart puts
every lever on one row against the yardstick's baseline, so a reader sees at once which side of
it each one fell on.

    python benchmarks/lfo_levers.py --out benchmarks/results/generalisation --name lfo_levers
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from leave_family_out import GROUPS  # noqa: E402
from leave_systems_out import ROOT  # noqa: E402

MODERN = ("lm-tts", "diffusion-flow-tts", "neural-vc")
BASELINE = "leave_family_out"

# The yardstick's sweeps (4,000 steps, default size unless the lever is the size), in the order
# they are listed in BENCHMARKS.md, with a short label each.
YARDSTICK_SWEEPS: dict[str, str] = {
    BASELINE: "the yardstick: learned conv (baseline)",
    "leave_family_out_half_second_crops": "0.5 s crops",
    "leave_family_out_2s_crops": "2 s crops",
    "leave_family_out_recipe_width": "2x width",
    "leave_family_out_half_width": "half width",
    "leave_family_out_deeper": "4 residual blocks (seed 0)",
    "leave_family_out_sinc_frontend": "sinc front-end",
    "leave_family_out_sinc_linear": "sinc front-end, linear start",
    "leave_family_out_fixed_sinc_linear": "fixed sinc, linear bands",
    "leave_family_out_fixed_sinc_mel": "fixed sinc, mel bands",
    "leave_family_out_fixed_sinc_inverse_mel": "fixed sinc, inverse-mel bands",
    "leave_family_out_fixed_sinc_linear_k256": "fixed sinc, linear, 16 ms filters",
    "leave_family_out_fixed_sinc_linear_64bands": "fixed sinc, 64 linear bands",
    "leave_family_out_fixed_sinc_analytic": "fixed sinc + analytic envelopes",
    "leave_family_out_graph": "graph-attention back-end",
    "leave_family_out_frames_backend": "fixed sinc + frame-local back-end",
    "leave_family_out_2d_encoder": "fixed sinc + 2-D encoder, 12 ms frames",
    "leave_family_out_frontend_pool12": "fixed sinc, 12 ms frames (2-D's control)",
    "leave_family_out_spectrum512": "fixed sinc + long-term spectrum branch",
    "leave_family_out_2d_encoder_spectrum512": "2-D encoder + long-term spectrum branch",
    "leave_family_out_spectrum512_std": "fixed sinc + spectrum branch with spread",
    "leave_family_out_spectrum512_tones": "fixed sinc + spectrum branch, steady tones",
    "leave_family_out_spectrum1024": "fixed sinc + spectrum branch, 1024-point FFT",
    "leave_family_out_spectrum512_logavg": "fixed sinc + spectrum branch, mean log power",
    "leave_family_out_spectrum512_logavg_std": "fixed sinc + spectrum branch, mean log power + spread",
    "leave_family_out_spectrum512_freqmask": "fixed sinc + spectrum branch, frequency masking",
    "leave_family_out_spectrum512_coherence": "fixed sinc + spectrum branch with phase coherence",
    "leave_family_out_spectrum512_bonafide_balance": "fixed sinc + spectrum branch, bona fide sources balanced",
    "leave_family_out_spectrum512_quiet": "fixed sinc + spectrum branch, quiet frames only",
    "leave_family_out_spectrum512_modulation8": "fixed sinc + spectrum branch + envelope modulation path",
    "leave_family_out_spectrum512_std_dynamics": "fixed sinc + spectrum branch with spread, compressor",
    "leave_family_out_spectrum512_correlation": "fixed sinc + spectrum branch + band correlations",
    "leave_family_out_spectrum512_path_dropout05": "fixed sinc + spectrum branch, path dropout 0.5",
    "leave_family_out_2d_encoder_spectrum512_path_dropout05": "2-D encoder + spectrum branch, path dropout 0.5",
    "leave_family_out_spectrum512_frames_crop": "fixed sinc + spectrum branch over 2 s crops",
    "leave_family_out_spectrum512_half_second_crops": "fixed sinc + spectrum branch, 0.5 s crops",
    "leave_family_out_2d_encoder_spectrum512_half_second_crops": "2-D encoder + spectrum branch, 0.5 s crops",
    "leave_family_out_spectrum512_quarter_second_crops": "fixed sinc + spectrum branch, 0.25 s crops",
    "leave_family_out_spectrum512_std_half_second_crops": "fixed sinc + spectrum branch with spread, 0.5 s crops",
    "leave_family_out_spectrum512_half_second_crops_batch128_2000_steps": "fixed sinc + spectrum branch, 0.5 s crops, batch 128, half the steps",
    "leave_family_out_spectrum512_half_second_crops_batch32_8000_steps": "fixed sinc + spectrum branch, 0.5 s crops, batch 32, twice the steps",
    "leave_family_out_2d_encoder_spectrum512_std": "2-D encoder + spectrum branch with spread",
    "leave_family_out_high_band": "fixed sinc over 4-8 kHz only",
    "leave_family_out_low_band": "fixed sinc over 0-4 kHz only",
    "leave_family_out_sam005": "SAM rho 0.05",
    "leave_family_out_oc_softmax_seed0": "one-class softmax (seed 0)",
    "leave_family_out_mixstyle": "MixStyle",
    "leave_family_out_system_balance1": "every system equally often",
    "leave_family_out_no_augmentation": "no augmentation",
    "leave_family_out_rawboost": "RawBoost",
    "leave_family_out_robust": "channel robustness, both classes",
    "leave_family_out_six_copy_sets": "six copy sets",
    "leave_family_out_neural_copies": "HiFi-GAN-style copies",
    "leave_family_out_snake_copies": "BigVGAN-style copies (seed 0)",
    "leave_family_out_12k_steps": "3x the steps (seed 0)",
}


def summarise(records: list[dict]) -> dict:
    """Per modern group: unseen EER % mean, sd and seeds; the modern mean and the mean seen EER %."""
    groups = {}
    for group in MODERN:
        unseen = [100 * r["unseen_eer"] for r in records if r["group"] == group]
        if unseen:
            groups[group] = {"mean": float(np.mean(unseen)), "sd": float(np.std(unseen, ddof=1)) if len(unseen) > 1
                             else None, "seeds": len(unseen)}
    seen = [100 * r["seen_eer"] for r in records if r["group"] in MODERN]
    complete = len(groups) == len(MODERN)
    return {"groups": groups, "modern_mean": float(np.mean([g["mean"] for g in groups.values()])) if complete else None,
            "seen_mean": float(np.mean(seen)) if seen else None}


def load_sweeps(results: Path, names: dict[str, str]) -> dict[str, dict]:
    """``{name: summary}`` of the named sweeps found under ``results`` (missing ones are skipped, named)."""
    found = {}
    for name in names:
        path = results / f"{name}.json"
        if not path.exists():
            print(f"skipped {name}: no {path}", file=sys.stderr)
            continue
        try:
            records = json.loads(path.read_text())["records"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise SystemExit(f"{path}: not a leave_family_out.py result ({error})") from error
        summary = summarise(records)
        if summary["modern_mean"] is None:
            print(f"skipped {name}: not every modern family was held out", file=sys.stderr)
            continue
        found[name] = summary
    if BASELINE not in found:
        raise SystemExit(f"the baseline sweep {BASELINE}.json is missing under {results}")
    return found


def table(summaries: dict[str, dict], labels: dict[str, str]) -> str:
    """Markdown: one row per sweep, sorted as given, with the difference to the baseline."""
    base = summaries[BASELINE]["modern_mean"]
    head = ["lever", *(GROUPS[g][0] for g in MODERN), "modern mean", "vs baseline", "seen", "results"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 2) + "---|"]
    for name, summary in summaries.items():
        cells = []
        for group in MODERN:
            g = summary["groups"][group]
            cells.append(f"{g['mean']:.1f}" + (f" ± {g['sd']:.1f}" if g["sd"] is not None else " (1 seed)"))
        delta = summary["modern_mean"] - base
        lines.append(f"| {labels[name]} | " + " | ".join(cells) + f" | {summary['modern_mean']:.1f} | "
                     + ("" if name == BASELINE else f"{delta:+.1f}") + f" | {summary['seen_mean']:.1f} | `{name}` |")
    return "\n".join(lines)


def plot(summaries: dict[str, dict], labels: dict[str, str], path: Path) -> None:
    """One row per sweep: each modern family's unseen EER (with its seed spread) and their mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summaries)
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(names) + 2.0))
    ys = np.arange(len(names))[::-1]
    markers = {"lm-tts": "o", "diffusion-flow-tts": "s", "neural-vc": "^"}
    for group in MODERN:
        means = [summaries[n]["groups"][group]["mean"] for n in names]
        sds = [summaries[n]["groups"][group]["sd"] or 0.0 for n in names]
        ax.errorbar(means, ys, xerr=sds, fmt=markers[group], ms=5, capsize=2, alpha=0.75, label=GROUPS[group][0])
    ax.scatter([summaries[n]["modern_mean"] for n in names], ys, marker="|", s=300, color="black", zorder=3,
               label="mean of the three")
    base = summaries[BASELINE]["modern_mean"]
    ax.axvline(base, color="black", lw=0.8, ls="--")
    ax.set_yticks(ys, [labels[n] for n in names])
    ax.set_xlabel("unseen EER % of the held-out family (dev_v3; mean ± sd over seeds)")
    ax.set_title(f"Levers on the leave-family-out yardstick (dashed: baseline, {base:.1f} %)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.6 / len(names) - 0.04), ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")  # the legend sits below the axes
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "generalisation",
                        help="folder with the sweeps' .json records")
    parser.add_argument("--sweeps", nargs="+", metavar="NAME[=LABEL]",
                        help="sweeps to show (default: every yardstick sweep listed in this script)")
    parser.add_argument("--out", type=Path, default=None, help="where the .md and .png go (default: --results)")
    parser.add_argument("--name", default="lfo_levers")
    args = parser.parse_args(argv)
    if args.sweeps:
        labels = dict(item.split("=", 1) if "=" in item else (item, item) for item in args.sweeps)
        labels = {BASELINE: YARDSTICK_SWEEPS[BASELINE], **labels}
    else:
        labels = dict(YARDSTICK_SWEEPS)
    summaries = load_sweeps(args.results, labels)
    out = args.out or args.results
    out.mkdir(parents=True, exist_ok=True)
    seed0 = summarise([r for r in json.loads((args.results / f"{BASELINE}.json").read_text())["records"]
                       if r["seed"] == 0])["modern_mean"]
    text = ("Unseen EER % of each held-out modern family on the leave-family-out yardstick (mean ± sd over "
            "seeds), their mean, the difference to the baseline's mean, and the mean seen EER %. "
            f"Rows of one seed are seed 0, whose baseline is {seed0:.1f} %.\n\n"
            + table(summaries, labels) + "\n")
    (out / f"{args.name}.md").write_text(text)
    plot(summaries, labels, out / f"{args.name}.png")
    print(text)
    print(f"wrote {out / args.name}.md and .png")


if __name__ == "__main__":
    main()
