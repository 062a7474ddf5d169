"""Archive scoring without a model: the resumable journal, the streamed file list and shards."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from rawguard.archive.files import FileKey, file_key, iter_audio_files, shard_of
from rawguard.archive.journal import Journal, JournalError, JournalPaths, repair_torn_tail
from rawguard.archive.merge import merge_parts


def _audio(folder: Path, names: list[str]) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        (folder / name).write_bytes(b"not decoded in these tests")
        paths.append(str(folder / name))
    return paths


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _fill(journal: Journal, paths: list[str]) -> None:
    for i, path in enumerate(paths):
        journal.write_result(file_key(path), {"score": float(i), "path": path})


def test_journal_resumes_with_the_same_done_set_and_appends(tmp_path):
    paths = _audio(tmp_path / "a", [f"{i}.wav" for i in range(5)])
    out = tmp_path / "out" / "results.jsonl"
    with Journal.open(out) as journal:
        _fill(journal, paths[:3])
        journal.write_error(file_key(paths[3]), "unreadable or corrupt audio: bad header")
    with Journal.open(out) as journal:
        assert journal.summary.done == 4 and journal.summary.dropped_lines == 0
        assert all(journal.is_done(file_key(p)) for p in paths[:4])
        assert not journal.is_done(file_key(paths[4]))
        _fill(journal, paths[4:])
    assert [r["path"] for r in _lines(out)] == paths[:3] + paths[4:]
    assert _lines(tmp_path / "out" / "results.errors.jsonl") == [{"path": paths[3], "reason": "unreadable or corrupt audio: bad header"}]


def test_torn_last_line_is_cut_and_its_file_scored_again(tmp_path):
    paths = _audio(tmp_path / "a", ["x.flac", "y.flac", "z.flac"])
    out = tmp_path / "results.jsonl"
    with Journal.open(out) as journal:
        _fill(journal, paths[:2])
    # What a SIGKILL inside a write leaves: a line without its newline, and no key for it.
    whole = out.read_bytes()
    with open(out, "ab") as handle:
        handle.write(json.dumps({"score": 9.0, "path": paths[2]}).encode()[:25])
    with Journal.open(out) as journal:
        assert journal.summary.torn_bytes == 25 and journal.summary.done == 2
        assert not journal.is_done(file_key(paths[2]))
    assert out.read_bytes() == whole


def test_result_line_without_its_key_is_dropped(tmp_path):
    # A kill between the result line and its key line: the result does not count.
    paths = _audio(tmp_path / "a", ["x.flac", "y.flac"])
    out = tmp_path / "results.jsonl"
    with Journal.open(out) as journal:
        _fill(journal, paths[:1])
    with open(out, "a") as handle:
        handle.write(json.dumps({"score": 1.0, "path": paths[1]}) + "\n")
    with Journal.open(out) as journal:
        assert journal.summary.dropped_lines == 1 and journal.summary.done == 1
        assert not journal.is_done(file_key(paths[1]))
        _fill(journal, paths[1:])
    assert Counter(r["path"] for r in _lines(out)) == {paths[0]: 1, paths[1]: 1}


def test_changed_file_is_scored_again_and_its_old_line_dropped(tmp_path):
    paths = _audio(tmp_path / "a", ["x.flac", "y.flac"])
    out = tmp_path / "results.jsonl"
    with Journal.open(out) as journal:
        _fill(journal, paths)
    os.utime(paths[1], ns=(1_000_000_000, 1_000_000_000))  # a new version (mtime) of y
    with Journal.open(out) as journal:
        assert journal.summary.changed == 1 and journal.summary.done == 1
        assert journal.is_done(file_key(paths[0])) and not journal.is_done(file_key(paths[1]))
    assert [r["path"] for r in _lines(out)] == [paths[0]]
    assert [r["path"] for r in _lines(JournalPaths.for_results(out).keys)] == [paths[0]]


def test_missing_file_keeps_its_result(tmp_path):
    paths = _audio(tmp_path / "a", ["x.flac"])
    out = tmp_path / "results.jsonl"
    with Journal.open(out) as journal:
        _fill(journal, paths)
    os.remove(paths[0])  # e.g. a volume not mounted today
    with Journal.open(out) as journal:
        assert journal.summary.done == 1
    assert len(_lines(out)) == 1


def test_second_writer_and_corrupt_middle_line_are_refused(tmp_path):
    paths = _audio(tmp_path / "a", ["x.flac", "y.flac"])
    out = tmp_path / "results.jsonl"
    with Journal.open(out) as journal:
        with pytest.raises(JournalError, match="another process is writing"):
            Journal.open(out)
        _fill(journal, paths)
    text = out.read_text().splitlines()
    out.write_text("\n".join([text[0][:-3], text[1]]) + "\n")
    with pytest.raises(JournalError, match=r"results.jsonl:1: not a JSON line"):
        Journal.open(out)


def test_repair_torn_tail_scans_past_one_block(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_bytes(b'{"path": "a"}\n' + b"x" * 200_000)
    assert repair_torn_tail(path) == 200_000
    assert path.read_bytes() == b'{"path": "a"}\n'
    assert repair_torn_tail(path) == 0


def test_file_list_is_streamed_once_per_file(tmp_path):
    _audio(tmp_path / "a" / "b", ["1.WAV", "2.flac", "notes.txt"])
    _audio(tmp_path / "a", ["3.mp3"])
    listed = list(iter_audio_files([tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "3.mp3", tmp_path / "gone.wav"]))
    names = sorted(Path(p).name for p in listed)
    assert names == ["1.WAV", "2.flac", "3.mp3", "gone.wav"]  # nested and repeated arguments listed once
    assert file_key(str(tmp_path / "gone.wav")) is None


def test_shards_are_deterministic_balanced_and_move_only_to_a_new_rank():
    paths = [f"archive/day{d}/call{i:05d}.wav" for d in range(5) for i in range(2000)]
    two = [shard_of(p, 2) for p in paths]
    assert two == [shard_of(p, 2) for p in paths]
    assert abs(Counter(two)[0] / len(paths) - 0.5) < 0.02
    three = [shard_of(p, 3) for p in paths]
    moved = [(a, b) for a, b in zip(two, three) if a != b]
    assert all(b == 2 for _, b in moved)  # files move only to the new rank ...
    assert abs(len(moved) / len(paths) - 1 / 3) < 0.02  # ... about a third of them
    assert {shard_of(p, 1) for p in paths} == {0}
    with pytest.raises(ValueError, match="world_size"):
        shard_of("a.wav", 0)


def test_merge_of_parts_is_idempotent_and_skips_torn_tails(tmp_path):
    paths = _audio(tmp_path / "a", [f"{i}.wav" for i in range(4)])
    out = tmp_path / "out"
    for rank, part in enumerate([paths[:2], paths[2:]]):
        with Journal.open(out / f"part-{rank}.jsonl") as journal:
            _fill(journal, part)
    with open(out / "part-1.jsonl", "a") as handle:
        handle.write('{"score": 1.0, "pa')  # rank 1 killed mid-line
    assert merge_parts(out) == (4, 0)
    first = (out / "results.jsonl").read_bytes()
    assert sorted(r["path"] for r in _lines(out / "results.jsonl")) == sorted(paths)
    assert merge_parts(out) == (4, 0) and (out / "results.jsonl").read_bytes() == first
    assert FileKey("a", 1, 2).digest != FileKey("a", 1, 3).digest
    assert np.uint64(FileKey("a", 1, 2).digest) == FileKey("a", 1, 2).digest


def test_decode_pool_windows_files_and_reports_bad_ones_and_a_dead_decoder(tmp_path):
    import signal

    from rawguard.archive.decode import DecodePool, DecoderCrashed
    from rawguard.audio import load_audio
    from rawguard.windows import frame

    from helpers.checkpoints import corpus_files

    clip = corpus_files(1)[0]
    bad = _audio(tmp_path, ["bad.wav"])[0]
    with DecodePool(1, 16_000, 8_000, chunk_windows=2) as pool:
        pool.submit(0, str(clip))
        pool.submit(1, bad)
        pool.finish()
        messages = list(pool.messages())
    starts, windows = frame(load_audio(clip), 16_000, 8_000)
    chunks = [m for m in messages if m[0] == "windows"]
    assert [m[3] for m in chunks] == list(range(0, len(starts), 2))  # chunks of 2 windows, in order
    np.testing.assert_array_equal(chunks[0][4], starts)  # the first chunk carries every start
    np.testing.assert_array_equal(np.concatenate([m[5] for m in chunks]), windows)
    assert [m[:2] for m in messages if m[0] == "error"] == [("error", 1)]
    with DecodePool(1, 16_000, 8_000) as pool:
        os.kill(pool._processes[0].pid, signal.SIGKILL)
        with pytest.raises(DecoderCrashed, match="decoder process 0 died"):
            list(pool.messages(poll_s=0.1))


def test_decoder_dying_on_a_file_reports_that_file_and_is_replaced(tmp_path):
    # A native decoder can crash the process on a malformed file: SIGKILL the decoder while it is
    # inside load_audio on a long file; that file becomes an error, the next file is still decoded.
    import signal
    import threading
    import time

    import soundfile as sf

    from rawguard.archive.decode import DecodePool
    from rawguard.audio import load_audio

    from helpers.checkpoints import corpus_files

    clips = corpus_files(2)
    wave = np.concatenate([load_audio(clips[0])] * 200)  # ~10 min of FLAC: ~0.3 s or more to decode
    long = tmp_path / "long.flac"
    sf.write(long, wave, 16_000, subtype="PCM_16")
    with DecodePool(1, 16_000, 16_000) as pool:
        feeder = threading.Thread(target=lambda: (pool.submit(0, str(long)), pool.submit(1, str(clips[1])), pool.finish()))
        feeder.start()
        deadline = time.monotonic() + 60
        while pool._current[0] != 0 and time.monotonic() < deadline:
            pass
        os.kill(pool._processes[0].pid, signal.SIGKILL)
        messages = list(pool.messages(poll_s=0.1))
        feeder.join()
    assert pool.restarts == 1
    errors = [m for m in messages if m[0] == "error"]
    assert len(errors) == 1 and errors[0][1] == 0 and "decoder process crashed" in errors[0][2]
    assert {m[1] for m in messages if m[0] == "windows"} == {1}
