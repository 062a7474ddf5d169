"""Score an archive of audio files: resumable, decode-parallel, sharded across torchrun ranks.

- :mod:`~rawguard.archive.files`: stream the file list, resume keys, shard by path hash;
- :mod:`~rawguard.archive.journal`: append-only JSON Lines that survive SIGKILL;
- :mod:`~rawguard.archive.decode`: decoder processes feeding a bounded queue of windows;
- :mod:`~rawguard.archive.packing`: full model batches across files;
- :mod:`~rawguard.archive.pipeline`: the loop (:func:`score_archive`);
- :mod:`~rawguard.archive.merge` and :mod:`~rawguard.archive.run`: ranks, parts and the merge.

Used by ``rawguard score PATH... --out results.jsonl`` (see ``docs/evaluation.md``).
"""

import importlib

# Lazy, like the rawguard package itself: decoder processes import rawguard.archive.decode, and
# importing torch there (through the pipeline's scorer) would cost each of them seconds at start.
_HOMES = {
    "DecoderCrashed": "decode", "default_decoders": "decode", "Journal": "journal", "JournalError": "journal",
    "merge_parts": "merge", "ArchiveSummary": "pipeline", "score_archive": "pipeline", "ArchiveRun": "run",
    "run_archive": "run",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f"rawguard.archive.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'rawguard.archive' has no attribute {name!r}")
