"""Leave-family-out: the recipe's model on whole spoofing families it never saw in training.

The corpus's ``systems.tsv`` family column is grouped (:data:`GROUPS`) into LM-based TTS,
diffusion/flow-matching TTS, neural voice conversion, neural vocoders and classical systems (plus
the other neural TTS, held out only when ``--groups`` names it). For each group in turn, every one
of its systems is removed from ``train_v3.txt`` and from the dev set the run could select on; the
recipe's config (``shared_corpus``) trains on the rest, plus ``--train-extra`` copy sets, for each
seed; the last weights (the weight average the recipe ships) score the whole ``dev_v3.txt``.
Reported per group, mean +- sd over seeds:

- **unseen EER**: dev_v3 bona fide against the dev spoofs of the held-out group;
- **seen EER**: dev_v3 bona fide against the other dev spoofs;
- **bona fide rejection** at the run's dev threshold (the EER threshold of bona fide against the
  seen spoofs of dev_v3, the operating point a user could set without the unseen group) for the
  emotional, broadcast and non-English bona fide of dev_v3, and clean read speech for reference
  (:func:`bonafide_subsets`: speaker-id prefixes, corpus README).

Each group's seeds are also fused (mean of their scores, :func:`seed_fusion`): the "several small
models" lever read off the same runs.

Two profiles (``--profile``):

- ``yardstick`` (default): rawnet-lite at its default size (one fifth of the recipe's cost per step)
  on a 4,000-step cosine, monitored every 1,000 steps on the seen and the held-out dev spoofs so
  that a curve still falling shows in ``<name>_curves.png``. 15 runs in about half an hour on 2 CPU
  cores (``--jobs 2``); levers are judged against its baseline with ``--set`` / ``--augment``.
- ``recipe``: the recipe's config unchanged (12,000 steps of the wider model: hours per seed on 2
  cores, minutes on a GPU).

Writes ``<out>/<name>.md`` (table), ``.json`` (every run), ``.png`` and ``_curves.png``. Resumable:
caches are prepared once, and a group/seed whose ``lfo_result.json`` exists is not retrained.

The yardstick's baseline and two levers (an augmentation set, a model option)::

    python benchmarks/leave_family_out.py --jobs 2
    python benchmarks/leave_family_out.py --jobs 2 --augment channel --name leave_family_out_channel
    python benchmarks/leave_family_out.py --jobs 2 --set data.window=32000 data.batch_size=16 --name leave_family_out_2s_crops

The recipe's config draws half the spoofs from copy sets (``data.copy_share``): with
``--train-extra RECIPE_OUT/synth/*/protocol.csv`` it keeps that share, without it the runs draw
from the corpus's spoofs only.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from leave_systems_out import (  # noqa: E402
    CORPUS, ROOT, condition_overrides, eer_breakdown, held_out_sets, plot, plot_curves, read_split, score_dev,
)

GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "lm-tts": ("LM-based TTS", ("lm-tts",)),
    "diffusion-flow-tts": ("diffusion/flow-matching TTS", ("diffusion-tts", "flow-matching-tts")),
    "neural-vc": ("neural voice conversion", ("neural-voice-conversion",)),
    "neural-vocoder": ("neural vocoders", ("neural-vocoder",)),
    "classical": ("classical", ("formant", "concatenative", "parametric", "signal-processing-vocoder",
                                "voice-conversion")),
    "other-neural-tts": ("other neural TTS (VITS, Tacotron 2, FastSpeech 2, Glow-TTS, ...)", ("neural-tts",)),
}
"""Group key -> (title, the ``systems.tsv`` family values it gathers)."""
DEFAULT_GROUPS = ("lm-tts", "diffusion-flow-tts", "neural-vc", "neural-vocoder", "classical")
PROTOCOLS = ("train_v3.txt", "dev_v3.txt")
PROFILES: dict[str, list[str]] = {
    # Every step, however slow the machine: the recipe fits its schedule into its minutes, a fold may not.
    "yardstick": ["model.frontend_channels=32", "model.block_channels=[32,64]", "model.gru_hidden=64",
                  "train.max_steps=4000", "train.fit_schedule=false"],
    "recipe": [],
}
"""Overrides of the recipe's config (``shared_corpus``) per ``--profile``."""
SUBSETS = ("emotional", "broadcast", "non-English", "read (LibriSpeech)")

