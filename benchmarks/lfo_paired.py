"""A lever against its control on the same leave-family-out folds: is the difference more than noise?

Two models' held-out EERs differ for three reasons: the lever, the seed, and which dev_v3 clips
happen to be in the set. This takes finished ``leave_family_out.py`` sweeps of a lever and of its
control (each side one model, or several members fused as the recipe fuses its pair: the mean of
their log-odds, each calibrated on the bona fide and seen spoofs) and reports, on the folds both
sides have:

- per fold (held-out group, seed): each side's unseen EER and the difference;
- per seed: the difference of the means over the groups, so the seed-to-seed spread shows;
- over every fold: the mean difference, in how many folds the lever was lower, and a 95 % interval
  from a **paired, clustered bootstrap** of the dev clips: each resample draws dev_v3's bona fide
  speakers, and within each group the spoofs' (system, speaker) sets, with replacement, and scores
  both sides and every fold on that same draw. Whole speakers are drawn because clips of one voice
  are not independent trials. The interval is about the clips, given the trained models; the seeds'
  spread is about training. A lever is worth keeping when both say so.

The same bootstrap gives each side's mean unseen EER an interval, for reading it against a target.
Nothing is retrained.

    python benchmarks/lfo_paired.py --name yardstick_dropout03 --names dropout "the yardstick" \\
        --lever leave_family_out_spectrum512_half_second_crops_dropout03 \\
        --control leave_family_out_spectrum512_half_second_crops_fp32

A side of several members, each ``[LABEL=]SWEEP[,SWEEP...]`` as in ``lfo_fuse_models.py``, is the
recipe's pair, e.g. ``--lever 1d=A,A_seed1 2d=B,B_seed1 --control 1d=C,C_seed1 2d=B,B_seed1``.
A member ending ``@N`` takes, in each fold, its run of the group's N-th next seed (cyclically), so
two seeds of one model can be fused against two different models: ``--lever 1d=A,A_seed1
1d_next=A,A_seed1@1 --control 1d=A,A_seed1 2d=B,B_seed1``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from leave_family_out import GROUPS  # noqa: E402
from leave_systems_out import ROOT  # noqa: E402
from lfo_fuse_models import calibrated_mean, load_runs, parse_member  # noqa: E402

LEVEL = 0.95


def side_scores(members: list[dict], fold: tuple[str, int]) -> tuple[np.ndarray, dict]:
    """``([N] dev_v3 scores, the first member's scores npz)`` of one side on one fold: the member's own
    scores, or the members' calibrated mean as the recipe's ensemble scores."""
    runs = [member[fold] for member in members]
    record, first = runs[0]
    for other_record, other in runs[1:]:
        if not np.array_equal(other["systems"], first["systems"]) or other_record["held_out"] != record["held_out"]:
            raise SystemExit(f"{fold[0]} seed {fold[1]}: the members scored different dev trials or held out "
                             "different systems")
    if len(runs) == 1:
        return first["scores"].astype(np.float64), first
    stacked = np.stack([scores["scores"].astype(np.float64) for _, scores in runs], axis=1)  # [N, M]
    return calibrated_mean(stacked, first["labels"], first["systems"], record["held_out"]), first


def cluster_ids(keys: list[str]) -> np.ndarray:
    """``[N]`` index of each trial's cluster (its key's rank among the distinct keys)."""
    _, index = np.unique(np.asarray(keys), return_inverse=True)
    return index


def cluster_counts(clusters: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``[R, N]`` multiplicity of each of ``N`` trials when ``R`` resamples each draw as many clusters
    as there are, with replacement (a trial counts once per draw of its cluster)."""
    k = int(clusters.max()) + 1
    drawn = rng.multinomial(k, np.full(k, 1.0 / k), size=resamples)  # [R, K]
    return drawn[:, clusters]


