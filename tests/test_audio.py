"""audio.load_audio on generated files: formats, resampling, mix-down, and every failure reason."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from rawguard.audio import AUDIO_EXTENSIONS, AudioError, load_audio
from rawguard.conventions import SAMPLE_RATE


def _tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.25 * np.sin(2 * np.pi * 440 * t)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


def test_pcm16_wav_round_trips_exactly(tmp_path):
    ints = np.random.default_rng(0).integers(-32768, 32767, 16000, dtype=np.int16)
    sf.write(tmp_path / "a.wav", ints, SAMPLE_RATE, subtype="PCM_16")
    wave = load_audio(tmp_path / "a.wav")
    assert wave.dtype == np.float32 and wave.shape == (16000,)
    np.testing.assert_array_equal(wave, ints / np.float32(32768))


@pytest.mark.parametrize("ext", [".flac", ".ogg", ".mp3"])
def test_compressed_formats_decode(tmp_path, ext):
    path = tmp_path / f"a{ext}"
    sf.write(path, _tone(1.0, SAMPLE_RATE), SAMPLE_RATE)
    wave = load_audio(path)
    assert wave.dtype == np.float32
    # Lossy codecs may add encoder delay/padding, but the length stays near one second.
    assert abs(wave.shape[0] - SAMPLE_RATE) < 0.1 * SAMPLE_RATE
    assert 0.1 < np.abs(wave).max() <= 1.0
    assert ext in AUDIO_EXTENSIONS


def test_stereo_44k_is_mixed_down_and_resampled(tmp_path):
    left = _tone(0.5, 44100)
    sf.write(tmp_path / "s.wav", np.stack([left, np.zeros_like(left)], axis=1), 44100, subtype="FLOAT")
    wave = load_audio(tmp_path / "s.wav")
    assert wave.shape == (8000,)
    # Channels are averaged: a 0.25 tone on the left and silence on the right give ~0.125.
    assert abs(np.abs(wave[1000:7000]).max() - 0.125) < 0.005


def test_8k_is_upsampled(tmp_path):
    sf.write(tmp_path / "n.wav", _tone(1.0, 8000), 8000)
    assert load_audio(tmp_path / "n.wav").shape == (16000,)


def _reason(path, **kwargs) -> str:
    with pytest.raises(AudioError) as info:
        load_audio(path, **kwargs)
    assert str(path) in str(info.value) and info.value.path == str(path)
    return info.value.reason


def test_missing_file(tmp_path):
    assert "not found" in _reason(tmp_path / "nope.wav")


def test_directory_is_not_audio(tmp_path):
    assert "not a regular file" in _reason(tmp_path)


def test_garbage_and_wrong_format(tmp_path):
    (tmp_path / "text.wav").write_text("this is a protocol, not audio\n" * 20)
    assert "unreadable or corrupt" in _reason(tmp_path / "text.wav")
    (tmp_path / "empty.flac").write_bytes(b"")
    assert "unreadable or corrupt" in _reason(tmp_path / "empty.flac")


def test_zero_samples(tmp_path):
    sf.write(tmp_path / "z.wav", np.zeros(0), SAMPLE_RATE)
    assert "no samples" in _reason(tmp_path / "z.wav")


def test_truncated_wav(tmp_path):
    sf.write(tmp_path / "t.wav", _tone(1.0, SAMPLE_RATE), SAMPLE_RATE, subtype="PCM_16")
    data = (tmp_path / "t.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    assert "truncated" in _reason(tmp_path / "cut.wav")


def test_truncated_flac(tmp_path):
    sf.write(tmp_path / "t.flac", np.random.default_rng(1).normal(0, 0.1, SAMPLE_RATE), SAMPLE_RATE)
    data = (tmp_path / "t.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[: len(data) // 2])
    # libsndfile either loses sync mid-stream or decodes fewer frames than the header promises.
    reason = _reason(tmp_path / "cut.flac")
    assert "truncated" in reason or "corrupt" in reason


def test_truncated_mp3(tmp_path):
    sf.write(tmp_path / "t.mp3", _tone(3.0, SAMPLE_RATE), SAMPLE_RATE)
    data = (tmp_path / "t.mp3").read_bytes()
    (tmp_path / "cut.mp3").write_bytes(data[: len(data) // 2])
    assert "truncated file: header declares 48000 frames" in _reason(tmp_path / "cut.mp3")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_samples(tmp_path, bad):
    wave = _tone(0.1, SAMPLE_RATE).astype(np.float32)
    wave[[10, 20]] = bad
    sf.write(tmp_path / "f.wav", wave, SAMPLE_RATE, subtype="FLOAT")
    assert "2 NaN/Inf" in _reason(tmp_path / "f.wav")


def test_max_duration(tmp_path):
    sf.write(tmp_path / "long.wav", _tone(3.0, SAMPLE_RATE), SAMPLE_RATE)
    assert "exceeds the maximum of 2 s" in _reason(tmp_path / "long.wav", max_duration=2.0)
    assert load_audio(tmp_path / "long.wav", max_duration=3.0).shape == (48000,)
