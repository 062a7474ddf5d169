"""Atomic writes: the target is the old file or the complete new one, whatever happens mid-write."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from rawguard.atomic import atomic_open, write_text_atomic


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = write_text_atomic(tmp_path / "metrics.json", "old\n")
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write("half of the new")
        raise RuntimeError("writer failed")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_a_killed_writer_leaves_the_old_file_and_the_next_write_completes(tmp_path):
    target = write_text_atomic(tmp_path / "scores.txt", "old\n")
    script = textwrap.dedent(f"""
        import os, signal
        from rawguard.atomic import atomic_open
        with atomic_open({str(target)!r}, "wb") as handle:
            handle.write(b"partial" * 1000)
            handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    assert subprocess.run([sys.executable, "-c", script]).returncode == -9
    assert target.read_text() == "old\n"
    assert (tmp_path / ".scores.txt.tmp").exists()  # the leftover is the next write's temporary name
    write_text_atomic(target, "new\n")
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.txt"]


def test_only_write_modes_are_accepted(tmp_path):
    with pytest.raises(ValueError, match="mode must be 'w' or 'wb'"), atomic_open(tmp_path / "x", "a"):
        pass
