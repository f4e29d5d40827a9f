"""Image -> network input. The single home of preprocessing: evaluation, training and inference use it.

All functions are pure: inputs are never modified. Images are 2-D arrays in display orientation
(higher = brighter); RGB(A) arrays are converted to grey.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from cral_model.config import PreprocessConfig

__all__ = ["TrainTransform", "preprocess", "preprocess_batch", "to_unit_float", "train_transform"]

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)


def to_unit_float(image: np.ndarray) -> np.ndarray:
    """Any 2-D (or H x W x 1/3/4) image -> float32 (H, W) in [0, 1].

    uint8 is divided by 255 (so 8-bit PNGs map exactly as in training); bool maps to {0, 1}; every
    other dtype (uint16, int, float) is min-max scaled over its finite values (a constant image gives
    zeros). NaN and inf become 0. RGB uses ITU-R 601 luma weights; alpha is dropped.

    Raises:
        ValueError: not a 2-D grey or 3-D colour array, or empty.
    """
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[-1] in (1, 3, 4):
        if a.shape[-1] == 1:
            a = a[..., 0]
        else:
            dtype = a.dtype
            a = a[..., :3].astype(np.float64) @ _LUMA
            if dtype == np.uint8:
                return np.clip(a / 255.0, 0.0, 1.0).astype(np.float32)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D grey image (H, W) or (H, W, 3), got shape {a.shape}")
    if a.size == 0:
        raise ValueError("empty image")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / np.float32(255.0)
    if a.dtype == np.bool_:
        return a.astype(np.float32)
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"unsupported pixel dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.integer) and a.dtype.itemsize <= 2:
        # 8/16-bit integers are exact in float32: min-max in float32 (no float64 copy, no NaN pass).
        lo_i, hi_i = int(a.min()), int(a.max())
        out32 = a.astype(np.float32)
        if hi_i == lo_i:
            return np.zeros(a.shape, np.float32)
        out32 -= np.float32(lo_i)
        out32 *= np.float32(1.0 / (hi_i - lo_i))
        return np.minimum(out32, np.float32(1.0), out=out32)
    if a.dtype == np.float32:
        finite32 = np.isfinite(a)
        if finite32.all():
            lo32, hi32 = float(a.min()), float(a.max())
            if hi32 <= lo32:
                return np.zeros(a.shape, np.float32)
            out = (a - np.float32(lo32)) * np.float32(1.0 / (hi32 - lo32))
            return np.minimum(out, np.float32(1.0), out=out)
    f = a.astype(np.float64)
    finite = np.isfinite(f)
    if not finite.any():
        return np.zeros(a.shape, np.float32)
    lo, hi = f[finite].min(), f[finite].max()
    out = np.where(finite, f - lo, 0.0)
    if hi > lo:
        out /= hi - lo
    else:
        out[:] = 0.0
    return out.astype(np.float32)


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """(1, 1, H, W) -> (1, 1, size, size), bilinear with antialiasing when shrinking."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def _resized_grey(image: np.ndarray, cfg: PreprocessConfig) -> torch.Tensor:
    """Grey [0, 1] image at ``cfg.resize`` (via ``cfg.base_size`` when set): (1, 1, R, R) float32."""
    x = torch.from_numpy(to_unit_float(image))[None, None]
    if cfg.base_size is not None:
        x = _resize(x, cfg.base_size)
    return _resize(x, cfg.resize)


def _normalize(x: torch.Tensor, cfg: PreprocessConfig) -> torch.Tensor:
    """(1, S, S) grey in [0, 1] -> (C, S, S) normalised."""
    mean = torch.tensor(cfg.mean, dtype=torch.float32)[:, None, None]
    std = torch.tensor(cfg.std, dtype=torch.float32)[:, None, None]
    return (x.expand(cfg.channels, -1, -1) - mean) / std


