"""Detector: checkpoint loading, windowing policy, calibration, result objects and bad input."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from rawguard import Detector
from rawguard.audio import AudioError, load_audio
from rawguard.checkpoint import CheckpointError, save_checkpoint
from rawguard.conventions import SAMPLE_RATE
from rawguard.detector import DetectorError, find_audio_files
from rawguard.windows import crop_or_pad, window_starts

from helpers.checkpoints import SELECTION, WINDOW, corpus_files, save_tiny_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.pt", SELECTION)


@pytest.fixture(scope="module")
def detector(checkpoint) -> Detector:
    return Detector.from_checkpoint(checkpoint)


def reference_window_scores(detector: Detector, wave: np.ndarray) -> np.ndarray:
    """Window scores computed directly with the model, one window at a time."""
    out = []
    with torch.no_grad():
        for start in window_starts(wave.shape[0], detector.window, detector.hop):
            x = crop_or_pad(wave[start:start + detector.window], detector.window)
            logits = detector.model(torch.from_numpy(x)[None])
            out.append(float(logits[0, 1] - logits[0, 0]))
    return np.array(out)


def test_loads_selection_and_policy(detector):
    assert detector.threshold == 0.05
    assert detector.calibration == {"scale": 1.7, "bias": -0.3}
    assert (detector.window, detector.hop) == (WINDOW, WINDOW // 2)
    assert detector.calibrated and detector.notes == [] and detector.model_name == "rawnet-lite"
    assert not detector.model.training


def test_long_recording_is_scored_by_windows(detector):
    wave = load_audio(corpus_files(1)[0])
    wave = np.concatenate([wave, wave[::-1], wave])  # a longer real recording (3x the clip)
    result = detector.score_array(wave, SAMPLE_RATE)
    expected = reference_window_scores(detector, wave)
    starts = window_starts(wave.shape[0], WINDOW, WINDOW // 2)
    assert len(result.windows) == len(starts) > 3
    np.testing.assert_allclose([w.score for w in result.windows], expected, atol=1e-5)
    np.testing.assert_allclose([w.start for w in result.windows], starts / SAMPLE_RATE)
    assert result.windows[-1].end == pytest.approx(wave.shape[0] / SAMPLE_RATE)
    assert result.score == pytest.approx(expected.mean(), abs=1e-6)
    assert result.probability_bonafide == pytest.approx(1 / (1 + np.exp(-(1.7 * result.score - 0.3))))
    assert result.decision == ("bonafide" if result.score > 0.05 else "spoof")
    for w in result.windows:
        assert w.probability_bonafide == pytest.approx(1 / (1 + np.exp(-(1.7 * w.score - 0.3))))


def test_spoofed_ranges_merge_low_scoring_windows(checkpoint):
    detector = Detector.from_checkpoint(checkpoint)
    wave = load_audio(corpus_files(2)[1])
    wave = np.concatenate([wave] * 3)
    scores = reference_window_scores(detector, wave)
    detector.threshold = float(np.median(scores))  # about half the windows look spoofed
    result = detector.score_array(wave)
    low = [w for w in result.windows if w.score <= detector.threshold]
    assert 0 < len(low) < len(result.windows)
    covered = lambda t: any(a <= t <= b for a, b in result.spoofed_ranges)  # noqa: E731
    assert all(covered(w.start) and covered(w.end) for w in low)
    # Ranges are disjoint and ordered, and each one starts at a low window.
    flat = [t for r in result.spoofed_ranges for t in r]
    assert flat == sorted(flat)
    assert {a for a, _ in result.spoofed_ranges} <= {round(w.start, 4) for w in low}


def test_short_input_is_tiled_like_training(detector):
    wave = load_audio(corpus_files(1)[0])[: WINDOW // 3]
    result = detector.score_array(wave)
    assert len(result.windows) == 1
    assert result.score == pytest.approx(reference_window_scores(detector, wave)[0], abs=1e-5)
    assert result.duration == pytest.approx(wave.shape[0] / SAMPLE_RATE)


def test_scores_are_deterministic_and_consistent_across_entry_points(detector, tmp_path):
    path = corpus_files(3)[2]
    from_file = detector.score_file(path)
    again = detector.score_file(path)
    assert from_file == again
    wave, rate = sf.read(path, dtype="int16")
    from_int16 = detector.score_array(wave, rate)
    assert from_int16.score == pytest.approx(from_file.score, abs=1e-6)
    assert from_file.path == str(path)
    # The same audio at 8 kHz is resampled to 16 kHz first: close to (not exactly) the original.
    wav = tmp_path / "clip8k.wav"
    sf.write(wav, load_audio(path, sample_rate=8000), 8000, subtype="FLOAT")
    assert np.isfinite(detector.score_file(wav).score)
    stereo = np.stack([wave, wave], axis=1)
    assert detector.score_array(stereo, rate).score == pytest.approx(from_file.score, abs=1e-6)


def test_score_arrays_batches_across_recordings(detector):
    waves = [load_audio(path) for path in corpus_files(3)]
    together = detector.score_arrays([waves[0], waves[1][:5000], np.concatenate([waves[2]] * 2)])
    alone = [detector.score_array(w) for w in (waves[0], waves[1][:5000], np.concatenate([waves[2]] * 2))]
    for a, b in zip(together, alone):
        assert a.score == pytest.approx(b.score, abs=1e-5)
        assert [w.start for w in a.windows] == [w.start for w in b.windows]


def test_result_of_a_streamed_recording_equals_score_arrays(detector):
    waves = [load_audio(path) for path in corpus_files(2)]
    streamed = list(detector.scorer().score_stream((str(i), w) for i, w in enumerate(waves)))
    for scored, result in zip(streamed, detector.score_arrays(waves)):  # the same windows in the same batches
        assert detector.result(scored, scored.key) == dataclasses.replace(result, path=scored.key)


def test_to_dict_is_json_ready(detector):
    import json

    result = detector.score_array(load_audio(corpus_files(1)[0]))
    data = json.loads(json.dumps(result.to_dict()))
    assert set(data) >= {"score", "probability_bonafide", "decision", "threshold", "windows", "spoofed_ranges", "calibrated"}
    assert data["windows"][0]["end"] > data["windows"][0]["start"]


def test_full_length_mode_scores_once(checkpoint):
    detector = Detector.from_checkpoint(checkpoint, window=None)
    wave = load_audio(corpus_files(1)[0])
    result = detector.score_array(wave)
    with torch.no_grad():
        logits = detector.model(torch.from_numpy(wave)[None])
    assert len(result.windows) == 1
    assert result.score == pytest.approx(float(logits[0, 1] - logits[0, 0]), abs=1e-5)


def test_checkpoint_without_selection_says_so(tmp_path):
    path = save_tiny_checkpoint(tmp_path / "early.pt", selection=None)
    with pytest.warns(UserWarning, match="no dev selection"):
        detector = Detector.from_checkpoint(path)
    assert detector.threshold == 0.0 and not detector.calibrated
    assert "uncalibrated" in detector.notes[0]
    assert (detector.window, detector.hop) == (WINDOW, WINDOW // 2)  # from the run config's eval section
    wave = load_audio(corpus_files(1)[0])[:WINDOW]
    result = detector.score_array(wave)
    with torch.no_grad():
        softmax = torch.softmax(detector.model(torch.from_numpy(wave)[None]), dim=-1)[0, 1].item()
    assert result.probability_bonafide == pytest.approx(softmax, abs=1e-6)
    assert not result.calibrated


@pytest.mark.parametrize(
    ("x", "rate", "message"),
    [
        (np.zeros(0, np.float32), SAMPLE_RATE, "no samples"),
        (np.array([0.1, np.nan, 0.2] * 400, np.float32), SAMPLE_RATE, "audio: 400 NaN/inf samples"),
        (np.zeros((2, 3, 4), np.float32), SAMPLE_RATE, r"expected \[T\] or \[T, channels\]"),
        (np.zeros(4000, np.float32), 0, "sample_rate: expected a positive integer"),
        (np.array(["a"] * 10), SAMPLE_RATE, "got dtype"),
    ],
)
def test_bad_arrays_are_rejected(detector, x, rate, message):
    with pytest.raises(DetectorError, match=message):
        detector.score_array(x, rate)


def test_bad_checkpoints(tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="broken.pt"):
        Detector.from_checkpoint(broken)
    no_model = save_checkpoint({"model_name": "rawnet-lite", "model_config": {}}, tmp_path / "nomodel.pt")
    with pytest.raises(DetectorError, match="nomodel.pt: checkpoint has no 'model'"):
        Detector.from_checkpoint(no_model)
    bad_selection = save_tiny_checkpoint(tmp_path / "badsel.pt", {"threshold": "high", "calibration": {}})
    with pytest.raises(DetectorError, match="badsel.pt: checkpoint 'selection' needs numeric"):
        Detector.from_checkpoint(bad_selection)
    wrong_shape = save_tiny_checkpoint(tmp_path / "wrong.pt", SELECTION)
    from rawguard.checkpoint import load_checkpoint

    state = load_checkpoint(wrong_shape)
    state["model_config"]["gru_hidden"] = 24
    save_checkpoint(state, wrong_shape)
    with pytest.raises(DetectorError, match="wrong.pt: cannot rebuild model 'rawnet-lite'"):
        Detector.from_checkpoint(wrong_shape)


def test_bad_file_among_good_files(detector, tmp_path):
    good = corpus_files(2)
    folder = tmp_path / "mixed" / "sub"
    folder.mkdir(parents=True)
    for path in good:
        shutil.copy(path, folder / path.name)
    truncated = folder / "truncated.flac"
    truncated.write_bytes(good[0].read_bytes()[:2000])
    (folder / "notes.txt").write_text("not audio")
    files = find_audio_files([tmp_path / "mixed", tmp_path / "missing.wav"])
    assert [p.name for p in files] == sorted([good[0].name, good[1].name, "truncated.flac"]) + ["missing.wav"]
    outcomes = dict(detector.score_files(files))
    errors = {p.name: o for p, o in outcomes.items() if isinstance(o, Exception)}
    assert set(errors) == {"truncated.flac", "missing.wav"}
    assert all(isinstance(e, AudioError) for e in errors.values())
    assert "file not found" in str(errors["missing.wav"])
    # Windows of several files share batches; scores equal one-file-at-a-time scoring.
    for path in good:
        assert outcomes[folder / path.name].score == pytest.approx(detector.score_file(path).score, abs=1e-5)
