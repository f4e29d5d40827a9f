"""The image view's measurements: kept per image in source coordinates, drawn in a pyqtgraph ViewBox.

Annotations (`cxr_viewer.core.measurement.Annotation`) hold *source* pixel coordinates, so rotating
or flipping the display moves their drawing with the image and never changes what they measure. The
layer keeps one list per image (by file path) while the study is open and redraws the shown one.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg

from cxr_viewer.core.measurement import Annotation, annotation_text

if TYPE_CHECKING:
    from cxr_viewer.core.image import XrayImage
    from cxr_viewer.core.orientation import Orientation

__all__ = ["KIND_LABELS", "AnnotationLayer", "status_text"]

Point = tuple[float, float]

#: how the status bar names each kind
KIND_LABELS = {"length": "Length", "angle": "Angle", "ctr": "Cardiothoracic ratio", "ellipse": "ROI"}

_COLOUR = (255, 230, 0)
_PENDING = (120, 220, 255)


def status_text(annotation: Annotation, image: XrayImage) -> str:
    """``"Length: 225.4 mm"``, ``"Angle: 32.0°"``, ``"CTR 0.48 (...)"``, ``"ROI mean ..."`` (status bar)."""
    text = annotation_text(annotation, image)
    return text if annotation.kind in ("ctr", "ellipse") else f"{KIND_LABELS[annotation.kind]}: {text}"


def _ellipse_outline(p0: Point, p1: Point, n: int = 72) -> tuple[np.ndarray, np.ndarray]:
    cx, cy = (p0[0] + p1[0]) / 2.0, (p0[1] + p1[1]) / 2.0
    rx, ry = abs(p1[0] - p0[0]) / 2.0, abs(p1[1] - p0[1]) / 2.0
    t = np.linspace(0.0, 2.0 * math.pi, n + 1)
    return cx + rx * np.cos(t), cy + ry * np.sin(t)


def _path(kind: str, pts: list[Point]) -> tuple[np.ndarray, np.ndarray]:
    """x, y of the drawing in display coordinates (NaN separates pieces)."""
    if kind == "ellipse" and len(pts) == 2:
        return _ellipse_outline(pts[0], pts[1])
    if kind == "ctr":
        xs: list[float] = []
        ys: list[float] = []
        for i in range(0, len(pts) - 1, 2):
            xs += [pts[i][0], pts[i + 1][0], math.nan]
            ys += [pts[i][1], pts[i + 1][1], math.nan]
        return np.array(xs, dtype=float), np.array(ys, dtype=float)
    return np.array([p[0] for p in pts], dtype=float), np.array([p[1] for p in pts], dtype=float)


class AnnotationLayer:
    """Measurements of the shown image, drawn in ``view_box`` (display = view coordinates)."""

    def __init__(self, view_box: pg.ViewBox) -> None:
        self.view_box = view_box
        self._store: dict[str, list[Annotation]] = {}
        self._key: str | None = None
        self._image: XrayImage | None = None
        self._orientation: Orientation | None = None
        self._items: list[pg.GraphicsObject] = []
        self.pending_kind: str | None = None
        self.pending_points: list[Point] = []  # display coordinates, while a tool is drawing

    # ------------------------------------------------------------------ which image
    def set_image(self, image: XrayImage | None, orientation: Orientation) -> None:
        """Show the measurements of ``image`` (kept from an earlier visit) in ``orientation``."""
        self._image, self._orientation = image, orientation
        self._key = None if image is None else str(image.source)
        self.cancel_pending()
        self.redraw()

    def forget(self, image_key: str | None = None) -> None:
        """Drop the kept measurements of one image (its path), or of all images when None."""
        if image_key is None:
            self._store.clear()
        else:
            self._store.pop(image_key, None)
        self.redraw()

    @property
    def annotations(self) -> list[Annotation]:
        """The shown image's measurements, oldest first (a copy)."""
        return list(self._store.get(self._key, [])) if self._key is not None else []

    # ------------------------------------------------------------------ edits
    def to_source(self, point: Point) -> Point:
        assert self._image is not None and self._orientation is not None
        return self._orientation.point_to_source(point[0], point[1], self._image.shape)

    def to_display(self, point: Point) -> Point:
        assert self._image is not None and self._orientation is not None
        return self._orientation.point_to_display(point[0], point[1], self._image.shape)

    def add(self, kind: str, display_points: list[Point]) -> Annotation | None:
        """Add a measurement from display points; returns it (None without an image)."""
        if self._image is None or self._key is None:
            return None
        annotation = Annotation(kind, tuple(self.to_source(p) for p in display_points))
        self._store.setdefault(self._key, []).append(annotation)
        self.cancel_pending(redraw=False)
        self.redraw()
        return annotation

    def remove(self, index: int) -> bool:
        """Remove the shown image's measurement ``index``; False when there is none."""
        items = self._store.get(self._key, []) if self._key is not None else []
        if not -len(items) <= index < len(items):
            return False
        del items[index]
        self.redraw()
        return True

    def clear(self) -> None:
        """Remove every measurement of the shown image (and any drawing in progress)."""
        if self._key is not None:
            self._store.pop(self._key, None)
        self.cancel_pending(redraw=False)
        self.redraw()

    def nearest(self, point: Point, tolerance: float) -> int | None:
        """Index of the measurement drawn within ``tolerance`` (display units) of ``point``, or None."""
        best, best_d = None, tolerance
        for i, annotation in enumerate(self.annotations):
            xs, ys = _path(annotation.kind, [self.to_display(p) for p in annotation.points])
            for j in range(len(xs) - 1):
                d = _segment_distance(point, (xs[j], ys[j]), (xs[j + 1], ys[j + 1]))
                if d <= best_d:
                    best, best_d = i, d
        return best

    # ------------------------------------------------------------------ drawing in progress
    def set_pending(self, kind: str, display_points: list[Point]) -> None:
        """Show a measurement being drawn (not kept)."""
        self.pending_kind, self.pending_points = kind, list(display_points)
        self.redraw()

    def cancel_pending(self, redraw: bool = True) -> None:
        """Forget a measurement being drawn."""
        self.pending_kind, self.pending_points = None, []
        if redraw:
            self.redraw()

    # ------------------------------------------------------------------ drawing
    def texts(self) -> list[str]:
        """What each measurement of the shown image says, oldest first."""
        if self._image is None:
            return []
        return [annotation_text(a, self._image) for a in self.annotations]

    def redraw(self) -> None:
        for item in self._items:
            self.view_box.removeItem(item)
        self._items = []
        if self._image is None:
            return
        for n, annotation in enumerate(self.annotations, start=1):
            pts = [self.to_display(p) for p in annotation.points]
            self._draw(annotation.kind, pts, _COLOUR, f"{n}: {annotation_text(annotation, self._image)}")
        if self.pending_kind is not None and self.pending_points:
            self._draw(self.pending_kind, self.pending_points, _PENDING, "")

    def _draw(self, kind: str, pts: list[Point], colour: tuple[int, int, int], label: str) -> None:
        xs, ys = _path(kind, pts)
        shadow = pg.PlotCurveItem(
            xs, ys, pen=pg.mkPen((0, 0, 0, 200), width=4, cosmetic=True), connect="finite"
        )
        curve = pg.PlotCurveItem(xs, ys, pen=pg.mkPen(colour, width=2, cosmetic=True), connect="finite")
        shadow.setZValue(19)
        curve.setZValue(20)
        new: list[pg.GraphicsObject] = [shadow, curve]
        if label:
            text = pg.TextItem(label, color=colour, fill=pg.mkBrush(0, 0, 0, 170), anchor=(0, 1))
            text.setZValue(30)
            anchor = pts[1] if kind in ("length", "angle") and len(pts) > 1 else pts[-1]
            if kind == "ellipse":
                anchor = (max(p[0] for p in pts), min(p[1] for p in pts))
            text.setPos(*anchor)
            new.append(text)
        for item in new:
            self.view_box.addItem(item)
        self._items += new


def _segment_distance(p: Point, a: Point, b: Point) -> float:
    ax, ay, bx, by = a[0], a[1], b[0], b[1]
    if not all(math.isfinite(v) for v in (ax, ay, bx, by)):
        return math.inf
    dx, dy = bx - ax, by - ay
    span = dx * dx + dy * dy
    t = 0.0 if span == 0 else max(0.0, min(1.0, ((p[0] - ax) * dx + (p[1] - ay) * dy) / span))
    return math.hypot(p[0] - (ax + t * dx), p[1] - (ay + t * dy))
