"""Logistic fusion of published ASVspoof 2019 LA countermeasures, fitted and judged on disjoint trials.

The shared score files (../shared/metrics) hold eval-set scores only, so the trials are cut in two
by utterance id: fusion weights are fitted on one half ("dev") and the EERs reported on the other.

    python benchmarks/fusion_published.py --out benchmarks/results/fusion/published_2019la.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
from pathlib import Path

from rawguard.fusion import fuse_score_files

METRICS = Path(__file__).resolve().parents[1].parent / "shared" / "metrics"
SETS = {
    "RawGAT-ST (mul) + RawBMamba": ["rawgat_mul.txt.gz", "rawbmamba_19LA.txt.gz"],
    "RawGAT-ST (mul, add, cat)": ["rawgat_mul.txt.gz", "rawgat_add.txt.gz", "rawgat_cat.txt.gz"],
    "all four": ["rawgat_mul.txt.gz", "rawgat_add.txt.gz", "rawgat_cat.txt.gz", "rawbmamba_19LA.txt.gz"],
}


def split_halves(name: str, folder: Path) -> tuple[Path, Path]:
    """Write the even and odd trials (sorted by utterance id) of a published file as two score files."""
    with gzip.open(METRICS / name, "rt") as handle:
        lines = sorted(line for line in handle if line.strip())
    stem = name.split(".")[0]
    dev, held_out = folder / f"{stem}.dev.txt", folder / f"{stem}.held_out.txt"
    dev.write_text("".join(lines[0::2]))
    held_out.write_text("".join(lines[1::2]))
    return dev, held_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/fusion/published_2019la.json"))
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        halves = {name: split_halves(name, folder) for name in sorted({n for names in SETS.values() for n in names})}
        for label, names in SETS.items():
            summary = fuse_score_files([halves[n][1] for n in names], [halves[n][0] for n in names], folder / "fused.txt")
            results[label] = {
                "systems": {n: round(s["eer"], 3) for n, s in zip(names, summary["systems"])},
                "weights": [round(w, 4) for w in summary["fusion"]["weights"]],
                "fused_eer": round(summary["fused"]["eer"], 3),
                "trials_held_out": summary["fused"]["trials"],
            }
            best = min(results[label]["systems"].values())
            print(f"{label:<32} best single {best:5.2f} %  fused {results[label]['fused_eer']:5.2f} %")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
