"""Corpus recipes: the expected directory layout of each public corpus and the exact commands that
prepare, train and evaluate on it.

A recipe is data, not code: where each protocol and audio folder lives under the corpus root, which
training config to use, and which sets to evaluate. :func:`plan` turns a recipe plus a root folder
into a list of :class:`Step` s, each a library call (``prepare_cache``, ``train_vocoder``,
``synth_spoof_protocol``, ``train``, ``evaluate``) together with the ``rawguard`` command line that
does the same, and :func:`run` makes the calls in this process. ``rawguard recipe NAME --root DIR
--out DIR`` is the command-line face of the same functions (it checks the layout first, with an
error that names the missing path); ``--dry-run`` prints the command lines without running them, so
the recipe doubles as documentation. Every step resumes: a re-run skips what is done (caches,
copies, a vocoder whose budget is spent, a finished training run) and finishes the rest.

Training always selects on the corpus's *dev* set; evaluation sets are only scored, never used for
selection. A recipe may add copy-synthesis spoofs (``rawguard synth-spoof``) of the *train* set's
bona fide clips to the train cache; dev and eval sets are never resynthesised, since copies of their
speakers in training would leak them.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from rawguard.copysynth.synth_spoof import ALL_METHODS, NEURAL
from rawguard.copysynth.synth_spoof import PROTOCOL as PROTOCOL_CSV

OWN_FOLDER = "-"
"""``rawguard prepare --audio-dir -``: that protocol's own folder (copy lists sit beside their copies)."""


class RecipeError(ValueError):
    """Unknown recipe, or a corpus folder that does not have the recipe's layout."""


class RecipeStepError(RecipeError):
    """A step of a running recipe failed (its command line and the error are in the message)."""


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
class Member:
    """A further model of a recipe: trained on the same caches with the recipe's config plus
    ``overrides`` into ``OUT/<run>``, and written with ``OUT/run``'s model to one ensemble file,
    ``OUT/ensemble.pt`` (the mean of their dev-calibrated log-odds, :func:`rawguard.ensemble.save_ensemble`)."""

    run: str
    overrides: tuple[str, ...]