# Speaker-id prefixes of dev_v3's bona fide (corpus README, "bona fide speakers" and "new bona fide material").
_EMOTIONAL = ("EMODB_", "URDU_")  # EmoDB acted emotions (German); Urdu TV talk shows in four emotions
_BROADCAST = ("URDU_",)
_NON_ENGLISH = ("EMODB_", "URDU_", "CSS10_", "CSMSC", "JSUT", "AST_June", "AST_Carlo")  # + MLS_<lang> but English


def read_families(path: Path = CORPUS / "systems.tsv") -> dict[str, str]:
    """``{system: family}`` of every spoofing system in ``systems.tsv`` (bona fide ``-`` left out)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    if not rows or not {"system", "family"} <= set(rows[0]):
        raise SystemExit(f"{path}: expected a tab-separated header with 'system' and 'family' columns")
    return {row["system"]: row["family"] for row in rows if row["system"] != "-"}


def group_systems(families: dict[str, str], path: Path = CORPUS / "systems.tsv") -> dict[str, list[str]]:
    """``{group key: [systems]}`` for every group of :data:`GROUPS`, from each system's family.

    Raises:
        SystemExit: a family no group gathers (names it and its systems), so a new corpus family is
            never silently left in training.
    """
    group_of = {family: key for key, (_, members) in GROUPS.items() for family in members}
    unknown = sorted({family for family in families.values() if family not in group_of})
    if unknown:
        listed = "; ".join(f"{f}: {', '.join(s for s, g in families.items() if g == f)}" for f in unknown)
        raise SystemExit(f"{path}: family value(s) no group of leave_family_out.GROUPS gathers ({listed})")
    groups: dict[str, list[str]] = {key: [] for key in GROUPS}
    for system in sorted(families):
        groups[group_of[families[system]]].append(system)
    return groups


def bonafide_subsets(speaker: str) -> list[str]:
    """The reported subsets (:data:`SUBSETS`) a bona fide speaker id belongs to (possibly several or none)."""
    subsets = []
    if speaker.startswith(_EMOTIONAL):
        subsets.append("emotional")
    if speaker.startswith(_BROADCAST):
        subsets.append("broadcast")
    if speaker.startswith(_NON_ENGLISH) or (speaker.startswith("MLS_") and not speaker.startswith("MLS_english")):
        subsets.append("non-English")
    if speaker.startswith("LS_"):
        subsets.append("read (LibriSpeech)")
    return subsets


def bonafide_rejection(scores: np.ndarray, labels: np.ndarray, systems: np.ndarray, speakers: list[str],
                       held_out: list[str]) -> dict:
    """Bona fide rejection rate of each subset at the dev threshold (EER threshold of all bona fide
    against the seen spoofs), and the subsets' sizes."""
    from rawguard.conventions import BONAFIDE, SPOOF
    from rawguard.metrics import compute_eer

    bona = labels == BONAFIDE
    seen = (labels == SPOOF) & ~np.isin(systems, held_out)
    threshold = float(compute_eer(scores[bona], scores[seen])[1])
    members = {name: np.array([bona[i] and name in bonafide_subsets(speakers[i]) for i in range(len(labels))],
                              dtype=bool) for name in SUBSETS}
    return {
        "dev_threshold": threshold,
        "bonafide_rejection": {name: float(np.mean(scores[mask] <= threshold)) if mask.any() else None
                               for name, mask in members.items()},
        "n_bonafide_subset": {name: int(mask.sum()) for name, mask in members.items()},
    }


def prepare_group(work: Path, group: str, held_out: list[str], train_extra: list[Path]) -> dict[str, Path]:
    """Caches of one group's experiment: ``train_seen`` (train_v3 + extra, without the group),
    ``dev_seen``, ``dev_unseen`` (dev bona fide and the group's spoofs: the monitored curve) and the
    whole ``dev`` (dev_v3, shared by every group)."""
    from rawguard.data.prepare import prepare_cache

    sets = held_out_sets(read_split(PROTOCOLS[0], train_extra), read_split(PROTOCOLS[1]), held_out, unseen=True)
    extra_tag = "".join(f"+{p.parent.name}" for p in train_extra)
    folders = {"train_seen": work / f"train_without_{group}{extra_tag}", "dev_seen": work / f"dev_without_{group}",
               "dev": work / "dev_v3", "dev_unseen": work / f"dev_bonafide_and_{group}"}
    for name, folder in folders.items():
        prepare_cache(sets[name], folder, progress=False, wait=True)  # a sweep beside this one may be writing it
    return folders


