"""One run on several processes (``torchrun``): DistributedDataParallel over gloo on the CPU or
nccl on GPUs.  Every rank trains on its own crops; DDP averages the network's gradients, and
what DDP does not see (the quantiles' auxiliary gradients, the decision to stop) goes through
the collectives here.  On one process each of these is a no-op.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from .optimizers import is_aux


@contextmanager
def process_group():
    """``(rank, world)`` of this process; under torchrun (WORLD_SIZE > 1) it joins the process
    group and leaves it again on the way out."""
    joined = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized()
    if joined:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        yield (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    finally:
        if joined:
            # Without this a rank that finishes first can exit while gloo's threads are still
            # joinable: the interpreter's shutdown then aborts it ("terminate called without an
            # active exception", SIGABRT) and torchrun reports the run failed.
            dist.destroy_process_group()


def wrap(model, device: torch.device, world: int):
    """``model`` itself on one process; on several, wrapped in DDP."""
    if world == 1:
        return model
    # The quantiles follow the auxiliary loss, outside DDP's reducer (average_gradients below).
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
        model, [n for n, _ in model.named_parameters() if is_aux(n)]
    )
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def average_gradients(params: list, world: int) -> None:
    """The mean over the ranks of the gradients of ``params``, in place."""
    if world > 1:
        for p in params:
            dist.all_reduce(p.grad)
            p.grad /= world


def agree(progress: float, world: int) -> tuple[bool, float]:
    """``(done, progress)`` as rank 0 sees them (a wall-clock budget ends on every rank at once)."""
    flags = torch.tensor([float(progress >= 1.0), progress])
    if world > 1:
        dist.broadcast(flags, 0)
    return bool(flags[0] > 0), float(flags[1])


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()
