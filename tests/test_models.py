"""Tests for rawguard.models: registry, rawnet-lite, rawnet2 (shapes, counts, numerics, export)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from rawguard.conventions import BONAFIDE, DEFAULT_WINDOW, SAMPLE_RATE
from rawguard.models import ModelConfigError, create_model, create_model_from_saved, get_config_class, list_models
from rawguard.models.layers import WaveformShapeError
from rawguard.models.sinc import FixedSincConv, band_edges, mel_band_edges

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def rawnet2():
    torch.manual_seed(0)
    return create_model("rawnet2")


@pytest.fixture(scope="module")
def lite():
    torch.manual_seed(0)
    return create_model("rawnet-lite")


@pytest.fixture(scope="module")
def real_clips() -> list[np.ndarray]:
    """The first 4 clips of the shared corpus' smoke protocol (1-6 s, two bona fide, two spoof)."""
    protocol = CORPUS / "protocols" / "smoke.txt"
    if not protocol.exists():
        pytest.skip(f"shared corpus not found at {CORPUS}")
    clips = []
    for line in protocol.read_text().splitlines()[:4]:
        wave, rate = sf.read(CORPUS / "flac" / f"{line.split()[1]}.flac", dtype="float32")
        assert rate == SAMPLE_RATE
        clips.append(wave)
    return clips


def trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def gru_input_steps(model: torch.nn.Module, num_samples: int) -> int:
    """Time steps the model's GRU actually receives, observed with a forward hook."""
    seen = []
    handle = model.gru.register_forward_hook(lambda _m, inputs, _o: seen.append(inputs[0].shape[1]))
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros(1, num_samples))
    finally:
        handle.remove()
    return seen[0]


# ---------------------------------------------------------------- registry


def test_registry_lists_both_models_and_their_configs():
    assert {"rawnet-lite", "rawnet2"} <= set(list_models())
    assert "frontend" in {f.name for f in dataclasses.fields(get_config_class("rawnet-lite"))}
    assert "seed-literal" not in list_models()  # benchmark-only


def test_unknown_model_error_names_it_and_lists_choices():
    with pytest.raises(ModelConfigError, match=r"'rawnet3'.*rawnet-lite.*rawnet2"):
        create_model("rawnet3")
    with pytest.raises(ModelConfigError, match="rawnet3"):
        get_config_class("rawnet3")


def test_unknown_override_key_error_lists_valid_keys():
    with pytest.raises(ModelConfigError, match=r"'gru_size'.*valid keys:.*gru_hidden"):
        create_model("rawnet-lite", gru_size=32)


@pytest.mark.parametrize(
    "overrides, pattern",
    [
        ({"gru_hidden": "big"}, "gru_hidden"),
        ({"gru_hidden": 1.5}, "gru_hidden"),
        ({"frontend": "mel"}, r"frontend.*\['conv', 'sinc', 'fixed_sinc'\]"),
        ({"frontend_scale": "bark"}, "frontend_scale"),
        ({"frontend": "conv", "frontend_scale": "linear"}, "frontend_scale.*sinc"),
        ({"block_channels": (32, 64, 64)}, "block_pools"),
        ({"frontend_stride": 0}, "frontend_stride"),
        ({"dropout": 1.0}, "dropout"),
        ({"spectrum_fft": 500}, "spectrum_fft"),
        ({"spectrum_fft": 32}, "spectrum_fft"),
        ({"spectrum_std": True}, "spectrum_std needs the spectrum path"),
        ({"spectrum_fft": 512, "spectrum_average": "median"}, r"spectrum_average.*\['power', 'log'\]"),
        ({"spectrum_average": "log"}, "spectrum_average needs the spectrum path"),
    ],
)
def test_bad_override_values_are_rejected_naming_the_key(overrides, pattern):
    with pytest.raises(ModelConfigError, match=pattern):
        create_model("rawnet-lite", **overrides)


def test_config_round_trips_through_create_model(lite):
    # Checkpoints store asdict(config); YAML gives lists where the dataclass has tuples.
    stored = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(lite.config).items()}
    rebuilt = create_model("rawnet-lite", **stored)
    assert rebuilt.config == lite.config
    rebuilt.load_state_dict(lite.state_dict())  # same architecture, strict key/shape match


