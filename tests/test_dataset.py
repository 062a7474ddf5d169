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
from rawguard.data.dataset import TrainBatches, group_weights, speaker_matched_weights, to_float
from rawguard.data.prepare import prepare_cache
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
    batches = TrainBatches(cache, window=8000, batch_size=8, seed=0, balanced=True)
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
    proportional = TrainBatches(cache, window=8000, batch_size=8, seed=0, balanced=True).epoch_order(0)
    assert is_copy[proportional].sum() == 15  # without copy_share: each spoof clip once
    for share, expected in ((0.25, 5), (0.0, 0), (1.0, 20)):
        batches = TrainBatches(cache, window=8000, batch_size=8, seed=0, balanced=True, copy_share=share)
        order = batches.epoch_order(0)
        assert len(order) == 40 and (cache.labels[order] == BONAFIDE).sum() == 20
        assert is_copy[order].sum() == expected, share
        assert np.array_equal(order, batches.epoch_order(0))  # still a function of (seed, epoch)
    corpus_draws = np.bincount(order[~is_copy[order] & (cache.labels[order] == SPOOF)], minlength=len(cache))
    assert corpus_draws.sum() == 0  # share 1.0: no corpus spoof at all
    with pytest.raises(ValueError, match="needs balanced sampling"):
        TrainBatches(cache, window=8000, batch_size=8, copy_share=0.3)
    no_copies = Cache.open(_plain_cache(tmp_path, smoke_items))
    with pytest.raises(ValueError, match="copy-synthesis spoofs, but the cache has none"):
        TrainBatches(no_copies, window=8000, batch_size=8, balanced=True, copy_share=0.3)


def test_speaker_matched_weights_raise_speakers_that_spoofs_copy_and_ignore_tts_voices():
    # bona fide: A twice, B and C once; spoofs: three copies of B and one TTS voice
    speakers = ["A", "A", "B", "C", "B", "B", "B", "TTS_1"]
    bonafide, spoofs = np.arange(4), np.arange(4, 8)
    weights = speaker_matched_weights(speakers, bonafide, [(spoofs, 1.0)])
    # uniform shares A 1/2, B 1/4, C 1/4; B's spoof share 3/4 -> A 1/2, B 3/4, C 1/4, renormalised
    assert np.allclose(weights, [1 / 6, 1 / 6, 1 / 2, 1 / 6])
    # two groups of half the draws each, one a copy of A: spoof shares A 1/2, B 3/8 -> A 1/2, B 3/8,
    # C 1/4 (A's share was already 1/2), renormalised by 9/8
    weights = speaker_matched_weights(speakers + ["A"], bonafide, [(spoofs, 0.5), (np.array([8]), 0.5)])
    assert np.allclose(weights, [2 / 9, 2 / 9, 1 / 3, 2 / 9])
    # no spoof names a bona fide speaker: every clip equally often, as without the option
    assert np.allclose(speaker_matched_weights(speakers[:4] + ["X"] * 4, bonafide, [(spoofs, 1.0)]), 0.25)


@needs_corpus
def test_speaker_matched_draws_follow_the_weights_and_keep_the_classes_balanced(tmp_path, smoke_items):
    # 10 of the 20 spoofs become copies of the first bona fide clip's speaker
    bonafide = [i for i in smoke_items if i.label == BONAFIDE]
    spoofs = [i for i in smoke_items if i.label == SPOOF]
    copied = bonafide[0].speaker
    items = bonafide + [dataclasses.replace(i, speaker=copied) for i in spoofs[:10]] + spoofs[10:]
    prepare_cache(items, tmp_path / "c", workers=1, progress=False)
    cache = Cache.open(tmp_path / "c")
    batches = TrainBatches(cache, window=8000, batch_size=8, seed=0, balanced=True, speaker_matched=True)
    order = batches.epoch_order(0)
    assert len(order) == 40 and (cache.labels[order] == BONAFIDE).sum() == 20
    draws = np.bincount(order[cache.labels[order] == BONAFIDE], minlength=len(cache))
    of_copied = np.array([s == copied for s in cache.speakers]) & (cache.labels == BONAFIDE)
    # that speaker's share: 1/20 of the bona fide clips, 10/20 of the spoofs -> 0.5 / (0.5 + 19/20) of
    # the bona fide draws: 6.9 of 20, against 1 without the option
    assert of_copied.sum() == 1 and draws[of_copied].sum() == 7
    expected = 20 * batches._bonafide_weights
    assert np.all(np.abs(draws[cache.labels == BONAFIDE] - expected) < 1)  # floor or ceil of the expectation
    assert np.array_equal(order, batches.epoch_order(0))
    assert not np.array_equal(order, batches.epoch_order(1))
    with pytest.raises(ValueError, match="speaker_matched needs balanced sampling"):
        TrainBatches(cache, window=8000, batch_size=8, speaker_matched=True)


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


