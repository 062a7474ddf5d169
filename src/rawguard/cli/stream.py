"""``rawguard stream --checkpoint CKPT [FILE|-]``: live scoring of a pipe or a growing file."""

from __future__ import annotations

import argparse
import json
import os
import sys

from rawguard.cli.score import add_model_arguments, apply_scoring_options


def register(subparsers, name: str, help: str) -> None:
    parser = subparsers.add_parser(
        name,
        help=help,
        description="Score live audio window by window: raw PCM (16 kHz mono s16le unless told otherwise) or WAV from a "
        "pipe or a file that is still being written. One JSON line per window, flushed as soon as the window is "
        "complete: start, end, score, and the running probability_bonafide and decision. Example: "
        "arecord -f S16_LE -r 16000 | rawguard stream --checkpoint best.pt -",
    )
    parser.add_argument("source", nargs="?", default="-", metavar="FILE|-", help="file to follow, or - for standard input (default)")
    parser.add_argument("--rate", type=int, help="sample rate of raw PCM in Hz (default: 16000; WAV: its header)")
    parser.add_argument("--channels", type=int, help="channels of raw PCM, averaged (default: 1)")
    parser.add_argument("--format", choices=("s16le", "f32le"), help="sample format of raw PCM (default: s16le)")
    parser.add_argument("--idle-timeout", type=float, default=2.0, metavar="S",
                        help="a file: stop once it has not grown for this long (default: 2)")
    add_model_arguments(parser, ensembles=True)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rawguard.checkpoint import CheckpointError
    from rawguard.detector import Detector, DetectorError
    from rawguard.serve.sources import read_chunks
    from rawguard.serve.streaming import PcmFormat, StreamError, stream_messages

    try:
        window, hop = apply_scoring_options(args)
        if window is None:
            raise ValueError("--full-length: a stream is scored by windows")
        pcm = None
        if any(v is not None for v in (args.rate, args.channels, args.format)):
            pcm = PcmFormat(sample_rate=args.rate or 16000, channels=args.channels or 1, format=args.format or "s16le")
        detector = Detector.from_checkpoints(args.checkpoint, device=args.device, window=window, hop=hop, batch_size=args.batch_size)
        fd = sys.stdin.fileno() if args.source == "-" else os.open(args.source, os.O_RDONLY)
    except (CheckpointError, DetectorError, StreamError, ValueError, OSError) as error:
        print(f"rawguard stream: error: {error}", file=sys.stderr)
        return 2
    for note in detector.notes:
        print(f"rawguard stream: note: {note}", file=sys.stderr)
    count = 0
    try:
        for message in stream_messages(detector, read_chunks(fd, idle_timeout=args.idle_timeout), pcm):
            print(json.dumps(message), flush=True)
            count += 1
    except (StreamError, OSError) as error:
        print(f"rawguard stream: error: {args.source}: {error}", file=sys.stderr)
        return 1
    if count == 0:
        print(f"rawguard stream: error: {args.source}: no audio", file=sys.stderr)
        return 1
    print(f"rawguard stream: {count} windows", file=sys.stderr)
    return 0
