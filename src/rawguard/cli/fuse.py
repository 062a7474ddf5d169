"""``rawguard fuse SCORES... --dev DEV_SCORES... --out FUSED``: logistic score fusion fitted on dev."""

from __future__ import annotations

import argparse
import sys


def register(subparsers, name: str, help: str) -> None:
    parser = subparsers.add_parser(
        name,
        help=help,
        description="Fuse the score files of several detectors on one set: a logistic regression is fitted on "
        "the same detectors' dev score files (given in the same order) and the fused calibrated log-likelihood "
        "ratios are written in the official CM format ('UTT ATTACK KEY SCORE'), with FUSED.fusion.json beside "
        "them (weights, every system's EER and the fusion's).",
    )
    parser.add_argument("scores", nargs="+", metavar="SCORES", help="score files of the set to fuse, one per detector")
    parser.add_argument("--dev", nargs="+", required=True, metavar="DEV_SCORES",
                        help="the same detectors' dev score files, in the same order (labelled: 4 columns or --dev-protocol)")
    parser.add_argument("--out", required=True, metavar="FUSED", help="fused score file to write")
    parser.add_argument("--protocol", metavar="FILE", help="protocol for two-column SCORES files ('UTT SCORE')")
    parser.add_argument("--dev-protocol", metavar="FILE", help="protocol for two-column DEV_SCORES files")
    parser.add_argument("--ridge", type=float, default=0.01, help="slope penalty on standardised scores (default 0.01)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rawguard.fusion import fuse_score_files
    from rawguard.metrics import MetricsError

    try:
        summary = fuse_score_files(args.scores, args.dev, args.out, protocol=args.protocol,
                                   dev_protocol=args.dev_protocol, ridge=args.ridge)
    except (MetricsError, ValueError) as error:  # ProtocolError is a ValueError too
        print(f"rawguard fuse: error: {error}", file=sys.stderr)
        return 1

    def percent(value: float | None) -> str:
        return "-" if value is None else f"{value:6.2f} %"

    print(f"{'system':<40} {'weight':>9} {'dev EER':>9} {'EER':>9}")
    for system, weight in zip(summary["systems"], summary["fusion"]["weights"]):
        print(f"{system['scores'][-40:]:<40} {weight:9.4f} {percent(system['dev_eer']):>9} {percent(system['eer']):>9}")
    fused = summary["fused"]
    print(f"{'fused (dev EER in-sample)':<40} {'':>9} {percent(fused['dev_eer_in_sample']):>9} {percent(fused['eer']):>9}")
    print(f"wrote {fused['trials']} fused scores to {args.out} (weights in {args.out}.fusion.json)")
    return 0
