"""benchmarks/lfo_levers.py: every lever's leave-family-out records in one table and chart."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import lfo_levers


def records(unseen: dict[str, list[float]], seen: float = 0.2) -> list[dict]:
    """leave_family_out.py-style records: one per (group, seed), EERs as fractions."""
    return [{"group": group, "seed": seed, "unseen_eer": eer, "seen_eer": seen}
            for group, eers in unseen.items() for seed, eer in enumerate(eers)]


def write(folder: Path, name: str, rows: list[dict]) -> None:
    (folder / f"{name}.json").write_text(json.dumps({"records": rows, "seeds_fused": []}))


BASE = {"lm-tts": [0.30, 0.32], "diffusion-flow-tts": [0.16, 0.18], "neural-vc": [0.33, 0.35],
        "neural-vocoder": [0.40, 0.40]}  # a non-modern group, left out of every figure


def test_summary_averages_seeds_per_modern_family_and_ignores_the_others():
    summary = lfo_levers.summarise(records(BASE))
    assert summary["groups"]["lm-tts"]["mean"] == pytest.approx(31.0)
    assert summary["groups"]["lm-tts"]["sd"] == pytest.approx(1.4142, abs=1e-3)
    assert summary["modern_mean"] == pytest.approx((31.0 + 17.0 + 34.0) / 3)
    assert "neural-vocoder" not in summary["groups"] and summary["seen_mean"] == pytest.approx(20.0)
    one_group = lfo_levers.summarise(records({"lm-tts": [0.3]}))
    assert one_group["modern_mean"] is None  # a mean over some families only would mislead


def test_table_and_chart_place_each_lever_against_the_baseline(tmp_path, capsys):
    write(tmp_path, "leave_family_out", records(BASE))
    write(tmp_path, "worse", records({"lm-tts": [0.40], "diffusion-flow-tts": [0.20], "neural-vc": [0.42]}))
    write(tmp_path, "partial", records({"lm-tts": [0.25, 0.26]}))
    lfo_levers.main(["--results", str(tmp_path), "--sweeps", "worse=a worse lever", "partial", "missing",
                     "--name", "levers"])
    text = (tmp_path / "levers.md").read_text()
    assert "| a worse lever | 40.0 (1 seed) | 20.0 (1 seed) | 42.0 (1 seed) | 34.0 | +6.7 | 20.0 | `worse` |" in text
    assert "| the yardstick: learned conv (baseline) | 31.0 ± 1.4 |" in text and "whose baseline is 26.3 %" in text
    assert "partial" not in text.split("\n\n", 1)[1]
    assert (tmp_path / "levers.png").stat().st_size > 10_000
    err = capsys.readouterr().err
    assert "skipped partial: not every modern family was held out" in err and "skipped missing: no " in err


def test_missing_baseline_or_a_foreign_file_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="baseline sweep leave_family_out.json is missing"):
        lfo_levers.main(["--results", str(tmp_path), "--sweeps", "other"])
    (tmp_path / "leave_family_out.json").write_text("[1, 2]")
    with pytest.raises(SystemExit, match=r"leave_family_out.json: not a leave_family_out.py result"):
        lfo_levers.main(["--results", str(tmp_path)])
