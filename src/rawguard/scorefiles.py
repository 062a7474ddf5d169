"""ASVspoof score files: read and write them, with errors that name the file and line.

Formats (the official ASVspoof 2019 CM format, optionally gzip-compressed):

- CM scores: ``UTT_ID ATTACK_ID KEY SCORE`` per line (``KEY`` bonafide/spoof, ``ATTACK_ID`` ``-`` for
  bona fide), or ``UTT_ID SCORE`` with labels and attacks taken from a protocol;
- ASV scores: ``KEY ASV_KEY SCORE`` per line (``ASV_KEY`` target/nontarget/spoof), as in the ASVspoof 2019
  release; a leading utterance-id column is accepted too.

``rawguard evaluate`` writes ``scores.txt`` with :func:`write_cm_scores`; ``rawguard metrics`` and
score fusion read score files with :func:`read_cm_scores` and :func:`read_asv_scores`.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rawguard.atomic import atomic_open
from rawguard.conventions import BONAFIDE, label_name, parse_label
from rawguard.metrics import MetricsError

__all__ = ["ScoreFileError", "ScoreTable", "open_text", "read_cm_scores", "read_asv_scores", "write_cm_scores"]


class ScoreFileError(MetricsError):
    """A score file cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class ScoreTable:
    """Trials of a CM score file.

    Attributes:
        utt_ids: ``[N]`` utterance ids (str).
        attacks: ``[N]`` attack ids (str, ``-`` for bona fide).
        labels: ``[N]`` int64 label ids (:data:`~rawguard.conventions.BONAFIDE` / ``SPOOF``).
        scores: ``[N]`` float64 scores.
        n_unscored: protocol trials that had no score (only when read with a protocol).
    """

    utt_ids: np.ndarray
    attacks: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    n_unscored: int = 0


def open_text(path: str | os.PathLike):
    """Open a text file for reading, transparently decompressing gzip (detected by its magic bytes)."""
    path = Path(path)
    if not path.is_file():
        raise ScoreFileError(f"{path}: file not found")
    with open(path, "rb") as handle:
        magic = handle.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _numbered_fields(path: Path):
    """Yield ``(line_number, fields)`` for non-empty, non-comment lines."""
    try:
        with open_text(path) as handle:
            for number, line in enumerate(handle, 1):
                fields = line.split()
                if fields and not fields[0].startswith("#"):
                    yield number, fields
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise ScoreFileError(f"{path}: cannot read ({error})") from error


def _parse_score(value: str, path: Path, number: int) -> float:
    try:
        score = float(value)
    except ValueError:
        raise ScoreFileError(f"{path}:{number}: score {value!r} is not a number") from None
    if not np.isfinite(score):
        raise ScoreFileError(f"{path}:{number}: score is {value} (NaN/inf scores cannot be evaluated)")
    return score


