"""The training forward through ``torch.compile``, with a fallback to eager execution.

rawnet-lite's step is many small operations (its convolutions are narrow and short, BatchNorm and
ReLU run as separate passes over every activation), so on a CPU much of it is memory traffic and
per-operator overhead rather than arithmetic. Inductor fuses the element-wise work into the
convolutions' neighbours and generates vectorised C++ for it (Triton kernels on CUDA). The GRU is
left to the eager kernel. See BENCHMARKS.md ("Compiled training step") for what it buys.

Only the training forward is compiled. Scoring (dev selection, ``rawguard evaluate``) runs the
plain module: its shapes change with the window and the last batch, and each new shape would cost
a compilation. The compiled callable shares its parameters with the module, so checkpoints, the
EMA and DDP see the usual module and its usual ``state_dict`` keys.

Compilation needs a C++ compiler on the CPU (Triton on CUDA). Where it fails on the first step,
training warns once and continues eagerly: the option is a speed-up, never a reason to stop a run.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch
from torch import nn


class CompiledForward:
    """Calls ``model`` through ``torch.compile``; if the first compiled call fails, eagerly from then on.

    Args:
        model: the module to run (a DDP wrapper included: its gradient hooks stay in place).
        enabled: compile at all (``False``: a plain call of ``model``).
        warn: where the fallback's one warning goes (default ``sys.stderr``).
    """

    def __init__(self, model: nn.Module, enabled: bool, warn: Callable[[str], None] | None = None):
        self.model = model
        # Static shapes: a run's training batches all have one shape, and static graphs are the
        # faster code. (A second shape in one process, e.g. another run, would otherwise be compiled
        # with symbolic sizes, which Inductor has failed to generate code for; see the tests.)
        self._compiled = torch.compile(model, dynamic=False) if enabled else None
        self._proven = False  # a compiled call has succeeded: later errors are real errors
        self._warn = warn or (lambda message: print(message, file=sys.stderr))
        self.fell_back = False

    @property
    def active(self) -> bool:
        """Whether calls go through the compiled graph."""
        return self._compiled is not None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._compiled is None:
            return self.model(x)
        if self._proven:
            return self._compiled(x)
        try:
            out = self._compiled(x)
        except Exception as error:  # noqa: BLE001 - any compiler failure; re-raised if eager fails too
            if not _is_compiler_failure(error):
                raise
            self._compiled, self.fell_back = None, True
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            self._warn(f"warning: train.compile: torch.compile failed ({first_line[:300]}); training runs eagerly")
            return self.model(x)
        self._proven = True
        return out


def _is_compiler_failure(error: BaseException) -> bool:
    """Whether ``error`` comes from torch's compiler stack (Dynamo, Inductor, a missing C++ compiler
    or Triton) rather than from the model's own computation."""
    try:
        from torch._dynamo.exc import TorchDynamoException
    except ImportError:  # a torch without Dynamo: nothing was compiled
        return True
    if isinstance(error, TorchDynamoException):
        return True
    module = type(error).__module__ or ""
    return module.startswith(("torch._dynamo", "torch._inductor", "triton"))
