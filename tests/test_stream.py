"""Live scoring: windows of a stream equal the whole recording's, PCM decoding across chunk
boundaries, WAV headers, `rawguard stream` on a pipe and a growing file, and WS /v1/stream."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import soxr

from helpers.checkpoints import SELECTION, WINDOW, save_tiny_checkpoint
from helpers.serving import smoke_clips
from rawguard.audio import load_audio
from rawguard.detector import Detector
from rawguard.serve.sources import split_wav_header
from rawguard.serve.streaming import PcmDecoder, PcmFormat, StreamError, StreamWindows, stream_messages
from rawguard.windows import window_starts


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("stream") / "best.pt", SELECTION)


@pytest.fixture(scope="module")
def detector(checkpoint):
    return Detector.from_checkpoint(checkpoint)


@pytest.fixture(scope="module")
def clip():
    return smoke_clips()["spoof"][0]


def random_chunks(data, rng, most: int = 5000):
    position = 0
    while position < len(data):
        size = int(rng.integers(1, most))
        yield data[position:position + size]
        position += size


@pytest.mark.parametrize("window,hop", [(10, 4), (10, 10), (7, 3), (16000, 8000)])
def test_stream_windows_are_the_recordings_windows(window, hop):
    rng = np.random.default_rng(window * 31 + hop)
    for length in [1, window - 1, window, window + 1, 3 * window + 2, 5 * hop + window, 40_000]:
        wave = rng.standard_normal(length).astype(np.float32)
        windows = StreamWindows(window, hop)
        got = [item for chunk in random_chunks(wave, rng, 2 * window) for item in windows.push(chunk)] + windows.finish()
        assert [start for start, _ in got] == window_starts(length, window, hop).tolist()
        for start, samples in got:
            np.testing.assert_array_equal(samples, wave[start:start + window] if length >= window else wave)
        assert windows._buffer.shape[0] <= window + 2 * window  # memory stays about one window


def test_pcm_decoder_across_chunk_boundaries():
    rng = np.random.default_rng(0)
    stereo = (rng.standard_normal((8000, 2)) * 3000).astype("<i2")
    decoder = PcmDecoder(PcmFormat(channels=2))
    decoded = np.concatenate([decoder.decode(c) for c in random_chunks(stereo.tobytes(), rng, 999)] + [decoder.decode(b"", last=True)])
    np.testing.assert_allclose(decoded, stereo.mean(axis=1) / 32768, atol=1e-6)
    # 8 kHz float: resampled in a stream, equal (to resampler precision) to one-shot resampling
    wave = load_audio(smoke_clips()["bonafide"][0], sample_rate=8000)
    decoder = PcmDecoder(PcmFormat(sample_rate=8000, format="f32le"))
    streamed = np.concatenate([decoder.decode(c) for c in random_chunks(wave.astype("<f4").tobytes(), rng)] + [decoder.decode(b"", last=True)])
    whole = soxr.resample(wave, 8000, 16000, quality="HQ")
    assert abs(streamed.shape[0] - whole.shape[0]) <= 1
    np.testing.assert_allclose(streamed[:whole.shape[0]], whole[:streamed.shape[0]], atol=1e-3)
    with pytest.raises(StreamError, match="format"):
        PcmFormat(format="mp3")
    with pytest.raises(StreamError, match="NaN"):
        PcmDecoder(PcmFormat(format="f32le")).decode(np.full(4, np.nan, dtype="<f4").tobytes())


def test_wav_headers(clip):
    wave, rate = sf.read(str(clip), dtype="float32")
    for subtype, fmt in (("PCM_16", "s16le"), ("FLOAT", "f32le")):
        buffer = io.BytesIO()
        sf.write(buffer, np.stack([wave, wave], axis=1), 22050, format="WAV", subtype=subtype)
        data = buffer.getvalue()
        with pytest.raises(EOFError):
            split_wav_header(data[:20])  # needs more bytes
        pcm, offset = split_wav_header(data)
        assert (pcm.sample_rate, pcm.channels, pcm.format) == (22050, 2, fmt)
        assert len(data) - offset == wave.shape[0] * pcm.frame_bytes
    buffer = io.BytesIO()
    sf.write(buffer, wave, 16000, format="WAV", subtype="PCM_24")
    with pytest.raises(StreamError, match="24-bit"):
        split_wav_header(buffer.getvalue())
    assert split_wav_header(b"\x01\x02" * 100) is None  # raw PCM


def test_stream_messages_equal_whole_file_scoring(detector, clip):
    expected = detector.score_file(clip)
    pcm = (load_audio(clip) * 32768).round().clip(-32768, 32767).astype("<i2")
    expected = detector.score_array(pcm)  # the same int16 samples the stream carries
    messages = list(stream_messages(detector, random_chunks(pcm.tobytes(), np.random.default_rng(1)), PcmFormat()))
    assert [m["start"] for m in messages] == [w.start for w in expected.windows]
    assert [m["end"] for m in messages] == pytest.approx([w.end for w in expected.windows])
    assert [m["score"] for m in messages] == pytest.approx([w.score for w in expected.windows], abs=1e-5)
    last = messages[-1]
    assert last["running_score"] == pytest.approx(expected.score, abs=1e-5)
    assert last["probability_bonafide"] == pytest.approx(expected.probability_bonafide, abs=1e-5)
    assert last["decision"] == expected.decision
    running = np.cumsum([m["score"] for m in messages]) / np.arange(1, len(messages) + 1)
    assert [m["running_score"] for m in messages] == pytest.approx(running.tolist())


def _cli(checkpoint, *args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rawguard.cli", "stream", "--checkpoint", str(checkpoint), "--threads", "1", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def test_cli_stream_from_a_pipe_flushes_each_window(checkpoint, detector, clip):
    buffer = io.BytesIO()
    sf.write(buffer, load_audio(clip), 16000, format="WAV", subtype="PCM_16")
    data = buffer.getvalue()
    expected = detector.score_array(sf.read(io.BytesIO(data), dtype="int16")[0])
    process = _cli(checkpoint, "-", stdin=subprocess.PIPE)
    # First 1.5 windows: the first window's line must arrive while the pipe is still open.
    cut = 44 + 2 * (WINDOW + WINDOW // 2)
    process.stdin.write(data[:cut])
    process.stdin.flush()
    first = json.loads(process.stdout.readline())
    assert first["start"] == 0.0 and first["end"] == WINDOW / 16000
    process.stdin.write(data[cut:])
    process.stdin.close()
    rest = [json.loads(line) for line in process.stdout]
    assert process.wait(60) == 0
    messages = [first] + rest
    assert len(messages) == len(expected.windows)
    assert messages[-1]["running_score"] == pytest.approx(expected.score, abs=1e-5)
    assert messages[-1]["decision"] == expected.decision


def test_cli_stream_follows_a_growing_file(checkpoint, detector, clip, tmp_path):
    pcm = (load_audio(clip) * 32767).astype("<i2").tobytes()
    growing = tmp_path / "growing.raw"
    growing.write_bytes(pcm[: len(pcm) // 3])
    process = _cli(checkpoint, str(growing), "--idle-timeout", "3")
    time.sleep(1.0)
    with growing.open("ab") as handle:
        handle.write(pcm[len(pcm) // 3:])
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err.decode()
    messages = [json.loads(line) for line in out.decode().splitlines()]
    expected = detector.score_array(np.frombuffer(pcm, dtype="<i2"))
    assert len(messages) == len(expected.windows)
    assert messages[-1]["running_score"] == pytest.approx(expected.score, abs=1e-5)
    empty = tmp_path / "empty.raw"
    empty.write_bytes(b"")
    process = _cli(checkpoint, str(empty), "--idle-timeout", "0.2")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1 and b"no audio" in err