# ---------------------------------------------------------------- rawnet2


def test_rawnet2_has_exactly_the_baseline_parameter_count(rawnet2):
    assert trainable(rawnet2) == 17_621_410
    assert not any(p.requires_grad for p in rawnet2.sinc.parameters())  # fixed filters: buffers only


def test_rawnet2_reference_quirks_keep_the_count_and_zero_the_last_filter():
    quirky = create_model("rawnet2", reference_quirks=True)
    assert trainable(quirky) == 17_621_410
    filters = quirky.sinc.filters.squeeze(1)  # [20, 1025]
    assert filters.shape == (20, 1025)
    assert torch.all(filters[-1] == 0) and torch.all(filters[:-1].abs().sum(1) > 0)


def test_rawnet2_gru_sees_29_steps_for_a_4s_window(rawnet2):
    assert rawnet2.gru_steps(DEFAULT_WINDOW) == 29
    assert gru_input_steps(rawnet2, DEFAULT_WINDOW) == 29


def test_rawnet2_shapes_and_minimum_length(rawnet2):
    rawnet2.eval()
    with torch.inference_mode():
        for length in (rawnet2.min_samples, 20_000):
            out = rawnet2(0.1 * torch.randn(2, length))
            assert out.shape == (2, 2) and torch.isfinite(out).all()
    with pytest.raises(WaveformShapeError, match=r"rawnet2.*3210 samples.*3211"):
        rawnet2(torch.zeros(1, rawnet2.min_samples - 1))


def test_rawnet2_gradient_of_the_first_trainable_layer_predicts_the_loss_change(rawnet2, real_clips):
    """The backward pass reaches the first residual block with the true gradient: a small step
    against it lowers the loss on real clips by what the gradient predicts (float64, so the change
    is measurable through 17.6 M parameters at initialisation)."""
    import copy

    import torch.nn.functional as F

    lines = (CORPUS / "protocols" / "smoke.txt").read_text().splitlines()[:4]
    labels = torch.tensor([BONAFIDE if line.split()[-1] == "bonafide" else 1 - BONAFIDE for line in lines])
    x = torch.stack([torch.from_numpy(np.resize(w, 16_000)) for w in real_clips]).double()
    model = copy.deepcopy(rawnet2).double().eval()  # eval: BatchNorm statistics fixed between the passes
    loss = F.cross_entropy(model(x), labels)
    loss.backward()
    weight = model.blocks[0].conv1.weight
    grad = weight.grad.clone()
    assert torch.isfinite(grad).all() and grad.norm() > 0
    step = 0.1 / grad.norm()
    with torch.no_grad():
        weight -= step * grad
        after = F.cross_entropy(model(x), labels)
    predicted = (step * grad.norm() ** 2).item()  # first-order decrease: step x |grad|^2
    assert (loss - after).item() == pytest.approx(predicted, rel=0.2), (loss.item(), after.item(), predicted)


def test_fixed_sinc_filters_pass_their_own_mel_band():
    sinc = FixedSincConv(20, 1024)
    edges = mel_band_edges(20).numpy()
    response = np.abs(np.fft.rfft(sinc.filters.squeeze(1).numpy(), n=8192, axis=-1))  # [20, 4097]
    freqs = np.fft.rfftfreq(8192, 1 / SAMPLE_RATE)
    assert edges[0] == 0 and abs(edges[-1] - SAMPLE_RATE / 2) < 1e-6
    for i in range(20):
        centre = freqs[np.argmax(response[i])]
        assert edges[i] - 20 <= centre <= edges[i + 1] + 20, f"filter {i} peaks at {centre} Hz"
        low, high = edges[i], edges[i + 1]
        inside = (freqs > low) & (freqs < high)
        far = (freqs < low - (high - low)) | (freqs > high + (high - low))  # a bandwidth away
        assert response[i][inside].mean() > 10 * response[i][far].mean(), f"filter {i} leaks"


