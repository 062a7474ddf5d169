"""Tests for rawguard.augment: determinism, shapes, silent/clipped input, parameter validation, and
that each augmentation does to real speech what its documentation says."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from rawguard.augment import (
    ORDER, AugmentConfig, AugmentConfigError, AugmentError, batch_generator, build_augmenter,
    codec_simulation,
    companding, isd_additive_noise, lnl_convolutive_noise, random_gain, speed_perturbation, ssi_additive_noise,
    telephone_band,
)
from rawguard.augment.filters import kernel_response, kernel_spectrum, notch_responses
from rawguard.augment.speed import fast_length
from rawguard.conventions import SAMPLE_RATE

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
FUNCTIONS = dict(ORDER)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are small: on a loaded 2-core machine, intra-op threads waiting for each other
    made the module 10x slower than one thread does. Restored afterwards for other modules."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def all_on(p: float = 1.0) -> AugmentConfig:
    cfg = AugmentConfig(enabled=True)
    for name in cfg.names():
        getattr(cfg, name).p = p
    return cfg


@pytest.fixture(scope="module")
def speech() -> torch.Tensor:
    """Four real corpus clips (two bona fide, two spoof), cropped to 1 s: float32 [4, 16000]."""
    protocol = CORPUS / "protocols" / "smoke.txt"
    if not protocol.exists():
        pytest.skip(f"shared corpus not found at {CORPUS}")
    rows = [line.split() for line in protocol.read_text().splitlines() if line.strip()]
    picks = [r for r in rows if r[4] == "bonafide"][:2] + [r for r in rows if r[4] == "spoof"][:2]
    clips = []
    for row in picks:
        wave, rate = sf.read(CORPUS / "flac" / f"{row[1]}.flac", dtype="float32")
        assert rate == SAMPLE_RATE
        clips.append(torch.from_numpy(wave[4000:4000 + SAMPLE_RATE]))
    return torch.stack(clips)


def band_energy(x: torch.Tensor, low_hz: float, high_hz: float) -> torch.Tensor:
    """Energy of each example of x [B, T] between low_hz and high_hz -> [B] (Hann-windowed, so
    the crop's edges do not leak into the bands)."""
    spec = torch.fft.rfft(x * torch.hann_window(x.shape[-1])).abs() ** 2
    freqs = torch.fft.rfftfreq(x.shape[-1], 1 / SAMPLE_RATE)
    return spec[:, (freqs >= low_hz) & (freqs < high_hz)].sum(-1)


# --- determinism, shapes, dtypes -------------------------------------------------------------

@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_each_function_is_deterministic_under_a_seed_and_keeps_shape(name, speech):
    cfg = getattr(AugmentConfig(), name)
    fn = FUNCTIONS[name]
    a, b = fn(speech, cfg, gen(7)), fn(speech, cfg, gen(7))
    c = fn(speech, cfg, gen(8))
    assert a.shape == speech.shape and a.dtype == torch.float32 and a.device == speech.device
    assert torch.equal(a, b)
    assert not torch.equal(a, c), f"{name}: a different seed gave the same output"
    assert not torch.equal(a, speech), f"{name}: output equals input"


def test_augmenter_is_reproducible_from_the_generator_state(speech):
    augment = build_augmenter(all_on(0.5))
    speech = speech[:, :4000].contiguous()
    g = gen(3)
    state = g.get_state()
    first = augment(speech, g)
    second_batch = augment(speech, g)
    g.set_state(state)  # as the trainer does on resume
    assert torch.equal(augment(speech, g), first)
    assert torch.equal(augment(speech, g), second_batch)
    assert not torch.equal(first, second_batch)


def test_batch_generator_depends_only_on_its_coordinates(speech):
    augment = build_augmenter(all_on(0.5))
    short = speech[:, :4000].contiguous()
    first = augment(short, batch_generator(1, 2, 3))
    assert torch.equal(augment(short, batch_generator(1, 2, 3)), first)
    for other in [(1, 2, 4), (1, 3, 3), (0, 2, 13)]:
        assert not torch.equal(augment(short, batch_generator(*other)), first), other


def test_augmenter_leaves_input_untouched_and_off_config_is_identity(speech):
    before = speech.clone()
    out = build_augmenter(all_on())(speech, gen())
    assert torch.equal(speech, before)
    off = build_augmenter(AugmentConfig.off())
    assert not off and off.active == []
    assert torch.equal(off(speech, gen()), speech)
    disabled = all_on()
    disabled.enabled = False
    assert torch.equal(build_augmenter(disabled)(speech, gen()), speech)
    assert out.shape == speech.shape and out.dtype == torch.float32


def test_probability_selects_about_p_of_the_examples():
    cfg = AugmentConfig.off()
    cfg.enabled = True
    cfg.gain.p, cfg.gain.min_db, cfg.gain.max_db = 0.3, -6.0, -6.0
    x = torch.full((2000, 8), 0.5)
    changed = (build_augmenter(cfg)(x, gen()) != x).any(-1).float().mean().item()
    assert 0.25 < changed < 0.35  # binomial(2000, 0.3): sd ~ 0.01


@pytest.mark.parametrize("length", [1, 100, 16_001])
def test_odd_and_short_lengths(length):
    x = torch.randn(3, length, generator=gen(1)) * 0.1
    y = build_augmenter(all_on())(x, gen())
    assert y.shape == (3, length) and y.dtype == torch.float32 and torch.isfinite(y).all()


# --- silent and clipped input ----------------------------------------------------------------

@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_silent_input_stays_silent_and_finite(name):
    x = torch.zeros(2, 4000)
    y = FUNCTIONS[name](x, getattr(AugmentConfig(), name), gen())
    assert torch.isfinite(y).all()
    assert y.abs().max().item() == 0.0, f"{name} created signal out of digital silence"


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_clipped_input_gives_finite_output_within_full_scale(name):
    t = torch.arange(8000, dtype=torch.float32)
    square = torch.sign(torch.sin(2 * torch.pi * 440 * t / SAMPLE_RATE))  # hard-clipped tone
    x = torch.stack([square, torch.ones(8000), (3 * torch.sin(t / 7)).clamp(-1, 1)])
    cfg = getattr(AugmentConfig(), name)
    if hasattr(cfg, "max_db"):
        cfg.min_db = cfg.max_db = 12.0  # push a full-scale input further over
    y = FUNCTIONS[name](x, cfg, gen())
    assert torch.isfinite(y).all()
    assert y.abs().max().item() <= 1.0 + 1e-5


# --- behaviour on real speech ----------------------------------------------------------------

def test_notch_filter_stops_its_band_and_passes_the_rest():
    cfg = AugmentConfig().rawboost_lnl
    cfg.n_bands, cfg.min_freq, cfg.max_freq = 1, 2000.0, 2000.0
    cfg.min_bandwidth = cfg.max_bandwidth = 800.0
    cfg.min_taps = cfg.max_taps = 101
    kernels, radius = notch_responses((3,), cfg, gen(), torch.device("cpu"))
    assert torch.allclose(kernels, kernels.flip(-1), atol=1e-6)  # zero phase: symmetric
    mag = kernel_spectrum(kernels, radius, 1600).abs()  # bin k = 10 k Hz
    assert (mag[:, 200] < 0.1).all(), "no notch at 2 kHz"
    assert ((mag[:, 50] - 1).abs() < 0.05).all() and ((mag[:, 600] - 1).abs() < 0.05).all()


def test_interpolated_kernel_response_matches_the_exact_spectrum():
    kernels, radius = notch_responses((16, 5), AugmentConfig().rawboost_lnl, gen(), torch.device("cpu"))
    exact = kernel_spectrum(kernels, radius, 65_536)
    approx = kernel_response(kernels, radius, 65_536)
    assert exact.imag.abs().max() < 1e-5  # zero phase
    error = (exact.real - approx).abs().amax(-1) / exact.real.abs().amax(-1)
    assert error.max() < 1e-2, error.max()


def test_lnl_notches_real_speech_and_keeps_its_peak(speech):
    cfg = AugmentConfig().rawboost_lnl
    cfg.n_filters, cfg.n_bands = 1, 1
    cfg.min_freq = cfg.max_freq = 1000.0
    cfg.min_bandwidth = cfg.max_bandwidth = 600.0
    cfg.min_taps = cfg.max_taps = 101
    y = lnl_convolutive_noise(speech, cfg, gen())
    assert torch.allclose(y.abs().amax(-1), speech.abs().amax(-1), rtol=1e-4)
    ratio = band_energy(y, 900, 1100) / band_energy(speech, 900, 1100)
    assert (ratio < 0.05).all(), ratio


def test_ssi_adds_noise_at_the_drawn_snr(speech):
    cfg = AugmentConfig().rawboost_ssi
    cfg.min_snr_db = cfg.max_snr_db = 15.0
    y = ssi_additive_noise(speech, cfg, gen())
    snr = 10 * torch.log10(speech.pow(2).sum(-1) / (y - speech).pow(2).sum(-1))
    assert torch.allclose(snr, torch.full_like(snr, 15.0), atol=0.1), snr


def test_isd_hits_at_most_max_fraction_of_samples(speech):
    cfg = AugmentConfig().rawboost_isd
    cfg.max_fraction = 0.05
    y = isd_additive_noise(speech, cfg, gen())
    changed = (y != speech).float().mean(-1)
    assert (changed <= 0.06).all() and (changed > 0).any()


def test_telephone_band_removes_energy_outside_the_band(speech):
    cfg = AugmentConfig().telephone
    y = telephone_band(speech, cfg, gen())
    for low, high in [(0, 50), (4200, 8000)]:
        drop = band_energy(y, low, high) / band_energy(speech, low, high)
        assert (drop < 1e-2).all(), (low, high, drop)
    assert (band_energy(y, 600, 2500) / band_energy(speech, 600, 2500) > 0.8).all()


def test_codec_band_limits_and_quantises_at_about_the_drawn_snr(speech):
    cfg = AugmentConfig().codec
    cfg.min_cutoff_hz = cfg.max_cutoff_hz = 4000.0
    cfg.min_snr_db = cfg.max_snr_db = 12.0
    cfg.max_tilt_db = 0.0
    y = codec_simulation(speech, cfg, gen())
    assert (band_energy(y, 4300, 8000) / band_energy(speech, 4300, 8000) < 1e-2).all()
    # In band the error is the rounding noise: near the 12 dB target (spectral holes add some).
    low = torch.fft.irfft(torch.fft.rfft(speech) * (torch.fft.rfftfreq(speech.shape[-1], 1 / SAMPLE_RATE) < 3800))
    low_y = torch.fft.irfft(torch.fft.rfft(y) * (torch.fft.rfftfreq(y.shape[-1], 1 / SAMPLE_RATE) < 3800))
    snr = 10 * torch.log10(low.pow(2).sum(-1) / (low_y - low).pow(2).sum(-1))
    assert ((snr > 7) & (snr < 17)).all(), snr


@pytest.mark.parametrize("law", ["mu", "a"])
def test_companding_8_bit_round_trip_is_close_but_not_exact(speech, law):
    cfg = AugmentConfig().companding
    cfg.law = law
    y = companding(speech, cfg, gen())
    snr = 10 * torch.log10(speech.pow(2).sum(-1) / (y - speech).pow(2).sum(-1))
    assert ((snr > 25) & (snr < 45)).all(), snr  # G.711 gives ~35-38 dB on speech
    cfg.min_bits = cfg.max_bits = 4
    coarse = companding(speech, cfg, gen())
    assert (10 * torch.log10(speech.pow(2).sum(-1) / (coarse - speech).pow(2).sum(-1)) < snr - 15).all()


def test_speed_moves_a_tone_by_the_factor_and_keeps_its_level():
    t = torch.arange(SAMPLE_RATE, dtype=torch.float32) / SAMPLE_RATE  # 1 s: FFT bin k = k Hz
    tone = 0.5 * torch.sin(2 * torch.pi * 1000 * t)[None]
    cfg = AugmentConfig().speed
    for factor in (0.9, 1.1):
        cfg.min_factor = cfg.max_factor = factor
        y = speed_perturbation(tone, cfg, gen())
        effective = SAMPLE_RATE / fast_length(round(SAMPLE_RATE / factor))  # the FFT-friendly length's factor
        assert abs(effective / factor - 1) < 0.0045
        assert torch.fft.rfft(y[0]).abs().argmax().item() == round(1000 * effective)
        assert y.abs().max().item() == pytest.approx(0.5, abs=0.03)


def test_fast_length_is_13_smooth_and_close():
    def largest_prime_factor(n: int) -> int:
        factor, largest = 2, 1
        while n > 1:
            while n % factor == 0:
                n, largest = n // factor, factor
            factor += 1
        return largest

    assert fast_length(14_998) == 15_000 and fast_length(16_000) == 16_000 and fast_length(1) == 1
    for n in range(14_000, 18_500, 37):
        m = fast_length(n)
        assert largest_prime_factor(m) <= 13 and abs(m / n - 1) < 0.0045, n


def test_speed_band_limits_slowed_speech_and_keeps_real_speech_audible(speech):
    cfg = AugmentConfig().speed
    cfg.min_factor = cfg.max_factor = 0.8  # slower: nothing can be left above 0.8 x 8 kHz
    slow = speed_perturbation(speech, cfg, gen())
    assert (band_energy(slow, 6500, 8000) < 1e-6 * band_energy(slow, 0, 8000)).all()
    assert (band_energy(speech, 6500, 8000) > 1e-5 * band_energy(speech, 0, 8000)).all()
    # the level of speech is kept within a few dB (the crop changes with the tempo)
    ratio = slow.pow(2).mean(-1) / speech.pow(2).mean(-1)
    assert ((ratio > 0.5) & (ratio < 2.0)).all()


def test_gain_scales_by_the_drawn_decibels(speech):
    cfg = AugmentConfig().gain
    cfg.min_db = cfg.max_db = -6.0
    y = random_gain(speech, cfg, gen())
    assert torch.allclose(y, speech * 10 ** (-6 / 20), atol=1e-7)


# --- validation ------------------------------------------------------------------------------

@pytest.mark.parametrize("section, name, value, message", [
    ("rawboost_lnl", "p", 1.5, "augment.rawboost_lnl.p: must be in [0, 1]"),
    ("rawboost_lnl", "p", "often", "augment.rawboost_lnl.p: expected a finite number"),
    ("rawboost_ssi", "min_snr_db", 50.0, "augment.rawboost_ssi.min_snr_db: must be <= augment.rawboost_ssi.max_snr_db"),
    ("rawboost_ssi", "max_taps", 10.5, "augment.rawboost_ssi.max_taps: expected an integer"),
    ("rawboost_isd", "max_fraction", -0.1, "augment.rawboost_isd.max_fraction: must be in [0, 1]"),
    ("codec", "n_fft", 511, "augment.codec.n_fft: must be even"),
    ("codec", "max_cutoff_hz", 9000.0, "augment.codec.max_cutoff_hz: must be in [500, 8000]"),
    ("telephone", "max_low_hz", 3500.0, "augment.telephone.max_low_hz: must be < augment.telephone.min_high_hz"),
    ("companding", "law", "b-law", "augment.companding.law: must be one of mu, a, random"),
    ("gain", "max_db", float("nan"), "augment.gain.max_db: expected a finite number"),
    ("speed", "min_factor", 1.2, "augment.speed.min_factor: must be <= augment.speed.max_factor"),
    ("speed", "max_factor", 3.0, "augment.speed.max_factor: must be in [0.5, 2]"),
])
def test_bad_parameters_raise_naming_the_field(section, name, value, message):
    cfg = AugmentConfig()
    setattr(getattr(cfg, section), name, value)
    with pytest.raises(AugmentConfigError) as caught:
        build_augmenter(cfg)
    assert message in str(caught.value)


def test_from_dict_round_trips_and_rejects_unknown_keys():
    cfg = all_on(0.25)
    assert AugmentConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(AugmentConfigError, match=r"augment\.rawboost_lnl\.q: unknown parameter"):
        AugmentConfig.from_dict({"rawboost_lnl": {"q": 0.5}})
    with pytest.raises(AugmentConfigError, match=r"augment\.reverb: unknown augmentation"):
        AugmentConfig.from_dict({"reverb": {"p": 0.5}})
    with pytest.raises(AugmentConfigError, match=r"augment\.gain\.p: must be in \[0, 1\]"):
        AugmentConfig.from_dict({"gain": {"p": 2}})


@pytest.mark.parametrize("bad", [
    torch.zeros(2, 100, dtype=torch.float64), torch.zeros(100), torch.zeros(2, 3, 100),
    torch.zeros(2, 100, dtype=torch.int16), np.zeros((2, 100), dtype=np.float32),
])
def test_bad_batches_raise_augment_error(bad):
    with pytest.raises(AugmentError, match=r"expected a float32 tensor \[B, T\]"):
        build_augmenter(AugmentConfig())(bad, gen())


def test_bad_generator_raises():
    with pytest.raises(AugmentError, match="torch.Generator"):
        build_augmenter(AugmentConfig())(torch.zeros(2, 100), 1234)


def test_run_config_overrides_reach_the_augment_section():
    config_module = pytest.importorskip("rawguard.config")
    config = config_module.load_config(overrides=["augment.enabled=true", "augment.rawboost_lnl.p=0",
                                                  "augment.codec.p=0.25"])
    assert config.augment.codec.p == 0.25
    active = build_augmenter(config.augment).active
    assert "codec" in active and "rawboost_lnl" not in active
    with pytest.raises(config_module.ConfigError, match=r"augment\.gain\.p"):
        config_module.load_config(overrides=["augment.gain.p=3"])
    assert dataclasses.is_dataclass(config.augment)


def test_augmentation_is_off_by_default_and_enabled_switches_on_the_light_set():
    from rawguard.config import load_config

    assert AugmentConfig().active() == [] and load_config().augment.enabled is False
    light = load_config(overrides=["augment.enabled=true"]).augment
    assert light.active() == ["rawboost_lnl", "rawboost_isd", "rawboost_ssi", "companding", "gain"]
    assert (light.rawboost_lnl.p, light.rawboost_isd.p, light.rawboost_ssi.p, light.companding.p, light.gain.p) \
        == (0.02, 0.1, 0.07, 0.02, 0.2)
    # The packaged light-set file and the recipes measured with it switch on exactly that set.
    for recipe in ("augment/default", "shared_corpus", "shared_corpus_rawnet2", "asvspoof2019_la"):
        assert load_config(recipe).augment == light, recipe
