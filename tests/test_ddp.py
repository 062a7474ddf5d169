"""Two-process DDP (gloo, CPU) launched by torchrun against single-process training.

With ``TrainBatches`` rank ``r`` gets slice ``r`` of the global batch (crops drawn for the whole
global batch), so the gradient DDP averages over 2 ranks of 4 clips is the gradient one process
computes with ``train.grad_accum=2`` over the same 8 clips: those two runs must agree to float
rounding (the all-reduce sums in another order).

Against plain single-process training on the same global batch of 8 they agree only within a
tolerance: SyncBatchNorm needs CUDA, so on CPU/gloo each rank normalises with the statistics of its
own 4 clips, not all 8, and the gradients differ slightly. Adam moves every weight by at most about
``lr`` per step whatever the gradient, so two runs that start from the same weights cannot drift
apart by more than ``2 * lr`` per step; the check asks for far less than that bound on average.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rawguard.checkpoint import load_checkpoint
from rawguard.config import load_config
from rawguard.models import create_model
from rawguard.train import train
from rawguard.training.log import read_metrics
from helpers.training import TINY, smoke_cache

STEPS, LR = 6, 1e-3
OVERRIDES = TINY + [f"train.max_steps={STEPS}", f"optim.lr={LR}", "optim.schedule=constant", "eval.every=0",
                    "train.log_every=1", "train.checkpoint_every=0", "model.dropout=0.0"]


def _params(path: Path) -> dict[str, torch.Tensor]:
    state = load_checkpoint(path)
    names = {name for name, _ in create_model("rawnet-lite", **state["model_config"]).named_parameters()}
    return {name: t for name, t in state["model"].items() if name in names}  # BN running stats excluded


def _trained_a_step(run: Path) -> bool:
    log = run / "metrics.jsonl"
    return log.exists() and any(r["type"] == "train" for r in read_metrics(log))


def _gloo_abort(stderr: str, run: Path) -> bool:
    """Whether a failed torchrun launch died of gloo's transport rather than of rawguard: a rank
    aborted by an exception in gloo's own thread, or a rank gone before the first step."""
    return "terminate called without an active exception" in stderr or not _trained_a_step(run)


@pytest.mark.parametrize("extra", [[], ["train.compile=true"]], ids=["plain", "compile"])
def test_two_process_gloo_ddp_matches_single_process(tmp_path, extra):
    # Compiled, DDP's gradient hooks stay outside the graph.
    overrides = OVERRIDES + extra
    cache = tmp_path / "smoke"
    smoke_cache(cache)
    ddp_run = tmp_path / "ddp"
    done = _train_two_ranks(cache, ddp_run, overrides)
    assert done.stdout.count("done (max_steps)") == 1  # rank 0 alone reports

    last = load_checkpoint(ddp_run / "last.pt")
    assert last["world_size"] == 2 and last["step"] == STEPS
    fingerprints = last["rank_fingerprints"]
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]  # the replicas agree exactly
    losses = [r["loss"] for r in read_metrics(ddp_run / "metrics.jsonl") if r["type"] == "train"]
    assert len(losses) == STEPS and all(0 < x < 5 for x in losses)

    # The same computation in one process: 2 micro-batches of 4 per step.
    accum = tmp_path / "accum"
    train(load_config(overrides=overrides + ["train.grad_accum=2"]), cache, cache, accum, progress=False)
    ddp, single = _params(ddp_run / "last.pt"), _params(accum / "last.pt")
    init = {n: p.detach() for n, p in _init_params().items()}
    moved = max((single[n] - init[n]).abs().max().item() for n in single)
    assert moved > 0.5 * LR  # it did train
    for name in ddp:
        torch.testing.assert_close(ddp[name], single[name], rtol=1e-4, atol=1e-5, msg=f"{name} differs")
    accum_losses = [r["loss"] for r in read_metrics(accum / "metrics.jsonl") if r["type"] == "train"]
    assert losses == pytest.approx(accum_losses, rel=1e-5)

    # Plain single-process training on the same global batch: BatchNorm sees 8 clips, not 2 x 4.
    plain = tmp_path / "plain"
    train(load_config(overrides=overrides), cache, cache, plain, progress=False)
    reference = _params(plain / "last.pt")
    bound = 2 * LR * STEPS
    drift = [(ddp[n] - reference[n]).abs() for n in ddp]
    assert max(d.max().item() for d in drift) <= bound * 1.01
    mean_drift = torch.cat([d.flatten() for d in drift]).mean().item()
    assert mean_drift < 0.25 * bound, mean_drift