@pytest.mark.parametrize("scale", ["mel", "linear"])
def test_fixed_sinc_filters_pass_their_own_band_on_every_scale(scale):
    sinc = FixedSincConv(16, 256, scale=scale)
    edges = band_edges(16, scale).numpy()
    response = np.abs(np.fft.rfft(sinc.filters.squeeze(1).numpy(), n=8192, axis=-1))  # [16, 4097]
    freqs = np.fft.rfftfreq(8192, 1 / SAMPLE_RATE)
    for i in range(16):
        low, high = edges[i], edges[i + 1]
        inside = (freqs > low) & (freqs < high)
        far = (freqs < low - (high - low)) | (freqs > high + (high - low))
        assert response[i][inside].mean() > 10 * response[i][far].mean(), f"{scale} filter {i} leaks"


def test_band_scales_tile_zero_to_nyquist_with_their_own_spacing():
    nyquist = SAMPLE_RATE / 2
    for scale in ("mel", "linear"):
        edges = band_edges(8, scale).numpy()
        assert edges[0] == pytest.approx(0.0, abs=1e-6) and edges[-1] == pytest.approx(nyquist), scale
        assert np.all(np.diff(edges) > 0), scale
    widths = {scale: np.diff(band_edges(8, scale).numpy()) for scale in ("mel", "linear")}
    assert np.allclose(widths["linear"], nyquist / 8)
    assert np.all(np.diff(widths["mel"]) > 0)  # narrow at the bottom
    for removed in ("bark", "inverse_mel"):
        with pytest.raises(ValueError, match=removed):
            band_edges(8, removed)


# ---------------------------------------------------------------- rawnet-lite


@pytest.mark.parametrize("frontend", ["conv", "sinc", "fixed_sinc"])
def test_rawnet_lite_is_small_and_its_gru_sees_100_to_200_steps(frontend):
    model = create_model("rawnet-lite", frontend=frontend)
    assert trainable(model) <= 1_000_000
    steps = gru_input_steps(model, DEFAULT_WINDOW)
    assert 100 <= steps <= 200
    assert steps == model.gru_steps(DEFAULT_WINDOW)


def test_rawnet_lite_output_shape_does_not_depend_on_length(lite):
    lite.eval()
    with torch.inference_mode():
        for length in (lite.min_samples, lite.min_samples + 7, 16_000, 33_333, DEFAULT_WINDOW):
            out = lite(0.1 * torch.randn(3, length))
            assert out.shape == (3, 2), length
            assert torch.isfinite(out).all(), length


def test_rawnet_lite_scores_real_clips_of_their_own_lengths(lite, real_clips):
    lite.eval()
    with torch.inference_mode():
        for wave in real_clips:
            out = lite(torch.from_numpy(wave)[None])
            assert out.shape == (1, 2) and torch.isfinite(out).all()


@pytest.mark.parametrize(
    "bad, pattern",
    [
        (torch.zeros(16_000), r"\[B, T\].*\[16000\]"),
        (torch.zeros(1, 1, 16_000), r"\[B, T\].*\[1, 1, 16000\]"),
        (torch.zeros(1, 16_000, dtype=torch.int16), "torch.int16"),
        (torch.zeros(1, 100), r"100 samples.*minimum"),
    ],
)
def test_rawnet_lite_rejects_bad_input_naming_the_problem(lite, bad, pattern):
    with pytest.raises(WaveformShapeError, match=pattern):
        lite(bad)


