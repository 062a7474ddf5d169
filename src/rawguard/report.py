"""Plots (DET, score histograms, per-attack EER, reliability, training curves) and text/markdown summaries.

Every plot is written with matplotlib's ``Agg`` backend (no display needed) and closed afterwards,
so long runs do not accumulate figures.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from statistics import NormalDist

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend must be chosen first)
import numpy as np  # noqa: E402

from rawguard.atomic import write_text_atomic  # noqa: E402
from rawguard.conventions import BONAFIDE, SPOOF  # noqa: E402
from rawguard.metrics import det_curve  # noqa: E402

__all__ = [
    "ReportError",
    "plot_det",
    "plot_score_hist",
    "plot_per_attack",
    "plot_reliability",
    "plot_training_curves",
    "format_table",
    "write_report",
]

_DET_TICKS = [0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8]  # fractions shown on DET axes
_MAX_DET_POINTS = 4000  # a DET line needs a few thousand points at most, not one per trial


class ReportError(ValueError):
    """Input to a plot cannot be used (e.g. an empty or malformed training log); names the file/line."""


def _save(fig, out_png: str | os.PathLike) -> Path:
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out_png


def _probit(p: np.ndarray) -> np.ndarray:
    """Standard-normal quantile, elementwise; rates are clipped away from 0 and 1 to stay finite."""
    inv = NormalDist().inv_cdf
    return np.array([inv(v) for v in np.clip(p, 1e-5, 1 - 1e-5)])


def plot_det(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], out_png: str | os.PathLike, title: str = "DET curve") -> Path:
    """DET curves (miss vs false alarm on normal-deviate axes), one line per system.

    Args:
        curves: ``{label: (bonafide_scores [N_b], spoof_scores [N_s])}``.
        out_png: output file.
        title: figure title.
    """
    from rawguard.metrics import compute_eer

    fig, ax = plt.subplots(figsize=(5.2, 5.2))
    for label, (bona, spoof) in curves.items():
        curve = det_curve(bona, spoof)
        keep = np.unique(np.linspace(0, curve.frr.size - 1, min(curve.frr.size, _MAX_DET_POINTS)).astype(int))
        eer, _ = compute_eer(bona, spoof)
        ax.plot(_probit(curve.far[keep]), _probit(curve.frr[keep]), label=f"{label} (EER {100 * eer:.2f} %)")
    ticks = _probit(np.array(_DET_TICKS))
    names = [f"{100 * t:g}" for t in _DET_TICKS]
    ax.set_xticks(ticks, names)
    ax.set_yticks(ticks, names)
    limits = (_probit(np.array([0.0005]))[0], _probit(np.array([0.85]))[0])
    ax.set_xlim(limits)
    ax.set_ylim(limits)
    ax.plot(limits, limits, color="grey", lw=0.6, ls=":")  # EER line: miss = false alarm
    ax.set_xlabel("false acceptance rate of spoofs (%)")
    ax.set_ylabel("miss rate of bona fide (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, out_png)


def plot_score_hist(scores, labels, out_png: str | os.PathLike, threshold: float | None = None, title: str = "Scores per class") -> Path:
    """Histogram of scores per class (bona fide / spoof), with the decision threshold if given.

    Args:
        scores: ``[N]`` scores; labels: ``[N]`` label ids.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    bins = np.histogram_bin_edges(scores, bins=60)
    for label, name, color in ((BONAFIDE, "bona fide", "tab:green"), (SPOOF, "spoof", "tab:red")):
        part = scores[labels == label]
        ax.hist(part, bins=bins, alpha=0.55, color=color, label=f"{name} ({part.size})", density=True)
    if threshold is not None:
        ax.axvline(threshold, color="black", ls="--", lw=1, label=f"decision threshold {threshold:.3g}")
    ax.set_xlabel("score = logit[bona fide] - logit[spoof]")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, out_png)


