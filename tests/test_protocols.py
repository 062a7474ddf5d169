"""Protocol readers on small fixture files (tests/fixtures/protocols), including malformed ones."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rawguard.conventions import BONAFIDE, SPOOF
from rawguard.data.protocols import FORMATS, Item, ProtocolError, detect_format, read_protocol, read_protocols

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "protocols"
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def _audio(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        sf.write(folder / name, np.zeros(160, dtype=np.float32), 16000)


def _ids(path: Path) -> list[str]:
    return [line.split()[1] for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def audio_for(tmp_path):
    """Make an audio folder holding <id>.flac for every id of a whitespace fixture."""

    def make(name: str) -> Path:
        folder = tmp_path / "audio"
        _audio(folder, *(f"{utt}.flac" for utt in _ids(FIXTURES / name)))
        return folder

    return make


@pytest.mark.parametrize(
    ("name", "expected_format"),
    [
        ("asvspoof2019_la.txt", "asvspoof2019"),
        ("asvspoof2019_pa.txt", "asvspoof2019"),
        ("asvspoof2021_la.txt", "asvspoof2021-la"),
        ("asvspoof2021_df.txt", "asvspoof2021-df"),
        ("asvspoof5.txt", "asvspoof5"),
        ("in_the_wild_meta.csv", "in-the-wild"),
        ("generic_header.csv", "csv"),
        ("generic_noheader.csv", "csv"),
    ],
)
def test_detect_format(name, expected_format):
    assert detect_format(FIXTURES / name) == expected_format
    assert expected_format in FORMATS


def test_asvspoof2019_la(audio_for):
    items = read_protocol(FIXTURES / "asvspoof2019_la.txt", audio_dir=audio_for("asvspoof2019_la.txt"))
    assert [i.utt_id for i in items] == ["LA_T_1138215", "LA_T_1271820", "LA_T_1435437", "LA_T_1697867"]
    assert [i.label for i in items] == [BONAFIDE, SPOOF, SPOOF, BONAFIDE]
    assert [i.system for i in items] == ["-", "A01", "A06", "-"]
    assert items[1].speaker == "LA_0079" and items[1].extra == {}  # "-" environment left out
    assert all(i.path.is_file() and i.path.suffix == ".flac" for i in items)


def test_asvspoof2019_pa_keeps_environment(audio_for):
    items = read_protocol(FIXTURES / "asvspoof2019_pa.txt", audio_dir=audio_for("asvspoof2019_pa.txt"))
    assert [(i.system, i.extra["environment"]) for i in items] == [("-", "aaa"), ("AA", "aaa"), ("BC", "cbc")]


def test_asvspoof2021_la_and_df_fields(audio_for):
    la = read_protocol(FIXTURES / "asvspoof2021_la.txt", audio_dir=audio_for("asvspoof2021_la.txt"))
    assert la[0].extra == {"codec": "alaw", "transmission": "ita_tx", "trim": "notrim", "subset": "eval"}
    assert (la[0].system, la[1].label, la[1].system) == ("A07", BONAFIDE, "-")
    df = read_protocol(FIXTURES / "asvspoof2021_df.txt", audio_dir=audio_for("asvspoof2021_df.txt"))
    assert df[1].extra["vocoder"] == "neural_vocoder_autoregressive" and df[1].extra["source"] == "vcc2020"
    assert df[1].system == "Task1-team20" and df[2].label == BONAFIDE and df[2].system == "-"


def test_asvspoof5(audio_for):
    items = read_protocol(FIXTURES / "asvspoof5.txt", audio_dir=audio_for("asvspoof5.txt"), format="asvspoof5")
    assert [(i.label, i.system) for i in items] == [(SPOOF, "A05"), (BONAFIDE, "-"), (SPOOF, "A13")]
    assert items[2].extra == {"gender": "F", "codec": "C05", "codec_q": "8", "codec_seed": "2022", "attack_tag": "AC1"}


def test_audio_lookup_prefers_flac_and_searches_flac_subfolder(tmp_path):
    _audio(tmp_path / "flac", "LA_T_1138215.flac", "LA_T_1271820.flac")
    _audio(tmp_path, "LA_T_1271820.wav", "LA_T_1435437.wav")
    items = read_protocol(FIXTURES / "asvspoof2019_la.txt", audio_dir=tmp_path)
    paths = {i.utt_id: i.path for i in items}
    assert paths["LA_T_1138215"] == tmp_path / "flac" / "LA_T_1138215.flac"
    assert paths["LA_T_1271820"] == tmp_path / "LA_T_1271820.wav"  # the top folder is searched first
    assert paths["LA_T_1435437"] == tmp_path / "LA_T_1435437.wav"
    assert not paths["LA_T_1697867"].exists()  # missing audio is left for prepare to reject


def test_no_audio_at_all_names_the_folder(tmp_path):
    with pytest.raises(ProtocolError, match="none of the 4 utterance ids .* check --audio-dir"):
        read_protocol(FIXTURES / "asvspoof2019_la.txt", audio_dir=tmp_path)


def test_in_the_wild_paths_relative_to_csv(tmp_path):
    csv_path = tmp_path / "meta.csv"
    shutil.copy(FIXTURES / "in_the_wild_meta.csv", csv_path)
    items = read_protocol(csv_path)
    assert [i.utt_id for i in items] == ["0", "1", "2"]
    assert items[0].path == tmp_path / "0.wav"
    assert [i.label for i in items] == [SPOOF, BONAFIDE, SPOOF]
    assert items[1].speaker == "Alec Guinness"
    other = read_protocol(csv_path, audio_dir=tmp_path / "wavs")
    assert other[2].path == tmp_path / "wavs" / "2.wav"


def test_byte_order_mark_and_crlf_are_tolerated(tmp_path):
    text = (FIXTURES / "in_the_wild_meta.csv").read_text().replace("\n", "\r\n")
    (tmp_path / "meta.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    items = read_protocol(tmp_path / "meta.csv")
    assert detect_format(tmp_path / "meta.csv") == "in-the-wild" and items[2].speaker == "Barack Obama"


def test_generic_csv_with_and_without_header():
    items = read_protocol(FIXTURES / "generic_header.csv")
    assert [i.utt_id for i in items] == ["clips/a", "clips/b", "clips/c"]
    assert items[1] == Item("clips/b", FIXTURES / "clips/b.flac", SPOOF, "spk1", "tts_x", {"room": "office"})
    assert items[2].label == SPOOF and items[2].system == "vc_y"
    bare = read_protocol(FIXTURES / "generic_noheader.csv", format="csv")
    assert (bare[0].label, bare[0].speaker, bare[0].system) == (BONAFIDE, "-", "-")
    assert (bare[1].speaker, bare[1].system) == ("spk1", "tts_x")


def test_csv_id_column_names_the_utterance(tmp_path):
    (tmp_path / "list.csv").write_text("id,path,label,speaker,system\n"
                                       "copy-1,clips/a.flac,spoof,spk1,voc\n"
                                       '"x,y",clips/b.flac,bonafide,spk2,-\n')
    items = read_protocol(tmp_path / "list.csv")
    assert items[0] == Item("copy-1", tmp_path / "clips/a.flac", SPOOF, "spk1", "voc", {})  # id is not an extra
    assert items[1].utt_id == "x,y" and items[1].path == tmp_path / "clips/b.flac"


def test_csv_empty_id_names_file_and_line(tmp_path):
    (tmp_path / "list.csv").write_text("path,id,label\na.flac,a,spoof\n\nb.flac,,spoof\n")
    with pytest.raises(ProtocolError, match=r"list.csv:4 \(column 'id'\): empty id"):
        read_protocol(tmp_path / "list.csv")


def test_read_protocols_concatenates_and_refuses_shared_ids(tmp_path, audio_for):
    (tmp_path / "extra.csv").write_text("id,path,label\nnew-1,n1.flac,spoof\nLA_T_1435437,n2.flac,spoof\n")
    la = FIXTURES / "asvspoof2019_la.txt"
    audio = audio_for("asvspoof2019_la.txt")
    items = read_protocols([la, FIXTURES / "generic_header.csv"], [audio, None])
    assert [i.utt_id for i in items] == [*_ids(la), "clips/a", "clips/b", "clips/c"]
    assert items[0].path.parent == audio and items[-1].path == FIXTURES / "clips/c.wav"
    with pytest.raises(ProtocolError, match=rf"extra.csv:3: utterance id 'LA_T_1435437' is also in {la}:3"):
        read_protocols([la, tmp_path / "extra.csv"], [audio, None])


@pytest.mark.parametrize(("classes", "labels"), [(("bonafide", "spoof"), (BONAFIDE, SPOOF)),
                                                  (("real", "fake"), (BONAFIDE, SPOOF))])
def test_folder_layouts(tmp_path, classes, labels):
    _audio(tmp_path / classes[0], "b1.wav", "b2.flac")
    _audio(tmp_path / classes[1] / "vocoderX", "s1.wav")
    _audio(tmp_path / classes[1], "s2.ogg")
    (tmp_path / classes[1] / "notes.txt").write_text("not audio")
    items = read_protocol(tmp_path)
    assert [i.utt_id for i in items] == [f"{classes[0]}/b1", f"{classes[0]}/b2", f"{classes[1]}/s2",
                                         f"{classes[1]}/vocoderX/s1"]
    assert [i.label for i in items] == [labels[0], labels[0], labels[1], labels[1]]
    assert [i.system for i in items] == ["-", "-", "-", "vocoderX"]


def test_folder_without_class_folders(tmp_path):
    _audio(tmp_path / "clips", "a.wav")
    with pytest.raises(ProtocolError, match="bonafide/ \\+ spoof/"):
        read_protocol(tmp_path)


def test_malformed_line_names_file_and_line(audio_for):
    path = FIXTURES / "bad_columns.txt"
    with pytest.raises(ProtocolError, match=rf"{path}:3: expected 5 columns .* got 4"):
        read_protocol(path, format="asvspoof2019", audio_dir=audio_for("asvspoof2019_la.txt"))


def test_unknown_label_names_value_and_line(audio_for):
    path = FIXTURES / "bad_label.txt"  # line 3 is blank: the error must still say line 4
    with pytest.raises(ProtocolError, match=rf"{path}:4 \(column 5\): unknown label 'spoofed-ish'"):
        read_protocol(path, format="asvspoof2019", audio_dir=audio_for("asvspoof2019_la.txt"))
    with pytest.raises(ProtocolError, match=r"bad_label.csv:3 \(column 'label'\): unknown label 'maybe'"):
        read_protocol(FIXTURES / "bad_label.csv")


def test_duplicate_ids(audio_for):
    with pytest.raises(ProtocolError, match=r"duplicate_id.txt:3: duplicate utterance id 'LA_T_1138215' \(first on line 1\)"):
        read_protocol(FIXTURES / "duplicate_id.txt", audio_dir=audio_for("asvspoof2019_la.txt"))


def test_undetectable_and_unknown_formats(tmp_path):
    with pytest.raises(ProtocolError, match="cannot detect the protocol format.*--format"):
        read_protocol(FIXTURES / "mixed_layouts.txt")
    with pytest.raises(ProtocolError, match="unknown protocol format 'kaldi'"):
        read_protocol(FIXTURES / "asvspoof2019_la.txt", format="kaldi")
    with pytest.raises(ProtocolError, match="protocol not found"):
        read_protocol(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("\n# only a comment\n")
    with pytest.raises(ProtocolError, match="empty protocol"):
        read_protocol(tmp_path / "empty.txt")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ProtocolError, match="not a UTF-8 text protocol"):
        read_protocol(tmp_path / "binary.txt")


@pytest.mark.skipif(not (SHARED / "corpus").is_dir(), reason="needs ../shared/corpus beside the repository")
def test_shared_corpus_protocols():
    corpus = SHARED / "corpus"
    items = read_protocol(corpus / "protocols" / "smoke.txt", audio_dir=corpus / "flac")
    assert len(items) == 40 and sum(i.label == BONAFIDE for i in items) == 20
    assert all(i.path.is_file() for i in items)
    assert len({i.system for i in items}) == 16  # "-" plus the 15 dev systems
