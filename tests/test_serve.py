"""rawguard serve over real HTTP: health, scoring equal to `rawguard score --json`, several files,
concurrent clients batched together, tokens, and refused inputs answered with a clear status."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile as sf
import soxr

pytest.importorskip("fastapi", reason="the 'serve' extra is not installed")
import httpx  # noqa: E402

from helpers.checkpoints import SELECTION, WINDOW, save_tiny_checkpoint  # noqa: E402
from helpers.serving import running_server, smoke_clips  # noqa: E402
from rawguard.cli import main  # noqa: E402
from rawguard.serve.app import load_detector  # noqa: E402
from rawguard.serve.settings import ServeSettings  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("serve") / "best.pt", SELECTION)


@pytest.fixture(scope="module")
def settings(checkpoint):
    return ServeSettings(checkpoint=str(checkpoint), max_upload_mb=1.0, max_duration=20.0, threads=1)


@pytest.fixture(scope="module")
def server(settings):
    detector = load_detector(settings)
    with running_server(settings, detector) as served:
        yield served.url, served.app


@pytest.fixture(scope="module")
def clips():
    return smoke_clips()


def score(url: str, path, **kwargs) -> httpx.Response:
    with open(path, "rb") as handle:
        return httpx.post(f"{url}/v1/score", files={"file": (path.name, handle)}, timeout=30, **kwargs)


def cli_json(checkpoint, path, capsys) -> dict:
    assert main(["score", "--checkpoint", str(checkpoint), str(path), "--json", "--threads", "1"]) == 0
    return json.loads(capsys.readouterr().out)


def test_healthz_names_the_model_and_checkpoint(server, checkpoint):
    url, _ = server
    body = httpx.get(f"{url}/healthz").json()
    assert body["status"] == "ok" and body["model"] == "rawnet-lite"
    assert body["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert body["threshold"] == SELECTION["threshold"] and body["token_required"] is False


def test_score_equals_cli_json(server, checkpoint, clips, capsys):
    url, _ = server
    for path in (clips["bonafide"][0], clips["spoof"][0]):
        expected = cli_json(checkpoint, path, capsys)
        response = score(url, path)
        assert response.status_code == 200
        body = response.json()
        assert body["path"] == path.name and expected["path"] == str(path)
        assert {**body, "path": None} == {**expected, "path": None}  # same keys, same values
        assert set(body) >= {"score", "probability_bonafide", "decision", "threshold", "duration_s", "windows", "spoofed_ranges"}
        assert len(body["windows"]) > 1 and body["duration_s"] == pytest.approx(sf.info(str(path)).duration)


def test_raw_body_and_several_files(server, clips):
    url, _ = server
    first, second = clips["bonafide"][1], clips["spoof"][1]
    single = score(url, first).json()
    raw = httpx.post(f"{url}/v1/score", params={"name": first.name}, content=first.read_bytes(),
                     headers={"Content-Type": "audio/flac"}, timeout=30)
    assert raw.status_code == 200 and raw.json()["score"] == pytest.approx(single["score"], abs=1e-5)
    both = httpx.post(f"{url}/v1/score", timeout=30, files=[("file", (p.name, p.read_bytes())) for p in (first, second)])
    assert both.status_code == 200
    body = both.json()
    assert isinstance(body, list) and [r["path"] for r in body] == [first.name, second.name]
    assert body[0]["score"] == pytest.approx(single["score"], abs=1e-5)
    assert body[1]["score"] == pytest.approx(score(url, second).json()["score"], abs=1e-5)


def test_concurrent_clients_are_batched_and_all_answered(server, clips):
    url, app = server
    paths = (clips["bonafide"] + clips["spoof"])[:20]
    alone = {p.name: score(url, p).json()["score"] for p in paths}
    scorer = app.state.scorer
    calls_before, requests_before = scorer.calls, scorer.requests
    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(lambda p: score(url, p), paths))
    assert [r.status_code for r in responses] == [200] * 20
    for path, response in zip(paths, responses):
        assert response.json()["path"] == path.name
        assert response.json()["score"] == pytest.approx(alone[path.name], abs=1e-4)
    assert scorer.requests - requests_before == 20
    assert scorer.calls - calls_before < 20  # requests shared model calls


def _wav_bytes(wave: np.ndarray, rate: int = 16000, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def test_bad_audio_is_refused_with_its_reason(server, clips):
    url, _ = server
    good = clips["bonafide"][2]
    expected = score(url, good).json()
    wave, _ = sf.read(str(good), dtype="float32")
    nan_wave = wave.copy()
    nan_wave[100:110] = np.nan
    too_long = np.tile(wave, int(np.ceil(21 * 16000 / wave.shape[0])))
    cases = [
        ("text.wav", b"this is not audio, only text posing as a wav file\n" * 20, 400, "unreadable or corrupt audio"),
        ("nan.wav", _wav_bytes(nan_wave, subtype="FLOAT"), 400, "NaN/Inf"),
        ("cut.flac", good.read_bytes()[: len(good.read_bytes()) // 2], 400, "corrupt"),
        ("empty.wav", b"", 400, "empty"),
        ("long.wav", _wav_bytes(too_long), 413, "over the limit of 20 s"),
        ("big.wav", _wav_bytes(np.zeros(600_000, dtype=np.float32)), 413, "over the limit of 1 MB"),
    ]
    for name, data, status, reason in cases:
        response = httpx.post(f"{url}/v1/score", files={"file": (name, data)}, timeout=30)
        assert response.status_code == status, (name, response.text)
        body = response.json()
        assert body["path"] in (name, None) and reason in body["error"], (name, body)
        assert "rawguard-upload" not in body["error"]  # never the server's temporary path
        _still_healthy(url, good, expected)


def test_malformed_requests(server, clips):
    url, _ = server
    good = clips["bonafide"][2]
    expected = score(url, good).json()
    requests = [
        ({"Content-Type": "multipart/form-data; boundary=xyz"}, b"--xyz\r\nnot a part header\r\n\r\n--xyz--", 400, "malformed multipart"),
        ({"Content-Type": "multipart/form-data; boundary=xyz"},
         b'--xyz\r\nContent-Disposition: form-data; name="other"\r\n\r\nvalue\r\n--xyz--\r\n', 400, "no field 'file'"),
        ({"Content-Type": "application/octet-stream"}, b"", 400, "empty request body"),
    ]
    for headers, body, status, reason in requests:
        response = httpx.post(f"{url}/v1/score", headers=headers, content=body, timeout=30)
        assert response.status_code == status and reason in response.json()["error"], response.text
        _still_healthy(url, good, expected)
    assert httpx.get(f"{url}/v1/nothing-here").json() == {"path": None, "error": "Not Found"}


def _still_healthy(url, good, expected):
    assert httpx.get(f"{url}/healthz", timeout=10).json()["status"] == "ok"
    assert score(url, good).json() == expected


def test_token_is_required_when_set(checkpoint, clips):
    settings = ServeSettings(checkpoint=str(checkpoint), token="s3cret-token", threads=1)
    with running_server(settings) as served:
        url, good = served.url, clips["spoof"][2]
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-token"}):
            response = score(url, good, headers=headers)
            assert response.status_code == 401 and "token" in response.json()["error"]
            assert response.headers["www-authenticate"] == "Bearer"
        assert httpx.get(f"{url}/healthz").json()["token_required"] is True
        assert score(url, good, headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
        # Streams: the token as ?token= (browsers cannot set WebSocket headers); none: refused at the handshake.
        pcm = sf.read(str(good), dtype="int16")[0].tobytes()
        messages = asyncio.run(_stream(url, [pcm], query="?token=s3cret-token"))
        assert messages[-1]["event"] == "end" and len(messages) > 1
        import websockets

        for query in ("", "?token=wrong"):
            with pytest.raises(websockets.InvalidStatus) as refused:
                asyncio.run(_stream(url, [pcm], query=query))
            assert refused.value.response.status_code == 403


async def _stream(url: str, messages, query: str = "") -> list[dict]:
    import websockets

    async with websockets.connect(url.replace("http", "ws") + "/v1/stream" + query) as ws:
        for message in messages:
            await ws.send(message)
        await ws.send(json.dumps({"event": "end"}))
        return [json.loads(m) async for m in ws]


async def _first_message_while_streaming(url: str, data: bytes) -> tuple[float, float]:
    import websockets

    async with websockets.connect(url.replace("http", "ws") + "/v1/stream") as ws:
        await ws.send(data[: 2 * WINDOW + 2])  # one window and one sample
        first = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
        return first["start"], first["end"]


def messages_first_window(result: dict) -> tuple[float, float]:
    return result["windows"][0]["start"], result["windows"][0]["end"]


def test_live_stream_ends_with_the_files_result(server, clips):
    url, _ = server
    path = clips["bonafide"][3]
    pcm = sf.read(str(path), dtype="int16")[0]
    data = pcm.tobytes()
    chunks = [data[i:i + 3001] for i in range(0, len(data), 3001)]  # odd sizes: samples split across messages
    messages = asyncio.run(_stream(url, chunks))
    as_file = httpx.post(f"{url}/v1/score", files={"file": ("x.wav", _wav_bytes(pcm))}, timeout=30).json()
    *windows, end = messages
    assert [m["start"] for m in windows] == [w["start"] for w in as_file["windows"]]
    assert [m["score"] for m in windows] == pytest.approx([w["score"] for w in as_file["windows"]], abs=1e-5)
    assert windows[-1]["running_score"] == pytest.approx(as_file["score"], abs=1e-5)
    assert all(m["decision"] in ("bonafide", "spoof") and 0 <= m["probability_bonafide"] <= 1 for m in windows)
    assert end["event"] == "end" and set(end) - {"event"} == set(as_file)
    assert end["score"] == pytest.approx(as_file["score"], abs=1e-5) and end["decision"] == as_file["decision"]
    assert end["duration_s"] == as_file["duration_s"]
    # Live: a window's message comes while the stream is still open, once its last sample is in.
    assert asyncio.run(_first_message_while_streaming(url, data)) == messages_first_window(as_file)
    # Another rate, announced first: resampled on the fly, windows over the 16 kHz stream.
    wave8k = soxr.resample(pcm.astype(np.float32) / 32768, 16000, 8000).astype("<f4")
    messages = asyncio.run(_stream(url, [json.dumps({"sample_rate": 8000, "format": "f32le"}), wave8k.tobytes()]))
    assert messages[-1]["duration_s"] == pytest.approx(pcm.shape[0] / 16000, abs=2e-3)
    assert len(messages) - 1 == len(messages[-1]["windows"]) >= 3


def test_cli_serve_with_workers_logs_each_request_and_refuses_a_bad_checkpoint(checkpoint, clips, tmp_path):
    import subprocess
    import sys
    import time

    from helpers.serving import free_port

    port = free_port()
    # Two worker processes: each loads the model and logs its requests (settings reach them by environment).
    process = subprocess.Popen([sys.executable, "-m", "rawguard.cli", "serve", "--checkpoint", str(checkpoint), "--port", str(port),
                                "--workers", "2", "--max-duration", "9"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 60
        while True:
            try:
                assert httpx.get(f"{url}/healthz", timeout=2).json()["status"] == "ok"
                break
            except httpx.HTTPError:
                assert process.poll() is None and time.monotonic() < deadline, "rawguard serve did not start"
                time.sleep(0.2)
        assert score(url, clips["spoof"][3]).status_code == 200
        assert httpx.post(f"{url}/v1/score", content=b"garbage", timeout=10).status_code == 400
        long_clip = np.tile(sf.read(str(clips["spoof"][3]), dtype="float32")[0], 5)
        assert httpx.post(f"{url}/v1/score", content=_wav_bytes(long_clip), timeout=10).status_code == 413  # --max-duration 9
    finally:
        process.terminate()
        log = process.communicate(timeout=30)[0]
    lines = [line for line in log.splitlines() if "rawguard.serve:" in line]
    assert any("GET /healthz 200" in line for line in lines)
    assert any("POST /v1/score 200" in line and "1 file(s)" in line for line in lines)
    assert any("POST /v1/score 400" in line and "unreadable or corrupt audio" in line for line in lines)
    assert sum("Started server process" in line for line in log.splitlines()) == 2
    assert f"127.0.0.1:{port}" in log  # bound to localhost by default
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    done = subprocess.run([sys.executable, "-m", "rawguard.cli", "serve", "--checkpoint", str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "rawguard serve: error:" in done.stderr and "bad.pt" in done.stderr


def test_several_checkpoints_are_served_as_one_ensemble(checkpoint, tmp_path, clips):
    from rawguard.ensemble import ensemble_detector

    other = save_tiny_checkpoint(tmp_path / "other.pt", {**SELECTION, "calibration": {"scale": 0.5, "bias": 0.2}}, seed=3)
    settings = ServeSettings(checkpoint=[str(checkpoint), str(other)], max_upload_mb=1.0, max_duration=20.0, threads=1)
    with running_server(settings) as served:
        health = httpx.get(f"{served.url}/healthz").json()
        body = score(served.url, clips["spoof"][0]).json()
    assert health["model"] == "ensemble[2]:rawnet-lite"
    assert health["checkpoint_sha256"] == [hashlib.sha256(p.read_bytes()).hexdigest() for p in (checkpoint, other)]
    expected = ensemble_detector([checkpoint, other]).score_file(clips["spoof"][0]).to_dict()
    assert body["score"] == pytest.approx(expected["score"], abs=1e-5)
    assert body["threshold"] == pytest.approx(expected["threshold"])
    assert [w["score"] for w in body["windows"]] == pytest.approx([w["score"] for w in expected["windows"]], abs=1e-5)
