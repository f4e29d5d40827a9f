"""Attention-map overlays: resizing model maps to the image, colouring and outlining them (no Qt).

The model's maps are small (7 x 7 for a 224 px input) and cover the whole image the model saw, which
is the full study image resized to the model's input (see :mod:`cxr_viewer.inference`). They are
upsampled bilinearly to the image size here, so the overlay and the base image share one grid.

Class maps are drawn on an absolute scale (`class_map`): the model's per-cell evidence for the class
relative to its operating threshold, never min-max stretched, so a 2 % finding cannot paint a red
quadrant. Only the class-agnostic map (the paper's max |F|, labelled as such) is stretched per image.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cxr_viewer.core.prediction import SupportsEvidenceMap
from cxr_viewer.core.state import SALIENCY

if TYPE_CHECKING:
    from cxr_viewer.core.prediction import PredictionLike
    from cxr_viewer.core.state import ViewerState

__all__ = [
    "COLORMAPS",
    "MAP_STYLES",
    "OUTLINE_LEVEL",
    "attention_to_heatmap",
    "class_map",
    "colormap_lut",
    "crop_box_outline",
    "heatmap_for",
    "low_resolution_note",
    "map_grid",
    "outline_paths",
]

#: below this many pixels on the short side an image is shown with a low-resolution warning (the model
#: still scores it down to the pipeline's own floor of 32 px)
LOW_RESOLUTION_PX = 256


def low_resolution_note(shape: tuple[int, int], minimum: int = LOW_RESOLUTION_PX) -> str:
    """A warning for the image view when ``shape`` (H, W) is small, else ``""``.

    A 64 x 64 thumbnail fills the view as well as a 2,000 px radiograph does; the reader must be told that
    fine detail is not there and that the score comes from a low-resolution picture.
    """
    h, w = int(shape[0]), int(shape[1])
    if min(h, w) >= minimum:
        return ""
    return (
        f"Low resolution: {w} x {h} px (under {minimum} px): fine detail is not in the picture "
        "and the score is less reliable"
    )


#: how a map is drawn: a filled colour map, or only its outline (the commercial CXR products' habit)
MAP_STYLES = ("filled", "outline")
#: the outline is drawn where the class map reaches this value (1 = the cell alone reaches the threshold)
OUTLINE_LEVEL = 1.0

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
    attention: np.ndarray, out_shape: tuple[int, int], *, normalize: bool = False
) -> np.ndarray:
    """Upsample one attention map to the image grid.

    Args:
        attention: (h, w) real array (the model gives values in [0, 1]); not modified. NaN counts as 0.
        out_shape: ``(H, W)`` of the image.
        normalize: stretch the map to [0, 1] (min-max), only for maps without a scale of their own
            (the class-agnostic map); a constant map becomes all zeros. Without it values are only
            clipped: class maps keep their absolute scale.

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


def class_map(prediction: PredictionLike, index: int) -> np.ndarray | None:
    """Class ``index``'s map on the feature grid, (h, w) >= 0, on an absolute scale (1 = threshold).

    The prediction's ``evidence_map`` when it has one (`SupportsEvidenceMap`: per-cell probability /
    threshold, see ``cral_model.Prediction.evidence_map``; not clipped, so that upsampling keeps the
    extent of the region at the threshold); else its attention map as it is (values in [0, 1], not
    stretched). None when the index is out of range.
    """
    if isinstance(prediction, SupportsEvidenceMap):
        out = prediction.evidence_map(index)
        if out is not None:
            return np.maximum(np.nan_to_num(np.asarray(out, dtype=np.float32)), 0.0)
    maps = prediction.attention
    if maps is None or not 0 <= index < len(maps):
        return None
    return np.clip(np.nan_to_num(np.asarray(maps[index], dtype=np.float32)), 0.0, 1.0)


def _selected_map(state: ViewerState) -> tuple[np.ndarray | None, bool]:
    """(map on the feature grid, whether it is min-max stretched) for the state's selection."""
    pred, sel = state.prediction, state.selected_map
    if pred is None or sel is None:
        return None, False
    if sel == SALIENCY:
        sal = pred.saliency
        return (None if sal is None else np.asarray(sal, dtype=np.float32)), True
    return class_map(pred, sel), False


def map_grid(state: ViewerState) -> tuple[int, int] | None:
    """``(rows, columns)`` of the selected map's feature grid (e.g. (7, 7)), or None."""
    att, _ = _selected_map(state)
    return None if att is None or att.ndim != 2 else (int(att.shape[0]), int(att.shape[1]))


def heatmap_for(state: ViewerState) -> np.ndarray | None:
    """The selected map of ``state.prediction`` on the source image grid, (H, W) in [0, 1], or None.

    Class maps keep their absolute scale (`class_map`); the class-agnostic map is stretched per image
    (it has no scale of its own). Outside ``state.map_region`` the map is 0.
    """
    image = state.image
    att, stretch = _selected_map(state)
    if image is None or att is None:
        return None
    h, w = image.shape
    top, left, bottom, right = state.map_region
    r0, r1 = round(top * h), max(round(bottom * h), round(top * h) + 1)
    c0, c1 = round(left * w), max(round(right * w), round(left * w) + 1)
    if (r0, c0, r1, c1) == (0, 0, h, w):
        return attention_to_heatmap(att, (h, w), normalize=stretch)
    out = np.zeros((h, w), np.float32)
    out[r0:r1, c0:c1] = attention_to_heatmap(att, (r1 - r0, c1 - c0), normalize=stretch)
    return out


def crop_box_outline(state: ViewerState) -> np.ndarray | None:
    """The region a two-branch model (AG-CNN) cropped for its local branch, as a closed path on the
    display: (5, 2) float (x, y) in display pixel coordinates, or None when the prediction has no box.

    The prediction's ``crop_box`` is ``(x0, y0, x1, y1)`` in fractions of the network input, the frame
    its maps cover (``state.map_region`` of the source image); the corners are mapped to source pixels
    and then through the display orientation (rotations and flips), like the maps.
    """
    image, pred = state.image, state.prediction
    box = getattr(pred, "crop_box", None) if pred is not None else None
    if image is None or box is None:
        return None
    x0, y0, x1, y1 = (float(v) for v in np.clip(np.asarray(box, dtype=np.float64).reshape(4), 0.0, 1.0))
    if not (x1 > x0 and y1 > y0):
        return None
    h, w = image.shape
    top, left, bottom, right = state.map_region
    cols = [w * (left + (right - left) * x) for x in (x0, x1)]
    rows = [h * (top + (bottom - top) * y) for y in (y0, y1)]
    corners = [(cols[a], rows[b]) for a, b in ((0, 0), (1, 0), (1, 1), (0, 1), (0, 0))]
    shape = (int(h), int(w))
    return np.array([state.orientation.point_to_display(x, y, shape) for x, y in corners], dtype=np.float64)


def outline_paths(heat: np.ndarray, level: float = OUTLINE_LEVEL) -> list[np.ndarray]:
    """Closed outlines of the region where ``heat >= level``: a list of (N, 2) float arrays of
    (x, y) pixel-centre coordinates on ``heat``'s grid, largest region first (empty when none)."""
    import cv2

    mask = (np.nan_to_num(np.asarray(heat, dtype=np.float32)) >= np.float32(level) - 1e-6).astype(np.uint8)
    if not mask.any():
        return []
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    paths = [c.reshape(-1, 2).astype(np.float64) + 0.5 for c in contours if len(c) >= 2]
    paths.sort(key=lambda p: -cv2.contourArea(p.astype(np.float32)))
    return [np.vstack([p, p[:1]]) for p in paths]  # closed
