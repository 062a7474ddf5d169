"""Run the app under uvicorn: localhost by default, one model per process, bounded slow clients."""

from __future__ import annotations

import dataclasses
import logging
import os

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from rawguard.serve.settings import SETTINGS_ENV, ServeSettings

__all__ = ["run_server", "HeaderTimeoutH11Protocol", "LOG_FORMAT"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class HeaderTimeoutH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for a request's headers.

    uvicorn bounds the idle time between requests (keep-alive) but not a client that opens a
    connection and trickles its headers ("slowloris"): such connections would pile up forever.
    Here a connection that has not delivered a complete set of headers ``header_timeout`` seconds
    after it opened (or after its previous response) is closed.
    """

    header_timeout = 10.0

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_deadline()

    def connection_lost(self, exc) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout, self._header_deadline_passed)

    def _disarm_header_deadline(self) -> None:
        deadline = getattr(self, "_header_deadline", None)
        if deadline is not None:
            deadline.cancel()
            self._header_deadline = None

    def _header_deadline_passed(self) -> None:
        # Still waiting for (the rest of) a request line and headers: the client is too slow.
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.logger.info("closing a connection that sent no complete request headers in %g s", self.header_timeout)
            self.transport.close()


def _uvicorn_options(settings: ServeSettings) -> dict:
    # A class attribute, not a subclass made here: worker processes import the protocol by name.
    HeaderTimeoutH11Protocol.header_timeout = settings.header_timeout
    return {
        "http": HeaderTimeoutH11Protocol,
        "ws": "websockets-sansio",
        "ws_max_size": 1 << 20,  # one PCM chunk; a stream is many messages
        "access_log": False,  # rawguard.serve logs one richer line per request
        "timeout_keep_alive": 5,
        "limit_concurrency": 512,
        "log_config": None,
    }


def uvicorn_config(app, settings: ServeSettings, host: str, port: int) -> uvicorn.Config:
    """uvicorn settings of one server process (``rawguard serve`` and the tests' in-process servers)."""
    return uvicorn.Config(app, host=host, port=port, **_uvicorn_options(settings))


def run_server(settings: ServeSettings, host: str = "127.0.0.1", port: int = 8080, workers: int = 1) -> None:
    """Serve until interrupted. With ``workers > 1`` each uvicorn worker process loads its own model
    (torch threads split between them); with one, the model is loaded here before the port opens,
    so a bad checkpoint fails at once."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    if settings.threads is None:
        settings = dataclasses.replace(settings, threads=max(1, (os.cpu_count() or 1) // workers))
    if workers == 1:
        from rawguard.serve.app import create_app

        uvicorn.Server(uvicorn_config(create_app(settings), settings, host, port)).run()
        return
    from rawguard.serve.app import load_detector

    load_detector(settings)  # fail here, once, on a bad checkpoint
    os.environ[SETTINGS_ENV] = settings.to_env()
    uvicorn.run("rawguard.serve.app:create_app_from_env", factory=True, host=host, port=port, workers=workers,
                **_uvicorn_options(settings))
