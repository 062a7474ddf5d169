"""Corpus protocol readers: every supported layout becomes one ``list[Item]``.

Supported formats (``FORMATS``; ``format="auto"`` detects them from the first lines):

========================  ==========================================================================
``asvspoof2019``          ASVspoof 2019 LA ``SPK UTT - SYS KEY`` and PA ``SPK UTT ENV ATTACK KEY``
``asvspoof2021-la``       2021 LA keys ``SPK UTT CODEC TRANSMISSION ATTACK KEY TRIM SUBSET``
``asvspoof2021-df``       2021 DF keys ``SPK UTT CODEC SOURCE ATTACK KEY TRIM SUBSET VOCODER ...``
``asvspoof5``             ``SPK UTT GENDER CODEC CODEC_Q CODEC_SEED ATTACK_TAG ATTACK_LABEL KEY -``
``in-the-wild``           ``meta.csv`` with header ``file,speaker,label`` (``bona-fide`` / ``spoof``)
``csv``                   ``[id,]path,label[,speaker,system]``; ``id`` only with a header row
``folder``                a directory with ``bonafide/`` + ``spoof/`` (or ``real/`` + ``fake/``)
========================  ==========================================================================

The whitespace formats are one table (:data:`_TABLES`): which column holds the id, speaker, system
and key, and which columns are kept as ``Item.extra`` fields. Their audio is found by id +
extension (``.flac`` first, then ``.wav``, then the other :data:`rawguard.audio.AUDIO_EXTENSIONS`)
under ``audio_dir`` (default: the protocol's folder; a ``flac/`` or ``wav/`` subfolder is searched
too, as in the ASVspoof distributions). CSV paths are relative to the CSV's folder unless
``audio_dir`` is given; a CSV's id is its ``id`` column when the header has one, else the path
without its suffix.

:func:`read_protocols` reads several protocols into one list (``rawguard prepare A B ...``), with
utterance ids unique across all of them.

Bona fide items always get ``system="-"`` (ASVspoof 5 writes ``bonafide`` there) so per-system
summaries do not count bona fide as an attack.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rawguard.audio import AUDIO_EXTENSIONS
from rawguard.conventions import BONAFIDE, SPOOF, parse_label

NO_SYSTEM = "-"
"""System / speaker value used where a corpus has none (bona fide clips, folder layouts)."""

# How many non-empty lines auto-detection inspects: enough to see past a few odd first rows.
_DETECT_LINES = 50


class ProtocolError(ValueError):
    """A protocol cannot be read: malformed line, unknown label or format; names file and line."""


@dataclass(frozen=True)
class Item:
    """One utterance of a corpus.

    Attributes:
        utt_id: unique utterance id (file stem for ASVspoof, a CSV's id column, else the relative path
            without suffix).
        path: audio file (may not exist: ``prepare`` then rejects it with a reason).
        label: :data:`rawguard.conventions.BONAFIDE` (1) or ``SPOOF`` (0).
        speaker: speaker id, ``"-"`` if unknown.
        system: attack / spoofing system id, ``"-"`` for bona fide or unknown.
        extra: other protocol columns by name (codec, transmission, vocoder, gender, ...).
    """

    utt_id: str
    path: Path
    label: int
    speaker: str
    system: str
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Table:
    """Column layout of a whitespace-separated protocol."""

    columns: int  # exact column count, or the minimum when ``more_allowed``
    utt: int
    speaker: int
    system: int
    key: int
    extra: dict[str, int]
    more_allowed: bool = False

    def fits(self, fields: list[str]) -> bool:
        return len(fields) == self.columns or (self.more_allowed and len(fields) > self.columns)


_TABLES: dict[str, _Table] = {
    "asvspoof2019": _Table(5, utt=1, speaker=0, system=3, key=4, extra={"environment": 2}),
    "asvspoof2021-la": _Table(
        8, utt=1, speaker=0, system=4, key=5, extra={"codec": 2, "transmission": 3, "trim": 6, "subset": 7}
    ),
    "asvspoof2021-df": _Table(
        9, utt=1, speaker=0, system=4, key=5,
        extra={"codec": 2, "source": 3, "trim": 6, "subset": 7, "vocoder": 8}, more_allowed=True,
    ),
    "asvspoof5": _Table(
        10, utt=1, speaker=0, system=7, key=8,
        extra={"gender": 2, "codec": 3, "codec_q": 4, "codec_seed": 5, "attack_tag": 6},
    ),
}

_CSV_FORMATS = ("in-the-wild", "csv")
FORMATS: tuple[str, ...] = (*_TABLES, *_CSV_FORMATS, "folder")
"""Names accepted by ``read_protocol(format=...)`` besides ``"auto"``."""

_FORMAT_ALIASES = {"itw": "in-the-wild", "asvspoof2019-la": "asvspoof2019", "asvspoof2019-pa": "asvspoof2019"}
_FOLDER_CLASSES = {"bonafide": BONAFIDE, "bona-fide": BONAFIDE, "bona_fide": BONAFIDE, "real": BONAFIDE,
                   "genuine": BONAFIDE, "spoof": SPOOF, "fake": SPOOF}


def _label(value: str, where: str) -> int:
    try:
        return parse_label(value)
    except ValueError as error:
        raise ProtocolError(f"{where}: {error}") from None


def _is_label(value: str) -> bool:
    """A word label (``0``/``1`` are accepted when reading but too ambiguous to detect a layout by)."""
    if value.isdigit():
        return False
    try:
        parse_label(value)
    except ValueError:
        return False
    return True


def _data_lines(path: Path) -> list[tuple[int, str]]:
    """(1-based line number, stripped text) of every non-empty, non-comment line."""
    try:
        with open(path, encoding="utf-8-sig") as handle:  # -sig: drop a byte-order mark if present
            return [(n, line.strip()) for n, line in enumerate(handle, 1) if line.strip() and not line.startswith("#")]
    except UnicodeDecodeError as error:
        raise ProtocolError(f"{path}: not a UTF-8 text protocol ({error.reason} at byte {error.start})") from None


class _AudioIndex:
    """Maps an utterance id to its audio file under a folder, listing the folder once."""

    def __init__(self, base: Path):
        self._found: dict[str, Path] = {}
        rank = {ext: i for i, ext in enumerate(AUDIO_EXTENSIONS)}
        # Later folders never override earlier ones; within a folder, the extension order decides.
        for folder in (base, base / "flac", base / "wav"):
            if not folder.is_dir():
                continue
            found_here: dict[str, tuple[int, Path]] = {}
            with os.scandir(folder) as entries:
                for entry in entries:
                    stem, ext = os.path.splitext(entry.name)
                    r = rank.get(ext.lower())
                    if r is None or stem in self._found or not entry.is_file():
                        continue
                    if stem not in found_here or r < found_here[stem][0]:
                        found_here[stem] = (r, Path(entry.path))
            self._found.update((stem, p) for stem, (_, p) in found_here.items())

    def __call__(self, utt_id: str) -> Path | None:
        return self._found.get(utt_id)


def _read_table(path: Path, table: _Table, audio_dir: Path, name: str) -> list[tuple[int, Item]]:
    lookup = _AudioIndex(audio_dir)
    items = []
    for lineno, line in _data_lines(path):
        fields = line.split()
        where = f"{path}:{lineno}"
        if not table.fits(fields):
            expected = f"{table.columns}{'+' if table.more_allowed else ''}"
            raise ProtocolError(f"{where}: expected {expected} columns for format {name!r}, got {len(fields)}: {line!r}")
        label = _label(fields[table.key], f"{where} (column {table.key + 1})")
        utt = fields[table.utt]
        system = NO_SYSTEM if label == BONAFIDE else fields[table.system]
        # "-" is the ASVspoof spelling of "not applicable": leave such fields out.
        extra = {key: fields[i] for key, i in table.extra.items() if fields[i] != "-"}
        item = Item(utt, lookup(utt) or audio_dir / f"{utt}.flac", label, fields[table.speaker], system, extra)
        items.append((lineno, item))
    if items and not any(lookup(item.utt_id) for _, item in items):
        raise ProtocolError(
            f"{path}: none of the {len(items)} utterance ids has an audio file under {audio_dir} "
            f"(looked for <id>{{{','.join(AUDIO_EXTENSIONS[:2])},...}} there and in flac/, wav/); check --audio-dir"
        )
    return items


def _csv_rows(path: Path) -> list[tuple[int, list[str]]]:
    rows = []
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        for row in reader:
            if row and any(cell.strip() for cell in row) and not row[0].startswith("#"):
                rows.append((reader.line_num, [cell.strip() for cell in row]))
    return rows


def _read_csv(path: Path, audio_dir: Path | None, name: str) -> list[tuple[int, Item]]:
    try:
        rows = _csv_rows(path)
    except (UnicodeDecodeError, csv.Error) as error:
        raise ProtocolError(f"{path}: cannot parse CSV: {error}") from None
    if not rows:
        return []
    header = [cell.lower() for cell in rows[0][1]]
    has_header = any(cell in ("id", "path", "file", "label", "speaker", "system") for cell in header)
    if name == "in-the-wild":
        columns = {"path": "file", "label": "label", "speaker": "speaker"}
        if not has_header or not all(c in header for c in columns.values()):
            raise ProtocolError(f"{path}:{rows[0][0]}: In-the-Wild meta.csv needs the header file,speaker,label; got {rows[0][1]}")
    elif has_header:
        columns = {key: key for key in ("id", "path", "label", "speaker", "system") if key in header}
        if "path" not in columns and "file" in header:
            columns["path"] = "file"
        if "path" not in columns or "label" not in columns:
            raise ProtocolError(f"{path}:{rows[0][0]}: CSV header needs 'path' and 'label' columns; got {rows[0][1]}")
    position = {key: header.index(col) for key, col in columns.items()} if has_header else None
    base = audio_dir if audio_dir is not None else path.parent
    extra_names = [h for h in header if h not in columns.values()] if has_header else []
    items = []
    for lineno, row in rows[1:] if has_header else rows:
        where = f"{path}:{lineno}"
        if position is None:
            if not 2 <= len(row) <= 4:
                raise ProtocolError(f"{where}: expected path,label[,speaker,system] (2-4 columns), got {len(row)}: {row}")
            values = dict(zip(("path", "label", "speaker", "system"), row))
        else:
            if len(row) != len(header):
                raise ProtocolError(f"{where}: expected {len(header)} columns as in the header, got {len(row)}: {row}")
            values = {key: row[i] for key, i in position.items()}
        if not values["path"]:
            raise ProtocolError(f"{where}: empty path")
        label = _label(values["label"], f"{where} (column 'label')")
        rel = Path(values["path"])
        # An explicit id lets two CSVs name copies of the same file differently (synth-spoof does).
        utt = values["id"] if "id" in values else rel.with_suffix("").as_posix()
        if not utt:
            raise ProtocolError(f"{where} (column 'id'): empty id")
        system = values.get("system") or NO_SYSTEM
        extra = {h: row[header.index(h)] for h in extra_names}
        speaker = values.get("speaker") or NO_SYSTEM
        items.append((lineno, Item(utt, base / rel, label, speaker, NO_SYSTEM if label == BONAFIDE else system, extra)))
    return items


def _read_folder(root: Path) -> list[tuple[int, Item]]:
    # Bona fide folders first, then spoof; files sorted by path: a stable order on every OS.
    classes = sorted(((entry.name, _FOLDER_CLASSES[entry.name.lower()]) for entry in root.iterdir()
                      if entry.is_dir() and entry.name.lower() in _FOLDER_CLASSES),
                     key=lambda pair: (pair[1] != BONAFIDE, pair[0]))
    if not classes:
        raise ProtocolError(f"{root}: folder layout needs class subfolders bonafide/ + spoof/ (or real/ + fake/)")
    items = []
    for folder, label in classes:
        for file in sorted((root / folder).rglob("*")):
            if file.suffix.lower() not in AUDIO_EXTENSIONS or not file.is_file():
                continue
            rel = file.relative_to(root / folder)
            # spoof/<system>/x.wav names the attack system; flat class folders have none.
            system = rel.parts[0] if len(rel.parts) > 1 and label != BONAFIDE else NO_SYSTEM
            utt = file.relative_to(root).with_suffix("").as_posix()
            items.append((0, Item(utt, file, label, NO_SYSTEM, system, {})))
    return items


def detect_format(path: str | os.PathLike) -> str:
    """Name of the format of ``path`` (one of :data:`FORMATS`), judged from its first lines.

    Raises:
        ProtocolError: when no format, or more than one, fits every inspected line.
    """
    path = Path(path)
    if path.is_dir():
        return "folder"
    lines = _data_lines(path)[:_DETECT_LINES]
    if not lines:
        raise ProtocolError(f"{path}: empty protocol (no data lines)")
    first = lines[0][1]
    if "," in first or path.suffix.lower() == ".csv":
        header = [cell.strip().lower() for cell in first.split(",")]
        return "in-the-wild" if header[:1] == ["file"] and {"speaker", "label"} <= set(header) else "csv"
    fitting = [
        name for name, table in _TABLES.items()
        if all(table.fits(f := text.split()) and _is_label(f[table.key]) for _, text in lines)
    ]
    if len(fitting) != 1:
        counts = sorted({len(text.split()) for _, text in lines})
        what = "no known format" if not fitting else f"several formats ({', '.join(fitting)})"
        raise ProtocolError(
            f"{path}: cannot detect the protocol format: {what} fits the first {len(lines)} lines "
            f"(column counts {counts}); name it with --format (one of {', '.join(FORMATS)})"
        )
    return fitting[0]


def read_protocol(
    path: str | os.PathLike,
    audio_dir: str | os.PathLike | None = None,
    format: str = "auto",
) -> list[Item]:
    """Read a protocol (or class-folder tree) into items, in protocol order.

    Args:
        path: protocol file, CSV, or folder (``format="folder"``).
        audio_dir: where audio lives: ids are looked up there (ASVspoof formats) and CSV paths are
            relative to it. Default: the protocol's own folder.
        format: one of :data:`FORMATS`, or ``"auto"`` to detect it.

    Returns:
        ``list[Item]``, never empty.

    Raises:
        ProtocolError: naming file and line for a malformed line, an unknown label (with its value),
            a duplicate id, an undetectable or unknown format, a missing file, or no records.
    """
    return [item for _, item in _read_numbered(Path(path), audio_dir, format)]


def read_protocols(
    paths: Sequence[str | os.PathLike],
    audio_dirs: Sequence[str | os.PathLike | None] | None = None,
    format: str = "auto",
) -> list[Item]:
    """Read several protocols into one list: the items of ``paths[0]``, then ``paths[1]``, ...

    Args:
        paths: protocol files, CSVs or folders (at least one).
        audio_dirs: one per path (``None``: that protocol's default, its own folder); ``None``
            for all defaults.
        format: applied to every protocol (``"auto"`` detects each one's own).

    Returns:
        ``list[Item]``, never empty.

    Raises:
        ProtocolError: as :func:`read_protocol`, or an utterance id that two protocols share
            (naming both protocols, with lines, and the id): one cache needs unique ids.
    """
    audio_dirs = [None] * len(paths) if audio_dirs is None else list(audio_dirs)
    if not paths or len(audio_dirs) != len(paths):
        raise ValueError(f"need one audio_dir per protocol: {len(paths)} protocols, {len(audio_dirs)} audio_dirs")
    first: dict[str, str] = {}  # utt_id -> "protocol:line" where it was first seen
    merged: list[Item] = []
    for path, audio_dir in zip(map(Path, paths), audio_dirs):
        for lineno, item in _read_numbered(path, audio_dir, format):
            where = f"{path}:{lineno}" if lineno else str(path)  # folder layouts have no lines
            if item.utt_id in first:
                raise ProtocolError(f"{where}: utterance id {item.utt_id!r} is also in {first[item.utt_id]}; "
                                    "ids must be unique across the protocols read together")
            first[item.utt_id] = where
            merged.append(item)
    return merged


def _read_numbered(path: Path, audio_dir: str | os.PathLike | None, format: str) -> list[tuple[int, Item]]:
    """The body of :func:`read_protocol`: (line number, item) pairs, line 0 for folder layouts."""
    if not path.exists():
        raise ProtocolError(f"{path}: protocol not found")
    name = _FORMAT_ALIASES.get(format.lower(), format.lower())
    if name == "auto":
        name = detect_format(path)
    if name not in FORMATS:
        raise ProtocolError(f"{path}: unknown protocol format {format!r} (expected auto or one of {', '.join(FORMATS)})")
    if name == "folder":
        if not path.is_dir():
            raise ProtocolError(f"{path}: format 'folder' needs a directory")
        items = _read_folder(path)
    elif path.is_dir():
        raise ProtocolError(f"{path}: is a directory; use format 'folder' or pass a protocol file")
    elif name in _CSV_FORMATS:
        items = _read_csv(path, Path(audio_dir) if audio_dir is not None else None, name)
    else:
        items = _read_table(path, _TABLES[name], Path(audio_dir) if audio_dir is not None else path.parent, name)
    if not items:
        raise ProtocolError(f"{path}: no records (format {name!r})")
    first_line: dict[str, int] = {}
    for lineno, item in items:
        if item.utt_id in first_line:
            raise ProtocolError(f"{path}:{lineno}: duplicate utterance id {item.utt_id!r} (first on line {first_line[item.utt_id]})")
        first_line[item.utt_id] = lineno
    return items