def fold_overrides(seed: int, args) -> list[str]:
    """Config overrides of one run: the profile, the seed and machine, the monitor, the lever."""
    return [*PROFILES[args.profile], f"train.seed={seed}", f"train.threads={args.threads}", f"train.device={args.device}",
            # The dev evaluations only draw the curves: the last weights are scored, nothing is selected.
            f"eval.every={args.monitor_every}", "eval.patience=0",
            *([] if args.train_extra else ["data.sampling.copy_share=null"]),
            *([f"train.max_steps={args.max_steps}"] if args.max_steps else []),
            *([f"train.max_minutes={args.budget_minutes}"] if args.budget_minutes else []),
            *(condition_overrides(args.augment) if args.augment else []), *args.set]


def run_fold(group: str, held_out: list[str], seed: int, args, caches: dict[str, Path]) -> dict:
    """Train without ``held_out`` (resumable), score dev_v3 with the last weights, record the result."""
    import torch

    from rawguard.config import load_config
    from rawguard.train import train
    from rawguard.training.log import read_metrics

    run_dir = args.runs / args.name / f"{group}_seed{seed}"
    done = run_dir / "lfo_result.json"
    if done.exists():
        return json.loads(done.read_text())
    if args.threads:  # also for the scoring below, which runs outside train()
        torch.set_num_threads(args.threads)
    overrides = fold_overrides(seed, args)
    config = load_config(args.config, overrides)
    started = time.monotonic()
    result = train(config, caches["train_seen"], caches["dev_seen"], run_dir, resume=True, progress=False,
                   monitor={"unseen": caches["dev_unseen"]} if args.monitor_every else None)
    if result.interrupted:  # leave it resumable and record nothing
        raise SystemExit(f"{run_dir}: stopped at step {result.step} ({result.stop_reason}); run again to resume")
    scores, dev = score_dev(run_dir, caches["dev"], config)
    labels, systems = np.asarray(dev.labels), np.asarray(dev.systems)
    record = {"group": group, "seed": seed, "held_out": held_out, "steps": result.step,
              "max_steps": config.train.max_steps, "stop_reason": result.stop_reason,
              "train_s": round(time.monotonic() - started, 1), "overrides": overrides,
              **eer_breakdown(scores, labels, systems, held_out),
              **bonafide_rejection(scores, labels, systems, list(dev.speakers), held_out)}
    if args.monitor_every:
        record["curve"] = [{"step": r["step"], "seen_eer": r["dev_eer"], "unseen_eer": r["unseen_eer"]}
                           for r in read_metrics(run_dir / "metrics.jsonl") if r["type"] == "dev"]
    done.write_text(json.dumps(record, indent=2))
    return record


def _exit_with_parent(parent: int) -> None:
    """Pool-worker initializer: end this worker when the sweep's process is gone.

    Without it a worker orphaned by ``kill <sweep>`` trains on, and a rerun of the sweep would
    train the same run folder twice at once. Checkpoints are written atomically, so ending
    mid-run loses at most the steps since the last one.
    """
    import os
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(2)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def run_folds(folds: list[tuple], jobs: int) -> list[dict]:
    """:func:`run_fold` over ``folds`` (its argument tuples), ``jobs`` at a time; records in fold order.

    A fold that fails is reported (with its traceback) as soon as it does, the others go on, and
    the sweep then stops naming every failed fold: rerunning it resumes the rest.
    """
    def report(record: dict) -> dict:
        print(f"{record['group']} seed {record['seed']}: unseen EER {record['unseen_eer']:.2%}, seen EER "
              f"{record['seen_eer']:.2%}, {record['steps']} steps ({record['stop_reason']}, {record['train_s']:.0f} s)",
              flush=True)
        return record

    if jobs <= 1:
        return [report(run_fold(*fold)) for fold in folds]
    import multiprocessing
    import os
    import traceback
    from concurrent.futures import as_completed

    records, failed = {}, []
    # spawn: each run starts torch afresh instead of inheriting the parent's thread pools.
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_exit_with_parent,
                             initargs=(os.getpid(),)) as pool:
        futures = {pool.submit(run_fold, *fold): index for index, fold in enumerate(folds)}
        for future in as_completed(futures):
            group, _, seed = folds[futures[future]][:3]
            try:
                records[futures[future]] = report(future.result())
            except Exception as error:  # noqa: BLE001 -- reported now, raised once the others finish
                failed.append(f"{group} seed {seed}")
                print(f"{group} seed {seed}: FAILED\n"
                      + "".join(traceback.format_exception(error)), file=sys.stderr, flush=True)
    if failed:
        raise SystemExit(f"{len(failed)} run(s) failed: {', '.join(failed)} (tracebacks above); run again to resume")
    return [records[index] for index in range(len(folds))]


