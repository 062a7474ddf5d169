"""Copy-synthesis of one's own bona fide recordings (``rawguard synth-spoof``).

Sources are either every audio file under a folder (:func:`synth_spoof_folder`) or the bona fide
entries of a protocol (:func:`synth_spoof_protocol`, any format :func:`read_protocol` reads). Each
is resynthesised with one method of :data:`rawguard.copysynth.vocoders.METHODS`, or with a neural vocoder
trained by :func:`rawguard.copysynth.neural.train_vocoder` (method ``neural``), and written as 16 kHz
16-bit FLAC under ``out_dir``: at the same relative path (folder) or at ``<utt_id>.flac``
(protocol). Training a detector on such copies of one's own bona fide data, paired with the
originals, is a known way to make it listen to vocoder artefacts rather than to speaker, content
or channel differences.

``out_dir`` also receives

- ``protocol.csv``: ``id,path,label,speaker,system`` for every copy (label ``spoof``, system
  ``synth-<method>``, paths relative to ``out_dir``), so ``read_protocol(out_dir / "protocol.csv")``
  and ``rawguard prepare`` read it as it is;
- ``synth_spoof.tsv``: source, output, method and seed of every copy;
- ``.synth_spoof.json``: method, seed and a fingerprint of the source list, so that a re-run never
  mixes copies of another method, seed or source list into the folder.

Resuming: each FLAC is written to a hidden temporary name beside its target and renamed into place,
so a file with the final name is always complete. A re-run (after a kill, say) skips the targets
that exist and makes the rest; both lists are rewritten atomically at the end and cover every copy
made so far. A file that cannot be read or resynthesised is reported and skipped; the others are
still written.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import io
import json
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import soundfile as sf

from rawguard.atomic import atomic_open, fsync_directory
from rawguard.conventions import BONAFIDE, COPY_SYSTEM_PREFIX, SAMPLE_RATE
from rawguard.copysynth.vocoders import METHODS, SynthError, resynthesize
from rawguard.parallel import one_thread_per_child
from rawguard.progress import progress_bar

NEURAL = "neural"
"""Method name of copies made by a trained :class:`rawguard.copysynth.neural.NeuralVocoder` (``--vocoder``)."""
ALL_METHODS = (*METHODS, NEURAL)

MANIFEST = "synth_spoof.tsv"
PROTOCOL = "protocol.csv"
STATE_FILE = ".synth_spoof.json"
PARTIAL_SUFFIX = ".partial"
"""Temporary files are ``.<name><PARTIAL_SUFFIX>`` beside their target: hidden, and not audio to any reader."""

PROTOCOL_COLUMNS = ("id", "path", "label", "speaker", "system")


class SynthFolderError(ValueError):
    """The sources, output folder or method cannot be used at all (nothing was written)."""


@dataclass(frozen=True)
class SpoofSource:
    """One bona fide recording to copy.

    Attributes:
        path: the source audio file.
        target: where its copy goes, relative to ``out_dir`` (POSIX, ends in ``.flac``).
        utt_id: the copy's id in ``protocol.csv`` (:func:`copy_id`).
        speaker: the source's speaker (``"-"`` when unknown).
    """

    path: Path
    target: str
    utt_id: str
    speaker: str = "-"


@dataclass
class SpoofSummary:
    """Outcome of :func:`synth_spoof` (and the folder / protocol front ends)."""

    out_dir: Path
    method: str
    written: list[Path] = field(default_factory=list)
    """Copies made by this run."""
    kept: list[Path] = field(default_factory=list)
    """Copies that already existed (an earlier, maybe interrupted, run): not made again."""
    failed: list[tuple[Path, str]] = field(default_factory=list)
    """(source file, reason) of every file that was skipped."""

    @property
    def protocol(self) -> Path:
        return self.out_dir / PROTOCOL


def system_name(method: str) -> str:
    """The spoofing-system name of copies made with ``method``: ``synth-<method>``."""
    return f"{COPY_SYSTEM_PREFIX}{method}"


def resolve_system(method: str, system: str | None) -> str:
    """The system name the copies get: ``system`` when given, else :func:`system_name`.

    A given name must start with ``synth-`` (what marks copies for ``data.sampling.copy_share``) and be one
    token without ``/`` (it prefixes the copies' ids). Two copy sets made with one method (two neural
    vocoders, say) need different names to share a cache.

    Raises:
        SynthFolderError: naming the bad ``system``.
    """
    if system is None:
        return system_name(method)
    if not system.startswith(COPY_SYSTEM_PREFIX) or system == COPY_SYSTEM_PREFIX or "/" in system or system != system.strip() \
            or any(c.isspace() or c == "," for c in system):
        raise SynthFolderError(f"system {system!r}: must start with {COPY_SYSTEM_PREFIX!r} (copies are recognised by it) "
                               "and have no spaces, commas or '/'")
    return system


def copy_id(method: str, source_id: str, system: str | None = None) -> str:
    """Id of the copy of ``source_id``: ``<system>/<source_id>`` (``synth-<method>/...`` by default), never a bona fide id."""
    return f"{resolve_system(method, system)}/{source_id}"


def folder_sources(in_dir: str | os.PathLike, out_dir: str | os.PathLike, method: str,
                   system: str | None = None) -> list[SpoofSource]:
    """Every audio file under ``in_dir`` (sorted; none under ``out_dir``), copied to the same relative path.

    Raises:
        SynthFolderError: missing ``in_dir`` or no audio files in it.
    """
    from rawguard.detector import find_audio_files  # the one definition of "audio files in a folder"

    in_dir = Path(in_dir)
    if not in_dir.is_dir():
        raise SynthFolderError(f"{in_dir}: input folder not found")
    out_abs = Path(out_dir).resolve()
    files = [p for p in find_audio_files([in_dir]) if out_abs not in p.resolve().parents]
    if not files:
        raise SynthFolderError(f"{in_dir}: no audio files found")
    sources = []
    for path in files:
        stem = path.relative_to(in_dir).with_suffix("").as_posix()
        sources.append(SpoofSource(path, f"{stem}.flac", copy_id(method, stem, system)))
    return sources


def protocol_sources(
    protocol: str | os.PathLike,
    method: str,
    audio_dir: str | os.PathLike | None = None,
    format: str = "auto",
    system: str | None = None,
) -> list[SpoofSource]:
    """The bona fide entries of a protocol, sorted by id, each copied to ``<utt_id>.flac``.

    Raises:
        ProtocolError: the protocol cannot be read (names file and line).
        SynthFolderError: it has no bona fide entry, or a copy id equals one of its ids.
    """
    from rawguard.data.protocols import read_protocol

    items = read_protocol(protocol, audio_dir=audio_dir, format=format)
    # Sorted, as folder sources are: a copy's seed then does not depend on the protocol's line order.
    bonafide = sorted((item for item in items if item.label == BONAFIDE), key=lambda item: item.utt_id)
    if not bonafide:
        raise SynthFolderError(f"{protocol}: no bona fide entries to resynthesise ({len(items)} entries, all spoof)")
    ids = {item.utt_id for item in items}
    sources = []
    for item in bonafide:
        target = _target_for_id(item.utt_id, protocol)
        source = SpoofSource(item.path, target, copy_id(method, item.utt_id, system), item.speaker)
        if source.utt_id in ids:  # the copies would shadow a real entry in a cache of both protocols
            raise SynthFolderError(f"{protocol}: copy id {source.utt_id!r} is already an id of the protocol")
        sources.append(source)
    return sources


def _target_for_id(utt_id: str, protocol: str | os.PathLike) -> str:
    """``<utt_id>.flac`` as a path that stays inside the output folder.

    CSV ids can be absolute or climb (``/data/x``, ``../flac/x``): the root is dropped and each
    ``..`` becomes ``__``, so no copy can land on (and overwrite) a source. Two ids that end up
    equal are caught by :func:`synth_spoof`.
    """
    parts = [("__" if part == ".." else part) for part in PurePosixPath(utt_id).parts if part != "/"]
    if not parts:
        raise SynthFolderError(f"{protocol}: utterance id {utt_id!r} cannot name an output file")
    return "/".join(parts) + ".flac"


def _file_seed(seed: int, index: int) -> int:
    """Seed of the copy at ``index`` in the sorted source list: copies are reproducible one by one."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