def paired_bootstrap(lever: dict, control: dict, labels: np.ndarray, systems: np.ndarray, speakers: list[str],
                     held_out: dict[str, list[str]], resamples: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Each side's mean unseen EER over the folds, ``[R]`` resamples of the dev clips each.

    Args:
        lever, control: ``{(group, seed): [N] scores}`` on the same folds.
        labels, systems: ``[N]`` of dev_v3 (``rawguard.conventions`` labels; system ``-`` for bona fide).
        speakers: ``N`` speaker ids (the cluster of a bona fide clip; a spoof's is system + speaker).
        held_out: ``{group: systems}`` of the folds' groups.

    Returns:
        ``{"lever": [R], "control": [R]}``: the mean over the folds of the unseen EER (fractions),
        every fold and both sides scored on the same ``R`` draws.
    """
    from rawguard.conventions import BONAFIDE, SPOOF
    from rawguard.metrics import resampled_eers

    rng = np.random.default_rng(seed)
    bona = labels == BONAFIDE
    bona_counts = cluster_counts(cluster_ids([speakers[i] for i in np.flatnonzero(bona)]), resamples, rng)
    spoof_masks, spoof_counts = {}, {}
    for group, systems_out in held_out.items():
        mask = (labels == SPOOF) & np.isin(systems, systems_out)
        keys = [f"{systems[i]}/{speakers[i]}" for i in np.flatnonzero(mask)]
        spoof_masks[group], spoof_counts[group] = mask, cluster_counts(cluster_ids(keys), resamples, rng)
    means = {}
    for name, side in (("lever", lever), ("control", control)):
        eers = [resampled_eers(scores[bona], scores[spoof_masks[group]], bona_counts, spoof_counts[group])
                for (group, _), scores in side.items()]
        means[name] = np.mean(eers, axis=0)
    return means


def interval(values: np.ndarray) -> tuple[float, float]:
    low, high = np.quantile(values, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return float(low), float(high)


def compare(lever_members: list[dict], control_members: list[dict], speakers: list[str],
            resamples: int) -> dict:
    """Per-fold, per-seed and overall comparison of the two sides (EERs as fractions)."""
    from rawguard.conventions import BONAFIDE, SPOOF
    from rawguard.metrics import compute_eer

    folds = sorted(set.intersection(*(set(m) for m in lever_members + control_members)),
                   key=lambda fold: (list(GROUPS).index(fold[0]), fold[1]))
    if not folds:
        raise SystemExit("the lever and the control share no (group, seed) fold")
    lever, control, held_out, rows = {}, {}, {}, []
    labels = systems = None
    for fold in folds:
        lever[fold], first = side_scores(lever_members, fold)
        control[fold], other = side_scores(control_members, fold)
        if not np.array_equal(first["systems"], other["systems"]):
            raise SystemExit(f"{fold[0]} seed {fold[1]}: the lever and the control scored different dev trials")
        labels, systems = first["labels"], first["systems"]
        held_out[fold[0]] = lever_members[0][fold][0]["held_out"]
        bona = labels == BONAFIDE
        unseen = (labels == SPOOF) & np.isin(systems, held_out[fold[0]])
        row = {"group": fold[0], "seed": fold[1],
               "lever": compute_eer(lever[fold][bona], lever[fold][unseen])[0],
               "control": compute_eer(control[fold][bona], control[fold][unseen])[0]}
        rows.append({**row, "difference": row["lever"] - row["control"]})
    if len(speakers) != len(labels):
        raise SystemExit(f"dev_v3 cache has {len(speakers)} clips, the runs scored {len(labels)}")
    seeds = sorted({seed for _, seed in folds})
    groups = sorted({group for group, _ in folds}, key=list(GROUPS).index)
    per_seed = []
    for seed in seeds:
        mine = [row for row in rows if row["seed"] == seed]
        if {row["group"] for row in mine} == set(groups):  # a seed with every group: comparable means
            per_seed.append({"seed": seed, "lever": float(np.mean([r["lever"] for r in mine])),
                             "control": float(np.mean([r["control"] for r in mine])),
                             "difference": float(np.mean([r["difference"] for r in mine]))})
    boot = paired_bootstrap(lever, control, labels, systems, speakers, held_out, resamples)
    difference = boot["lever"] - boot["control"]
    return {
        "folds": rows, "per_seed": per_seed, "groups": groups, "resamples": resamples,
        "lever_mean": float(np.mean([r["lever"] for r in rows])),
        "control_mean": float(np.mean([r["control"] for r in rows])),
        "difference_mean": float(np.mean([r["difference"] for r in rows])),
        "lever_interval": interval(boot["lever"]), "control_interval": interval(boot["control"]),
        "difference_interval": interval(difference),
        "lever_lower_share": float(np.mean(difference < 0)),
        "folds_lever_lower": int(sum(r["difference"] < 0 for r in rows)),
    }


def pct(value: float) -> str:
    return f"{100 * value:.1f}"


def span(pair: tuple[float, float]) -> str:
    return f"{pct(pair[0])}-{pct(pair[1])}"


def summarise(result: dict, lever_name: str, control_name: str) -> str:
    """The comparison as a markdown table (one row per fold, per seed, and over every fold) and a verdict line."""
    lines = ["| held-out group | seed | lever: unseen EER % | control: unseen EER % | difference (points) |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {GROUPS[r['group']][0]} | {r['seed']} | {pct(r['lever'])} | {pct(r['control'])} | "
              f"{100 * r['difference']:+.1f} |" for r in result["folds"]]
    for row in result["per_seed"]:
        lines.append(f"| mean over the groups | {row['seed']} | {pct(row['lever'])} | {pct(row['control'])} | "
                     f"{100 * row['difference']:+.1f} |")
    lines.append(f"| **mean over every fold** | | **{pct(result['lever_mean'])}** ({span(result['lever_interval'])}) "
                 f"| **{pct(result['control_mean'])}** ({span(result['control_interval'])}) "
                 f"| **{100 * result['difference_mean']:+.1f}** ({100 * result['difference_interval'][0]:+.1f} to "
                 f"{100 * result['difference_interval'][1]:+.1f}) |")
    spread = [row["difference"] for row in result["per_seed"]]
    seeds = (f"per-seed differences {', '.join(f'{100 * d:+.1f}' for d in spread)} points"
             + (f" (spread {100 * float(np.std(spread, ddof=1)):.1f})" if len(spread) > 1 else ""))
    verdict = (f"`{lever_name}` against `{control_name}`: lower in {result['folds_lever_lower']} of "
               f"{len(result['folds'])} folds; {seeds}; in {100 * result['lever_lower_share']:.0f} % of "
               f"{result['resamples']} paired resamples of the dev clips (whole speakers) the lever's mean is lower. "
               f"Intervals: {int(100 * LEVEL)} %, clustered bootstrap of the dev clips, the trained models fixed.")
    return "\n".join(lines) + "\n\n" + verdict


def next_seeds(runs: dict[tuple[str, int], tuple], shift: int) -> dict[tuple[str, int], tuple]:
    """``runs`` re-keyed so that fold (group, seed) holds the run of the group's ``shift``-th next seed
    (cyclically over the seeds that group has)."""
    shifted = {}
    for group in {group for group, _ in runs}:
        seeds = sorted(seed for g, seed in runs if g == group)
        for index, seed in enumerate(seeds):
            shifted[(group, seed)] = runs[(group, seeds[(index + shift) % len(seeds)])]
    return shifted


def parse_side(specs: list[str], runs: Path, name: str | None) -> tuple[str, list[dict]]:
    """``(name, [member runs])`` of one side; the name defaults to its members' labels."""
    labels, members = [], []
    for spec in specs:
        spec, _, shift = spec.partition("@")
        if shift and not shift.isdigit():
            raise SystemExit(f"member {spec}@{shift}: the seed shift after @ must be a whole number")
        label, sweeps = parse_member(spec)
        labels.append(label + (f"@{shift}" if shift else ""))
        members.append(next_seeds(load_runs(runs, sweeps), int(shift or 0)))
    return name or " + ".join(labels), members


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lever", nargs="+", required=True,
                        help="the lever's model: one member, or several fused as the recipe fuses; "
                             "each [LABEL=]SWEEP[,SWEEP...]")
    parser.add_argument("--control", nargs="+", required=True, help="its control, the same way")
    parser.add_argument("--names", nargs=2, metavar=("LEVER", "CONTROL"), help="what the tables call the two sides")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "lfo", help="the sweeps' --runs")
    parser.add_argument("--work", type=Path, default=ROOT / "caches" / "lfo", help="the sweeps' --work")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "generalisation")
    parser.add_argument("--name", default="lfo_paired", help="file stem of the outputs")
    args = parser.parse_args(argv)
    if args.resamples < 100:
        parser.error("--resamples: at least 100 for a 95 % interval")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from rawguard.data.cache import Cache

    names = args.names or (None, None)
    lever_name, lever = parse_side(args.lever, args.runs, names[0])
    control_name, control = parse_side(args.control, args.runs, names[1])
    speakers = list(Cache.open(args.work / "dev_v3").speakers)
    result = compare(lever, control, speakers, args.resamples)
    header = (f"Paired comparison on the leave-family-out folds both have ({len(result['folds'])}), dev_v3, "
              f"unseen EER of the held-out group: lever `{lever_name}` ({', '.join(args.lever)}) against control "
              f"`{control_name}` ({', '.join(args.control)}); a side of several members is their calibrated mean, "
              "as the recipe's ensemble.")
    text = header + "\n\n" + summarise(result, lever_name, control_name)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.md").write_text(text + "\n")
    (args.out / f"{args.name}.json").write_text(json.dumps(
        {"lever": args.lever, "control": args.control, **result}, indent=2))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
