"""The small neural vocoder: shapes, loss, training + resume, safe loading, and neural copy synthesis
through ``rawguard synth-spoof --method neural`` on real clips of the shared corpus."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from rawguard.checkpoint import save_checkpoint
from rawguard.cli import main as cli_main
from rawguard.synth.folder import SynthFolderError, synth_spoof_protocol
from rawguard.synth.neural import (Generator, LogMel, NeuralVocoder, VocoderConfig, VocoderError,
                                   VocoderTrainConfig, stft_loss, train_vocoder)

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
SMOKE = CORPUS / "protocols" / "smoke.txt"
FLAC = CORPUS / "flac"
needs_corpus = pytest.mark.skipif(not SMOKE.is_file(), reason="needs ../shared/corpus beside the repository")

TINY = dict(channels=16, resblock_kernels=(3,), resblock_dilations=(1,))


def test_generator_turns_frames_into_hop_samples_each():
    config = VocoderConfig(**TINY)
    mel = LogMel(config)(torch.randn(2, 4096) * 0.1)  # [B, n_mels, T // hop + 1]
    assert mel.shape == (2, 80, 17)
    wave = Generator(config)(mel)
    assert wave.shape == (2, 17 * 256) and wave.abs().max() < 1
    odd = VocoderConfig(channels=16, hop=240, upsample_rates=(5, 6, 8), resblock_kernels=(3,), resblock_dilations=(1,))
    assert Generator(odd)(torch.zeros(1, 80, 7)).shape == (1, 7 * 240)
    for upsample in ("nearest", "transposed", "istft"):
        resize = VocoderConfig(**TINY, upsample=upsample, hop=240, upsample_rates=(5, 6, 8))
        assert Generator(resize)(torch.zeros(1, 80, 7)).shape == (1, 7 * 240)
    istft = Generator(VocoderConfig(**TINY, upsample="istft"))  # conv stages x8 x8, iSTFT hop 4 (n_fft 16)
    assert len(istft.ups) == 2 and istft.post.out_channels == 2 * 9
    out = istft(mel)
    assert out.shape == (2, 17 * 256) and out.abs().max() <= 1 and torch.isfinite(out).all()


def test_config_rejects_rates_that_do_not_make_the_hop():
    with pytest.raises(VocoderError, match="multiply to hop 256"):
        VocoderConfig(upsample_rates=(8, 8, 2))
    with pytest.raises(VocoderError, match="upsample must be"):
        VocoderConfig(upsample="linear")
    with pytest.raises(VocoderError, match="istft' needs at least two"):
        VocoderConfig(upsample="istft", upsample_rates=(256,))


def test_stft_loss_is_zero_only_for_the_same_signal():
    real = torch.randn(2, 8192) * 0.1
    assert float(stft_loss(real, real)) < 1e-5
    assert float(stft_loss(real * 0.5, real)) > 0.3
    assert float(stft_loss(torch.randn(2, 8192) * 0.1, real)) > float(stft_loss(real * 0.9, real))


@pytest.fixture
def bonafide_cache(tmp_path) -> tuple[Path, Path]:
    """A prepared cache of the first 6 smoke clips (4 bona fide, 2 spoof) and their protocol."""
    protocol = tmp_path / "train.txt"
    protocol.write_text("".join(SMOKE.read_text().splitlines(keepends=True)[:6]))
    cache = tmp_path / "cache"
    assert cli_main(["prepare", str(protocol), "--audio-dir", str(FLAC), "--out", str(cache),
                     "--workers", "1", "--quiet"]) == 0
    return cache, protocol


def _train(cache: Path, out: Path, steps: int, **model) -> None:
    config = VocoderTrainConfig(minutes=5, max_steps=steps, batch_size=2, model=VocoderConfig(**(model or TINY)))
    summary = train_vocoder(cache, out, config, progress=False)
    assert summary.steps == steps and summary.clips == 4


@needs_corpus
def test_training_writes_a_loadable_vocoder_and_resumes(bonafide_cache, tmp_path):
    cache, _ = bonafide_cache
    out = tmp_path / "vocoder"
    _train(cache, out, steps=3)
    first = torch.load(out / "vocoder.pt", weights_only=True)
    assert first["step"] == 3 and (out / "vocoder.png").stat().st_size > 0
    _train(cache, out, steps=5)  # same folder: continues from step 3
    second = torch.load(out / "vocoder.pt", weights_only=True)
    assert second["step"] == 5
    assert any(not torch.equal(first["model"][k], second["model"][k]) for k in first["model"])
    with pytest.raises(VocoderError, match="another architecture"):
        _train(cache, out, steps=6, channels=32, resblock_kernels=(3,), resblock_dilations=(1,))
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / "vocoder.pt").write_bytes((out / "vocoder.pt").read_bytes()[:1000])  # a half-written file
    with pytest.raises(VocoderError, match="truncated.*delete it"):
        _train(cache, truncated, steps=6)

    vocoder = NeuralVocoder.load(out / "vocoder.pt")
    wave = sf.read(FLAC / "RG_D_000004.flac")[0]
    copy = vocoder(wave)
    assert copy.shape == wave.shape and np.all(np.isfinite(copy)) and not np.allclose(copy, wave, atol=1e-3)


@needs_corpus
def test_a_cache_without_bona_fide_clips_is_refused(tmp_path):
    protocol = tmp_path / "spoofs.txt"
    protocol.write_text("".join(line for line in SMOKE.read_text().splitlines(keepends=True) if "spoof" in line))
    cache = tmp_path / "cache"
    assert cli_main(["prepare", str(protocol), "--audio-dir", str(FLAC), "--out", str(cache), "--workers", "1",
                     "--quiet"]) == 0
    assert cli_main(["train-vocoder", str(cache), "--out", str(tmp_path / "v"), "--quiet"]) == 2


def test_loading_refuses_other_checkpoints_and_garbage(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(VocoderError, match="garbage.pt"):
        NeuralVocoder.load(garbage)
    detector = save_checkpoint({"model": {}, "model_name": "rawnet-lite"}, tmp_path / "best.pt")
    with pytest.raises(VocoderError, match="not a vocoder checkpoint"):
        NeuralVocoder.load(detector)
    mismatched = save_checkpoint({"kind": "rawguard-vocoder", "config": json.dumps({"channels": 16}),
                                  "model": {}}, tmp_path / "vocoder.pt")
    with pytest.raises(VocoderError, match="does not match"):
        NeuralVocoder.load(mismatched)


@needs_corpus
def test_synth_spoof_neural_makes_copies_with_the_trained_vocoder(bonafide_cache, tmp_path, capsys):
    cache, protocol = bonafide_cache
    _train(cache, tmp_path / "vocoder", steps=2)
    checkpoint = tmp_path / "vocoder" / "vocoder.pt"
    out = tmp_path / "synth" / "neural"
    assert cli_main(["synth-spoof", "--protocol", str(protocol), "--audio-dir", str(FLAC), str(out),
                     "--method", "neural", "--vocoder", str(checkpoint), "--workers", "1", "--quiet"]) == 0
    assert "wrote 4 neural copies" in capsys.readouterr().out
    rows = (out / "protocol.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[1].endswith(",spoof,") is False and rows[1].endswith("synth-neural")
    for path in out.glob("*.flac"):
        assert sf.info(path).frames == sf.info(FLAC / path.name).frames

    # the folder remembers its vocoder: copies of another one must go elsewhere
    _train(cache, tmp_path / "other", steps=1)
    with pytest.raises(SynthFolderError, match="another vocoder"):
        synth_spoof_protocol(protocol, out, "neural", audio_dir=FLAC, workers=1, progress=False,
                             vocoder=tmp_path / "other" / "vocoder.pt")


@needs_corpus
@pytest.mark.parametrize("method, vocoder, message", [
    ("neural", None, "needs a trained vocoder"),
    ("lpc", "x.pt", "goes with method 'neural'"),
    ("neural", "missing.pt", "not found"),
])
def test_synth_spoof_neural_argument_errors(method, vocoder, message, tmp_path, capsys):
    args = ["synth-spoof", "--protocol", str(SMOKE), "--audio-dir", str(FLAC), str(tmp_path / "o"), "--method", method]
    if vocoder:
        args += ["--vocoder", str(tmp_path / vocoder)]
    assert cli_main(args + ["--quiet"]) == 2
    assert message in capsys.readouterr().err


@needs_corpus
def test_a_rerun_with_the_budget_spent_leaves_the_vocoder_file_alone(bonafide_cache, tmp_path):
    cache, _ = bonafide_cache
    out = tmp_path / "vocoder"
    _train(cache, out, steps=2)
    before = (out / "vocoder.pt").read_bytes()
    config = VocoderTrainConfig(minutes=5, max_steps=2, batch_size=2, model=VocoderConfig(**TINY))
    summary = train_vocoder(cache, out, config, progress=False)
    assert (summary.steps, summary.new_steps) == (2, 0)
    assert (out / "vocoder.pt").read_bytes() == before  # synth-spoof folders keyed on its hash stay valid


def test_period_discriminator_folds_by_its_period_and_losses_point_the_right_way():
    from rawguard.synth.neural import (MultiPeriodDiscriminator, PeriodDiscriminator, discriminator_loss,
                                       generator_adversarial_loss)

    torch.manual_seed(0)
    d = PeriodDiscriminator(3)
    logits, maps = d(torch.randn(2, 1000))  # 1000 is not a multiple of 3: reflect-padded to 1002
    assert logits.shape[0] == 2 and maps[0].shape[-1] == 3 and len(maps) == 5
    mpd = MultiPeriodDiscriminator()
    real, fake = torch.randn(2, 4096) * 0.1, torch.zeros(2, 4096)
    with torch.no_grad():
        real_out, fake_out = mpd(real), mpd(fake)
    perfect = [(torch.ones_like(r), m) for r, m in real_out], [(torch.zeros_like(f), m) for f, m in fake_out]
    assert float(discriminator_loss(*perfect)) == 0.0  # real at 1, fake at 0: nothing to learn
    fooled = [(torch.ones_like(f), m) for f, m in real_out]  # fake scored 1 and fake maps == real maps
    assert float(generator_adversarial_loss(real_out, fooled)) == 0.0
    assert float(generator_adversarial_loss(real_out, fake_out)) > 0


@needs_corpus
def test_adversarial_fine_tuning_resumes_a_spectral_vocoder_with_a_fresh_discriminator(bonafide_cache, tmp_path):
    from rawguard.checkpoint import load_checkpoint

    cache, _ = bonafide_cache
    small = VocoderConfig(**TINY)
    plain = VocoderTrainConfig(minutes=5, max_steps=3, batch_size=2, segment=4096, model=small)
    train_vocoder(cache, tmp_path / "voc", plain, progress=False)
    assert "discriminator" not in load_checkpoint(tmp_path / "voc" / "vocoder.pt")
    tuned = VocoderTrainConfig(minutes=5, max_steps=5, batch_size=2, segment=4096, model=small, adversarial=0.1)
    summary = train_vocoder(cache, tmp_path / "voc", tuned, progress=False)
    assert summary.steps == 5 and summary.new_steps == 2 and np.isfinite(summary.loss)
    state = load_checkpoint(summary.path)
    assert state["discriminator"] and state["discriminator_optimizer"]["state"]
    tuned.max_steps = 6  # and a second resume picks the discriminator up from the file
    assert train_vocoder(cache, tmp_path / "voc", tuned, progress=False).steps == 6
