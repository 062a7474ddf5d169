"""``rawguard recipe NAME --root DIR --out DIR``: prepare, train and evaluate on a known corpus."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from rawguard.copysynth.synth_spoof import ALL_METHODS
from rawguard.recipes import (
    RECIPES,
    STAGES,
    RecipeError,
    RecipeStepError,
    check_layout,
    get_recipe,
    parse_copy_synthesis,
    plan,
    run,
    with_protocols,
)


def register(subparsers, name: str = "recipe", help: str = "") -> argparse.ArgumentParser:
    lines = "\n".join(f"  {recipe.name:<16} {recipe.description}" for recipe in RECIPES.values())
    synth = "\n".join(f"  {recipe.name:<16} {', '.join(recipe.copy_synthesis)}"
                      for recipe in RECIPES.values() if recipe.copy_synthesis)
    parser = subparsers.add_parser(
        name, help=help, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Run a corpus recipe: check the corpus layout, then prepare every set, train (selecting on dev), "
            "and evaluate on dev and the eval sets, in this process; a re-run resumes where it stopped. "
            "--dry-run prints the equivalent rawguard commands instead.\n\n"
            f"recipes:\n{lines}\n\n"
            "Copy synthesis: before preparing the train set, `rawguard synth-spoof` resynthesises its bona fide\n"
            "clips with each method into OUT/synth/<method>, and those copies join the train cache as extra\n"
            "spoofs (dev and eval sets are never resynthesised). On by default for:\n"
            f"{synth}\n"
            "the other recipes have none; --copy-synthesis sets the methods for any recipe, none turns it off.\n"
            "The neural method first trains a small vocoder on the train set's bona fide clips (OUT/vocoder,\n"
            "--vocoder-steps steps, at most --vocoder-minutes).\n\n"
            "Layouts, reported results and what copy synthesis gave: docs/recipes.md"
        ),
    )
    parser.add_argument("name", choices=sorted(RECIPES), metavar="NAME", help="recipe name (see above)")
    parser.add_argument("--root", required=True, type=Path, help="corpus root folder (layout in docs/recipes.md)")
    parser.add_argument("--out", required=True, type=Path, help="output folder: synth/, caches/, run/, eval/")
    parser.add_argument("--protocols", default=None, metavar="VERSION",
                        help="protocol version of the corpus (shared-corpus: v3, the default, or v2 with the v2 "
                             "recipe's budget)")
    parser.add_argument("--stages", default=",".join(STAGES),
                        help=f"comma-separated subset of {','.join(STAGES)} (default: all)")
    parser.add_argument("--config", default=None, help="training config (default: the recipe's)")
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="training config overrides (repeatable)")
    parser.add_argument("--copy-synthesis", default=None, metavar="METHODS",
                        help=f"comma-separated resynthesis methods ({','.join(ALL_METHODS)}) whose copies of the train "
                             "bona fide clips are added to the train cache, or 'none' (default: the recipe's, "
                             "see above)")
    parser.add_argument("--vocoder-steps", type=int, default=None, metavar="N",
                        help="training steps of the neural copy-synthesis vocoder (default: the recipe's, 5000)")
    parser.add_argument("--vocoder-minutes", type=float, default=None, metavar="M",
                        help="wall-clock cap of that training (default: the recipe's, 9)")
    parser.add_argument("--minutes", type=float, default=None, metavar="M",
                        help="wall-clock budget of the whole run: each model starts training with its share of "
                             "what the data stages leave, at most its own train.max_minutes, so that a slow machine "
                             "trains shorter schedules instead of running over (default: the recipe's, 45 for "
                             "shared-corpus; 0: none)")
    parser.add_argument("--workers", type=int, default=None, help="processes for prepare and synth-spoof")
    parser.add_argument("--device", default=None,
                        help="cpu, cuda, cuda:N for train-vocoder, train and evaluate (default: train uses CUDA when "
                             "available, the vocoder and evaluation the CPU)")
    parser.add_argument("--single-model", action="store_true",
                        help="train and evaluate OUT/run's model alone, without the recipe's further ensemble "
                             "members (shared-corpus: OUT/run_2d)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.set_defaults(func=main, parser=parser)
    return parser


def main(args: argparse.Namespace) -> int:
    stages = tuple(stage.strip() for stage in args.stages.split(",") if stage.strip())
    if args.vocoder_minutes is not None and args.vocoder_minutes <= 0:
        args.parser.error("--vocoder-minutes must be positive")
    if args.vocoder_steps is not None and args.vocoder_steps < 1:
        args.parser.error("--vocoder-steps must be positive")
    if args.minutes is not None and args.minutes < 0:
        args.parser.error("--minutes must be >= 0")
    try:
        recipe = with_protocols(get_recipe(args.name), args.protocols)
        if args.single_model:
            recipe = replace(recipe, members=())
        copy_synthesis = None if args.copy_synthesis is None else parse_copy_synthesis(args.copy_synthesis)
        steps = plan(recipe, args.root, args.out, stages=stages, config=args.config,
                     overrides=tuple(args.set), workers=args.workers, copy_synthesis=copy_synthesis,
                     vocoder_minutes=args.vocoder_minutes, vocoder_steps=args.vocoder_steps, device=args.device)
        if args.dry_run:
            for step in steps:
                print(step.command)
            return 0
        if "prepare" in stages:
            check_layout(recipe, args.root)
        run(steps, echo=lambda text: print(text, flush=True),
            minutes=recipe.minutes if args.minutes is None else args.minutes)
        evaluation = next((step.argv for step in steps if step.argv[0] == "evaluate"), None)
        if evaluation:  # the model the recipe evaluated (one checkpoint or an ensemble), as a scoring command
            checkpoints = [evaluation[i + 1] for i, arg in enumerate(evaluation) if arg == "--checkpoint"]
            print("\nthe recipe's model: rawguard score " + " ".join(f"--checkpoint {path}" for path in checkpoints)
                  + " PATH...")
    except RecipeError as error:
        print(f"rawguard recipe: error: {error}", file=sys.stderr)
        return 1 if isinstance(error, RecipeStepError) else 2  # 2: the command line or the corpus layout
    return 0
