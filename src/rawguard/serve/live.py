"""``WS /v1/stream``: live scoring of PCM chunks sent over a WebSocket.

Protocol (client -> server):

- optionally first, a text message with the stream's format, e.g.
  ``{"sample_rate": 8000, "channels": 1, "format": "s16le"}`` (default 16 kHz mono s16le);
- binary messages: raw PCM in any chunking;
- optionally a text message ``{"event": "end"}``: the server scores what is owed (the end-aligned
  last window), sends a summary and closes. Closing the socket instead just ends the stream.

Server -> client: one JSON message per completed window, ``{"start", "end", "score",
"running_score", "probability_bonafide", "decision", "threshold"}`` (running values are over the
windows so far); after ``{"event": "end"}``, ``{"event": "end", ...}`` with the whole stream's
result in the schema of ``rawguard score --json`` (equal to scoring the recording as a file). A refused stream gets ``{"error": reason}``
and a close code: 1003 bad format or data, 1008 silent for too long, 1009 longer than
``max_duration``.
"""

from __future__ import annotations

import asyncio
import json
import logging

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from rawguard.conventions import SAMPLE_RATE
from rawguard.scoring import ScoringError
from rawguard.serve.batching import BatchingScorer
from rawguard.serve.settings import ServeSettings
from rawguard.serve.streaming import PcmDecoder, PcmFormat, RunningDecision, StreamError, StreamWindows

__all__ = ["serve_stream"]

log = logging.getLogger("rawguard.serve")


class _Refused(Exception):
    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


class _LiveSession:
    """State of one stream: decoder, windows and running decision."""

    def __init__(self, websocket: WebSocket, scorer: BatchingScorer, settings: ServeSettings):
        detector = scorer.detector
        if detector.window is None:
            raise _Refused(1003, "this server scores whole recordings (no window): streams need a windowed model")
        self.websocket, self.scorer, self.settings = websocket, scorer, settings
        self.decoder: PcmDecoder | None = None
        self.windows = StreamWindows(detector.window, detector.hop)
        self.running = RunningDecision(detector.threshold, detector.calibration)

    def configure(self, text: str) -> bool:
        """Handle a text message; ``True`` when it asks to end the stream."""
        try:
            message = json.loads(text)
        except json.JSONDecodeError as error:
            raise _Refused(1003, f"text message is not JSON: {error.msg} at character {error.pos}") from None
        if isinstance(message, dict) and message.get("event") == "end":
            return True
        if self.decoder is not None:
            raise _Refused(1003, "the stream format can only be set before the first audio chunk")
        try:
            self.decoder = PcmDecoder(PcmFormat.from_dict(message))
        except (StreamError, TypeError) as error:
            raise _Refused(1003, str(error)) from None
        return False

    async def audio(self, data: bytes, last: bool = False) -> None:
        self.decoder = self.decoder or PcmDecoder()
        try:
            samples = self.decoder.decode(data, last=last)
        except StreamError as error:
            raise _Refused(1003, str(error)) from None
        ready = self.windows.push(samples)
        if self.windows.received > self.settings.max_duration * SAMPLE_RATE:
            raise _Refused(1009, f"stream longer than the limit of {self.settings.max_duration:g} s")
        await self._score(ready)

    async def _score(self, ready) -> None:
        try:
            results = await asyncio.gather(*(self.scorer.score(window) for _, window in ready))
        except ScoringError as error:
            raise _Refused(1003, str(error)) from None
        for (start, window), result in zip(ready, results):
            await self.websocket.send_json(self.running.add(start, window.shape[0], result.score))

    async def finish(self) -> dict:
        if self.decoder is not None:
            await self.audio(b"", last=True)
        await self._score(self.windows.finish())
        if not self.running.count:
            raise _Refused(1003, "the stream ended without audio")
        result = self.scorer.detector.result(self.running.scored(self.windows.received))
        return {"event": "end", **result.to_dict()}


async def _receive(websocket: WebSocket, timeout: float) -> dict:
    try:
        return await asyncio.wait_for(websocket.receive(), timeout)
    except (asyncio.TimeoutError, TimeoutError):
        raise _Refused(1008, f"no message for {timeout:g} s") from None


async def serve_stream(websocket: WebSocket, scorer: BatchingScorer, settings: ServeSettings) -> None:
    """Run one live stream until the client ends it, leaves, or is refused."""
    client = websocket.client or ("-", 0)
    await websocket.accept()
    outcome = "client left"
    live = None
    try:
        live = _LiveSession(websocket, scorer, settings)
        while True:
            message = await _receive(websocket, settings.read_timeout)
            if message["type"] == "websocket.disconnect":
                break
            if message.get("bytes") is not None:
                await live.audio(message["bytes"])
            elif message.get("text") is not None and live.configure(message["text"]):
                await websocket.send_json(await live.finish())
                await websocket.close(code=1000)
                outcome = "ended by the client"
                break
    except _Refused as refusal:
        outcome = f"refused: {refusal.reason}"
        if websocket.application_state == WebSocketState.CONNECTED:
            try:
                await websocket.send_json({"error": refusal.reason})
                await websocket.close(code=refusal.code, reason=refusal.reason[:120])
            except (WebSocketDisconnect, RuntimeError):
                pass
    except WebSocketDisconnect:
        outcome = "client left"
    except Exception as error:  # noqa: BLE001 - one broken stream must not take the server down
        outcome = f"internal error: {type(error).__name__}"
        log.exception("live stream failed")
        if websocket.application_state == WebSocketState.CONNECTED:
            try:
                await websocket.close(code=1011, reason="internal error")
            except (WebSocketDisconnect, RuntimeError):
                pass
    finally:
        seconds = live.windows.received / SAMPLE_RATE if live else 0.0
        log.info("%s:%s WS /v1/stream %.1f s of audio, %d windows, %s", client[0], client[1], seconds,
                 live.running.count if live else 0, outcome)
