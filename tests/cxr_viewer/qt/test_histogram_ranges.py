"""Issue 18, item 5/9: the window histogram and windowing with finite values beyond float32's range.

Pixels spanning -3e38..3e38, or all near the float32 maximum (as after a huge rescale), made
`WindowHistogram` raise ``IndexError`` inside ``np.histogram`` (its float32 arithmetic overflowed); a
tiny range near 1 raised ``ValueError`` (no distinct float32 bin edges). Real widgets, real files.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from cxr_viewer.core.image import XrayImage
from cxr_viewer.core.state import ViewerState
from cxr_viewer.core.windowing import auto_window
from cxr_viewer.qt.widgets.window_controls import WindowHistogram

F32_MAX = float(np.finfo(np.float32).max)

#: name -> a 64 x 64 float32 image (finite values)
RANGES = {
    "spanning -3e38..3e38": np.linspace(-3e38, 3e38, 64 * 64),
    "near the float32 maximum": np.linspace(3.3e38, F32_MAX, 64 * 64),
    "both float32 extremes": np.r_[-F32_MAX, np.zeros(64 * 64 - 2), F32_MAX],
    "constant at 3e38": np.full(64 * 64, 3e38),
    "constant at -F32_MAX": np.full(64 * 64, -F32_MAX),
    "tiny range near 1": 1.0 + np.arange(64 * 64) % 2 * 1.2e-7,
}


def _image(values: np.ndarray, name: str = "x.tif") -> XrayImage:
    px = np.asarray(values, np.float32).reshape(64, 64)
    assert np.isfinite(px).all()
    return XrayImage(pixels=px, source=Path(name), format="TIFF", photometric="F")


def _finite_window(window: tuple[float, float]) -> bool:
    return all(math.isfinite(v) for v in window) and window[1] > 0


@pytest.fixture
def histogram(qtbot):
    state = ViewerState()
    widget = WindowHistogram(state)
    qtbot.addWidget(widget)
    widget.show()
    yield state, widget
    widget.close_controls()


@pytest.mark.parametrize("name", list(RANGES))
def test_histogram_of_any_finite_range(qtbot, histogram, name: str) -> None:
    state, widget = histogram
    image = _image(RANGES[name])
    state.update(image=image, window=auto_window(image.pixels))  # raised IndexError / ValueError
    x, y = widget.curve.getData()
    assert x is not None and y is not None
    assert np.isfinite(x).all() and np.isfinite(y).all()
    assert y.max() > 0  # the values were counted
    lo, hi = widget._data_range
    assert math.isfinite(lo) and math.isfinite(hi) and lo < hi
    assert lo <= float(image.pixels.min()) and float(image.pixels.max()) <= hi
    rlo, rhi = widget.region.getRegion()
    assert math.isfinite(rlo) and math.isfinite(rhi) and rlo < rhi
    widget.grab()  # painting the plot with these ranges works too


def test_dragging_the_region_over_the_whole_float32_range_sets_a_finite_window(qtbot, histogram) -> None:
    state, widget = histogram
    state.update(image=_image(RANGES["both float32 extremes"]), window=(0.0, 1.0))
    widget.region.setRegion((-F32_MAX, F32_MAX))  # as a drag to both ends would
    center, width = state.window
    assert _finite_window(state.window)
    assert center == pytest.approx(0.0, abs=1e30) and width == pytest.approx(2 * F32_MAX)
    widget.region.setRegion((3.3e38, F32_MAX))
    assert state.window == pytest.approx(((3.3e38 + F32_MAX) / 2, F32_MAX - 3.3e38))


def test_viewer_shows_a_float_tiff_spanning_the_float32_range(qtbot, make_window, tmp_path: Path) -> None:
    """The whole viewer on a real file: histogram, window, region, window drag and the image."""
    from PIL import Image

    px = np.linspace(-3e38, 3e38, 128 * 160, dtype=np.float32).reshape(128, 160)
    Image.fromarray(px).save(tmp_path / "huge_range.tif")
    Image.fromarray(np.full((128, 160), 3.4e38, np.float32)).save(tmp_path / "near_max.tif")
    window = make_window(model_path=None)
    window.open_paths([tmp_path / "huge_range.tif", tmp_path / "near_max.tif"])
    qtbot.waitUntil(lambda: len(window.studies) == 2 and window.state.image is not None, timeout=20_000)
    for name in ("huge_range.tif", "near_max.tif"):
        window.select_study(next(s.id for s in window.studies.values() if s.name == name))
        qtbot.waitUntil(
            lambda name=name: window.state.image is not None and window.state.image.name == name,
            timeout=20_000,
        )
        hist = window.histogram
        assert hist.isVisible()
        assert _finite_window(window.state.window)
        x, _ = hist.curve.getData()
        assert np.isfinite(x).all()
        window.image_view.drag_window(40.0, -25.0)  # a window/level mouse drag
        assert _finite_window(window.state.window)
        rlo, rhi = hist.region.getRegion()
        assert math.isfinite(rlo) and math.isfinite(rhi) and rlo < rhi
        window.auto_window_action.trigger()
        assert _finite_window(window.state.window)
        window.grab()
        if name == "huge_range.tif":  # what is drawn is the window applied to the pixels, no overflow
            import pyqtgraph as pg

            from cxr_viewer.core.windowing import apply_window

            item = window.image_view.base_item
            item.render()
            grey = pg.functions.ndarray_from_qimage(item.qimage)
            grey = grey[..., 0] if grey.ndim == 3 else grey
            expected = apply_window(window.state.image.pixels, *window.state.window) * 255
            for rows in (slice(0, 32), slice(96, 128)):
                assert abs(float(grey[rows].mean()) - float(expected[rows].mean())) < 3.0
