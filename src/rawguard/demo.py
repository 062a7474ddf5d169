"""``rawguard demo``: the whole pipeline on a built-in, procedurally generated corpus.

Read top to bottom, :func:`run_demo` does exactly what a user would do by hand, through the same
public functions the ``rawguard`` commands call:

1. generate the demo corpus (:func:`rawguard.demo_corpus.generate_demo_corpus`): synthetic bona fide
   speakers and vocoder-like copies in ASVspoof 2019 layout (train / dev / eval protocols + FLAC);
2. ``prepare``: decode each split once into a cache (:func:`rawguard.data.prepare.prepare_cache`);
3. ``train`` rawnet-lite with ``configs/demo.yaml`` (:func:`rawguard.train.train`), best.pt
   selected on dev;
4. ``evaluate`` best.pt on the eval split (:func:`rawguard.evaluate.evaluate`): EER, t-DCF-free
   metrics table, DET, score histogram, per-attack EER;
5. ``score`` two eval recordings from disk with :class:`rawguard.detector.Detector`, as a user would
   score their own file;
6. write ``DIR/report.md``: EER on the attacks seen in training and on the attack kept unseen, the
   full metrics table, and links to every plot (DET seen vs unseen, histograms, per attack, curves).

Nothing is downloaded and no external program runs. The full demo is sized for < 5 minutes on two
CPU cores (``train.max_minutes`` in the recipe is a guard on slower machines); ``quick=True`` is a
tiny version for CI.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rawguard.conventions import BONAFIDE, SPOOF

MARKER = ".rawguard-demo"
"""File that marks a folder as a demo output, so re-running the demo may clear it safely."""

QUICK_OVERRIDES: tuple[str, ...] = (
    "train.max_steps=40",
    "train.max_minutes=1.0",
    "eval.every=20",
    "data.batch_size=16",
    "train.checkpoint_every=20",
    "train.log_every=5",
)
"""``--quick``: on top of configs/demo.yaml, a few steps only (the CI end-to-end check)."""

_STAGES = 6


class DemoError(RuntimeError):
    """The demo cannot run: unusable output folder, missing recipe, or a stage failed (named)."""


@dataclass
class DemoResult:
    """What :func:`run_demo` produced."""

    out_dir: Path
    report: Path
    eer_seen: float
    """Pooled EER (fraction) of eval bona fide vs. spoofs made by methods seen in training."""
    eer_unseen: float
    """EER (fraction) of eval bona fide vs. spoofs of the method kept out of train/dev."""
    eer_all: float
    per_attack: dict[str, float]
    """Attack id -> EER in percent (from the evaluation metrics)."""
    systems: dict[str, str]
    """Attack id -> resynthesis method."""
    unseen_systems: list[str]
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per stage."""

    @property
    def elapsed_s(self) -> float:
        return float(sum(self.timings.values()))


def demo_config_path() -> Path:
    """``configs/demo.yaml``, shipped inside the package."""
    from rawguard.config import PACKAGED_CONFIGS

    path = PACKAGED_CONFIGS / "demo.yaml"
    if not path.is_file():
        raise DemoError(f"{path}: the demo recipe is missing from this installation; reinstall rawguard")
    return path


