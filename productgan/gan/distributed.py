"""Data-parallel set-up for ``torchrun`` (DDP): rank, world size, device, process group.

``torchrun --nproc_per_node N -m productgan train ...`` sets RANK / WORLD_SIZE / LOCAL_RANK; without them
the run is a single process. The backend is NCCL on GPUs and gloo on CPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from productgan.device import pick_device


@dataclass
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def setup(device_name: str) -> DistContext:
    """Join the process group when launched by torchrun; pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    device = pick_device(device_name, local_rank, setting="train.device")
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", device_id=
                                device if device.type == "cuda" else None)
    return DistContext(rank, world, local_rank, local_world, device)


def teardown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_max(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Element-wise max over ranks (so all ranks take the same decision)."""
    if ctx.distributed:
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return values


def broadcast_buffers(modules: list[torch.nn.Module], ctx: DistContext) -> None:
    """Copy rank 0's buffers (BatchNorm statistics) to every rank, so all ranks hold identical state."""
    if not ctx.distributed:
        return
    for module in modules:
        for buf in module.buffers():
            dist.broadcast(buf.data, src=0)


def all_sum(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Element-wise sum over ranks, in place (a no-op in a single process)."""
    if ctx.distributed:
        dist.all_reduce(values)
    return values


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def set_threads(num_threads: int, ctx: DistContext) -> None:
    """CPU threads per process (``num_threads`` > 0, else the cores shared among this machine's processes);
    on GPUs, cuDNN autotuning and TF32 matmuls."""
    if num_threads > 0:
        torch.set_num_threads(num_threads)
    elif ctx.device.type != "cuda" and ctx.local_world > 1:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        torch.set_num_threads(max(1, cores // ctx.local_world))
    if ctx.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def wrap(module: torch.nn.Module, compile_: bool, ctx: DistContext) -> torch.nn.Module:
    """What the training step calls for ``module``: compiled when asked, wrapped in DDP under torchrun."""
    wrapped = torch.compile(module) if compile_ else module
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        wrapped = DDP(wrapped, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    return wrapped


def local(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` without its DDP wrapper (a pass that must not all-reduce anything)."""
    return module.module if isinstance(module, torch.nn.parallel.DistributedDataParallel) else module
