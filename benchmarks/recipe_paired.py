"""Whole recipe runs of a lever against runs of its control on dev_v3: is the difference more than noise?

A lever that survives the leave-family-out folds is then tried in the whole recipe, where one run's
dev_v3 interval spans 3-4 points and two runs of the same recipe differ by 1-2. This reads finished
``rawguard recipe shared-corpus`` output folders (``OUT/eval/dev_v3/scores.txt``; runs that share
caches and copies, so that only the trained models differ) and reports:

- each run's dev_v3 EER;
- per family group of ``leave_family_out.GROUPS`` (``systems.tsv``'s family column): each side's
  mean over its runs of the group's per-system EERs, so that a trade between families shows;
- each side's mean EER over its runs, and the difference of the means, with a 95 % interval from a
  **paired, clustered bootstrap** of the dev clips as in ``lfo_paired.py``: each resample draws
  dev_v3's bona fide speakers and the spoofs' (system, speaker) sets with replacement, and scores
  every run of both sides on that same draw. The interval is about the clips, given the trained
  models; the spread between a side's runs is about training.

    python benchmarks/recipe_paired.py --lever runs/conv_seed0 runs/conv_seed1 \\
        --control runs/recipe runs/recipe_seed1 --out benchmarks/results/accuracy/recipe_paired.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from leave_family_out import CORPUS, GROUPS, group_systems, read_families  # noqa: E402
from lfo_paired import LEVEL, cluster_counts, cluster_ids, interval  # noqa: E402
from recipe_rejection import DEV_SCORES, speakers_of  # noqa: E402


def read_runs(runs: list[Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Every run's dev_v3 scores on the same trials.

    Returns:
        ``[M, N]`` scores of ``M`` runs, ``[N]`` labels and ``[N]`` systems in the first run's order,
        and the ``N`` utterance ids.
    """
    from rawguard.scorefiles import read_cm_scores

    tables = []
    for run in runs:
        path = run / DEV_SCORES
        if not path.is_file():
            raise SystemExit(f"{run}: no {DEV_SCORES} (run the recipe's evaluate stage first)")
        tables.append((path, read_cm_scores(path)))
    first_path, first = tables[0]
    order = {utt: i for i, utt in enumerate(first.utt_ids)}
    scores = np.empty((len(tables), len(order)))
    for row, (path, table) in enumerate(tables):
        if sorted(table.utt_ids) != sorted(order):
            raise SystemExit(f"{path}: scores other trials than {first_path}")
        scores[row, [order[utt] for utt in table.utt_ids]] = table.scores
    return scores, np.asarray(first.labels), np.asarray(first.attacks), list(first.utt_ids)


