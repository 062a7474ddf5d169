"""The one windowed scorer: packing windows across waveforms, regrouping scores, score_cache, errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from rawguard import Detector
from rawguard.audio import load_audio
from rawguard.conventions import INT16_SCALE
from rawguard.data.cache import Cache
from rawguard.data.prepare import prepare_cache
from rawguard.data.protocols import read_protocol
from rawguard.scoring import ScoringError, WindowBatch, WindowScorer, pack_windows, score_cache
from rawguard.windows import crop_or_pad, window_starts

from helpers.checkpoints import SELECTION, SMOKE, WINDOW, corpus_files, save_tiny_checkpoint, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")
HOP = WINDOW // 2


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return tiny_model(seed=1).eval()


@pytest.fixture(scope="module")
def waves() -> list[np.ndarray]:
    """Real clips of several lengths: multi-window ones, and one shorter than a window (tiled)."""
    clips = [load_audio(path) for path in corpus_files(4)]
    return [clips[0], clips[1][: WINDOW // 3], np.concatenate([clips[2], clips[3]]), clips[3]]


@pytest.fixture(scope="module")
def smoke_cache(tmp_path_factory) -> Cache:
    """Six smoke clips of both classes, prepared as ``rawguard prepare`` would."""
    if not SMOKE.is_file():
        pytest.skip("shared corpus not found")
    items = read_protocol(SMOKE, SMOKE.parents[1] / "flac")
    chosen = [item for item in items if item.label == 1][:3] + [item for item in items if item.label == 0][:3]
    directory = tmp_path_factory.mktemp("scoring") / "cache"
    prepare_cache(chosen, directory, workers=1, progress=False)
    return Cache.open(directory)


def one_window_at_a_time(model: torch.nn.Module, wave: np.ndarray, window: int, hop: int) -> np.ndarray:
    with torch.no_grad():
        return np.array([
            float(torch.diff(model(torch.from_numpy(crop_or_pad(wave[s:s + window], window))[None]))[0, 0])
            for s in window_starts(wave.shape[0], window, hop)
        ])


def test_pack_windows_fills_every_batch_and_covers_every_window(waves):
    batches = list(pack_windows(enumerate(waves), WINDOW, HOP, batch_size=5))
    expected = [(i, int(s)) for i, wave in enumerate(waves) for s in window_starts(wave.shape[0], WINDOW, HOP)]
    assert [b.x.shape[0] for b in batches[:-1]] == [5] * (len(batches) - 1) and 0 < batches[-1].x.shape[0] <= 5
    rows = [(int(owner), row) for b in batches for owner, row in zip(b.owners, b.x)]
    assert [owner for owner, _ in rows] == [i for i, _ in expected]
    for (owner, row), (_, start) in zip(rows, expected):
        np.testing.assert_array_equal(row, crop_or_pad(waves[owner][start:start + WINDOW], WINDOW))
    opened = [entry for b in batches for entry in b.opened]
    assert [(position, key, length) for position, key, _, length in opened] == [(i, i, w.shape[0]) for i, w in enumerate(waves)]
    for (_, _, starts, _), wave in zip(opened, waves):
        np.testing.assert_array_equal(starts, window_starts(wave.shape[0], WINDOW, HOP))
    # Full length: each waveform alone, whole; a clip under min_samples is tiled up to it.
    whole = list(pack_windows(enumerate(waves), None, batch_size=5, min_samples=6000))
    assert [b.x.shape for b in whole] == [(1, max(w.shape[0], 6000)) for w in waves]
    np.testing.assert_array_equal(whole[1].x[0], crop_or_pad(waves[1], 6000))


def test_stream_scores_equal_one_window_at_a_time(model, waves):
    scorer = WindowScorer(model, WINDOW, HOP, batch_size=5)
    results = list(scorer.score_stream((f"clip{i}", w) for i, w in enumerate(waves)))
    assert [r.key for r in results] == ["clip0", "clip1", "clip2", "clip3"]
    for result, wave in zip(results, waves):
        expected = one_window_at_a_time(model, wave, WINDOW, HOP)
        np.testing.assert_allclose(result.scores, expected, atol=1e-5)
        np.testing.assert_array_equal(result.starts, window_starts(wave.shape[0], WINDOW, HOP))
        assert result.length == wave.shape[0] and result.score == pytest.approx(expected.mean(), abs=1e-5)
    assert len(results[1].scores) == 1 and len(results[2].scores) > 5  # tiled short clip; one over several batches
    # Batch size changes how windows are grouped, not what they score.
    again = WindowScorer(model, WINDOW, HOP, batch_size=64).score_waves(waves)
    for a, b in zip(results, again):
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)


def test_batches_packed_elsewhere_score_like_a_stream(model, waves):
    # What a decoder process sends: pickled batches; the scorer regroups them the same way.
    batches = [pickle.loads(pickle.dumps(b)) for b in pack_windows(enumerate(waves), WINDOW, HOP, batch_size=4)]
    scorer = WindowScorer(model, WINDOW, HOP, batch_size=4)
    for a, b in zip(scorer.score_batches(batches), scorer.score_waves(waves)):
        assert a.key == b.key and a.length == b.length
        np.testing.assert_array_equal(a.scores, b.scores)
    # Two decoders' chunks interleaved: the short clip's window sits among the long one's rows.
    (whole,) = pack_windows([("long", np.concatenate(waves)), ("short", waves[1])], WINDOW, HOP, batch_size=64)
    n = len(whole.owners)  # the long recording's rows, then the short clip's one row
    first = WindowBatch(whole.x[np.r_[0:3, n - 1]], whole.owners[np.r_[0:3, n - 1]], whole.opened)
    rest = WindowBatch(whole.x[3:n - 1], whole.owners[3:n - 1], [])
    expected = {s.key: s.scores for s in scorer.score_batches([whole])}
    for ordered, short_after in ((True, 2), (False, 1)):
        consumed = []
        batches_seen = (consumed.append(b) or b for b in (first, rest))
        results = {s.key: (s, len(consumed)) for s in scorer.score_batches(batches_seen, ordered=ordered)}
        assert results["short"][1] == short_after  # unordered: not held back behind the long recording
        for key, (scored, _) in results.items():
            np.testing.assert_allclose(scored.scores, expected[key], atol=1e-5)
    with pytest.raises(ScoringError, match="do not match the windows it was opened with"):
        list(scorer.score_batches(batches[1:]))  # the first batch, which opened waveform 0, is missing
    with pytest.raises(ScoringError, match="windows scored when the batches ended"):
        list(scorer.score_batches(batches[:1]))


def test_int16_and_float32_streams_score_the_same(model, waves):
    pcm = [np.round(w * INT16_SCALE).clip(-32768, 32767).astype(np.int16) for w in waves]
    scorer = WindowScorer(model, WINDOW, HOP, batch_size=7)
    from_int16 = scorer.score_waves(pcm)
    from_float = scorer.score_waves([(p / INT16_SCALE).astype(np.float32) for p in pcm])
    for a, b in zip(from_int16, from_float):
        np.testing.assert_array_equal(a.scores, b.scores)  # the int16 -> float conversion is exact


def test_stream_is_lazy_and_yields_before_a_bad_waveform(model, waves):
    def stream():
        yield "a", waves[0]
        yield "b", waves[1]
        yield "empty", np.zeros(0, np.float32)
        raise AssertionError("the scorer read past the bad waveform")

    scored = WindowScorer(model, WINDOW, HOP, batch_size=2).score_stream(stream())
    first = next(scored)
    assert first.key == "a"  # scored as soon as its windows are, before the rest is read
    with pytest.raises(ScoringError, match="waveform 'empty': expected a non-empty 1-D array"):
        list(scored)


@pytest.mark.parametrize(
    ("waves", "message"),
    [
        ([("two-d", np.zeros((2, 100), np.float32))], r"waveform 'two-d': expected a non-empty 1-D array, got \(2, 100\)"),
        ([("f64", np.zeros(100))], "waveform 'f64': expected int16 or float32 samples, got float64"),
        ([("a", np.zeros(100, np.float32)), ("b", np.zeros(100, np.int16))],
         "waveform 'b': int16 samples in a stream of float32"),
        ([("list", [0.0] * 100)], "waveform 'list': expected a non-empty 1-D array, got list"),
    ],
)
def test_bad_waveforms_name_their_key(model, waves, message):
    with pytest.raises(ScoringError, match=message):
        list(WindowScorer(model, WINDOW).score_stream(waves))


def test_bad_options_and_model_output(model):
    with pytest.raises(ScoringError, match="window: 100 samples is shorter than the model's minimum input"):
        WindowScorer(model, 100)
    with pytest.raises(ScoringError, match="hop: must be a positive number of samples, got 0"):
        WindowScorer(model, WINDOW, 0)
    with pytest.raises(ScoringError, match="batch_size: must be positive"):
        WindowScorer(model, WINDOW, batch_size=0)
    from rawguard.config import ConfigError

    # The scorer's own option is named, not the training config's train.precision.
    with pytest.raises(ConfigError, match=r"^precision: fp16 needs a CUDA device"):
        WindowScorer(model, WINDOW, precision="fp16")
    with pytest.raises(ConfigError, match=r"^precision: unknown precision 'fp8'"):
        WindowScorer(model, WINDOW, precision="fp8")
    wave = np.zeros(WINDOW, np.float32)
    three_logits = torch.nn.Sequential(torch.nn.Linear(WINDOW, 3))
    with pytest.raises(ScoringError, match=r"expected \[B, 2\] logits with B=1, got \(1, 3\)"):
        WindowScorer(three_logits, WINDOW).score_waves([wave])
    diverged = torch.nn.Sequential(torch.nn.Linear(WINDOW, 2))
    torch.nn.init.constant_(diverged[0].bias, float("nan"))
    with pytest.raises(ScoringError, match="non-finite logits"):
        WindowScorer(diverged, WINDOW).score_waves([wave])


def test_score_cache_equals_detector_on_the_same_clips(smoke_cache, tmp_path):
    detector = Detector.from_checkpoint(save_tiny_checkpoint(tmp_path / "best.pt", SELECTION, seed=2), batch_size=1)
    detector.model.train()  # dev selection scores a model in training mode: eval while scoring, then restored
    one_by_one = score_cache(detector.model, smoke_cache, WINDOW, HOP, batch_size=1)
    assert detector.model.training
    detector.model.eval()
    batched = score_cache(detector.model, smoke_cache, WINDOW, HOP, batch_size=64)
    assert one_by_one.dtype == np.float32 and one_by_one.shape == (len(smoke_cache),)
    from_files = np.array([detector.score_file(path).score for path in smoke_cache.paths])
    # Same windows, same batches of one, same float32 arithmetic: the same numbers, from int16
    # cache samples and from decoded files alike.
    np.testing.assert_array_equal(one_by_one, from_files.astype(np.float32))
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    assert len(set(one_by_one.tolist())) == len(smoke_cache)  # distinct clips, distinct scores
