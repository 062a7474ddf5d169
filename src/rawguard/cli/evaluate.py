"""``rawguard evaluate --checkpoint CKPT [--checkpoint CKPT ...] --data CACHE --out DIR``."""

from __future__ import annotations

import argparse
import sys

from rawguard.cli.score import add_model_arguments, apply_scoring_options


def register(subparsers, name: str, help: str) -> None:
    parser = subparsers.add_parser(
        name,
        help=help,
        description="Score every utterance of a prepared cache and write DIR/scores.txt (official CM format), "
        "metrics.json, report.md and plots (det.png, score_hist.png, per_attack_eer.png, reliability.png). "
        "Repeat --checkpoint to evaluate several checkpoints as one ensemble of their calibrated log-odds.",
    )
    parser.add_argument("--data", required=True, metavar="CACHE", help="prepared cache folder (rawguard prepare)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--asv-scores", metavar="FILE", help="ASVspoof ASV score file: adds the min t-DCF")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16", "auto"], help="inference precision")
    add_model_arguments(parser, ensembles=True)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rawguard.checkpoint import CheckpointError
    from rawguard.data.cache import CacheError
    from rawguard.evaluate import evaluate
    from rawguard.report import format_table

    try:
        window, hop = apply_scoring_options(args)
        metrics = evaluate(
            args.checkpoint, args.data, args.out, asv_scores=args.asv_scores, batch_size=args.batch_size,
            device=args.device, precision=args.precision, window=window, hop=hop,
        )
    except (CheckpointError, CacheError, ValueError) as error:  # DetectorError, ScoringError, MetricsError, ScoreFileError are ValueErrors
        print(f"rawguard evaluate: error: {error}", file=sys.stderr)
        return 1
    print(format_table(metrics))
    print(f"\nwrote {args.out}/scores.txt, metrics.json, report.md and plots")
    return 0