def plot_per_attack(per_attack_eer_percent: Mapping[str, float], out_png: str | os.PathLike, overall: float | None = None) -> Path:
    """Bar chart of EER (%) per attack, with the pooled EER as a line."""
    names = list(per_attack_eer_percent)
    values = [per_attack_eer_percent[name] for name in names]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(names) + 1.5), 3.8))
    bars = ax.bar(names, values, color="tab:blue")
    ax.bar_label(bars, fmt="%.2f", fontsize=7)
    if overall is not None:
        ax.axhline(overall, color="black", ls="--", lw=1, label=f"pooled EER {overall:.2f} %")
        ax.legend(fontsize=8)
    ax.set_ylabel("EER (%)")
    ax.set_xlabel("attack / spoofing system")
    ax.set_title("EER per attack (all bona fide vs that attack)")
    ax.tick_params(axis="x", rotation=45 if len(names) > 8 else 0)
    return _save(fig, out_png)


def plot_reliability(reliability: Mapping, out_png: str | os.PathLike, title: str = "Calibration reliability") -> Path:
    """Reliability diagram from :func:`rawguard.calibration.reliability` (observed vs predicted)."""
    bins = [b for b in reliability["bins"] if b["count"] > 0]
    fig, ax = plt.subplots(figsize=(4.8, 4.8))
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1, label="perfect calibration")
    ax.plot(
        [b["mean_prob"] for b in bins],
        [b["frac_bonafide"] for b in bins],
        marker="o",
        color="tab:blue",
        label=f"ECE {reliability['ece']:.3f}, Brier {reliability['brier']:.3f}",
    )
    for b in bins:
        ax.annotate(str(b["count"]), (b["mean_prob"], b["frac_bonafide"]), fontsize=7, xytext=(3, -9), textcoords="offset points")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted probability of bona fide")
    ax.set_ylabel("observed fraction bona fide")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, out_png)


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise ReportError(f"{path}: training log not found")
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            if number == len(lines):
                break  # a run killed mid-write leaves a partial last line: plot what came before
            raise ReportError(f"{path}:{number}: not valid JSON ({error.msg})") from None
        if not isinstance(row, dict):
            raise ReportError(f"{path}:{number}: expected a JSON object per line")
        rows.append(row)
    if not rows:
        raise ReportError(f"{path}: no records")
    return rows


def _panel(key: str) -> str | None:
    """Which panel a log field goes to; ``None`` for bookkeeping (wall-clock seconds)."""
    lowered = key.lower()
    if "per_s" in lowered:
        return "throughput"
    if lowered.endswith("_s") or lowered in ("time", "timestamp", "wall_time", "epoch"):
        return None
    for panel in ("loss", "eer", "lr"):
        if panel in lowered.split("_") or lowered.endswith(panel) or lowered.startswith(panel):
            return panel
    return "other"


