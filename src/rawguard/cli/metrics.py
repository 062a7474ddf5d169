"""``rawguard metrics SCOREFILE [--asv-scores FILE] [--protocol FILE] [--json]``."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers, name: str, help: str) -> None:
    parser = subparsers.add_parser(
        name,
        help=help,
        description="EER, min t-DCF (with ASV scores), ASVspoof 5 minDCF/actDCF/Cllr and per-attack EER "
        "of a CM score file ('UTT ATTACK KEY SCORE', or 'UTT SCORE' with --protocol; .gz read transparently).",
    )
    parser.add_argument("score_file", metavar="SCOREFILE", help="CM score file, higher = more bona fide")
    parser.add_argument("--asv-scores", metavar="FILE", help="ASV score file 'KEY ASV_KEY SCORE' for the ASVspoof 2019 min t-DCF")
    parser.add_argument("--protocol", metavar="FILE", help="protocol giving labels and attacks for a two-column score file")
    parser.add_argument("--audio-dir", metavar="DIR", help="audio folder of --protocol (its reader checks ids against it)")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON instead of a table")
    parser.add_argument("--bootstrap", type=int, default=0, metavar="N",
                        help="add a 95 %% bootstrap interval of the EER from N resamples (0 = none; ~1000 is usual)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rawguard.scorefiles import read_asv_scores, read_cm_scores
    from rawguard.metrics import MetricsError, summarize
    from rawguard.report import format_table

    try:
        table = read_cm_scores(args.score_file, protocol=args.protocol, audio_dir=args.audio_dir)
        asv = read_asv_scores(args.asv_scores) if args.asv_scores else None
        metrics = summarize(table.scores, table.labels, table.attacks, asv_scores=asv, bootstrap=args.bootstrap)
    except (MetricsError, ValueError) as error:  # ProtocolError is a ValueError too
        print(f"rawguard metrics: error: {error}", file=sys.stderr)
        return 1
    if table.n_unscored:
        print(f"rawguard metrics: note: {table.n_unscored} protocol trials have no score and are left out", file=sys.stderr)
    if args.json:
        print(json.dumps({"score_file": str(args.score_file), **metrics}, indent=2))
    else:
        print(f"scores: {args.score_file}")
        print(format_table(metrics))
    return 0
