"""Decode-once cache, the reader: every clip of a protocol as int16 in one memory-mapped file plus an index.

Layout of a cache folder (``CACHE/``), written by :func:`rawguard.data.prepare.prepare_cache`::

    samples.int16   all accepted clips concatenated, raw little-endian int16 (``x * INT16_SCALE``)
    index.tsv       header + one row per clip: utt_id offset length label speaker system path extra(JSON)
    rejected.tsv    one line per unusable file, no header: utt_id <TAB> path <TAB> reason (empty if none)
    meta.json       format, version, sample rate, counts, hours per class/system, fingerprint
    COMPLETE        written last, after everything above is fsync'ed; Cache.open needs it

This module defines the layout and reads it (:class:`Cache`); it imports no decoder, so a process
that only reads caches (training, evaluation) stays light.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from rawguard.conventions import SAMPLE_RATE, parse_label

CACHE_FORMAT = "rawguard-cache"
CACHE_VERSION = 1

SAMPLES_FILE = "samples.int16"
INDEX_FILE = "index.tsv"
REJECTED_FILE = "rejected.tsv"
META_FILE = "meta.json"
COMPLETE_FILE = "COMPLETE"

INDEX_COLUMNS = ("utt_id", "offset", "length", "label", "speaker", "system", "path", "extra")
REJECTED_COLUMNS = ("utt_id", "path", "reason")  # the fields of each rejected.tsv line, in order


class CacheError(RuntimeError):
    """A cache folder is incomplete, inconsistent, belongs to other data, or nothing was usable."""


class Cache:
    """A finished cache: index arrays in memory, samples memory-mapped on first use per process.

    Attributes:
        ids, speakers, systems, paths: ``list[str]``, one per clip.
        labels, offsets, lengths: ``np.ndarray[int64] (N,)``; offsets/lengths in samples.
        meta: contents of ``meta.json``.
    """

    def __init__(self, directory: Path, rows: list[list[str]], meta: dict):
        self.directory = directory
        self.meta = meta
        self.sample_rate = int(meta.get("sample_rate", SAMPLE_RATE))
        columns = list(zip(*rows)) if rows else [()] * len(INDEX_COLUMNS)
        self.ids: list[str] = list(columns[0])
        self.offsets = np.array(columns[1], dtype=np.int64)
        self.lengths = np.array(columns[2], dtype=np.int64)
        self.labels = np.array([parse_label(v) for v in columns[3]], dtype=np.int64)
        self.speakers: list[str] = list(columns[4])
        self.systems: list[str] = list(columns[5])
        self.paths: list[str] = list(columns[6])
        self._extra_json: list[str] = list(columns[7])
        self._samples: np.ndarray | None = None
        self._pid: int | None = None

    @classmethod
    def open(cls, directory: str | os.PathLike) -> Cache:
        """Open a complete cache folder.

        Raises:
            CacheError: naming the folder/file, when it is missing, unfinished (no ``COMPLETE``),
                of another format version, or its index is malformed or does not fit the samples.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise CacheError(f"{directory}: cache folder not found")
        if not (directory / COMPLETE_FILE).exists():
            raise CacheError(f"{directory}: not a complete cache (no {COMPLETE_FILE} marker); "
                             "run `rawguard prepare` again to finish it")
        try:
            meta = json.loads((directory / META_FILE).read_text())
            lines = (directory / INDEX_FILE).read_text(encoding="utf-8").splitlines()
        except (OSError, ValueError) as error:
            raise CacheError(f"{directory}: cannot read cache metadata: {error}") from None
        if meta.get("format") != CACHE_FORMAT or meta.get("version") != CACHE_VERSION:
            raise CacheError(f"{directory / META_FILE}: not a {CACHE_FORMAT} v{CACHE_VERSION} cache")
        index_path = directory / INDEX_FILE
        if not lines or tuple(lines[0].split("\t")) != INDEX_COLUMNS:
            raise CacheError(f"{index_path}:1: expected header {' '.join(INDEX_COLUMNS)}")
        rows = [line.split("\t") for line in lines[1:]]
        for number, row in enumerate(rows, 2):
            if len(row) != len(INDEX_COLUMNS) or not (row[1].isdigit() and row[2].isdigit()):
                raise CacheError(f"{index_path}:{number}: malformed row {row!r}")
        try:
            cache = cls(directory, rows, meta)
        except ValueError as error:  # unknown label spelling
            raise CacheError(f"{index_path}: {error}") from None
        size = (directory / SAMPLES_FILE).stat().st_size if (directory / SAMPLES_FILE).exists() else -1
        end = int((cache.offsets + cache.lengths).max()) if len(cache) else 0
        if size < 2 * end:
            raise CacheError(f"{directory / SAMPLES_FILE}: holds {max(size, 0) // 2} samples, index needs {end}")
        return cache

    def __len__(self) -> int:
        return len(self.ids)

    def __getstate__(self) -> dict:
        # Pickled into DataLoader workers / DDP ranks: each process maps the file itself.
        state = self.__dict__.copy()
        state["_samples"], state["_pid"] = None, None
        return state

    @property
    def samples(self) -> np.ndarray:
        """All samples, int16 ``(total,)``: a read-only view of the file, mapped on first use in each process."""
        if self._samples is None or self._pid != os.getpid():
            path = self.directory / SAMPLES_FILE
            if path.stat().st_size == 0:
                self._samples = np.zeros(0, dtype="<i2")
            else:
                # A plain ndarray view of the map (which its base keeps open): slicing an np.memmap
                # runs Python-level __getitem__ / __array_finalize__ per clip; without them batch
                # assembly takes 1.15x (4 s windows) to 1.30x (1 s windows) less CPU (BENCHMARKS.md, "Data").
                self._samples = np.memmap(path, dtype="<i2", mode="r").view(np.ndarray)
            self._pid = os.getpid()
        return self._samples

    def waveform(self, i: int) -> np.ndarray:
        """Clip ``i`` as an int16 view ``(lengths[i],)`` (no copy; ``/ INT16_SCALE`` for float)."""
        offset = self.offsets[i]
        return self.samples[offset:offset + self.lengths[i]]

    @property
    def extras(self) -> list[dict]:
        """Extra protocol fields per clip (codec, vocoder, ...), parsed on first use."""
        if not hasattr(self, "_extras"):
            self._extras = [json.loads(text) for text in self._extra_json]
        return self._extras

    @property
    def seconds(self) -> float:
        """Total audio duration in seconds."""
        return float(self.lengths.sum()) / self.sample_rate
