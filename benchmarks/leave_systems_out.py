"""Effect of augmentation on unseen spoofing systems: a leave-systems-out experiment.

Train rawnet-lite on the shared corpus *without* some spoofing systems (by default one per family:
S06 Griffin-Lim copy synthesis, S10 VITS TTS, S21 HiFi-GAN copy synthesis, S24 neural voice
conversion), with and without augmentation, under the same number of optimizer steps, for several
seeds. Then score the whole dev set and report

- **unseen EER**: dev bona fide vs dev spoofs of the held-out systems (never seen in training);
- **seen EER**: dev bona fide vs dev spoofs of the other systems;

as mean +- sd over seeds, per condition, with a per-system breakdown, a markdown table and a plot.
Model selection never sees the held-out systems: the training loop's dev cache is the dev set
without them, and the reported numbers are of the *last* weights (``eval.every=0``), not a best
checkpoint picked on them.

Conditions are augmentation override files, ``configs/augment/<name>.yaml`` (``none``, ``default``,
``rawboost``, ``channel``), applied on top of the built-in defaults. Everything is resumable:
caches are prepared once, and a condition/seed whose ``lso_result.json`` exists is not retrained.

Example (what BENCHMARKS.md quotes)::

    python benchmarks/leave_systems_out.py --conditions none default --seeds 0 1 2 \\
        --steps 300 --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
DEFAULT_HELD_OUT = ["S06", "S10", "S21", "S24"]


def flatten(data: dict, prefix: str = "") -> list[str]:
    """``{"augment": {"gain": {"p": 0.1}}}`` -> ``["augment.gain.p=0.1"]`` (for ``load_config``)."""
    out = []
    for key, value in data.items():
        if isinstance(value, dict):
            out.extend(flatten(value, f"{prefix}{key}."))
        else:
            out.append(f"{prefix}{key}={json.dumps(value)}")
    return out


def condition_overrides(name: str) -> list[str]:
    path = ROOT / "configs" / "augment" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (ROOT / "configs" / "augment").glob("*.yaml"))
        raise SystemExit(f"unknown condition {name!r}: no {path} (known: {', '.join(known)})")
    return flatten(yaml.safe_load(path.read_text()) or {})


def held_out_sets(train_items: list, dev_items: list, held_out: list[str], unseen: bool = False) -> dict[str, list]:
    """The item lists of a held-out experiment: ``train_seen`` (train without the held-out systems),
    ``dev`` (whole), ``dev_seen`` (without them: what a run selects on) and, with ``unseen``,
    ``dev_unseen`` (dev bona fide and the held-out systems' spoofs)."""
    from rawguard.conventions import BONAFIDE

    held = set(held_out)
    sets = {
        "train_seen": [i for i in train_items if i.system not in held],
        "dev": list(dev_items),
        "dev_seen": [i for i in dev_items if i.system not in held],
    }
    if unseen:
        sets["dev_unseen"] = [i for i in dev_items if i.system in held or i.label == BONAFIDE]
    return sets


def read_split(protocol: str, extra: list[Path] = ()) -> list:
    """Items of ``CORPUS/protocols/<protocol>`` (audio in ``CORPUS/flac``), then those of the ``extra`` CSVs."""
    from rawguard.data.protocols import read_protocols

    return read_protocols([CORPUS / "protocols" / protocol, *extra], [CORPUS / "flac", *[None] * len(extra)])


def prepare(work: Path, held_out: list[str], train_extra: list[Path] | None = None,
            unseen: bool = False, protocols: tuple[str, str] = ("train.txt", "dev.txt")) -> dict[str, Path]:
    """Caches of :func:`held_out_sets` under ``work``: train (``protocols[0]``, plus ``train_extra``
    protocols, e.g. the ``protocol.csv`` of ``rawguard synth-spoof`` copies of train bona fide)
    without the held-out systems, the whole dev set (``protocols[1]``), dev without them, and
    (``unseen``) dev bona fide with the held-out systems only."""
    from rawguard.data.prepare import prepare_cache

    extra = list(train_extra or [])
    train_items = read_split(protocols[0], extra)
    dev_items = read_split(protocols[1])
    missing = sorted(set(held_out) - {item.system for item in train_items})
    if missing:
        raise SystemExit(f"--held-out: {', '.join(missing)} not in {CORPUS / 'protocols' / protocols[0]}")
    tag = "-".join(sorted(held_out))
    train_tag = tag + "".join(f"+{p.parent.name}" for p in extra)  # extra data: another train cache
    sets = held_out_sets(train_items, dev_items, held_out, unseen)
    paths = {}
    for name, items in sets.items():
        folder = work / {"train_seen": f"{name}_{train_tag}", "dev": name}.get(name, f"{name}_{tag}")
        prepare_cache(items, folder, progress=True)
        paths[name] = folder
    return paths


def load_weights(run_dir: Path):
    from rawguard.checkpoint import load_checkpoint
    from rawguard.models import create_model_from_saved

    state = load_checkpoint(run_dir / "last.pt")
    model = create_model_from_saved(state["model_name"], state["model_config"])
    model.load_state_dict(state["model"])
    return model.eval()


def score_dev(run_dir: Path, dev_dir: Path, config):
    """Scores of every clip of the dev cache with the run's last weights (the weight average, when
    the run keeps one), and the cache; ``run_dir/lso_scores.npz`` keeps scores, labels and systems."""
    from rawguard.data.cache import Cache
    from rawguard.scoring import score_cache

    dev = Cache.open(dev_dir)
    scores = score_cache(load_weights(run_dir), dev, config.eval.window, config.eval.hop,
                         config.eval.batch_size, "cpu", "fp32")
    np.savez(run_dir / "lso_scores.npz", scores=scores, labels=np.asarray(dev.labels), systems=np.asarray(dev.systems))
    return scores, dev


def eer_breakdown(scores: np.ndarray, labels: np.ndarray, systems: np.ndarray, held_out: list[str]) -> dict:
    """EERs (fractions) of the bona fide against the held-out systems' spoofs (``unseen_eer``), the
    others (``seen_eer``), all, and each system (``per_system_eer``); trial counts."""
    from rawguard.conventions import BONAFIDE, SPOOF
    from rawguard.metrics import compute_eer

    bona = scores[labels == BONAFIDE]
    unseen = (labels == SPOOF) & np.isin(systems, held_out)
    seen = (labels == SPOOF) & ~np.isin(systems, held_out)
    per_system = {s: float(compute_eer(bona, scores[(labels == SPOOF) & (systems == s)])[0])
                  for s in sorted(set(systems[labels == SPOOF].tolist()))}
    return {
        "unseen_eer": float(compute_eer(bona, scores[unseen])[0]),
        "seen_eer": float(compute_eer(bona, scores[seen])[0]),
        "all_eer": float(compute_eer(bona, scores[labels == SPOOF])[0]),
        "per_system_eer": per_system,
        "n_unseen": int(unseen.sum()), "n_seen": int(seen.sum()), "n_bonafide": int(len(bona)),
    }


def evaluate(run_dir: Path, dev_dir: Path, held_out: list[str], config) -> dict:
    """Score the whole dev cache with the run's last weights; EERs on unseen / seen systems."""
    scores, dev = score_dev(run_dir, dev_dir, config)
    return eer_breakdown(scores, np.asarray(dev.labels), np.asarray(dev.systems), held_out)


def run_one(condition: str, seed: int, args, caches: dict[str, Path]) -> dict:
    from rawguard.config import load_config
    from rawguard.train import train

    run_dir = args.runs / f"{condition}_seed{seed}"
    done = run_dir / "lso_result.json"
    if done.exists():
        return json.loads(done.read_text())
    overrides = condition_overrides(condition) + [
        f"train.seed={seed}", f"train.max_steps={args.steps}", f"train.threads={args.threads}",
        f"data.batch_size={args.batch_size}", f"data.window={args.window}", f"eval.window={args.window}",
        f"eval.hop={args.window}", "eval.every=0", "train.precision=fp32", "train.device=cpu",
        f"optim.warmup_steps={max(1, args.steps // 20)}", "train.log_every=10",
        f"train.checkpoint_every={max(50, args.steps // 4)}", *args.set,
    ]
    monitor = {}
    if args.monitor_every:  # dev curves of the seen and the held-out systems (selection is not used)
        overrides.append(f"eval.every={args.monitor_every}")
        monitor = {"unseen": caches["dev_unseen"]}
    config = load_config(None, overrides)
    started = time.monotonic()
    result = train(config, caches["train_seen"], caches["dev_seen"], run_dir, resume=True, progress=True,
                   monitor=monitor)
    train_s = time.monotonic() - started
    if result.interrupted or result.step != args.steps:
        # Stopped by a signal: leave the run resumable and record nothing, so the sweep never
        # mixes a short run into the table. Re-running the script continues it.
        raise SystemExit(f"{run_dir}: stopped at step {result.step} ({result.stop_reason}); run again to resume")
    metrics = evaluate(run_dir, caches["dev"], args.held_out, config)
    record = {"condition": condition, "seed": seed, "steps": result.step, "train_s": round(train_s, 1),
              "clips_per_s": round(result.clips_per_s, 2), "overrides": overrides, **metrics}
    if monitor:
        from rawguard.training.log import read_metrics

        record["curve"] = [{"step": r["step"], "seen_eer": r["dev_eer"], "unseen_eer": r["unseen_eer"]}
                           for r in read_metrics(run_dir / "metrics.jsonl") if r["type"] == "dev"]
        # One evaluation moves by several points between neighbouring steps: the mean over the
        # last quarter of the schedule is a steadier summary of where a run ended.
        tail = [p for p in record["curve"] if p["step"] >= 0.75 * args.steps]
        record["unseen_eer_tail"] = float(np.mean([p["unseen_eer"] for p in tail]))
        record["seen_eer_tail"] = float(np.mean([p["seen_eer"] for p in tail]))
    done.write_text(json.dumps(record, indent=2))
    return record


def summarise(records: list[dict], held_out: list[str]) -> str:
    """Markdown table: mean +- sd (over seeds) of unseen / seen EER per condition, and per system."""
    conditions = list(dict.fromkeys(r["condition"] for r in records))
    lines = ["| condition | seeds | unseen EER % (mean ± sd) | seen EER % (mean ± sd) | "
             "per-seed unseen EER % | train clips/s |", "|---|---:|---:|---:|---|---:|"]
    tails = [r for r in records if "unseen_eer_tail" in r]
    for c in conditions:
        rows = [r for r in records if r["condition"] == c]
        u = np.array([r["unseen_eer"] for r in rows]) * 100
        s = np.array([r["seen_eer"] for r in rows]) * 100
        sd = (lambda a: a.std(ddof=1) if len(a) > 1 else float("nan"))
        lines.append(f"| {c} | {len(rows)} | {u.mean():.1f} ± {sd(u):.1f} | {s.mean():.1f} ± {sd(s):.1f} | "
                     f"{', '.join(f'{v:.1f}' for v in u)} | {np.mean([r['clips_per_s'] for r in rows]):.1f} |")
    if tails:
        lines += ["", "Mean over the evaluations in the last quarter of the schedule (`--monitor-every`), per run:", "",
                  "| condition | seed | unseen EER % (tail / last) | seen EER % (tail / last) |", "|---|---:|---:|---:|"]
        lines += [f"| {r['condition']} | {r['seed']} | {100 * r['unseen_eer_tail']:.1f} / {100 * r['unseen_eer']:.1f} | "
                  f"{100 * r['seen_eer_tail']:.1f} / {100 * r['seen_eer']:.1f} |" for r in tails]
    systems = sorted(records[0]["per_system_eer"])
    lines += ["", "Per-system dev EER % (mean over seeds; held-out systems in bold):", "",
              "| condition | " + " | ".join(f"**{s}**" if s in held_out else s for s in systems) + " |",
              "|---|" + "---:|" * len(systems)]
    for c in conditions:
        rows = [r for r in records if r["condition"] == c]
        means = [np.mean([r["per_system_eer"][s] for r in rows]) * 100 for s in systems]
        lines.append(f"| {c} | " + " | ".join(f"{m:.1f}" for m in means) + " |")
    return "\n".join(lines)


def plot(records: list[dict], path: Path, title: str, by: str = "condition", tick=str,
         unseen_label: str = "unseen systems", ylabel: str = "dev EER (%)") -> None:
    """Unseen and seen EER per value of ``record[by]``: bars at the mean, one dot per seed;
    ``tick(value)`` labels the x axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conditions = list(dict.fromkeys(r[by] for r in records))
    fig, ax = plt.subplots(figsize=(6.4 if len(conditions) < 4 else 7.5, 3.8))
    for k, (key, label, colour) in enumerate([("unseen_eer", unseen_label, "tab:red"),
                                              ("seen_eer", "seen systems", "tab:blue")]):
        for i, c in enumerate(conditions):
            values = np.array([r[key] for r in records if r[by] == c]) * 100
            x = i + (k - 0.5) * 0.3
            ax.bar(x, values.mean(), width=0.28, color=colour, alpha=0.35,
                   label=label if i == 0 else None)
            ax.scatter(np.full(len(values), x), values, color=colour, s=14, zorder=3)
    ax.set_xticks(range(len(conditions)), [tick(c) for c in conditions], fontsize=8 if len(conditions) < 4 else 7)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(records: list[dict], path: Path, title: str, by: str = "condition", label=str) -> None:
    """Seen and unseen dev EER against training step, mean over seeds, one colour per value of
    ``record[by]`` (``label(value)`` in the legend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conditions = list(dict.fromkeys(r[by] for r in records if r.get("curve")))
    # Beyond a few lines the legend would hide the curves: put it beside the axes.
    outside = len(conditions) > 3
    fig, ax = plt.subplots(figsize=(9.6 if outside else 6.4, 3.8))
    for i, condition in enumerate(conditions):
        curves = [r["curve"] for r in records if r[by] == condition and r.get("curve")]
        steps = sorted(set.intersection(*[{p["step"] for p in c} for c in curves]))
        for key, style in (("unseen_eer", "-"), ("seen_eer", "--")):
            mean = [100 * np.mean([next(p[key] for p in c if p["step"] == s) for c in curves]) for s in steps]
            ax.plot(steps, mean, style, color=f"C{i}", marker="o", ms=3,
                    label=f"{label(condition)}, {key.split('_')[0]} (mean of {len(curves)} run{'s' * (len(curves) > 1)})")
    ax.set_xlabel("step")
    ax.set_ylabel("dev EER (%)")
    ax.set_title(title, fontsize=9)
    if outside:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--held-out", nargs="+", default=DEFAULT_HELD_OUT, help="spoofing systems kept out of training")
    parser.add_argument("--conditions", nargs="+", default=["none", "default"],
                        help="configs/augment/<name>.yaml override files to compare")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per run (same for every condition)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--window", type=int, default=64_600)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (the machine is shared)")
    parser.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                        help="extra config overrides for every run (repeatable)")
    parser.add_argument("--train-extra", nargs="*", type=Path, default=[], metavar="PROTOCOL",
                        help="more training data for every run, e.g. synth-spoof copies of train bona fide "
                             "(their protocol.csv); held-out systems are still removed")
    parser.add_argument("--monitor-every", type=int, default=0, metavar="STEPS",
                        help="also score dev every STEPS steps, seen systems and held-out ones apart, and plot "
                             "both curves (<name>_curves.png); the reported numbers stay those of the last weights")
    parser.add_argument("--work", type=Path, default=ROOT / "caches" / "lso", help="cache folder (git-ignored)")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "lso", help="run folders (git-ignored)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "generalisation",
                        help="where the table (.md), records (.json) and plot (.png) go")
    parser.add_argument("--name", default="leave_systems_out", help="file stem of those outputs")
    args = parser.parse_args(argv)
    if not (CORPUS / "protocols" / "train.txt").is_file():
        print(f"shared corpus not found at {CORPUS}", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    caches = prepare(args.work, args.held_out, args.train_extra, unseen=args.monitor_every > 0)
    records = []
    for seed in args.seeds:  # seeds outermost: a cut-short sweep still has every condition paired
        for condition in args.conditions:
            record = run_one(condition, seed, args, caches)
            records.append(record)
            print(f"{condition} seed {seed}: unseen EER {record['unseen_eer']:.2%}, "
                  f"seen EER {record['seen_eer']:.2%} ({record['train_s']:.0f} s)", flush=True)
    table = summarise(records, args.held_out)
    header = (f"Leave-systems-out: held out {', '.join(args.held_out)}; rawnet-lite, {args.steps} steps x "
              f"batch {args.batch_size} x {args.window} samples, {args.threads} thread(s), seeds "
              f"{', '.join(map(str, args.seeds))}"
              + (f"; overrides {' '.join(args.set)}" if args.set else "")
              + (f"; extra training data {', '.join(p.parent.name for p in args.train_extra)}" if args.train_extra else "")
              + ".")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.md").write_text(header + "\n\n" + table + "\n")
    (args.out / f"{args.name}.json").write_text(json.dumps(records, indent=2))
    plot(records, args.out / f"{args.name}.png",
         f"held out {', '.join(args.held_out)}; {args.steps} steps, {len(args.seeds)} seeds")
    if any(r.get("curve") for r in records):
        plot_curves(records, args.out / f"{args.name}_curves.png", f"held out {', '.join(args.held_out)}")
    print(header + "\n\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
