"""Decoder processes: read, resample and cut files into windows, into a bounded queue.

``N`` processes (:func:`default_decoders`: cores - 1, at least 1) each take a file path from a task
queue, decode it with :func:`rawguard.audio.load_audio` (libsndfile + soxr, 16 kHz mono float32),
cut it into the scoring windows (:mod:`rawguard.windows`: the one windowing policy) and put them on
a result queue in chunks of at most ``chunk_windows`` windows, so a multi-hour recording never
sits whole in a queue. The queue is bounded in windows, not messages (:class:`_WindowBudget`): at
most ``queue_windows`` windows of audio wait for the model, whether they come as one chunk of a
long recording or as the single windows of many short clips (a bound of a few messages would let
decoders of short clips work only while the model collects a batch, not while it runs one).

Messages on the result queue (tuples: cheap to pickle):

- ``("windows", task, length, first, starts, windows float32 [w, window])``: windows
  ``first .. first + w - 1`` of a file of ``length`` samples; ``starts`` (int64 ``[W]``, every
  window start of the file) comes with the first chunk only, ``None`` after; with ``window=None``
  (whole recordings) one message per file with ``windows`` ``[1, length]``;
- ``("error", task, reason)``: the file could not be decoded (the reason names what is wrong),
  or its decoder process died decoding it (the pool starts another in its place);
- ``("exit", worker)``: a decoder has seen the end of the task queue.

The decoders import no torch: they start in a fresh interpreter (``spawn``) in well under a second.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
from collections.abc import Iterator

import numpy as np

from rawguard.conventions import DEFAULT_WINDOW
from rawguard.parallel import one_thread_per_child

__all__ = ["DecodePool", "DecoderCrashed", "default_decoders", "CHUNK_WINDOWS"]

CHUNK_WINDOWS = 64
MAX_RESTARTS = 100
"""Decoders restarted after dying on a file, per pool, before the run gives up (a broken system
library would otherwise crash on every file)."""
"""Windows per message: 64 windows of 4 s are 16 MB of float32, one model batch by default."""


class DecoderCrashed(RuntimeError):
    """A decoder process died without reporting (killed, or crashed inside a native decoder)."""


def default_decoders() -> int:
    """Decoder processes by default: the usable cores minus one for the model, at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores - 1)


def _decode_task(path: str, window: int | None, hop: int | None, chunk_windows: int) -> Iterator[tuple]:
    """The result messages of one file (see the module docstring), without the task id."""
    from rawguard.audio import AudioError, load_audio
    from rawguard.windows import fill_window, window_starts

    try:
        wave = load_audio(path)
    except AudioError as error:
        yield ("error", error.reason)
        return
    except (OSError, MemoryError, ValueError) as error:  # e.g. permission denied mid-read, a huge file
        yield ("error", f"{type(error).__name__}: {error}")
        return
    length = int(wave.shape[0])
    if window is None:
        yield ("windows", length, 0, np.zeros(1, dtype=np.int64), wave[None])
        return
    starts = window_starts(length, window, hop)
    for first in range(0, starts.shape[0], chunk_windows):
        block = starts[first:first + chunk_windows]
        windows = np.empty((block.shape[0], window), dtype=np.float32)
        for row, start in zip(windows, block.tolist()):
            fill_window(row, wave, start)
        yield ("windows", length, first, starts if first == 0 else None, windows)


