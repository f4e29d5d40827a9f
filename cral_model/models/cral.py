"""The CRAL network: backbone -> attention -> category-wise residual head."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from cral_model.config import ModelConfig
from cral_model.models.attention import Att1, Att2, CategoryResidualHead, class_agnostic_map
from cral_model.models.backbones import build_backbone
from cral_model.models.base import ChestNet

__all__ = ["CRAL", "CRALOutput", "build_model", "build_model_from_config"]


class CRALOutput(NamedTuple):
    """Everything one forward pass gives.

    logits: (B, K). attention: (B, K, h, w) in (0, 1). saliency: (B, h, w) in [0, 1], class-agnostic.
    evidence: (B, K, h, w) per-cell logits whose grid mean is ``logits`` (see
    `CategoryResidualHead.evidence`). box: (B, 4) crop box ``(x0, y0, x1, y1)`` as fractions of the
    network input (AG-CNN's local-branch crop), None for the methods without one.
    """

    logits: torch.Tensor
    attention: torch.Tensor
    saliency: torch.Tensor
    evidence: torch.Tensor
    box: torch.Tensor | None = None


class CRAL(ChestNet):
    """Category-wise residual attention learning (Guan & Huang) on a torchvision backbone.

    Modes (Table 2): ``full``; ``no_category`` (one map shared by all classes); ``no_residual``
    (H = a^c * F); ``no_attention`` (backbone + GAP + per-class FC, the baseline; its "attention" output
    is the class-agnostic map max_n |F| repeated for every class).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone, n = build_backbone(config.backbone, pretrained=config.pretrained)
        self.out_channels = n
        k = config.num_classes
        maps = 1 if config.mode == "no_category" else k
        self.attention: nn.Module | None
        if config.mode == "no_attention":
            self.attention = None
        elif config.attention == "att1":
            self.attention = Att1(n, maps, config.att_channels or n // 8)
        else:
            self.attention = Att2(n, maps)
        self.head = CategoryResidualHead(n, k, config.mode)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> F (B, N, S/32, S/32)."""
        feats: torch.Tensor = self.backbone(x)
        return feats

    def _attend(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """F -> (features the head pools, attention A (B, K or 1, h, w) or None for ``no_attention``)."""
        if self.attention is None:
            return feats, None
        z, attended = self.attention(feats)
        return attended, torch.sigmoid(z)

    def forward_head(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """F -> (logits (B, K), attention A (B, K or 1, h, w) or None for ``no_attention``)."""
        attended, att = self._attend(feats)
        return self.head(attended, att), att

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> logits (B, K)."""
        return self.forward_head(self.forward_features(x))[0]

    def forward_with_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) -> (logits (B, K), attention (B, K, h, w))."""
        out = self.forward_all(x)
        return out.logits, out.attention

    def forward_all(self, x: torch.Tensor) -> CRALOutput:
        """Logits, per-class attention maps (expanded to K), the class-agnostic saliency map and the
        per-class evidence maps."""
        feats = self.forward_features(x)
        attended, att = self._attend(feats)
        logits = self.head(attended, att)
        evidence = self.head.evidence(attended, att)
        saliency = class_agnostic_map(feats)
        k = self.config.num_classes
        if att is None:
            att = saliency.unsqueeze(1).expand(-1, k, -1, -1)
        elif att.shape[1] != k:
            att = att.expand(-1, k, -1, -1)
        return CRALOutput(logits, att, saliency, evidence)


def build_model_from_config(config: ModelConfig) -> ChestNet:
    """Build the network of ``config.method`` (the only constructor callers should use).

    ``cral`` (the default) is `CRAL`; ``agcnn``, ``can`` and ``iam`` are the related methods of our
    sources (`cral_model.models.agcnn`, `cral_model.models.can`, `cral_model.models.iam`).
    """
    if config.method == "agcnn":
        from cral_model.models.agcnn import AGCNN

        return AGCNN(config)
    if config.method == "can":
        from cral_model.models.can import CAN

        return CAN(config)
    if config.method == "iam":
        from cral_model.models.iam import IAM

        return IAM(config)
    return CRAL(config)


def build_model(
    backbone: str,
    attention: str = "att1",
    mode: str = "full",
    num_classes: int = 14,
    pretrained: str | None = None,
    *,
    att_channels: int | None = None,
) -> CRAL:
    """Build a CRAL network.

    Args:
        backbone: ``resnet18``, ``resnet34``, ``resnet50`` or ``densenet121``.
        attention: ``att1`` or ``att2``.
        mode: ``full``, ``no_category``, ``no_residual`` or ``no_attention``.
        num_classes: K.
        pretrained: ``"imagenet"`` (torchvision weights; fails offline with a clear message) or ``None``.
        att_channels: att1 intermediate width (default N // 8).

    Returns:
        The network, in training mode, on the CPU.
    """
    return CRAL(ModelConfig(backbone, attention, mode, num_classes, att_channels, pretrained))
