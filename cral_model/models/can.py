"""CAN: cross-attention networks for multi-label thoracic disease classification (Ma et al., MICCAI 2019
workshop; arXiv 2007.10859).

What the source gives: only the abstract is in our sources (``../shared/docs/seeds/``): two feature
maps attend to each other through their Hadamard (element-wise) product ("cross-attention"), trained
with image-level labels only, plus a loss beyond cross-entropy against class imbalance and the
domination of easy samples (that loss is `cral_model.losses.CANLoss`, ``--loss can``, usable by every
method so that its effect can be measured alone).

What we took from the published paper as we know it: two networks of the same architecture with
their own weights look at the same image, and each one's feature map is re-weighted element-wise by
an attention computed from the other one's; the classifier reads both cross-attended maps.

Our choices (not in the source, or not certain from it):

- Attention of network a over network b: ``sigmoid(conv1x1(F_b))`` with N output channels (one gate
  per feature channel and position), so ``X_a = F_a * sigmoid(W_b F_b)`` is the Hadamard product, and
  symmetrically ``X_b = F_b * sigmoid(W_a F_a)``.
- Head: global average pooling of ``X_a`` and ``X_b``, concatenated (2N) -> one linear layer -> K
  logits; one loss on these logits (no auxiliary per-network losses).
- Both networks start from the same ImageNet weights when pretrained (from different random
  initialisations otherwise); the gates start at zero weights and bias (gate 0.5 everywhere).
- Per-class maps: the head is GAP + linear, so its class activation map
  ``theta_a,c . X_a(x, y) + theta_b,c . X_b(x, y) + b_c`` (``evidence``) has the logit as its exact grid
  mean; ``attention`` is its sigmoid.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from cral_model.models.attention import class_agnostic_map
from cral_model.models.backbones import build_backbone
from cral_model.models.base import ChestNet, gap_cam
from cral_model.models.cral import CRALOutput

if TYPE_CHECKING:
    from cral_model.config import ModelConfig

__all__ = ["CAN"]


class CAN(ChestNet):
    """Two backbones, cross-attention by Hadamard products, one GAP + linear head (module docstring)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        k = config.num_classes
        self.net_a, n = build_backbone(config.backbone, pretrained=config.pretrained)
        self.net_b, _ = build_backbone(config.backbone, pretrained=config.pretrained)
        self.out_channels = n
        self.gate_from_b = nn.Conv2d(n, n, 1)  # attention over F_a computed from F_b
        self.gate_from_a = nn.Conv2d(n, n, 1)
        for gate in (self.gate_from_a, self.gate_from_b):
            nn.init.zeros_(gate.weight)
            nn.init.zeros_(gate.bias)  # type: ignore[arg-type]  # Conv2d(bias=True) has one
        self.fc = nn.Linear(2 * n, k)

    def cross_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) -> (X_a, X_b), each (B, N, h, w) and >= 0."""
        fa: torch.Tensor = self.net_a(x)
        fb: torch.Tensor = self.net_b(x)
        xa = fa * torch.sigmoid(self.gate_from_b(fb))
        xb = fb * torch.sigmoid(self.gate_from_a(fa))
        return xa, xb

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> logits (B, K)."""
        xa, xb = self.cross_features(x)
        logits: torch.Tensor = self.fc(torch.cat([xa.mean(dim=(2, 3)), xb.mean(dim=(2, 3))], dim=1))
        return logits

    def forward_all(self, x: torch.Tensor) -> CRALOutput:
        xa, xb = self.cross_features(x)
        n = xa.shape[1]
        logits = self.fc(torch.cat([xa.mean(dim=(2, 3)), xb.mean(dim=(2, 3))], dim=1))
        w = self.fc.weight
        evidence = gap_cam(w[:, :n], self.fc.bias, xa) + gap_cam(w[:, n:], torch.zeros_like(self.fc.bias), xb)
        saliency = class_agnostic_map(torch.cat([xa, xb], dim=1))
        return CRALOutput(logits, torch.sigmoid(evidence), saliency, evidence)
