"""Attention-map overlays: resizing model maps to the image and colouring them (no Qt).

The model's maps are small (e.g. 7x7 or 2x2 for a 64 px input) and cover the whole image the model saw,
which is the full study image resized to the model's input (see :mod:`cxr_viewer.inference`).
They are upsampled bilinearly to the image size here, so the overlay and the base image share one grid.
"""

from __future__ import annotations

import numpy as np

__all__ = ["COLORMAPS", "attention_to_heatmap", "colormap_lut"]

# Control points (position, r, g, b) of the colour maps offered in the viewer.
COLORMAPS: dict[str, tuple[tuple[float, int, int, int], ...]] = {
    "jet": (
        (0.0, 0, 0, 143),
        (0.125, 0, 0, 255),
        (0.375, 0, 255, 255),
        (0.625, 255, 255, 0),
        (0.875, 255, 0, 0),
        (1.0, 128, 0, 0),
    ),
    "inferno": (
        (0.0, 0, 0, 4),
        (0.25, 87, 16, 110),
        (0.5, 188, 55, 84),
        (0.75, 249, 142, 9),
        (1.0, 252, 255, 164),
    ),
    "hot": ((0.0, 0, 0, 0), (0.375, 255, 0, 0), (0.75, 255, 255, 0), (1.0, 255, 255, 255)),
}


def attention_to_heatmap(
    attention: np.ndarray, out_shape: tuple[int, int], *, normalize: bool = True
) -> np.ndarray:
    """Upsample one attention map to the image grid.

    Args:
        attention: (h, w) real array (the model gives values in [0, 1]); not modified. NaN counts as 0.
        out_shape: ``(H, W)`` of the image.
        normalize: stretch the map to [0, 1] (min-max) so that the most attended region is always
            fully coloured; a constant map becomes all zeros. Without it values are only clipped.

    Returns:
        float32 (H, W) in [0, 1], bilinear interpolation with pixel centres aligned.
    """
    att = np.nan_to_num(np.asarray(attention, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    if att.ndim != 2 or att.size == 0:
        raise ValueError(f"attention must be a non-empty 2-D array, got shape {att.shape}")
    height, width = int(out_shape[0]), int(out_shape[1])
    if height <= 0 or width <= 0:
        raise ValueError(f"out_shape must be positive, got {out_shape}")
    if normalize:
        lo, hi = float(att.min()), float(att.max())
        att = (att - lo) / (hi - lo) if hi - lo > 1e-12 else np.zeros_like(att)
    out = np.clip(_resize_bilinear(att, height, width), 0.0, 1.0)
    return np.asarray(out, dtype=np.float32)


def _resize_bilinear(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    if arr.shape == (height, width):
        return arr.copy()
    try:
        import cv2  # fast path; a declared dependency

        return np.asarray(cv2.resize(arr, (width, height), interpolation=cv2.INTER_LINEAR), dtype=np.float32)
    except ImportError:  # pragma: no cover - only without OpenCV
        h, w = arr.shape
        ys = np.clip((np.arange(height) + 0.5) * h / height - 0.5, 0, h - 1)
        xs = np.clip((np.arange(width) + 0.5) * w / width - 0.5, 0, w - 1)
        y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
        y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
        fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
        top = arr[y0][:, x0] * (1 - fx) + arr[y0][:, x1] * fx
        bottom = arr[y1][:, x0] * (1 - fx) + arr[y1][:, x1] * fx
        return np.asarray(top * (1 - fy) + bottom * fy, dtype=np.float32)


def colormap_lut(name: str = "jet", n: int = 256, *, alpha_ramp: float = 0.35) -> np.ndarray:
    """An RGBA lookup table for heatmaps in [0, 1].

    Args:
        name: one of :data:`COLORMAPS`.
        n: number of entries (>= 2).
        alpha_ramp: fraction of the low end over which alpha rises from 0 to 255, so weakly attended
            regions stay transparent and the anatomy shows through. 0 gives a fully opaque map.

    Returns:
        uint8 (n, 4) RGBA table.

    Raises:
        KeyError: for an unknown colour map name.
    """
    if n < 2:
        raise ValueError("n must be at least 2")
    stops = np.asarray(COLORMAPS[name], dtype=np.float64)
    x = np.linspace(0.0, 1.0, n)
    lut = np.empty((n, 4), dtype=np.uint8)
    for c in range(3):
        lut[:, c] = np.round(np.interp(x, stops[:, 0], stops[:, c + 1])).astype(np.uint8)
    alpha = np.ones(n) if alpha_ramp <= 0 else np.clip(x / alpha_ramp, 0.0, 1.0)
    lut[:, 3] = np.round(alpha * 255).astype(np.uint8)
    return lut
