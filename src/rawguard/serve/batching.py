"""Micro-batching: waveforms from concurrent requests scored together by one model.

A web server receives one recording per request, but the model is several times faster per window
on full batches than one clip at a time (measured in ``benchmarks/bench_serve.py``). The
:class:`BatchingScorer` holds the one model of the process and a single worker thread: requests put
their waveform on a queue and await a future; the worker takes whatever is queued, waits at most
``max_wait_s`` for more (up to ``max_windows`` windows) while other requests are on their way
(being read or decoded: :meth:`BatchingScorer.incoming`; a lone request is never held back), and scores them all with one call of the
detector's :class:`~rawguard.scoring.WindowScorer`, whose windows share forward passes. Live streams
put their completed windows on the same queue, so they share batches with uploads.

Inference runs on that thread, never on the event loop, so the server keeps accepting and reading
uploads while the model works; one thread also means torch's intra-op threads are not split
between competing forward passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from rawguard.detector import Detector
from rawguard.scoring import ScoredWave, ScoringError
from rawguard.windows import window_starts

__all__ = ["BatchingScorer", "ScorerClosed"]

log = logging.getLogger("rawguard.serve")


class ScorerClosed(RuntimeError):
    """The scorer was shut down before the request was scored."""


@dataclass
class _Job:
    wave: np.ndarray  # float32 [T] at 16 kHz, already validated
    windows: int  # analysis windows it needs (the batching budget)
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


class BatchingScorer:
    """Score waveforms from many coroutines in shared batches on one worker thread.

    Args:
        detector: the process's one model (its ``batch_size`` is windows per forward pass).
        max_wait_s: how long the worker waits for more requests once it has one (latency added
            to a lone request at most).
        max_windows: stop gathering once this many windows are queued for one call.
        batched: ``False`` scores one request per call (for the benchmark's baseline).
    """

    def __init__(self, detector: Detector, max_wait_s: float = 0.005, max_windows: int = 256, batched: bool = True):
        if max_wait_s < 0 or max_windows <= 0:
            raise ValueError(f"max_wait_s must be >= 0 and max_windows > 0, got {max_wait_s}, {max_windows}")
        self.detector = detector
        self._scorer = detector.scorer()
        self.max_wait_s = max_wait_s
        self.max_windows = max_windows if batched else 1
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        self._incoming = 0  # requests being read or decoded, that will be queued soon
        self._incoming_lock = threading.Lock()
        self.calls = 0  # model calls so far (a batch of requests is one call)
        self.requests = 0
        self._thread = threading.Thread(target=self._run, name="rawguard-scorer", daemon=True)
        self._thread.start()

    def _windows(self, length: int) -> int:
        if self.detector.window is None:
            return 1
        return int(window_starts(length, self.detector.window, self.detector.hop).shape[0])

    @contextlib.contextmanager
    def incoming(self) -> Iterator[None]:
        """Mark a request that will be scored soon (while its upload is read and decoded): the
        worker waits up to ``max_wait_s`` for such requests to join a batch, and for no others."""
        with self._incoming_lock:
            self._incoming += 1
        try:
            yield
        finally:
            with self._incoming_lock:
                self._incoming -= 1

    async def score(self, wave: np.ndarray) -> ScoredWave:
        """Window scores of one float32 ``[T]`` 16 kHz waveform; resolves when its batch is done
        (:meth:`Detector.result` turns it into the API's result).

        Raises:
            ScoringError: the waveform cannot be scored.
            ScorerClosed: the scorer was closed.
        """
        if self._closed:
            raise ScorerClosed("the scorer is shut down")
        loop = asyncio.get_running_loop()
        job = _Job(wave, self._windows(wave.shape[0]), loop.create_future(), loop)
        self._queue.put(job)
        return await job.future

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker after the jobs already queued."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout)

    # -- worker thread ---------------------------------------------------------------------------

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        """``first`` plus whatever is queued, and what arrives within ``max_wait_s`` while requests
        are incoming; ``(jobs, stop)``."""
        jobs, windows = [first], first.windows
        deadline = time.monotonic() + self.max_wait_s
        while windows < self.max_windows:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                wait = deadline - time.monotonic()
                if self._incoming == 0 or wait <= 0:
                    break
                try:  # short naps: a request that finishes decoding does not signal the queue
                    job = self._queue.get(timeout=min(wait, 0.001))
                except queue.Empty:
                    continue
            if job is None:
                return jobs, True
            jobs.append(job)
            windows += job.windows
        return jobs, False

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            jobs, stop = self._gather(first)
            self._score(jobs)
        while True:  # fail whatever is still queued after close()
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                _resolve(job, ScorerClosed("the scorer is shut down"))

    def _score(self, jobs: list[_Job]) -> None:
        self.calls += 1
        self.requests += len(jobs)
        try:
            results = self._scorer.score_waves([job.wave for job in jobs])
        except Exception as error:  # noqa: BLE001 - one bad request must not fail its batch-mates
            if len(jobs) > 1:
                for job in jobs:  # find the culprit: score each request alone
                    self._score([job])
                return
            if not isinstance(error, ScoringError):
                log.exception("scoring failed")
            _resolve(jobs[0], error)
            return
        for job, result in zip(jobs, results):
            _resolve(job, result)


def _resolve(job: _Job, outcome: ScoredWave | BaseException) -> None:
    def settle() -> None:
        if job.future.done():  # the request was cancelled (client gone) while it waited
            return
        if isinstance(outcome, BaseException):
            job.future.set_exception(outcome)
        else:
            job.future.set_result(outcome)

    try:
        job.loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the event loop is closed (server shutting down)
        pass
