"""A real ``rawguard serve`` (uvicorn on a free loopback port, in a thread) for the serve tests,
and labelled clips of the shared corpus's smoke list."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers.checkpoints import FLAC, SHARED, SMOKE


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Served:
    url: str  # http://127.0.0.1:PORT
    app: object  # the FastAPI app (app.state.scorer counts model calls)


@contextmanager
def running_server(settings, detector=None):
    """Serve ``settings`` on 127.0.0.1 until the block ends; yields a :class:`Served`."""
    import uvicorn

    from rawguard.serve.app import create_app
    from rawguard.serve.server import uvicorn_config

    port = free_port()
    app = create_app(settings, detector)
    server = uvicorn.Server(uvicorn_config(app, settings, "127.0.0.1", port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield Served(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        thread.join(15)


def smoke_clips() -> dict[str, list[Path]]:
    """``{"bonafide": [...], "spoof": [...]}`` clips of ``smoke.txt`` (skips without the corpus)."""
    if not SMOKE.is_file():
        pytest.skip(f"shared corpus not found at {SHARED}")
    clips: dict[str, list[Path]] = {"bonafide": [], "spoof": []}
    for line in SMOKE.read_text().splitlines():
        fields = line.split()
        clips[fields[4]].append(FLAC / f"{fields[1]}.flac")
    return clips
