"""Bona fide rejection of finished recipe runs, by kind of bona fide speech in dev_v3.

The leave-family-out yardstick reports how much emotional, broadcast, non-English and read bona fide
speech a held-out fold's model rejects. This does the same for whole ``rawguard recipe
shared-corpus`` runs (every family in training): it reads each run's dev_v3 score file
(``OUT/eval/dev_v3/scores.txt``), takes the EER threshold of all bona fide against all spoofs (the
dev threshold) and reports the share of each subset scored at or below it.

    python benchmarks/recipe_rejection.py runs/recipe_v3 runs/recipe_v3_half_crops \\
        --out benchmarks/results/accuracy/recipe_v3_rejection.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from leave_family_out import CORPUS, SUBSETS, bonafide_rejection

DEV_SCORES = Path("eval") / "dev_v3" / "scores.txt"


def speakers_of(protocol: Path, audio_dir: Path) -> dict[str, str]:
    """``{utterance id: speaker id}`` of a protocol, read by rawguard's protocol reader."""
    from rawguard.data.protocols import read_protocol

    return {item.utt_id: item.speaker for item in read_protocol(protocol, audio_dir=audio_dir)}


def run_rejection(run: Path, speakers: dict[str, str]) -> dict:
    """Rejection by subset for one recipe output folder (its dev_v3 scores against every spoof)."""
    from rawguard.scorefiles import read_cm_scores

    path = run / DEV_SCORES
    if not path.is_file():
        raise SystemExit(f"{run}: no {DEV_SCORES} (run the recipe's evaluate stage first)")
    table = read_cm_scores(path)
    missing = [str(utt) for utt in table.utt_ids if utt not in speakers]
    if missing:
        raise SystemExit(f"{path}: {len(missing)} utterance(s) not in the dev_v3 protocol, e.g. {missing[0]!r}")
    result = bonafide_rejection(table.scores, table.labels, table.attacks, [speakers[u] for u in table.utt_ids],
                                held_out=[])
    return {"run": str(run), **result}


def summarise(results: list[dict]) -> str:
    """A markdown table: one row per run, rejection % per subset (with the subsets' sizes)."""
    sizes = results[0]["n_bonafide_subset"]
    header = "| run | dev threshold | " + " | ".join(f"{name} (n={sizes[name]}) %" for name in SUBSETS) + " |"
    lines = [header, "|---|---:|" + "---:|" * len(SUBSETS)]
    for result in results:
        cells = [f"{100 * result['bonafide_rejection'][name]:.1f}" for name in SUBSETS]
        lines.append(f"| {result['run']} | {result['dev_threshold']:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="recipe output folders (OUT of rawguard recipe)")
    parser.add_argument("--protocol", type=Path, default=CORPUS / "protocols" / "dev_v3.txt")
    parser.add_argument("--audio-dir", type=Path, default=CORPUS / "flac", help="the protocol's audio folder")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    speakers = speakers_of(args.protocol, args.audio_dir)
    results = [run_rejection(run, speakers) for run in args.runs]
    print(summarise(results))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
