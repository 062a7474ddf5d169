"""``rawguard synth-spoof (IN_DIR | --protocol FILE) OUT_DIR --method NAME``: copy-synthesis spoofs of
your own bona fide recordings."""

from __future__ import annotations

import argparse
import sys
import textwrap

from rawguard.copysynth.synth_spoof import ALL_METHODS
from rawguard.data.protocols import FORMATS


def register(subparsers, name: str, help: str) -> None:
    parser = subparsers.add_parser(
        name,
        help=help,
        usage=f"rawguard {name} [-h] (IN_DIR | --protocol FILE [--audio-dir DIR] [--format F]) OUT_DIR --method NAME "
              "[--vocoder FILE] [--seed S] [--workers N] [--quiet]",
        description=textwrap.fill(  # wrapped here: the raw formatter keeps the examples' line breaks
            "Resynthesise bona fide recordings with a vocoder-like method and write the copies as 16 kHz FLAC "
            "under OUT_DIR: every audio file under IN_DIR (same relative layout), or the bona fide entries of "
            "a protocol (--protocol; OUT_DIR/<utt_id>.flac). OUT_DIR/protocol.csv lists the copies (label spoof, "
            "system synth-<method>, the source's speaker) for `rawguard prepare`; OUT_DIR/synth_spoof.tsv "
            "lists source, output, method and seed. Copies keep the length and speech loudness of their "
            "source, so a detector trained on originals vs. copies has to learn the resynthesis artefacts. "
            "Unreadable files are reported and skipped. Re-running an interrupted command makes only the "
            "copies that are missing."
        ),
        epilog=(
            "examples:\n"
            "  rawguard synth-spoof my_voice/ my_voice_lpc/ --method lpc\n"
            "  rawguard synth-spoof --protocol corpus/protocols/train.txt --audio-dir corpus/flac synth/lpc --method lpc\n"
            "  rawguard train-vocoder caches/train --out vocoder/ --minutes 10\n"
            "  rawguard synth-spoof --protocol corpus/protocols/train.txt --audio-dir corpus/flac synth/neural "
            "--method neural --vocoder vocoder/vocoder.pt\n"
            "  rawguard prepare corpus/protocols/train.txt synth/lpc/protocol.csv "
            "--audio-dir corpus/flac --audio-dir - --out caches/train_plus"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # IN_DIR is optional so that `--protocol FILE OUT_DIR` parses; run() checks that exactly one is given.
    parser.add_argument("in_dir", metavar="IN_DIR", nargs="?", default=None,
                        help="folder of bona fide recordings (searched recursively)")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="where the copies go")
    parser.add_argument("--protocol", metavar="FILE", default=None,
                        help="instead of IN_DIR: copy the bona fide entries of this protocol (any format `rawguard "
                             "prepare` reads)")
    parser.add_argument("--audio-dir", metavar="DIR", default=None,
                        help="with --protocol: where its audio is (default: the protocol's folder)")
    parser.add_argument("--format", default=None, choices=["auto", *FORMATS],
                        help="with --protocol: its format (default: detect)")
    parser.add_argument("--method", required=True, choices=list(ALL_METHODS),
                        help="griffin_lim: mel spectrogram + Griffin-Lim; lpc: LPC pulse/noise vocoder; "
                             "sinusoidal: peak-picking sinusoidal model; world: WORLD-like F0/envelope/aperiodicity; "
                             "neural: a mel -> waveform neural vocoder trained with `rawguard train-vocoder` "
                             "(give --vocoder)")
    parser.add_argument("--vocoder", metavar="FILE", default=None,
                        help="with --method neural: the vocoder.pt that `rawguard train-vocoder` wrote")
    parser.add_argument("--seed", type=int, default=0, help="random seed (noise excitation, initial phases)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: CPU count, at most 4)")
    parser.add_argument("--system", metavar="NAME", default=None,
                        help="system name of the copies (default synth-METHOD; must start with synth-): give each "
                             "copy set its own, e.g. two neural vocoders, to put them in one cache")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run, parser=parser)


def _check_inputs(args: argparse.Namespace) -> None:
    """Exactly one of IN_DIR / --protocol; the protocol options only with --protocol (argparse errors, exit 2)."""
    if (args.in_dir is None) == (args.protocol is None):
        args.parser.error("give either IN_DIR or --protocol FILE (exactly one), then OUT_DIR"
                          if args.in_dir is None else f"give either IN_DIR ({args.in_dir}) or --protocol, not both")
    if args.protocol is None and (args.audio_dir is not None or args.format is not None):
        args.parser.error("--audio-dir and --format go with --protocol (IN_DIR is searched for audio files itself)")


def run(args: argparse.Namespace) -> int:
    from rawguard.data.protocols import ProtocolError
    from rawguard.copysynth.synth_spoof import SynthFolderError, synth_spoof_folder, synth_spoof_protocol

    _check_inputs(args)
    options = dict(seed=args.seed, workers=args.workers, progress=not args.quiet, vocoder=args.vocoder,
                   system=args.system)
    try:
        if args.protocol is not None:
            summary = synth_spoof_protocol(args.protocol, args.out_dir, args.method, audio_dir=args.audio_dir,
                                           format=args.format or "auto", **options)
        else:
            summary = synth_spoof_folder(args.in_dir, args.out_dir, args.method, **options)
    except (SynthFolderError, ProtocolError) as error:
        print(f"rawguard synth-spoof: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {len(summary.written)} {args.method} copies to {summary.out_dir}"
          + (f" ({len(summary.kept)} already done)" if summary.kept else "")
          + (f"; {len(summary.failed)} files skipped (see messages above)" if summary.failed else "")
          + f"; protocol: {summary.protocol}")
    return 1 if summary.failed else 0
