"""``rawguard train-vocoder CACHE --out DIR``: a small neural vocoder for neural copy-synthesis spoofs."""

from __future__ import annotations

import argparse
import sys


def register(subparsers, name: str, help: str) -> None:
    parser = subparsers.add_parser(
        name,
        help=help,
        description="Train a small HiFi-GAN-style mel -> waveform vocoder on the bona fide clips of a prepared "
                    "cache (`rawguard prepare`) and write DIR/vocoder.pt, DIR/log.jsonl and DIR/vocoder.png "
                    "(spectrograms of a clip and its copy). `rawguard synth-spoof --method neural --vocoder "
                    "DIR/vocoder.pt` then makes neural copy-synthesis spoofs of bona fide recordings. Re-running "
                    "with the same DIR resumes; the time budget counts the earlier run.",
        epilog="example: rawguard train-vocoder caches/train --out vocoder/ --minutes 10",
    )
    parser.add_argument("cache", metavar="CACHE", help="prepared cache; only its bona fide clips are used")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (vocoder.pt, log.jsonl, vocoder.png)")
    parser.add_argument("--minutes", type=float, default=10.0, help="wall-clock training budget (default: 10)")
    parser.add_argument("--max-steps", type=int, default=100_000, help="stop earlier after this many steps")
    parser.add_argument("--batch-size", type=int, default=8, help="segments of 8,192 samples per step (default: 8)")
    parser.add_argument("--upsample", choices=["transposed", "nearest"], default="transposed",
                        help="generator upsampling: transposed convolutions (HiFi-GAN-like, default) or sample "
                             "repetition + convolution (learns more slowly; see BENCHMARKS.md)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu); vocoder.pt loads on either")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run, parser=parser)


def run(args: argparse.Namespace) -> int:
    from rawguard.copysynth.neural import VocoderConfig, VocoderError, VocoderTrainConfig, train_vocoder
    from rawguard.data.cache import CacheError

    if args.minutes <= 0 or args.max_steps < 1 or args.batch_size < 1:
        args.parser.error("--minutes, --max-steps and --batch-size must be positive")
    config = VocoderTrainConfig(minutes=args.minutes, max_steps=args.max_steps, batch_size=args.batch_size,
                                seed=args.seed, threads=args.threads, device=args.device,
                                model=VocoderConfig(upsample=args.upsample))
    try:
        summary = train_vocoder(args.cache, args.out, config, progress=not args.quiet)
    except (VocoderError, CacheError) as error:
        print(f"rawguard train-vocoder: error: {error}", file=sys.stderr)
        return 2
    what = "trained a vocoder" if summary.new_steps else "vocoder already trained (budget spent, file left as it was)"
    print(f"{what} on {summary.clips} bona fide clips: {summary.steps} steps in {summary.minutes:.1f} min, "
          f"final multi-resolution STFT loss {summary.loss:.3f} -> {summary.path}")
    return 0