def test_group_weights_within_groups_split_each_groups_share_among_its_subgroups():
    # system A: 8 clips of voice "lj", 2 of "other"; system B: 4 clips of one voice
    systems = ["A"] * 10 + ["B"] * 4
    voices = ["lj"] * 8 + ["other"] * 2 + ["b"] * 4
    members = np.arange(14)
    weights = group_weights(systems, members, 0.5, voices, 1.0)
    root = np.sqrt([10, 4]) / np.sqrt([10, 4]).sum()
    assert np.isclose(weights[:10].sum(), root[0]) and np.isclose(weights[10:].sum(), root[1])  # systems as before
    assert np.isclose(weights[:8].sum(), weights[8:10].sum())  # within A: each voice half of A's share
    assert np.allclose(weights[:8], weights[0]) and np.allclose(weights[8:10], weights[8])
    half = group_weights(systems, members, 0.5, voices, 0.5)
    assert np.isclose(half[:8].sum() / half[8:10].sum(), np.sqrt(8 / 2))  # sqrt of the counts
    assert np.allclose(group_weights(systems, members, 0.5, voices, 0.0), group_weights(systems, members, 0.5))
    plain = group_weights(systems, members, 0.0, voices, 1.0)  # systems by their counts, voices evened out
    assert np.isclose(plain[:10].sum(), 10 / 14) and np.isclose(plain[:8].sum(), 5 / 14)


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
        batches = TrainBatches(cache, window=8000, batch_size=8, seed=0, balanced=True, system_balance=balance)
        order = batches.epoch_order(0)
        assert len(order) == 40 and (cache.labels[order] == BONAFIDE).sum() == 20
        assert (systems[order] == "small").sum() == small_draws, balance
        assert np.array_equal(order, batches.epoch_order(0))
    with pytest.raises(ValueError, match="system_balance needs balanced sampling"):
        TrainBatches(cache, window=8000, batch_size=8, system_balance=0.5)
    # Within "big" (15 clips): 12 of one voice, 3 of another (in proportion: 4 of 20 draws).
    voiced = bonafide + [dataclasses.replace(i, system="big", speaker="lj" if k < 12 else "other")
                         for k, i in enumerate(spoofs[:15])]
    prepare_cache(voiced, tmp_path / "v", workers=1, progress=False)
    voiced_cache = Cache.open(tmp_path / "v")
    for balance, other_draws in ((0.5, {6, 7}), (1.0, {10})):  # of 20 spoof draws: a third (sqrt 3 : sqrt 12), half
        batches = TrainBatches(voiced_cache, window=8000, batch_size=8, balanced=True, spoof_speaker_balance=balance)
        order = batches.epoch_order(0)
        spoof_order = order[voiced_cache.labels[order] == SPOOF]
        assert len(spoof_order) == 20
        assert (np.array(voiced_cache.speakers)[spoof_order] == "other").sum() in other_draws, balance
    with pytest.raises(ValueError, match="spoof_speaker_balance needs balanced sampling"):
        TrainBatches(cache, window=8000, batch_size=8, spoof_speaker_balance=0.5)
    with pytest.raises(ConfigError, match="data.spoof_speaker_balance: needs data.balanced"):
        load_config(overrides=["data.spoof_speaker_balance=0.5"])
    with pytest.raises(ConfigError, match=r"data.spoof_speaker_balance: must be in \[0, 1\]"):
        load_config(overrides=["data.balanced=true", "data.spoof_speaker_balance=-1"])
    with pytest.raises(ValueError, match=r"system_balance must be in \[0, 1\]"):
        TrainBatches(cache, window=8000, batch_size=8, balanced=True, system_balance=1.5)


@needs_corpus
def test_speaker_balance_draws_rare_speakers_more_and_leaves_the_spoofs_alone(tmp_path, smoke_items):
    # bona fide: 16 clips of one reader "many", 4 of "few"; spoofs as they are
    bonafide = [i for i in smoke_items if i.label == BONAFIDE]
    spoofs = [i for i in smoke_items if i.label == SPOOF]
    items = [dataclasses.replace(i, speaker="many") for i in bonafide[:16]] + \
        [dataclasses.replace(i, speaker="few") for i in bonafide[16:]] + spoofs
    prepare_cache(items, tmp_path / "c", workers=1, progress=False)
    cache = Cache.open(tmp_path / "c")
    speakers = np.array(cache.speakers)
    orders = {}
    for balance, few_draws in ((0.0, {4}), (0.5, {6, 7}), (1.0, {10})):  # 0.5: 20 x 2/(4+2) = 6.7, floor or ceil
        batches = TrainBatches(cache, window=8000, batch_size=8, seed=0, balanced=True, speaker_balance=balance)
        order = orders[balance] = batches.epoch_order(0)
        bona = order[cache.labels[order] == BONAFIDE]
        assert len(order) == 40 and len(bona) == 20
        assert (speakers[bona] == "few").sum() in few_draws, balance
    spoof_draws = {b: np.sort(o[cache.labels[o] == SPOOF]) for b, o in orders.items()}
    assert np.array_equal(spoof_draws[0.0], spoof_draws[1.0])  # the spoof half is untouched
    with pytest.raises(ValueError, match="speaker_balance needs balanced sampling"):
        TrainBatches(cache, window=8000, batch_size=8, speaker_balance=0.5)
    with pytest.raises(ValueError, match="speaker_balance and speaker_matched together"):
        TrainBatches(cache, window=8000, batch_size=8, balanced=True, speaker_balance=0.5, speaker_matched=True)
    with pytest.raises(ConfigError, match=r"data.speaker_balance: must be in \[0, 1\]"):
        load_config(overrides=["data.balanced=true", "data.speaker_balance=2"])
    with pytest.raises(ConfigError, match="data.speaker_balance: needs data.balanced"):
        load_config(overrides=["data.speaker_balance=0.5"])


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
