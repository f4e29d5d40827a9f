"""`ChestNet`: what every method's network offers the engine, the checkpoint, the Predictor and ONNX.

A method (CRAL, AG-CNN, CAN, iterative attention mining) is an ``nn.Module`` with a `ModelConfig`
and ``forward_all(x) -> CRALOutput`` (logits, per-class maps, class-agnostic map, per-cell evidence,
and optionally a crop box); ``forward(x)`` gives the logits the loss is computed on. Methods that
train in phases (AG-CNN's three stages, attention mining's rounds) implement `set_phase`; a method
whose training step needs the labels (attention mining erases the regions of the positive classes)
sets ``takes_targets`` and returns ``(logits, extra_loss)`` from ``forward(x, targets)`` in training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

if TYPE_CHECKING:
    from cral_model.config import ModelConfig
    from cral_model.models.cral import CRALOutput

__all__ = ["ChestNet", "gap_cam"]


class ChestNet(nn.Module):
    """Base class of every method's network (see the module docstring)."""

    config: ModelConfig
    #: whether ``forward(x, targets)`` in training mode wants the labels and returns (logits, extra loss)
    takes_targets: ClassVar[bool] = False
    #: whether `forward_all` returns a crop box (AG-CNN)
    returns_box: ClassVar[bool] = False

    def forward_all(self, x: torch.Tensor) -> CRALOutput:  # pragma: no cover - abstract
        """(B, 3, S, S) -> `CRALOutput`."""
        raise NotImplementedError

    def forward_with_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) -> (logits (B, K), attention (B, K, h, w))."""
        out = self.forward_all(x)
        return out.logits, out.attention

    def set_phase(self, phase: int) -> None:
        """Enter 0-based training ``phase`` (called by the engine before every epoch). Default: no-op."""
        del phase


def gap_cam(weight: torch.Tensor, bias: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    """Class activation map of a GAP + linear head: (K, N), (K,), (B, N, h, w) -> (B, K, h, w).

    Its grid mean is exactly the head's logit on ``GAP(feats)`` (the map is linear in the features).
    """
    return torch.einsum("kn,bnhw->bkhw", weight, feats) + bias[None, :, None, None]
