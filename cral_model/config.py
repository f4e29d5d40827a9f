"""Frozen dataclass configs: one source of truth for the model and its preprocessing.

Both round-trip through plain dicts (``to_dict``/``from_dict``) so they can live in JSON checkpoint
metadata and YAML run configs; ``from_dict`` rejects unknown keys instead of silently ignoring them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "AGCNN_FUSION_INITS",
    "ATTENTIONS",
    "BACKBONES",
    "LOSSES",
    "METHODS",
    "MODES",
    "ConfigError",
    "ModelConfig",
    "PreprocessConfig",
]

BACKBONES: tuple[str, ...] = ("resnet18", "resnet34", "resnet50", "densenet121", "efficientnet_lite0")
ATTENTIONS: tuple[str, ...] = ("att1", "att2")
MODES: tuple[str, ...] = ("full", "no_category", "no_residual", "no_attention")
#: the attention methods of our sources (docs/METHODS.md): CRAL, AG-CNN, CAN, iterative attention mining
METHODS: tuple[str, ...] = ("cral", "agcnn", "can", "iam")
#: training losses (`cral_model.losses`): BCE, or CAN's class-balanced focal loss
LOSSES: tuple[str, ...] = ("bce", "can")
#: how AG-CNN's fusion layer starts its stage: the mean of the two trained branch heads, or at random
AGCNN_FUSION_INITS: tuple[str, ...] = ("branches", "random")

_T = TypeVar("_T", bound="DataclassInstance")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range."""


def _from_dict(cls: type[_T], data: dict[str, Any]) -> _T:
    """Build the frozen dataclass ``cls`` from a plain (JSON/YAML) mapping of its field names.

    Lists become tuples (the dataclasses hold tuples: ``mean``, ``crop_scale``, ``lr_steps``,
    several ``data_root`` values); the dataclass's own ``__post_init__`` validates the values.

    Raises:
        ConfigError: ``data`` is not a mapping, or it has keys that are not fields of ``cls``.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown field(s) {unknown}; valid fields: {sorted(names)}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**kwargs)


@dataclass(frozen=True)
class ModelConfig:
    """What `build_model` needs to rebuild a network.

    Attributes:
        backbone: one of `BACKBONES`.
        attention: ``"att1"`` (two 3x3 convs + 1x1) or ``"att2"`` (hourglass soft mask + trunk).
        mode: one of `MODES` (Table 2 ablations).
        num_classes: K, the number of binary findings.
        att_channels: att1 intermediate width; ``None`` means ``out_channels // 8`` of the backbone
            (256 for ResNet-50, 128 for DenseNet-121, 64 for ResNet-18/34).
        pretrained: ``"imagenet"``, ``"imagenet_v1"`` (torchvision's first ImageNet release, the paper's
            era) or ``None`` (how the backbone was initialised; informational once trained).
        method: one of `METHODS` (``cral`` by default; ``attention``/``mode``/``att_channels`` are
            CRAL's and ignored by the others).
        agcnn_tau: AG-CNN's heat-map threshold in (0, 1) for the local crop (the paper's 0.7).
    """

    backbone: str = "resnet50"
    attention: str = "att1"
    mode: str = "full"
    num_classes: int = 14
    att_channels: int | None = None
    pretrained: str | None = None
    method: str = "cral"
    agcnn_tau: float = 0.7

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; choose one of {METHODS}")
        if (
            not isinstance(self.agcnn_tau, (int, float))
            or isinstance(self.agcnn_tau, bool)
            or not 0.0 < self.agcnn_tau < 1.0
        ):
            raise ConfigError(f"agcnn_tau must be a number in (0, 1), got {self.agcnn_tau!r}")
        if self.backbone not in BACKBONES:
            raise ConfigError(f"unknown backbone {self.backbone!r}; choose one of {BACKBONES}")
        if self.attention not in ATTENTIONS:
            raise ConfigError(f"unknown attention {self.attention!r}; choose one of {ATTENTIONS}")
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}; choose one of {MODES}")
        if not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise ConfigError(f"num_classes must be a positive int, got {self.num_classes!r}")
        if self.att_channels is not None and (
            not isinstance(self.att_channels, int) or self.att_channels < 1
        ):
            raise ConfigError(f"att_channels must be a positive int or None, got {self.att_channels!r}")
        if self.pretrained not in (None, "imagenet", "imagenet_v1"):
            raise ConfigError(f"pretrained must be 'imagenet' or None, got {self.pretrained!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return _from_dict(cls, data)


@dataclass(frozen=True)
class PreprocessConfig:
    """The deterministic image -> tensor pipeline shared by evaluation and inference.

    Pipeline (see `cral_model.preprocessing.preprocess`): grey float in [0, 1] -> optional resize to
    ``base_size`` (to match low-resolution training data) -> resize to ``resize`` x ``resize`` ->
    centre crop ``input_size`` -> replicate to 3 channels -> ``(x - mean) / std``.

    Attributes:
        input_size: side of the square network input, a multiple of 32.
        resize: side the image is resized to before the centre crop (>= input_size).
        base_size: if set, the image is first resized to this side (e.g. 64 for a model trained on
            64 px images), so that full-resolution inputs look like the training data.
        mean: per-channel normalisation mean (ImageNet by default).
        std: per-channel normalisation std (ImageNet by default).
        channels: network input channels; grey images are replicated.
    """

    input_size: int = 224
    resize: int = 256
    base_size: int | None = None
    mean: tuple[float, ...] = field(default=(0.485, 0.456, 0.406))
    std: tuple[float, ...] = field(default=(0.229, 0.224, 0.225))
    channels: int = 3

    def __post_init__(self) -> None:
        if self.input_size < 32 or self.input_size % 32:
            raise ConfigError(f"input_size must be a multiple of 32 (>= 32), got {self.input_size}")
        if self.resize < self.input_size:
            raise ConfigError(f"resize ({self.resize}) must be >= input_size ({self.input_size})")
        if self.base_size is not None and self.base_size < 8:
            raise ConfigError(f"base_size must be >= 8 or None, got {self.base_size}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ConfigError("mean and std need one value per channel")
        if any(s <= 0 for s in self.std):
            raise ConfigError("std values must be positive")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        return _from_dict(cls, data)