def seed_fusion(records: list[dict], runs: Path) -> dict[str, dict]:
    """Per group with several seeds: unseen and seen EER of the mean of the seeds' dev_v3 scores.

    The scores are the models' bona fide-minus-spoof logits, on comparable scales after the same
    recipe, so a plain mean stands in for the calibrated fusion ``rawguard fuse`` fits on dev.
    """
    fused = {}
    for group in dict.fromkeys(r["group"] for r in records):
        rows = [r for r in records if r["group"] == group]
        if len(rows) < 2:
            continue
        loaded = [np.load(runs / f"{group}_seed{r['seed']}" / "lso_scores.npz") for r in rows]
        scores = np.mean([z["scores"] for z in loaded], axis=0)
        result = eer_breakdown(scores, loaded[0]["labels"], loaded[0]["systems"], rows[0]["held_out"])
        fused[group] = {"seeds": [r["seed"] for r in rows], "unseen_eer": result["unseen_eer"],
                        "seen_eer": result["seen_eer"]}
    return fused


def _mean_sd(values: list[float]) -> str:
    """``"12.3 ± 1.0"`` (percent; sd over seeds with ddof 1, ``-`` for a single seed)."""
    a = 100 * np.asarray(values, dtype=float)
    return f"{a.mean():.1f} ± {a.std(ddof=1):.1f}" if len(a) > 1 else f"{a.mean():.1f} ± -"


def summarise(records: list[dict], fused: dict[str, dict]) -> str:
    """Markdown table: one row per held-out group, EERs as mean ± sd over seeds, the seeds fused,
    rejection means; a last row with the means over groups."""
    lines = ["| held-out group | systems | unseen dev spoofs | seeds | unseen EER % | per-seed unseen EER % | "
             "seeds fused: unseen EER % | seen EER % | " + " | ".join(f"bona fide rejected %: {s}" for s in SUBSETS)
             + " |", "|---|---|---:|---:|---:|---|---:|---:|" + "---:|" * len(SUBSETS)]
    for group in dict.fromkeys(r["group"] for r in records):
        rows = [r for r in records if r["group"] == group]
        rejection = []
        for subset in SUBSETS:
            values = [r["bonafide_rejection"][subset] for r in rows if r["bonafide_rejection"][subset] is not None]
            n = rows[0]["n_bonafide_subset"][subset]
            rejection.append(f"{100 * np.mean(values):.1f} (n={n})" if values else "-")
        lines.append(f"| {GROUPS[group][0]} | {', '.join(rows[0]['held_out'])} | {rows[0]['n_unseen']} | {len(rows)} | "
                     f"{_mean_sd([r['unseen_eer'] for r in rows])} | "
                     f"{', '.join(format(100 * r['unseen_eer'], '.1f') for r in rows)} | "
                     f"{format(100 * fused[group]['unseen_eer'], '.1f') if group in fused else '-'} | "
                     f"{_mean_sd([r['seen_eer'] for r in rows])} | " + " | ".join(rejection) + " |")
    groups = list(dict.fromkeys(r["group"] for r in records))
    if len(groups) > 1:
        def group_mean(key: str) -> float:  # groups weigh equally, whatever their number of seeds
            return 100 * np.mean([np.mean([r[key] for r in records if r["group"] == g]) for g in groups])
        rejection = [[r["bonafide_rejection"][s] for r in records if r["bonafide_rejection"][s] is not None]
                     for s in SUBSETS]
        fused_mean = (f"{100 * np.mean([fused[g]['unseen_eer'] for g in groups]):.1f}"
                      if all(g in fused for g in groups) else "-")
        lines.append(f"| **mean over groups** | | | | {group_mean('unseen_eer'):.1f} | | {fused_mean} | "
                     f"{group_mean('seen_eer'):.1f} | "
                     + " | ".join(f"{100 * np.mean(v):.1f}" if v else "-" for v in rejection) + " |")
    return "\n".join(lines)


