"""``rawguard demo --quick`` end to end: corpus -> prepare -> train -> evaluate -> score -> report."""

from __future__ import annotations

import re
import pytest

from rawguard.cli import main
from rawguard.demo import MARKER, DemoError, demo_config_path, run_demo


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    # no wall-clock guard: on a slow CI machine the run must still take its full (tiny) step count
    code = main(["demo", "--quick", "--out", str(out), "--no-progress", "--workers", "2", "--set", "train.max_minutes=0"])
    return out, code


def test_quick_demo_runs_end_to_end_and_prints_the_eers(quick_demo, capsys):
    out, code = quick_demo
    assert code == 0
    report = (out / "report.md").read_text()
    seen = float(re.search(r"EER on attacks seen in training: ([\d.]+) %", report).group(1))
    unseen = float(re.search(r"EER on the unseen attack: ([\d.]+) %", report).group(1))
    assert 0 <= seen < 45, "a detector trained on the seen attacks must beat chance on them"
    assert 0 <= unseen <= 100
    assert "A04 (sinusoidal)" in report and "never in train/dev" in report


def test_quick_demo_report_links_existing_plots(quick_demo):
    out, _ = quick_demo
    report = (out / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert {"det_seen_unseen.png", "eval/det.png", "eval/score_hist.png", "eval/per_attack_eer.png",
            "run/training_curves.png"} <= set(links)
    for link in links:
        assert (out / link).stat().st_size > 1000, link
    assert "| EER |" in report and "scored `DEMO_E_" in report


def test_quick_demo_leaves_a_usable_pipeline(quick_demo):
    out, _ = quick_demo
    for split in ("train", "dev", "eval"):
        assert (out / "corpus" / "protocols" / f"{split}.txt").is_file()
        assert (out / "cache" / split / "COMPLETE").is_file()
    assert (out / "run" / "best.pt").is_file()
    scores = (out / "eval" / "scores.txt").read_text().splitlines()
    assert len(scores) == len((out / "corpus" / "protocols" / "eval.txt").read_text().splitlines())
    assert (out / MARKER).is_file()


def test_demo_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(DemoError, match="not empty and was not written by rawguard demo"):
        run_demo(tmp_path, quick=True, progress=False)
    assert (tmp_path / "thesis.tex").read_text() == "precious"
    assert main(["demo", "--quick", "--out", str(tmp_path), "--no-progress"]) == 1


def test_demo_rejects_a_bad_override_before_doing_any_work(tmp_path):
    assert main(["demo", "--quick", "--out", str(tmp_path / "d"), "--no-progress", "--set", "train.max_stepz=3"]) == 1
    assert not (tmp_path / "d").exists()


def test_demo_recipe_is_found_and_valid():
    from rawguard.config import load_config

    config = load_config(demo_config_path())
    assert demo_config_path().name == "demo.yaml"
    assert config.model.name == "rawnet-lite" and config.augment.enabled is False
