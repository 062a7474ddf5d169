"""rawguard.parallel: worker processes started with one BLAS / OpenMP thread each."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import pytest

from rawguard.parallel import THREAD_VARIABLES, one_thread_per_child


def _thread_settings(_: int) -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in THREAD_VARIABLES}


def test_children_started_in_the_block_get_one_thread_and_the_parent_gets_its_settings_back(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    spawn = multiprocessing.get_context("spawn")
    with one_thread_per_child(), ProcessPoolExecutor(max_workers=2, mp_context=spawn) as pool:
        seen = list(pool.map(_thread_settings, range(4)))
    assert seen == [dict.fromkeys(THREAD_VARIABLES, "1")] * 4
    assert os.environ["OMP_NUM_THREADS"] == "7"
    assert "OPENBLAS_NUM_THREADS" not in os.environ and "MKL_NUM_THREADS" not in os.environ


def test_the_settings_come_back_when_the_block_raises(monkeypatch):
    monkeypatch.setenv("MKL_NUM_THREADS", "3")
    with pytest.raises(RuntimeError, match="a worker failed"), one_thread_per_child():
        assert os.environ["MKL_NUM_THREADS"] == "1"
        raise RuntimeError("a worker failed")
    assert os.environ["MKL_NUM_THREADS"] == "3"
