"""Issue 18, item 5/9: the pure windowing functions with any finite values (float64 where needed).

Before: `apply_window` over -3e38..3e38 gave 0 everywhere (float32 overflow of the width and of
``pixels - low``); `display_histogram` did not exist and the widget's float32 histogram raised
``IndexError``; a VOI LUT whose entries span float32's range gave NaN; a 1e-6 window around 3e38
had equal ends.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from cxr_viewer.core.image import VoiLut
from cxr_viewer.core.windowing import (
    apply_voi_lut_table,
    apply_window,
    auto_window,
    full_range_window,
    window_from_drag,
)

F32_MAX = float(np.finfo(np.float32).max)
F64_MAX = float(np.finfo(np.float64).max)


def test_apply_window_over_the_whole_float32_range() -> None:
    px = np.array([[-F32_MAX, -3e38, 0.0, 3e38, F32_MAX]], np.float32)
    center, width = full_range_window(px)
    assert math.isfinite(center) and math.isfinite(width)
    assert width == pytest.approx(2 * F32_MAX)
    out = apply_window(px, center, width)
    assert out.dtype == np.float32 and out.shape == px.shape
    expected = (px.astype(np.float64) + F32_MAX) / (2 * F32_MAX)
    np.testing.assert_allclose(out, expected, atol=1e-6)  # was 0 everywhere


def test_apply_window_near_the_float32_maximum() -> None:
    px = np.linspace(3.3e38, F32_MAX, 101, dtype=np.float32)[None, :]
    out = apply_window(px, *full_range_window(px))
    np.testing.assert_allclose(out[0], np.linspace(0, 1, 101), atol=1e-5)
    # a window narrow for the magnitude: float32 could not place its ends
    out = apply_window(np.array([1e6, 1e6 + 0.5], np.float32), 1e6 + 0.25, 0.5)
    np.testing.assert_allclose(out, [0.0, 1.0], atol=1e-6)
    assert apply_window(np.array([1e6], np.float32), 1e6, 1e-3)[0] == pytest.approx(0.5)


def test_apply_window_with_float64_input_and_huge_windows() -> None:
    px = np.array([-1e300, 0.0, 1e300])
    out = apply_window(px, 0.0, 2e300)
    np.testing.assert_allclose(out, [0.0, 0.5, 1.0], atol=1e-6)
    assert np.isfinite(apply_window(px, 0.0, F64_MAX)).all()
    assert np.isfinite(apply_window(px, 0.0, float("inf"))).all()
    assert np.isfinite(apply_window(px, 0.0, float("nan"))).all()


def test_apply_window_unchanged_for_ordinary_images() -> None:
    rng = np.random.default_rng(0)
    px = rng.integers(0, 4096, (64, 64)).astype(np.float32)
    out = apply_window(px, 2048.0, 4096.0)
    ref = np.clip((px - np.float32(0.0)) / np.float32(4096.0), 0, 1)
    assert np.array_equal(out, ref.astype(np.float32))


@pytest.mark.parametrize(
    "values",
    [
        np.linspace(-3e38, 3e38, 4096),
        np.linspace(3.3e38, F32_MAX, 4096),
        np.r_[-F32_MAX, np.zeros(100), F32_MAX],
        np.full(100, 3e38),
        np.full(100, -F32_MAX),
        1.0 + np.arange(100) % 2 * 1.2e-7,
    ],
    ids=["span", "near-max", "extremes", "constant-3e38", "constant-min", "tiny"],
)
def test_auto_window_and_drag_stay_finite(values: np.ndarray) -> None:
    px = values.astype(np.float32).reshape(-1, 1)
    for window in (auto_window(px), full_range_window(px), auto_window(px, 5.0, 95.0)):
        center, width = window
        assert math.isfinite(center) and math.isfinite(width) and width > 0
        assert center - width / 2 < center + width / 2  # the window's ends are distinct
        out = apply_window(px, center, width)
        assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
        value_range = float(px.max()) - float(px.min())
        for dx, dy in ((40, -25), (-10_000, 10_000), (10_000, -10_000)):
            c2, w2 = window_from_drag(center, width, dx, dy, value_range)
            assert math.isfinite(c2) and math.isfinite(w2) and w2 > 0
            assert c2 - w2 / 2 < c2 + w2 / 2


def test_window_from_drag_with_any_value_range() -> None:
    for value_range in (0.0, 6.8e38, F64_MAX, float("inf"), float("nan")):
        c, w = window_from_drag(0.0, 1.0, 5.0, 5.0, value_range)
        assert math.isfinite(c) and math.isfinite(w) and w > 0
    c, w = window_from_drag(F64_MAX / 2, F64_MAX, 1000.0, 1000.0, F64_MAX)
    assert math.isfinite(c) and math.isfinite(w)


@pytest.mark.parametrize(
    "values",
    [
        np.linspace(-3e38, 3e38, 4096),
        np.linspace(3.3e38, F32_MAX, 4096),
        np.r_[-F32_MAX, np.zeros(100), F32_MAX],
        np.full(100, 3e38),
        np.full(100, -F32_MAX),
        1.0 + np.arange(100) % 2 * 1.2e-7,
    ],
    ids=["span", "near-max", "extremes", "constant-3e38", "constant-min", "tiny"],
)
def test_display_histogram_of_any_finite_range(values: np.ndarray) -> None:
    from cxr_viewer.core.windowing import display_histogram  # new with the fix

    px = values.astype(np.float32).reshape(-1, 1)
    counts, edges = display_histogram(px, bins=256)
    assert counts.shape == (256,) and edges.shape == (257,)
    assert np.isfinite(edges).all() and (np.diff(edges) > 0).all()
    assert counts.sum() == px.size
    assert edges[0] <= px.min() and px.max() <= edges[-1]


def test_display_histogram_float64_beyond_float64_span_and_empty() -> None:
    from cxr_viewer.core.windowing import display_histogram

    counts, edges = display_histogram(np.array([[-F64_MAX, 0.0, F64_MAX]]), bins=16)
    assert counts.sum() == 3 and np.isfinite(edges).all() and (np.diff(edges) > 0).all()
    counts, edges = display_histogram(np.full((4, 4), np.nan, np.float32))
    assert counts.size == 0 and edges.size == 0
    counts, edges = display_histogram(np.arange(1000 * 1000, dtype=np.float32).reshape(1000, 1000))
    assert 200_000 < counts.sum() <= 250_000  # subsampled


def test_voi_lut_whose_entries_span_the_float32_range() -> None:
    lut = VoiLut(first_mapped=0.0, table=np.array([-F32_MAX, 0.0, F32_MAX], np.float32))
    out = apply_voi_lut_table(np.array([[0.0, 1.0, 2.0, 99.0]], np.float32), lut)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.0, 0.5, 1.0, 1.0]], atol=1e-6)  # was NaN / inf
