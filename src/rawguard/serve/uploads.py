"""Reading uploads within limits: size, idle time and total time; every refusal is an :class:`ApiError`.

Uploads go to temporary files (the decoder, libsndfile, reads files, and a 100 MB upload should
not sit in memory), which are removed when the request ends. Limits are enforced while reading, so
a client that declares or sends too much, or trickles bytes, is cut off before it costs more than
the limit: a declared ``Content-Length`` above the limit is refused before any byte is read.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from rawguard.audio import AudioError, load_audio
from rawguard.conventions import SAMPLE_RATE

__all__ = ["ApiError", "ClientDisconnect", "Upload", "UploadLimits", "read_uploads", "temporary_uploads", "decode_upload"]


class ApiError(Exception):
    """A request the server refuses: HTTP ``status`` and a ``reason`` for the client.

    ``path`` names the uploaded file at fault, when there is one (the ``path`` key of
    ``rawguard score --json``'s error lines).
    """

    def __init__(self, status: int, reason: str, path: str | None = None):
        super().__init__(reason)
        self.status, self.reason, self.path = status, reason, path

    def to_dict(self) -> dict:
        return {"path": self.path, "error": self.reason}


@dataclass(frozen=True)
class UploadLimits:
    """Limits on one request body.

    Attributes:
        max_bytes: largest body accepted.
        read_timeout: longest wait for the next chunk of the body, seconds.
        upload_timeout: longest time to receive the whole body, seconds.
        max_files: most files in one multipart request.
    """

    max_bytes: int
    read_timeout: float = 30.0
    upload_timeout: float = 300.0
    max_files: int = 16


@dataclass(frozen=True)
class Upload:
    """One received file: where it was saved and the name the client gave it (if any)."""

    path: Path
    name: str | None


async def _limited_body(request: Request, limits: UploadLimits) -> AsyncIterator[bytes]:
    """The request body in chunks; raises :class:`ApiError` 413 past ``max_bytes`` and 408 when the
    client is too slow."""
    deadline = time.monotonic() + limits.upload_timeout
    chunks = request.stream().__aiter__()
    received = 0
    while True:
        wait = min(limits.read_timeout, deadline - time.monotonic())
        try:
            chunk = await asyncio.wait_for(chunks.__anext__(), timeout=max(wait, 0.0))
        except StopAsyncIteration:
            return
        except (asyncio.TimeoutError, TimeoutError):
            if wait < limits.read_timeout:
                reason = f"the whole upload did not arrive within {limits.upload_timeout:g} s"
            else:
                reason = f"the next chunk of the upload did not arrive within {limits.read_timeout:g} s"
            raise ApiError(408, f"request body too slow: {reason}") from None
        received += len(chunk)
        if received > limits.max_bytes:
            raise ApiError(413, f"request body over the limit of {_megabytes(limits.max_bytes)}")
        yield chunk


def _megabytes(n: int) -> str:
    return f"{n / 1e6:,.6g} MB"


def _check_declared_length(request: Request, limits: UploadLimits) -> None:
    declared = request.headers.get("content-length")
    if declared is None:
        return  # chunked transfer: counted while reading
    if not declared.isdigit():
        raise ApiError(400, f"invalid Content-Length header {declared!r}")
    if int(declared) > limits.max_bytes:
        raise ApiError(413, f"request body of {_megabytes(int(declared))} is over the limit of {_megabytes(limits.max_bytes)}")


def _suffix(name: str | None) -> str:
    suffix = Path(name or "").suffix
    return suffix if suffix.isascii() and len(suffix) <= 8 and suffix[1:].isalnum() else ""


async def _save_raw_body(request: Request, limits: UploadLimits, folder: Path, name: str | None) -> list[Upload]:
    path = folder / f"body{_suffix(name)}"
    with path.open("wb") as out:
        async for chunk in _limited_body(request, limits):
            out.write(chunk)
    if path.stat().st_size == 0:
        raise ApiError(400, "empty request body: send the audio as the body or as a multipart field 'file'", name)
    return [Upload(path, name)]


async def _save_multipart(request: Request, limits: UploadLimits, folder: Path) -> list[Upload]:
    parser = MultiPartParser(request.headers, _limited_body(request, limits), max_files=limits.max_files, max_fields=32)
    try:
        form = await parser.parse()
    except MultiPartException as error:
        raise ApiError(400, f"malformed multipart body: {error.message}") from None
    try:
        files = form.getlist("file")
        if not files:
            fields = ", ".join(sorted(set(form.keys()))) or "none"
            raise ApiError(400, f"multipart body has no field 'file' (fields: {fields})")
        uploads = []
        for index, item in enumerate(files):
            if isinstance(item, str):
                raise ApiError(400, "multipart field 'file' must be a file upload, got a text value")
            path = folder / f"part{index}{_suffix(item.filename)}"
            with path.open("wb") as out:
                while chunk := await item.read(1 << 20):
                    out.write(chunk)
            if path.stat().st_size == 0:
                raise ApiError(400, "empty file: no audio", item.filename)
            uploads.append(Upload(path, item.filename))
        return uploads
    finally:
        await form.close()


@contextmanager
def temporary_uploads():
    """A private folder for one request's uploads, removed with everything in it afterwards."""
    with tempfile.TemporaryDirectory(prefix="rawguard-upload-") as folder:
        os.chmod(folder, 0o700)
        yield Path(folder)


async def read_uploads(request: Request, limits: UploadLimits, folder: Path) -> list[Upload]:
    """Save the request's audio into ``folder``: the multipart fields ``file`` (one or more), or the
    raw body (named by the ``name`` query parameter, if given).

    Raises:
        ApiError: 400 malformed/empty, 408 too slow, 413 too large.
        ClientDisconnect: the client went away mid-upload.
    """
    _check_declared_length(request, limits)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        return await _save_multipart(request, limits, folder)
    return await _save_raw_body(request, limits, folder, request.query_params.get("name"))



def decode_upload(upload: Upload, max_duration: float) -> np.ndarray:
    """Decode a saved upload to float32 mono 16 kHz ``[T]`` (:func:`rawguard.audio.load_audio`).

    Runs in a worker thread (decoding and resampling take a while for long files).

    Raises:
        ApiError: 400 unreadable, corrupt, truncated, empty or NaN audio (the decoder's reason);
            413 longer than ``max_duration`` seconds (from the header when it tells, before decoding).
    """
    try:
        declared = sf.info(str(upload.path)).duration
    except Exception:  # noqa: BLE001 - unreadable headers are reported by load_audio below
        declared = 0.0
    if declared > max_duration:
        raise ApiError(413, f"audio of {declared:.1f} s is over the limit of {max_duration:g} s", upload.name)
    try:
        wave = load_audio(upload.path)
    except AudioError as error:  # the decoder names our temporary file: name the client's instead
        reason = error.reason.replace(str(upload.path), upload.name or "the request body")
        raise ApiError(400, reason, upload.name) from None
    if wave.shape[0] > max_duration * SAMPLE_RATE:
        raise ApiError(413, f"audio of {wave.shape[0] / SAMPLE_RATE:.1f} s is over the limit of {max_duration:g} s", upload.name)
    return wave
