"""AG-CNN: attention-guided convolutional network (Guan et al. 2018, arXiv 1801.09927).

What the source gives (``../shared/docs/SEED_METHODS.md``, from the published paper):

- Global branch: a backbone on the whole image, global max pooling, FC, sigmoid, BCE.
- Heat map: max over channels of |F| of the global branch's last feature map; normalised to [0, 1];
  mask = heat > tau (0.7; 0.6-0.8 all worked); the largest connected region; its bounding box, mapped
  to input coordinates; that box cropped from the input and resized to the input size.
- Local branch: the same architecture with its own weights, trained on the crops (global max pooling,
  FC, sigmoid). Fusion branch: the two pooled feature vectors concatenated (2N) -> FC -> sigmoid.
- Training in three sequential stages: global; local with the global branch frozen; fusion with
  both frozen (SGD momentum 0.9, wd 1e-4, lr 0.01 / 10 after 20 epochs, 50 epochs per stage).
- 15 outputs in the paper (14 findings + No Finding); we keep our K = 14 (No Finding = all zero).

Our choices (not in the source):

- The mask is thresholded on the feature grid (7 x 7 at 224 px), not on a heat map upsampled to the
  input: connected regions are then found exactly by a fixed number (h * w - 1) of 3 x 3 max-pool label
  propagations (8-connectivity), which is plain tensor code that ONNX export and batching keep. The box
  is therefore a union of whole feature cells (32 px at stride 32). Ties between equally large regions
  go to the first in row-major order. A constant heat map (nothing above tau) crops the whole image.
- The crop is resampled bilinearly (``grid_sample``, no antialiasing) to the input size.
- The fusion layer starts its stage as the mean of the two trained branch heads (``[W_g, W_l] / 2``,
  so its first logits are the mean of the branches' logits); ``--agcnn-fusion-init random`` keeps
  PyTorch's default initialisation (the paper does not say).
- Stages are the engine's phases: ``cral-train --epochs E`` trains E epochs per stage (3E in all) with the
  learning-rate schedule restarting each stage, so ``--epochs 50 --lr-steps 20`` is the paper's recipe.
  The stage is a buffer of the network (saved in checkpoints): a model exported during the global
  stage answers with the global branch, one from the fusion stage with the fusion branch, so the
  validation that selected it and the Predictor agree. Frozen branches keep batch norm in eval mode.
- Per-class maps (`forward_all`): the class activation maps of the global branch, ``theta_c . F(x, y)
  + b_c`` (``evidence``) and their sigmoid (``attention``), on the whole image's grid (the local branch
  sees a crop, which the viewer could not place). With max pooling the logit is not the grid mean of
  these cells (it is for CRAL's average pooling); after fusion the local branch adds to it as well.
- The crop box comes back with every prediction (``CRALOutput.box``), as fractions ``(x0, y0, x1, y1)``
  of the network input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from cral_model.models.attention import class_agnostic_map
from cral_model.models.backbones import build_backbone
from cral_model.models.base import ChestNet, gap_cam
from cral_model.models.cral import CRALOutput

if TYPE_CHECKING:
    from cral_model.config import ModelConfig

__all__ = ["AGCNN", "STAGES", "crop_and_resize", "heat_map", "largest_region_box"]

#: the three training stages, in order (index = the ``stage`` buffer)
STAGES: tuple[str, ...] = ("global", "local", "fusion")


def heat_map(feats: torch.Tensor) -> torch.Tensor:
    """max over channels of |F|, min-max normalised to [0, 1] per image: (B, N, h, w) -> (B, h, w)."""
    m = feats.abs().amax(dim=1)
    lo = m.flatten(1).amin(1)[:, None, None]
    hi = m.flatten(1).amax(1)[:, None, None]
    return (m - lo) / (hi - lo).clamp_min(1e-12)


def largest_region_box(mask: torch.Tensor) -> torch.Tensor:
    """Bounding box of the largest 8-connected region of each mask, in grid cells.

    Args:
        mask: (B, h, w) bool. An empty mask gives the whole grid.

    Returns:
        (B, 4) float ``(x0, y0, x1, y1)`` with exclusive ends: columns x0..x1-1, rows y0..y1-1.
    """
    b, h, w = mask.shape
    m = mask.to(torch.float32)
    index = torch.arange(1, h * w + 1, dtype=torch.float32, device=mask.device).view(1, 1, h, w)
    labels = index * m[:, None]  # (B, 1, h, w): each cell its own label, 0 outside
    # A label travels one cell per step; a region of n cells is spanned in at most n - 1 steps.
    for _ in range(h * w - 1):
        labels = F.max_pool2d(labels, 3, stride=1, padding=1) * m[:, None]
    flat = labels.view(b, h * w)  # every cell of a region now holds the region's largest index
    same = (flat[:, :, None] == flat[:, None, :]) & (flat[:, None, :] > 0)  # (B, hw, hw)
    sizes = same.sum(-1) * (flat > 0)  # size of the region of each cell, 0 outside
    best = flat.gather(1, sizes.argmax(1, keepdim=True))  # (B, 1) label of the largest region
    region = ((flat == best) & (flat > 0)).view(b, h, w)
    empty = ~region.flatten(1).any(1)
    region = region | empty[:, None, None]  # nothing above the threshold: the whole grid
    rows, cols = region.any(2), region.any(1)  # (B, h), (B, w)
    r = torch.arange(h, device=mask.device)
    c = torch.arange(w, device=mask.device)
    y0 = torch.where(rows, r, h).amin(1)
    y1 = torch.where(rows, r, -1).amax(1) + 1
    x0 = torch.where(cols, c, w).amin(1)
    x1 = torch.where(cols, c, -1).amax(1) + 1
    return torch.stack([x0, y0, x1, y1], dim=1).to(torch.float32)


def crop_and_resize(x: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """Crop each image to its box and resample it bilinearly to the input size.

    Args:
        x: (B, C, H, W).
        box: (B, 4) ``(x0, y0, x1, y1)`` as fractions of the image, 0 <= x0 < x1 <= 1.

    Returns:
        (B, C, H, W).
    """
    _, _, h, w = x.shape
    t_y = (torch.arange(h, dtype=x.dtype, device=x.device) + 0.5) / h  # (H,) output sample centres
    t_x = (torch.arange(w, dtype=x.dtype, device=x.device) + 0.5) / w
    bx = box.to(x.dtype)
    # source position as a fraction of the image, then grid_sample's [-1, 1] (align_corners=False)
    sx = bx[:, 0:1] + (bx[:, 2:3] - bx[:, 0:1]) * t_x[None]  # (B, W)
    sy = bx[:, 1:2] + (bx[:, 3:4] - bx[:, 1:2]) * t_y[None]  # (B, H)
    gx = (sx * 2 - 1)[:, None, :].expand(-1, h, -1)
    gy = (sy * 2 - 1)[:, :, None].expand(-1, -1, w)
    grid = torch.stack([gx, gy], dim=-1)  # (B, H, W, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class AGCNN(ChestNet):
    """Global, local and fusion branches (see the module docstring).

    Buffers: ``stage`` (int64 scalar, index into `STAGES`): which branch answers and which trains.
    """

    returns_box = True
    stage: torch.Tensor
    #: how the fusion layer starts its stage (`TrainConfig.agcnn_fusion_init`; the engine sets it)
    fusion_init: str = "branches"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        k = config.num_classes
        self.global_net, n = build_backbone(config.backbone, pretrained=config.pretrained)
        self.local_net, _ = build_backbone(config.backbone, pretrained=config.pretrained)
        self.out_channels = n
        self.global_fc = nn.Linear(n, k)
        self.local_fc = nn.Linear(n, k)
        self.fusion_fc = nn.Linear(2 * n, k)
        self.register_buffer("stage", torch.zeros((), dtype=torch.int64))

    # ------------------------------------------------------------------------- phases

    def _branches(self) -> tuple[tuple[nn.Module, ...], ...]:
        return (
            (self.global_net, self.global_fc),
            (self.local_net, self.local_fc),
            (self.fusion_fc,),
        )

    def set_phase(self, phase: int) -> None:
        """Enter stage ``min(phase, 2)``: only that stage's branch trains; the earlier ones are frozen.

        On entering the fusion stage from an earlier one, with ``fusion_init == "branches"``, the
        fusion layer is set by `init_fusion_from_branches` (a resumed fusion stage keeps its weights:
        the stage buffer is in the checkpoint).
        """
        stage = min(max(int(phase), 0), len(STAGES) - 1)
        if stage == 2 and int(self.stage) < 2 and self.fusion_init == "branches":
            self.init_fusion_from_branches()
        self.stage.fill_(stage)
        for i, modules in enumerate(self._branches()):
            for mod in modules:
                for p in mod.parameters():
                    p.requires_grad_(i == stage)
        self.train(self.training)

    @torch.no_grad()
    def init_fusion_from_branches(self) -> None:
        """Fusion weights ``[W_g, W_l] / 2``, bias ``(b_g + b_l) / 2``: the mean of the branch logits.

        The fusion stage then starts from the two-branch ensemble instead of random weights, from
        which our runs never got back above the local branch (docs/METHODS.md).
        """
        n = self.out_channels
        self.fusion_fc.weight[:, :n].copy_(self.global_fc.weight / 2)
        self.fusion_fc.weight[:, n:].copy_(self.local_fc.weight / 2)
        self.fusion_fc.bias.copy_((self.global_fc.bias + self.local_fc.bias) / 2)

    def train(self, mode: bool = True) -> AGCNN:
        """As `nn.Module.train`, but the branches of finished stages stay in eval mode (frozen BN)."""
        super().train(mode)
        if mode:
            stage = int(self.stage)
            for modules in self._branches()[:stage]:
                for mod in modules:
                    mod.eval()
        return self

    # ------------------------------------------------------------------------- pieces

    def crop_box(self, global_feats: torch.Tensor) -> torch.Tensor:
        """(B, N, h, w) -> (B, 4) box ``(x0, y0, x1, y1)`` as fractions of the input (detached)."""
        heat = heat_map(global_feats.detach())
        mask = heat > self.config.agcnn_tau
        h, w = heat.shape[-2:]
        cells = largest_region_box(mask)
        scale = torch.tensor([w, h, w, h], dtype=cells.dtype, device=cells.device)
        return cells / scale

    def _local(self, x: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
        """Pooled local features (B, N) of the crops."""
        feats: torch.Tensor = self.local_net(crop_and_resize(x, box))
        return feats.amax(dim=(2, 3))

    # ------------------------------------------------------------------------- forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> logits (B, K) of the current stage's branch.

        In training only the branches the stage needs run (frozen ones without gradients).
        """
        if not self.training:
            return self.forward_all(x).logits
        stage = int(self.stage)
        if stage == 0:
            g: torch.Tensor = self.global_net(x)
            out: torch.Tensor = self.global_fc(g.amax(dim=(2, 3)))
            return out
        with torch.no_grad():
            g = self.global_net(x)
            box = self.crop_box(g)
        if stage == 1:
            out = self.local_fc(self._local(x, box))
            return out
        with torch.no_grad():
            pooled = torch.cat([g.amax(dim=(2, 3)), self._local(x, box)], dim=1)
        out = self.fusion_fc(pooled)
        return out

    def forward_all(self, x: torch.Tensor) -> CRALOutput:
        """All three branches; the logits of the current stage, the global branch's maps and the box."""
        g: torch.Tensor = self.global_net(x)  # (B, N, h, w)
        box = self.crop_box(g)
        pooled_g = g.amax(dim=(2, 3))
        pooled_l = self._local(x, box)
        candidates = torch.stack(
            [
                self.global_fc(pooled_g),
                self.local_fc(pooled_l),
                self.fusion_fc(torch.cat([pooled_g, pooled_l], dim=1)),
            ]
        )  # (3, B, K)
        logits = candidates.index_select(0, self.stage.view(1))[0]
        evidence = gap_cam(self.global_fc.weight, self.global_fc.bias, g)
        return CRALOutput(logits, torch.sigmoid(evidence), class_agnostic_map(g), evidence, box)
