"""Train and evaluation presets (torchvision ``presets.py`` style).

Both are thin, picklable wrappers around `cral_model.preprocessing`, the single home of preprocessing:
the evaluation preset *is* `preprocessing.preprocess`, i.e. exactly what `Predictor` applies at inference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cral_model.preprocessing import preprocess, train_transform

if TYPE_CHECKING:
    import numpy as np
    import torch

    from cral_model.config import PreprocessConfig

__all__ = ["EvalPreset", "TrainPreset"]


class EvalPreset:
    """``image -> preprocess(image, cfg)``: resize, centre crop, normalise. (C, S, S) float32."""

    def __init__(self, cfg: PreprocessConfig) -> None:
        self.cfg = cfg

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        return preprocess(image, self.cfg)


class TrainPreset:
    """Random resized crop (``scale``) of the resized image + horizontal flip (+ optional rotation and
    intensity jitter, see `cral_model.preprocessing.TrainTransform`), then the same normalisation.

    Randomness comes from torch's global generator, which `ImageDataset` seeds per sample.
    """

    def __init__(
        self,
        cfg: PreprocessConfig,
        *,
        scale: tuple[float, float] = (0.08, 1.0),
        hflip: bool = True,
        rotate: float = 0.0,
        intensity: float = 0.0,
        downscale: float = 0.0,
        downscale_min: int = 64,
    ):
        self.cfg = cfg
        self._t = train_transform(
            cfg,
            scale=tuple(scale),
            hflip=hflip,
            rotate=rotate,
            intensity=intensity,
            downscale=downscale,
            downscale_min=downscale_min,
        )

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        return self._t(image)
