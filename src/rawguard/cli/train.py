"""``rawguard train --train CACHE --dev CACHE --out RUN [--model NAME] [--config YAML] [--set KEY=VALUE ...]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers, name: str, help: str) -> None:
    parser = subparsers.add_parser(
        name,
        help=help,
        description=(
            "Train a detector on a prepared train cache, selecting best.pt by EER on a prepared dev cache. "
            "Re-running the same command on an existing RUN continues it exactly from RUN/last.pt. "
            "Multi-GPU: torchrun --nproc_per_node N -m rawguard.cli train ... (see docs/training.md)."
        ),
        epilog="example: rawguard train --train cache/train --dev cache/dev --out runs/lite "
        "--config configs/shared_corpus.yaml --set optim.lr=3e-4 train.max_steps=2000",
    )
    parser.add_argument("--train", required=True, metavar="CACHE", help="train cache folder (rawguard prepare)")
    parser.add_argument("--dev", required=True, metavar="CACHE", help="dev cache folder: selects best.pt and drives early stopping")
    parser.add_argument("--out", required=True, metavar="RUN", help="run folder: config.yaml, last.pt, best.pt, metrics.jsonl, training_curves.png")
    parser.add_argument(
        "--monitor", nargs="+", action="extend", default=[], metavar="NAME=CACHE",
        help="more prepared sets scored at every dev evaluation and logged as NAME_eer in metrics.jsonl and "
             "the training curves (e.g. held-out spoofing systems or another corpus); watched, never selected on",
    )
    parser.add_argument("--model", metavar="NAME", help="model name (sets model.name; default from the config)")
    parser.add_argument(
        "--config", metavar="YAML", action="append",
        help="recipe file or packaged recipe name (shared_corpus, augment/none, ...); repeat to stack files, "
             "later ones overriding earlier ones; default: RUN/config.yaml when resuming, else the built-in defaults",
    )
    parser.add_argument(
        "--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
        help="override config keys, e.g. --set optim.lr=3e-4 train.max_steps=200 train.precision=bf16",
    )
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument("--resume", dest="resume", action="store_true", default=True,
                        help="continue RUN from RUN/last.pt if it exists (the default)")
    resume.add_argument("--no-resume", dest="resume", action="store_false",
                        help="refuse to start if RUN already holds a checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rawguard.checkpoint import CheckpointError
    from rawguard.config import ConfigError, load_config
    from rawguard.data.cache import CacheError
    from rawguard.train import CONFIG_FILE, RunExistsError, TrainingError, train

    config_path = args.config
    if not config_path and args.resume and (Path(args.out) / CONFIG_FILE).is_file():
        config_path = Path(args.out) / CONFIG_FILE
    overrides = ([f"model.name={args.model}"] if args.model else []) + list(args.overrides)
    try:
        monitor = _monitor_sets(args.monitor)
        config = load_config(config_path, overrides)
        result = train(config, args.train, args.dev, args.out, resume=args.resume, progress=not args.no_progress,
                       monitor=monitor)
    except (ConfigError, CacheError, CheckpointError, RunExistsError, TrainingError) as error:
        print(f"rawguard train: error: {error}", file=sys.stderr)
        return 1
    return result.exit_code


def _monitor_sets(specs: list[str]) -> dict[str, str]:
    """``["unseen=caches/unseen"]`` -> ``{"unseen": "caches/unseen"}``."""
    from rawguard.train import TrainingError

    sets: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise TrainingError(f"--monitor {spec!r}: expected NAME=CACHE, e.g. --monitor unseen=caches/dev_unseen")
        if name in sets:
            raise TrainingError(f"--monitor: the name {name!r} is given twice")
        sets[name] = path
    return sets
