"""The one device rule: which torch device a ``--device`` / ``device=`` name means on this machine.

``"auto"`` is CUDA when it is available, else the CPU; an explicit name (``"cpu"``, ``"cuda"``,
``"cuda:N"``, ...) is checked and kept. `resolve_device` answers with the name (a ``str``, what
`cral_model.inference.Predictor` stores and reports); `torch_device` is the same rule as a
``torch.device`` with a CUDA index, for the training and evaluation loops (one GPU per ``torchrun`` rank).
"""

from __future__ import annotations

import torch

__all__ = ["resolve_device", "torch_device"]


def resolve_device(device: str = "auto") -> str:
    """The device a name means here.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or any other name ``torch.device`` accepts.

    Returns:
        ``"cuda"`` or ``"cpu"`` for ``"auto"``; any other name unchanged.

    Raises:
        RuntimeError: a CUDA device was named but CUDA is not available, or ``torch.device`` does
            not accept the name.
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was requested but CUDA is not available on this machine")
    torch.device(device)  # raises on nonsense
    return device


def torch_device(device: str = "auto", *, local_rank: int = 0) -> torch.device:
    """`resolve_device` as a ``torch.device``; a CUDA device without index gets one and becomes current.

    Args:
        device: as for `resolve_device`.
        local_rank: this process's rank on its node (``LOCAL_RANK`` under ``torchrun``): a bare
            ``"cuda"`` (or ``"auto"`` on a CUDA machine) becomes ``cuda:(local_rank % device count)``.

    Returns:
        The device; for CUDA also set as the current device (``torch.cuda.set_device``).

    Raises:
        RuntimeError: as `resolve_device`.
    """
    dev = torch.device(resolve_device(device))
    if dev.type == "cuda":
        if dev.index is None:
            dev = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    return dev