def read_cm_scores(
    path: str | os.PathLike,
    protocol: str | os.PathLike | None = None,
    audio_dir: str | os.PathLike | None = None,
) -> ScoreTable:
    """Read a CM score file (``UTT ATTACK KEY SCORE``, or ``UTT SCORE`` with ``protocol``).

    Args:
        path: score file, plain or gzip.
        protocol: any protocol :func:`rawguard.data.protocols.read_protocol` reads; needed for
            two-column files, which take label and attack (system) from it.
        audio_dir: the protocol's audio folder (the protocol reader checks that its ids have audio).

    Returns:
        :class:`ScoreTable` in file order.

    Raises:
        ScoreFileError: naming file and line for a wrong column count, an unknown key, a
            non-numeric/NaN score, a duplicate id, an id missing from the protocol, or an empty file.
    """
    path = Path(path)
    ids: list[str] = []
    attacks: list[str] = []
    labels: list[int] = []
    scores: list[float] = []
    lookup = None
    columns = None
    for number, fields in _numbered_fields(path):
        if columns is None:
            columns = len(fields)
            if columns not in (2, 4):
                hint = ""
                if columns == 3 and fields[1].lower() in ("target", "nontarget", "spoof"):
                    hint = " (this looks like an ASV score file: pass it with --asv-scores)"
                raise ScoreFileError(
                    f"{path}:{number}: expected 4 columns 'UTT ATTACK KEY SCORE' or 2 columns 'UTT SCORE', got {columns}{hint}"
                )
            if columns == 2:
                if protocol is None:
                    raise ScoreFileError(f"{path}: two-column score file 'UTT SCORE' needs a protocol for the labels")
                lookup = _protocol_lookup(protocol, audio_dir)
        if len(fields) != columns:
            raise ScoreFileError(f"{path}:{number}: expected {columns} columns like line 1, got {len(fields)}")
        utt = fields[0]
        if columns == 4:
            try:
                label = parse_label(fields[2])
            except ValueError as error:
                raise ScoreFileError(f"{path}:{number}: {error}") from None
            attack = fields[1]
        else:
            if utt not in lookup:
                raise ScoreFileError(f"{path}:{number}: utterance {utt!r} is not in protocol {protocol}")
            label, attack = lookup[utt]
        ids.append(utt)
        attacks.append(attack)
        labels.append(label)
        scores.append(_parse_score(fields[-1], path, number))
    if not ids:
        raise ScoreFileError(f"{path}: no scores")
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        for utt in ids:
            if utt in seen:
                raise ScoreFileError(f"{path}: utterance {utt!r} is scored twice")
            seen.add(utt)
    return ScoreTable(
        utt_ids=np.array(ids),
        attacks=np.array(attacks),
        labels=np.array(labels, dtype=np.int64),
        scores=np.array(scores, dtype=np.float64),
        n_unscored=len(lookup) - len(ids) if lookup is not None else 0,
    )


def _protocol_lookup(protocol: str | os.PathLike, audio_dir: str | os.PathLike | None) -> dict[str, tuple[int, str]]:
    from rawguard.data.protocols import read_protocol

    return {item.utt_id: (item.label, item.system) for item in read_protocol(protocol, audio_dir=audio_dir)}


def read_asv_scores(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read an ASVspoof ASV score file (``KEY ASV_KEY SCORE``, optionally after an utterance id).

    Returns:
        ``{"target": [N_t], "nontarget": [N_n], "spoof": [N_s]}`` float64 arrays.

    Raises:
        ScoreFileError: naming file and line for a wrong column count, unknown ASV key, bad score,
            or a missing trial type.
    """
    path = Path(path)
    groups: dict[str, list[float]] = {"target": [], "nontarget": [], "spoof": []}
    for number, fields in _numbered_fields(path):
        if len(fields) not in (3, 4):
            raise ScoreFileError(f"{path}:{number}: expected 'KEY ASV_KEY SCORE' (3 or 4 columns), got {len(fields)}")
        asv_key = fields[-2].lower()
        if asv_key not in groups:
            raise ScoreFileError(f"{path}:{number}: ASV key {fields[-2]!r} is not target, nontarget or spoof")
        groups[asv_key].append(_parse_score(fields[-1], path, number))
    empty = [key for key, values in groups.items() if not values]
    if empty:
        raise ScoreFileError(f"{path}: no ASV scores of type {', '.join(empty)} (all three are needed for t-DCF)")
    return {key: np.array(values, dtype=np.float64) for key, values in groups.items()}


def write_cm_scores(path: str | os.PathLike, utt_ids: Sequence[str], attacks: Sequence[str], labels, scores) -> Path:
    """Write ``UTT ATTACK KEY SCORE`` lines (official CM format; attack ``-`` for bona fide).

    Written to a temporary file and renamed, so a reader never sees half a file.
    """
    path = Path(path)
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    with atomic_open(path) as handle:
        for utt, attack, label, score in zip(utt_ids, attacks, labels, scores):
            attack = "-" if int(label) == BONAFIDE else (attack or "-")
            handle.write(f"{utt} {attack} {label_name(int(label))} {score:.6f}\n")
    return path
