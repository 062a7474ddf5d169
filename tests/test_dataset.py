"""Training / evaluation windows over a real cache of the smoke set: policies and determinism."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from rawguard.config import ConfigError, load_config
from rawguard.conventions import BONAFIDE, DEFAULT_WINDOW, INT16_SCALE, SPOOF
from rawguard.data.cache import Cache
from rawguard.data.dataset import TrainBatches, to_float
from rawguard.data.prepare import prepare_cache
from rawguard.data.sampling import Sampling, SamplingError, group_weights
from rawguard.data.protocols import read_protocol
from rawguard.windows import crop_or_pad

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
SMOKE = CORPUS / "protocols" / "smoke.txt"
needs_corpus = pytest.mark.skipif(not SMOKE.is_file(), reason="needs ../shared/corpus beside the repository")


@pytest.fixture(scope="module")
def smoke_items():
    return read_protocol(SMOKE, audio_dir=CORPUS / "flac")


@pytest.fixture(scope="module")
def cache(tmp_path_factory, smoke_items) -> Cache:
    out = tmp_path_factory.mktemp("ds") / "cache"
    prepare_cache(smoke_items, out, workers=1, progress=False)
    return Cache.open(out)


# ---- pure functions ----------------------------------------------------------------------------

def test_to_float_scale_and_type():
    x = torch.tensor([[-32768, 0, 16384, 32767]], dtype=torch.int16)
    y = to_float(x)
    assert y.dtype == torch.float32 and y.shape == (1, 4)
    assert y[0, 0] == -1.0 and y[0, 2] == 0.5 and y[0, 3] == 32767 / INT16_SCALE
    with pytest.raises(TypeError, match="int16"):
        to_float(y)


# ---- training batches --------------------------------------------------------------------------

def _is_window_of(row: np.ndarray, wave: np.ndarray) -> bool:
    if wave.shape[0] < row.shape[0]:
        return np.array_equal(row, crop_or_pad(wave, row.shape[0]))
    starts = np.flatnonzero(wave[: wave.shape[0] - row.shape[0] + 1] == row[0])
    return any(np.array_equal(wave[s:s + row.shape[0]], row) for s in starts)


@needs_corpus
def test_epoch_is_a_permutation_of_valid_windows(cache):
    batches = TrainBatches(cache, window=DEFAULT_WINDOW, batch_size=8, seed=7)
    assert batches.batches_per_epoch == len(batches) == 5
    seen = []
    order = batches.epoch_order(0)
    for b, (x, y) in enumerate(batches.epoch(0)):
        assert x.dtype == torch.int16 and x.shape == (8, DEFAULT_WINDOW) and y.dtype == torch.int64
        indices = order[b * 8:(b + 1) * 8]
        assert y.tolist() == cache.labels[indices].tolist()
        for row, i in zip(x.numpy(), indices):
            assert _is_window_of(row, cache.waveform(i))
        seen.extend(indices.tolist())
    assert sorted(seen) == list(range(40))


@needs_corpus
def test_batches_are_a_function_of_seed_epoch_and_index(cache):
    a = TrainBatches(cache, window=16_000, batch_size=8, seed=1)
    first = [x.clone() for x, _ in a.epoch(3)]
    again = [x for x, _ in TrainBatches(cache, window=16_000, batch_size=8, seed=1, prefetch=0).epoch(3)]
    assert all(torch.equal(p, q) for p, q in zip(first, again))
    resumed = [x for x, _ in a.epoch(3, start_batch=2)]
    assert len(resumed) == 3 and all(torch.equal(p, q) for p, q in zip(first[2:], resumed))
    other_epoch = [x for x, _ in a.epoch(4)]
    other_seed = [x for x, _ in TrainBatches(cache, window=16_000, batch_size=8, seed=2).epoch(3)]
    assert not torch.equal(first[0], other_epoch[0]) and not torch.equal(first[0], other_seed[0])
    with pytest.raises(ValueError, match="start_batch 6 outside"):
        a.epoch(0, start_batch=6)


@needs_corpus
def test_ranks_split_the_global_batch(cache):
    whole = list(TrainBatches(cache, window=20_000, batch_size=10, seed=5).epoch(2))
    parts = [list(TrainBatches(cache, window=20_000, batch_size=5, seed=5, rank=r, world_size=2).epoch(2))
             for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == len(whole) == 4
    for b, (x, y) in enumerate(whole):
        assert torch.equal(torch.cat([parts[0][b][0], parts[1][b][0]]), x)
        assert torch.equal(torch.cat([parts[0][b][1], parts[1][b][1]]), y)
    with pytest.raises(ValueError, match="rank 2 outside world_size 2"):
        TrainBatches(cache, batch_size=5, rank=2, world_size=2)
    with pytest.raises(ValueError, match="less than one global batch"):
        TrainBatches(cache, batch_size=32, world_size=2)


@needs_corpus
def test_balanced_sampling_on_a_skewed_cache(tmp_path, smoke_items):
    skewed = [i for i in smoke_items if i.label == BONAFIDE] + [i for i in smoke_items if i.label == SPOOF][:5]
    prepare_cache(skewed, tmp_path / "c", workers=1, progress=False)
    cache = Cache.open(tmp_path / "c")
    batches = TrainBatches(cache, window=8000, batch_size=8, seed=0, sampling=Sampling(balanced=True))
    order = batches.epoch_order(0)
    assert len(order) == batches.epoch_size == 40
    spoof_draws = np.bincount(order[cache.labels[order] == SPOOF], minlength=len(cache))[20:]
    assert spoof_draws.tolist() == [4] * 5  # each of the 5 spoof clips 4 times
    assert sorted(order[cache.labels[order] == BONAFIDE].tolist()) == list(range(20))
    y = torch.cat([y for _, y in batches.epoch(0)])
    assert (y == BONAFIDE).sum() == (y == SPOOF).sum() == 20


@needs_corpus
def test_copy_share_splits_the_spoof_draws_between_corpus_spoofs_and_copies(tmp_path, smoke_items):
    # 20 bona fide, 5 corpus spoofs, and the other 15 spoofs relabelled as copy-synthesis systems
    spoofs = [i for i in smoke_items if i.label == SPOOF]
    copies = [dataclasses.replace(i, system="synth-lpc") for i in spoofs[5:]]
    prepare_cache([i for i in smoke_items if i.label == BONAFIDE] + spoofs[:5] + copies, tmp_path / "c",
                  workers=1, progress=False)
    cache = Cache.open(tmp_path / "c")
    is_copy = np.array([s.startswith("synth-") for s in cache.systems])
    proportional = TrainBatches(cache, window=8000, batch_size=8, seed=0, sampling=Sampling(balanced=True)).epoch_order(0)
    assert is_copy[proportional].sum() == 15  # without copy_share: each spoof clip once
    for share, expected in ((0.25, 5), (0.0, 0), (1.0, 20)):
        batches = TrainBatches(cache, window=8000, batch_size=8, seed=0, sampling=Sampling(balanced=True, copy_share=share))
        order = batches.epoch_order(0)
        assert len(order) == 40 and (cache.labels[order] == BONAFIDE).sum() == 20
        assert is_copy[order].sum() == expected, share
        assert np.array_equal(order, batches.epoch_order(0))  # still a function of (seed, epoch)
    corpus_draws = np.bincount(order[~is_copy[order] & (cache.labels[order] == SPOOF)], minlength=len(cache))
    assert corpus_draws.sum() == 0  # share 1.0: no corpus spoof at all
    with pytest.raises(SamplingError, match=r"sampling.copy_share: needs sampling.balanced"):
        TrainBatches(cache, window=8000, batch_size=8, sampling=Sampling(copy_share=0.3))
    no_copies = Cache.open(_plain_cache(tmp_path, smoke_items))
    with pytest.raises(ValueError, match="copy-synthesis spoofs, but the cache has none"):
        TrainBatches(no_copies, window=8000, batch_size=8, sampling=Sampling(balanced=True, copy_share=0.3))


def test_group_weights_move_from_clip_counts_to_equal_groups():
    systems = ["A"] * 6 + ["B"] * 2 + ["C"] + ["bonafide-not-a-member"]
    members = np.arange(9)

    def shares(balance):
        weights = group_weights(systems, members, balance)
        return [weights[:6].sum(), weights[6:8].sum(), weights[8]]

    assert np.allclose(shares(0.0), [6 / 9, 2 / 9, 1 / 9])  # each clip equally often
    assert np.allclose(shares(1.0), [1 / 3, 1 / 3, 1 / 3])  # each system equally often
    root = np.sqrt([6, 2, 1])
    assert np.allclose(shares(0.5), root / root.sum())
    weights = group_weights(systems, members, 0.5)
    assert np.allclose(weights[:6], weights[0]) and np.isclose(weights.sum(), 1.0)  # equal within a system


@needs_corpus
def test_system_balance_draws_rare_systems_more_and_keeps_classes_balanced(tmp_path, smoke_items):
    # 20 bona fide; spoofs: 15 of system "big", 5 of "small"
    bonafide = [i for i in smoke_items if i.label == BONAFIDE]
    spoofs = [i for i in smoke_items if i.label == SPOOF]
    items = bonafide + [dataclasses.replace(i, system="big") for i in spoofs[:15]] + \
        [dataclasses.replace(i, system="small") for i in spoofs[15:]]
    prepare_cache(items, tmp_path / "c", workers=1, progress=False)
    cache = Cache.open(tmp_path / "c")
    systems = np.array(cache.systems)
    for balance, small_draws in ((0.0, 5), (1.0, 10)):
        batches = TrainBatches(cache, window=8000, batch_size=8, seed=0, sampling=Sampling(balanced=True, system_balance=balance))
        order = batches.epoch_order(0)
        assert len(order) == 40 and (cache.labels[order] == BONAFIDE).sum() == 20
        assert (systems[order] == "small").sum() == small_draws, balance
        assert np.array_equal(order, batches.epoch_order(0))
    with pytest.raises(SamplingError, match=r"sampling.system_balance: needs sampling.balanced"):
        TrainBatches(cache, window=8000, batch_size=8, sampling=Sampling(system_balance=0.5))
    with pytest.raises(ConfigError, match=r"data.sampling.system_balance: must be in \[0, 1\]"):
        load_config(overrides=["data.sampling.balanced=true", "data.sampling.system_balance=-1"])
    with pytest.raises(ConfigError, match="data.sampling.system_balance: needs data.sampling.balanced"):
        load_config(overrides=["data.sampling.system_balance=0.5"])
    with pytest.raises(SamplingError, match=r"sampling.system_balance: must be in \[0, 1\]"):
        TrainBatches(cache, window=8000, batch_size=8, sampling=Sampling(balanced=True, system_balance=1.5))


def _plain_cache(tmp_path: Path, items) -> Path:
    prepare_cache(items, tmp_path / "plain", workers=1, progress=False)
    return tmp_path / "plain"


@needs_corpus
def test_prefetch_stops_when_consumer_leaves_and_forwards_errors(cache, monkeypatch):
    before = threading.active_count()
    batches = TrainBatches(cache, window=8000, batch_size=4, seed=0, prefetch=2)
    for _ in zip(range(2), batches.epoch(0)):
        pass
    assert threading.active_count() == before
    calls = {"n": 0}
    real = cache.waveform

    def failing(i):
        calls["n"] += 1
        if calls["n"] > 6:
            raise OSError("disk gone")
        return real(i)

    monkeypatch.setattr(cache, "waveform", failing)
    with pytest.raises(OSError, match="disk gone"):
        list(batches.epoch(0))
    assert threading.active_count() == before
