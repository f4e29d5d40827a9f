"""Thin helpers around ``torch.distributed`` for ``torchrun`` launches (env:// rendezvous).

A run is distributed when ``WORLD_SIZE`` > 1 is in the environment (as ``torchrun`` sets it). The
backend is NCCL on CUDA and gloo on CPU. Only rank 0 writes files; metrics are gathered from all ranks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["DistInfo", "all_gather_array", "all_reduce_mean", "barrier", "cleanup", "init_distributed"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group described by torchrun's environment, if any.

    Args:
        device: this process's device (decides the backend: ``nccl`` for CUDA, else ``gloo``).

    Returns:
        `DistInfo`; ``DistInfo()`` when not launched with ``WORLD_SIZE`` > 1.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://", world_size=world, rank=rank)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank)


def cleanup(info: DistInfo) -> None:
    if info.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        import torch.distributed as dist

        dist.barrier()


def _comm_device() -> torch.device:
    import torch.distributed as dist

    return (
        torch.device("cuda", torch.cuda.current_device())
        if dist.get_backend() == "nccl"
        else torch.device("cpu")
    )


def all_gather_array(array: np.ndarray, info: DistInfo) -> list[np.ndarray]:
    """Gather one equally shaped array from every rank; returns them in rank order (all ranks get all)."""
    if not info.distributed:
        return [array]
    import torch.distributed as dist

    t = torch.from_numpy(np.ascontiguousarray(array)).to(_comm_device())
    out = [torch.empty_like(t) for _ in range(info.world_size)]
    dist.all_gather(out, t)
    return [o.cpu().numpy() for o in out]


def all_reduce_mean(values: list[float], info: DistInfo) -> list[float]:
    """Average a few floats over ranks (float64)."""
    if not info.distributed:
        return list(values)
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return (t / info.world_size).cpu().tolist()
