"""Corpus recipes: the expected directory layout of each public corpus and the exact commands that
prepare, train and evaluate on it.

A recipe is data, not code: where each protocol and audio folder lives under the corpus root, which
training config to use, and which sets to evaluate. :func:`plan` turns a recipe plus a root folder
into the list of ``rawguard`` command lines (checking the layout first, with an error that names the
missing path), and :func:`run` executes them. ``rawguard recipe NAME --root DIR --out DIR`` is the
command-line face of the same functions; ``--dry-run`` prints the commands without running them, so
the recipe doubles as documentation.

Training always selects on the corpus's *dev* set; evaluation sets are only scored, never used for
selection. A recipe may add copy-synthesis spoofs (``rawguard synth-spoof``) of the *train* set's
bona fide clips to the train cache; dev and eval sets are never resynthesised, since copies of their
speakers in training would leak them.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from rawguard.cli.prepare import DEFAULT_AUDIO_DIR
from rawguard.synth.folder import ALL_METHODS, NEURAL
from rawguard.synth.folder import PROTOCOL as PROTOCOL_CSV


class RecipeError(ValueError):
    """Unknown recipe, or a corpus folder that does not have the recipe's layout."""


def check_copy_synthesis(methods: tuple[str, ...]) -> None:
    """Raise :class:`RecipeError` for an unknown or repeated resynthesis method, naming it and the valid ones."""
    unknown = [method for method in methods if method not in ALL_METHODS]
    if unknown:
        raise RecipeError(f"unknown copy-synthesis method(s) {', '.join(map(repr, unknown))}; "
                          f"methods are {', '.join(ALL_METHODS)} (or none)")
    repeated = sorted({method for method in methods if methods.count(method) > 1})
    if repeated:  # two copies of one method would give the train cache duplicate utterance ids
        raise RecipeError(f"copy-synthesis method(s) {', '.join(map(repr, repeated))} given more than once")


def parse_copy_synthesis(text: str) -> tuple[str, ...]:
    """``"lpc,world"`` -> ``("lpc", "world")``; ``"none"`` or ``""`` -> ``()``.

    Raises:
        RecipeError: as :func:`check_copy_synthesis`.
    """
    if text.strip().lower() in ("", "none"):
        return ()
    methods = tuple(method.strip() for method in text.split(",") if method.strip())
    check_copy_synthesis(methods)
    return methods


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
class Protocols:
    """Another version of a corpus's protocols: what trains, what selects, what is only scored, and
    the training config overrides that version was measured with (its budget)."""

    train: DataSet
    dev: DataSet
    evaluations: tuple[DataSet, ...] = ()
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recipe:
    """Layout and commands of one corpus."""

    name: str
    description: str
    train: DataSet
    dev: DataSet
    evaluations: tuple[DataSet, ...] = ()
    protocols: str = "default"
    """Name of the protocol version above (``rawguard recipe --protocols``)."""
    other_protocols: dict[str, Protocols] = field(default_factory=dict)
    """Other protocol versions of the corpus by name (:func:`with_protocols`)."""
    overrides: tuple[str, ...] = ()
    """Training config overrides the recipe adds before the user's ``--set``."""
    config: str = "asvspoof2019_la"
    """Training recipe: a file, or the name of a packaged one (``rawguard/configs/<name>.yaml``)."""
    reported: tuple[str, ...] = field(default=())
    """What the field reports on this corpus, for comparison (system: figure, source)."""
    copy_synthesis: tuple[str, ...] = ()
    """Resynthesis methods (keys of :data:`rawguard.synth.vocoders.METHODS`, or ``neural``) whose copies
    of the train set's bona fide clips join the train cache as extra spoofs (``OUT/synth/<method>``).
    ``neural`` first trains a vocoder on those clips (``OUT/vocoder``, :attr:`vocoder_steps`)."""
    vocoder_steps: int = 5000
    """Training steps of the ``neural`` copy-synthesis vocoder (``rawguard train-vocoder --max-steps``):
    a step count, not only a time budget, so that the vocoder, its copies and the detector trained
    on them do not depend on the machine's speed (~9 min on 2 CPU cores)."""
    vocoder_minutes: float = 15.0
    """Wall-clock cap of that training (``--minutes``): a slow machine stops there, with fewer steps."""

    def __post_init__(self) -> None:
        # Checked here so that a typo in a recipe fails at import, not after hours of preparing.
        check_copy_synthesis(self.copy_synthesis)


