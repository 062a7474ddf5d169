"""Score an archive of audio files: resumable, decode-parallel, sharded across torchrun ranks.

- :mod:`~rawguard.archive.files`: stream the file list, resume keys, shard by path hash;
- :mod:`~rawguard.archive.journal`: append-only JSON Lines that survive SIGKILL;
- :mod:`~rawguard.archive.decode`: decoder processes feeding a bounded queue of windows;
- :mod:`~rawguard.archive.packing`: full model batches across files;
- :mod:`~rawguard.archive.pipeline`: the loop (:func:`score_archive`);
- :mod:`~rawguard.archive.merge` and :mod:`~rawguard.archive.run`: ranks, parts and the merge.

Used by ``rawguard score PATH... --out results.jsonl`` (see ``docs/evaluation.md``).
"""

from rawguard.archive.decode import DecoderCrashed, default_decoders
from rawguard.archive.journal import Journal, JournalError
from rawguard.archive.merge import merge_parts
from rawguard.archive.pipeline import ArchiveSummary, score_archive
from rawguard.archive.run import ArchiveRun, run_archive

__all__ = ["ArchiveRun", "ArchiveSummary", "DecoderCrashed", "Journal", "JournalError", "default_decoders",
           "merge_parts", "run_archive", "score_archive"]
