"""``rawguard ensemble CHECKPOINT CHECKPOINT... --out FILE``: several trained models in one file."""

from __future__ import annotations

import argparse
import sys


def register(subparsers, name: str, help: str) -> None:
    parser = subparsers.add_parser(
        name,
        help=help,
        description="Write several trained checkpoints (each selected on dev, so calibrated) to one ensemble file. "
        "Every command that takes --checkpoint (score, evaluate, serve, stream, export) loads it as one detector: "
        "the mean of the members' dev-calibrated log-odds, as if each checkpoint had been given with its own "
        "--checkpoint. Only what scoring needs is kept (weights, configs, dev selection), not the optimiser state.",
    )
    parser.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT",
                        help="two or more trained checkpoints (best.pt)")
    parser.add_argument("--out", required=True, metavar="FILE", help="ensemble file to write (e.g. ensemble.pt)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rawguard.checkpoint import CheckpointError
    from rawguard.detector import DetectorError
    from rawguard.ensemble import save_ensemble

    try:
        path = save_ensemble(args.checkpoints, args.out)
    except (CheckpointError, DetectorError) as error:
        print(f"rawguard ensemble: error: {error}", file=sys.stderr)
        return 1
    print(f"wrote an ensemble of {len(args.checkpoints)} checkpoints to {path}; score with: "
          f"rawguard score --checkpoint {path} PATH...")
    return 0
