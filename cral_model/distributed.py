"""Thin helpers around ``torch.distributed`` for ``torchrun`` launches (env:// rendezvous).

A run is distributed when ``WORLD_SIZE`` > 1 is in the environment (as ``torchrun`` sets it). The
backend is NCCL on CUDA and gloo on CPU. Only rank 0 writes files; metrics are gathered from all ranks.

Batch norm over the global batch (`convert_sync_batchnorm`): ``torch.nn.SyncBatchNorm`` on CUDA (its fused
kernels); on other devices, where torch's SyncBatchNorm refuses to run, `GlobalBatchNorm` (the same
statistics through differentiable all-reduces), so a CPU/gloo job trains like one process too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = [
    "DistInfo",
    "GlobalBatchNorm",
    "all_gather_array",
    "all_reduce_mean",
    "barrier",
    "cleanup",
    "convert_sync_batchnorm",
    "init_distributed",
]


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


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics are those of the global batch over every rank.

    In training mode with an initialised process group of more than one rank, the per-channel mean and
    then the biased variance are summed over ranks with a differentiable all-reduce (`_sum_over_ranks`:
    its backward all-reduces the gradients, so each rank's inputs get the gradient of
    the global batch), two passes like torch's own kernel; the running statistics are updated with the
    unbiased variance of the global batch, exactly as `torch.nn.BatchNorm2d` over the whole batch. Any
    other case (eval, one process) is plain batch norm. Works on every backend (gloo on CPU), unlike
    `torch.nn.SyncBatchNorm`, which needs CUDA.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input (N, C, ...), got {input.dim()}-D")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        synced = self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if not synced:
            out: torch.Tensor = super().forward(input)
            return out
        all_reduce = _sum_over_ranks

        self._check_input_dim(input)
        c = input.shape[1]
        dims = [0, *range(2, input.dim())]
        shape = [1, c] + [1] * (input.dim() - 2)
        count = torch.tensor([input.numel() // c], dtype=input.dtype, device=input.device)
        n = all_reduce(count.detach().clone())  # images x pixels of every rank
        mean = all_reduce(input.sum(dims)) / n
        centred = input - mean.view(shape)
        var = all_reduce((centred * centred).sum(dims)) / n  # biased, as the normalisation uses
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                assert self.num_batches_tracked is not None
                self.num_batches_tracked.add_(1)
                factor = (
                    1.0 / float(self.num_batches_tracked) if self.momentum is None else float(self.momentum)
                )
                unbiased = var * (n / (n - 1)) if float(n) > 1 else var
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased.detach(), alpha=factor)
        out = centred * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            assert self.weight is not None and self.bias is not None
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def _sum_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """Differentiable all-reduce (sum) over the default group; its backward all-reduces the gradient.

    torch's functional collectives (what ``torch.distributed.nn.functional.all_reduce``, now deprecated,
    points to); the result is waited for here, so callers get a plain tensor.
    """
    import torch.distributed as dist
    import torch.distributed._functional_collectives as funcol

    assert dist.group.WORLD is not None
    out = funcol.all_reduce(t, "sum", dist.group.WORLD)
    waited: torch.Tensor = funcol.wait_tensor(out)  # type: ignore[no-untyped-call]
    return waited


def _to_global_bn(module: nn.Module) -> nn.Module:
    """``module`` with every batch-norm layer replaced by a `GlobalBatchNorm` sharing its tensors."""
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        out = GlobalBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        if module.affine:
            out.weight, out.bias = module.weight, module.bias  # the same Parameters: optimizers keep them
        out.running_mean, out.running_var = module.running_mean, module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _to_global_bn(child))
    return out


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Batch norm over the global batch: `torch.nn.SyncBatchNorm` on CUDA, `GlobalBatchNorm` elsewhere.

    Parameters and running buffers are shared with the original layers (an optimizer built before the
    conversion keeps working; state dict keys are unchanged). Call it before wrapping in DDP.
    """
    if device.type == "cuda":
        converted: nn.Module = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # type: ignore[no-untyped-call]
        return converted
    return _to_global_bn(model)