def _exit_with_parent(parent: int) -> None:
    """Die with the scoring process: after a SIGKILL it cannot tell its decoders to stop, and a
    decoder blocked on a full queue would otherwise live on (Linux: ``PR_SET_PDEATHSIG``)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: nothing stops an orphaned decoder but the queue
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


class _WindowBudget:
    """A counting bound on the windows in the result queue, shared by the decoders and the reader.

    A decoder takes ``n`` units before putting a message of ``n`` windows, the reader gives them
    back when it takes the message. Decoders take their units one at a time under a lock, so two
    decoders can never each hold part of what they need while the queue is empty (deadlock).
    """

    def __init__(self, context, capacity: int) -> None:
        self.capacity = capacity
        self._units = context.Semaphore(capacity)
        self._lock = context.Lock()

    def take(self, units: int) -> None:
        with self._lock:
            for _ in range(min(units, self.capacity)):
                self._units.acquire()

    def give(self, units: int) -> None:
        for _ in range(min(units, self.capacity)):
            self._units.release()


def _units(message: tuple, window: int | None) -> int:
    """Budget units of a result message: its windows (whole recordings: window-lengths of audio)."""
    if message[0] != "windows":
        return 0
    samples = message[-1].size
    return max(1, -(-samples // (window or DEFAULT_WINDOW)))


def _decoder_main(worker: int, parent: int, tasks, results, budget: _WindowBudget, current, window, hop,
                  chunk_windows: int) -> None:
    # One thread per decoder (OMP_NUM_THREADS=1 in the environment): the pool is the parallelism.
    _exit_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent stops us
    while True:
        task = tasks.get()
        if task is None:
            results.put(("exit", worker))
            return
        index, path = task
        # From here to the first message is the native decoding (libsndfile, soxr): if the process
        # dies there, the pool knows which file killed it and nothing of the file was sent.
        current[worker] = index
        for message in _decode_task(path, window, hop, chunk_windows):
            current[worker] = -1
            budget.take(_units(message, window))
            results.put((message[0], index, *message[1:]))


class DecodePool:
    """``workers`` decoder processes between a task queue and a bounded result queue.

    Args:
        workers: decoder processes (``>= 1``).
        window, hop: scoring window and hop in samples (``window=None``: whole recordings).
        queue_windows: windows that may wait for the model (default: ``4 * chunk_windows``, at
            least ``chunk_windows``).
        chunk_windows: windows per message.

    Use as a context manager; :meth:`submit` tasks (from a feeder thread: it blocks when the task
    queue is full), :meth:`finish` once, and read :meth:`messages` until it ends.
    """

    def __init__(self, workers: int, window: int | None, hop: int | None, queue_windows: int | None = None,
                 chunk_windows: int = CHUNK_WINDOWS) -> None:
        if workers < 1:
            raise ValueError(f"workers: expected at least 1 decoder process, got {workers}")
        self._context = mp.get_context("spawn")
        self.workers = workers
        self.restarts = 0
        self._tasks = self._context.Queue(maxsize=2 * workers)
        self._results = self._context.Queue()  # bounded by the window budget
        self._window = window
        self._budget = _WindowBudget(self._context, max(queue_windows or 4 * chunk_windows, chunk_windows))
        self._current = self._context.Array("q", [-1] * workers, lock=False)  # task each decoder is decoding
        self._args = (os.getpid(), self._tasks, self._results, self._budget, self._current, window, hop, chunk_windows)
        self._processes: list = [None] * workers
        for worker in range(workers):
            self._start(worker)

    def _start(self, worker: int) -> None:
        with one_thread_per_child():  # inherited by the spawned interpreter only
            process = self._context.Process(target=_decoder_main, args=(worker, *self._args),
                                            name=f"rawguard-decoder-{worker}", daemon=True)
            process.start()
        self._processes[worker] = process

    def submit(self, index: int, path: str) -> None:
        """Queue file ``path`` as task ``index`` (blocks while ``2 * workers`` tasks wait)."""
        self._tasks.put((index, path))

    def finish(self) -> None:
        """No more tasks: each decoder exits after the queued ones."""
        for _ in self._processes:
            self._tasks.put(None)

    def messages(self, poll_s: float = 1.0) -> Iterator[tuple]:
        """Result messages until every decoder has exited (after :meth:`finish`).

        Raises:
            DecoderCrashed: a decoder process died without its exit message.
        """
        running = set(range(self.workers))
        while running:
            try:
                message = self._results.get(timeout=poll_s)
                self._budget.give(_units(message, self._window))
            except queue.Empty:
                yield from self._replace_crashed(running)
                continue
            if message[0] == "exit":
                running.discard(message[1])
                continue
            yield message

    def _replace_crashed(self, running: set[int]) -> Iterator[tuple]:
        """Restart each decoder that died while decoding a file, and report that file as failed.

        A decoder that dies elsewhere (e.g. after sending part of a file's windows) cannot be
        repaired here: :class:`DecoderCrashed`, and the rerun resumes after the last finished file.
        """
        for worker in sorted(running):
            code = self._processes[worker].exitcode
            if code is None or code == 0:
                continue
            task = self._current[worker]
            if task < 0 or self.restarts >= MAX_RESTARTS:
                raise DecoderCrashed(f"decoder process {worker} died with exit code {code}"
                                     + (f" ({self.restarts} restarts already)" if task >= 0 else ""))
            self._current[worker] = -1
            self.restarts += 1
            self._start(worker)
            yield ("error", task, f"decoder process crashed while decoding this file (exit code {code})")

    def close(self) -> None:
        for process in self._processes:
            if process is not None and process.is_alive():
                process.terminate()
        for process in self._processes:
            if process is not None:
                process.join(timeout=5)
        for q in (self._tasks, self._results):
            q.cancel_join_thread()  # do not block exit on data no one will read
            q.close()

    def __enter__(self) -> DecodePool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
