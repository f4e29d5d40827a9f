"""Iterative attention mining with knowledge preservation and multi-scale aggregation (Cai et al.,
MICCAI 2018, arXiv 1807.00958).

What the source gives: only the abstract is in our sources (``../shared/docs/seeds/``): a CNN
classifier is trained; attention mining (AM) hides the most salient disease region and trains again so
that the network finds other evidence; a knowledge-preservation (KP) loss keeps the updated network's
responses on the original images close to the original network's; multi-scale aggregation (MSA) of
feature maps helps small findings; evaluated by localization on the NIH boxes against CAM.

What we took from the published paper as we know it: the classifier is a class activation map (CAM)
network (global average pooling + linear); AM runs in rounds, each erasing, for every positive class
of a training image, the region where the previous round's class map is high; the heat maps of the
rounds are combined for localization.

Our choices (not in the source, or not certain from it):

- MSA: the last feature map (stride 32) is upsampled (nearest) to the stride-16 map of the backbone
  (the last stage output at twice the final resolution: ResNet ``layer3``, DenseNet ``denseblock3``,
  EfficientNet-Lite0 block 4), which is projected to N channels by conv1x1-BN-ReLU; the two are added.
  Class maps are therefore on a grid twice as fine as CRAL's (4 x 4 at 64 px, 14 x 14 at 224 px).
- Rounds are the engine's phases: ``--iam-rounds R`` trains R rounds of ``--epochs`` each (round 0 is the
  plain classifier), with the learning-rate schedule restarting each round. At the start of round r >= 1
  the network of round r - 1 is copied into a frozen ``teacher`` (kept in the checkpoint, so resume is
  exact; it doubles the file's size).
- Erasing (round >= 1): for each training image and each positive class, the cells of the teacher's
  class map at >= `ERASE_THRESHOLD` of its min-max range are hidden (union over the positive classes),
  upsampled to the input by nearest neighbour and set to 0 in the normalised input (the data set's mean
  colour). Images without positive labels are not erased.
- Loss (round >= 1): the chosen loss (``--loss``) on the erased images, plus `KP_WEIGHT` times the mean
  squared difference of the probabilities of the student and the teacher on the original images.
  Both inputs go through the student in one batch of 2B.
- Maps (`forward_all`): the student's CAM is the ``evidence`` (its grid mean is the logit exactly); the
  ``attention`` is the element-wise maximum of the student's and the teacher's sigmoid class maps from
  round 1 on (the regions mined in the previous round and the new ones), the student's alone in round 0.
  The logits are always the student's.
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

__all__ = ["ERASE_THRESHOLD", "IAM", "KP_WEIGHT", "MultiScaleCAM", "erase_mask"]

#: fraction of a class map's min-max range from which its cells are erased
ERASE_THRESHOLD = 0.7
#: weight of the knowledge-preservation term
KP_WEIGHT = 1.0


def _stages(trunk: nn.Module) -> list[nn.Module]:
    """The trunk as a list of modules whose composition is its forward (see `backbones`)."""
    from cral_model.models.backbones import _DenseNetTrunk, _ResNetTrunk, _TimmTrunk

    if isinstance(trunk, _ResNetTrunk):
        return [trunk.stem, trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4]
    if isinstance(trunk, _DenseNetTrunk):
        return [*trunk.features.children(), nn.ReLU()]
    if isinstance(trunk, _TimmTrunk):
        net = trunk.net
        return [nn.Sequential(net.conv_stem, net.bn1), *net.blocks, nn.Sequential(net.conv_head, net.bn2)]
    raise TypeError(f"no multi-scale split for {type(trunk).__name__}")


class MultiScaleCAM(nn.Module):
    """Backbone with multi-scale aggregation and a GAP + linear (CAM) head.

    (B, 3, S, S) -> aggregated features (B, N, S/16, S/16) -> logits (B, K), CAM (B, K, S/16, S/16).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        trunk, n = build_backbone(config.backbone, pretrained=config.pretrained)
        # only the stages are registered: the trunk's modules must not appear twice in the state dict
        self.stages = nn.ModuleList(_stages(trunk))
        self._mid = self._find_mid()
        with torch.no_grad():
            was = self.training
            self.eval()
            probe = torch.zeros(1, 3, 64, 64)
            mid_channels = self._run(probe)[0].shape[1]
            self.train(was)
        self.project = nn.Sequential(
            nn.Conv2d(mid_channels, n, 1, bias=False), nn.BatchNorm2d(n), nn.ReLU(inplace=True)
        )
        self.fc = nn.Linear(n, config.num_classes)

    def _find_mid(self) -> int:
        """Index of the last stage whose output is at twice the final resolution (stride 16)."""
        x = torch.zeros(1, 3, 64, 64)
        sizes = []
        with torch.no_grad():
            was = self.training
            self.eval()
            for stage in self.stages:
                x = stage(x)
                sizes.append(x.shape[-1])
            self.train(was)
        final = sizes[-1]
        return max(i for i, s in enumerate(sizes) if s == 2 * final)

    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mid = x
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i == self._mid:
                mid = torch.relu(x)  # DenseNet's block outputs are pre-activation
        return mid, x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> MSA features (B, N, S/16, S/16), >= 0."""
        mid, last = self._run(x)
        up = F.interpolate(last, size=mid.shape[-2:], mode="nearest")
        out: torch.Tensor = self.project(mid) + up
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, K)."""
        logits: torch.Tensor = self.fc(self.features(x).mean(dim=(2, 3)))
        return logits

    def logits_and_cam(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits (B, K), CAM (B, K, h, w) whose grid mean is the logit, features (B, N, h, w))."""
        f = self.features(x)
        return self.fc(f.mean(dim=(2, 3))), gap_cam(self.fc.weight, self.fc.bias, f), f


def erase_mask(cam: torch.Tensor, targets: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Input mask of the regions to hide: (B, K, h, w) class maps, (B, K) labels -> (B, 1, H, W) in {0, 1}.

    A cell is hidden when, for some positive class, its value is >= `ERASE_THRESHOLD` of that class
    map's min-max range (nearest-neighbour upsampling to ``size``).
    """
    lo = cam.flatten(2).amin(2)[..., None, None]
    hi = cam.flatten(2).amax(2)[..., None, None]
    norm = (cam - lo) / (hi - lo).clamp_min(1e-12)
    salient = (norm >= ERASE_THRESHOLD) & (hi > lo)  # a flat map has no salient region
    positive = (targets > 0.5)[..., None, None]
    cells = (salient & positive).any(dim=1, keepdim=True).to(cam.dtype)  # (B, 1, h, w)
    return F.interpolate(cells, size=size, mode="nearest")