@dataclass(frozen=True)
class Protocols:
    """Another version of a corpus's protocols: what trains, what selects, what is only scored, and
    the training config overrides that version was measured with (its budget)."""

    train: DataSet
    dev: DataSet
    evaluations: tuple[DataSet, ...] = ()
    overrides: tuple[str, ...] = ()
    minutes: float = 0.0
    """The whole recipe's wall-clock budget on this version (:attr:`Recipe.minutes`); 0: none."""


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
    members: tuple[Member, ...] = ()
    """Further models trained beside ``OUT/run``'s and fused with it (:class:`Member`); the user's
    ``--set`` applies to each of them too."""
    config: str = "asvspoof2019_la"
    """Training recipe: a file, or the name of a packaged one (``rawguard/configs/<name>.yaml``)."""
    reported: tuple[str, ...] = field(default=())
    """What the field reports on this corpus, for comparison (system: figure, source)."""
    copy_synthesis: tuple[str, ...] = ()
    """Resynthesis methods (keys of :data:`rawguard.copysynth.vocoders.METHODS`, or ``neural``) whose copies
    of the train set's bona fide clips join the train cache as extra spoofs (``OUT/synth/<method>``).
    ``neural`` first trains a vocoder on those clips (``OUT/vocoder``, :attr:`vocoder_steps`)."""
    vocoder_steps: int = 5000
    """Training steps of the ``neural`` copy-synthesis vocoder (``rawguard train-vocoder --max-steps``):
    a step count, not only a time budget, so that the vocoder, its copies and the detector trained
    on them do not depend on the machine's speed (~9 min on 2 CPU cores)."""
    vocoder_minutes: float = 9.0
    """Wall-clock cap of that training (``--minutes``): a slow machine stops there, with fewer steps
    (its cosine runs over the time budget or the steps, whichever ends first). 5,000 steps took 5.3 to
    9.8 min on the 2-core VMs, so the slowest day keeps about 4,600 of them."""
    minutes: float = 0.0
    """Wall-clock budget of the whole recipe (``rawguard recipe --minutes``): the training stages
    share what the data stages leave of it, each at most its own ``train.max_minutes``
    (:mod:`rawguard.recipe_budget`); 0: none, each trains its own ``train.max_minutes``."""

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
                # The v2 recipe as measured before v3 (6.41 % dev EER): its 13,000-step, 15-minute budget
                # and its learned conv front-end (the fixed sinc bank was measured on v3 only).
                "v2": Protocols(train=DataSet("train", "protocols/train.txt", "flac", "asvspoof2019"),
                                dev=_SHARED_DEV_V2,
                                overrides=("train.max_steps=13000", "train.max_minutes=15",
                                           "train.fit_schedule=false", "model.frontend=conv",
                                           "model.frontend_scale=mel", "model.spectrum_fft=0",
                                           "data.window=16000", "data.batch_size=32")),
            },
            config="shared_corpus",
            # The project's target for the whole recipe from scratch on 2 CPU cores.
            minutes=45.0,
            # Copies of train bona fide. Leave-systems-out: the signal-processing ones made an unseen
            # Griffin-Lim system trivial and cost seen neural systems; the neural ones (a vocoder
            # trained on train bona fide) took unseen neural vocoders 28.8 -> 24.0 % at no cost on
            # seen systems; world_vc (world in another voice) took an unseen neural VC system
            # 45.5 -> 36.7 %. On dev the corpus alone overfits at this budget. docs/recipes.md.
            copy_synthesis=("lpc", "sinusoidal", "world", "griffin_lim", "neural", "world_vc"),
            # A second, smaller model whose blocks are 2-D over the fixed bank's [bands x frames] map,
            # fused with the 1-D one. Leave-family-out at the recipe's budget (3 seeds per family):
            # held-out modern families 22.8 % against 24.1 % for the 1-D model alone, seen families
            # 10.9 against 11.8 %; the 2-D model alone is better on held-out modern families and worse
            # on the classical systems and neural vocoders it trained on. It keeps 1 s crops: 0.5 s gained
            # the 1-D model 2.1 points on the yardstick and the 2-D model none (21.2 against 21.5 %).
            # BENCHMARKS.md. Its training step is compiled (train.compile): 1.14x the eager clips/s on 2
            # threads in fp32 over 300 steps, about a minute of its 12 in the recipe, which keeps the whole
            # recipe within 45 minutes on a slow 2-core VM (the 1-D model gains 1.05x, which its compile
            # time eats). Its time budget is 12 minutes (the 1-D model's 14), its schedule fitted into it.
            members=(Member("run_2d", ("model.encoder=2d", "model.frontend_channels=32", "model.frontend_pool=12",
                                       "model.block_pools=[1,3]", "model.block_channels=[8,16]",
                                       "model.gru_hidden=64", "data.window=16000", "data.batch_size=32",
                                       "train.compile=true", "train.max_minutes=12")),),
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
ENSEMBLE_FILE = "ensemble.pt"
"""A recipe with members writes its models to ``OUT/ensemble.pt`` (``rawguard ensemble``) and evaluates that."""


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
                   other_protocols={}, overrides=other.overrides, members=(), minutes=other.minutes)


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
) -> list[Step]:
    """The steps that run the recipe, in order.

    Layout: ``OUT/synth/<method>`` (copy-synthesis spoofs of the train bona fide clips),
    ``OUT/vocoder`` (the ``neural`` method's vocoder, trained on ``OUT/caches/<train>_corpus``, the
    train set alone), ``OUT/caches/<set>``, ``OUT/run`` (``best.pt``, ``last.pt``, ...), ``OUT/<member
    run>`` for each of :attr:`Recipe.members` (with the recipe's own config only), ``OUT/eval/<set>``
    (scores, metrics.json, report.md and plots of ``OUT/run/best.pt``, or of ``OUT/ensemble.pt``, the
    ensemble file of it and the members' ``best.pt``). The dev set is evaluated too.

    Args:
        copy_synthesis: resynthesis methods whose copies join the train cache (``()``: none);
            ``None`` keeps the recipe's :attr:`Recipe.copy_synthesis`. Part of the prepare stage.
        vocoder_minutes, vocoder_steps: time cap and steps of the ``neural`` method's vocoder
            (``None``: the recipe's).
        device: ``cpu``, ``cuda``, ``cuda:N`` for the vocoder, training and evaluation; ``None``
            leaves each step's default (training: CUDA when available; vocoder, evaluation: CPU).

    Raises:
        RecipeError: an unknown stage or copy-synthesis method.
    """
    unknown = [stage for stage in stages if stage not in STAGES]
    if unknown:
        raise RecipeError(f"unknown stage(s) {', '.join(unknown)}; stages are {', '.join(STAGES)}")
    methods = recipe.copy_synthesis if copy_synthesis is None else tuple(copy_synthesis)
    check_copy_synthesis(methods)
    steps: list[Step] = []
    caches = {data_set.name: out / "caches" / data_set.name for data_set in _sets(recipe)}
    run_dir = out / "run"
    # The members' overrides are written for the recipe's own config; another config trains alone.
    own_config = config is None or config == recipe.config
    members = [(out / member.run, member.overrides) for member in recipe.members] if own_config else []
    if "prepare" in stages:
        synth_dirs = [out / "synth" / method for method in methods]
        vocoder = out / "vocoder" / "vocoder.pt"
        if NEURAL in methods:
            corpus_cache = out / "caches" / f"{recipe.train.name}_corpus"
            steps.append(_prepare_step(recipe.train, root, corpus_cache, [], workers))
            steps.append(_vocoder_step(corpus_cache, vocoder.parent,
                                       recipe.vocoder_steps if vocoder_steps is None else vocoder_steps,
                                       recipe.vocoder_minutes if vocoder_minutes is None else vocoder_minutes, device))
        steps += [_synth_spoof_step(recipe.train, root, synth_dir, method, workers,
                                    vocoder if method == NEURAL else None)
                  for method, synth_dir in zip(methods, synth_dirs)]
        for data_set in _sets(recipe):
            extra = synth_dirs if data_set is recipe.train else []  # never resynthesise dev / eval data
            steps.append(_prepare_step(data_set, root, caches[data_set.name], extra, workers))
    if "train" in stages:
        # A recipe made for copies, run without them: its config's data.sampling.copy_share would
        # ask for spoofs the cache lacks.
        no_copies = ("data.sampling.copy_share=null",) if recipe.copy_synthesis and not methods else ()
        user = (*no_copies, *overrides, *([f"train.device={device}"] if device else []))
        for member_dir, member_overrides in [(run_dir, ()), *members]:
            steps.append(_train_step(caches[recipe.train.name], caches[recipe.dev.name], member_dir,
                                     config or recipe.config, (*recipe.overrides, *member_overrides, *user)))
    if "evaluate" in stages:
        checkpoints = [run_dir / "best.pt", *(member_dir / "best.pt" for member_dir, _ in members)]
        if members:  # the models as one file, what the recipe ships and evaluates
            steps.append(_ensemble_step(checkpoints, out / ENSEMBLE_FILE))
            checkpoints = [out / ENSEMBLE_FILE]
        steps += [_evaluate_step(checkpoints, caches[data_set.name], out / "eval" / data_set.name,
                                 root / data_set.asv_scores if data_set.asv_scores else None, device)
                  for data_set in [recipe.dev, *recipe.evaluations]]
    return steps


