"""prepare / Cache end to end on the real smoke set (40 clips of ../shared/corpus), with bad files,
a SIGKILL in the middle of a run, and damaged cache folders."""

from __future__ import annotations

import filecmp
import os
import pickle
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rawguard.cli import main as cli_main
from rawguard.data import prepare as prepare_module
from rawguard.data.cache import COMPLETE_FILE, INDEX_FILE, META_FILE, REJECTED_FILE, SAMPLES_FILE, Cache, CacheError
from rawguard.data.prepare import JOURNAL_FILE, LOCK_FILE, STATE_FILE, prepare_cache
from rawguard.data.protocols import Item, read_protocol

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
SMOKE = CORPUS / "protocols" / "smoke.txt"
FLAC = CORPUS / "flac"
OUTPUTS = (SAMPLES_FILE, INDEX_FILE, REJECTED_FILE, META_FILE, COMPLETE_FILE)

pytestmark = pytest.mark.skipif(not SMOKE.is_file(), reason="needs ../shared/corpus beside the repository")


@pytest.fixture(scope="module")
def smoke_cache(tmp_path_factory) -> Path:
    """The smoke set prepared once through the CLI with two worker processes."""
    out = tmp_path_factory.mktemp("smoke") / "cache"
    code = cli_main(["prepare", str(SMOKE), "--audio-dir", str(FLAC), "--out", str(out), "--workers", "2", "--quiet"])
    assert code == 0
    return out


