"""Export a trained detector to ONNX (optional extra: ``pip install rawguard[onnx]``).

The ONNX graph takes ``waveform`` float32 ``[batch, time]`` (16 kHz, [-1, 1]; both axes dynamic) and
returns ``logits`` ``[batch, 2]`` and ``score`` ``[batch]`` = ``logit[bona fide] - logit[spoof]``. The
decision threshold, the calibration and the scoring window/hop are stored as model metadata
(``rawguard.*`` keys), so a runtime can reproduce :class:`rawguard.detector.Detector` exactly: cut
windows, run the graph, average ``score``, compare to ``rawguard.threshold``.

Exporter: the TorchScript-based exporter (``exporter="torchscript"``, default) maps ``nn.GRU`` to the
ONNX ``GRU`` operator, which keeps the time axis dynamic. The torch.export-based exporter
(``exporter="dynamo"``, torch's new default) unrolls the GRU over its time steps, which fixes the
time axis to the export length; it is offered with the window length baked in (the detector only
ever feeds whole windows), and is much slower to export.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rawguard.conventions import SAMPLE_RATE, score_from_logits

__all__ = ["ExportError", "ScoringHead", "export_onnx", "onnx_metadata"]


class ExportError(RuntimeError):
    """Export failed, the ONNX extra is missing, or the exported graph disagrees with PyTorch."""


class ScoringHead(nn.Module):
    """Wraps a detector network: ``[B, T]`` -> ``(logits [B, 2], score [B])``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(waveform)
        return logits, score_from_logits(logits)


def onnx_metadata(detector) -> dict[str, str]:
    """The ``rawguard.*`` metadata stored in an exported graph (all values are strings)."""
    from rawguard import __version__

    calibration = detector.calibration or {"scale": 1.0, "bias": 0.0}
    config = getattr(detector.model, "config", None)
    return {
        "rawguard.version": __version__,
        "rawguard.model_name": str(detector.model_name),
        "rawguard.model_config": json.dumps(dataclasses.asdict(config) if dataclasses.is_dataclass(config) else {}, default=str),
        "rawguard.sample_rate": str(SAMPLE_RATE),
        "rawguard.window": str(detector.window),
        "rawguard.hop": str(detector.hop),
        "rawguard.threshold": repr(float(detector.threshold)),
        "rawguard.calibration_scale": repr(float(calibration["scale"])),
        "rawguard.calibration_bias": repr(float(calibration["bias"])),
        "rawguard.calibrated": str(detector.calibrated).lower(),
        "rawguard.score": "logit[bonafide] - logit[spoof]; recording score = mean over windows; bona fide if > threshold",
    }


def export_onnx(
    checkpoint: str | os.PathLike,
    out_path: str | os.PathLike,
    opset: int = 17,
    exporter: str = "torchscript",
    verify: bool = True,
    atol: float = 1e-4,
) -> dict:
    """Export a checkpoint to ONNX and (by default) check it against PyTorch with onnxruntime.

    Args:
        checkpoint: rawguard checkpoint (see :meth:`rawguard.detector.Detector.from_checkpoint`).
        out_path: ``.onnx`` file to write (parent folders are created).
        opset: ONNX opset version (at least 18 with the dynamo exporter).
        exporter: ``"torchscript"`` (dynamic batch and time) or ``"dynamo"`` (dynamic batch, time
            fixed to the scoring window; see the module docstring).
        verify: run the graph with onnxruntime on random waveforms and compare scores.
        atol: largest accepted absolute score difference in the check.

    Returns:
        ``{"path", "max_abs_diff", "checked_shapes", "dynamic_time", "metadata"}``.

    Raises:
        ExportError: missing ``onnx``/``onnxruntime``, a failing exporter, or a verification mismatch.
    """
    try:
        import onnx
    except ImportError as error:
        raise ExportError("ONNX export needs the onnx extra: pip install 'rawguard[onnx]'") from error
    from rawguard.detector import Detector

    if exporter not in ("torchscript", "dynamo"):
        raise ExportError(f"exporter: expected 'torchscript' or 'dynamo', got {exporter!r}")
    detector = Detector.from_checkpoint(checkpoint, device="cpu")
    head = ScoringHead(detector.model).eval()  # eval on the wrapper too: exporters restore its mode
    window = detector.window or 4 * SAMPLE_RATE
    example = torch.randn(2, window, generator=torch.Generator().manual_seed(0)) * 0.1
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated in favour of torch.export, which cannot keep a
            # GRU's time axis dynamic. Its tracer warnings (GRU hidden-size checks frozen as constants)
            # and GRU batch-size warning concern variable-length sequence inputs, which we do not use;
            # the export is checked below with several batch sizes and lengths.
            for category in (DeprecationWarning, FutureWarning, UserWarning, torch.jit.TracerWarning):
                warnings.simplefilter("ignore", category)
            if exporter == "torchscript":
                torch.onnx.export(
                    head, (example,), str(tmp), input_names=["waveform"], output_names=["logits", "score"],
                    dynamic_axes={"waveform": {0: "batch", 1: "time"}, "logits": {0: "batch"}, "score": {0: "batch"}},
                    opset_version=opset, dynamo=False,
                )
            else:
                torch.onnx.export(
                    head, (example,), str(tmp), input_names=["waveform"], output_names=["logits", "score"],
                    dynamic_shapes={"waveform": {0: torch.export.Dim("batch", min=1)}},
                    # It emits opset 18 natively; converting down to 17 fails on its Reduce nodes.
                    opset_version=max(opset, 18), dynamo=True, verbose=False,
                )
        graph = onnx.load(str(tmp))
        metadata = onnx_metadata(detector)
        metadata["rawguard.checkpoint"] = Path(checkpoint).name
        for key, value in metadata.items():
            entry = graph.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(graph)
        onnx.save(graph, str(tmp))
    except ExportError:
        raise
    except Exception as error:  # exporters raise many types; keep the first line, chain the rest
        tmp.unlink(missing_ok=True)
        raise ExportError(f"{checkpoint}: ONNX export failed: {str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__}") from error
    dynamic_time = exporter == "torchscript"
    shapes = [(2, window), (1, window), (3, window // 2 + 123)] if dynamic_time else [(2, window), (1, window), (5, window)]
    max_diff = verify_onnx(head, tmp, shapes, atol) if verify else float("nan")
    os.replace(tmp, out_path)
    return {"path": str(out_path), "max_abs_diff": max_diff, "checked_shapes": shapes if verify else [],
            "dynamic_time": dynamic_time, "metadata": metadata}


def verify_onnx(head: nn.Module, onnx_path: str | os.PathLike, shapes: list[tuple[int, int]], atol: float = 1e-4) -> float:
    """Largest ``|score_onnx - score_torch|`` over random waveforms of ``shapes``; raises if above ``atol``."""
    try:
        import onnxruntime as ort
    except ImportError as error:
        raise ExportError("verifying the export needs onnxruntime: pip install 'rawguard[onnx]'") from error
    ort_session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    worst = 0.0
    for shape in shapes:
        x = (0.1 * rng.standard_normal(shape)).astype(np.float32)
        onnx_score = ort_session.run(["score"], {"waveform": x})[0]
        with torch.inference_mode():
            torch_score = head(torch.from_numpy(x))[1].numpy()
        worst = max(worst, float(np.max(np.abs(onnx_score - torch_score))))
        if worst > atol:
            raise ExportError(f"{onnx_path}: ONNX and PyTorch scores differ by {worst:.3g} (> {atol:g}) for input shape {shape}")
    return worst
