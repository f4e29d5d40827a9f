"""A histogram of the shown image with the current window as a draggable region.

Its axis is the file's stored (modality) values, as the W/L readout and the pixel readout show them:
for MONOCHROME1 the pixels (kept inverted, higher = brighter) are mapped back through the inversion.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QVBoxLayout, QWidget

from cxr_viewer.core.windowing import stored_histogram, stored_window, window_from_stored

if TYPE_CHECKING:
    from cxr_viewer.core.state import ViewerState

__all__ = ["WindowHistogram"]

_BINS = 256
_MAX = float(np.finfo(np.float64).max)


class WindowHistogram(QWidget):
    """Pixel-value histogram (log counts); drag the region or its edges to set the window.

    Reads ``state.image`` / ``state.window`` and writes ``state.window`` back. Any finite pixel values
    work, including ranges beyond float32's (the histogram and the ranges are computed in float64).
    """

    def __init__(self, state: ViewerState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self._updating = False
        self.plot = pg.PlotWidget(background=(30, 30, 30))
        self.plot.setFixedHeight(72)
        self.plot.hideAxis("left")
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.getAxis("bottom").setStyle(tickLength=-4)
        self.plot.setToolTip(
            "Histogram of the image's stored values (log scale). Drag the shaded window or its edges."
        )
        self.curve = self.plot.plot(
            [0.0, 1.0], [0.0], stepMode="center", fillLevel=0, brush=(170, 170, 170, 110), pen=(200, 200, 200)
        )
        self.region = pg.LinearRegionItem(values=(0.0, 1.0), brush=(80, 140, 255, 60))
        self.region.setZValue(10)
        self.plot.addItem(self.region)
        self.region.sigRegionChanged.connect(self._region_changed)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot)
        self._unsubscribe = state.subscribe(self._state_changed)
        self._data_range = (0.0, 1.0)

    def close_controls(self) -> None:
        """Stop listening to the state."""
        self._unsubscribe()

    def _state_changed(self, changed: set[str]) -> None:
        if "image" in changed:
            self._update_histogram()
        if changed & {"image", "window", "use_voi_lut"}:
            self._update_region()

    def _update_histogram(self) -> None:
        image = self.state.image
        self.setVisible(image is not None)
        if image is None:
            return
        counts, edges = stored_histogram(image, bins=_BINS)
        if counts.size == 0:
            return
        self._data_range = (float(edges[0]), float(edges[-1]))
        self.curve.setData(edges, np.log1p(counts.astype(np.float64)))

    def _update_region(self) -> None:
        if self.state.image is None:
            return
        center, width = stored_window(self.state.window, self.state.image)
        lo, hi = center - width / 2.0, center + width / 2.0
        self._updating = True
        try:
            self.region.setRegion((lo, hi))
            x0, x1 = min(lo, self._data_range[0]), max(hi, self._data_range[1])
            pad = 0.02 * (x1 / 2.0 - x0 / 2.0)  # halves: the span itself may overflow float64
            self.plot.setXRange(max(x0 - 2.0 * pad, -_MAX), min(x1 + 2.0 * pad, _MAX), padding=0)
        finally:
            self._updating = False

    def _region_changed(self) -> None:
        if self._updating or self.state.image is None:
            return
        lo, hi = (float(v) for v in self.region.getRegion())
        width = hi - lo
        if not width > 0 or not math.isfinite(lo) or not math.isfinite(hi):
            return
        center = (lo + hi) / 2.0
        if not math.isfinite(center):  # lo + hi overflowed float64
            center = lo / 2.0 + hi / 2.0
        window = window_from_stored((center, min(width, _MAX)), self.state.image)
        self.state.update(window=window, use_voi_lut=False)