@dataclass(frozen=True)
class Step:
    """One step of a recipe: the ``rawguard`` command line that does it (``argv``, without the
    program name: what ``--dry-run`` prints) and the library call that does the same in this process."""

    argv: list[str]
    call: Callable[[], str]
    """Runs the step and returns a summary line; raises on failure."""
    train_minutes: float = 0.0
    """A training step's own ``train.max_minutes`` (0: not a training step, or no time limit)."""
    with_minutes: Callable[[float], Step] | None = None
    """The same training step with ``train.max_minutes`` set to the given minutes (a recipe budget's share)."""

    @property
    def command(self) -> str:
        return format_command(self.argv)


def _prepare_step(data_set: DataSet, root: Path, cache: Path, synth_dirs: list[Path], workers: int | None) -> Step:
    """``prepare`` of one set into ``cache``, followed by the ``protocol.csv`` of each folder in ``synth_dirs``."""
    protocols = [root / data_set.protocol, *(d / PROTOCOL_CSV for d in synth_dirs)]
    # One audio folder per protocol: the set's own, then each copy list's own folder.
    audio_dirs = [root / data_set.audio_dir if data_set.audio_dir else None] + [None] * len(synth_dirs)
    # With copy lists the format is detected per protocol (the lists are CSVs): synth-spoof, told the
    # set's format, has read its protocol already.
    format = "auto" if synth_dirs else data_set.format
    argv = ["prepare", *map(str, protocols), "--out", str(cache)]
    if audio_dirs != [None]:  # a lone default is prepare's default: leave it out
        for audio_dir in audio_dirs:
            argv += ["--audio-dir", str(audio_dir) if audio_dir else OWN_FOLDER]
    if not synth_dirs:
        argv += ["--format", format]
    if workers:
        argv += ["--workers", str(workers)]
    return Step(argv, partial(_prepare, protocols, audio_dirs, format, cache, workers))