def _claim(out_dir: Path) -> None:
    """Create ``out_dir`` or clear a previous demo in it; refuse a non-empty folder that is not a demo's."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise DemoError(f"{out_dir}: exists and is not a folder")
        entries = [p for p in out_dir.iterdir()]
        if entries and not (out_dir / MARKER).is_file():
            raise DemoError(f"{out_dir}: folder is not empty and was not written by rawguard demo; choose another --out")
        for entry in entries:  # a previous demo's output: start afresh, never resume a different size
            if entry.name != MARKER:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MARKER).write_text("written by `rawguard demo`; the demo clears this folder when re-run\n")


def _say(stage: int, text: str, progress: bool) -> None:
    if progress:
        print(f"[{stage}/{_STAGES}] {text}", file=sys.stderr, flush=True)


def run_demo(
    out_dir: str | os.PathLike = "rawguard-demo",
    quick: bool = False,
    seed: int = 2026,
    workers: int | None = None,
    progress: bool = True,
    overrides: list[str] | tuple[str, ...] = (),
) -> DemoResult:
    """Generate the demo corpus, prepare, train, evaluate, score, and write ``out_dir/report.md``.

    Args:
        out_dir: output folder (created; a previous demo's output in it is replaced; any other
            non-empty folder is refused).
        quick: tiny corpus and a few training steps (CI end-to-end check, well under a minute).
        seed: corpus and training seed.
        workers: processes for corpus generation (default: CPU count, at most 4).
        progress: stage lines and tqdm bars on stderr.
        overrides: extra ``key=value`` training config overrides (after the demo recipe).

    Returns:
        :class:`DemoResult` with the report path and the seen / unseen EERs.

    Raises:
        DemoError: unusable ``out_dir`` or missing recipe; errors of the stages propagate with
            their own types (ConfigError, CacheError, TrainingError, ...).
    """
    from rawguard.config import load_config
    from rawguard.data.prepare import prepare_cache
    from rawguard.data.protocols import read_protocol
    from rawguard.evaluate import evaluate
    from rawguard.demo_corpus import DemoCorpusSpec, generate_demo_corpus
    from rawguard.train import BEST, train

    out = Path(out_dir)
    config_path = demo_config_path()
    config = load_config(config_path, [*(QUICK_OVERRIDES if quick else ()), f"train.seed={seed}", *overrides])
    _claim(out)
    timings: dict[str, float] = {}
    spec = DemoCorpusSpec.quick() if quick else DemoCorpusSpec()

    start = time.perf_counter()
    _say(1, f"generating the demo corpus ({'quick' if quick else 'full'}) in {out / 'corpus'}", progress)
    protocols = generate_demo_corpus(out / "corpus", spec, seed=seed, workers=workers, progress=progress)
    timings["generate corpus"] = time.perf_counter() - start

    start = time.perf_counter()
    _say(2, "prepare: decoding train / dev / eval into caches", progress)
    caches = {}
    for split in ("train", "dev", "eval"):
        items = read_protocol(protocols[split], audio_dir=protocols["flac"])
        caches[split] = out / "cache" / split
        # in-process decoding: the clips are already 16 kHz FLAC, so starting decoder processes
        # would cost more than it saves (measured: 1 worker 2x faster than 2 on the demo corpus)
        prepare_cache(items, caches[split], workers=1, progress=progress)
    timings["prepare"] = time.perf_counter() - start

    start = time.perf_counter()
    _say(3, f"train: {config.model.name} on {caches['train']} (recipe {config_path.name})", progress)
    result = train(config, caches["train"], caches["dev"], out / "run", resume=False, progress=progress)
    checkpoint = out / "run" / BEST
    if not checkpoint.is_file():
        raise DemoError(f"training stopped ({result.stop_reason}) before a dev evaluation wrote {checkpoint}")
    timings["train"] = time.perf_counter() - start

    start = time.perf_counter()
    _say(4, "evaluate: best.pt on the eval split (seen + unseen attacks)", progress)
    metrics = evaluate(checkpoint, caches["eval"], out / "eval", progress=progress)
    seen_unseen = _seen_unseen(out, spec)
    timings["evaluate"] = time.perf_counter() - start

    start = time.perf_counter()
    _say(5, "score: two eval recordings from disk, as you would score your own", progress)
    examples = _score_examples(checkpoint, protocols, seen_unseen["unseen_systems"])
    timings["score"] = time.perf_counter() - start

    _say(6, "report", progress)
    report = _write_report(out, metrics, seen_unseen, examples, timings, spec, config_path, result, quick)
    return DemoResult(
        out_dir=out,
        report=report,
        eer_seen=seen_unseen["eer_seen"],
        eer_unseen=seen_unseen["eer_unseen"],
        eer_all=float(metrics["eer_percent"]) / 100,
        per_attack=dict(metrics.get("per_attack_eer_percent", {})),
        systems=spec.systems(),
        unseen_systems=seen_unseen["unseen_systems"],
        timings=timings,
    )


def _seen_unseen(out: Path, spec) -> dict:
    """EERs of eval bona fide vs. seen-attack spoofs and vs. unseen-attack spoofs, and a DET of both."""
    from rawguard.scorefiles import read_cm_scores
    from rawguard.metrics import compute_eer
    from rawguard.report import plot_det

    table = read_cm_scores(out / "eval" / "scores.txt")
    scores, labels, attacks = np.asarray(table.scores), np.asarray(table.labels), np.asarray(table.attacks)
    unseen = [sid for sid, method in spec.systems().items() if method == spec.unseen_method]
    bona = scores[labels == BONAFIDE]
    is_unseen = np.isin(attacks, unseen) & (labels == SPOOF)
    is_seen = ~np.isin(attacks, unseen) & (labels == SPOOF)
    eer_seen, _ = compute_eer(bona, scores[is_seen])
    eer_unseen, _ = compute_eer(bona, scores[is_unseen])
    det = plot_det(
        {"seen attacks": (bona, scores[is_seen]), "unseen attack": (bona, scores[is_unseen])},
        out / "det_seen_unseen.png", title="DET: attacks seen in training vs. the unseen attack",
    )
    return {"eer_seen": float(eer_seen), "eer_unseen": float(eer_unseen), "unseen_systems": unseen,
            "n_seen": int(is_seen.sum()), "n_unseen": int(is_unseen.sum()), "n_bona": int(len(bona)),
            "det": det.name}


def _score_examples(checkpoint: Path, protocols: dict, unseen: list[str]) -> list[dict]:
    """Score the first eval bona fide clip and the first unseen-attack clip with the file-scoring API."""
    from rawguard.data.protocols import read_protocol
    from rawguard.detector import Detector

    items = read_protocol(protocols["eval"], audio_dir=protocols["flac"])
    picks = [next(i for i in items if i.label == BONAFIDE), next(i for i in items if i.system in unseen)]
    detector = Detector.from_checkpoint(checkpoint)
    examples = []
    for item in picks:
        result = detector.score_file(item.path)
        examples.append({"file": Path(item.path), "truth": "bonafide" if item.label == BONAFIDE else f"spoof ({item.system})",
                         "score": result.score, "p_bonafide": result.probability_bonafide, "decision": result.decision})
    return examples


def _write_report(out: Path, metrics: dict, seen_unseen: dict, examples: list[dict], timings: dict,
                  spec, config_path: Path, result, quick: bool) -> Path:
    from rawguard.report import write_report
    from rawguard.train import CURVES

    systems = spec.systems()
    unseen = ", ".join(f"{s} ({systems[s]})" for s in seen_unseen["unseen_systems"])
    seen = ", ".join(f"{s} ({m})" for s, m in systems.items() if s not in seen_unseen["unseen_systems"])
    total = sum(timings.values())
    notes = [
        f"**EER on attacks seen in training: {100 * seen_unseen['eer_seen']:.2f} %** "
        f"({seen_unseen['n_bona']} bona fide vs. {seen_unseen['n_seen']} spoofs of {seen})",
        f"**EER on the unseen attack: {100 * seen_unseen['eer_unseen']:.2f} %** "
        f"({seen_unseen['n_bona']} bona fide vs. {seen_unseen['n_unseen']} spoofs of {unseen}, never in train/dev)",
        f"corpus: `{out / 'corpus'}` ({'quick' if quick else 'full'} size), generated procedurally: synthetic "
        "source-filter speakers (bona fide) and vocoder-like copies of held-out utterances of the same speakers "
        "(spoof), with identical padding, loudness normalisation and noise floor; train / dev / eval speakers are disjoint",
        f"model: `{out / 'run' / 'best.pt'}` (recipe `{config_path.name}`; stopped by {result.stop_reason} at step "
        f"{result.step}, best dev EER {100 * (result.best_dev_eer or 0):.2f} % at step {result.best_step})",
        *(f"scored `{e['file'].name}` (truth: {e['truth']}): score {e['score']:.3f}, P(bona fide) "
          f"{e['p_bonafide']:.3f} -> **{e['decision']}**" for e in examples),
        "time: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + f" (total {total:.0f} s)",
        "the full evaluation (scores.txt in the official CM format, metrics.json, calibration) is in "
        f"`{out / 'eval'}`; score your own files with `rawguard score --checkpoint {out / 'run' / 'best.pt'} FILE`",
    ]
    plots = {
        "DET: seen vs. unseen attacks": seen_unseen["det"],
        "DET curve (all eval trials)": "eval/det.png",
        "Score distributions": "eval/score_hist.png",
        "EER per attack": "eval/per_attack_eer.png",
        "Training curves": f"run/{CURVES}",
    }
    plots = {caption: name for caption, name in plots.items() if (out / name).is_file()}
    return write_report(metrics, out / "report.md", plots, title="rawguard demo", notes=notes)