def group_eers(scores: np.ndarray, labels: np.ndarray, systems: np.ndarray,
               groups: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """``{group: [M]}``: each run's mean over the group's scored systems of the per-system EER."""
    from rawguard.conventions import BONAFIDE
    from rawguard.metrics import compute_eer

    bona = labels == BONAFIDE
    result = {}
    for group, members in groups.items():
        present = [system for system in members if np.any(systems == system)]
        if present:
            result[group] = np.array([np.mean([compute_eer(run[bona], run[systems == system])[0]
                                               for system in present]) for run in scores])
    return result


def compare(scores: np.ndarray, lever_rows: int, labels: np.ndarray, systems: np.ndarray, speakers: list[str],
            groups: dict[str, list[str]], resamples: int, seed: int = 0) -> dict:
    """Each run's EER, each side's mean and the difference of the means (fractions).

    Args:
        scores: ``[M, N]``, the lever's ``lever_rows`` runs first, then the control's.
        labels, systems: ``[N]`` (``rawguard.conventions`` labels; system ``-`` for bona fide).
        speakers: ``N`` speaker ids (a bona fide clip's cluster; a spoof's is system + speaker).
        groups: ``{group key: [systems]}`` for the per-family means.
    """
    from rawguard.conventions import BONAFIDE, SPOOF
    from rawguard.metrics import compute_eer, resampled_eers

    bona, spoof = labels == BONAFIDE, labels == SPOOF
    eers = np.array([compute_eer(run[bona], run[spoof])[0] for run in scores])
    rng = np.random.default_rng(seed)
    bona_counts = cluster_counts(cluster_ids([speakers[i] for i in np.flatnonzero(bona)]), resamples, rng)
    spoof_counts = cluster_counts(cluster_ids([f"{systems[i]}/{speakers[i]}" for i in np.flatnonzero(spoof)]),
                                  resamples, rng)
    boot = np.stack([resampled_eers(run[bona], run[spoof], bona_counts, spoof_counts) for run in scores])  # [M, R]
    lever, control = boot[:lever_rows].mean(axis=0), boot[lever_rows:].mean(axis=0)
    by_group = {group: {"lever": float(eers_of[:lever_rows].mean()), "control": float(eers_of[lever_rows:].mean())}
                for group, eers_of in group_eers(scores, labels, systems, groups).items()}
    return {
        "eers": eers.tolist(), "resamples": resamples, "groups": by_group,
        "lever_mean": float(eers[:lever_rows].mean()), "control_mean": float(eers[lever_rows:].mean()),
        "difference_mean": float(eers[:lever_rows].mean() - eers[lever_rows:].mean()),
        "lever_interval": interval(lever), "control_interval": interval(control),
        "difference_interval": interval(lever - control),
        "lever_lower_share": float(np.mean(lever < control)),
    }


def summarise(result: dict, lever: list[Path], control: list[Path]) -> str:
    """A markdown table (one row per run, one per side) and a verdict line."""
    lines = ["| side | run | dev_v3 EER % |", "|---|---|---:|"]
    for side, runs, offset in (("lever", lever, 0), ("control", control, len(lever))):
        lines += [f"| {side} | {run} | {100 * result['eers'][offset + i]:.2f} |" for i, run in enumerate(runs)]
    for side in ("lever", "control"):
        low, high = result[f"{side}_interval"]
        lines.append(f"| {side}, mean | | {100 * result[f'{side}_mean']:.2f} ({100 * low:.2f}-{100 * high:.2f}) |")
    lines += ["", "| family group | lever: mean per-system EER % | control | difference (points) |",
              "|---|---:|---:|---:|"]
    lines += [f"| {GROUPS[group][0]} | {100 * side['lever']:.1f} | {100 * side['control']:.1f} | "
              f"{100 * (side['lever'] - side['control']):+.1f} |" for group, side in result["groups"].items()]
    low, high = result["difference_interval"]
    return ("\n".join(lines) + f"\n\nlever minus control: **{100 * result['difference_mean']:+.2f}** points "
            f"({100 * low:+.2f} to {100 * high:+.2f}); the lever's mean is lower in "
            f"{100 * result['lever_lower_share']:.0f} % of {result['resamples']} paired resamples of the dev "
            f"clips (whole speakers). Intervals: {int(100 * LEVEL)} %, clustered bootstrap, the trained models fixed.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lever", nargs="+", type=Path, required=True, help="recipe output folders with the lever")
    parser.add_argument("--control", nargs="+", type=Path, required=True, help="recipe output folders without it")
    parser.add_argument("--protocol", type=Path, default=CORPUS / "protocols" / "dev_v3.txt")
    parser.add_argument("--audio-dir", type=Path, default=CORPUS / "flac", help="the protocol's audio folder")
    parser.add_argument("--systems", type=Path, default=CORPUS / "systems.tsv", help="system -> family table")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    scores, labels, systems, utt_ids = read_runs(args.lever + args.control)
    by_utt = speakers_of(args.protocol, args.audio_dir)
    missing = [utt for utt in utt_ids if utt not in by_utt]
    if missing:
        raise SystemExit(f"{len(missing)} scored utterance(s) not in {args.protocol}, e.g. {missing[0]!r}")
    groups = group_systems(read_families(args.systems), args.systems)
    result = compare(scores, len(args.lever), labels, systems, [by_utt[u] for u in utt_ids], groups, args.resamples)
    print(summarise(result, args.lever, args.control))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {"lever": [str(p) for p in args.lever], "control": [str(p) for p in args.control], **result}
        args.out.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
