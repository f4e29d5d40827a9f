"""Pure pixel functions: windowing, overlays, orientation (invariants, inputs untouched)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxr_viewer.core.image import VoiLut
from cxr_viewer.core.orientation import Orientation
from cxr_viewer.core.overlay import COLORMAPS, attention_to_heatmap, colormap_lut
from cxr_viewer.core.windowing import (
    apply_voi_lut_table,
    apply_window,
    auto_window,
    invert_monochrome1,
    presets_for,
    window_from_drag,
)


def _frozen(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.setflags(write=False)  # any in-place edit raises
    return a


@settings(max_examples=40, deadline=None)
@given(
    center=st.floats(-1e4, 1e4),
    width=st.floats(1e-3, 1e4),
    values=st.lists(st.floats(-2e4, 2e4), min_size=2, max_size=50),
)
def test_apply_window_range_dtype_monotonic(center: float, width: float, values: list[float]) -> None:
    px = _frozen(np.sort(np.asarray(values, dtype=np.float32)))
    out = apply_window(px, center, width)
    assert out.dtype == np.float32
    assert out.shape == px.shape
    assert np.all((out >= 0) & (out <= 1))
    assert np.all(np.diff(out) >= 0)  # monotonic


def test_apply_window_edges_nan_and_zero_width() -> None:
    px = _frozen(np.array([0.0, 50.0, 100.0, np.nan], np.float32))
    np.testing.assert_allclose(apply_window(px, 50, 100), [0, 0.5, 1, 0])
    out = apply_window(px, 50, 0)
    assert np.isfinite(out).all()
    out_int = apply_window(np.arange(5, dtype=np.uint16), 2, 4)
    assert out_int.dtype == np.float32


def test_invert_round_trip() -> None:
    px = _frozen(np.arange(12, dtype=np.float32).reshape(3, 4))
    once = invert_monochrome1(px, 11.0)
    assert once.dtype == np.float32
    np.testing.assert_array_equal(invert_monochrome1(once, 11.0), px)
    assert once.min() == 0
    assert once.max() == 11


def test_auto_window_constant_and_nan() -> None:
    assert auto_window(np.full((4, 4), 7.0))[1] > 0
    assert auto_window(np.full((3, 3), np.nan)) == (0.5, 1.0)
    c, w = auto_window(_frozen(np.linspace(0, 1000, 4_000_000, dtype=np.float32).reshape(2000, 2000)))
    assert 450 < c < 550
    assert 950 < w < 1000


def test_presets() -> None:
    px = np.linspace(0, 100, 101, dtype=np.float32)
    names = [p.name for p in presets_for((10.0, 20.0))]
    assert names[0] == "File default"
    assert presets_for((10.0, 20.0))[0].compute(px) == (10.0, 20.0)
    for preset in presets_for(None):
        c, w = preset.compute(px)
        assert w > 0
        assert 0 <= c <= 100


def test_window_from_drag_directions() -> None:
    c, w = window_from_drag(100, 50, dx=10, dy=0, value_range=1000)
    assert w > 50
    assert c == 100
    c, w = window_from_drag(100, 50, dx=0, dy=-10, value_range=1000)  # up: lower level, brighter
    assert c < 100
    assert w == 50
    _, w = window_from_drag(100, 5, dx=-1e6, dy=0, value_range=1000)
    assert w > 0


def test_voi_lut_table() -> None:
    lut = VoiLut(first_mapped=10, table=np.array([0, 100, 400, 900], np.float32))
    px = _frozen(np.array([0, 10, 11, 12, 13, 99], np.float32))
    out = apply_voi_lut_table(px, lut)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0, 0, 100 / 900, 400 / 900, 1, 1])


def test_heatmap_resize_and_normalize() -> None:
    att = _frozen(np.array([[0.1, 0.2], [0.3, 0.5]], np.float32))
    out = attention_to_heatmap(att, (40, 60), normalize=True)
    assert out.shape == (40, 60)
    assert out.dtype == np.float32
    assert out.min() == pytest.approx(0.0, abs=1e-6)
    assert out.max() == pytest.approx(1.0, abs=1e-6)
    assert out[-1, -1] > out[0, 0]  # the bright corner stays bright
    raw = attention_to_heatmap(att, (4, 4))  # the default keeps the map's own scale
    assert raw.max() <= 0.5 + 1e-6 and raw.min() >= 0.1 - 1e-6
    assert attention_to_heatmap(np.full((3, 3), 0.7), (5, 5), normalize=True).max() == 0.0
    assert np.isfinite(attention_to_heatmap(np.array([[np.nan, 1.0]]), (2, 4))).all()
    with pytest.raises(ValueError, match="2-D"):
        attention_to_heatmap(np.zeros(3), (4, 4))


@pytest.mark.parametrize("name", sorted(COLORMAPS))
def test_colormap_lut(name: str) -> None:
    lut = colormap_lut(name, 256)
    assert lut.shape == (256, 4)
    assert lut.dtype == np.uint8
    assert lut[0, 3] == 0
    assert lut[-1, 3] == 255
    assert np.all(np.diff(lut[:, 3].astype(int)) >= 0)
    assert (colormap_lut(name, alpha_ramp=0)[:, 3] == 255).all()


@pytest.mark.parametrize("turns", [0, 1, 2, 3])
@pytest.mark.parametrize("flip_h", [False, True])
@pytest.mark.parametrize("flip_v", [False, True])
def test_orientation_to_source_matches_apply(turns: int, flip_h: bool, flip_v: bool) -> None:
    src = np.arange(3 * 5).reshape(3, 5)
    o = Orientation(turns, flip_h, flip_v)
    disp = o.apply(src)
    assert disp.shape == o.display_shape(src.shape)
    for r in range(disp.shape[0]):
        for c in range(disp.shape[1]):
            sr, sc = o.to_source(r, c, src.shape)
            assert src[sr, sc] == disp[r, c]


def test_orientation_clockwise() -> None:
    src = np.array([[1, 2], [3, 4]])
    np.testing.assert_array_equal(Orientation().rotated().apply(src), [[3, 1], [4, 2]])
    assert Orientation().rotated().rotated(clockwise=False) == Orientation()
    assert Orientation().flipped().flipped() == Orientation()