def test_rawnet_lite_eval_is_deterministic_and_batch_independent(lite, real_clips):
    lite.eval()
    window = 32_000
    batch = torch.stack([torch.from_numpy(np.resize(w, window)) for w in real_clips])  # repeat-pad [4, T]
    with torch.inference_mode():
        first, second = lite(batch), lite(batch)
        alone = lite(batch[2:3])
    assert torch.equal(first, second)
    torch.testing.assert_close(alone, first[2:3], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("frontend, first_param", [("conv", "frontend.weight"), ("sinc", "frontend.low_hz")])
def test_rawnet_lite_gradients_reach_the_front_end(frontend, first_param, real_clips):
    torch.manual_seed(0)
    model = create_model("rawnet-lite", frontend=frontend).train()
    batch = torch.stack([torch.from_numpy(np.resize(w, 16_000)) for w in real_clips])
    labels = torch.tensor([1, 1, 0, 0])
    torch.nn.functional.cross_entropy(model(batch), labels).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    assert dict(model.named_parameters())[first_param].grad.abs().sum() > 0


def test_rawnet_lite_fixed_sinc_front_end_is_not_trained_and_rebuilds_from_its_config(real_clips):
    torch.manual_seed(0)
    model = create_model("rawnet-lite", frontend="fixed_sinc", frontend_scale="linear").train()
    assert not any(name.startswith("frontend.") for name, _ in model.named_parameters())
    assert "frontend.filters" not in model.state_dict()  # a function of the config, not stored
    before = model.frontend.filters.clone()
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-2)
    batch = torch.stack([torch.from_numpy(np.resize(w, 16_000)) for w in real_clips])
    torch.nn.functional.cross_entropy(model(batch), torch.tensor([1, 1, 0, 0])).backward()
    optimiser.step()
    assert torch.equal(model.frontend.filters, before)
    rebuilt = create_model("rawnet-lite", **dataclasses.asdict(model.config))
    rebuilt.load_state_dict(model.state_dict())
    model.eval(), rebuilt.eval()
    with torch.inference_mode():
        torch.testing.assert_close(rebuilt(batch), model(batch))


def test_rawnet_lite_2d_encoder_trains_and_rebuilds(real_clips):
    torch.manual_seed(0)
    model = create_model(
        "rawnet-lite", frontend="fixed_sinc", frontend_scale="linear", encoder="2d", block_channels=(8, 16),
        block_pools=(1, 3), frontend_pool=12,
    ).train()
    batch = torch.stack([torch.from_numpy(np.resize(w, 16_000)) for w in real_clips])
    torch.nn.functional.cross_entropy(model(batch), torch.tensor([1, 1, 0, 0])).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    assert model.gru_steps(16_000) == 27  # the same frame rate as the default
    model.eval()
    with torch.inference_mode():
        for length in (model.min_samples, 16_000, 40_001):
            assert model(0.1 * torch.randn(2, length)).shape == (2, 2), length
    rebuilt = create_model("rawnet-lite", **dataclasses.asdict(model.config)).eval()
    rebuilt.load_state_dict(model.state_dict())
    with torch.inference_mode():
        torch.testing.assert_close(rebuilt(batch), model(batch))


def test_rawnet_lite_spectrum_branch_trains_rebuilds_and_needs_one_fft_frame(real_clips):
    torch.manual_seed(0)
    model = create_model("rawnet-lite", frontend="fixed_sinc", frontend_scale="linear", spectrum_fft=512).train()
    plain = create_model("rawnet-lite", frontend="fixed_sinc", frontend_scale="linear")
    assert model.min_samples == 625 and trainable(model) - trainable(plain) == 17_848
    batch = torch.stack([torch.from_numpy(np.resize(w, 16_000)) for w in real_clips])
    torch.nn.functional.cross_entropy(model(batch), torch.tensor([1, 1, 0, 0])).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    assert model.spectrum.fc.weight.grad.abs().sum() > 0
    long_fft = create_model("rawnet-lite", spectrum_fft=1024).eval()
    assert long_fft.min_samples == 1024
    with torch.inference_mode():
        assert long_fft(0.1 * torch.randn(2, 1024)).shape == (2, 2)
    with pytest.raises(WaveformShapeError, match="1023 samples, fewer than the minimum 1024"):
        long_fft(torch.zeros(1, 1023))
    model.eval()
    rebuilt = create_model("rawnet-lite", **dataclasses.asdict(model.config)).eval()
    rebuilt.load_state_dict(model.state_dict())
    with torch.inference_mode():
        torch.testing.assert_close(rebuilt(batch), model(batch))


