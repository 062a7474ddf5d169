"""benchmarks/recipe_rejection.py: bona fide rejection by subset of a finished recipe run's dev scores."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import recipe_rejection

# speaker, utterance, system, key, score: bona fide of three subsets and four spoofs.
TRIALS = [
    ("URDU_spk1", "U1", "-", "bonafide", 3.0),
    ("URDU_spk1", "U2", "-", "bonafide", -2.0),  # broadcast, rejected
    ("EMODB_03", "U3", "-", "bonafide", 2.5),
    ("LS_84", "U4", "-", "bonafide", 4.0),
    ("LS_84", "U5", "-", "bonafide", 0.5),
    ("X1", "U6", "S29", "spoof", -3.0),
    ("X1", "U7", "S30", "spoof", -1.0),
    ("X1", "U8", "S42", "spoof", 1.0),
    ("X1", "U9", "S07", "spoof", -4.0),
]


def write_run(tmp_path: Path, name: str, trials=TRIALS) -> tuple[Path, Path]:
    protocol = tmp_path / "dev_v3.txt"
    protocol.write_text("".join(f"{spk} {utt} - {system} {key}\n" for spk, utt, system, key, _ in TRIALS))
    (tmp_path / "flac").mkdir(exist_ok=True)
    for _, utt, *_ in TRIALS:  # the protocol reader looks every id up among the audio files
        (tmp_path / "flac" / f"{utt}.flac").touch()
    scores = tmp_path / name / recipe_rejection.DEV_SCORES
    scores.parent.mkdir(parents=True)
    scores.write_text("".join(f"{utt} {system} {key} {score}\n" for _, utt, system, key, score in trials))
    return tmp_path / name, protocol


def test_rejection_by_subset_at_the_eer_threshold_of_all_spoofs(tmp_path, capsys):
    run, protocol = write_run(tmp_path, "recipe")
    out = tmp_path / "rejection.json"
    assert recipe_rejection.main([str(run), "--protocol", str(protocol), "--audio-dir", str(tmp_path / "flac"),
                                  "--out", str(out)]) == 0
    (result,) = json.loads(out.read_text())
    # Sorted: spoofs -4, -3, -1, 1; bona fide -2, 0.5, 2.5, 3, 4. One bona fide (-2) sits below the
    # spoof at 1, and one spoof (1) above the bona fide at 0.5: the EER crossing rejects -2 only.
    rejection = result["bonafide_rejection"]
    assert rejection["broadcast"] == pytest.approx(0.5)
    assert rejection["emotional"] == pytest.approx(1 / 3)  # the two URDU_ clips are emotional too
    assert rejection["read (LibriSpeech)"] == 0.0
    assert result["n_bonafide_subset"] == {"emotional": 3, "broadcast": 2, "non-English": 3, "read (LibriSpeech)": 2}
    assert "| 33.3 | 50.0 | 33.3 | 0.0 |" in capsys.readouterr().out


def test_a_run_without_scores_or_with_foreign_utterances_is_named(tmp_path):
    run, protocol = write_run(tmp_path, "recipe", TRIALS + [("X", "ZZ9", "S01", "spoof", 0.0)])
    with pytest.raises(SystemExit, match=r"1 utterance\(s\) not in the dev_v3 protocol, e.g. 'ZZ9'"):
        recipe_rejection.main([str(run), "--protocol", str(protocol), "--audio-dir", str(tmp_path / "flac")])
    with pytest.raises(SystemExit, match=r"missing_run: no eval/dev_v3/scores.txt"):
        recipe_rejection.main([str(tmp_path / "missing_run"), "--protocol", str(protocol),
                               "--audio-dir", str(tmp_path / "flac")])