_LA19 = "LA/ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm"
_LA19_TRAIN = DataSet("train", f"{_LA19}.train.trn.txt", "LA/ASVspoof2019_LA_train/flac", "asvspoof2019")
_LA19_DEV = DataSet("dev", f"{_LA19}.dev.trl.txt", "LA/ASVspoof2019_LA_dev/flac", "asvspoof2019")

_SHARED_DEV_V2 = DataSet("dev", "protocols/dev.txt", "flac", "asvspoof2019")

RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe(
            name="shared-corpus",
            description="the project's shared corpus v3 (real speech, 42 TTS/VC/vocoder systems incl. modern "
                        "zero-shot TTS), dev = unseen speakers",
            # v3 = v2 + modern LM / diffusion / flow-matching TTS, neural VC and diffusion vocoders, and
            # emotional, broadcast and non-English bona fide; the v2 dev set is scored as well.
            train=DataSet("train_v3", "protocols/train_v3.txt", "flac", "asvspoof2019"),
            dev=DataSet("dev_v3", "protocols/dev_v3.txt", "flac", "asvspoof2019"),
            evaluations=(_SHARED_DEV_V2,),
            protocols="v3",
            other_protocols={
                # The v2 recipe as measured before v3 (6.41 % dev EER): its 13,000-step, 15-minute budget.
                "v2": Protocols(train=DataSet("train", "protocols/train.txt", "flac", "asvspoof2019"),
                                dev=_SHARED_DEV_V2,
                                overrides=("train.max_steps=13000", "train.max_minutes=15")),
            },
            config="shared_corpus",
            # Copies of train bona fide. Leave-systems-out: the signal-processing ones made an unseen
            # Griffin-Lim system trivial and cost seen neural systems; the neural ones (a vocoder
            # trained on train bona fide) took unseen neural vocoders 28.8 -> 24.0 % at no cost on
            # seen systems; world_vc (world in another voice) took an unseen neural VC system
            # 45.5 -> 36.7 %. On dev the corpus alone overfits at this budget. docs/recipes.md.
            copy_synthesis=("lpc", "sinusoidal", "world", "griffin_lim", "neural", "world_vc"),
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


def with_protocols(recipe: Recipe, version: str | None) -> Recipe:
    """``recipe`` on its protocol version ``version`` (``None``: the recipe's default).

    Raises:
        RecipeError: a version the recipe does not have, naming the ones it has.
    """
    if version is None or version == recipe.protocols:
        return recipe
    try:
        other = recipe.other_protocols[version]
    except KeyError:
        known = ", ".join([recipe.protocols, *recipe.other_protocols])
        raise RecipeError(f"recipe {recipe.name} has no protocols {version!r}; it has {known}") from None
    return replace(recipe, train=other.train, dev=other.dev, evaluations=other.evaluations, protocols=version,
                   other_protocols={}, overrides=other.overrides)


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
    copy_synthesis: tuple[str, ...] | None = None,
    vocoder_minutes: float | None = None,
    vocoder_steps: int | None = None,
    device: str | None = None,
) -> list[list[str]]:
    """The ``rawguard`` command lines (argv lists, without the program name) that run the recipe.

    Layout: ``OUT/synth/<method>`` (copy-synthesis spoofs of the train bona fide clips),
    ``OUT/vocoder`` (the ``neural`` method's vocoder, trained on ``OUT/caches/<train>_corpus``, the
    train set alone), ``OUT/caches/<set>``, ``OUT/run`` (``best.pt``, ``last.pt``, ...), ``OUT/eval/<set>``
    (scores, metrics.json, report.md and plots). The dev set is evaluated too.

    Args:
        copy_synthesis: resynthesis methods whose copies join the train cache (``()``: none);
            ``None`` keeps the recipe's :attr:`Recipe.copy_synthesis`. Part of the prepare stage.
        vocoder_minutes, vocoder_steps: time cap and steps of the ``neural`` method's vocoder
            (``None``: the recipe's).
        device: ``cpu``, ``cuda``, ``cuda:N`` for the vocoder, training and evaluation; ``None``
            leaves each command's default (training: CUDA when available; vocoder, evaluation: CPU).

    Raises:
        RecipeError: an unknown stage or copy-synthesis method.
    """
    unknown = [stage for stage in stages if stage not in STAGES]
    if unknown:
        raise RecipeError(f"unknown stage(s) {', '.join(unknown)}; stages are {', '.join(STAGES)}")
    methods = recipe.copy_synthesis if copy_synthesis is None else tuple(copy_synthesis)
    check_copy_synthesis(methods)
    commands: list[list[str]] = []
    caches = {data_set.name: out / "caches" / data_set.name for data_set in _sets(recipe)}
    run_dir = out / "run"
    if "prepare" in stages:
        synth_dirs = [out / "synth" / method for method in methods]
        vocoder = out / "vocoder" / "vocoder.pt"
        if NEURAL in methods:
            corpus_cache = out / "caches" / f"{recipe.train.name}_corpus"
            commands.append(_prepare_command(recipe.train, root, corpus_cache, [], workers))
            minutes = recipe.vocoder_minutes if vocoder_minutes is None else vocoder_minutes
            steps = recipe.vocoder_steps if vocoder_steps is None else vocoder_steps
            commands.append(["train-vocoder", str(corpus_cache), "--out", str(vocoder.parent), "--max-steps", str(steps),
                             "--minutes", f"{minutes:g}", *(["--device", device] if device else [])])
        commands += [_synth_spoof_command(recipe.train, root, synth_dir, method, workers,
                                          vocoder if method == NEURAL else None)
                     for method, synth_dir in zip(methods, synth_dirs)]
        for data_set in _sets(recipe):
            extra = synth_dirs if data_set is recipe.train else []  # never resynthesise dev / eval data
            commands.append(_prepare_command(data_set, root, caches[data_set.name], extra, workers))
    if "train" in stages:
        command = ["train", "--train", str(caches[recipe.train.name]), "--dev", str(caches[recipe.dev.name]),
                   "--out", str(run_dir), "--config", config or recipe.config]
        overrides = (*recipe.overrides, *overrides, *([f"train.device={device}"] if device else []))
        if overrides:
            command += ["--set", *overrides]
        commands.append(command)
    if "evaluate" in stages:
        for data_set in [recipe.dev, *recipe.evaluations]:
            command = ["evaluate", "--checkpoint", str(run_dir / "best.pt"), "--data", str(caches[data_set.name])]
            command += ["--out", str(out / "eval" / data_set.name)]
            if data_set.asv_scores:
                command += ["--asv-scores", str(root / data_set.asv_scores)]
            if device:
                command += ["--device", device]
            commands.append(command)
    return commands


