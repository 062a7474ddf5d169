"""``rawguard score PATH... --out``: the same results as ``--json``, resumed after SIGKILL, bad files
in the errors file, and torchrun ranks that agree with one process (real corpus clips)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from rawguard.cli import main

from helpers.checkpoints import FLAC, SELECTION, SMOKE, save_tiny_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.pt", SELECTION)


def smoke_folder(folder: Path, copies: int = 1) -> list[Path]:
    """The 40 smoke clips linked into ``folder`` (``copies`` names each, in subfolders)."""
    if not SMOKE.exists():
        pytest.skip("shared corpus not found")
    ids = [line.split()[1] for line in SMOKE.read_text().splitlines() if line.strip()]
    made = []
    for copy in range(copies):
        sub = folder / f"copy{copy}"
        sub.mkdir(parents=True)
        for utt in ids:
            (sub / f"{utt}.flac").symlink_to(FLAC / f"{utt}.flac")
            made.append(sub / f"{utt}.flac")
    return made


def records(path: Path) -> dict[str, dict]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    counts = Counter(r["path"] for r in lines)
    assert max(counts.values(), default=1) == 1, [p for p, n in counts.items() if n > 1][:3]  # each file once
    return {r["path"]: r for r in lines}


def assert_same_scores(got: dict[str, dict], expected: dict[str, dict]) -> None:
    assert sorted(got) == sorted(expected)
    for path, record in expected.items():
        assert got[path]["score"] == pytest.approx(record["score"], abs=1e-5), path
        assert got[path]["decision"] == record["decision"] or abs(record["score"] - record["threshold"]) < 1e-5
        assert [w["start"] for w in got[path]["windows"]] == [w["start"] for w in record["windows"]]


def score_command(checkpoint: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "rawguard.cli", "score", "--checkpoint", str(checkpoint), "--threads", "1", *args]


def test_out_writes_the_json_schema_and_a_rerun_scores_nothing(checkpoint, tmp_path, capsys):
    folder = tmp_path / "clips"
    smoke_folder(folder)
    assert main(["score", "--checkpoint", str(checkpoint), str(folder), "--json"]) == 0
    printed = {r["path"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    out = tmp_path / "results.jsonl"
    assert main(["score", "--checkpoint", str(checkpoint), str(folder), "--out", str(out), "--workers", "2"]) == 0
    written = records(out)
    assert_same_scores(written, printed)
    for path, record in printed.items():  # the same keys in the same order: one schema
        assert list(written[path]) == list(record)
    assert "scored 40 files" in capsys.readouterr().err
    before = out.read_bytes()
    assert main(["score", "--checkpoint", str(checkpoint), str(folder), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "scored 0 files" in err and "40 already done" in err
    assert out.read_bytes() == before


def test_bad_files_go_to_the_errors_file_and_are_not_retried(checkpoint, tmp_path, capsys):
    folder = tmp_path / "clips"
    clips = smoke_folder(folder)
    (folder / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    cut = folder / "cut.flac"
    cut.write_bytes(clips[0].read_bytes()[:3000])  # a FLAC stream cut short
    out = tmp_path / "results.jsonl"
    assert main(["score", "--checkpoint", str(checkpoint), str(folder), "--out", str(out)]) == 1
    errors = {r["path"]: r["reason"] for r in map(json.loads, (tmp_path / "results.errors.jsonl").read_text().splitlines())}
    assert set(errors) == {str(folder / "corrupt.wav"), str(cut)}
    assert "unreadable or corrupt" in errors[str(folder / "corrupt.wav")]
    assert "truncated" in errors[str(cut)] or "corrupt" in errors[str(cut)]
    assert len(records(out)) == 40
    capsys.readouterr()
    assert main(["score", "--checkpoint", str(checkpoint), str(folder), "--out", str(out)]) == 0
    assert "42 already done" in capsys.readouterr().err
    # A file replaced by a good one is scored again: its error line goes, its result comes.
    shutil.copyfile(clips[1], cut)
    assert main(["score", "--checkpoint", str(checkpoint), str(folder), "--out", str(out)]) == 0
    assert len(records(out)) == 41 and str(cut) in records(out)
    assert [json.loads(line)["path"] for line in (tmp_path / "results.errors.jsonl").read_text().splitlines()] == [str(folder / "corrupt.wav")]


def _kill_when(process: subprocess.Popen, out: Path, lines: int, timeout: float = 240) -> int:
    """SIGKILL the scoring process once ``out`` holds ``lines`` lines; returns the lines then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        count = out.read_bytes().count(b"\n") if out.exists() else 0
        if count >= lines or process.poll() is not None:
            break
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    return count


