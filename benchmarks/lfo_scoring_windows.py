"""Context at scoring time: a leave-family-out sweep's models rescored with other windows.

The models of a finished ``leave_family_out.py`` sweep (its ``lfo_result.json`` runs) score the
whole ``dev_v3.txt`` again with each scoring window: 0.5 s and 1 s windows (the training crops of
the recipe's two models), 2 s (the recipe's ``eval.window``), 4 s, and the whole utterance in one
pass (``window None``); clip score = mean over its windows, hop half a window. Nothing is retrained:
the lever is how much of a clip the model sees at once. Reported per window, means over the sweep's
groups and seeds: unseen-group EER, seen EER and bona fide rejection at the run's dev threshold.

    python benchmarks/lfo_scoring_windows.py --name leave_family_out
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from leave_family_out import GROUPS, SUBSETS, bonafide_rejection  # noqa: E402
from leave_systems_out import ROOT, eer_breakdown, load_weights  # noqa: E402

WINDOWS: dict[str, tuple[int | None, int | None]] = {
    "0.5 s": (8_000, 4_000), "1 s": (16_000, 8_000), "2 s": (32_000, 16_000), "4 s": (64_000, 32_000),
    "whole utterance": (None, None),
}
"""Label -> (window, hop) in samples."""
MODERN = ("lm-tts", "diffusion-flow-tts", "neural-vc")


def training_crop(run_dir: Path) -> float:
    """Seconds of audio per training crop of a run (``data.window`` of its ``config.yaml``)."""
    from rawguard.config import load_config
    from rawguard.conventions import SAMPLE_RATE
    from rawguard.train import CONFIG_FILE

    return load_config(run_dir / CONFIG_FILE).data.window / SAMPLE_RATE


def rescore(run_dir: Path, dev, record: dict) -> dict[str, dict]:
    """``{window label: EERs and rejection}`` of one run's last weights on the dev cache."""
    from rawguard.scoring import score_cache

    model = load_weights(run_dir)
    labels, systems, speakers = np.asarray(dev.labels), np.asarray(dev.systems), list(dev.speakers)
    out = {}
    for label, (window, hop) in WINDOWS.items():
        # One clip per batch for whole utterances: clips differ in length and are not padded.
        scores = score_cache(model, dev, window, hop, 64 if window else 1, "cpu", "fp32")
        out[label] = {**eer_breakdown(scores, labels, systems, record["held_out"]),
                      **bonafide_rejection(scores, labels, systems, speakers, record["held_out"])}
    return out


def summarise(results: list[tuple[dict, dict]]) -> str:
    """Markdown table, one row per window: means over runs (groups weigh equally: same seeds each)."""
    lines = ["| scoring window | unseen EER %, mean over groups | modern groups (LM, diffusion/flow, VC) | "
             "seen EER % | " + " | ".join(f"bona fide rejected %: {s}" for s in SUBSETS) + " |",
             "|---|---:|---:|---:|" + "---:|" * len(SUBSETS)]
    for label in WINDOWS:
        rows = [(record, scored[label]) for record, scored in results]
        unseen = 100 * np.mean([s["unseen_eer"] for _, s in rows])
        modern = [s["unseen_eer"] for r, s in rows if r["group"] in MODERN]
        seen = 100 * np.mean([s["seen_eer"] for _, s in rows])
        rejection = [100 * np.mean([s["bonafide_rejection"][name] for _, s in rows]) for name in SUBSETS]
        lines.append(f"| {label} | {unseen:.1f} | {100 * np.mean(modern):.1f} | {seen:.1f} | "
                     + " | ".join(f"{v:.1f}" for v in rejection) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="leave_family_out", help="the sweep's --name")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "lfo", help="the sweep's --runs")
    parser.add_argument("--work", type=Path, default=ROOT / "caches" / "lfo", help="the sweep's --work")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "generalisation")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch

    from rawguard.data.cache import Cache

    torch.set_num_threads(args.threads)
    runs = sorted((args.runs / args.name).glob("*/lfo_result.json"))
    if not runs:
        print(f"no finished runs under {args.runs / args.name}", file=sys.stderr)
        return 1
    dev = Cache.open(args.work / "dev_v3")
    results = []
    for path in runs:
        record = json.loads(path.read_text())
        results.append((record, rescore(path.parent, dev, record)))
        print(f"{record['group']} seed {record['seed']}: " + ", ".join(
            f"{label} {100 * s['unseen_eer']:.1f} %" for label, s in results[-1][1].items()), flush=True)
    groups = sorted({r["group"] for r, _ in results}, key=list(GROUPS).index)
    crops = " / ".join(f"{c:g} s" for c in sorted({training_crop(path.parent) for path in runs}))
    header = (f"Scoring windows on the models of the `{args.name}` sweep ({len(results)} runs: groups "
              f"{', '.join(groups)}; trained on {crops} crops), dev_v3; means over runs.")
    table = summarise(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}_scoring_windows.md").write_text(header + "\n\n" + table + "\n")
    (args.out / f"{args.name}_scoring_windows.json").write_text(json.dumps(
        [{"group": r["group"], "seed": r["seed"], "windows": scored} for r, scored in results], indent=2))
    print(header + "\n\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