def _count_decodes(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = prepare_module._decode

    def counting(task):
        calls.append(task[0])
        return real(task)

    monkeypatch.setattr(prepare_module, "_decode", counting)
    return calls


def test_smoke_cache_holds_every_clip_exactly(smoke_cache):
    cache = Cache.open(smoke_cache)
    items = read_protocol(SMOKE, audio_dir=FLAC)
    assert len(cache) == 40 and cache.ids == [i.utt_id for i in items]
    assert (smoke_cache / REJECTED_FILE).read_text() == ""
    assert cache.labels.dtype == np.int64 and cache.labels.tolist() == [i.label for i in items]
    assert cache.systems == [i.system for i in items] and cache.speakers == [i.speaker for i in items]
    for i in range(len(cache)):  # 16-bit FLAC -> int16 cache is lossless
        expected, rate = sf.read(cache.paths[i], dtype="int16")
        assert rate == 16000
        np.testing.assert_array_equal(cache.waveform(i), expected)
    assert cache.offsets[0] == 0 and np.array_equal(cache.offsets[1:], np.cumsum(cache.lengths)[:-1])
    assert cache.meta["clips"] == 40 and cache.meta["per_class"]["bonafide"][0] == 20
    assert not (smoke_cache / JOURNAL_FILE).exists() and not (smoke_cache / STATE_FILE).exists()


def test_rerun_of_complete_cache_decodes_nothing(smoke_cache, monkeypatch):
    calls = _count_decodes(monkeypatch)
    summary = prepare_cache(read_protocol(SMOKE, audio_dir=FLAC), smoke_cache, workers=1, progress=False)
    assert calls == [] and summary.clips == 40 and summary.decoded == 0 and summary.rejected == 0


def test_bad_files_are_rejected_not_fatal(tmp_path, capsys):
    corrupt = tmp_path / "corrupt.flac"
    corrupt.write_bytes((FLAC / "RG_D_000004.flac").read_bytes()[:2000])
    rows = ["path,label"] + [f"{FLAC / u}.flac,bonafide" for u in ("RG_D_000004", "RG_D_000034")]
    rows += [f"{corrupt},spoof", f"{tmp_path / 'missing.wav'},spoof"]
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "cache"
    code = cli_main(["prepare", str(tmp_path / "list.csv"), "--out", str(out), "--workers", "1", "--quiet"])
    assert code == 0
    assert "2 of 4 files rejected" in capsys.readouterr().err
    rejected = (out / REJECTED_FILE).read_text().splitlines()
    assert len(rejected) == 2
    assert rejected[0].startswith(f"{corrupt.with_suffix('')}\t{corrupt}\tunreadable or corrupt audio")
    assert rejected[1].endswith("file not found")
    assert len(Cache.open(out)) == 2


def test_cli_errors_exit_non_zero(tmp_path, capsys):
    (tmp_path / "bad.txt").write_text("SPK UTT - A01 spoof\nSPK UTT2 - A01 maybe\n")
    assert cli_main(["prepare", str(tmp_path / "bad.txt"), "--out", str(tmp_path / "c"), "--format",
                     "asvspoof2019", "--audio-dir", str(FLAC)]) == 2
    assert "unknown label 'maybe'" in capsys.readouterr().err
    (tmp_path / "junk.wav").write_text("junk")
    (tmp_path / "all_bad.csv").write_text(f"path,label\n{tmp_path / 'junk.wav'},spoof\n")
    assert cli_main(["prepare", str(tmp_path / "all_bad.csv"), "--out", str(tmp_path / "c"), "--quiet"]) == 1
    assert "none of the 1 files could be decoded" in capsys.readouterr().err
    assert not (tmp_path / "c" / COMPLETE_FILE).exists()
    with pytest.raises(CacheError, match="not a complete cache"):
        Cache.open(tmp_path / "c")


_KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from rawguard.data import prepare
    from rawguard.data.protocols import read_protocol

    kill_after = int(sys.argv[3])
    append = prepare._Journal.append

    def append_then_die(self, result):
        append(self, result)
        if len(self.entries) == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    prepare._Journal.append = append_then_die
    prepare.prepare_cache(read_protocol(sys.argv[1], audio_dir=sys.argv[2]), sys.argv[4], workers=2, progress=False)
""")


def test_sigkill_then_resume_is_identical_to_clean_run(smoke_cache, tmp_path, monkeypatch):
    out = tmp_path / "cache"
    run = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, str(SMOKE), str(FLAC), "12", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == -9, run.stderr
    assert not (out / COMPLETE_FILE).exists()
    with pytest.raises(CacheError, match="not a complete cache"):
        Cache.open(out)
    assert len((out / JOURNAL_FILE).read_text().splitlines()) == 12
    # Also what a kill in the middle of a write leaves: stray samples and half a journal line.
    with open(out / SAMPLES_FILE, "ab") as handle:
        handle.write(b"\x01\x02" * 999)
    with open(out / JOURNAL_FILE, "ab") as handle:
        handle.write(b"12\tok\t99")
    calls = _count_decodes(monkeypatch)
    summary = prepare_cache(read_protocol(SMOKE, audio_dir=FLAC), out, workers=1, progress=False)
    assert (summary.resumed, summary.decoded, len(calls)) == (12, 28, 28)
    for name in OUTPUTS:
        assert filecmp.cmp(out / name, smoke_cache / name, shallow=False), name
    assert set(os.listdir(out)) == {*OUTPUTS, LOCK_FILE}  # journal and state are gone


def test_cache_of_other_items_is_replaced_or_refused(smoke_cache, tmp_path, caplog):
    items = read_protocol(SMOKE, audio_dir=FLAC)
    with pytest.raises(CacheError, match="holds a complete cache of a different protocol"):
        prepare_cache(items, smoke_cache, workers=1, progress=False, max_duration=3.0, replace=False)
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / STATE_FILE).write_text('{"fingerprint": "something else"}')
    with pytest.raises(CacheError, match="holds an unfinished cache of a different protocol"):
        prepare_cache(items, partial, workers=1, progress=False, replace=False)

    old = Cache.open(_copy(smoke_cache, tmp_path / "old"))
    old_first = np.array(old.waveform(0))
    summary = prepare_cache(items[10:15], old.directory, workers=1, progress=False)
    assert "replacing it" in caplog.text
    assert summary.clips == 5 and Cache.open(old.directory).ids == [i.utt_id for i in items[10:15]]
    # A reader that had the old cache mapped keeps its data (the file was replaced, not rewritten).
    np.testing.assert_array_equal(old.waveform(0), old_first)


def test_concurrent_prepare_into_one_folder_is_refused(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "cache"
    out.mkdir()
    with open(out / LOCK_FILE, "a") as held:  # what a running prepare holds
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(CacheError, match="another `rawguard prepare` is writing"):
            prepare_cache(read_protocol(SMOKE, audio_dir=FLAC)[:2], out, workers=1, progress=False)
    assert prepare_cache(read_protocol(SMOKE, audio_dir=FLAC)[:2], out, workers=1, progress=False).clips == 2



def test_prepare_with_wait_blocks_until_the_writer_is_done(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "cache"
    out.mkdir()
    items = read_protocol(SMOKE, audio_dir=FLAC)[:2]
    done: list = []
    with open(out / LOCK_FILE, "a") as held:  # what a running prepare holds
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        waiter = threading.Thread(target=lambda: done.append(prepare_cache(items, out, workers=1, progress=False,
                                                                            wait=True)))
        waiter.start()
        waiter.join(timeout=0.5)
        assert waiter.is_alive() and not done  # still waiting for the lock, nothing written
        assert not (out / COMPLETE_FILE).exists()
    waiter.join(timeout=60)
    assert done and done[0].clips == 2 and Cache.open(out).ids == [i.utt_id for i in items]

def test_item_fields_with_tabs_are_refused(tmp_path):
    item = Item("a\tb", FLAC / "RG_D_000004.flac", 1, "spk", "-", {})
    with pytest.raises(CacheError, match="field utt_id .* tab or line break"):
        prepare_cache([item], tmp_path / "c", workers=1, progress=False)


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for name in OUTPUTS:
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def test_damaged_cache_folders_are_refused(smoke_cache, tmp_path):
    with pytest.raises(CacheError, match="cache folder not found"):
        Cache.open(tmp_path / "nothing")
    short = _copy(smoke_cache, tmp_path / "short")
    os.truncate(short / SAMPLES_FILE, 1000)
    with pytest.raises(CacheError, match="holds 500 samples, index needs"):
        Cache.open(short)
    bad_row = _copy(smoke_cache, tmp_path / "bad_row")
    lines = (bad_row / INDEX_FILE).read_text().splitlines()
    lines[3] = lines[3].replace("\t", " ", 2)
    (bad_row / INDEX_FILE).write_text("\n".join(lines) + "\n")
    with pytest.raises(CacheError, match=rf"{INDEX_FILE}:4: malformed row"):
        Cache.open(bad_row)


def test_cache_pickles_without_its_memmap(smoke_cache):
    cache = Cache.open(smoke_cache)
    first = np.array(cache.waveform(5))
    assert isinstance(cache.samples.base, np.memmap) and not cache.samples.flags.writeable
    clone = pickle.loads(pickle.dumps(cache))
    assert clone._samples is None  # re-mapped lazily in the receiving process
    np.testing.assert_array_equal(clone.waveform(5), first)
    assert clone.seconds == pytest.approx(cache.meta["seconds"], abs=1e-3)


# --- several protocols into one cache ---------------------------------------------------------------

@pytest.fixture
def two_protocols(tmp_path) -> tuple[Path, Path]:
    """6 smoke lines (ASVspoof, audio in FLAC) and a CSV of 2 more clips beside it (own folder)."""
    first = tmp_path / "first.txt"
    first.write_text("".join(SMOKE.read_text().splitlines(keepends=True)[:6]))
    (tmp_path / "more" / "clips").mkdir(parents=True)
    for name in ("RG_D_000108", "RG_D_000110"):
        (tmp_path / "more" / "clips" / f"{name}.flac").write_bytes((FLAC / f"{name}.flac").read_bytes())
    second = tmp_path / "more" / "copies.csv"
    second.write_text("id,path,label,speaker,system\ncopy/a,clips/RG_D_000108.flac,spoof,LS_730,voc-x\n"
                      "copy/b,clips/RG_D_000110.flac,spoof,VCC_SM3,voc-x\n")
    return first, second


def test_prepare_two_protocols_into_one_cache(two_protocols, tmp_path, monkeypatch):
    first, second = two_protocols
    out = tmp_path / "cache"
    args = ["prepare", str(first), str(second), "--audio-dir", str(FLAC), "--audio-dir", "-", "--out", str(out),
            "--workers", "1", "--quiet"]
    assert cli_main(args) == 0
    cache = Cache.open(out)
    smoke = read_protocol(first, audio_dir=FLAC)
    assert cache.ids == [i.utt_id for i in smoke] + ["copy/a", "copy/b"]
    assert cache.labels.tolist() == [i.label for i in smoke] + [0, 0]
    assert cache.systems == [i.system for i in smoke] + ["voc-x", "voc-x"]
    assert cache.meta["per_system"]["voc-x"][0] == 2 and cache.meta["clips"] == 8
    np.testing.assert_array_equal(cache.waveform(7), sf.read(FLAC / "RG_D_000110.flac", dtype="int16")[0])
    # The merged list fingerprints the same on every read: the same command decodes nothing again.
    calls = _count_decodes(monkeypatch)
    assert cli_main(args) == 0 and calls == []
    # Another order is other data: the cache is rebuilt, in the new order.
    assert cli_main(["prepare", str(second), str(first), "--audio-dir", "-", "--audio-dir", str(FLAC),
                     "--out", str(out), "--workers", "1", "--quiet"]) == 0
    assert len(calls) == 8 and Cache.open(out).ids[:2] == ["copy/a", "copy/b"]


def test_prepare_audio_dir_count_rules(two_protocols, tmp_path, capsys):
    first, second = two_protocols
    other = tmp_path / "other.txt"  # two ASVspoof protocols share one --audio-dir
    other.write_text("".join(SMOKE.read_text().splitlines(keepends=True)[6:9]))
    out = tmp_path / "c"
    assert cli_main(["prepare", str(first), str(other), "--audio-dir", str(FLAC), "--out", str(out), "--workers", "1",
                     "--quiet"]) == 0
    assert len(Cache.open(out)) == 9
    code = cli_main(["prepare", str(first), str(second), "--audio-dir", str(FLAC), "--audio-dir", "-",
                     "--audio-dir", str(FLAC), "--out", str(out), "--quiet"])
    assert code == 2 and "--audio-dir given 3 times for 2 protocols" in capsys.readouterr().err
    # Given 0 times, each protocol uses its own folder: first.txt's has no audio, and the error says so.
    assert cli_main(["prepare", str(first), str(second), "--out", str(out), "--quiet"]) == 2
    assert f"{first}: none of the 6 utterance ids has an audio file" in capsys.readouterr().err


def test_prepare_refuses_an_id_in_two_protocols(two_protocols, tmp_path, capsys):
    first, second = two_protocols
    clash = tmp_path / "clash.csv"
    clash.write_text(f"id,path,label\nRG_D_000034,{FLAC / 'RG_D_000034.flac'},spoof\n")
    assert cli_main(["prepare", str(first), str(clash), "--audio-dir", str(FLAC), "--audio-dir", "-",
                     "--out", str(tmp_path / "c"), "--quiet"]) == 2
    assert f"{clash}:2: utterance id 'RG_D_000034' is also in {first}:2" in capsys.readouterr().err
