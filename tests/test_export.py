"""ONNX export: onnxruntime reproduces the PyTorch scores on real audio, any batch and length."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from rawguard import Detector
from rawguard.audio import load_audio
from rawguard.checkpoint import save_checkpoint
from rawguard.cli import main
from rawguard.models import create_model
from rawguard.windows import crop_or_pad

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from rawguard.export import ExportError, export_onnx  # noqa: E402
from helpers.checkpoints import SELECTION, WINDOW, corpus_files, save_tiny_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.set_num_threads(1)
    directory = tmp_path_factory.mktemp("export")
    checkpoint = save_tiny_checkpoint(directory / "best.pt", SELECTION, seed=3)
    result = export_onnx(checkpoint, directory / "out" / "detector.onnx")
    return checkpoint, result


def test_onnx_matches_pytorch_on_real_audio(exported):
    checkpoint, result = exported
    assert result["dynamic_time"] and result["max_abs_diff"] < 1e-4
    detector = Detector.from_checkpoint(checkpoint)
    ort_session = ort.InferenceSession(result["path"], providers=["CPUExecutionProvider"])
    waves = [load_audio(path) for path in corpus_files(3)]
    # A batch of windows, and whole clips of different lengths one at a time (dynamic time axis).
    batch = np.stack([crop_or_pad(w, WINDOW) for w in waves])
    logits, scores = ort_session.run(["logits", "score"], {"waveform": batch})
    assert logits.shape == (3, 2) and scores.shape == (3,)
    expected = [detector.score_array(w[:WINDOW]).score for w in waves]
    np.testing.assert_allclose(scores, expected, atol=1e-4)
    for wave in waves:
        (score,) = ort_session.run(["score"], {"waveform": wave[None]})
        with torch.no_grad():
            logits = detector.model(torch.from_numpy(wave)[None])
        assert abs(float(score[0]) - float(logits[0, 1] - logits[0, 0])) < 1e-4


def test_metadata_carries_the_decision_rule(exported):
    _, result = exported
    meta = {p.key: p.value for p in onnx.load(result["path"]).metadata_props}
    assert float(meta["rawguard.threshold"]) == SELECTION["threshold"]
    assert float(meta["rawguard.calibration_scale"]) == SELECTION["calibration"]["scale"]
    assert int(meta["rawguard.window"]) == WINDOW and int(meta["rawguard.hop"]) == WINDOW // 2
    assert meta["rawguard.model_name"] == "rawnet-lite" and meta["rawguard.sample_rate"] == "16000"


def test_cli_and_errors(exported, tmp_path, capsys):
    checkpoint, _ = exported
    out = tmp_path / "cli.onnx"
    assert main(["export", "--checkpoint", str(checkpoint), "--onnx", str(out)]) == 0
    assert out.is_file() and "max |score difference|" in capsys.readouterr().out
    assert main(["export", "--checkpoint", str(tmp_path / "missing.pt"), "--onnx", str(out)]) == 1
    assert "missing.pt: checkpoint file not found" in capsys.readouterr().err
    with pytest.raises(ExportError, match="exporter: expected 'torchscript' or 'dynamo'"):
        export_onnx(checkpoint, tmp_path / "x.onnx", exporter="tflite")


def test_the_recipes_front_end_and_the_2d_encoder_export_with_a_dynamic_length(tmp_path):
    # The fixed sinc bank is a buffer, not a parameter, and the 2-D encoder reshapes filters x
    # frames: both must survive tracing with a free time axis.
    torch.manual_seed(0)
    model = create_model(
        "rawnet-lite", frontend="fixed_sinc", frontend_scale="linear", frontend_channels=16, encoder="2d",
        block_channels=[4, 8], block_pools=[1, 3], frontend_pool=12, gru_hidden=16,
    ).eval()
    state = {"model_name": "rawnet-lite", "model_config": dataclasses.asdict(model.config), "model": model.state_dict(),
             "config": {"eval": {"window": WINDOW, "hop": WINDOW // 2}}, "step": 0, "selection": SELECTION}
    checkpoint = save_checkpoint(state, tmp_path / "best.pt")
    result = export_onnx(checkpoint, tmp_path / "detector.onnx")
    assert result["dynamic_time"] and result["max_abs_diff"] < 1e-4
    session = ort.InferenceSession(result["path"], providers=["CPUExecutionProvider"])
    for length in (WINDOW, 2 * WINDOW + 123):
        wave = (0.1 * torch.randn(2, length)).numpy()
        (logits,) = session.run(["logits"], {"waveform": wave})
        with torch.no_grad():
            expected = model(torch.from_numpy(wave)).numpy()
        np.testing.assert_allclose(logits, expected, atol=1e-4)