def preprocess(image: np.ndarray, cfg: PreprocessConfig) -> torch.Tensor:
    """The evaluation/inference transform.

    Grey [0, 1] (`to_unit_float`) -> resize to ``base_size`` (if set) -> resize to ``resize`` x ``resize``
    -> centre crop ``input_size`` -> replicate to ``channels`` -> ``(x - mean) / std``.

    Returns:
        float32 tensor (C, input_size, input_size).
    """
    x = _resized_grey(image, cfg)[0]  # (1, R, R)
    off = (cfg.resize - cfg.input_size) // 2
    x = x[:, off : off + cfg.input_size, off : off + cfg.input_size]
    return _normalize(x, cfg).clone()


def preprocess_batch(images: Sequence[np.ndarray], cfg: PreprocessConfig) -> torch.Tensor:
    """`preprocess` applied to each image, stacked: (B, C, S, S)."""
    return torch.stack([preprocess(im, cfg) for im in images])


class TrainTransform:
    """Training augmentation on top of the same pipeline.

    Random resized crop (the paper: resize 256, random resized crop 224) of the ``resize`` x ``resize``
    image, horizontal flip, and optionally a random rotation of up to ``rotate`` degrees (zero padding
    outside the image) and a random contrast/brightness change of up to ``intensity`` (in [0, 1] grey
    units, clipped). Randomness comes from torch's global generator (seed it, and seed each DataLoader
    worker). With ``rotate`` and ``intensity`` off, the draws are exactly those of crop + flip.
    """

    def __init__(
        self,
        cfg: PreprocessConfig,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip: bool = True,
        rotate: float = 0.0,
        intensity: float = 0.0,
    ) -> None:
        self.cfg, self.scale, self.ratio, self.hflip = cfg, scale, ratio, hflip
        self.rotate, self.intensity = float(rotate), float(intensity)

    def _crop_box(self, size: int) -> tuple[int, int, int, int]:
        # torchvision's RandomResizedCrop.get_params, on a square image, drawing from torch's generator.
        area = size * size
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * torch.empty(1).uniform_(self.scale[0], self.scale[1]).item()
            aspect = math.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1]).item())
            w = round(math.sqrt(target * aspect))
            h = round(math.sqrt(target / aspect))
            if 0 < w <= size and 0 < h <= size:
                i = int(torch.randint(0, size - h + 1, (1,)).item())
                j = int(torch.randint(0, size - w + 1, (1,)).item())
                return i, j, h, w
        return 0, 0, size, size

    def _rotate(self, x: torch.Tensor, degrees: float) -> torch.Tensor:
        """(1, 1, S, S) rotated by ``degrees`` about the centre, bilinear, zeros outside."""
        t = math.radians(degrees)
        c, s = math.cos(t), math.sin(t)
        theta = torch.tensor([[[c, -s, 0.0], [s, c, 0.0]]], dtype=x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        """Returns a float32 tensor (C, input_size, input_size)."""
        cfg = self.cfg
        x = _resized_grey(image, cfg)  # (1, 1, R, R)
        i, j, h, w = self._crop_box(cfg.resize)
        x = x[..., i : i + h, j : j + w]
        x = F.interpolate(x, size=(cfg.input_size,) * 2, mode="bilinear", align_corners=False, antialias=True)
        if self.rotate > 0:
            x = self._rotate(x, torch.empty(1).uniform_(-self.rotate, self.rotate).item())
        x = x[0]
        if self.hflip and torch.rand(1).item() < 0.5:
            x = x.flip(-1)
        if self.intensity > 0:
            contrast = torch.empty(1).uniform_(1 - self.intensity, 1 + self.intensity).item()
            bright = torch.empty(1).uniform_(-self.intensity / 2, self.intensity / 2).item()
            x = ((x - 0.5) * contrast + 0.5 + bright).clamp(0.0, 1.0)
        return _normalize(x, cfg).clone()


def train_transform(cfg: PreprocessConfig, **kwargs: object) -> TrainTransform:
    """Build the training transform (see `TrainTransform` for the keyword arguments)."""
    return TrainTransform(cfg, **kwargs)  # type: ignore[arg-type]
