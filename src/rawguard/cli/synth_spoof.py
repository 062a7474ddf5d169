"""``rawguard synth-spoof IN_DIR OUT_DIR --method NAME``: copy-synthesis spoofs of your own recordings."""

from __future__ import annotations

import argparse
import sys

from rawguard.synth.vocoders import METHODS


def register(subparsers, name: str, help: str) -> None:
    parser = subparsers.add_parser(
        name,
        help=help,
        description=(
            "Resynthesise every audio file under IN_DIR with a vocoder-like method and write the copies as "
            "16 kHz FLAC under OUT_DIR with the same relative layout (plus OUT_DIR/synth_spoof.tsv). Copies "
            "keep the length and speech loudness of their source, so a detector trained on originals vs. "
            "copies has to learn the resynthesis artefacts. Unreadable files are reported and skipped."
        ),
        epilog="example: rawguard synth-spoof my_voice/ my_voice_lpc/ --method lpc",
    )
    parser.add_argument("in_dir", metavar="IN_DIR", help="folder of bona fide recordings (searched recursively)")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="where the copies go")
    parser.add_argument("--method", required=True, choices=list(METHODS),
                        help="griffin_lim: mel spectrogram + Griffin-Lim; lpc: LPC pulse/noise vocoder; "
                             "sinusoidal: peak-picking sinusoidal model; world: WORLD-like F0/envelope/aperiodicity")
    parser.add_argument("--seed", type=int, default=0, help="random seed (noise excitation, initial phases)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: CPU count, at most 4)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rawguard.synth.folder import SynthFolderError, synth_spoof_folder

    try:
        summary = synth_spoof_folder(args.in_dir, args.out_dir, args.method, seed=args.seed,
                                     workers=args.workers, progress=not args.quiet)
    except SynthFolderError as error:
        print(f"rawguard synth-spoof: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {len(summary.written)} {args.method} copies to {summary.out_dir}"
          + (f"; {len(summary.failed)} files skipped (see messages above)" if summary.failed else ""))
    return 1 if summary.failed else 0
