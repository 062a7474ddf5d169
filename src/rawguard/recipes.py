"""Corpus recipes: the expected directory layout of each public corpus and the exact commands that
prepare, train and evaluate on it.

A recipe is data, not code: where each protocol and audio folder lives under the corpus root, which
training config to use, and which sets to evaluate. :func:`plan` turns a recipe plus a root folder
into the list of ``rawguard`` command lines (checking the layout first, with an error that names the
missing path), and :func:`run` executes them. ``rawguard recipe NAME --root DIR --out DIR`` is the
command-line face of the same functions; ``--dry-run`` prints the commands without running them, so
the recipe doubles as documentation.

Training always selects on the corpus's *dev* set; evaluation sets are only scored, never used for
selection.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path


class RecipeError(ValueError):
    """Unknown recipe, or a corpus folder that does not have the recipe's layout."""


@dataclass(frozen=True)
class DataSet:
    """One protocol of a corpus and where its audio lives (both relative to the corpus root)."""

    name: str
    protocol: str
    audio_dir: str | None = None
    format: str = "auto"
    asv_scores: str | None = None
    """ASVspoof 2019 ASV score file for the min t-DCF (eval sets that have one)."""


@dataclass(frozen=True)
class Recipe:
    """Layout and commands of one corpus."""

    name: str
    description: str
    train: DataSet
    dev: DataSet
    evaluations: tuple[DataSet, ...] = ()
    config: str = "asvspoof2019_la"
    """Training recipe: a file, or the name of a packaged one (``rawguard/configs/<name>.yaml``)."""
    reported: tuple[str, ...] = field(default=())
    """What the field reports on this corpus, for comparison (system: figure, source)."""


_LA19 = "LA/ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm"
_LA19_TRAIN = DataSet("train", f"{_LA19}.train.trn.txt", "LA/ASVspoof2019_LA_train/flac", "asvspoof2019")
_LA19_DEV = DataSet("dev", f"{_LA19}.dev.trl.txt", "LA/ASVspoof2019_LA_dev/flac", "asvspoof2019")

RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe(
            name="shared-corpus",
            description="the project's shared corpus (real speech, 15 TTS/VC/vocoder systems), dev = unseen speakers",
            train=DataSet("train", "protocols/train.txt", "flac", "asvspoof2019"),
            dev=DataSet("dev", "protocols/dev.txt", "flac", "asvspoof2019"),
            config="shared_corpus",
        ),
        Recipe(
            name="asvspoof2019-la",
            description="ASVspoof 2019 logical access (train/dev A01-A06, eval A07-A19 unseen)",
            train=_LA19_TRAIN,
            dev=_LA19_DEV,
            evaluations=(
                DataSet(
                    "eval",
                    f"{_LA19}.eval.trl.txt",
                    "LA/ASVspoof2019_LA_eval/flac",
                    "asvspoof2019",
                    asv_scores="LA/ASVspoof2019_LA_asv_scores/ASVspoof2019.LA.asv.eval.gi.trl.scores.txt",
                ),
            ),
            config="asvspoof2019_la",
            reported=(
                "RawNet2 (fixed sinc, Tak et al. 2021): 1.12 % EER, 0.0330 min t-DCF (eval)",
                "AASIST (Jung et al. 2022): 0.83 % EER, 0.0275 min t-DCF (eval)",
                "RawGAT-ST (mul): 1.06 % EER, 0.0335 min t-DCF (eval; reproduced by rawguard metrics on ../shared/metrics)",
            ),
        ),
        Recipe(
            name="asvspoof2021-la",
            description="ASVspoof 2021 LA eval (codecs + transmission channels), trained on ASVspoof 2019 LA train/dev",
            train=_LA19_TRAIN,
            dev=_LA19_DEV,
            evaluations=(
                DataSet("eval", "keys/LA/CM/trial_metadata.txt", "ASVspoof2021_LA_eval/flac", "asvspoof2021-la"),
            ),
            config="asvspoof2019_la",
            reported=("RawNet2 baseline B03 (ASVspoof 2021): 9.50 % EER, 0.4257 min t-DCF (LA eval)",),
        ),
        Recipe(
            name="asvspoof2021-df",
            description="ASVspoof 2021 DF eval (compressed deepfakes, unseen vocoders), trained on ASVspoof 2019 LA",
            train=_LA19_TRAIN,
            dev=_LA19_DEV,
            evaluations=(
                DataSet("eval", "keys/DF/CM/trial_metadata.txt", "ASVspoof2021_DF_eval/flac", "asvspoof2021-df"),
            ),
            config="asvspoof2019_la",
            reported=("RawNet2 baseline (ASVspoof 2021 DF): 22.38 % EER (DF eval)",),
        ),
        Recipe(
            name="asvspoof5",
            description="ASVspoof 5 track 1 (crowdsourced speech, codecs, adversarial attacks)",
            train=DataSet("train", "ASVspoof5.train.tsv", "flac_T", "asvspoof5"),
            dev=DataSet("dev", "ASVspoof5.dev.track_1.tsv", "flac_D", "asvspoof5"),
            evaluations=(DataSet("eval", "ASVspoof5.eval.track_1.tsv", "flac_E_eval", "asvspoof5"),),
            config="asvspoof5",
            reported=(
                "ASVspoof 5 track 1 baselines (challenge summary, 2024): RawNet2 about 36 % EER, AASIST about 29 % EER (eval);"
                " report minDCF / actDCF (rawguard metrics computes both)",
            ),
        ),
        Recipe(
            name="in-the-wild",
            description="In-the-Wild (Mueller et al. 2022) as an out-of-domain test set, trained on ASVspoof 2019 LA",
            train=_LA19_TRAIN,
            dev=_LA19_DEV,
            evaluations=(DataSet("in-the-wild", "release_in_the_wild/meta.csv", "release_in_the_wild", "in-the-wild"),),
            config="asvspoof2019_la",
            reported=("RawNet2 trained on ASVspoof 2019 LA (Mueller et al. 2022): about 34 % EER on In-the-Wild",),
        ),
    )
}
"""Every known recipe by name. The ASVspoof 2021 and In-the-Wild recipes expect the ASVspoof 2019 LA
folder (``LA/...``) under the same root as their own eval data, since they train on it."""


