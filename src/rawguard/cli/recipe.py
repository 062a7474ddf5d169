"""``rawguard recipe NAME --root DIR --out DIR``: prepare, train and evaluate on a known corpus."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rawguard.recipes import RECIPES, STAGES, RecipeError, check_layout, format_command, get_recipe, plan, run


def register(subparsers, name: str = "recipe", help: str = "") -> argparse.ArgumentParser:
    lines = "\n".join(f"  {recipe.name:<16} {recipe.description}" for recipe in RECIPES.values())
    parser = subparsers.add_parser(
        name, help=help, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Run a corpus recipe: check the corpus layout, then prepare every set, train (selecting on dev), "
            "and evaluate on dev and the eval sets. --dry-run prints the exact commands instead.\n\n"
            f"recipes:\n{lines}\n\nLayouts and reported results: docs/recipes.md"
        ),
    )
    parser.add_argument("name", choices=sorted(RECIPES), metavar="NAME", help="recipe name (see above)")
    parser.add_argument("--root", required=True, type=Path, help="corpus root folder (layout in docs/recipes.md)")
    parser.add_argument("--out", required=True, type=Path, help="output folder: caches/, run/, eval/")
    parser.add_argument("--stages", default=",".join(STAGES),
                        help=f"comma-separated subset of {','.join(STAGES)} (default: all)")
    parser.add_argument("--config", default=None, help="training config (default: the recipe's)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="training config overrides")
    parser.add_argument("--workers", type=int, default=None, help="decoder processes for prepare")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.set_defaults(func=main)
    return parser


def main(args: argparse.Namespace) -> int:
    stages = tuple(stage.strip() for stage in args.stages.split(",") if stage.strip())
    try:
        recipe = get_recipe(args.name)
        commands = plan(recipe, args.root, args.out, stages=stages, config=args.config,
                        overrides=tuple(args.set), workers=args.workers)
        if not args.dry_run and "prepare" in stages:
            check_layout(recipe, args.root)
    except RecipeError as error:
        print(f"rawguard recipe: error: {error}", file=sys.stderr)
        return 2
    if args.dry_run:
        for command in commands:
            print(format_command(command))
        return 0
    return run(commands)
