"""``rawguard prepare PROTOCOL... --audio-dir DIR --out CACHE``: decode a corpus once into a cache."""

from __future__ import annotations

import argparse
import sys
import textwrap

from rawguard.data.cache import REJECTED_FILE, CacheError
from rawguard.data.prepare import prepare_cache
from rawguard.data.protocols import FORMATS, read_protocols

DEFAULT_AUDIO_DIR = "-"
"""``--audio-dir -``: that protocol's default (its own folder), when the others need one."""


def register(subparsers, name: str = "prepare", help: str = "") -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        name, help=help, description=textwrap.fill(  # wrapped here: the raw formatter keeps the examples' line breaks
            "Decode every file of one or more protocols once (in parallel, resumable) into ONE cache folder: "
            "int16 samples as one memory-mapped file plus an index, items in the order the protocols are "
            f"given. Unreadable files are listed in CACHE/{REJECTED_FILE} and do not stop the run. Re-running "
            "an interrupted command resumes it."
        ),
        epilog=(
            "examples:\n"
            "  rawguard prepare corpus/protocols/train.txt --audio-dir corpus/flac --out caches/train\n"
            "  # bona fide + spoof corpus, plus copy-synthesis spoofs made by `rawguard synth-spoof --protocol`:\n"
            "  rawguard prepare corpus/protocols/train.txt synth/lpc/protocol.csv "
            "--audio-dir corpus/flac --audio-dir - --out caches/train_plus"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("protocol", nargs="+",
                        help="protocol files, CSVs, or folders with bonafide/ + spoof/ (or real/ + fake/); "
                             "utterance ids must be unique across them")
    parser.add_argument("--audio-dir", action="append", default=None, metavar="DIR",
                        help="where the audio is: ASVspoof ids are looked up here (<id>.flac, .wav, ...), CSV paths "
                             "are relative to it (default: the protocol's folder). Give it once for all protocols, "
                             f"or once per protocol in order, '{DEFAULT_AUDIO_DIR}' meaning that protocol's default")
    parser.add_argument("--out", required=True, help="cache folder to create or resume")
    parser.add_argument("--format", default="auto", choices=["auto", *FORMATS],
                        help="format of every protocol (default: detect each one's)")
    parser.add_argument("--workers", type=int, default=None, help="decoder processes (default: all cores)")
    parser.add_argument("--max-duration", type=float, default=None,
                        help="reject clips longer than this many seconds (default: no limit)")
    parser.add_argument("--no-replace", action="store_true",
                        help="fail if --out holds a cache of a different protocol or options (default: replace it)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def audio_dirs_for(protocols: list[str], given: list[str] | None) -> list[str | None]:
    """One audio folder (``None``: the default) per protocol from the repeated ``--audio-dir``.

    Raises:
        ValueError: ``--audio-dir`` given neither 0 times, once, nor once per protocol.
    """
    if not given:
        return [None] * len(protocols)
    if len(given) == 1:
        given = given * len(protocols)
    elif len(given) != len(protocols):
        raise ValueError(f"--audio-dir given {len(given)} times for {len(protocols)} protocols: give it once (for "
                         f"all of them) or once per protocol, in order ('{DEFAULT_AUDIO_DIR}' for a protocol's "
                         "own folder)")
    return [None if d == DEFAULT_AUDIO_DIR else d for d in given]


def run(args: argparse.Namespace) -> int:
    try:
        audio_dirs = audio_dirs_for(args.protocol, args.audio_dir)
        items = read_protocols(args.protocol, audio_dirs, format=args.format)
    except ValueError as error:  # a wrong --audio-dir count, or a ProtocolError (a ValueError) naming file and line
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