STAGES = ("prepare", "train", "evaluate")


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; :class:`RecipeError` listing the known names otherwise."""
    try:
        return RECIPES[name]
    except KeyError:
        raise RecipeError(f"unknown recipe {name!r}; known: {', '.join(sorted(RECIPES))}") from None


def _sets(recipe: Recipe) -> list[DataSet]:
    return [recipe.train, recipe.dev, *recipe.evaluations]


def check_layout(recipe: Recipe, root: Path, with_evaluations: bool = True) -> None:
    """Raise :class:`RecipeError` naming every expected protocol / audio folder missing under ``root``."""
    missing = []
    sets = _sets(recipe) if with_evaluations else [recipe.train, recipe.dev]
    for data_set in sets:
        for relative in (data_set.protocol, data_set.audio_dir, data_set.asv_scores):
            if relative is not None and not (root / relative).exists():
                missing.append(f"  {data_set.name}: {root / relative}")
    if missing:
        raise RecipeError(
            f"{root} does not have the {recipe.name} layout; missing:\n" + "\n".join(dict.fromkeys(missing))
        )


def plan(
    recipe: Recipe,
    root: Path,
    out: Path,
    stages: tuple[str, ...] = STAGES,
    config: str | None = None,
    overrides: tuple[str, ...] = (),
    workers: int | None = None,
) -> list[list[str]]:
    """The ``rawguard`` command lines (argv lists, without the program name) that run the recipe.

    Layout: ``OUT/caches/<set>``, ``OUT/run`` (``best.pt``, ``last.pt``, ...), ``OUT/eval/<set>``
    (scores, metrics.json, report.md and plots). The dev set is evaluated too.
    """
    unknown = [stage for stage in stages if stage not in STAGES]
    if unknown:
        raise RecipeError(f"unknown stage(s) {', '.join(unknown)}; stages are {', '.join(STAGES)}")
    commands: list[list[str]] = []
    caches = {data_set.name: out / "caches" / data_set.name for data_set in _sets(recipe)}
    run_dir = out / "run"
    if "prepare" in stages:
        for data_set in _sets(recipe):
            command = ["prepare", str(root / data_set.protocol), "--out", str(caches[data_set.name])]
            if data_set.audio_dir:
                command += ["--audio-dir", str(root / data_set.audio_dir)]
            command += ["--format", data_set.format]
            if workers:
                command += ["--workers", str(workers)]
            commands.append(command)
    if "train" in stages:
        command = ["train", "--train", str(caches["train"]), "--dev", str(caches["dev"]), "--out", str(run_dir)]
        command += ["--config", config or recipe.config]
        if overrides:
            command += ["--set", *overrides]
        commands.append(command)
    if "evaluate" in stages:
        for data_set in [recipe.dev, *recipe.evaluations]:
            command = ["evaluate", "--checkpoint", str(run_dir / "best.pt"), "--data", str(caches[data_set.name])]
            command += ["--out", str(out / "eval" / data_set.name)]
            if data_set.asv_scores:
                command += ["--asv-scores", str(root / data_set.asv_scores)]
            commands.append(command)
    return commands


def format_command(argv: list[str]) -> str:
    """A command line as a user would type it."""
    return shlex.join(["rawguard", *argv])


def run(commands: list[list[str]], echo=print) -> int:
    """Run the commands in order in child processes; stop at the first failure and return its code."""
    for argv in commands:
        echo(f"$ {format_command(argv)}")
        code = subprocess.call([sys.executable, "-m", "rawguard.cli", *argv])
        if code != 0:
            echo(f"recipe stopped: command exited with {code}")
            return code
    return 0