class IAM(ChestNet):
    """Student MSA-CAM network plus the frozen previous round (``teacher``); see the module docstring.

    Buffers: ``round`` (int64 scalar): the current attention-mining round (0 = plain classifier).
    """

    takes_targets = True
    round: torch.Tensor

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.student = MultiScaleCAM(config)
        self.teacher = MultiScaleCAM(config)
        self.teacher.load_state_dict(self.student.state_dict())
        self.teacher.requires_grad_(False)
        self.register_buffer("round", torch.zeros((), dtype=torch.int64))

    def set_phase(self, phase: int) -> None:
        """Enter round ``phase``: on entering a later round the student is copied into the teacher."""
        if phase > int(self.round):
            self.teacher.load_state_dict(self.student.state_dict())
            self.round.fill_(phase)
        self.train(self.training)

    def train(self, mode: bool = True) -> IAM:
        """As `nn.Module.train`; the teacher stays in eval mode."""
        super().train(mode)
        self.teacher.eval()
        return self

    def forward(
        self, x: torch.Tensor, targets: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, K); in training from round 1 on with ``targets``: (logits on the erased images,
        weighted knowledge-preservation loss)."""
        if not self.training or targets is None or int(self.round) == 0:
            logits: torch.Tensor = self.student(x)
            return logits
        with torch.no_grad():
            t_logits, t_cam, _ = self.teacher.logits_and_cam(x)
            mask = erase_mask(t_cam, targets, (x.shape[-2], x.shape[-1]))
        both = self.student(torch.cat([x * (1.0 - mask), x]))
        erased, original = both.split(x.shape[0])
        kp = F.mse_loss(torch.sigmoid(original.float()), torch.sigmoid(t_logits.float()))
        return erased, KP_WEIGHT * kp

    def forward_all(self, x: torch.Tensor) -> CRALOutput:
        logits, cam, feats = self.student.logits_and_cam(x)
        _, t_cam, _ = self.teacher.logits_and_cam(x)
        own = torch.sigmoid(cam)
        attention = torch.where(self.round > 0, torch.maximum(own, torch.sigmoid(t_cam)), own)
        return CRALOutput(logits, attention, class_agnostic_map(feats), cam)
