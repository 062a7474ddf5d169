"""SIGTERM / SIGINT as a flag the training loop checks once per step, so the step in flight completes
and ``last.pt`` is written before the process exits."""

from __future__ import annotations

import signal
import threading
from typing import Any


class StopSignals:
    """Context manager: while inside, SIGTERM/SIGINT set :attr:`received` (``"SIGTERM"``, ``"SIGINT"``).

    Handlers are installed only in the main thread (Python allows no other); a second Ctrl-C raises
    ``KeyboardInterrupt`` at once.
    """

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: the user really wants out now
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
