"""CRAL attention modules and the category-wise residual head.

Shapes: F is the backbone feature map (B, N, h, w); K is the number of classes; A = sigmoid(Z) is
(B, K, h, w) (or (B, 1, h, w) for the ``no_category`` ablation).

Choices the paper leaves open (documented here and in the README):
- att1 intermediate width M: ``att_channels`` or N // 8 (256 for ResNet-50, 128 for DenseNet-121,
  64 for ResNet-18/34). No batch norm, exactly conv3x3-ReLU-conv3x3-ReLU-conv1x1 as in the paper.
- att2 hourglass depth 2 (two max-pool levels: 7x7 -> 4x4 -> 2x2 at a 224 input), one residual block
  per level on the way down, one on the way up with an additive skip connection, bilinear upsampling
  back to h x w, then conv1x1(N -> N/4)-BN-ReLU-conv1x1(-> K). The trunk has two residual blocks. All
  residual blocks are pre-activation bottlenecks (as in the Residual Attention Network) of width N // 8
  to keep the head lighter than the backbone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Att1", "Att2", "CategoryResidualHead", "class_agnostic_map"]


def _init_conv(m: nn.Module) -> None:
    for mod in m.modules():
        if isinstance(mod, nn.Conv2d):
            nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
            if mod.bias is not None:
                nn.init.zeros_(mod.bias)
        elif isinstance(mod, nn.BatchNorm2d):
            nn.init.ones_(mod.weight)
            nn.init.zeros_(mod.bias)


class _PreActBottleneck(nn.Module):
    """BN-ReLU-conv1x1-BN-ReLU-conv3x3-BN-ReLU-conv1x1 plus identity: (B, N, h, w) -> (B, N, h, w)."""

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=False),
            nn.Conv2d(channels, width, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual: torch.Tensor = self.body(x)
        return x + residual


class Att1(nn.Module):
    """att1: conv3x3 + ReLU, conv3x3 + ReLU, conv1x1 -> Z (B, K, h, w). The features pass unchanged."""

    def __init__(self, in_channels: int, out_maps: int, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, out_maps, 1),
        )
        _init_conv(self)

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(Z, F)``: unnormalised scores (B, K, h, w) and the features to attend (F itself)."""
        return self.net(feats), feats


class Att2(nn.Module):
    """att2: hourglass soft-mask branch (scores Z) plus a two-block trunk branch (features F~)."""

    def __init__(self, in_channels: int, out_maps: int) -> None:
        super().__init__()
        n, width = in_channels, max(in_channels // 8, 16)
        self.down1 = _PreActBottleneck(n, width)
        self.skip1 = _PreActBottleneck(n, width)
        self.down2 = _PreActBottleneck(n, width)
        self.up1 = _PreActBottleneck(n, width)
        self.mask_out = nn.Sequential(
            nn.BatchNorm2d(n),
            nn.ReLU(inplace=True),
            nn.Conv2d(n, n // 4, 1, bias=False),
            nn.BatchNorm2d(n // 4),
            nn.ReLU(inplace=True),
            nn.Conv2d(n // 4, out_maps, 1),
        )
        self.trunk = nn.Sequential(_PreActBottleneck(n, width), _PreActBottleneck(n, width))
        _init_conv(self)

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(Z, F~)``: scores (B, K, h, w) and trunk features (B, N, h, w), which may be < 0."""
        size0 = feats.shape[-2:]
        d1 = self.down1(F.max_pool2d(feats, 3, 2, 1))  # (B, N, ~h/2, ~w/2)
        skip = self.skip1(d1)
        d2 = self.down2(F.max_pool2d(d1, 3, 2, 1))  # (B, N, ~h/4, ~w/4)
        u1 = self.up1(F.interpolate(d2, size=d1.shape[-2:], mode="bilinear", align_corners=False) + skip)
        u0 = F.interpolate(u1, size=size0, mode="bilinear", align_corners=False)
        return self.mask_out(u0), self.trunk(feats)


class CategoryResidualHead(nn.Module):
    """Category-wise residual attention + per-class binary classifiers.

    For class c: H^c = ReLU((1 + a^c) * F) (``no_residual``: ReLU(a^c * F)), h^c = GAP(H^c) in R^N,
    logit_c = theta_c . h^c + b_c.

    Exactness of the einsum form: a^c = sigmoid(z) > 0, so (1 + a^c) > 0 and for any positive s,
    ReLU(s * x) = s * ReLU(x). Hence h^c = mean_hw((1 + a^c) * ReLU(F)) = GAP(G) + mean_hw(a^c * G)
    with G = ReLU(F), one batched matmul (B, K, hw) x (B, hw, N) -> (B, K, N), for F of any sign
    (att1's post-ReLU F and att2's trunk F~ alike), without the (B, K, N, h, w) tensor.
    """

    def __init__(self, in_channels: int, num_classes: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.weight = nn.Parameter(torch.empty(num_classes, in_channels))  # theta: (K, N)
        self.bias = nn.Parameter(torch.empty(num_classes))  # (K,)
        bound = 1.0 / in_channels**0.5  # nn.Linear's default init
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def pool(self, feats: torch.Tensor, att: torch.Tensor | None) -> torch.Tensor:
        """Per-class pooled features h (B, K or 1, N) from F (B, N, h, w) and A (B, K or 1, h, w)."""
        g = torch.relu(feats)
        if att is None:  # no_attention: plain GAP
            return g.mean(dim=(2, 3)).unsqueeze(1)
        hw = g.shape[-1] * g.shape[-2]
        attended = torch.einsum("bkhw,bnhw->bkn", att, g) / hw  # mean_hw(a^c * G)
        if self.mode == "no_residual":
            return attended
        return attended + g.mean(dim=(2, 3)).unsqueeze(1)

    def forward(self, feats: torch.Tensor, att: torch.Tensor | None) -> torch.Tensor:
        """Logits (B, K)."""
        h = self.pool(feats, att)  # (B, K, N) or (B, 1, N), broadcast over classes
        return (h * self.weight).sum(-1) + self.bias

    def evidence(self, feats: torch.Tensor, att: torch.Tensor | None) -> torch.Tensor:
        """Per-cell logits (B, K, h, w): ``b_c + theta_c . H^c(x, y)`` with H^c the attended features.

        The head is global average pooling followed by a linear layer, so its logit is exactly the
        mean of these cells over the grid (a class activation map, Zhou et al. 2016, with CRAL's
        ``(1 + a^c)`` weighting): ``evidence.mean((2, 3)) == logits``. Read one cell as "the logit the
        model would give if the whole image looked like this cell": an absolute scale, comparable
        across images and with the class's threshold, unlike a min-max stretched attention map.
        """
        g = torch.relu(feats)
        cam = torch.einsum("kn,bnhw->bkhw", self.weight, g)  # theta_c . G(x, y)
        if att is not None:
            cam = att * cam if self.mode == "no_residual" else (1.0 + att) * cam
        return cam + self.bias[None, :, None, None]


def class_agnostic_map(feats: torch.Tensor) -> torch.Tensor:
    """max over channels of |F|, scaled to [0, 1] per image (the paper's Fig. 5).

    (B, N, h, w) -> (B, h, w).
    """
    m = feats.detach().abs().amax(dim=1)
    lo = m.flatten(1).amin(1)[:, None, None]
    hi = m.flatten(1).amax(1)[:, None, None]
    return (m - lo) / (hi - lo).clamp_min(1e-12)