def _prepare(protocols: list[Path], audio_dirs: list[Path | None], format: str, cache: Path,
             workers: int | None) -> str:
    from rawguard.data.cache import REJECTED_FILE
    from rawguard.data.prepare import prepare_cache
    from rawguard.data.protocols import read_protocols

    items = read_protocols(protocols, audio_dirs, format=format)
    summary = prepare_cache(items, cache, workers=workers)
    rejected = f"\nwarning: {summary.rejected} files rejected; reasons in {cache / REJECTED_FILE}" if summary.rejected else ""
    return summary.format() + rejected


def _vocoder_step(corpus_cache: Path, out_dir: Path, steps: int, minutes: float, device: str | None) -> Step:
    """``train-vocoder`` on the bona fide clips of ``corpus_cache`` (the train set alone)."""
    argv = ["train-vocoder", str(corpus_cache), "--out", str(out_dir), "--max-steps", str(steps),
            "--minutes", f"{minutes:g}", *(["--device", device] if device else [])]
    return Step(argv, partial(_train_vocoder, corpus_cache, out_dir, steps, minutes, device or "cpu"))


def _train_vocoder(corpus_cache: Path, out_dir: Path, steps: int, minutes: float, device: str) -> str:
    from rawguard.copysynth.neural import VocoderTrainConfig, train_vocoder

    summary = train_vocoder(corpus_cache, out_dir, VocoderTrainConfig(minutes=minutes, max_steps=steps, device=device))
    return (f"vocoder: {summary.steps} steps ({summary.new_steps} now) on {summary.clips} bona fide clips, "
            f"STFT loss {summary.loss:.3f} -> {summary.path}")


def _synth_spoof_step(data_set: DataSet, root: Path, synth_dir: Path, method: str,
                      workers: int | None, vocoder: Path | None = None) -> Step:
    """``synth-spoof``: copies of the bona fide entries of ``data_set`` into ``synth_dir`` (its ``protocol.csv``)."""
    audio_dir = root / data_set.audio_dir if data_set.audio_dir else None
    argv = ["synth-spoof", "--protocol", str(root / data_set.protocol)]
    argv += ["--audio-dir", str(audio_dir)] if audio_dir else []
    argv += ["--format", data_set.format, str(synth_dir), "--method", method]
    argv += ["--vocoder", str(vocoder)] if vocoder is not None else []
    argv += ["--workers", str(workers)] if workers else []
    return Step(argv, partial(_synth_spoof, root / data_set.protocol, synth_dir, method, audio_dir, data_set.format,
                              workers, vocoder))


def _synth_spoof(protocol: Path, synth_dir: Path, method: str, audio_dir: Path | None, format: str,
                 workers: int | None, vocoder: Path | None) -> str:
    from rawguard.copysynth.synth_spoof import synth_spoof_protocol

    summary = synth_spoof_protocol(protocol, synth_dir, method, audio_dir=audio_dir, format=format, workers=workers,
                                   vocoder=vocoder)
    if summary.failed:  # a copy set with holes would change the training data silently
        raise RecipeError(f"synth-spoof {method}: {len(summary.failed)} files could not be copied (see messages "
                          "above); fix or remove them and run the recipe again")
    return f"{len(summary.written)} {method} copies written ({len(summary.kept)} already done) -> {summary.protocol}"


def _train_step(train_cache: Path, dev_cache: Path, run_dir: Path, config: str, overrides: tuple[str, ...]) -> Step:
    """``train`` on ``train_cache``, selecting on ``dev_cache``; resumes ``run_dir``.

    Raises:
        RecipeError: a config or override that does not load (here, not hours later when it trains).
    """
    from rawguard.config import ConfigError, load_config

    try:
        own_minutes = load_config(config, list(overrides)).train.max_minutes
    except (ConfigError, OSError) as error:
        raise RecipeError(f"training config of {run_dir}: {error}") from error
    argv = ["train", "--train", str(train_cache), "--dev", str(dev_cache), "--out", str(run_dir), "--config", config]
    argv += ["--set", *overrides] if overrides else []
    retimed = partial(_train_step, train_cache, dev_cache, run_dir, config)
    return Step(argv, partial(_train, train_cache, dev_cache, run_dir, config, overrides), own_minutes,
                lambda minutes: retimed((*overrides, f"train.max_minutes={minutes:.2f}")))


