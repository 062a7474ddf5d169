"""synth-spoof from a protocol, its protocol.csv, resuming after a kill, and the copies prepared with
their sources into one cache (the "train on copy-synthesis spoofs of your own data" workflow)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rawguard.cli import main as cli_main
from rawguard.conventions import SPOOF
from rawguard.data.cache import Cache
from rawguard.data.protocols import read_protocol
from rawguard.copysynth import synth_spoof as folder
from rawguard.copysynth.synth_spoof import (MANIFEST, PARTIAL_SUFFIX, PROTOCOL, SynthFolderError, protocol_sources,
                                            synth_spoof_folder, synth_spoof_protocol)

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
SMOKE = CORPUS / "protocols" / "smoke.txt"
FLAC = CORPUS / "flac"
BONAFIDE_IDS = ["RG_D_000004", "RG_D_000034", "RG_D_000062", "RG_D_000076"]  # smoke lines 1-6 minus 2 spoofs

needs_corpus = pytest.mark.skipif(not SMOKE.is_file(), reason="needs ../shared/corpus beside the repository")


@pytest.fixture
def protocol(tmp_path) -> Path:
    """The first 6 smoke lines: 4 bona fide and 2 spoof clips of the shared corpus (ASVspoof 2019)."""
    path = tmp_path / "train.txt"
    path.write_text("".join(SMOKE.read_text().splitlines(keepends=True)[:6]))
    return path


def _synth(protocol: Path, out: Path, **options) -> folder.SpoofSummary:
    return synth_spoof_protocol(protocol, out, "lpc", audio_dir=FLAC, workers=1, progress=False, **options)


def _csv_rows(out: Path) -> list[str]:
    return (out / PROTOCOL).read_text().splitlines()


@needs_corpus
def test_protocol_mode_end_to_end_then_prepare_with_the_sources(protocol, tmp_path, capsys):
    out = tmp_path / "synth" / "lpc"
    assert cli_main(["synth-spoof", "--protocol", str(protocol), "--audio-dir", str(FLAC), str(out),
                     "--method", "lpc", "--workers", "1", "--quiet"]) == 0
    assert "wrote 4 lpc copies" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("*.flac")) == [f"{utt}.flac" for utt in BONAFIDE_IDS]  # bona fide only
    speakers = {line.split()[1]: line.split()[0] for line in protocol.read_text().splitlines()}
    assert _csv_rows(out) == ["id,path,label,speaker,system"] + [
        f"synth-lpc/{utt},{utt}.flac,spoof,{speakers[utt]},synth-lpc" for utt in BONAFIDE_IDS]
    copies = read_protocol(out / PROTOCOL)  # no audio_dir: paths are relative to the CSV
    assert [c.path for c in copies] == [out / f"{utt}.flac" for utt in BONAFIDE_IDS]
    assert {(c.label, c.system) for c in copies} == {(SPOOF, "synth-lpc")}
    for utt in BONAFIDE_IDS:  # a copy keeps its source's length; 16 kHz FLAC
        copy, rate = sf.read(out / f"{utt}.flac")
        assert rate == 16000 and len(copy) == sf.info(FLAC / f"{utt}.flac").frames
    assert len((out / MANIFEST).read_text().splitlines()) == 5

    cache = tmp_path / "caches" / "train_plus"
    assert cli_main(["prepare", str(protocol), str(out / PROTOCOL), "--audio-dir", str(FLAC), "--audio-dir", "-",
                     "--out", str(cache), "--workers", "1", "--quiet"]) == 0
    prepared = Cache.open(cache)
    assert len(prepared) == 10 and prepared.ids[6:] == [f"synth-lpc/{utt}" for utt in BONAFIDE_IDS]
    assert prepared.meta["per_class"]["bonafide"][0] == 4 and prepared.meta["per_class"]["spoof"][0] == 6
    assert prepared.meta["per_system"]["synth-lpc"][0] == 4
    assert prepared.speakers[6:] == [speakers[utt] for utt in BONAFIDE_IDS]  # paired with their sources


@needs_corpus
def test_rerun_makes_only_the_missing_copies(protocol, tmp_path):
    out = tmp_path / "out"
    _synth(protocol, out)
    first_bytes = {utt: (out / f"{utt}.flac").read_bytes() for utt in BONAFIDE_IDS}
    protocol_csv, manifest = _csv_rows(out), (out / MANIFEST).read_text()
    deleted, half_written = BONAFIDE_IDS[1], BONAFIDE_IDS[2]
    (out / f"{deleted}.flac").unlink()
    # What a kill in the middle of a write leaves: a temporary file, never the final name.
    (out / f"{half_written}.flac").rename(out / f".{half_written}.flac{PARTIAL_SUFFIX}")
    with open(out / f".{half_written}.flac{PARTIAL_SUFFIX}", "r+b") as handle:
        handle.truncate(1000)
    kept = [utt for utt in BONAFIDE_IDS if utt not in (deleted, half_written)]
    mtimes = {utt: (out / f"{utt}.flac").stat().st_mtime_ns for utt in kept}

    summary = _synth(protocol, out)
    assert sorted(p.stem for p in summary.written) == sorted([deleted, half_written])
    assert sorted(p.stem for p in summary.kept) == kept
    assert {utt: (out / f"{utt}.flac").stat().st_mtime_ns for utt in kept} == mtimes  # not touched
    assert {utt: (out / f"{utt}.flac").read_bytes() for utt in BONAFIDE_IDS} == first_bytes  # same seeds
    assert _csv_rows(out) == protocol_csv and (out / MANIFEST).read_text() == manifest
    assert not list(out.glob(f".*{PARTIAL_SUFFIX}"))


@needs_corpus
def test_lists_cover_copies_of_an_interrupted_run(protocol, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real, calls = folder._spoof_one, []

    def interrupted_after_two(task):
        if len(calls) == 2:
            raise KeyboardInterrupt  # as Ctrl-C (or a kill) in the middle of the run
        calls.append(task)
        return real(task)

    monkeypatch.setattr(folder, "_spoof_one", interrupted_after_two)
    with pytest.raises(KeyboardInterrupt):
        _synth(protocol, out)
    assert len(list(out.glob("*.flac"))) == 2 and not (out / PROTOCOL).exists()
    monkeypatch.setattr(folder, "_spoof_one", real)
    summary = _synth(protocol, out)
    assert (len(summary.written), len(summary.kept)) == (2, 2)
    assert [item.utt_id for item in read_protocol(out / PROTOCOL)] == [f"synth-lpc/{utt}" for utt in BONAFIDE_IDS]
    assert len((out / MANIFEST).read_text().splitlines()) == 5


@needs_corpus
def test_out_dir_made_with_other_settings_is_refused(protocol, tmp_path, capsys):
    out = tmp_path / "out"
    _synth(protocol, out)
    with pytest.raises(SynthFolderError, match="holds lpc copies with seed 0"):
        synth_spoof_protocol(protocol, out, "world", audio_dir=FLAC, workers=1, progress=False)
    with pytest.raises(SynthFolderError, match="holds lpc copies with seed 0"):
        _synth(protocol, out, seed=1)
    shorter = tmp_path / "shorter.txt"
    shorter.write_text("".join(protocol.read_text().splitlines(keepends=True)[:3]))
    with pytest.raises(SynthFolderError, match=r"copies of another list of sources \(4 files, now 2\)"):
        _synth(shorter, out)
    assert cli_main(["synth-spoof", "--protocol", str(protocol), "--audio-dir", str(FLAC), str(out),
                     "--method", "world", "--quiet"]) == 2
    assert "use another OUT_DIR" in capsys.readouterr().err


def test_copy_targets_stay_inside_out_dir_and_never_collide(tmp_path):
    (tmp_path / "list.csv").write_text("id,path,label,speaker\n/abs/x,a.wav,bonafide,s1\n../up/y,b.wav,bonafide,s2\n"
                                       "c,c.wav,spoof,s1\n")
    sources = protocol_sources(tmp_path / "list.csv", "lpc")
    assert [(s.target, s.utt_id, s.speaker) for s in sources] == [
        ("__/up/y.flac", "synth-lpc/../up/y", "s2"), ("abs/x.flac", "synth-lpc//abs/x", "s1")]  # sorted by id
    (tmp_path / "clash.csv").write_text("id,path,label\n../x,a.wav,bonafide\n__/x,b.wav,bonafide\n")
    with pytest.raises(SynthFolderError, match=r"a.wav and .*b.wav would both be copied to __/x.flac"):
        synth_spoof_protocol(tmp_path / "clash.csv", tmp_path / "out", "lpc", progress=False)
    (tmp_path / "shadow.csv").write_text("id,path,label\na,a.wav,bonafide\nsynth-lpc/a,b.wav,spoof\n")
    with pytest.raises(SynthFolderError, match="copy id 'synth-lpc/a' is already an id of the protocol"):
        protocol_sources(tmp_path / "shadow.csv", "lpc")
    (tmp_path / "spoofs.csv").write_text("path,label\na.wav,spoof\n")
    with pytest.raises(SynthFolderError, match="no bona fide entries"):
        protocol_sources(tmp_path / "spoofs.csv", "lpc")
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_folder_mode_writes_protocol_csv(tmp_path):
    noise = np.random.default_rng(0).normal(0, 0.1, 4000).astype(np.float32)
    (tmp_path / "in" / "sub").mkdir(parents=True)
    sf.write(tmp_path / "in" / "sub" / "a.wav", noise, 16000)
    sf.write(tmp_path / "in" / "b.flac", noise[::-1], 16000)
    out = tmp_path / "out"
    summary = synth_spoof_folder(tmp_path / "in", out, "lpc", workers=1, progress=False)
    assert len(summary.written) == 2
    assert _csv_rows(out)[1:] == ["synth-lpc/b,b.flac,spoof,-,synth-lpc",
                                  "synth-lpc/sub/a,sub/a.flac,spoof,-,synth-lpc"]
    assert [i.label for i in read_protocol(out / PROTOCOL)] == [SPOOF, SPOOF]
    shutil.copy(tmp_path / "in" / "b.flac", tmp_path / "in" / "b.wav")  # both would become out/b.flac
    with pytest.raises(SynthFolderError, match="would both be copied to b.flac"):
        synth_spoof_folder(tmp_path / "in", tmp_path / "out2", "lpc", workers=1, progress=False)


@pytest.mark.parametrize(("args", "message"), [
    (["out"], "give either IN_DIR or --protocol FILE"),
    (["in", "out", "--protocol", "p.txt"], "not both"),
    (["in", "out", "--audio-dir", "flac"], "--audio-dir and --format go with --protocol"),
])
def test_cli_needs_exactly_one_input(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["synth-spoof", *args, "--method", "lpc"])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


@needs_corpus
def test_two_copy_sets_of_one_method_share_a_cache_under_their_own_system_names(protocol, tmp_path, capsys):
    first, second = tmp_path / "synth" / "a", tmp_path / "synth" / "b"
    _synth(protocol, first)  # default name: synth-lpc
    assert cli_main(["synth-spoof", "--protocol", str(protocol), "--audio-dir", str(FLAC), str(second),
                     "--method", "lpc", "--system", "synth-lpc-b", "--seed", "1", "--workers", "1", "--quiet"]) == 0
    assert _csv_rows(second)[1].startswith(f"synth-lpc-b/{BONAFIDE_IDS[0]},{BONAFIDE_IDS[0]}.flac,spoof,")
    assert all(row.endswith(",synth-lpc-b") for row in _csv_rows(second)[1:])
    cache = tmp_path / "cache"
    assert cli_main(["prepare", str(protocol), str(first / PROTOCOL), str(second / PROTOCOL), "--audio-dir", str(FLAC),
                     "--audio-dir", "-", "--audio-dir", "-", "--out", str(cache), "--workers", "1", "--quiet"]) == 0
    prepared = Cache.open(cache)
    assert prepared.meta["per_system"]["synth-lpc"][0] == 4 and prepared.meta["per_system"]["synth-lpc-b"][0] == 4

    for bad in ("lpc-b", "synth-", "synth-a/b", "synth-a b"):  # copies are recognised by the prefix; ids by '/'
        with pytest.raises(SynthFolderError, match=f"system {bad!r}: must start with 'synth-'"):
            _synth(protocol, tmp_path / "bad", system=bad)
    # Sources made for one name cannot be written under another.
    sources = protocol_sources(protocol, "lpc", FLAC)
    with pytest.raises(SynthFolderError, match="does not belong to system 'synth-other'"):
        folder.synth_spoof(sources, tmp_path / "mixed", "lpc", workers=1, progress=False, system="synth-other")
