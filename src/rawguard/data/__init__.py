"""Data pipeline: protocol readers -> decode-once cache -> training batches.

``protocols``, ``cache`` (the reader) and ``prepare`` (the writer) need no torch; ``dataset``
(batches as torch tensors) is imported on first use of its names so that ``prepare`` workers stay light.
"""

from __future__ import annotations

from rawguard.data.cache import Cache, CacheError
from rawguard.data.prepare import PrepareSummary, prepare_cache
from rawguard.data.protocols import FORMATS, Item, ProtocolError, read_protocol

_DATASET_NAMES = ("TrainBatches", "to_float")

__all__ = ["Cache", "CacheError", "FORMATS", "Item", "PrepareSummary", "ProtocolError", "prepare_cache",
           "read_protocol", *_DATASET_NAMES]


def __getattr__(name: str):
    if name in _DATASET_NAMES:
        from rawguard.data import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module 'rawguard.data' has no attribute {name!r}")
