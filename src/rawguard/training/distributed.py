"""Process-group setup for DDP launched by ``torchrun`` (NCCL on GPUs, gloo on CPU).

``torchrun --nproc_per_node N -m rawguard.cli train ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; without them everything runs as a single process and no process group is created.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from rawguard.config import ConfigError


@dataclass
class DistContext:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False
    gpu: int = 0
    """This rank's CUDA device index (the local rank, or shared round-robin under gloo)."""

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, evaluates and writes checkpoints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_backend(backend: str, device_kind: str) -> str:
    """``auto`` -> NCCL on CUDA, gloo on CPU; NCCL on CPU is a configuration error."""
    if backend == "auto":
        return "nccl" if device_kind == "cuda" else "gloo"
    if backend == "nccl" and device_kind != "cuda":
        raise ConfigError("train.dist_backend: nccl needs CUDA devices (use gloo or auto on CPU)")
    return backend


def init_distributed(device_kind: str, backend: str = "auto") -> DistContext:
    """Join the process group described by torchrun's environment variables (if any).

    Args:
        device_kind: ``"cuda"`` or ``"cpu"``.
        backend: ``auto`` (NCCL on CUDA, gloo on CPU), ``nccl`` or ``gloo``.

    Raises:
        ConfigError: naming ``train.dist_backend``, for NCCL with more local ranks than GPUs (NCCL
            refuses two ranks on one device) or NCCL without CUDA.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = resolve_backend(backend, device_kind)
    gpu = 0
    if device_kind == "cuda":
        count = torch.cuda.device_count()
        if backend == "nccl" and local_rank >= count:
            raise ConfigError(
                f"train.dist_backend: NCCL needs one GPU per rank, but local rank {local_rank} found {count} "
                f"GPU(s); start fewer ranks (--nproc_per_node {count}), or set train.dist_backend=gloo to share them"
            )
        gpu = local_rank % count
        torch.cuda.set_device(gpu)
    if dist.is_initialized():
        return DistContext(rank, world_size, local_rank, initialized_here=False, gpu=gpu)
    dist.init_process_group(backend=backend)
    return DistContext(rank, world_size, local_rank, initialized_here=True, gpu=gpu)


def shutdown_distributed(ctx: DistContext, finished: bool = True) -> None:
    """Leave the process group this process joined (a no-op for a group someone else created).

    Args:
        finished: the job ended normally on this rank. Every rank then waits for the others before
            tearing down, so no rank closes its connections while a peer still has traffic in
            flight on them (gloo aborts such a peer from its own I/O thread). After a failure
            there is no wait: the other ranks may never arrive.
    """
    if ctx.initialized_here and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def broadcast_object(value: Any, ctx: DistContext) -> Any:
    """Rank 0's ``value`` on every rank (identity in a single process)."""
    if not ctx.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def any_rank(flags: list[bool], ctx: DistContext) -> list[bool]:
    """Element-wise: true on every rank where the flag is true on any rank (one all-reduce).

    E.g. a SIGTERM delivered to one rank only, or one rank's clock passing a time budget first.
    """
    if not ctx.enabled:
        return [bool(f) for f in flags]
    tensor = torch.tensor([1.0 if f else 0.0 for f in flags])
    if dist.get_backend() == "nccl":  # NCCL reduces CUDA tensors only
        tensor = tensor.cuda()
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return [bool(v > 0) for v in tensor.tolist()]