def _session_gone(pgid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_sigkill_at_any_moment_then_rerun_scores_each_file_once(checkpoint, tmp_path):
    folder = tmp_path / "clips"
    total = len(smoke_folder(folder, copies=4))  # 160 files: long enough to kill part way
    reference = tmp_path / "reference.jsonl"
    done = subprocess.run(score_command(checkpoint, str(folder), "--out", str(reference), "--batch-size", "8"),
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    expected = records(reference)
    assert len(expected) == total

    out = tmp_path / "killed" / "results.jsonl"
    command = score_command(checkpoint, str(folder), "--out", str(out), "--batch-size", "8", "--workers", "2")
    for kill_at in (20, 70):
        process = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        seen = _kill_when(process, out, kill_at)
        assert process.returncode == -signal.SIGKILL and seen < total  # killed part way, not after the end
        assert _session_gone(process.pid), "decoder processes outlived the killed scoring process"
        # Whatever the kill left (a torn line, a result without its key), the rerun repairs it.
        with open(out, "ab") as handle:
            handle.write(b'{"score": 0.5, "probability_bonafide": 0.')
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert_same_scores(records(out), expected)
    assert "bytes of torn last lines" in done.stderr  # the torn line was found and cut
    assert not (tmp_path / "killed" / "results.errors.jsonl").read_text()


def test_two_torchrun_ranks_give_the_single_process_scores(checkpoint, tmp_path):
    folder = tmp_path / "clips"
    smoke_folder(folder)
    single = tmp_path / "single.jsonl"
    assert main(["score", "--checkpoint", str(checkpoint), str(folder), "--out", str(single)]) == 0
    out = tmp_path / "ranks"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
               "rawguard.cli", "score", "--checkpoint", str(checkpoint), "--threads", "1", str(folder), "--out", str(out)]
    for attempt in range(3):
        done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
        # gloo's TCP transport on a busy machine can abort a rank (see test_ddp.py); resuming is the point here
        if done.returncode == 0 or "terminate called without an active exception" not in done.stderr:
            break
    assert done.returncode == 0, done.stderr[-3000:]
    parts = [records(out / f"part-{rank}.jsonl") for rank in (0, 1)]
    assert parts[0] and parts[1] and not set(parts[0]) & set(parts[1])  # disjoint, non-empty shards
    merged = records(out / "results.jsonl")
    assert_same_scores(merged, records(single))
    assert "merged 40 results and 0 errors" in done.stderr
    first = (out / "results.jsonl").read_bytes()
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "results.jsonl").read_bytes() == first  # nothing rescored, the merge is idempotent
    assert done.stderr.count("scored 0 files") == 2


def test_out_file_with_several_ranks_is_refused(checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    folder = tmp_path / "clips"
    smoke_folder(folder)
    assert main(["score", "--checkpoint", str(checkpoint), str(folder), "--out", str(tmp_path / "r.jsonl")]) == 2
    assert "give a folder" in capsys.readouterr().err
    assert main(["score", "--checkpoint", str(checkpoint), str(folder), "--out", str(tmp_path / "r.jsonl"),
                 "--workers", "0"]) == 2
    assert "--workers" in capsys.readouterr().err


def test_onnx_backend_gives_the_pytorch_scores(checkpoint, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    folder = tmp_path / "clips"
    smoke_folder(folder)
    torch_out, onnx_out = tmp_path / "torch.jsonl", tmp_path / "onnx.jsonl"
    assert main(["score", "--checkpoint", str(checkpoint), str(folder), "--out", str(torch_out)]) == 0
    assert main(["score", "--checkpoint", str(checkpoint), str(folder), "--out", str(onnx_out), "--backend", "onnx"]) == 0
    got, expected = records(onnx_out), records(torch_out)
    assert sorted(got) == sorted(expected)
    for path in expected:
        assert got[path]["score"] == pytest.approx(expected[path]["score"], abs=1e-4)
    capsys.readouterr()
    assert main(["score", "--checkpoint", str(checkpoint), str(folder), "--json", "--onnx", str(tmp_path / "m.onnx")]) == 2
    assert "give --backend onnx" in capsys.readouterr().err


def test_bf16_scores_near_fp32_and_fp16_on_cpu_is_refused(checkpoint, tmp_path, capsys):
    folder = tmp_path / "clips"
    smoke_folder(folder)
    fp32, bf16 = tmp_path / "fp32.jsonl", tmp_path / "bf16.jsonl"
    assert main(["score", "--checkpoint", str(checkpoint), str(folder), "--out", str(fp32)]) == 0
    assert main(["score", "--checkpoint", str(checkpoint), str(folder), "--out", str(bf16), "--precision", "bf16"]) == 0
    got, expected = records(bf16), records(fp32)
    assert sorted(got) == sorted(expected)
    differences = [abs(got[p]["score"] - expected[p]["score"]) for p in expected]
    assert 0 < max(differences) < 0.05  # bf16 really ran, and stays close
    capsys.readouterr()
    assert main(["score", "--checkpoint", str(checkpoint), str(folder), "--json", "--precision", "fp16"]) == 2
    assert "fp16 needs a CUDA device" in capsys.readouterr().err