def test_ranks_share_one_fitted_schedule(tmp_path):
    # Each rank's clock measures its own speed; rank 0's plan must hold for both, or they would
    # stop at different steps and the last all-reduce would hang.
    cache = tmp_path / "smoke"
    smoke_cache(cache)
    run = tmp_path / "ddp"
    _train_two_ranks(cache, run, TINY + ["train.max_steps=100000", "train.max_minutes=0.1", "train.fit_schedule=true",
                                         "eval.every=20", "train.log_every=10", "train.checkpoint_every=0"])
    plans = [r for r in read_metrics(run / "metrics.jsonl") if r["type"] == "plan"]
    assert len(plans) == 1 and plans[0]["step"] == 20 and 20 < plans[0]["max_steps"] < 100000
    last = load_checkpoint(run / "last.pt")
    assert last["planned_steps"] == plans[0]["max_steps"] and last["step"] <= last["planned_steps"]
    assert last["rank_fingerprints"][0] == last["rank_fingerprints"][1]  # both ranks stopped at the same step


def _train_two_ranks(cache: Path, run: Path, overrides: list[str]) -> subprocess.CompletedProcess:
    """``rawguard train`` under torchrun with 2 gloo ranks; fails the test unless it finished."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "rawguard.cli", "train", "--train", str(cache), "--dev", str(cache), "--out", str(run),
               "--no-progress", "--set", *overrides]
    for attempt in range(3):
        done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                              timeout=300)
        if done.returncode == 0 or not _gloo_abort(done.stderr, run):
            break
        # gloo's TCP transport on a busy machine: an exception in its device thread aborts the rank
        # ("terminate called without an active exception", SIGABRT; pytorch/gloo#162), not this
        # code. Seen once before the ranks waited for each other at exit (shutdown_distributed);
        # kept as a guard. Launch again from a clean folder; a failure of any other kind fails the test.
        shutil.rmtree(run, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _init_params() -> dict[str, torch.Tensor]:
    config = load_config(overrides=OVERRIDES)
    torch.manual_seed(config.train.seed)
    return dict(create_model(config.model.name, **config.model.overrides).named_parameters())


def test_nccl_with_more_ranks_than_gpus_is_a_config_error(monkeypatch):
    from rawguard.config import ConfigError
    from rawguard.training import distributed

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match=r"train.dist_backend: NCCL needs one GPU per rank.*found 1 GPU"):
        distributed.init_distributed("cuda", "auto")
    with pytest.raises(ConfigError, match="train.dist_backend: nccl needs CUDA"):
        distributed.init_distributed("cpu", "nccl")
    assert distributed.resolve_backend("auto", "cpu") == "gloo"
    assert distributed.resolve_backend("auto", "cuda") == "nccl"
    assert distributed.resolve_backend("gloo", "cuda") == "gloo"


def test_unknown_dist_backend_is_refused():
    from rawguard.config import ConfigError

    with pytest.raises(ConfigError, match="train.dist_backend"):
        load_config(overrides=["train.dist_backend=mpi"])


@pytest.mark.parametrize("finished", [True, False])
def test_shutdown_waits_for_the_other_ranks_only_after_a_normal_end(tmp_path, monkeypatch, finished):
    import torch.distributed as dist

    from rawguard.training import distributed

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    barriers = []
    real_barrier = dist.barrier
    monkeypatch.setattr(dist, "barrier", lambda *a, **k: (barriers.append(True), real_barrier(*a, **k))[1])
    ctx = distributed.DistContext(rank=0, world_size=1, initialized_here=True)
    distributed.shutdown_distributed(ctx, finished=finished)
    assert not dist.is_initialized()  # the group is gone either way
    assert barriers == ([True] if finished else [])  # after a failure, peers may never arrive


def test_shutdown_leaves_a_group_it_did_not_create(tmp_path):
    import torch.distributed as dist

    from rawguard.training import distributed

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        distributed.shutdown_distributed(distributed.DistContext(rank=0, world_size=1, initialized_here=False))
        assert dist.is_initialized()
    finally:
        dist.destroy_process_group()