def describe_groups(groups: dict[str, list[str]]) -> str:
    """The grouping, one line per group: key, title, family values, systems."""
    return "\n".join(f"  {key:<18} {GROUPS[key][0]}: families {', '.join(GROUPS[key][1])}; systems "
                     f"{', '.join(systems) or '-'}" for key, systems in groups.items())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", nargs="+", default=list(DEFAULT_GROUPS), choices=list(GROUPS),
                        help=f"groups held out in turn (default: {' '.join(DEFAULT_GROUPS)})")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--config", default="shared_corpus", help="training config (default: the recipe's)")
    parser.add_argument("--profile", choices=list(PROFILES), default="yardstick",
                        help="yardstick: default-size rawnet-lite, 4,000 steps (default); recipe: the config as it is")
    parser.add_argument("--max-steps", type=int, default=None, help="train.max_steps (default: the profile's)")
    parser.add_argument("--budget-minutes", type=float, default=None,
                        help="train.max_minutes per run (default: the config's)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (0: torch's default)")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once, in separate processes")
    parser.add_argument("--monitor-every", type=int, default=1000, metavar="STEPS",
                        help="score dev (seen) and the held-out group every STEPS for the curves (0: never)")
    parser.add_argument("--augment", default=None, metavar="NAME",
                        help="configs/augment/NAME.yaml applied to every run (an augmentation lever)")
    parser.add_argument("--device", default="cpu", help="train.device (cpu, cuda)")
    parser.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                        help="extra config overrides for every run (the lever being judged)")
    parser.add_argument("--train-extra", nargs="*", type=Path, default=[], metavar="PROTOCOL",
                        help="more training data for every run, e.g. the recipe's copy sets (OUT/synth/*/protocol.csv)")
    parser.add_argument("--work", type=Path, default=ROOT / "caches" / "lfo", help="cache folder (git-ignored)")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "lfo", help="run folders (git-ignored)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "generalisation",
                        help="where the table (.md), records (.json) and plot (.png) go")
    parser.add_argument("--name", default="leave_family_out", help="file stem of those outputs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (CORPUS / "protocols" / PROTOCOLS[0]).is_file():
        print(f"corpus v3 not found at {CORPUS}", file=sys.stderr)
        return 1
    families = read_families()
    groups = group_systems(families)
    print("Family groups (systems.tsv family column):\n" + describe_groups(groups), flush=True)
    folds = []
    for group in args.groups:
        caches = prepare_group(args.work, group, groups[group], args.train_extra)
        folds += [(group, groups[group], seed, args, caches) for seed in args.seeds]
    records = run_folds(folds, args.jobs)
    steps = sorted({(r["steps"], r["max_steps"], r["stop_reason"]) for r in records})
    header = (f"Leave-family-out on corpus v3 (train on {PROTOCOLS[0]} without the group, score {PROTOCOLS[1]}): "
              f"config {args.config}, seeds {', '.join(map(str, args.seeds))}, steps run "
              f"{', '.join(f'{s} of {m} ({why})' for s, m, why in steps)}"
              + f", profile {args.profile}" + (f", augmentation set {args.augment}" if args.augment else "")
              + (f", overrides {' '.join(args.set)}" if args.set else "")
              + (f", extra training data {', '.join(p.parent.name for p in args.train_extra)}" if args.train_extra
                 else ", no copy sets")
              + ". Rejection: share of a bona fide subset of dev_v3 scored at or below the run's dev threshold "
                "(EER threshold of bona fide against the seen spoofs), mean over seeds.")
    fused = seed_fusion(records, args.runs / args.name)
    table = summarise(records, fused)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.md").write_text(header + "\n\nGroups:\n\n" + describe_groups(groups)
                                              + "\n\n" + table + "\n")
    (args.out / f"{args.name}.json").write_text(json.dumps({"records": records, "seeds_fused": fused}, indent=2))
    plot(records, args.out / f"{args.name}.png", f"leave-family-out, {len(args.seeds)} seed(s)", by="group",
         tick=lambda group: GROUPS[group][0].split(" (")[0].replace(" ", "\n", 1), unseen_label="held-out group",
         ylabel="dev_v3 EER (%)")
    if args.monitor_every:
        plot_curves(records, args.out / f"{args.name}_curves.png", "leave-family-out: dev_v3 EER while training "
                    "(seen spoofs dashed, held-out group solid)", by="group", label=lambda g: GROUPS[g][0].split(" (")[0])
    print(header + "\n\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
