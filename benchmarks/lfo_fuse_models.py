"""Several different small models fused, against one model given their total compute.

Takes finished ``leave_family_out.py`` sweeps (``--members``: each a different model or recipe,
trained on the same folds) and, per held-out group and seed, fuses the members' dev_v3 scores in
two ways:

- **mean**: the plain mean of their logits (bona fide minus spoof);
- **logistic**: ``rawguard fuse``'s logistic fusion, fitted on the trials the fold's training
  could know of, the bona fide and the *seen* spoofs of dev_v3; the held-out family's spoofs
  never inform the weights;
- **calibrated**: the mean of the members' log-odds, each member calibrated alone on those same
  trials, which is what an ensemble of checkpoints (``rawguard ensemble``, repeated
  ``--checkpoint``) computes from the calibrations stored at dev selection.

Each fused model is scored like a sweep's run: unseen-group EER, seen EER, bona fide rejection at
the dev threshold. ``--reference`` names the sweep of one model trained as long as the members
together (e.g. ``leave_family_out_12k_steps`` against three 4,000-step members), whose matching
runs are listed beside. Nothing is retrained.

    python benchmarks/lfo_fuse_models.py --members leave_family_out leave_family_out_2s_crops \\
        leave_family_out_recipe_width --reference leave_family_out_12k_steps --name lfo_fused_three_models

A member (or the reference) may gather several sweeps, ``[LABEL=]SWEEP[,SWEEP...]``: the same model's
seeds or held-out groups run under separate names, e.g. (two sweeps of each member shown)::

    python benchmarks/lfo_fuse_models.py --name lfo_recipe_pair_half_second_crops_3seeds --members \\
        1d=leave_family_out_recipe_spectrum512_half_second_crops,leave_family_out_recipe_spectrum512_half_second_crops_seed1 \\
        2d=leave_family_out_recipe_2d_encoder_spectrum512_lm_tts,leave_family_out_recipe_2d_encoder_spectrum512_seed1

Each cell then gives the spread over the seeds too (sample standard deviation, as the sweeps' own
tables). The bona fide rejection columns are the calibrated fusion's, as the recipe's ensemble scores
(the logistic fusion's in the tables written before the three-seed ones of 2026-12-06).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from leave_family_out import GROUPS, SUBSETS, bonafide_rejection  # noqa: E402
from leave_systems_out import ROOT, eer_breakdown  # noqa: E402


def parse_member(spec: str) -> tuple[str, list[str]]:
    """``"[LABEL=]SWEEP[,SWEEP...]"`` -> (label, sweeps); the label defaults to the spec itself."""
    label, _, sweeps = spec.rpartition("=")
    names = [name for name in sweeps.split(",") if name]
    if not names:
        raise SystemExit(f"member {spec!r}: no sweep named")
    return label or sweeps, names


def load_runs(runs: Path, sweeps: list[str]) -> dict[tuple[str, int], tuple[dict, dict]]:
    """``{(group, seed): (lfo_result record, scores npz as a dict)}`` of the finished runs of one or
    several sweeps (a model's seeds or groups run under separate names).

    Raises:
        SystemExit: a sweep with no finished run, or a (group, seed) run in two of the sweeps.
    """
    found: dict[tuple[str, int], tuple[dict, dict]] = {}
    origin: dict[tuple[str, int], str] = {}
    for sweep in sweeps:
        paths = sorted((runs / sweep).glob("*/lfo_result.json"))
        if not paths:
            raise SystemExit(f"no finished runs under {runs / sweep}")
        for path in paths:
            record = json.loads(path.read_text())
            fold = (record["group"], record["seed"])
            if fold in found:
                raise SystemExit(f"{fold[0]} seed {fold[1]} is in both {origin[fold]} and {sweep}: "
                                 "one run per fold and member")
            with np.load(path.parent / "lso_scores.npz") as z:
                found[fold] = (record, {k: z[k] for k in z.files})
            origin[fold] = sweep
    return found


def score_run(scores: np.ndarray, labels: np.ndarray, systems: np.ndarray, speakers: list[str],
              held_out: list[str]) -> dict:
    """Unseen / seen EER and bona fide rejection of one set of ``[N]`` dev_v3 scores."""
    return {**eer_breakdown(scores, labels, systems, held_out),
            **bonafide_rejection(scores, labels, systems, speakers, held_out)}


def logistic_fusion(stacked: np.ndarray, labels: np.ndarray, systems: np.ndarray, held_out: list[str]) -> np.ndarray:
    """``[N, M]`` member scores -> ``[N]`` fused LLRs, weights fitted on bona fide + seen spoofs only."""
    from rawguard.fusion import fit_fusion

    known = ~np.isin(systems, held_out)  # bona fide ("-") and the families the fold trained on
    return fit_fusion(stacked[known], labels[known]).apply(stacked)


def calibrated_mean(stacked: np.ndarray, labels: np.ndarray, systems: np.ndarray, held_out: list[str]) -> np.ndarray:
    """``[N, M]`` member scores -> ``[N]`` mean of the members' log-odds, each calibrated on bona fide +
    seen spoofs only (as each checkpoint's dev calibration is fitted on the dev set it could select on)."""
    from rawguard.calibration import fit_logistic

    known = ~np.isin(systems, held_out)
    calibrations = [fit_logistic(column[known], labels[known]) for column in stacked.T]
    return np.mean([c["scale"] * column + c["bias"] for c, column in zip(calibrations, stacked.T)], axis=0)


def fuse_fold(members: list[tuple[dict, dict]], speakers: list[str]) -> dict[str, dict]:
    """``{"mean": ..., "logistic": ..., "calibrated": ...}`` results of one fold's members fused."""
    record, first = members[0]
    labels, systems = first["labels"], first["systems"]
    for other_record, other in members[1:]:
        if not (np.array_equal(other["labels"], labels) and np.array_equal(other["systems"], systems)):
            raise SystemExit(f"{record['group']} seed {record['seed']}: members scored different dev trials")
        if other_record["held_out"] != record["held_out"]:
            raise SystemExit(f"{record['group']} seed {record['seed']}: members held out different systems")
    stacked = np.stack([scores["scores"].astype(np.float64) for _, scores in members], axis=1)  # [N, M]
    held_out = record["held_out"]
    return {"mean": score_run(stacked.mean(axis=1), labels, systems, speakers, held_out),
            "logistic": score_run(logistic_fusion(stacked, labels, systems, held_out), labels, systems,
                                  speakers, held_out),
            "calibrated": score_run(calibrated_mean(stacked, labels, systems, held_out), labels, systems,
                                    speakers, held_out)}


def summarise(rows: list[dict], member_names: list[str], reference: str | None) -> str:
    """Markdown table: per group, means over its seeds of each member alone, the three fusions and the
    reference; then rows of means over groups (groups weigh equally), over all seeds and per seed
    that every group has."""
    fusions = ("mean", "logistic", "calibrated")
    columns = [*member_names, *(f"fused: {f}" for f in fusions)] + ([f"reference: {reference}"] if reference else [])
    lines = ["| held-out group | seeds | " + " | ".join(f"{c}: unseen / seen EER %" for c in columns)
             + " | fused (calibrated, as the recipe): "
             + " | ".join(f"bona fide rejected %: {s}" for s in SUBSETS) + " |",
             "|---|---:|" + "---:|" * (len(columns) + len(SUBSETS))]

    def cells_of(folds: list[dict]) -> list[tuple[float, float, float | None] | None]:
        """Each column's (unseen mean, seen mean, unseen spread) EER % over ``folds`` (the spread ``None``
        for one fold); ``None`` where no fold has the column."""
        picks = [lambda r, n=name: r["members"][n] for name in member_names]
        picks += [lambda r, f=fusion: r["fused"].get(f) for fusion in fusions]
        picks += [lambda r: r["reference"]] if reference else []
        out = []
        for pick in picks:
            values = [pick(r) for r in folds if pick(r) is not None]
            unseen = [100 * v["unseen_eer"] for v in values]
            out.append((float(np.mean(unseen)), 100 * float(np.mean([v["seen_eer"] for v in values])),
                        float(np.std(unseen, ddof=1)) if len(unseen) > 1 else None) if values else None)
        return out

    per_group, reference_folds = {}, {}
    for group in dict.fromkeys(r["group"] for r in rows):
        mine = [r for r in rows if r["group"] == group]
        per_group[group] = cells = cells_of(mine)
        if reference:  # the same cells on the folds the reference has, for a like-for-like row
            reference_folds[group] = cells_of([r for r in mine if r["reference"] is not None])
        rejection = []
        for subset in SUBSETS:
            values = [r["fused"]["calibrated"]["bonafide_rejection"][subset] for r in mine]
            values = [v for v in values if v is not None]
            rejection.append(f"{100 * np.mean(values):.1f}" if values else "-")
        lines.append(f"| {group} | {len(mine)} | " + " | ".join(_cell(c) for c in cells)
                     + " | " + " | ".join(rejection) + " |")
    if len(per_group) > 1:
        lines.append(_mean_row("**mean over groups**", per_group, len(columns)))
        seeds = sorted(set.intersection(*({r["seed"] for r in rows if r["group"] == g} for g in per_group)))
        for seed in seeds if len(seeds) > 1 else []:  # does a difference between columns hold in every seed?
            lines.append(_mean_row(f"mean over groups, seed {seed}", {
                g: cells_of([r for r in rows if r["group"] == g and r["seed"] == seed]) for g in per_group},
                len(columns)))
        if reference and any(c[-1] is not None for c in reference_folds.values()):
            lines.append(_mean_row("mean over groups, on the reference's folds only", reference_folds, len(columns)))
    return "\n".join(lines)


def _cell(cell: tuple[float, float, float | None] | None) -> str:
    """``unseen ± spread / seen`` (the spread left out for one seed); ``-`` for a missing column."""
    if cell is None:
        return "-"
    unseen, seen, spread = cell
    return f"{unseen:.1f}" + (f" ± {spread:.1f}" if spread is not None else "") + f" / {seen:.1f}"


def _mean_row(label: str, per_group: dict[str, list], n_columns: int) -> str:
    """A table row of each column's mean over groups (``-`` where a group lacks the column)."""
    means = []
    for index in range(n_columns):
        values = [cells[index] for cells in per_group.values()]
        means.append(None if any(v is None for v in values)
                     else (np.mean([v[0] for v in values]), np.mean([v[1] for v in values])))
    return (f"| {label} | | " + " | ".join(f"**{m[0]:.1f}** / {m[1]:.1f}" if m else "-" for m in means)
            + " |" + " |" * len(SUBSETS))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", nargs="+", required=True,
                        help="2 or more members, each [LABEL=]SWEEP[,SWEEP...] (sweep names: their --name)")
    parser.add_argument("--reference", help="[LABEL=]SWEEP[,SWEEP...] of one model with the members' total compute")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "lfo", help="the sweeps' --runs")
    parser.add_argument("--work", type=Path, default=ROOT / "caches" / "lfo", help="the sweeps' --work")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "generalisation")
    parser.add_argument("--name", default="lfo_fused_models", help="file stem of the outputs")
    args = parser.parse_args(argv)
    if len(args.members) < 2:
        parser.error("--members needs at least two sweeps")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from rawguard.data.cache import Cache

    members = dict(parse_member(spec) for spec in args.members)
    if len(members) != len(args.members):
        raise SystemExit("two members share a label: name them LABEL=SWEEP,...")
    names = list(members)
    sweeps = {name: load_runs(args.runs, members[name]) for name in names}
    reference_name, reference_sweeps = parse_member(args.reference) if args.reference else (None, [])
    reference = load_runs(args.runs, reference_sweeps) if args.reference else {}
    folds = sorted(set.intersection(*(set(runs) for runs in sweeps.values())),
                   key=lambda fold: (list(GROUPS).index(fold[0]), fold[1]))
    if not folds:
        raise SystemExit(f"the members {', '.join(names)} share no (group, seed) run")
    speakers = list(Cache.open(args.work / "dev_v3").speakers)
    rows = []
    for fold in folds:
        fold_members = [sweeps[name][fold] for name in names]
        record = fold_members[0][0]
        labels, systems = fold_members[0][1]["labels"], fold_members[0][1]["systems"]
        row = {"group": fold[0], "seed": fold[1], "held_out": record["held_out"],
               "members": {name: score_run(sweeps[name][fold][1]["scores"], labels, systems, speakers,
                                           record["held_out"]) for name in names},
               "fused": fuse_fold(fold_members, speakers),
               "reference": (score_run(reference[fold][1]["scores"], labels, systems, speakers, record["held_out"])
                             if fold in reference else None)}
        rows.append(row)
        print(f"{fold[0]} seed {fold[1]}: members " + ", ".join(
            f"{100 * m['unseen_eer']:.1f}" for m in row["members"].values())
            + "; fused " + ", ".join(f"{name} {100 * fused['unseen_eer']:.1f}" for name, fused in row["fused"].items())
            + " % unseen EER", flush=True)
    described = ", ".join(f"`{name}`" + (f" ({', '.join(f'`{s}`' for s in members[name])})"
                                         if members[name] != [name] else "") for name in names)
    header = (f"Fusion of {len(names)} different models ({described}) on the leave-family-out folds they share "
              f"({len(folds)}), dev_v3; each cell the mean over the group's seeds (± their spread where there are "
              "several), unseen / seen EER %." + (f" Reference: `{reference_name}`, on the folds it has."
                                                   if args.reference else ""))
    table = summarise(rows, names, reference_name)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.md").write_text(header + "\n\n" + table + "\n")
    (args.out / f"{args.name}.json").write_text(json.dumps({"members": members, "reference": args.reference,
                                                            "folds": rows}, indent=2))
    print(header + "\n\n" + table)
    return 0

if __name__ == "__main__":
    sys.exit(main())
