"""Window helpers: which windows cover a clip, how a short clip fills one, framing."""

from __future__ import annotations

import numpy as np
import pytest

from rawguard.windows import crop_or_pad, fill_window, frame, window_starts


def test_window_starts_cover_every_sample():
    assert window_starts(100, 200, 50).tolist() == [0]
    assert window_starts(200, 200, 50).tolist() == [0]
    assert window_starts(250, 100, 100).tolist() == [0, 100, 150]  # last aligned to the end
    assert window_starts(300, 100, 100).tolist() == [0, 100, 200]  # already ends at the end
    for length, window, hop in ((101, 100, 30), (64_601, 64_600, 16_000), (100_003, 64_600, 16_000)):
        starts = window_starts(length, window, hop)
        covered = np.zeros(length, bool)
        for s in starts:
            covered[s:s + window] = True
        assert covered.all() and starts[-1] + window == length and np.all(np.diff(starts) > 0)
    with pytest.raises(ValueError, match="hop must be positive"):
        window_starts(10, 5, 0)


def test_crop_or_pad_tiles_short_and_crops_long():
    wave = np.arange(1, 8, dtype=np.int16)
    np.testing.assert_array_equal(crop_or_pad(wave, 17, np.random.default_rng(0)), np.tile(wave, 3)[:17])
    long = np.arange(1000, dtype=np.int16)
    np.testing.assert_array_equal(crop_or_pad(long, 100), long[:100])
    crops = [crop_or_pad(long, 100, np.random.default_rng(seed)) for seed in range(5)]
    for crop in crops:  # contiguous slices of the clip
        np.testing.assert_array_equal(crop, long[crop[0]:crop[0] + 100])
    assert len({int(c[0]) for c in crops}) > 1
    np.testing.assert_array_equal(crops[3], crop_or_pad(long, 100, np.random.default_rng(3)))
    with pytest.raises(ValueError, match="non-empty 1-D"):
        crop_or_pad(np.zeros(0, np.int16), 10)


def test_fill_window_writes_into_a_batch_row_without_rescaling():
    batch = np.full((2, 10), -1.0, dtype=np.float32)
    fill_window(batch[1], np.arange(25, dtype=np.float32), 15)
    np.testing.assert_array_equal(batch[1], np.arange(15, 25))
    fill_window(batch[0], np.array([3, 4, 5], dtype=np.int16), 7)  # short: tiled from the start
    np.testing.assert_array_equal(batch[0], [3, 4, 5, 3, 4, 5, 3, 4, 5, 3])


def test_frame_matches_window_starts_and_keeps_the_dtype():
    wave = (np.arange(2_500) % 300).astype(np.int16)
    starts, windows = frame(wave, 1_000, 400)
    assert windows.dtype == np.int16 and windows.shape == (starts.shape[0], 1_000)
    np.testing.assert_array_equal(starts, window_starts(2_500, 1_000, 400))
    for start, row in zip(starts, windows):
        np.testing.assert_array_equal(row, wave[start:start + 1_000])
    starts, windows = frame(wave[:300], 1_000)  # short: one tiled window
    assert starts.tolist() == [0]
    np.testing.assert_array_equal(windows[0], np.tile(wave[:300], 4)[:1_000])
    with pytest.raises(ValueError, match="non-empty 1-D"):
        frame(np.zeros((2, 3), np.int16), 10)
