"""Fixtures shared by the training tests: the learnable toy cache, and torch's thread count
restored after each test (training sets ``train.threads``, which is process-wide)."""

from __future__ import annotations

import pytest
import torch

from rawguard.data.cache import Cache
from helpers.training import make_toy_cache


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Cache:
    """Tones (bona fide) against noise (spoof), 24 clips each; one per test module."""
    return make_toy_cache(tmp_path_factory.mktemp("toy"))


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def one_thread():
    """One torch thread for the test (scores then do not depend on how work is split across threads)."""
    torch.set_num_threads(1)
    yield
