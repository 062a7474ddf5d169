"""Run a detector's network with ONNX Runtime instead of PyTorch (optional extra ``onnx``).

:class:`OnnxModel` is an ``nn.Module`` in name only: it holds an ``onnxruntime.InferenceSession``
of a graph written by :func:`rawguard.export.export_onnx` and maps ``[B, T]`` float32 windows to
``[B, 2]`` logits, so :class:`rawguard.scoring.WindowScorer` (and with it the window policy, the
checks on the model's output and the per-file means) runs unchanged on top of it. Measured faster
than PyTorch for rawnet-lite on CPU (``benchmarks/bench_archive.py``), hence ``rawguard score
--backend onnx``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["OnnxModel", "onnx_model"]


class OnnxModel(nn.Module):
    """``[B, T]`` float32 waveforms -> ``[B, 2]`` logits through an ONNX Runtime ``InferenceSession`` (CPU).

    Args:
        path: a graph from :func:`rawguard.export.export_onnx` (input ``waveform``, output ``logits``).
        threads: intra-op threads (default: ONNX Runtime's choice, one per core).
        min_samples: shortest input the network accepts (copied from the PyTorch model).
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None, min_samples: int = 1) -> None:
        super().__init__()
        from rawguard.export import ExportError

        try:
            import onnxruntime as ort
        except ImportError as error:
            raise ExportError("--backend onnx needs the onnx extra: pip install 'rawguard[onnx]'") from error
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1  # one graph at a time: the parallelism is inside each operator
        # Idle threads sleep instead of spinning (ONNX Runtime's default is to spin): the decoder
        # processes share the cores, as OMP_WAIT_POLICY=PASSIVE does for PyTorch's threads.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.runtime = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.path, self.min_samples = Path(path), min_samples

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = waveform.detach().to("cpu", torch.float32).contiguous().numpy()
        (logits,) = self.runtime.run(["logits"], {"waveform": x})
        return torch.from_numpy(np.asarray(logits))


def onnx_model(checkpoint: str | os.PathLike, model: nn.Module, onnx_path: str | os.PathLike | None = None,
               threads: int | None = None) -> OnnxModel:
    """An :class:`OnnxModel` of ``checkpoint``: from ``onnx_path`` if given, else exported now to a
    temporary file (checked against PyTorch by the export; a few seconds).

    Args:
        model: the checkpoint's PyTorch network (for ``min_samples``).

    Raises:
        ExportError: missing onnx/onnxruntime, or an export that disagrees with PyTorch.
    """
    from rawguard.export import export_onnx

    min_samples = int(getattr(model, "min_samples", 1))
    if onnx_path is not None:
        return OnnxModel(onnx_path, threads, min_samples)
    with tempfile.TemporaryDirectory(prefix="rawguard-onnx-") as folder:
        path = Path(folder) / "model.onnx"
        export_onnx(checkpoint, path)
        return OnnxModel(path, threads, min_samples)  # the runtime holds the graph: the file may go
