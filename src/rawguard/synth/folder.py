"""Copy-synthesis of a whole folder of bona fide recordings (``rawguard synth-spoof``).

Every audio file under ``in_dir`` (any format :func:`rawguard.audio.load_audio` reads, resampled to
16 kHz mono) is resynthesised with one method of :data:`rawguard.synth.vocoders.METHODS` and written
as 16-bit FLAC under ``out_dir`` with the same relative path. Training a detector on such copies
of one's own bona fide data (paired with the originals) is a known way to make it listen to vocoder
artefacts rather than to speaker, content or channel differences.

A file that cannot be read or resynthesised is reported and skipped; the others are still written.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from rawguard.conventions import SAMPLE_RATE
from rawguard.synth.vocoders import METHODS, SynthError, resynthesize

MANIFEST = "synth_spoof.tsv"


class SynthFolderError(ValueError):
    """The input folder, output folder or method cannot be used at all (nothing was written)."""


@dataclass
class SpoofSummary:
    """Outcome of :func:`synth_spoof_folder`."""

    out_dir: Path
    method: str
    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    """(source file, reason) of every file that was skipped."""


def _spoof_one(task: tuple[str, str, str, int]) -> tuple[str, str | None]:
    """Worker: load, resynthesise, write. Returns (source, error message or None)."""
    from rawguard.audio import AudioError, load_audio

    source, target, method, seed = task
    try:
        wave = load_audio(source)
        copy = resynthesize(wave, method, np.random.default_rng(seed))
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        sf.write(target, copy, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
    except (AudioError, SynthError, OSError, sf.LibsndfileError) as error:
        return source, str(error) if isinstance(error, AudioError) else f"{source}: {error}"
    except Exception as error:  # noqa: BLE001 - one odd file must not abort a folder of thousands
        return source, f"{source}: unexpected {type(error).__name__}: {error}"
    return source, None


def synth_spoof_folder(
    in_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    method: str,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
) -> SpoofSummary:
    """Resynthesise every audio file under ``in_dir`` into ``out_dir`` (same layout, ``.flac``).

    Args:
        in_dir: folder searched recursively for audio files (:data:`rawguard.audio.AUDIO_EXTENSIONS`);
            files already under ``out_dir`` are ignored.
        out_dir: destination; also receives ``synth_spoof.tsv`` (source, output, method, seed).
        method: a key of :data:`rawguard.synth.vocoders.METHODS`.
        seed: copies are a deterministic function of (seed, file position in sorted order).
        workers: processes (default: CPU count, at most 4); 1 runs in-process.
        progress: tqdm bar (files/s, ETA).

    Returns:
        A :class:`SpoofSummary`; per-file failures are listed there, not raised.

    Raises:
        SynthFolderError: unknown method, missing ``in_dir``, or no audio files in it.
    """
    from rawguard.detector import find_audio_files  # the one definition of "audio files in a folder"

    if method not in METHODS:
        raise SynthFolderError(f"unknown resynthesis method {method!r} (choose from: {', '.join(METHODS)})")
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if not in_dir.is_dir():
        raise SynthFolderError(f"{in_dir}: input folder not found")
    out_abs = out_dir.resolve()
    sources = [p for p in find_audio_files([in_dir]) if out_abs not in p.resolve().parents]
    if not sources:
        raise SynthFolderError(f"{in_dir}: no audio files found")
    tasks = []
    for index, source in enumerate(sources):
        target = (out_dir / source.relative_to(in_dir)).with_suffix(".flac")
        tasks.append((str(source), str(target), method, int(np.random.SeedSequence([seed, index]).generate_state(1)[0])))
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = SpoofSummary(out_dir=out_dir, method=method)
    workers = workers or min(4, os.cpu_count() or 1)
    bar = tqdm(total=len(tasks), desc=f"synth-spoof {method}", unit="file", disable=not progress)
    ok_rows = []
    with contextlib.ExitStack() as stack:
        stack.callback(bar.close)
        if workers <= 1 or len(tasks) == 1:
            results = map(_spoof_one, tasks)
        else:
            spawn = multiprocessing.get_context("spawn")  # safe even if the caller runs threads
            pool = stack.enter_context(ProcessPoolExecutor(max_workers=workers, mp_context=spawn))
            results = pool.map(_spoof_one, tasks, chunksize=4)
        for task, (source, error) in zip(tasks, results):
            bar.update()
            if error is None:
                summary.written.append(Path(task[1]))
                ok_rows.append(f"{task[0]}\t{task[1]}\t{method}\t{task[3]}")
            else:
                summary.failed.append((Path(source), error))
                bar.write(f"synth-spoof: skipped {error}")
    (out_dir / MANIFEST).write_text("source\toutput\tmethod\tseed\n" + "".join(r + "\n" for r in ok_rows))
    return summary
