"""``rawguard`` command line: a thin dispatcher over subcommand modules.

Each subcommand lives in its own module under :mod:`rawguard.cli` and exposes
``register(subparsers)`` (adds its parser and sets ``func``). Modules are imported lazily by name so
``rawguard --help`` stays fast and a broken optional extra cannot break unrelated commands.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from rawguard import __version__

# (command name, module under rawguard.cli, one-line help)
COMMANDS: list[tuple[str, str, str]] = [
    ("prepare", "prepare", "decode a corpus once into a fast memory-mapped cache"),
    ("train", "train", "train a detector on a prepared cache"),
    ("evaluate", "evaluate", "score a prepared set and report EER / min t-DCF with plots"),
    ("score", "score", "score audio files, folders or long recordings with a trained detector"),
    ("metrics", "metrics", "compute EER / min t-DCF from a score file"),
    ("fuse", "fuse", "fuse the score files of several detectors (logistic fusion fitted on dev)"),
    ("ensemble", "ensemble", "write several trained checkpoints to one ensemble file (mean calibrated log-odds)"),
    ("export", "export", "export a trained detector to ONNX"),
    ("serve", "serve", "serve a detector over HTTP: web page, scoring API and live streams"),
    ("stream", "stream", "score live audio from a pipe or a growing file, one JSON line per window"),
    ("demo", "demo", "run the whole pipeline on a built-in generated corpus"),
    ("synth-spoof", "synth_spoof", "make copy-synthesis spoofs of your own bona fide recordings"),
    ("train-vocoder", "train_vocoder", "train a small neural vocoder on bona fide speech (for synth-spoof --method neural)"),
    ("recipe", "recipe", "prepare, train and evaluate on a known corpus layout (ASVspoof, In-the-Wild, ...)"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rawguard",
        description="Detect spoofed and synthetic speech from the raw waveform.",
    )
    parser.add_argument("--version", action="version", version=f"rawguard {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name, help_text in COMMANDS:
        try:
            module = importlib.import_module(f"rawguard.cli.{module_name}")
        except ModuleNotFoundError as error:
            if error.name == f"rawguard.cli.{module_name}":
                continue  # command not built yet
            raise
        module.register(subparsers, name=name, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `rawguard metrics ... | head`: the reader left; exit quietly like other Unix tools.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
