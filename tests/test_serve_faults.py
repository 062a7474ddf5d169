"""Faults and abuse at the connection level: clients that leave mid-upload or mid-stream, declare
huge bodies, trickle headers or bodies, or send garbage streams. After each, the server still
answers /healthz and scores the next good file identically."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi", reason="the 'serve' extra is not installed")
import httpx  # noqa: E402
import websockets  # noqa: E402

from helpers.checkpoints import SELECTION, save_tiny_checkpoint  # noqa: E402
from helpers.serving import running_server, smoke_clips  # noqa: E402
from rawguard.serve.settings import ServeSettings  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    checkpoint = save_tiny_checkpoint(tmp_path_factory.mktemp("faults") / "best.pt", SELECTION)
    settings = ServeSettings(checkpoint=str(checkpoint), max_upload_mb=1.0, max_duration=10.0, threads=1,
                             read_timeout=1.0, upload_timeout=3.0, header_timeout=1.0)
    with running_server(settings) as served:
        yield served.url


@pytest.fixture(scope="module")
def good(server):
    path = smoke_clips()["bonafide"][0]
    return path, _score(server, path)


def _score(url, path) -> dict:
    response = httpx.post(f"{url}/v1/score", files={"file": (path.name, path.read_bytes())}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def _still_healthy(url, good):
    path, expected = good
    assert httpx.get(f"{url}/healthz", timeout=10).json()["status"] == "ok"
    assert _score(url, path) == expected


def _connect(url) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def _read_response(sock) -> tuple[int, dict]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"server closed without a response (got {data!r})")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split()[1]), json.loads(body)


def _request_head(length: int, content_type: str = "audio/flac") -> bytes:
    return (f"POST /v1/score HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def test_huge_declared_length_is_refused_before_reading(server, good):
    with _connect(server) as sock:
        sock.sendall(_request_head(50 * 10**9))  # 50 GB announced, nothing sent
        status, body = _read_response(sock)
    assert status == 413 and "over the limit of 1 MB" in body["error"]
    _still_healthy(server, good)


def test_chunked_body_over_the_limit_is_cut_off(server, good):
    def chunks():
        for _ in range(40):
            yield b"\0" * 65536  # 2.6 MB without a Content-Length
    response = httpx.post(f"{server}/v1/score", content=chunks(), timeout=30)
    assert response.status_code == 413 and "over the limit" in response.json()["error"]
    _still_healthy(server, good)


def test_client_disconnecting_mid_upload(server, good):
    data = good[0].read_bytes()
    for _ in range(3):
        with _connect(server) as sock:
            sock.sendall(_request_head(len(data)) + data[: len(data) // 3])
        multipart = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.flac\"\r\n\r\n" + data[:5000])
        with _connect(server) as sock:
            sock.sendall(_request_head(len(multipart) + 10_000, "multipart/form-data; boundary=b") + multipart)
    _still_healthy(server, good)


def test_slow_headers_are_cut_off(server, good):
    with _connect(server) as sock:
        sock.sendall(b"POST /v1/score HTTP/1.1\r\nHost: te")  # and then nothing
        started = time.monotonic()
        assert sock.recv(1024) == b""  # the server closed the connection
        assert time.monotonic() - started < 5
    _still_healthy(server, good)


def test_slow_body_gets_408(server, good):
    data = good[0].read_bytes()
    with _connect(server) as sock:
        sock.sendall(_request_head(len(data)) + data[:1000])
        started = time.monotonic()
        status, body = _read_response(sock)  # read_timeout is 1 s
        assert status == 408 and "too slow" in body["error"] and time.monotonic() - started < 5
    with _connect(server) as sock:  # trickling a byte every 0.5 s stays under the idle limit but not the 3 s total
        sock.sendall(_request_head(len(data)))
        for index in range(12):
            try:
                sock.sendall(data[index:index + 1])
            except OSError:
                break
            time.sleep(0.5)
        status, body = _read_response(sock)
        assert status == 408 and "whole upload" in body["error"]
    _still_healthy(server, good)


async def _stream(url: str, messages, read_all: bool = True, query: str = "") -> tuple[list[dict], int | None]:
    received = []
    async with websockets.connect(url.replace("http", "ws") + "/v1/stream" + query) as ws:
        for message in messages:
            if message is None:
                return received, None  # leave mid-stream without a word
            await ws.send(message)
        if read_all:
            try:
                async for message in ws:
                    received.append(json.loads(message))
            except websockets.ConnectionClosed:
                pass
        return received, ws.close_code


def _pcm(path) -> bytes:
    wave, _ = sf.read(str(path), dtype="int16")
    return wave.tobytes()


def test_stream_faults(server, good):
    pcm = _pcm(good[0])
    # leaving mid-stream
    asyncio.run(_stream(server, [pcm[:20000], pcm[20000:50000], None]))
    _still_healthy(server, good)
    # a bad format message, a format change after audio, a non-JSON text, NaN floats
    for messages, reason in [
        ([json.dumps({"sample_rate": 16000, "format": "mp3"})], "format: expected one of"),
        ([json.dumps({"sample_rate": -5})], "sample_rate"),
        ([pcm[:1000], json.dumps({"sample_rate": 8000})], "before the first audio chunk"),
        (["hello"], "not JSON"),
        ([json.dumps({"format": "f32le"}), np.full(40_000, np.nan, dtype="<f4").tobytes()], "NaN"),
    ]:
        received, code = asyncio.run(_stream(server, messages))
        assert code == 1003 and reason in received[-1]["error"], (reason, received)
        _still_healthy(server, good)
    # too long a stream: 11 s against a 10 s limit
    received, code = asyncio.run(_stream(server, [b"\0\1" * 16000 * 11]))
    assert code == 1009 and "longer than the limit of 10 s" in received[-1]["error"]
    # a silent client is dropped after read_timeout
    started = time.monotonic()
    received, code = asyncio.run(_stream(server, [pcm[:1000]]))
    assert code == 1008 and "no message for 1 s" in received[-1]["error"] and time.monotonic() - started < 5
    _still_healthy(server, good)