def plot_training_curves(metrics_jsonl_path: str | os.PathLike, out_png: str | os.PathLike) -> Path:
    """Plot a training log (one JSON object per line) as curves over steps.

    The x axis is ``step`` (else ``epoch``, else the line number). Every other numeric field becomes
    a curve, grouped into panels by name: losses (``*loss*``), EERs (``*eer*``), learning rate
    (``lr``), throughput (``*per_s``) and the rest; wall-clock fields (``*_s``) are skipped; a field logged only on some lines (e.g. dev EER per epoch) is drawn with
    markers at those steps.
    """
    path = Path(metrics_jsonl_path)
    rows = _read_jsonl(path)
    x_key = "step" if any("step" in r for r in rows) else ("epoch" if any("epoch" in r for r in rows) else None)
    series: dict[str, tuple[list[float], list[float]]] = {}
    for index, row in enumerate(rows):
        x = row.get(x_key, index) if x_key else index
        for key, value in row.items():
            if key == x_key or _panel(key) is None or isinstance(value, bool):
                continue
            if isinstance(value, (int, float)) and math.isfinite(value) and isinstance(x, (int, float)):
                xs, ys = series.setdefault(key, ([], []))
                xs.append(float(x))
                ys.append(float(value))
    if not series:
        raise ReportError(f"{path}: no numeric fields to plot")
    panels: dict[str, list[str]] = {}
    for key in series:
        panels.setdefault(_panel(key), []).append(key)
    order = [p for p in ("loss", "eer", "lr", "throughput", "other") if p in panels]
    fig, axes = plt.subplots(len(order), 1, figsize=(7, 2.6 * len(order)), sharex=True, squeeze=False)
    for ax, panel in zip(axes[:, 0], order):
        for key in panels[panel]:
            xs, ys = series[key]
            sparse = len(xs) < 0.5 * len(rows)
            ax.plot(xs, ys, marker="o" if sparse else None, ms=3, lw=1, label=key)
        if panel == "lr":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        ax.set_ylabel(panel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[-1, 0].set_xlabel(x_key or "record")
    axes[0, 0].set_title(f"Training curves ({path.name})")
    return _save(fig, out_png)


def format_table(metrics: Mapping, markdown: bool = False) -> str:
    """Metrics from :func:`rawguard.metrics.summarize` as a text (or markdown) table.

    Rows: counts, EER with threshold, min t-DCF (when present), ASVspoof 5 minDCF / actDCF / Cllr,
    then one row per attack.
    """
    rows = [
        ("trials", f"{metrics['n_trials']} ({metrics['n_bonafide']} bona fide, {metrics['n_spoof']} spoof)"),
        ("EER", f"{metrics['eer_percent']:.4f} % (threshold {metrics['eer_threshold']:.6g})"),
    ]
    if "eer_ci95_percent" in metrics:
        low, high = metrics["eer_ci95_percent"]
        rows.append(("EER, 95 % bootstrap interval", f"{low:.2f} - {high:.2f} %"))
    if "min_tdcf_legacy" in metrics:
        asv = metrics.get("asv", {})
        rows.append(("min t-DCF (ASVspoof 2019)", f"{metrics['min_tdcf_legacy']:.6f} (ASV EER {asv.get('eer_percent', float('nan')):.3f} %)"))
    rows += [
        ("min t-DCF (ASVspoof 5, fixed ASV)", f"{metrics['min_tdcf_asvspoof5']:.6f}"),
        ("minDCF (ASVspoof 5)", f"{metrics['min_dcf']:.6f}"),
        ("actDCF (scores as LLR)", f"{metrics['act_dcf']:.6f}"),
        ("Cllr (bits, scores as LLR)", f"{metrics['cllr']:.4f}"),
    ]
    attack_rows = [
        (name, str(metrics.get("per_attack_counts", {}).get(name, "")), f"{value:.4f}")
        for name, value in metrics.get("per_attack_eer_percent", {}).items()
    ]
    if markdown:
        lines = ["| metric | value |", "| --- | --- |", *(f"| {a} | {b} |" for a, b in rows)]
        if attack_rows:
            lines += ["", "| attack | spoof trials | EER (%) |", "| --- | ---: | ---: |"]
            lines += [f"| {a} | {n} | {e} |" for a, n, e in attack_rows]
        return "\n".join(lines)
    width = max(len(a) for a, _ in rows)
    lines = [f"{a:<{width}}  {b}" for a, b in rows]
    if attack_rows:
        lines += ["", f"{'attack':<10} {'spoofs':>7} {'EER %':>9}"]
        lines += [f"{a:<10} {n:>7} {e:>9}" for a, n, e in attack_rows]
    return "\n".join(lines)


def write_report(
    metrics: Mapping,
    out_md: str | os.PathLike,
    plots: Mapping[str, str] | None = None,
    title: str = "rawguard evaluation",
    notes: list[str] | None = None,
) -> Path:
    """Write a markdown report: notes, the metrics table and the plots (paths relative to the report).

    Args:
        metrics: dict from :func:`rawguard.metrics.summarize` (plus optional ``calibration`` with
            ``ece`` / ``brier`` from :func:`rawguard.calibration.reliability`).
        out_md: output file.
        plots: ``{caption: file name relative to the report}``.
        title: first heading.
        notes: bullet lines written under the title (checkpoint, data, scoring policy, ...).
    """
    out_md = Path(out_md)
    parts = [f"# {title}", ""]
    parts += [f"- {note}" for note in notes or []]
    parts += ["", "## Metrics", "", format_table(metrics, markdown=True), ""]
    calibration = metrics.get("calibration")
    if calibration:
        parts += [
            "## Calibration",
            "",
            f"Probability of bona fide = sigmoid(scale * score + bias), scale {calibration['scale']:.4g}, "
            f"bias {calibration['bias']:.4g}: ECE {calibration['ece']:.4f}, Brier score {calibration['brier']:.4f} "
            f"on these {calibration['n']} trials.",
            "",
        ]
    for caption, file_name in (plots or {}).items():
        parts += [f"## {caption}", "", f"![{caption}]({file_name})", ""]
    out_md.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_md, "\n".join(parts))
    return out_md
