"""The small neural vocoder: shapes, loss, training + resume, safe loading, and neural copy synthesis
through ``rawguard synth-spoof --method neural`` on real clips of the shared corpus."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from rawguard.checkpoint import save_checkpoint
from rawguard.cli import main as cli_main
from rawguard.copysynth.neural import (Generator, LogMel, NeuralVocoder, VocoderConfig, VocoderError,
                                       VocoderTrainConfig, stft_loss, train_vocoder)
from rawguard.copysynth.synth_spoof import SynthFolderError, synth_spoof_protocol

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
    for upsample in ("nearest", "transposed"):
        resize = VocoderConfig(**TINY, upsample=upsample, hop=240, upsample_rates=(5, 6, 8))
        assert Generator(resize)(torch.zeros(1, 80, 7)).shape == (1, 7 * 240)


def test_config_rejects_rates_that_do_not_make_the_hop():
    with pytest.raises(VocoderError, match="multiply to hop 256"):
        VocoderConfig(upsample_rates=(8, 8, 2))
    with pytest.raises(VocoderError, match="upsample must be"):
        VocoderConfig(upsample="linear")
    with pytest.raises(VocoderError, match="upsample 'istft' .*was removed.*transposed, nearest"):
        VocoderConfig(upsample="istft")


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


def _old_vocoder_files(tmp_path: Path) -> dict[str, Path]:
    """vocoder.pt files of the two removed variants, as their training wrote them: a generator with
    ``upsample: istft`` in its config, and a generator fine-tuned with a discriminator beside it."""
    generator = Generator(VocoderConfig(**TINY))
    state = {"kind": "rawguard-vocoder", "model": generator.state_dict(), "step": 3, "elapsed_s": 1.0,
             "loss": 2.0, "optimizer": torch.optim.AdamW(generator.parameters()).state_dict()}
    istft_config = {**json.loads(json.dumps(dataclasses.asdict(VocoderConfig(**TINY)))), "upsample": "istft"}
    files = {}
    for name, extra in (("istft", {"config": json.dumps(istft_config)}),
                        ("adversarial", {"config": json.dumps(dataclasses.asdict(VocoderConfig(**TINY))),
                                         "discriminator": {"w": torch.zeros(2)}, "discriminator_optimizer": {}})):
        (tmp_path / name).mkdir()
        files[name] = save_checkpoint({**state, **extra}, tmp_path / name / "vocoder.pt")
    return files


def test_old_checkpoints_of_removed_variants_are_refused_naming_the_field(tmp_path):
    files = _old_vocoder_files(tmp_path)
    with pytest.raises(VocoderError, match=r"istft.*vocoder\.pt: vocoder config: upsample 'istft' .*was removed"):
        NeuralVocoder.load(files["istft"])
    with pytest.raises(VocoderError, match=r"field 'discriminator'.*adversarially.*removed"):
        NeuralVocoder.load(files["adversarial"])
    codec = {**json.loads(json.dumps(dataclasses.asdict(VocoderConfig(**TINY)))), "analysis": "codec", "latent": 64,
             "codebooks": 4, "codebook_size": 256}
    with pytest.raises(VocoderError, match=r"codec.*vocoder\.pt: field 'analysis': 'codec' .*was removed"):
        NeuralVocoder.load(save_checkpoint({**torch.load(files["istft"], weights_only=True),
                                            "config": json.dumps(codec)}, tmp_path / "codec" / "vocoder.pt"))
    mel = json.dumps({**codec, "analysis": "mel"})  # a mel vocoder written while codecs existed loads
    assert NeuralVocoder.load(save_checkpoint({**torch.load(files["istft"], weights_only=True), "config": mel},
                                              tmp_path / "mel.pt")).generator.config == VocoderConfig(**TINY)
    # Without the removed field, the same generator file loads.
    state = torch.load(files["adversarial"], weights_only=True)
    del state["discriminator"], state["discriminator_optimizer"]
    assert NeuralVocoder.load(save_checkpoint(state, tmp_path / "plain.pt")).generator.config == VocoderConfig(**TINY)


@needs_corpus
def test_resuming_from_a_removed_variant_is_refused_and_leaves_the_file(bonafide_cache, tmp_path):
    cache, _ = bonafide_cache
    for name, path in _old_vocoder_files(tmp_path).items():
        before = path.read_bytes()
        with pytest.raises(VocoderError, match="upsample 'istft'" if name == "istft" else "field 'discriminator'"):
            train_vocoder(cache, path.parent, VocoderTrainConfig(minutes=5, max_steps=5, batch_size=2,
                                                                 model=VocoderConfig(**TINY)), progress=False)
        assert path.read_bytes() == before


@pytest.mark.parametrize("option", [["--upsample", "istft"], ["--adversarial", "0.1"]])
def test_train_vocoder_has_no_removed_variant_options(option, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["train-vocoder", str(tmp_path), "--out", str(tmp_path / "v"), *option])
    assert exit_info.value.code == 2
    assert option[0] in capsys.readouterr().err
