"""The image view: pyqtgraph base image + attention overlay, W/L drag, zoom/pan, readout, measurements.

Measurements (length, angle, cardiothoracic ratio, elliptical ROI) live in
`cxr_viewer.qt.widgets.annotations.AnnotationLayer`, in source coordinates; their geometry is the
Qt-free `cxr_viewer.core.measurement`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from cxr_viewer.core.orientation import describe, edge_letters, zoom_from_drag
from cxr_viewer.core.overlay import (
    OUTLINE_LEVEL,
    colormap_lut,
    crop_box_outline,
    heatmap_for,
    low_resolution_note,
    map_grid,
    outline_paths,
)
from cxr_viewer.core.state import SALIENCY, ViewerState
from cxr_viewer.core.windowing import stored_window, voi_lut_display, window_from_drag
from cxr_viewer.qt.widgets.annotations import AnnotationLayer, status_text

__all__ = ["TOOLS", "ImageView"]

#: mouse tools for the left button; the right button always zooms, the middle button always pans
TOOLS = ("window", "pan", "measure", "angle", "ctr", "ellipse")
#: the tools that draw a measurement, and the annotation kind each draws
DRAWING_TOOLS = {"measure": "length", "angle": "angle", "ctr": "ctr", "ellipse": "ellipse"}
#: how close (screen pixels) the mouse must be to a measurement to delete it
_PICK_PX = 10.0

_LABEL_STYLE = "color: #f0f0f0; background: rgba(0, 0, 0, 165); border-radius: 3px; padding: 2px 5px;"
_WARNING_STYLE = (
    "color: #ffb74d; background: rgba(0, 0, 0, 190); border-radius: 3px; padding: 2px 5px; font-weight: bold;"
)

_GREY = np.stack([np.arange(256)] * 3 + [np.full(256, 255)], axis=1).astype(np.uint8)
_GREY_INVERTED = _GREY[::-1].copy()
_GREY_INVERTED[:, 3] = 255


#: pyqtgraph maps float pixels to grey in the data's own dtype; past this magnitude float32 overflows there
#: (value - lower level can exceed float32's 3.4e38), so such images are handed over as float64
_FLOAT32_SAFE = 1e37


def _for_pyqtgraph(pixels: np.ndarray) -> np.ndarray:
    """Contiguous pixels that pyqtgraph can level without overflow (float64 only for extreme values)."""
    data = np.ascontiguousarray(pixels)
    if data.dtype == np.float32 and data.size and max(-float(data.min()), float(data.max())) > _FLOAT32_SAFE:
        return data.astype(np.float64)
    return data


class _XrayViewBox(pg.ViewBox):
    """A ViewBox whose left button does what the current tool says (W/L, pan or a measurement) and
    whose right button zooms about the point where the drag began (100 px up = twice the size)."""

    def __init__(self, owner: ImageView) -> None:
        super().__init__(lockAspect=True, invertY=True, enableMenu=False)
        self._owner = owner

    def mouseDragEvent(self, ev: Any, axis: Any = None) -> None:  # pyqtgraph override: camelCase
        owner = self._owner
        if ev.button() == Qt.MouseButton.RightButton:
            ev.accept()
            dy = ev.screenPos().y() - ev.lastScreenPos().y()
            anchor = self.mapToView(ev.buttonDownPos())
            owner.zoom(zoom_from_drag(dy), (anchor.x(), anchor.y()))
            return
        if ev.button() == Qt.MouseButton.LeftButton and owner.tool != "pan":
            ev.accept()
            if owner.tool == "window":
                delta = ev.screenPos() - ev.lastScreenPos()
                owner.drag_window(delta.x(), delta.y())
            else:
                # ev.buttonDownPos() and ev.pos() are in this item's coordinates: mapToView gives
                # view (display pixel) coordinates, the ones the annotations are drawn in
                start = self.mapToView(ev.buttonDownPos())
                end = self.mapToView(ev.pos())
                owner.tool_drag((start.x(), start.y()), (end.x(), end.y()), finish=ev.isFinish())
            return
        super().mouseDragEvent(ev, axis)

    def mouseClickEvent(self, ev: Any) -> None:  # pyqtgraph override: camelCase
        if ev.button() == Qt.MouseButton.LeftButton and self._owner.tool == "angle":
            point = self.mapToView(ev.pos())
            if self._owner.tool_click((point.x(), point.y())):
                ev.accept()
                return
        super().mouseClickEvent(ev)

    def mouseDoubleClickEvent(self, ev: Any) -> None:  # Qt override
        self._owner.fit()
        ev.accept()


class ImageView(QWidget):
    """Shows ``state.image`` windowed by ``state.window`` with the selected attention map on top.

    It reads everything from the :class:`ViewerState` it is given and writes the window back into it
    when the user drags. Signals report what the status bar shows.
    """

    #: text of the pixel under the mouse ("" when outside the image)
    pixel_info_changed = Signal(str)
    #: status text of the newest measurement, e.g. "Length: 225.4 mm" ("" when none)
    measurement_changed = Signal(str)
    #: magnification in percent (100 = one image pixel per screen pixel)
    zoom_changed = Signal(float)

    def __init__(self, state: ViewerState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.tool = "window"
        self._heatmap: np.ndarray | None = None
        self._heatmap_key: tuple[Any, ...] | None = None
        self._outline_count = 0
        self._outlines: list[np.ndarray] | None = None
        self._display_shape: tuple[int, int] | None = None

        self.graphics = pg.GraphicsView(background=QColor(0, 0, 0))
        self.view_box = _XrayViewBox(self)
        self.graphics.setCentralItem(self.view_box)
        # No autoDownsample: pyqtgraph would re-average the full image on every render (~300 ms per
        # window/level step for a 2k x 2k CR on a laptop core); drawing the full image with smooth
        # (bilinear) scaling costs ~20 ms per step and looks the same at fit-to-window zoom.
        self.graphics.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        self.base_item = pg.ImageItem(axisOrder="row-major", autoDownsample=False)
        self.overlay_item = pg.ImageItem(axisOrder="row-major", autoDownsample=False)
        self.overlay_item.setZValue(10)
        # outline style: the contour where the class map reaches its threshold, one path (NaN-separated)
        self.outline_item = pg.PlotCurveItem(
            pen=pg.mkPen((255, 220, 0), width=2, cosmetic=True), connect="finite"
        )
        self.outline_item.setZValue(11)
        self.outline_item.hide()
        self.view_box.addItem(self.base_item)
        self.view_box.addItem(self.overlay_item)
        self.view_box.addItem(self.outline_item)
        # AG-CNN: the region its local branch looked at (the prediction's crop box), dashed
        self.crop_item = pg.PlotCurveItem(
            pen=pg.mkPen((0, 230, 255), width=2, cosmetic=True, style=Qt.PenStyle.DashLine)
        )
        self.crop_item.setZValue(12)
        self.crop_item.hide()
        self.view_box.addItem(self.crop_item)
        self.annotations = AnnotationLayer(self.view_box)
        self._first_part: list[tuple[float, float]] = []  # CTR heart width / angle first ray, drawn
        self._status_text = ""
        self._mouse_view: tuple[float, float] | None = None
        self._zoom_text = ""

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.graphics)
        self.corner_top_left = self._corner_label()
        self.corner_top_right = self._corner_label(Qt.AlignmentFlag.AlignRight)
        self.corner_bottom_left = self._corner_label()
        self.corner_bottom_right = self._corner_label(Qt.AlignmentFlag.AlignRight)
        self.warning_label = self._corner_label(style=_WARNING_STYLE)
        self.warning_label.hide()
        self.orientation_labels = {
            edge: self._corner_label(Qt.AlignmentFlag.AlignCenter, point_size=13)
            for edge in ("left", "right", "top", "bottom")
        }
        self.placeholder = self._corner_label(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        self.placeholder.setText(
            "Drop chest X-rays (DICOM, PNG, JPEG, TIFF) or folders here\nor use File > Open"
        )
        self.view_box.sigRangeChanged.connect(self._range_changed)
        self.view_box.sigResized.connect(self._range_changed)
        self._mouse_proxy = pg.SignalProxy(
            self.graphics.scene().sigMouseMoved, rateLimit=30, slot=self._mouse_moved
        )
        self._unsubscribe = state.subscribe(self._state_changed)
        self._render_all()

    # ------------------------------------------------------------------------------ layout bits
    def _corner_label(
        self,
        align: Qt.AlignmentFlag = Qt.AlignmentFlag.AlignLeft,
        point_size: int = 9,
        style: str = _LABEL_STYLE,
    ) -> QLabel:
        """Text over the image on a dark backing (readable on white collimation as on black)."""
        label = QLabel(self.graphics)
        label.setStyleSheet(style)
        label.setAlignment(align | Qt.AlignmentFlag.AlignTop)
        label.setTextFormat(Qt.TextFormat.PlainText)
        font = QFont()
        font.setPointSize(point_size)
        if point_size > 9:
            font.setBold(True)
        label.setFont(font)
        label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        return label

    def resizeEvent(self, event: Any) -> None:  # Qt override
        super().resizeEvent(event)
        self._place_corners()

    def _place_corners(self) -> None:
        """Four corners, each at most half the view wide (long lines wrap, never run off the view)."""
        w, h = self.graphics.width(), self.graphics.height()
        half = max(60, (w - 3 * 8) // 2)
        corners = (
            self.corner_top_left,
            self.corner_top_right,
            self.corner_bottom_left,
            self.corner_bottom_right,
            self.warning_label,
        )
        for label in corners:
            _fit_label(label, half if label is not self.warning_label else max(60, w - 16))
        for label in self.orientation_labels.values():
            label.adjustSize()
        self.corner_top_left.move(8, 6)
        self.corner_top_right.move(max(8, w - self.corner_top_right.width() - 8), 6)
        self.corner_bottom_left.move(8, max(6, h - self.corner_bottom_left.height() - 6))
        self.corner_bottom_right.move(
            max(8, w - self.corner_bottom_right.width() - 8),
            max(6, h - self.corner_bottom_right.height() - 6),
        )
        top_left_bottom = self.corner_top_left.y() + (
            self.corner_top_left.height() if self.corner_top_left.text() else 0
        )
        self.warning_label.move(8, top_left_bottom + 4)
        edges = self.orientation_labels
        edges["left"].move(6, (h - edges["left"].height()) // 2)
        edges["right"].move(w - edges["right"].width() - 6, (h - edges["right"].height()) // 2)
        edges["top"].move((w - edges["top"].width()) // 2, 6)
        edges["bottom"].move((w - edges["bottom"].width()) // 2, h - edges["bottom"].height() - 6)
        self.placeholder.setGeometry(16, h // 2 - 60, max(60, w - 32), 120)

    def close_view(self) -> None:
        """Stop listening to the state (call before the widget goes away)."""
        self._unsubscribe()
        self._mouse_proxy.disconnect()

    # ------------------------------------------------------------------------------ rendering
    def _state_changed(self, changed: set[str]) -> None:
        if changed & {"image", "orientation", "use_voi_lut"}:
            self._render_all(fit=bool(changed & {"image", "orientation"}))
            return
        if "window" in changed:
            self._render_levels()
        if "invert" in changed:
            self.base_item.setLookupTable(_GREY_INVERTED if self.state.invert else _GREY)
        if changed & {
            "prediction",
            "selected_map",
            "overlay_visible",
            "overlay_opacity",
            "colormap",
            "map_region",
            "map_style",
        }:
            self._render_overlay()

    def _render_all(self, fit: bool = True) -> None:
        image = self.state.image
        self._first_part = []
        self.annotations.set_image(image, self.state.orientation)
        self._measurements_changed()
        if image is None:
            self.base_item.clear()
            self.overlay_item.clear()
            self.outline_item.hide()
            self.crop_item.hide()
            self._display_shape = None
            self.placeholder.show()
            for label in (self.corner_top_left, self.corner_top_right, self.corner_bottom_left):
                label.setText("")
                label.hide()
            self.warning_label.setText("")
            self.warning_label.hide()
            for label in self.orientation_labels.values():
                label.setText("")
                label.hide()
            return
        self.placeholder.hide()
        source = voi_lut_display(image) if self.state.use_voi_lut else None
        disp = self.state.orientation.apply(image.pixels if source is None else source)
        self._display_shape = (int(disp.shape[0]), int(disp.shape[1]))
        self.base_item.setImage(_for_pyqtgraph(disp), autoLevels=False, levels=self._levels())
        self.base_item.setLookupTable(_GREY_INVERTED if self.state.invert else _GREY)
        self.base_item.setRect(0, 0, disp.shape[1], disp.shape[0])
        self._heatmap_key = None
        self._render_overlay()
        lines = [image.name, f"{image.format} {image.photometric}, {image.shape[1]} x {image.shape[0]}"]
        lines += [f"Note: {n}" for n in image.notes]
        _set_label(self.corner_top_left, "\n".join(lines))
        _set_label(self.corner_top_right, "\n".join(image.header.display_lines()))
        _set_label(self.warning_label, low_resolution_note(image.shape))
        self._render_orientation_letters()
        self._render_levels()
        if fit:
            self.fit()

    def _render_orientation_letters(self) -> None:
        image = self.state.image
        letters: dict[str, str] = {}
        if image is not None and image.patient_orientation is not None:
            row_dir, col_dir = image.patient_orientation
            letters = edge_letters(row_dir, col_dir, image.shape, self.state.orientation)
        for edge, label in self.orientation_labels.items():
            _set_label(label, letters.get(edge, ""))

    def orientation_letters(self) -> dict[str, str]:
        """The patient-direction letters shown at the image's edges (``{}`` when the file gives none)."""
        return {e: lab.text() for e, lab in self.orientation_labels.items() if lab.text()}

    def _levels(self) -> tuple[float, float]:
        if self.state.use_voi_lut and self.state.image is not None and self.state.image.voi_lut is not None:
            return (0.0, 1.0)  # the LUT already produced display values
        center, width = self.state.window
        return (center - width / 2.0, center + width / 2.0)

    def _render_levels(self) -> None:
        if self.state.image is None:
            return
        self.base_item.setLevels(self._levels())
        self._render_view_info()

    def window_text(self) -> str:
        """The window as shown, in stored values (MONOCHROME1 mapped back): ``W 30000  L 15000``."""
        image = self.state.image
        if image is None:
            return ""
        if self._levels() == (0.0, 1.0) and self.state.use_voi_lut:
            return "VOI LUT (from file)"
        center, width = stored_window(self.state.window, image)
        return (
            f"W {width:.6g}  L {center:.6g}"
            if abs(center) >= 1e6 or width >= 1e6
            else f"W {width:.0f}  L {center:.0f}"
        )

    def _render_view_info(self) -> None:
        """Bottom left: window, zoom, and how the display is rotated or flipped."""
        if self.state.image is None:
            return
        line = self.window_text()
        if self._zoom_text:
            line += f"    {self._zoom_text}"
        turned = describe(self.state.orientation)
        _set_label(self.corner_bottom_left, line + (f"\n{turned[0].upper()}{turned[1:]}" if turned else ""))
        self._place_corners()

    def _render_overlay(self) -> None:
        shown = self._render_overlay_item()
        boxed = shown and self._render_crop_box()
        if not boxed:
            self.crop_item.hide()
        caption = self._overlay_caption() if shown else ""
        if boxed:
            caption += "\nDashed box: region of the local branch (AG-CNN)"
        self.corner_bottom_right.setText(caption)
        self._place_corners()

    def _render_crop_box(self) -> bool:
        """Draw the prediction's crop box (AG-CNN) when it has one; returns whether it is drawn."""
        path = crop_box_outline(self.state)
        if path is None:
            return False
        self.crop_item.setData(path[:, 0], path[:, 1])
        self.crop_item.show()
        return True

    def crop_box_path(self) -> np.ndarray | None:
        """The crop box drawn on the display, (5, 2) (x, y), or None (for tests and screenshots)."""
        if not self.crop_item.isVisible():
            return None
        xs, ys = self.crop_item.getData()
        return np.column_stack([xs, ys])

    def _overlay_caption(self) -> str:
        """Which map is shown, its grid and its scale (a 7 x 7 map must not pass for a segmentation)."""
        state = self.state
        sel, pred = state.selected_map, state.prediction
        if sel is None or pred is None:
            return ""
        grid = map_grid(state)
        grid_txt = f"{grid[0]} x {grid[1]} map" if grid else "map"
        if sel == SALIENCY:
            return f"Map: class-agnostic (all findings)\n{grid_txt}, stretched per image"
        names, probs, thresholds = pred.class_names, pred.probabilities, pred.thresholds
        if not 0 <= sel < len(names):
            return ""
        name = str(names[sel]).replace("_", " ")
        head = f"Map: {name}"
        if probs is not None:
            head += f" {float(probs[sel]):.1%}"
        if thresholds is not None:
            head += f" (threshold {float(thresholds[sel]):.1%})"
        if state.map_style == "outline":
            if self._outline_count == 0:
                return f"{head}\n{grid_txt}: no region reaches the threshold"
            return f"{head}\n{grid_txt}, outline: evidence at the threshold"
        scale = "1 = threshold" if thresholds is not None else "probability"
        return f"{head}\n{grid_txt}, absolute scale ({scale})"

    def _render_overlay_item(self) -> bool:
        """Draw the selected map as the state says; returns whether a map is on screen."""
        state = self.state
        self._outline_count = 0
        if state.image is None or not state.overlay_visible or state.selected_map is None:
            self.overlay_item.hide()
            self.outline_item.hide()
            return False
        key = (id(state.prediction), state.selected_map, state.map_region, state.orientation, id(state.image))
        if key != self._heatmap_key:
            heat = heatmap_for(state)
            self._heatmap = None if heat is None else np.ascontiguousarray(state.orientation.apply(heat))
            self._heatmap_key = key
            self._outlines = None  # traced on first use, then kept with the map (not per opacity change)
        if self._heatmap is None:
            self.overlay_item.hide()
            self.outline_item.hide()
            return False
        if state.map_style == "outline" and state.selected_map != SALIENCY:
            self.overlay_item.hide()
            if self._outlines is None:
                self._outlines = outline_paths(self._heatmap, OUTLINE_LEVEL)
            paths = self._outlines
            self._outline_count = len(paths)
            if paths:
                xy = np.vstack([np.vstack([p, [np.nan, np.nan]]) for p in paths])
                self.outline_item.setData(xy[:, 0], xy[:, 1])
                self.outline_item.show()
            else:
                self.outline_item.hide()
            return True
        self.outline_item.hide()
        self.overlay_item.setImage(self._heatmap, autoLevels=False, levels=(0.0, 1.0))
        self.overlay_item.setLookupTable(colormap_lut(state.colormap))
        self.overlay_item.setRect(0, 0, self._heatmap.shape[1], self._heatmap.shape[0])
        self.overlay_item.setOpacity(state.overlay_opacity)
        self.overlay_item.show()
        return True

    def outline_count(self) -> int:
        """How many outlines are drawn (outline style; 0 otherwise), for tests and screenshots."""
        return self._outline_count if self.outline_item.isVisible() else 0

    def overlay_image(self) -> np.ndarray | None:
        """The overlay currently shown (display orientation), or None (for tests and screenshots)."""
        return self._heatmap if self.overlay_item.isVisible() else None

    # ------------------------------------------------------------------------------ interaction
    def set_tool(self, tool: str) -> None:
        """``"window"``, ``"pan"`` or ``"measure"`` for the left mouse button."""
        if tool not in TOOLS:
            raise ValueError(f"unknown tool {tool!r}")
        self.tool = tool

    def fit(self) -> None:
        """Show the whole image."""
        if self._display_shape is None:
            return
        h, w = self._display_shape
        self.view_box.setRange(xRange=(0, w), yRange=(0, h), padding=0.02)

    def zoom(self, factor: float, center: tuple[float, float] | None = None) -> None:
        """Zoom in (factor > 1) or out, about ``center`` (view coordinates) or the view centre."""
        if not factor > 0 or not math.isfinite(factor):
            return
        anchor = None if center is None else QPointF(*center)
        self.view_box.scaleBy((1.0 / factor, 1.0 / factor), center=anchor)

    def zoom_percent(self) -> float:
        """Magnification: 100 when one image pixel covers one screen (logical) pixel."""
        px_w, _px_h = self.view_box.viewPixelSize()
        return 100.0 / px_w if px_w > 0 and math.isfinite(px_w) else math.nan

    def actual_pixels(self) -> None:
        """1:1: one image pixel per screen pixel, about the view centre."""
        if self._display_shape is None:
            return
        center = self.view_box.viewRect().center()
        w, h = self.view_box.width(), self.view_box.height()
        if w <= 0 or h <= 0:
            return
        self.view_box.setRange(
            xRange=(center.x() - w / 2.0, center.x() + w / 2.0),
            yRange=(center.y() - h / 2.0, center.y() + h / 2.0),
            padding=0,
        )

    def _range_changed(self, *_: Any) -> None:
        if self._display_shape is None:
            self._zoom_text = ""
            return
        percent = self.zoom_percent()
        if not math.isfinite(percent):
            return
        self._zoom_text = f"Zoom {percent:.0f} %" if percent >= 10 else f"Zoom {percent:.1f} %"
        self._render_view_info()
        self.zoom_changed.emit(percent)

    def drag_window(self, dx: float, dy: float) -> None:
        """Window/level from a mouse drag of (dx, dy) screen pixels."""
        image = self.state.image
        if image is None:
            return
        center, width = self.state.window
        lo, hi = float(np.nanmin(image.pixels[::8, ::8])), float(np.nanmax(image.pixels[::8, ::8]))
        self.state.update(window=window_from_drag(center, width, dx, dy, hi - lo), use_voi_lut=False)

    # ------------------------------------------------------------------------------ measurements
    def tool_drag(self, start: tuple[float, float], end: tuple[float, float], finish: bool) -> None:
        """A left drag of the current drawing tool, in view (display pixel) coordinates."""
        kind = DRAWING_TOOLS.get(self.tool)
        if kind is None or self.state.image is None:
            return
        if kind == "ctr":
            end = (end[0], start[1])  # the cardiothoracic widths are horizontal
        if kind in ("length", "ellipse"):
            if finish:
                if start != end:
                    self.add_measurement(kind, [start, end])
                else:
                    self.annotations.cancel_pending()
            else:
                self.annotations.set_pending(kind, [start, end])
            return
        first = self._first_part
        # the angle's second ray runs from the vertex to where the drag ends
        points = [*first, end] if kind == "angle" and len(first) == 2 else [*first, start, end]
        if not finish:
            self.annotations.set_pending(kind, points)
            return
        if (kind, len(points)) in (("ctr", 4), ("angle", 3)):
            self._first_part = []
            self.add_measurement(kind, points)
        elif start != end:
            self._first_part = [start, end]
            self.annotations.set_pending(kind, self._first_part)

    def tool_click(self, point: tuple[float, float]) -> bool:
        """A left click of the angle tool: ends its second ray. True when it was used."""
        if self.tool == "angle" and len(self._first_part) == 2 and self.state.image is not None:
            points = [*self._first_part, point]
            self._first_part = []
            self.add_measurement("angle", points)
            return True
        return False

    def add_measurement(self, kind: str, display_points: list[tuple[float, float]]) -> None:
        """Add a measurement (``"length"``, ``"angle"``, ``"ctr"``, ``"ellipse"``) from display points."""
        if self.state.image is None:
            return
        self.annotations.add(kind, display_points)
        self._measurements_changed()

    def set_measurement(self, start: tuple[float, float], end: tuple[float, float]) -> None:
        """Add a length measurement between two display points (x, y); the others stay."""
        self.add_measurement("length", [start, end])

    def clear_measurement(self) -> None:
        """Remove every measurement of the shown image (and one being drawn)."""
        self._first_part = []
        self.annotations.clear()
        self._measurements_changed()

    def remove_measurement(self, index: int) -> bool:
        """Remove measurement ``index`` (oldest first; -1 = the newest) of the shown image."""
        done = self.annotations.remove(index)
        self._measurements_changed()
        return done

    def remove_measurement_at(self, x: float, y: float) -> bool:
        """Remove the measurement drawn under display point (x, y) (within a few screen pixels)."""
        tolerance = _PICK_PX * max(self.view_box.viewPixelSize()[0], 1e-9)
        index = self.annotations.nearest((x, y), tolerance)
        return index is not None and self.remove_measurement(index)

    def delete_measurement(self) -> None:
        """The measurement under the mouse, else the newest one, goes (the Delete measurement action)."""
        if self._first_part or self.annotations.pending_kind is not None:
            self._first_part = []
            self.annotations.cancel_pending()
            return
        if self._mouse_view is not None and self.remove_measurement_at(*self._mouse_view):
            return
        self.remove_measurement(-1)

    def forget_measurements(self) -> None:
        """Forget the kept measurements of every image (the worklist was cleared)."""
        self.annotations.forget()
        self._measurements_changed()

    def measurement_text(self) -> str:
        """The newest measurement as shown, e.g. ``"123.4 mm"`` ("" when none)."""
        texts = self.annotations.texts()
        return texts[-1] if texts else ""

    def measurement_texts(self) -> list[str]:
        """Every measurement of the shown image, oldest first."""
        return self.annotations.texts()

    def _measurements_changed(self) -> None:
        items = self.annotations.annotations
        image = self.state.image
        text = status_text(items[-1], image) if items and image is not None else ""
        if len(items) > 1:
            text += f"  ({len(items)} measurements)"
        if text != self._status_text:
            self._status_text = text
            self.measurement_changed.emit(text)

    def pixel_info_at(self, x: float, y: float) -> str:
        """Readout text for display coordinates (x = column, y = row)."""
        image = self.state.image
        if image is None or self._display_shape is None:
            return ""
        col, row = math.floor(x), math.floor(y)
        dh, dw = self._display_shape
        if not (0 <= row < dh and 0 <= col < dw):
            return ""
        src_row, src_col = self.state.orientation.to_source(row, col, image.shape)
        value = image.modality_value(float(image.pixels[src_row, src_col]))
        unit = f" {image.value_unit}" if image.value_unit else ""
        text = f"x {src_col}  y {src_row}  value {value:.6g}{unit}"
        if self._heatmap is not None and self.overlay_item.isVisible():
            text += f"  map {self._heatmap[row, col]:.2f}"
        return text

    def _mouse_moved(self, args: Any) -> None:
        pos = args[0]
        if not self.view_box.sceneBoundingRect().contains(pos):
            self.pixel_info_changed.emit("")
            return
        p = self.view_box.mapSceneToView(pos)
        self._mouse_view = (p.x(), p.y())
        self.pixel_info_changed.emit(self.pixel_info_at(p.x(), p.y()))


def _set_label(label: QLabel, text: str) -> None:
    """Set a label's text; an empty label is hidden (its backing would be an empty dark box)."""
    label.setText(text)
    label.setVisible(bool(text))


def _fit_label(label: QLabel, max_width: int) -> None:
    """Size a label to its text, wrapping lines longer than ``max_width`` pixels."""
    label.setWordWrap(False)
    label.adjustSize()
    if label.width() > max_width:
        label.setWordWrap(True)
        label.resize(max_width, label.heightForWidth(max_width))