def test_long_term_spectrum_resolves_a_steady_tone_the_front_end_bands_cannot():
    # Two tones 62.5 Hz apart under white noise: one band of the front-end (250 Hz apart, ~1 kHz
    # wide) sees both; the long-term spectrum (31 Hz bins) puts each in its own peak, and its
    # clip-mean removal makes it blind to loudness.
    from rawguard.models.rawnet_lite import LongTermSpectrum

    branch = LongTermSpectrum(512, 0.3)
    t = torch.arange(16_000) / SAMPLE_RATE
    noise = 0.01 * torch.randn(1, 16_000, generator=torch.Generator().manual_seed(0))
    captured = []
    handle = branch.encoder.register_forward_hook(lambda _m, inputs, _o: captured.append(inputs[0][0, 0]))
    for tone_hz in (2000.0, 2062.5):
        branch(noise + 0.05 * torch.sin(2 * torch.pi * tone_hz * t))
        branch(10 * (noise + 0.05 * torch.sin(2 * torch.pi * tone_hz * t)))
    handle.remove()
    peaks = [int(spectrum.argmax()) for spectrum in captured]
    assert peaks == [64, 64, 66, 66]  # bin = Hz / 31.25
    torch.testing.assert_close(captured[0], captured[1], atol=1e-3, rtol=0)