def _synth_spoof_command(data_set: DataSet, root: Path, synth_dir: Path, method: str,
                         workers: int | None, vocoder: Path | None = None) -> list[str]:
    """``synth-spoof``: copies of the bona fide entries of ``data_set`` into ``synth_dir`` (its ``protocol.csv``)."""
    command = ["synth-spoof", "--protocol", str(root / data_set.protocol)]
    if data_set.audio_dir:
        command += ["--audio-dir", str(root / data_set.audio_dir)]
    command += ["--format", data_set.format, str(synth_dir), "--method", method]
    if vocoder is not None:
        command += ["--vocoder", str(vocoder)]
    if workers:
        command += ["--workers", str(workers)]
    return command


def _prepare_command(data_set: DataSet, root: Path, cache: Path, synth_dirs: list[Path],
                     workers: int | None) -> list[str]:
    """``prepare`` of one set into ``cache``, followed by the ``protocol.csv`` of each folder in ``synth_dirs``."""
    own_audio = str(root / data_set.audio_dir) if data_set.audio_dir else DEFAULT_AUDIO_DIR
    command = ["prepare", str(root / data_set.protocol), *(str(d / PROTOCOL_CSV) for d in synth_dirs)]
    command += ["--out", str(cache)]
    # One --audio-dir per protocol: the set's audio, then '-' (beside itself) for every copy list.
    audio_dirs = [own_audio] + [DEFAULT_AUDIO_DIR] * len(synth_dirs)
    if audio_dirs != [DEFAULT_AUDIO_DIR]:  # a lone '-' is prepare's default: leave it out
        for audio_dir in audio_dirs:
            command += ["--audio-dir", audio_dir]
    if not synth_dirs:
        # With copy lists, no --format: prepare applies it to every protocol, and the lists are CSVs.
        # The set's own format is then detected (synth-spoof, told the format, has read the file already).
        command += ["--format", data_set.format]
    if workers:
        command += ["--workers", str(workers)]
    return command


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
