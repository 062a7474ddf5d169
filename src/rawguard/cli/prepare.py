"""``rawguard prepare PROTOCOL --audio-dir DIR --out CACHE``: decode a corpus once into a cache."""

from __future__ import annotations

import argparse
import sys

from rawguard.data.cache import REJECTED_FILE, CacheError, prepare_cache
from rawguard.data.protocols import FORMATS, ProtocolError, read_protocol


def register(subparsers, name: str = "prepare", help: str = "") -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        name, help=help, description=(
            "Decode every file of a protocol once (in parallel, resumable) into a cache folder: int16 "
            "samples as one memory-mapped file plus an index. Unreadable files are listed in "
            f"CACHE/{REJECTED_FILE} and do not stop the run. Re-running an interrupted command resumes it."
        ),
    )
    parser.add_argument("protocol", help="protocol file, CSV, or a folder with bonafide/ + spoof/ (or real/ + fake/)")
    parser.add_argument("--audio-dir", default=None,
                        help="where the audio is: ASVspoof ids are looked up here (<id>.flac, .wav, ...), CSV paths "
                             "are relative to it (default: the protocol's folder)")
    parser.add_argument("--out", required=True, help="cache folder to create or resume")
    parser.add_argument("--format", default="auto", choices=["auto", *FORMATS], help="protocol format (default: detect)")
    parser.add_argument("--workers", type=int, default=None, help="decoder processes (default: all cores)")
    parser.add_argument("--max-duration", type=float, default=None,
                        help="reject clips longer than this many seconds (default: no limit)")
    parser.add_argument("--no-replace", action="store_true",
                        help="fail if --out holds a cache of a different protocol or options (default: replace it)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        items = read_protocol(args.protocol, audio_dir=args.audio_dir, format=args.format)
    except ProtocolError as error:
        print(f"rawguard prepare: error: {error}", file=sys.stderr)
        return 2
    try:
        summary = prepare_cache(items, args.out, workers=args.workers, progress=not args.quiet,
                                max_duration=args.max_duration, replace=not args.no_replace)
    except CacheError as error:
        print(f"rawguard prepare: error: {error}", file=sys.stderr)
        return 1
    print(summary.format())
    if summary.rejected:
        print(f"rawguard prepare: warning: {summary.rejected} of {len(items)} files rejected; "
              f"reasons in {summary.out_dir / REJECTED_FILE}", file=sys.stderr)
    return 0
