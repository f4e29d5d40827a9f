"""The image view: pyqtgraph base image + attention overlay, W/L drag, zoom/pan, readout, measurement."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from cxr_viewer.core.orientation import measure_length
from cxr_viewer.core.overlay import OUTLINE_LEVEL, colormap_lut, heatmap_for, map_grid, outline_paths
from cxr_viewer.core.state import SALIENCY, ViewerState
from cxr_viewer.core.windowing import voi_lut_display, window_from_drag

__all__ = ["TOOLS", "ImageView"]

#: mouse tools for the left button; the right button always zooms, the middle button always pans
TOOLS = ("window", "pan", "measure")

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
    """A ViewBox whose left button does what the current tool says (W/L, pan or measure)."""

    def __init__(self, owner: ImageView) -> None:
        super().__init__(lockAspect=True, invertY=True, enableMenu=False)
        self._owner = owner

    def mouseDragEvent(self, ev: Any, axis: Any = None) -> None:  # pyqtgraph override: camelCase
        if ev.button() == Qt.MouseButton.LeftButton and self._owner.tool in ("window", "measure"):
            ev.accept()
            if self._owner.tool == "window":
                delta = ev.screenPos() - ev.lastScreenPos()
                self._owner.drag_window(delta.x(), delta.y())
            else:
                start = self.mapToView(ev.buttonDownPos())
                end = self.mapToView(ev.pos())
                self._owner.set_measurement((start.x(), start.y()), (end.x(), end.y()))
            return
        super().mouseDragEvent(ev, axis)

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
    #: text of the current measurement ("" when none)
    measurement_changed = Signal(str)

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
        self.measure_roi: pg.LineSegmentROI | None = None
        self.measure_label = pg.TextItem(color=(255, 230, 0), anchor=(0, 1))
        self.measure_label.setZValue(30)
        self.measure_label.hide()
        self.view_box.addItem(self.measure_label)
        self._measure_text = ""

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.graphics)
        self.corner_top_left = self._corner_label()
        self.corner_top_right = self._corner_label(Qt.AlignmentFlag.AlignRight)
        self.corner_bottom_left = self._corner_label()
        self.corner_bottom_right = self._corner_label(Qt.AlignmentFlag.AlignRight)
        self.placeholder = self._corner_label(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setText(
            "Drop chest X-rays (DICOM, PNG, JPEG, TIFF) or folders here\nor use File > Open"
        )
        self._mouse_proxy = pg.SignalProxy(
            self.graphics.scene().sigMouseMoved, rateLimit=30, slot=self._mouse_moved
        )
        self._unsubscribe = state.subscribe(self._state_changed)
        self._render_all()

    # ------------------------------------------------------------------------------ layout bits
    def _corner_label(self, align: Qt.AlignmentFlag = Qt.AlignmentFlag.AlignLeft) -> QLabel:
        label = QLabel(self.graphics)
        label.setStyleSheet("color: #e0e0e0; background: transparent;")
        label.setAlignment(align | Qt.AlignmentFlag.AlignTop)
        font = QFont()
        font.setPointSize(9)
        label.setFont(font)
        label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        return label

    def resizeEvent(self, event: Any) -> None:  # Qt override
        super().resizeEvent(event)
        self._place_corners()

    def _place_corners(self) -> None:
        w, h = self.graphics.width(), self.graphics.height()
        corners = (
            self.corner_top_left,
            self.corner_top_right,
            self.corner_bottom_left,
            self.corner_bottom_right,
        )
        for label in corners:
            label.adjustSize()
        self.corner_top_left.move(8, 6)
        self.corner_top_right.move(max(8, w - self.corner_top_right.width() - 8), 6)
        self.corner_bottom_left.move(8, max(6, h - self.corner_bottom_left.height() - 6))
        self.corner_bottom_right.move(
            max(8, w - self.corner_bottom_right.width() - 8),
            max(6, h - self.corner_bottom_right.height() - 6),
        )
        self.placeholder.setGeometry(0, h // 2 - 30, w, 60)

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
        self.clear_measurement()
        if image is None:
            self.base_item.clear()
            self.overlay_item.clear()
            self.outline_item.hide()
            self._display_shape = None
            self.placeholder.show()
            self.corner_top_left.setText("")
            self.corner_top_right.setText("")
            self.corner_bottom_left.setText("")
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
        self.corner_top_left.setText("\n".join(lines))
        self.corner_top_right.setText("\n".join(image.header.display_lines()))
        self._render_levels()
        if fit:
            self.fit()

    def _levels(self) -> tuple[float, float]:
        if self.state.use_voi_lut and self.state.image is not None and self.state.image.voi_lut is not None:
            return (0.0, 1.0)  # the LUT already produced display values
        center, width = self.state.window
        return (center - width / 2.0, center + width / 2.0)

    def _render_levels(self) -> None:
        if self.state.image is None:
            return
        self.base_item.setLevels(self._levels())
        center, width = self.state.window
        if self._levels() == (0.0, 1.0) and self.state.use_voi_lut:
            self.corner_bottom_left.setText("VOI LUT (from file)")
        else:
            self.corner_bottom_left.setText(f"W {width:.0f}  L {center:.0f}")
        self._place_corners()

    def _render_overlay(self) -> None:
        shown = self._render_overlay_item()
        self.corner_bottom_right.setText(self._overlay_caption() if shown else "")
        self._place_corners()

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

    def zoom(self, factor: float) -> None:
        """Zoom in (factor > 1) or out around the view centre."""
        self.view_box.scaleBy((1.0 / factor, 1.0 / factor))

    def drag_window(self, dx: float, dy: float) -> None:
        """Window/level from a mouse drag of (dx, dy) screen pixels."""
        image = self.state.image
        if image is None:
            return
        center, width = self.state.window
        lo, hi = float(np.nanmin(image.pixels[::8, ::8])), float(np.nanmax(image.pixels[::8, ::8]))
        self.state.update(window=window_from_drag(center, width, dx, dy, hi - lo), use_voi_lut=False)

    def set_measurement(self, start: tuple[float, float], end: tuple[float, float]) -> None:
        """Draw (or move) the length measurement between two display points (x, y)."""
        if self.state.image is None:
            return
        if self.measure_roi is None:
            self.measure_roi = pg.LineSegmentROI([start, end], pen=pg.mkPen((255, 230, 0), width=2))
            self.measure_roi.setZValue(20)
            self.measure_roi.sigRegionChanged.connect(self._measurement_moved)
            self.view_box.addItem(self.measure_roi)
        else:
            handles = self.measure_roi.getHandles()
            self.measure_roi.movePoint(
                handles[0], self.view_box.mapViewToScene(QPointF(*start)), finish=False
            )
            self.measure_roi.movePoint(handles[1], self.view_box.mapViewToScene(QPointF(*end)))
        self._measurement_moved()

    def clear_measurement(self) -> None:
        """Remove the measurement line."""
        if self.measure_roi is not None:
            self.view_box.removeItem(self.measure_roi)
            self.measure_roi = None
        self.measure_label.hide()
        if self._measure_text:
            self._measure_text = ""
            self.measurement_changed.emit("")

    def measurement_text(self) -> str:
        """The current measurement as shown, e.g. ``"123.4 mm"`` ("" when none)."""
        return self._measure_text

    def _measurement_moved(self, *_: Any) -> None:
        image = self.state.image
        if self.measure_roi is None or image is None:
            return
        p0, p1 = (self.measure_roi.mapToParent(h.pos()) for h in self.measure_roi.getHandles())
        spacing, unit = image.measurement_spacing()
        length = measure_length((p0.x(), p0.y()), (p1.x(), p1.y()), spacing, self.state.orientation)
        self._measure_text = (
            f"{length:.1f} {unit}" if spacing is not None else f"{length:.0f} px (no spacing)"
        )
        self.measure_label.setText(self._measure_text)
        self.measure_label.setPos(p1)
        self.measure_label.show()
        self.measurement_changed.emit(self._measure_text)

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
        self.pixel_info_changed.emit(self.pixel_info_at(p.x(), p.y()))