def _train(train_cache: Path, dev_cache: Path, run_dir: Path, config: str, overrides: tuple[str, ...]) -> str:
    from rawguard.config import load_config
    from rawguard.train import train

    result = train(load_config(config, list(overrides)), train_cache, dev_cache, run_dir)
    if result.exit_code:
        raise RecipeError(f"training stopped by {result.stop_reason} at step {result.step}; run the recipe again "
                          "to resume it")
    best = f"{result.best_dev_eer:.2%}" if result.best_dev_eer is not None else "n/a"
    return f"trained {result.step} steps ({result.stop_reason}); best dev EER {best} at step {result.best_step}"


def _ensemble_step(checkpoints: list[Path], out_file: Path) -> Step:
    """``ensemble`` of the trained models into one file."""
    return Step(["ensemble", *map(str, checkpoints), "--out", str(out_file)], partial(_ensemble, checkpoints, out_file))


def _ensemble(checkpoints: list[Path], out_file: Path) -> str:
    from rawguard.ensemble import save_ensemble

    return f"wrote the ensemble of {len(checkpoints)} models to {save_ensemble(checkpoints, out_file)}"


def _evaluate_step(checkpoints: list[Path], cache: Path, out_dir: Path, asv_scores: Path | None,
                   device: str | None) -> Step:
    """``evaluate`` of ``checkpoints`` (one model, or an ensemble of several) on one prepared set."""
    argv = ["evaluate", *(arg for path in checkpoints for arg in ("--checkpoint", str(path))),
            "--data", str(cache), "--out", str(out_dir)]
    argv += ["--asv-scores", str(asv_scores)] if asv_scores else []
    argv += ["--device", device] if device else []
    return Step(argv, partial(_evaluate, checkpoints, cache, out_dir, asv_scores, device or "cpu"))


def _evaluate(checkpoints: list[Path], cache: Path, out_dir: Path, asv_scores: Path | None, device: str) -> str:
    from rawguard.evaluate import evaluate
    from rawguard.report import format_table

    return format_table(evaluate(checkpoints, cache, out_dir, asv_scores=asv_scores, device=device))


def format_command(argv: list[str]) -> str:
    """A command line as a user would type it."""
    return shlex.join(["rawguard", *argv])


def step_errors() -> tuple[type[BaseException], ...]:
    """What a step raises for bad input or a failed stage (every library error a step can meet)."""
    from rawguard.checkpoint import CheckpointError
    from rawguard.data.cache import CacheError
    from rawguard.training.errors import RunExistsError, TrainingError

    return ValueError, CacheError, CheckpointError, TrainingError, RunExistsError


def run(steps: list[Step], echo: Callable[[str], object] = print, minutes: float = 0.0,
        clock: Callable[[], float] = time.monotonic) -> None:
    """Run the steps in order in this process, echoing each one's command line and summary.

    Args:
        minutes: the whole run's wall-clock budget (0: none); each training step starts with its
            share of what is left (:func:`rawguard.recipe_budget.training_minutes`).
        clock: seconds of a monotonic clock.

    Raises:
        RecipeStepError: the first step that failed, naming its command line and the error.
    """
    errors = step_errors()
    started = clock()
    for index, step in enumerate(steps):
        if minutes and step.train_minutes and step.with_minutes is not None:
            step = _budgeted(step, steps[index + 1:], minutes, (clock() - started) / 60, echo)
        echo(f"$ {step.command}")
        try:
            echo(step.call())
        except errors as error:
            raise RecipeStepError(f"recipe stopped at `{step.command}`: {error}") from error


def _budgeted(step: Step, later: list[Step], minutes: float, used: float, echo: Callable[[str], object]) -> Step:
    """``step`` with its share of the ``minutes`` budget left after ``used`` (itself when it is its own)."""
    from rawguard.recipe_budget import training_minutes

    own = step.train_minutes
    share = training_minutes(minutes, used, own, sum(other.train_minutes for other in later))
    if share.minutes >= own:
        return step
    over = ", its least share: the recipe will run over its budget" if share.over_budget else ""
    echo(f"recipe budget: {used:.1f} of {minutes:g} minutes used; this model trains {share.minutes:.2f} of its "
         f"train.max_minutes={own:g}{over}")
    return step.with_minutes(share.minutes)
