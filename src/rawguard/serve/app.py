"""The HTTP application: a page, a health check, file scoring and live streams.

``create_app(settings)`` builds a FastAPI app around one :class:`~rawguard.detector.Detector` and
its :class:`~rawguard.serve.batching.BatchingScorer`:

- ``GET /``: the single-page client (``static/index.html``, no build step);
- ``GET /healthz``: ``{"status", "model", "checkpoint_sha256", "threshold", ...}``;
- ``POST /v1/score``: multipart field(s) ``file`` or the audio as the raw body -> the
  ``DetectionResult.to_dict()`` schema of ``rawguard score --json`` (a list for several files);
- ``WS /v1/stream``: PCM chunks in, one JSON message per completed window out (:mod:`.live`).

Every refusal is JSON ``{"path", "error"}`` (the error line of ``rawguard score --json``) with a
status that says what was wrong: 400 bad audio or request, 401 token, 404, 408 too slow, 413 too
large or too long. One log line per request (``rawguard.serve`` logger).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from contextlib import asynccontextmanager
from importlib import resources

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from rawguard.conventions import SAMPLE_RATE
from rawguard.detector import Detector
from rawguard.scoring import ScoringError
from rawguard.serve.batching import BatchingScorer
from rawguard.serve.settings import ServeSettings, file_sha256
from rawguard.serve.uploads import (
    ApiError,
    ClientDisconnect,
    UploadLimits,
    decode_upload,
    read_uploads,
    temporary_uploads,
)

__all__ = ["create_app", "create_app_from_env", "load_detector"]

log = logging.getLogger("rawguard.serve")


def load_detector(settings: ServeSettings) -> Detector:
    """The checkpoint's detector (an ensemble for several), with torch's threads set for serving."""
    import torch

    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    return Detector.from_checkpoints(settings.checkpoints, device=settings.device)


def _digests(digests: list[str]) -> str | list[str]:
    return digests[0] if len(digests) == 1 else digests


def _token_ok(settings: ServeSettings, given: str | None) -> bool:
    if settings.token is None:
        return True
    return given is not None and hmac.compare_digest(given.encode(), settings.token.encode())


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, else ``None``."""
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


class RequestLog:
    """ASGI middleware: one log line per HTTP request (client, method, path, status, time, note)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), [None]

        async def send_and_note_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            client = scope.get("client") or ("-", 0)
            note = scope.get("state", {}).get("log_note")
            log.info("%s:%s %s %s %s %.1f ms%s", client[0], client[1], scope["method"], scope["path"], status[0] or "-",
                     1000 * (time.perf_counter() - started), f" ({note})" if note else "")


def _error_response(error: ApiError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return JSONResponse(error.to_dict(), status_code=error.status, headers=headers)


def create_app(settings: ServeSettings, detector: Detector | None = None) -> FastAPI:
    """The server application for ``settings`` (``detector``: an already loaded model, e.g. in tests)."""
    detector = detector or load_detector(settings)
    health = {
        "status": "ok",
        "model": detector.model_name,
        # one checkpoint: its digest; an ensemble: one digest per member, in order
        "checkpoint_sha256": _digests([file_sha256(path) for path in settings.checkpoints]),
        "threshold": detector.threshold,
        "calibrated": detector.calibrated,
        "window_s": None if detector.window is None else detector.window / SAMPLE_RATE,
        "hop_s": None if detector.hop is None else detector.hop / SAMPLE_RATE,
        "token_required": settings.token is not None,
        "max_upload_mb": settings.max_upload_mb,
        "max_duration": settings.max_duration,
    }
    limits = UploadLimits(settings.max_upload_bytes, settings.read_timeout, settings.upload_timeout, settings.max_files)
    # Decoding runs in threads, as many as there are CPUs: more would only contend with the model for
    # the same cores, and every extra thread keeps its own malloc arena (RSS grows with 40 of them).
    decoders = anyio.CapacityLimiter(max(2, os.cpu_count() or 1))
    page = resources.files("rawguard.serve").joinpath("static/index.html").read_text(encoding="utf-8")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.scorer = BatchingScorer(detector, settings.max_wait_ms / 1000, settings.max_batch_windows, settings.batched)
        try:
            yield
        finally:
            app.state.scorer.close()

    app = FastAPI(title="rawguard", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings, app.state.detector = settings, detector
    app.add_middleware(RequestLog)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        request.state.log_note = error.reason
        return _error_response(error)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"path": None, "error": str(error.detail)}, status_code=error.status_code)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"path": None, "error": f"internal error: {type(error).__name__}"}, status_code=500)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/healthz")
    async def healthz() -> dict:
        return health

    @app.post("/v1/score")
    async def score(request: Request) -> Response:
        if not _token_ok(settings, bearer_token(request.headers.get("authorization"))):
            raise ApiError(401, "missing or wrong token: send 'Authorization: Bearer TOKEN'")
        scorer = request.app.state.scorer
        with temporary_uploads() as folder, scorer.incoming():
            try:
                uploads = await read_uploads(request, limits, folder)
            except ClientDisconnect:
                request.state.log_note = "client disconnected during the upload"
                return Response(status_code=400)
            waves = await asyncio.gather(*(
                anyio.to_thread.run_sync(decode_upload, u, settings.max_duration, limiter=decoders) for u in uploads))
        try:
            scored = await asyncio.gather(*(scorer.score(wave) for wave in waves))
        except ScoringError as error:
            raise ApiError(400, str(error)) from None
        body = [detector.result(s, u.name).to_dict() for s, u in zip(scored, uploads)]
        request.state.log_note = f"{len(body)} file(s), {sum(w.shape[0] for w in waves) / SAMPLE_RATE:.1f} s of audio"
        return JSONResponse(body if len(body) > 1 else body[0])

    @app.websocket("/v1/stream")
    async def stream(websocket: WebSocket) -> None:
        from rawguard.serve.live import serve_stream

        given = websocket.query_params.get("token") or bearer_token(websocket.headers.get("authorization"))
        if not _token_ok(settings, given):
            log.info("WS /v1/stream refused: missing or wrong token")
            await websocket.close(code=1008, reason="missing or wrong token")
            return
        await serve_stream(websocket, websocket.app.state.scorer, settings)

    return app


def create_app_from_env() -> FastAPI:
    """App factory for uvicorn worker processes (``--workers N``): settings from the environment."""
    from rawguard.serve.server import LOG_FORMAT, HeaderTimeoutH11Protocol

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)  # a fresh (spawned) process
    settings = ServeSettings.from_env()
    HeaderTimeoutH11Protocol.header_timeout = settings.header_timeout
    return create_app(settings)
