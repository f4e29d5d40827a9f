"""`TrainConfig`: one frozen, flat dataclass per training run.

Every field is a ``cral-train`` flag (``batch_size`` <-> ``--batch-size``) and a key of the YAML config
file (``--config FILE.yaml``). Precedence: dataclass defaults (the paper's recipe) < YAML file < flags.
The resolved config is written to ``OUTPUT/config.yaml`` and stored in the training state, so
``--resume`` and the exported checkpoint know exactly what ran.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cral_model.config import (
    AGCNN_FUSION_INITS,
    LOSSES,
    ConfigError,
    ModelConfig,
    PreprocessConfig,
    _from_dict,
)

__all__ = ["PAPER_PRESET", "TrainConfig", "load_yaml_config"]

#: ``cral-train --paper``: Guan & Huang's Section 4.2 recipe where our defaults differ from it (every
#: other default already is the paper's: SGD 0.9, weight decay 1e-4, batch 64, lr 0.01 / 10 after epoch
#: 20, resize 256 + random resized crop 224 + flip). The README lists each difference and its reason.
PAPER_PRESET: dict[str, Any] = {
    "pretrained": "imagenet_v1",  # torchvision's original ImageNet weights (V2 came out in 2021)
    "val_fraction": 0.0,  # train on all of train_val (no held-out patients)
    "epochs": 30,
    "export": "last",  # the 30th epoch, no selection on a validation split
    "normalize": "mean",  # ImageNet mean subtracted, no division by the std
    "lr": 0.01,
    "lr_steps": (20,),
    "lr_schedule": "step",
    "batch_size": 64,
    "optimizer": "sgd",
    "input_size": 224,
    "resize": 256,
}


@dataclass(frozen=True)
class TrainConfig:
    """A training run. Defaults follow Guan & Huang's Section 4.2 recipe except where the README's
    "Deviations from the paper" says otherwise (V2 ResNet-50 weights, a validation split with the best
    epoch exported, division by the ImageNet std); `PAPER_PRESET` (``cral-train --paper``) undoes them.

    Data:
        data_root: NIH ChestX-ray14 root (images anywhere below it), or several roots whose images are
            pooled (a tuple; ``--data-root A B``). Required unless ``train_csv`` is set.
        labels_dir: folder with ``Data_Entry_2017*.csv[.gz]`` and the list files, when not below data_root.
        train_csv / val_csv: own data in the plain CSV format (`cral_model.data.nih`); ``val_csv`` None
            splits ``val_fraction`` of the patients off ``train_csv``.
        val_fraction: fraction of train_val *patients* held out for validation (model selection, thresholds).
        split_seed: seed of that patient split (kept apart from ``seed`` so runs with different seeds
            share one validation set).
        allow_missing: train/validate on the images present instead of refusing a partial copy.
        max_train_images: use a seeded random subset of at most this many training images (smoke runs).
        cache_images: keep decoded images in memory; None = automatic (small images only).
    Model: backbone, attention, mode, att_channels, pretrained (``"imagenet"``: torchvision's best
        weights, V2 for ResNet-50; ``"imagenet_v1"``: the original release, the paper's; ``"none"``); method
        (``cral``, ``agcnn``, ``can``, ``iam``: docs/METHODS.md), loss (``bce`` or ``can``,
        `cral_model.losses`), agcnn_tau (AG-CNN's crop threshold), agcnn_fusion_init (``branches``: the
        fusion layer starts as the mean of the two trained branch heads; ``random``: PyTorch's default
        initialisation, our runs before 2026-12-02), iam_rounds (attention-mining rounds).
        AG-CNN trains ``epochs`` per stage (3 stages) and attention mining ``epochs`` per round, the
        learning-rate schedule restarting each; `total_epochs` is what the run trains in all.
    Preprocessing: input_size (network input), resize (None = input_size * 256 / 224, the paper's
        ratio), base_size (optional first down-resize, see `PreprocessConfig`), normalize
        (``imagenet``: ``(x - mean) / std``; ``mean``: ``x - mean``, the paper's), crop_scale (random
        resized crop area range), hflip, rotate (maximum random rotation in degrees, 0 = off),
        intensity (random contrast and brightness change of up to this fraction, 0 = off),
        downscale (probability of a resolution jitter: through a random side in [downscale_min, resize]
        and back; for data that mixes resolutions, so that sharpness cannot stand in for the label). The
        paper's recipe is crop + flip only; rotate/intensity are extra regularisation for tiny data sets.
    Optimisation: epochs, batch_size (global: split evenly over distributed ranks), optimizer (``sgd``,
        the paper's, with ``momentum``; or ``adamw``, decoupled weight decay, for fine-tuning a small
        pretrained backbone on little data), lr, momentum, weight_decay, lr_schedule (``step``: lr_steps
        are the epochs after which lr is multiplied by lr_gamma; ``cosine``: lr * (1 + cos(pi e / E)) / 2
        at 0-based epoch e of E), warmup_epochs (linear ramp from lr / 10 over the first epochs), lr_gamma,
        ema_decay (None = off; else validation and export use an exponential moving average of the
        weights, updated after every step with this decay), export (``best``: the epoch with the best
        validation mean AUC, our default, not the paper's: it trains 30 epochs on all of train_val;
        ``last``: the final epoch, the paper's, which does not select on a validation split),
        threshold_rule (per-class operating points fitted on the validation split at export:
        ``youden``, Youden's J per class; ``normal_flag_rate``, one
        common specificity, the lowest that flags at most ``max_normal_flag_rate`` of the validation
        "No Finding" images, see `cral_model.metrics.normal_flag_rate_thresholds`).
    Runtime: workers (DataLoader processes per rank), seed, device (``auto``/``cpu``/``cuda``/
        ``cuda:N``), amp (CUDA mixed precision), channels_last (CUDA), deterministic (None = on for
        CPU, off for CUDA), threads (torch CPU threads, None = torch default), freeze_bn (batch-norm
        layers use and keep their running statistics: same result for any number of ranks), sync_bn
        (training batch norm normalises over the global batch of all ranks, so the result does not
        depend on the number of GPUs: the paper's batch 64 on 8 GPUs leaves 8 images per GPU; None = on
        for multi-process CUDA runs, off otherwise; ignored with freeze_bn or one process),
        eval_batch_size (None = batch_size), progress (tqdm bar).
    """

    # data
    data_root: str | tuple[str, ...] | None = None
    labels_dir: str | None = None
    train_csv: str | None = None
    val_csv: str | None = None
    output: str | None = None
    val_fraction: float = 0.1
    split_seed: int = 0
    allow_missing: bool = False
    max_train_images: int | None = None
    cache_images: bool | None = None
    # model
    backbone: str = "resnet50"
    attention: str = "att1"
    mode: str = "full"
    att_channels: int | None = None
    pretrained: str = "imagenet"
    method: str = "cral"
    loss: str = "bce"
    agcnn_tau: float = 0.7
    agcnn_fusion_init: str = "branches"
    iam_rounds: int = 2
    # preprocessing / augmentation
    input_size: int = 224
    resize: int | None = None
    base_size: int | None = None
    normalize: str = "imagenet"
    crop_scale: tuple[float, float] = (0.08, 1.0)
    hflip: bool = True
    rotate: float = 0.0
    intensity: float = 0.0
    downscale: float = 0.0
    downscale_min: int = 64
    # optimisation
    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_steps: tuple[int, ...] = (20,)
    lr_gamma: float = 0.1
    lr_schedule: str = "step"
    warmup_epochs: int = 0
    ema_decay: float | None = None
    export: str = "best"
    threshold_rule: str = "youden"
    max_normal_flag_rate: float = 0.2
    # runtime
    workers: int = 4
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    deterministic: bool | None = None
    threads: int | None = None
    freeze_bn: bool = False
    sync_bn: bool | None = None
    eval_batch_size: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.pretrained not in ("imagenet", "imagenet_v1", "none"):
            raise ConfigError(
                f"pretrained must be 'imagenet', 'imagenet_v1' or 'none', got {self.pretrained!r}"
            )
        if self.normalize not in ("imagenet", "mean"):
            raise ConfigError(f"normalize must be 'imagenet' or 'mean', got {self.normalize!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        for name in ("epochs", "batch_size", "input_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if self.workers < 0:
            raise ConfigError("workers must be >= 0")
        if self.lr <= 0:
            raise ConfigError("lr must be > 0")
        if len(self.crop_scale) != 2 or not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ConfigError(f"crop_scale must be (lo, hi) with 0 < lo <= hi <= 1, got {self.crop_scale}")
        if not 0.0 <= self.rotate <= 180.0:
            raise ConfigError(f"rotate must be in [0, 180] degrees, got {self.rotate}")
        if not 0.0 <= self.downscale <= 1.0:
            raise ConfigError(f"downscale must be a probability in [0, 1], got {self.downscale}")
        if self.downscale_min < 8:
            raise ConfigError(f"downscale_min must be >= 8, got {self.downscale_min}")
        if not 0.0 <= self.intensity < 1.0:
            raise ConfigError(f"intensity must be in [0, 1), got {self.intensity}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in (0, 1) or None, got {self.ema_decay}")
        if self.optimizer not in ("sgd", "adamw"):
            raise ConfigError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if self.lr_schedule not in ("step", "cosine"):
            raise ConfigError(f"lr_schedule must be 'step' or 'cosine', got {self.lr_schedule!r}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ConfigError(f"warmup_epochs must be in [0, epochs), got {self.warmup_epochs}")
        if self.threshold_rule not in ("youden", "normal_flag_rate"):
            raise ConfigError(
                f"threshold_rule must be 'youden' or 'normal_flag_rate', got {self.threshold_rule!r}"
            )
        if not 0.0 <= self.max_normal_flag_rate <= 1.0:
            raise ConfigError(f"max_normal_flag_rate must be in [0, 1], got {self.max_normal_flag_rate}")
        if self.export not in ("best", "last"):
            raise ConfigError(f"export must be 'best' or 'last', got {self.export!r}")
        if self.max_train_images is not None and self.max_train_images < 1:
            raise ConfigError("max_train_images must be >= 1")
        if self.loss not in LOSSES:
            raise ConfigError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.agcnn_fusion_init not in AGCNN_FUSION_INITS:
            raise ConfigError(
                f"agcnn_fusion_init must be one of {AGCNN_FUSION_INITS}, got {self.agcnn_fusion_init!r}"
            )
        if not isinstance(self.iam_rounds, int) or self.iam_rounds < 1:
            raise ConfigError(f"iam_rounds must be an int >= 1, got {self.iam_rounds!r}")
        if self.ema_decay is not None and self.method in ("agcnn", "iam"):
            raise ConfigError(
                f"ema_decay is not supported with method {self.method!r}: its stage/round is an integer "
                "buffer of the network, which a weight average cannot average"
            )
        # Validate the derived configs early, with their own messages.
        self.model_config()
        self.preprocess_config()

    # ----------------------------------------------------------------- derived configs

    @property
    def resolved_resize(self) -> int:
        """``resize``, or the paper's 256/224 ratio applied to ``input_size``."""
        return self.resize if self.resize is not None else round(self.input_size * 256 / 224)

    def model_config(self) -> ModelConfig:
        return ModelConfig(
            backbone=self.backbone,
            attention=self.attention,
            mode=self.mode,
            att_channels=self.att_channels,
            pretrained=None if self.pretrained == "none" else self.pretrained,
            method=self.method,
            agcnn_tau=self.agcnn_tau,
        )

    @property
    def phases(self) -> int:
        """Training phases of the method: AG-CNN's 3 stages, attention mining's rounds, else 1."""
        if self.method == "agcnn":
            return 3
        if self.method == "iam":
            return self.iam_rounds
        return 1

    @property
    def total_epochs(self) -> int:
        """Epochs the run trains in all: ``epochs`` per phase."""
        return self.epochs * self.phases

    def preprocess_config(self) -> PreprocessConfig:
        if self.normalize == "mean":  # the paper: ImageNet mean subtracted, no division by the std
            return PreprocessConfig(
                input_size=self.input_size,
                resize=self.resolved_resize,
                base_size=self.base_size,
                std=(1.0, 1.0, 1.0),
            )
        return PreprocessConfig(
            input_size=self.input_size, resize=self.resolved_resize, base_size=self.base_size
        )

    @property
    def data_roots(self) -> tuple[str, ...]:
        """``data_root`` as a tuple (empty when unset)."""
        if self.data_root is None:
            return ()
        return (self.data_root,) if isinstance(self.data_root, str) else tuple(self.data_root)

    def lr_at(self, epoch: int) -> float:
        """Learning rate of 0-based ``epoch``.

        ``step``: ``lr * lr_gamma ** #(steps <= epoch)``; ``cosine``: ``lr * (1 + cos(pi * e / E)) / 2``.
        During the first ``warmup_epochs`` the rate ramps linearly from lr / 10 up to that value.
        """
        if self.lr_schedule == "cosine":
            rate = self.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / self.epochs))
        else:
            rate = self.lr * self.lr_gamma ** sum(1 for s in self.lr_steps if epoch >= s)
        if epoch < self.warmup_epochs:
            rate *= 0.1 + 0.9 * epoch / self.warmup_epochs
        return rate

    # ----------------------------------------------------------------- (de)serialisation

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """The inverse of `to_dict` (lists become tuples); unknown keys raise `ConfigError`."""
        return _from_dict(cls, data)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_yaml(self, path: str | Path) -> None:
        import yaml

        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")


def load_yaml_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML run config: a flat mapping of `TrainConfig` field names (``-`` accepted for ``_``)."""
    import yaml

    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}
