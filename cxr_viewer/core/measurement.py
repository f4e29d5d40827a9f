"""Measurement geometry on a radiograph: lengths, angles, cardiothoracic ratio, elliptical ROIs (no Qt).

Every function takes points in *source* pixel coordinates ``(x, y)`` = (column, row), continuous, where
pixel ``(row, col)`` covers ``[col, col + 1) x [row, row + 1)``. Annotations are kept in these
coordinates, so rotating or flipping the display (`cxr_viewer.core.orientation.Orientation`) never
changes what they measure; the view maps them to the screen with ``Orientation.point_to_display``.

``spacing`` is ``(row_mm, col_mm)`` as DICOM writes ``PixelSpacing``: the distance between rows, then
between columns. With ``spacing=None`` lengths are in pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from cxr_viewer.core.image import XrayImage

__all__ = [
    "ANNOTATION_KINDS",
    "Annotation",
    "RoiStats",
    "angle_degrees",
    "annotation_text",
    "cardiothoracic_ratio",
    "ellipse_mask",
    "ellipse_stats",
    "length",
    "length_text",
]

Point = tuple[float, float]

#: what each tool draws and how many points it takes
ANNOTATION_KINDS: dict[str, int] = {"length": 2, "angle": 3, "ctr": 4, "ellipse": 2}


def length(start: Point, end: Point, spacing: tuple[float, float] | None) -> float:
    """Distance between two source points: mm when ``spacing`` is given, else pixels."""
    dx, dy = float(end[0]) - float(start[0]), float(end[1]) - float(start[1])
    if spacing is None:
        return math.hypot(dx, dy)
    row_mm, col_mm = spacing
    return math.hypot(dx * float(col_mm), dy * float(row_mm))


def angle_degrees(a: Point, vertex: Point, b: Point, spacing: tuple[float, float] | None = None) -> float:
    """The angle at ``vertex`` between the rays to ``a`` and ``b``, in degrees in [0, 180].

    Measured in the patient plane: with a non-square ``spacing`` the pixel axes are scaled first.
    NaN when either ray has zero length.
    """
    row_mm, col_mm = (1.0, 1.0) if spacing is None else (float(spacing[0]), float(spacing[1]))
    ux, uy = (a[0] - vertex[0]) * col_mm, (a[1] - vertex[1]) * row_mm
    vx, vy = (b[0] - vertex[0]) * col_mm, (b[1] - vertex[1]) * row_mm
    if math.hypot(ux, uy) == 0.0 or math.hypot(vx, vy) == 0.0:
        return math.nan
    return math.degrees(abs(math.atan2(ux * vy - uy * vx, ux * vx + uy * vy)))


def cardiothoracic_ratio(
    heart: tuple[Point, Point], thorax: tuple[Point, Point], spacing: tuple[float, float] | None = None
) -> float:
    """Heart width / thorax width (each the length of its segment; NaN for a zero thorax width)."""
    t = length(*thorax, spacing)
    return length(*heart, spacing) / t if t > 0 else math.nan


def ellipse_mask(shape: tuple[int, int], corner0: Point, corner1: Point) -> np.ndarray:
    """Boolean (H, W) mask of the pixels whose centres lie in the axis-aligned ellipse inscribed in the
    box with opposite corners ``corner0`` and ``corner1`` (source coordinates)."""
    h, w = shape
    x0, x1 = sorted((float(corner0[0]), float(corner1[0])))
    y0, y1 = sorted((float(corner0[1]), float(corner1[1])))
    cx, cy, rx, ry = (x0 + x1) / 2.0, (y0 + y1) / 2.0, (x1 - x0) / 2.0, (y1 - y0) / 2.0
    mask = np.zeros((h, w), dtype=bool)
    if rx <= 0 or ry <= 0:
        return mask
    c_lo, c_hi = max(0, math.floor(x0)), min(w, math.ceil(x1))
    r_lo, r_hi = max(0, math.floor(y0)), min(h, math.ceil(y1))
    if c_lo >= c_hi or r_lo >= r_hi:
        return mask
    cols = (np.arange(c_lo, c_hi, dtype=np.float64) + 0.5 - cx) / rx
    rows = (np.arange(r_lo, r_hi, dtype=np.float64) + 0.5 - cy) / ry
    mask[r_lo:r_hi, c_lo:c_hi] = rows[:, None] ** 2 + cols[None, :] ** 2 <= 1.0
    return mask


@dataclass(frozen=True)
class RoiStats:
    """Statistics of an elliptical ROI in the file's stored (modality) values.

    Attributes:
        n: pixels inside (centres in the ellipse).
        mean, sd: mean and sample standard deviation (NaN when ``n`` is 0; SD 0 for one pixel).
        area: the ellipse's area, mm^2 with spacing, else px^2.
    """

    n: int
    mean: float
    sd: float
    area: float


def ellipse_stats(image: XrayImage, corner0: Point, corner1: Point) -> RoiStats:
    """Mean/SD of the *stored* values (MONOCHROME1 mapped back, as the pixel readout shows them)."""
    mask = ellipse_mask(image.shape, corner0, corner1)
    inside = image.pixels[mask].astype(np.float64)
    if image.inverted:
        inside = float(image.inversion_pivot) - inside
    n = int(inside.size)
    mean = float(inside.mean()) if n else math.nan
    sd = float(inside.std(ddof=1)) if n > 1 else (0.0 if n == 1 else math.nan)
    spacing, _unit = image.measurement_spacing()
    rx, ry = abs(corner1[0] - corner0[0]) / 2.0, abs(corner1[1] - corner0[1]) / 2.0
    area = math.pi * rx * ry
    if spacing is not None:
        area *= float(spacing[0]) * float(spacing[1])
    return RoiStats(n, mean, sd, area)


@dataclass(frozen=True)
class Annotation:
    """One measurement on one image: its ``kind`` (see :data:`ANNOTATION_KINDS`) and source points.

    ``length``: (start, end); ``angle``: (a, vertex, b); ``ctr``: heart (left, right), thorax
    (left, right); ``ellipse``: two opposite corners of its bounding box.
    """

    kind: str
    points: tuple[Point, ...]

    def __post_init__(self) -> None:
        if self.kind not in ANNOTATION_KINDS:
            raise ValueError(f"unknown annotation kind {self.kind!r}")
        if len(self.points) != ANNOTATION_KINDS[self.kind]:
            raise ValueError(
                f"{self.kind} takes {ANNOTATION_KINDS[self.kind]} points, got {len(self.points)}"
            )


def length_text(value: float, unit: str) -> str:
    """``"225.4 mm"``, ``"225.4 mm at detector"`` or ``"1127 px (no spacing)"``."""
    return f"{value:.0f} px (no spacing)" if unit == "px" else f"{value:.1f} {unit}"


def annotation_text(annotation: Annotation, image: XrayImage) -> str:
    """What an annotation shows: a length, an angle, ``CTR 0.48``, or ROI mean/SD."""
    spacing, unit = image.measurement_spacing()
    p = annotation.points
    if annotation.kind == "length":
        return length_text(length(p[0], p[1], spacing), unit)
    if annotation.kind == "angle":
        value = angle_degrees(p[0], p[1], p[2], spacing)
        return "angle: -" if math.isnan(value) else f"{value:.1f}\N{DEGREE SIGN}"
    if annotation.kind == "ctr":
        ratio = cardiothoracic_ratio((p[0], p[1]), (p[2], p[3]), spacing)
        heart, thorax = length(p[0], p[1], spacing), length(p[2], p[3], spacing)
        widths = f"{length_text(heart, unit)} / {length_text(thorax, unit)}"
        return f"CTR -  ({widths})" if math.isnan(ratio) else f"CTR {ratio:.2f}  ({widths})"
    stats = ellipse_stats(image, p[0], p[1])
    area_unit = "px\N{SUPERSCRIPT TWO}" if spacing is None else "mm\N{SUPERSCRIPT TWO}"
    where = " at detector" if unit == "mm at detector" else ""
    value_unit = f" {image.value_unit}" if image.value_unit else ""
    if stats.n == 0:
        return f"ROI: no pixel inside, area {stats.area:.1f} {area_unit}{where}"
    return (
        f"ROI mean {stats.mean:.1f}{value_unit}  SD {stats.sd:.1f}  n {stats.n}  "
        f"area {stats.area:.1f} {area_unit}{where}"
    )