@functools.lru_cache(maxsize=2)
def _neural_vocoder(path: str):
    """The trained vocoder at ``path``, loaded once per worker process."""
    import torch

    from rawguard.copysynth.neural import NeuralVocoder

    torch.set_num_threads(1)  # one process per core already
    return NeuralVocoder.load(path)


def _spoof_one(task: tuple[str, str, str, int, str | None]) -> tuple[str, str | None]:
    """Worker: load, resynthesise, write atomically. Returns (source, error message or None)."""
    from rawguard.audio import AudioError, load_audio

    source, target, method, seed, vocoder = task
    try:
        wave = load_audio(source)
        engine = _neural_vocoder(vocoder) if method == NEURAL else method
        copy = resynthesize(wave, engine, np.random.default_rng(seed))
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(target, "wb", PARTIAL_SUFFIX, sync_directory=False) as handle:
            sf.write(handle, copy, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
    except (AudioError, SynthError, OSError, sf.LibsndfileError) as error:
        return source, str(error) if isinstance(error, AudioError) else f"{source}: {error}"
    except Exception as error:  # noqa: BLE001 - one odd file must not abort a folder of thousands
        return source, f"{source}: unexpected {type(error).__name__}: {error}"
    return source, None


def _check_method(method: str, vocoder: str | os.PathLike | None = None) -> str | None:
    """Refuse an unknown method or a missing / unusable vocoder; returns the vocoder's sha256 (or None)."""
    if method == NEURAL:
        if vocoder is None:
            raise SynthFolderError("method 'neural' needs a trained vocoder: --vocoder DIR/vocoder.pt "
                                   "(make one with `rawguard train-vocoder`)")
        from rawguard.copysynth.neural import NeuralVocoder, VocoderError

        try:
            NeuralVocoder.load(vocoder)
        except VocoderError as error:
            raise SynthFolderError(str(error)) from None
        return hashlib.sha256(Path(vocoder).read_bytes()).hexdigest()
    if vocoder is not None:
        raise SynthFolderError(f"a vocoder ({vocoder}) goes with method 'neural', not {method!r}")
    if method not in METHODS:
        raise SynthFolderError(f"unknown resynthesis method {method!r} (choose from: {', '.join(ALL_METHODS)})")
    return None


def _check_targets(sources: Sequence[SpoofSource]) -> None:
    first: dict[str, Path] = {}
    for source in sources:
        if source.target in first:
            raise SynthFolderError(f"{first[source.target]} and {source.path} would both be copied to "
                                   f"{source.target}; rename one of them")
        first[source.target] = source.path


def _claim(out_dir: Path, method: str, seed: int, sources: Sequence[SpoofSource], vocoder_sha256: str | None) -> None:
    """Record what ``out_dir`` holds copies of; refuse a folder made with other settings.

    Without this, a re-run with another method would keep the old copies (their targets exist)
    and label them with the new method.
    """
    digest = hashlib.sha256()
    for source in sources:  # targets in order: also fixes each target's seed (its position)
        digest.update(json.dumps([os.path.abspath(source.path), source.target, source.utt_id]).encode() + b"\n")
    state = {"method": method, "seed": seed, "sources": len(sources), "fingerprint": digest.hexdigest()}
    if vocoder_sha256 is not None:
        state["vocoder_sha256"] = vocoder_sha256
    state_path = out_dir / STATE_FILE
    if state_path.is_file():
        try:
            held = json.loads(state_path.read_text())
        except (OSError, ValueError) as error:
            raise SynthFolderError(f"{state_path}: unreadable ({error}); delete {out_dir} to start over") from None
        if held != state:
            if (held.get("method"), held.get("seed")) != (method, seed):
                what = f"{held.get('method')} copies with seed {held.get('seed')}"
            elif held.get("vocoder_sha256") != state.get("vocoder_sha256"):
                what = "copies made with another vocoder checkpoint"
            else:
                what = f"copies of another list of sources ({held.get('sources')} files, now {len(sources)})"
            raise SynthFolderError(f"{out_dir}: holds {what}; use another OUT_DIR, or delete this one to start over")
        return
    with atomic_open(state_path, "wb", PARTIAL_SUFFIX, sync_directory=False) as handle:
        handle.write((json.dumps(state) + "\n").encode())


def _protocol_text(system: str, sources: Sequence[SpoofSource]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")  # quotes ids or paths with commas
    writer.writerow(PROTOCOL_COLUMNS)
    writer.writerows((s.utt_id, s.target, "spoof", s.speaker, system) for s in sources)
    return buffer.getvalue()


def synth_spoof(
    sources: Sequence[SpoofSource],
    out_dir: str | os.PathLike,
    method: str,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    vocoder: str | os.PathLike | None = None,
    system: str | None = None,
) -> SpoofSummary:
    """Resynthesise every source into ``out_dir`` (resumable; see the module docstring).

    Args:
        sources: what to copy and where (:func:`folder_sources`, :func:`protocol_sources`), in the
            order that fixes each copy's seed.
        out_dir: destination; receives the copies, ``protocol.csv``, ``synth_spoof.tsv``.
        method: a key of :data:`rawguard.copysynth.vocoders.METHODS`, or ``"neural"`` with ``vocoder``.
        seed: the copy at position ``i`` is a deterministic function of ``(seed, i)``.
        workers: processes (default: CPU count, at most 4); 1 runs in-process.
        progress: tqdm bar (files/s, ETA).
        vocoder: with method ``"neural"``: a ``vocoder.pt`` from :func:`rawguard.copysynth.neural.train_vocoder`.
        system: the copies' system name in ``protocol.csv`` (:func:`resolve_system`; default
            ``synth-<method>``); the sources' ids must carry the same prefix.

    Returns:
        A :class:`SpoofSummary`; per-file failures are listed there, not raised.

    Raises:
        SynthFolderError: unknown method, a missing or unusable vocoder, no sources, two sources
            with one target, or ``out_dir`` holds copies made with another method, seed, vocoder or
            source list.
    """

    vocoder_hash = _check_method(method, vocoder)
    system = resolve_system(method, system)
    if not sources:
        raise SynthFolderError("no sources to resynthesise")
    stray = next((source.utt_id for source in sources if not source.utt_id.startswith(f"{system}/")), None)
    if stray is not None:
        raise SynthFolderError(f"copy id {stray!r} does not belong to system {system!r} (make the sources with it)")
    _check_targets(sources)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _claim(out_dir, method, seed, sources, vocoder_hash)
    vocoder_path = None if vocoder is None else os.path.abspath(vocoder)
    tasks = [(str(s.path), str(out_dir / s.target), method, _file_seed(seed, i), vocoder_path)
             for i, s in enumerate(sources)]
    summary = SpoofSummary(out_dir=out_dir, method=method)
    done = [os.path.isfile(task[1]) for task in tasks]  # only complete files have the final name
    summary.kept = [Path(task[1]) for task, ok in zip(tasks, done) if ok]
    todo = [(i, task) for i, (task, ok) in enumerate(zip(tasks, done)) if not ok]
    workers = workers or min(4, os.cpu_count() or 1)
    bar = progress_bar(total=len(tasks), initial=len(summary.kept), desc=f"synth-spoof {method}", unit="file",
               disable=not progress)
    with contextlib.ExitStack() as stack:
        stack.callback(bar.close)
        if workers <= 1 or len(todo) <= 1:
            results = map(_spoof_one, (task for _, task in todo))
        else:
            spawn = multiprocessing.get_context("spawn")  # safe even if the caller runs threads
            stack.enter_context(one_thread_per_child())  # one process per core is the parallelism
            pool = stack.enter_context(ProcessPoolExecutor(max_workers=workers, mp_context=spawn))
            results = pool.map(_spoof_one, [task for _, task in todo], chunksize=4)
        for (i, task), (source, error) in zip(todo, results):
            bar.update()
            if error is None:
                done[i] = True
                summary.written.append(Path(task[1]))
            else:
                summary.failed.append((Path(source), error))
                bar.write(f"synth-spoof: skipped {error}")
    completed = [i for i, ok in enumerate(done) if ok]
    manifest = "".join(f"{tasks[i][0]}\t{tasks[i][1]}\t{method}\t{tasks[i][3]}\n" for i in completed)
    for name, text in ((MANIFEST, "source\toutput\tmethod\tseed\n" + manifest),
                       (PROTOCOL, _protocol_text(system, [sources[i] for i in completed]))):
        with atomic_open(out_dir / name, "wb", PARTIAL_SUFFIX, sync_directory=False) as handle:
            handle.write(text.encode("utf-8"))
    fsync_directory(out_dir)
    return summary


def synth_spoof_folder(
    in_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    method: str,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    vocoder: str | os.PathLike | None = None,
    system: str | None = None,
) -> SpoofSummary:
    """Resynthesise every audio file under ``in_dir`` into ``out_dir`` (same layout, ``.flac``).

    Args:
        in_dir: folder searched recursively for audio files (:data:`rawguard.audio.AUDIO_EXTENSIONS`);
            files already under ``out_dir`` are ignored. Copies get speaker ``-``.
        out_dir, method, seed, workers, progress, vocoder, system: as for :func:`synth_spoof`.

    Raises:
        SynthFolderError: unknown method or unusable vocoder, missing ``in_dir``, no audio files in it, two files with
            one target (``a.wav`` and ``a.flac``), or ``out_dir`` made with other settings.
    """
    _check_method(method, vocoder)  # before looking at the folder: the cheaper mistake to report
    return synth_spoof(folder_sources(in_dir, out_dir, method, system), out_dir, method, seed, workers, progress,
                       vocoder, system)


def synth_spoof_protocol(
    protocol: str | os.PathLike,
    out_dir: str | os.PathLike,
    method: str,
    audio_dir: str | os.PathLike | None = None,
    format: str = "auto",
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    vocoder: str | os.PathLike | None = None,
    system: str | None = None,
) -> SpoofSummary:
    """Resynthesise the bona fide entries of a protocol into ``out_dir/<utt_id>.flac``.

    Args:
        protocol, audio_dir, format: as for :func:`rawguard.data.protocols.read_protocol`.
        out_dir, method, seed, workers, progress, vocoder, system: as for :func:`synth_spoof`. Copies
            keep their source's speaker.

    Raises:
        ProtocolError: the protocol cannot be read.
        SynthFolderError: as :func:`synth_spoof`, or no bona fide entry in the protocol.
    """
    _check_method(method, vocoder)
    return synth_spoof(protocol_sources(protocol, method, audio_dir, format, system), out_dir, method, seed, workers,
                       progress, vocoder, system)