def test_long_term_spectrum_spread_tells_a_steady_tone_from_a_gated_one():
    # The same tone, on all the time or on every other 64 ms: the spread channel (std of the log power over
    # frames) is near zero at the steady tone's bin and large at the gated one's, whatever the level.
    from rawguard.models.rawnet_lite import LongTermSpectrum

    branch = LongTermSpectrum(512, 0.3, with_std=True)
    t = torch.arange(16_000) / SAMPLE_RATE
    steady = 0.05 * torch.sin(2 * torch.pi * 2000.0 * t) + 1e-4 * torch.randn(16_000)
    gated = steady * ((t * 1000 // 64) % 2 == 0)
    captured = []
    handle = branch.encoder.register_forward_hook(lambda _m, inputs, _o: captured.append(inputs[0][0]))
    for clip in (steady, gated, 10 * steady):
        branch(clip.unsqueeze(0))
    handle.remove()
    spreads = [features[1, 64] for features in captured]  # [channel, bin 2000 / 31.25]
    assert captured[0].shape == (2, 257)
    assert spreads[0] < 0.1 and spreads[1] > 3, spreads
    torch.testing.assert_close(spreads[2], spreads[0], atol=1e-2, rtol=0)


def test_long_term_spectrum_log_average_is_not_ruled_by_the_loudest_frames():
    # A tone ~70 dB over its bin's noise, held for a tenth of the clip (a held vowel's harmonic): in the
    # mean power it stands ~50 dB over the floor (the held frames rule), in the mean log power ~7 dB.
    # Both are blind to loudness.
    from rawguard.models.rawnet_lite import LongTermSpectrum

    t = torch.arange(16_000) / SAMPLE_RATE
    noise = 0.001 * torch.randn(16_000, generator=torch.Generator().manual_seed(0))
    held = (t < 0.1) * 0.1 * torch.sin(2 * torch.pi * 2000.0 * t)
    clip = (noise + held).unsqueeze(0)
    peaks = {}
    for average in ("power", "log"):
        branch = LongTermSpectrum(512, 0.3, average=average)
        captured = []
        handle = branch.encoder.register_forward_hook(lambda _m, inputs, _o: captured.append(inputs[0][0, 0]))
        branch(clip)
        branch(100 * clip)
        handle.remove()
        torch.testing.assert_close(captured[0], captured[1], atol=1e-3, rtol=0)
        spectrum = captured[0]
        peaks[average] = float(spectrum[64] - spectrum[100:200].median()) * 10 / math.log(10)  # dB over the floor
    assert peaks["power"] > 40 and 3 < peaks["log"] < 10, peaks


def test_2d_encoder_shares_its_kernels_across_frequency():
    # A pattern moved up three bands moves a 2-D block's output (no frequency pooling) up three
    # bands with the same values, away from the zero-padded edges.
    model = create_model("rawnet-lite", encoder="2d", block_channels=(4,), block_pools=(1,), freq_pool=1).eval()
    block = model.blocks[0]
    image = torch.zeros(1, 1, 16, 20)
    image[0, 0, 4:6, 8:11] = 1.0
    shifted = torch.roll(image, 3, dims=2)
    with torch.inference_mode():
        out, out_shifted = block(image), block(shifted)
    torch.testing.assert_close(torch.roll(out, 3, dims=2)[:, :, 4:12], out_shifted[:, :, 4:12])


@pytest.mark.parametrize(
    "overrides, pattern",
    [
        ({"encoder": "3d"}, "encoder"),
        ({"encoder": "2d", "freq_pool": 0}, "freq_pool"),
        ({"encoder": "2d", "frontend_channels": 4, "block_channels": (8, 16, 16), "block_pools": (1, 1, 1)},
         "freq_pool"),
    ],
)
def test_rawnet_lite_rejects_encoder_values_it_cannot_build(overrides, pattern):
    with pytest.raises(ModelConfigError, match=pattern):
        create_model("rawnet-lite", **overrides)


@pytest.mark.parametrize("summary", ["last", "mean", "meanmax"])
def test_rawnet_lite_summaries_train_and_keep_shapes(summary, real_clips):
    torch.manual_seed(0)
    model = create_model("rawnet-lite", summary=summary).train()
    batch = torch.stack([torch.from_numpy(np.resize(w, 16_000)) for w in real_clips])
    logits = model(batch)
    assert logits.shape == (4, 2)
    torch.nn.functional.cross_entropy(logits, torch.tensor([1, 1, 0, 0])).backward()
    assert model.gru.weight_ih_l0.grad.abs().sum() > 0
    assert model.fc.in_features == 2 * model.config.gru_hidden * (2 if summary == "meanmax" else 1)


def test_rawnet_lite_mean_summary_is_the_average_of_the_gru_outputs(real_clips):
    """With ``summary="mean"`` the classifier sees the time-average of the BiGRU outputs: check it
    against a forward hook on the GRU and the classifier input."""
    torch.manual_seed(0)
    model = create_model("rawnet-lite", summary="mean").eval()
    seen = {}
    model.gru.register_forward_hook(lambda _m, _i, out: seen.update(gru=out[0]))
    model.fc.register_forward_hook(lambda _m, inputs, _o: seen.update(fc=inputs[0]))
    batch = torch.stack([torch.from_numpy(np.resize(w, 20_000)) for w in real_clips])
    with torch.inference_mode():
        model(batch)
    torch.testing.assert_close(seen["fc"], seen["gru"].mean(dim=1))


def test_a_saved_config_with_removed_fields_loads_only_when_they_were_off():
    model = create_model("rawnet-lite", frontend_channels=8, block_channels=[8, 16], gru_hidden=16)
    saved = {**dataclasses.asdict(model.config), "frontend_mean_norm": False, "mixstyle": 0.0,
             "mixstyle_alpha": 0.1, "frontend_span_hz": [0.0, 0.0]}  # as checkpoints stored them
    rebuilt = create_model_from_saved("rawnet-lite", saved)
    rebuilt.load_state_dict(model.state_dict())  # the field had no weights: the same model
    x = 0.1 * torch.randn(2, 8000)
    with torch.inference_mode():
        torch.testing.assert_close(rebuilt.eval()(x), model.eval()(x), rtol=0, atol=0)
    with pytest.raises(ModelConfigError, match=r"'frontend_mean_norm' was removed .*only False is accepted"):
        create_model_from_saved("rawnet-lite", {**saved, "frontend_mean_norm": True})
    with pytest.raises(ModelConfigError, match=r"'mixstyle' was removed"):  # it changed how the model trained
        create_model_from_saved("rawnet-lite", {**saved, "mixstyle": 0.5})
    with pytest.raises(ModelConfigError, match=r"'frontend_span_hz' was removed"):  # a sub-band bank
        create_model_from_saved("rawnet-lite", {**saved, "frontend_span_hz": (4000.0, 8000.0)})
    with pytest.raises(ModelConfigError, match="frontend_mean_norm"):  # a new model cannot ask for it either
        create_model("rawnet-lite", frontend_mean_norm=False)


def test_rawnet_lite_rejects_an_unknown_summary():
    with pytest.raises((ModelConfigError, ValueError), match="summary"):
        create_model("rawnet-lite", summary="attention")


@pytest.mark.parametrize("name", ["rawnet-lite", "rawnet2"])
def test_bf16_autocast_forward_on_cpu_tracks_fp32(name, lite, rawnet2, real_clips):
    model = {"rawnet-lite": lite, "rawnet2": rawnet2}[name].eval()
    batch = torch.stack([torch.from_numpy(np.resize(w, 24_000)) for w in real_clips])
    with torch.inference_mode():
        reference = model(batch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(batch)
    assert low.shape == (4, 2) and torch.isfinite(low).all()
    # bf16 keeps ~3 significant digits: the scores stay close to fp32's.
    torch.testing.assert_close(low.float(), reference, rtol=0.1, atol=0.1)


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
@pytest.mark.parametrize(
    "overrides",
    [{}, {"frontend": "fixed_sinc", "frontend_scale": "linear", "spectrum_fft": 512, "spectrum_std": True},
     {"spectrum_fft": 256, "spectrum_average": "log"}],
    # eager scoring takes torch.stft, the export the same DFT as a strided conv
    ids=["default", "spectrum_path", "spectrum_log_average"],
)
def test_rawnet_lite_exports_to_onnx_with_dynamic_batch_and_length(overrides, tmp_path):
    # The TorchScript exporter (dynamo=False) emits an ONNX GRU op with a dynamic length; the
    # torch.export-based one unrolls the GRU, fixing T to the example's length.
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    lite = create_model("rawnet-lite", **overrides).eval()
    path = tmp_path / "lite.onnx"
    torch.onnx.export(
        lite, (torch.zeros(2, 16_000),), str(path), input_names=["waveform"], output_names=["logits"],
        dynamic_axes={"waveform": {0: "batch", 1: "samples"}}, dynamo=False,
    )
    ort_session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in ((1, 20_000), (3, DEFAULT_WINDOW)):
        x = 0.1 * torch.randn(*shape)
        with torch.inference_mode():
            expected = lite(x).numpy()
        np.testing.assert_allclose(ort_session.run(None, {"waveform": x.numpy()})[0], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", list_models())
def test_a_removed_config_field_is_gone_and_loads_only_at_its_off_value(name):
    # A field listed as removed must no longer be a field (else its code is still there), and a saved
    # config naming it loads at the value that meant "off" and is refused at any other.
    config_cls = get_config_class(name)
    removed = getattr(config_cls, "REMOVED_FIELDS", {})
    fields = {f.name for f in dataclasses.fields(config_cls)}
    assert not removed.keys() & fields, removed.keys() & fields
    saved = dataclasses.asdict(config_cls())
    for key, off in removed.items():
        create_model_from_saved(name, {**saved, key: off})
        if isinstance(off, bool):
            on = not off
        elif isinstance(off, str):
            on = "on"
        elif isinstance(off, (int, float)):
            on = off + 0.5
        else:  # a tuple such as a (0, 0) span: "on" has no one obvious value
            continue
        with pytest.raises(ModelConfigError, match=f"'{key}' was removed"):
            create_model_from_saved(name, {**saved, key: on})


def test_checkpoints_saved_before_a_config_field_existed_still_load():
    """A rawnet-lite checkpoint written before ``summary`` / ``log_compression`` existed stores no
    such keys; it must be rebuilt with the old behaviour ("last", no log), which its weights fit."""
    from rawguard.models import create_model_from_saved

    torch.manual_seed(0)
    old = create_model("rawnet-lite", summary="last", log_compression=False).eval()
    saved = dataclasses.asdict(old.config)
    del saved["summary"], saved["log_compression"]  # neither existed in the first checkpoints
    rebuilt = create_model_from_saved("rawnet-lite", saved).eval()
    rebuilt.load_state_dict(old.state_dict())
    x = 0.1 * torch.randn(2, 16_000)
    with torch.inference_mode():
        torch.testing.assert_close(rebuilt(x), old(x))
    # A config that names the field keeps it.
    assert create_model_from_saved("rawnet-lite", dataclasses.asdict(create_model("rawnet-lite").config)).config.summary == "meanmax"
