"""Data-parallel set-up for ``torchrun`` (DDP): rank, world size, device, process group.

``torchrun --nproc_per_node N -m productgan train ...`` sets RANK / WORLD_SIZE / LOCAL_RANK; without them
the run is a single process. The backend is NCCL on GPUs and gloo on CPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


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


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"params train.device={name!r} but CUDA is not available; use auto or cpu")
    return device


def setup(device_name: str) -> DistContext:
    """Join the process group when launched by torchrun; pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    device = pick_device(device_name, local_rank)
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
