"""Image -> network input. The single home of preprocessing: evaluation, training and inference use it.

All functions are pure: inputs are never modified. Images are 2-D arrays in display orientation
(higher = brighter); RGB(A) arrays are converted to grey.

The input contract: how each source becomes the grey [0, 1] image the network sees
----------------------------------------------------------------------------------
The same picture must reach the network as the same tensor whether it comes from the training loader,
``Predictor.predict``, the viewer or ``cxr-triage``. The range is stated by whoever reads the file and is
never guessed from the values (no min-max scaling anywhere):

- 8-bit PNG / JPEG / TIFF grey (NIH's own export): value / 255. RGB with equal channels is that grey;
  other colour is ITU-R 601 luma, then / 255.
- 16-bit grey PNG / TIFF: value / 65535 (its bit depth).
- DICOM (read by ``cxr_viewer.core``, see ``cxr_viewer.core.network_input``): modality LUT (rescale),
  then the file's own VOI LUT (output / its maximum) or its first window (DICOM linear function), as
  NIH's PNG export did; without either, the full range of the stored bits after the modality LUT.
  MONOCHROME1 is inverted, so that higher is always brighter.
- Arrays handed to `to_unit_float` / `preprocess` / ``Predictor.predict``: uint8 / 255, uint16 / 65535,
  float already in [0, 1]; anything else needs ``value_range=(black, white)`` and is refused without.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from collections.abc import Sequence

    from cral_model.config import PreprocessConfig

__all__ = ["TrainTransform", "preprocess", "preprocess_batch", "to_unit_float", "train_transform"]

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)


def to_unit_float(image: np.ndarray, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """An image -> float32 (H, W) in [0, 1], by the input contract (module docstring). Never min-max.

    Args:
        image: 2-D grey, or (H, W, 1/3/4) colour (ITU-R 601 luma; alpha dropped).
        value_range: ``(black, white)``, the values that map to 0 and 1 (clipped outside). Required for
            any dtype but uint8 (``(0, 255)``), uint16 (``(0, 65535)``), bool and float already in [0, 1].

    Raises:
        ValueError: not a 2-D grey or 3-D colour array, empty, an empty range, or a dtype without a
            stated range (float outside [0, 1], other integers).
    """
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[-1] in (1, 3, 4):
        if a.shape[-1] == 1:
            a = a[..., 0]
        else:
            dtype = a.dtype
            a = a[..., :3].astype(np.float64) @ _LUMA
            if dtype in (np.uint8, np.uint16) and value_range is None:
                value_range = (0.0, 255.0 if dtype == np.uint8 else 65535.0)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D grey image (H, W) or (H, W, 3), got shape {a.shape}")
    if a.size == 0:
        raise ValueError("empty image")
    if value_range is None:
        if a.dtype == np.uint8:
            return a.astype(np.float32) / np.float32(255.0)
        if a.dtype == np.uint16:
            return a.astype(np.float32) / np.float32(65535.0)
        if a.dtype == np.bool_:
            return a.astype(np.float32)
        if np.issubdtype(a.dtype, np.floating):
            out = a.astype(np.float32)  # the one copy: callers never see their array changed
            lo_v, hi_v = float(out.min()), float(out.max())
            if not (math.isfinite(lo_v) and math.isfinite(hi_v)):  # NaN / inf are rare: only then a 2nd pass
                out[~np.isfinite(out)] = 0.0
                lo_v, hi_v = float(out.min()), float(out.max())
            if lo_v < -1e-6 or hi_v > 1 + 1e-6:
                raise ValueError(
                    f"float image values span [{lo_v:.4g}, {hi_v:.4g}], not [0, 1]: pass value_range "
                    "(black, white) or map the image to [0, 1] first (the range is never guessed)"
                )
            return np.clip(out, 0.0, 1.0, out=out)
        raise ValueError(f"{a.dtype} pixels have no stated range: pass value_range (black, white)")
    lo, hi = float(value_range[0]), float(value_range[1])
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi == lo:
        raise ValueError(f"value_range must be two different finite numbers, got {value_range}")
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating) or a.dtype == np.bool_):
        raise ValueError(f"unsupported pixel dtype {a.dtype}")
    f: np.ndarray = a.astype(np.float32 if a.dtype.itemsize <= 2 or a.dtype == np.float32 else np.float64)
    f = np.where(np.isfinite(f), f, lo)
    scaled = (f - lo) / (hi - lo)  # hi < lo inverts (MONOCHROME1 given on stored values)
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """(1, 1, H, W) -> (1, 1, size, size), bilinear with antialiasing when shrinking."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def _resized_grey(
    image: np.ndarray, cfg: PreprocessConfig, value_range: tuple[float, float] | None = None
) -> torch.Tensor:
    """Grey [0, 1] image at ``cfg.resize`` (via ``cfg.base_size`` when set): (1, 1, R, R) float32."""
    x = torch.from_numpy(np.ascontiguousarray(to_unit_float(image, value_range)))[None, None]
    if cfg.base_size is not None:
        x = _resize(x, cfg.base_size)
    return _resize(x, cfg.resize)


def _normalize(x: torch.Tensor, cfg: PreprocessConfig) -> torch.Tensor:
    """(1, S, S) grey in [0, 1] -> (C, S, S) normalised."""
    mean = torch.tensor(cfg.mean, dtype=torch.float32)[:, None, None]
    std = torch.tensor(cfg.std, dtype=torch.float32)[:, None, None]
    return (x.expand(cfg.channels, -1, -1) - mean) / std


def preprocess(
    image: np.ndarray, cfg: PreprocessConfig, value_range: tuple[float, float] | None = None
) -> torch.Tensor:
    """The evaluation/inference transform.

    Grey [0, 1] (`to_unit_float`, with ``value_range`` when the dtype has no stated range) -> resize to
    ``base_size`` (if set) -> resize to ``resize`` x ``resize`` -> centre crop ``input_size`` -> replicate
    to ``channels`` -> ``(x - mean) / std``.

    Returns:
        float32 tensor (C, input_size, input_size).
    """
    x = _resized_grey(image, cfg, value_range)[0]  # (1, R, R)
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
    units, clipped); with probability ``downscale`` the image first passes through a random lower
    resolution (side log-uniform in [``downscale_min``, ``resize``]) and back, so that sharpness says
    nothing about the label when training data mixes resolutions. Randomness comes from torch's global
    generator (seed it, and seed each DataLoader worker). With ``rotate`` and ``intensity`` off, the draws
    are exactly those of crop + flip.
    """

    def __init__(
        self,
        cfg: PreprocessConfig,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip: bool = True,
        rotate: float = 0.0,
        intensity: float = 0.0,
        downscale: float = 0.0,
        downscale_min: int = 64,
    ) -> None:
        self.cfg, self.scale, self.ratio, self.hflip = cfg, scale, ratio, hflip
        self.rotate, self.intensity = float(rotate), float(intensity)
        self.downscale, self.downscale_min = float(downscale), int(downscale_min)

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
        if self.downscale > 0 and torch.rand(1).item() < self.downscale and self.downscale_min < cfg.resize:
            # resolution jitter: through a random lower resolution (log-uniform side) and back up
            lo, hi = math.log(self.downscale_min), math.log(cfg.resize)
            side = round(math.exp(torch.empty(1).uniform_(lo, hi).item()))
            x = F.interpolate(_resize(x, side), size=(cfg.resize,) * 2, mode="bilinear", align_corners=False)
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
