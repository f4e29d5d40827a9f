"""Training losses, chosen by name (``cral-train --loss {bce,can}``) and usable by every method.

- ``bce``: binary cross-entropy with logits averaged over batch and classes (CRAL's, the default).
- ``can``: `CANLoss`, the loss of the cross-attention networks paper (Ma et al. 2019) as we build it.

What the source gives (the CAN abstract only, ``../shared/docs/seeds/``): a loss "beyond cross-entropy"
that overcomes the imbalance between classes and the domination of easy samples within each class.
Our construction (marked as our choice; the paper's exact formula is not in our sources):

    L = mean over (i, c) of  w_c(y_ic) * (1 - p_t)^gamma * BCE(z_ic, y_ic) * 2

- Imbalance: per class c of the batch, positives are weighted ``w_c(1) = (|N_c| + 1) / (B + 2)`` and
  negatives ``w_c(0) = (|P_c| + 1) / (B + 2)`` (the positive/negative balancing of Wang et al. 2017's
  W-CEL, with one pseudo-count each so that a class without positives in the batch keeps a small
  negative weight instead of zero).
- Easy samples: the focal factor ``(1 - p_t)^gamma`` with ``p_t`` the probability of the true label and
  ``gamma = 2`` (Lin et al. 2017), which down-weights confidently right predictions.
- The factor 2 makes a balanced class (w = 1/2 each) with gamma = 0 equal to plain BCE.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cral_model.config import LOSSES

__all__ = ["LOSSES", "CANLoss", "build_loss"]


class CANLoss(nn.Module):
    """Class-balanced focal binary cross-entropy (see the module docstring).

    Args:
        gamma: focusing exponent (0 = no down-weighting of easy samples).
    """

    def __init__(self, gamma: float = 2.0) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(B, K) logits and (B, K) labels in {0, 1} -> scalar loss."""
        targets = targets.to(logits.dtype)
        bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        p = torch.sigmoid(logits)
        p_t = p * targets + (1 - p) * (1 - targets)
        focal = (1 - p_t).pow(self.gamma) if self.gamma else torch.ones_like(p_t)
        b = targets.shape[0]
        pos = targets.sum(0, keepdim=True)  # (1, K)
        neg = b - pos
        w_pos = (neg + 1) / (b + 2)
        w_neg = (pos + 1) / (b + 2)
        weight = (targets * w_pos + (1 - targets) * w_neg).detach()
        return (2.0 * weight * focal * bce).mean()


def build_loss(name: str) -> nn.Module:
    """The loss called ``name`` (one of `LOSSES`), as a module ``loss(logits (B, K), targets (B, K))``.

    Raises:
        ValueError: unknown name.
    """
    if name == "bce":
        return nn.BCEWithLogitsLoss()
    if name == "can":
        return CANLoss()
    raise ValueError(f"unknown loss {name!r}; choose one of {LOSSES}")
