"""rawguard.dsp, rawguard.demo_corpus, rawguard.copysynth: DSP pieces, the voice model, the resynthesis methods, the demo corpus, synth-spoof."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rawguard.conventions import SAMPLE_RATE
from rawguard.copysynth import METHODS, SynthError, resynthesize
from rawguard.copysynth.synth_spoof import MANIFEST, SynthFolderError, synth_spoof_folder
from rawguard.copysynth.vocoders import _sum_of_sinusoids, _warp_frequency, world_like
from rawguard.demo_corpus import DemoCorpusSpec, finish_clip, generate_demo_corpus, random_speaker, synthesize_utterance
from rawguard.dsp import (
    active_rms,
    block_filter,
    estimate_f0,
    lpc_analysis,
    mel_filterbank,
    minimum_phase,
    resonator_response,
    stft,
    istft,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CORPUS_FLAC = SHARED / "corpus" / "flac"
needs_corpus = pytest.mark.skipif(not (CORPUS_FLAC / "RG_D_000004.flac").is_file(),
                                  reason="needs ../shared/corpus beside the repository")
TINY = DemoCorpusSpec(train_speakers=2, dev_speakers=1, eval_speakers=2, train_per_class=3, dev_per_class=2,
                      eval_per_class=3, duration=(0.5, 0.7))


@pytest.fixture(scope="module")
def utterance() -> np.ndarray:
    rng = np.random.default_rng(7)
    return synthesize_utterance(random_speaker("S1", rng), 1.5, rng)


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory) -> dict[str, Path]:
    return generate_demo_corpus(tmp_path_factory.mktemp("corpus"), TINY, seed=3, workers=1, progress=False)


# --- dsp -----------------------------------------------------------------------------------------

def test_block_filter_with_a_fixed_filter_is_plain_convolution():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(2000)
    h = rng.standard_normal(100) * np.exp(-np.arange(100) / 20)
    responses = np.tile(np.fft.rfft(h, 512), (2000 // 80, 1))
    np.testing.assert_allclose(block_filter(x, responses, 80), np.convolve(x, h)[:2000], atol=1e-10)


def test_block_filter_switches_filter_per_block():
    x = np.zeros(160)
    x[0] = x[80] = 1.0  # one impulse in each block
    identity, halve = np.ones(257), np.full(257, 0.5)
    y = block_filter(x, np.stack([identity, halve]).astype(complex), 80)
    assert y[0] == pytest.approx(1.0) and y[80] == pytest.approx(0.5)


def test_resonator_peaks_at_its_frequency_and_is_unity_at_dc():
    h = np.abs(resonator_response(np.array([[1000.0]]), np.array([[80.0]]), 1024, SAMPLE_RATE))[0]
    freqs = np.fft.rfftfreq(1024, 1 / SAMPLE_RATE)
    assert h[0] == pytest.approx(1.0)
    assert abs(freqs[np.argmax(h)] - 1000) <= SAMPLE_RATE / 1024


def test_lpc_recovers_an_ar2_process():
    rng = np.random.default_rng(1)
    e = rng.standard_normal(40000)
    x = np.zeros_like(e)
    for n in range(2, len(x)):  # x[n] = 1.3 x[n-1] - 0.6 x[n-2] + e[n]
        x[n] = 1.3 * x[n - 1] - 0.6 * x[n - 2] + e[n]
    a, gain = lpc_analysis(x[None, 1000:], order=2, expand=1.0)
    np.testing.assert_allclose(a[0], [1.0, -1.3, 0.6], atol=0.03)


@pytest.mark.parametrize("f0", [90.0, 150.0, 260.0])
def test_f0_tracker_finds_the_period_of_a_harmonic_signal(f0):
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8))
    track, _ = estimate_f0(x, SAMPLE_RATE, 160)
    voiced = track[5:-5]
    assert np.all(voiced > 0)
    assert np.median(np.abs(voiced / f0 - 1)) < 0.01


def test_f0_tracker_calls_noise_unvoiced():
    track, aperiodicity = estimate_f0(np.random.default_rng(0).standard_normal(SAMPLE_RATE), SAMPLE_RATE, 160)
    assert np.mean(track == 0) > 0.9 and np.median(aperiodicity) > 0.35


def test_stft_round_trip_and_mel_filterbank_shape():
    x = np.random.default_rng(2).standard_normal(5000)
    np.testing.assert_allclose(istft(stft(x, 512, 128), 128, len(x)), x, atol=1e-8)
    fb = mel_filterbank(1024, 80, SAMPLE_RATE)
    assert fb.shape == (80, 513) and np.all(fb >= 0) and np.all(fb.sum(axis=1) > 0)


def test_minimum_phase_keeps_the_magnitude():
    log_mag = np.log(np.abs(resonator_response(np.array([[700.0, 1800.0]]), np.array([[90.0, 120.0]]), 1024, SAMPLE_RATE)))
    np.testing.assert_allclose(np.log(np.abs(minimum_phase(log_mag))), log_mag, atol=1e-6)


# --- voice model ---------------------------------------------------------------------------------

def test_utterance_is_deterministic_and_speech_like(utterance):
    rng = np.random.default_rng(7)
    again = synthesize_utterance(random_speaker("S1", rng), 1.5, rng)
    np.testing.assert_array_equal(utterance, again)
    assert np.all(np.isfinite(utterance)) and np.max(np.abs(utterance)) == pytest.approx(0.5)
    assert 1.4 < len(utterance) / SAMPLE_RATE < 2.0


def test_voice_pitch_follows_the_speaker():
    for f0_mean in (100.0, 210.0):
        rng = np.random.default_rng(11)
        speaker = dataclasses.replace(random_speaker("S", rng), f0_mean=f0_mean, f0_range=2.0)
        track, _ = estimate_f0(synthesize_utterance(speaker, 2.0, rng), SAMPLE_RATE, 80)
        median = np.median(track[track > 0])
        assert 0.75 * f0_mean < median < 1.3 * f0_mean, (f0_mean, median)


# --- resynthesis ---------------------------------------------------------------------------------

def _log_spectrum(x: np.ndarray) -> np.ndarray:
    return np.log(np.mean(np.abs(stft(x, 512, 256)) ** 2, axis=0) + 1e-12)


@pytest.mark.parametrize("method", list(METHODS))
def test_resynthesis_keeps_length_level_and_spectral_shape_but_changes_the_waveform(method, utterance):
    copy = resynthesize(utterance, method, np.random.default_rng(0))
    assert copy.dtype == np.float32 and copy.shape == utterance.shape and np.all(np.isfinite(copy))
    assert active_rms(copy.astype(np.float64), SAMPLE_RATE) == pytest.approx(active_rms(utterance, SAMPLE_RATE), rel=1e-3)
    assert np.corrcoef(_log_spectrum(copy), _log_spectrum(utterance))[0, 1] > 0.8
    assert np.corrcoef(copy, utterance)[0, 1] < 0.99  # a copy, not the same samples


def test_world_vc_moves_the_voice_3_to_7_semitones_and_the_formants_with_it(utterance):
    track, _ = estimate_f0(utterance, SAMPLE_RATE, 80)
    source = np.median(track[track > 0])
    shifts = []
    for seed in range(4):
        copy, _ = estimate_f0(resynthesize(utterance, "world_vc", np.random.default_rng(seed)).astype(np.float64),
                              SAMPLE_RATE, 80)
        shifts.append(12 * np.log2(np.median(copy[copy > 0]) / source))
    assert all(2.0 < abs(shift) < 8.0 for shift in shifts), shifts
    # The envelope warp moves a spectral peak from bin 100 to bin ~110 for warp 1.1.
    peak = np.exp(-0.5 * ((np.arange(513) - 100) / 5.0) ** 2)[None, :]
    assert int(np.argmax(_warp_frequency(peak, 1.1))) == 110
    # With no shift and no warp, world_vc's vocoder is the plain world method.
    plain = world_like(utterance, np.random.default_rng(3))
    np.testing.assert_array_equal(world_like(utterance, np.random.default_rng(3), f0_scale=1.0, warp=1.0), plain)


@needs_corpus
@pytest.mark.parametrize("method", list(METHODS))
def test_resynthesis_of_real_speech(method):
    from rawguard.audio import load_audio

    wave = load_audio(CORPUS_FLAC / "RG_D_000004.flac")
    copy = resynthesize(wave, method, np.random.default_rng(0))
    assert copy.shape == wave.shape
    assert np.corrcoef(_log_spectrum(copy), _log_spectrum(wave.astype(np.float64)))[0, 1] > 0.8


def test_sinusoidal_renders_only_the_kept_peaks_and_sums_them_per_frame():
    """The kept-peaks rendering equals every slot rendered and masked, frame by frame, up
    to rounding, with a frame that keeps nothing and kept peaks that are not a prefix of their row."""
    rng = np.random.default_rng(3)
    frames, peaks = 5, 7
    amp, freq = rng.random((frames, peaks)), rng.uniform(50, 7900, (frames, peaks))
    phase = rng.uniform(-3, 3, (frames, peaks))
    keep = rng.random((frames, peaks)) < 0.6
    keep[2] = False
    n = np.arange(-16, 16)
    dense = np.sum((amp * keep)[:, :, None] * np.cos(2 * np.pi * freq[:, :, None] * n / SAMPLE_RATE
                                                     + phase[:, :, None]), axis=1)
    sparse = _sum_of_sinusoids(amp * keep, freq, phase, keep, n)
    np.testing.assert_array_equal(sparse[2], 0.0)
    np.testing.assert_allclose(sparse, dense, rtol=0, atol=1e-12)
    assert not np.any(_sum_of_sinusoids(amp, freq, phase, np.zeros_like(keep), n))


def test_resynthesis_rejects_bad_input():
    rng = np.random.default_rng(0)
    with pytest.raises(SynthError, match="unknown resynthesis method 'hifigan'"):
        resynthesize(np.zeros(4000), "hifigan", rng)
    with pytest.raises(SynthError, match="too short"):
        resynthesize(np.ones(100), "lpc", rng)
    with pytest.raises(SynthError, match="mono"):
        resynthesize(np.ones((2, 4000)), "lpc", rng)
    bad = np.ones(4000)
    bad[10] = np.nan
    with pytest.raises(SynthError, match="NaN"):
        resynthesize(bad, "lpc", rng)
    np.testing.assert_array_equal(resynthesize(np.zeros(4000), "world", rng), 0.0)  # silence stays silence


def test_finish_clip_pads_and_normalises(utterance):
    rng = np.random.default_rng(5)
    levels = []
    for _ in range(5):
        clip = finish_clip(utterance, rng)
        extra = (len(clip) - len(utterance)) / SAMPLE_RATE
        assert 0.1 <= extra <= 0.6
        levels.append(20 * np.log10(active_rms(clip.astype(np.float64), SAMPLE_RATE)))
        assert np.min(np.abs(clip[:400])) > 0  # noise floor: no digital silence in the padding
    assert all(-30.5 < level < -21.5 for level in levels)


# --- demo corpus ---------------------------------------------------------------------------------

def _protocol(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()]


def test_demo_corpus_layout_and_protocols(tiny_corpus):
    rows = {split: _protocol(tiny_corpus[split]) for split in ("train", "dev", "eval")}
    systems = TINY.systems()
    unseen = [s for s, m in systems.items() if m == TINY.unseen_method]
    for split, lines in rows.items():
        assert all(len(r) == 5 and r[2] == "-" and r[4] in ("bonafide", "spoof") for r in lines)
        assert all((r[3] == "-") == (r[4] == "bonafide") for r in lines)
        for r in lines:
            data, rate = sf.read(tiny_corpus["flac"] / f"{r[1]}.flac")
            assert rate == SAMPLE_RATE and data.ndim == 1
        attacks = {r[3] for r in lines if r[4] == "spoof"}
        assert (attacks & set(unseen)) == (set(unseen) if split == "eval" else set())
    assert sum(r[4] == "bonafide" for r in rows["train"]) == TINY.train_per_class
    speakers = {split: {r[0] for r in lines} for split, lines in rows.items()}
    assert not (speakers["train"] & speakers["dev"]) and not (speakers["train"] & speakers["eval"])
    ids = [r[1] for lines in rows.values() for r in lines]
    assert len(ids) == len(set(ids))
    assert (tiny_corpus["flac"].parent / "systems.tsv").is_file() and (tiny_corpus["flac"].parent / "meta.json").is_file()


def test_demo_corpus_classes_share_level_and_padding(tiny_corpus):
    levels = {"bonafide": [], "spoof": []}
    for split in ("train", "eval"):
        for r in _protocol(tiny_corpus[split]):
            data, _ = sf.read(tiny_corpus["flac"] / f"{r[1]}.flac")
            levels[r[4]].append(20 * np.log10(active_rms(data, SAMPLE_RATE)))
    for values in levels.values():
        assert all(-31 < v < -21 for v in values)


def test_demo_corpus_is_identical_for_any_worker_count(tiny_corpus, tmp_path):
    other = generate_demo_corpus(tmp_path, TINY, seed=3, workers=2, progress=False)
    assert other["train"].read_text() == tiny_corpus["train"].read_text()
    first = _protocol(tiny_corpus["eval"])[0][1]
    a, _ = sf.read(tiny_corpus["flac"] / f"{first}.flac")
    b, _ = sf.read(other["flac"] / f"{first}.flac")
    np.testing.assert_array_equal(a, b)


def test_demo_corpus_rejects_bad_specs(tmp_path):
    with pytest.raises(ValueError, match="unknown resynthesis method 'wavenet'"):
        generate_demo_corpus(tmp_path, dataclasses.replace(TINY, unseen_method="wavenet"), progress=False)
    with pytest.raises(ValueError, match="also a seen method"):
        generate_demo_corpus(tmp_path, dataclasses.replace(TINY, unseen_method="lpc"), progress=False)


# --- synth-spoof ---------------------------------------------------------------------------------

@needs_corpus
def test_synth_spoof_folder_keeps_layout_and_reports_bad_files(tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    shutil.copy(CORPUS_FLAC / "RG_D_000004.flac", src / "sub" / "a.flac")
    data, rate = sf.read(CORPUS_FLAC / "RG_D_000034.flac")
    sf.write(src / "b.wav", np.stack([data, data], axis=1), rate)  # stereo WAV: any readable format
    (src / "broken.wav").write_bytes(b"RIFF not really")
    summary = synth_spoof_folder(src, tmp_path / "out", "lpc", workers=1, progress=False)
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in summary.written) == ["b.flac", "sub/a.flac"]
    assert [p.name for p, _ in summary.failed] == ["broken.wav"]
    assert "broken.wav" in summary.failed[0][1]
    copy, copy_rate = sf.read(tmp_path / "out" / "sub" / "a.flac")
    assert copy_rate == SAMPLE_RATE and len(copy) == len(sf.read(src / "sub" / "a.flac")[0])
    assert len((tmp_path / "out" / MANIFEST).read_text().splitlines()) == 3


def test_synth_spoof_folder_errors(tmp_path):
    with pytest.raises(SynthFolderError, match="unknown resynthesis method"):
        synth_spoof_folder(tmp_path, tmp_path / "o", "vocoder")
    with pytest.raises(SynthFolderError, match="input folder not found"):
        synth_spoof_folder(tmp_path / "missing", tmp_path / "o", "lpc")
    with pytest.raises(SynthFolderError, match="no audio files"):
        synth_spoof_folder(tmp_path, tmp_path / "o", "lpc")


@needs_corpus
def test_synth_spoof_cli(tmp_path, capsys):
    from rawguard.cli import main

    (tmp_path / "in").mkdir()
    shutil.copy(CORPUS_FLAC / "RG_D_000004.flac", tmp_path / "in" / "x.flac")
    assert main(["synth-spoof", str(tmp_path / "in"), str(tmp_path / "out"), "--method", "world", "--quiet", "--workers", "1"]) == 0
    assert (tmp_path / "out" / "x.flac").is_file()
    assert "wrote 1 world copies" in capsys.readouterr().out
    assert main(["synth-spoof", str(tmp_path / "nope"), str(tmp_path / "out"), "--method", "lpc", "--quiet"]) == 2
    assert "input folder not found" in capsys.readouterr().err
