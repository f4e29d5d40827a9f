"""Display windowing: pure functions from pixel values to display intensities in [0, 1].

Every function here takes its input read-only, returns a new float32 array, and has no hidden state.
They are for *display*; the model's preprocessing lives in ``cral_model`` and is never mixed in here.

Any finite values are handled, including ranges that overflow float32 (pixels spanning -3e38..3e38,
values near the float32 maximum after a rescale): the arithmetic switches to float64 where float32
could overflow or lose the window, and window widths and spans are computed in float64.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable

    from cxr_viewer.core.image import VoiLut, XrayImage

__all__ = [
    "ANATOMICAL_PRESETS",
    "WindowPreset",
    "apply_voi_lut_table",
    "apply_window",
    "auto_window",
    "display_histogram",
    "full_range_window",
    "invert_monochrome1",
    "percentile_windows",
    "presets_for",
    "stored_histogram",
    "stored_window",
    "voi_lut_display",
    "window_from_drag",
    "window_from_stored",
]

_MIN_WIDTH = 1e-6
#: ... and at least this fraction of the values' magnitude, so that both ends of a window stay distinct
#: in float64 (1e-6 is below the spacing of float64 values beyond about 4e9)
_REL_MIN_WIDTH = 2.0**-40
#: the largest window width (and span) handed out: any finite float64
_MAX_WIDTH = sys.float_info.max
#: float32 arithmetic is used only while every value, the window's ends and its width stay below this
#: (float32 overflows at 3.4e38; differences of two such values stay far below it)
_FLOAT32_SAFE = 1e37
#: ... and while the width is at least this fraction of the window ends' magnitude (else rounding the
#: window's low end to float32 would move it by more than a small part of the width)
_FLOAT32_REL_WIDTH = 1e-4


def _min_width(value: float) -> float:
    """The narrowest window around ``value``: 1e-6, or wider where float64 cannot resolve that."""
    return max(_MIN_WIDTH, abs(value) * _REL_MIN_WIDTH) if math.isfinite(value) else _MIN_WIDTH


def _float32_is_enough(values: np.ndarray, low: float, width: float) -> bool:
    """Whether ``(values - low) / width`` can be computed in float32 without overflow or a lost window."""
    edge = max(abs(low), abs(low + width))
    if not (edge < _FLOAT32_SAFE and width < _FLOAT32_SAFE and width >= _FLOAT32_REL_WIDTH * edge):
        return False
    if values.size == 0 or (values.dtype.kind in "biu" and values.dtype.itemsize <= 2):
        return True
    # NaN or inf make these comparisons False: float64 then (nan_to_num handles them either way)
    return bool(np.max(values) < _FLOAT32_SAFE and np.min(values) > -_FLOAT32_SAFE)


def apply_window(pixels: np.ndarray, center: float, width: float) -> np.ndarray:
    """Linear window/level (the DICOM "LINEAR" function, continuous form).

    Args:
        pixels: any real array (typically float32 (H, W)); not modified.
        center: window centre, in the same units as ``pixels``.
        width: window width (> 0); smaller values are clamped to a tiny positive width (1e-6, or a
            2^-40 fraction of ``center`` where that is larger).

    Returns:
        float32 array, same shape, in [0, 1]: ``center - width/2`` maps to 0, ``center + width/2`` to 1.
        NaN inputs map to 0. Computed in float32 when that is exact enough, else in float64 (values or a
        window beyond float32's range, or a window narrow for the magnitude of its values).
    """
    center, width = float(center), float(width)
    min_width = _min_width(center)
    width = min(width, _MAX_WIDTH) if width >= min_width else min_width  # NaN: the minimum too
    low = center - width / 2.0
    arr = np.asarray(pixels)
    if _float32_is_enough(arr, low, width):
        out = (np.asarray(arr, dtype=np.float32) - np.float32(low)) / np.float32(width)
    else:
        with np.errstate(over="ignore", invalid="ignore"):  # float64 input beyond float64's span
            out = (np.asarray(arr, dtype=np.float64) - low) / width
    out = np.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0)
    return np.asarray(np.clip(out, 0.0, 1.0, out=out), dtype=np.float32)


def invert_monochrome1(values: np.ndarray, pivot: float) -> np.ndarray:
    """Turn MONOCHROME1 values (higher = darker) into display orientation (higher = brighter).

    Args:
        values: modality values; not modified.
        pivot: ``min_possible + max_possible`` of the value range, so the range maps onto itself.

    Returns:
        float32 array ``pivot - values``. Applying it twice with the same pivot gives the input back.
    """
    return (np.float32(pivot) - np.asarray(values, dtype=np.float32)).astype(np.float32, copy=False)


def auto_window(pixels: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.5) -> tuple[float, float]:
    """A window spanning the given percentiles of the finite pixel values.

    Args:
        pixels: any real array; not modified. Large arrays are subsampled for speed.
        low_pct: lower percentile in [0, 100).
        high_pct: upper percentile in (low_pct, 100].

    Returns:
        ``(center, width)``, finite; width is at least 1e-6, or a 2^-40 fraction of the values'
        magnitude where that is larger (so both ends stay distinct), and at most the float64 maximum, for
        float64 input spanning more than that). ``(0.5, 1.0)`` for an array with no finite values.
    """
    return percentile_windows(pixels, [(low_pct, high_pct)])[0]


def _finite_sample(pixels: np.ndarray) -> np.ndarray:
    """The finite values of a regular ~512 x 512 subsample, float64."""
    arr = np.asarray(pixels)
    if arr.size > 512 * 512:  # percentiles of ~260k samples are as good as of 4M, and 15x faster
        step = int(np.ceil(np.sqrt(arr.size / (512 * 512))))
        arr = arr[::step, ::step] if arr.ndim == 2 else arr.ravel()[:: step * step]
    finite: np.ndarray = arr[np.isfinite(arr)].astype(np.float64)  # float32 differences could overflow
    return finite


def percentile_windows(pixels: np.ndarray, pairs: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """:func:`auto_window` for several ``(low_pct, high_pct)`` pairs at once (one subsample, one
    percentile pass): the same numbers as calling it once per pair, several times faster."""
    finite = _finite_sample(pixels)
    if finite.size == 0:
        return [(0.5, 1.0) for _ in pairs]
    qs = sorted({q for pair in pairs for q in pair})
    values = dict(zip(qs, (float(v) for v in np.percentile(finite, qs)), strict=True))
    return [_percentile_window(finite, values[a], values[b]) for a, b in pairs]


def _percentile_window(finite: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    if hi - lo < _MIN_WIDTH:
        lo, hi = float(finite.min()), float(finite.max())
    width = hi - lo
    if not math.isfinite(width):  # float64 input spanning more than the float64 maximum
        return lo / 2.0 + hi / 2.0, _MAX_WIDTH
    width = max(width, _min_width(max(abs(lo), abs(hi))))
    return lo + width / 2.0, width


def full_range_window(pixels: np.ndarray) -> tuple[float, float]:
    """A window from the minimum to the maximum finite value."""
    return auto_window(pixels, 0.0, 100.0)


def apply_voi_lut_table(modality_values: np.ndarray, lut: VoiLut) -> np.ndarray:
    """Apply a DICOM VOI LUT table and normalise its output to [0, 1].

    Args:
        modality_values: modality values (not inverted); not modified.
        lut: the table; values outside its input range are clamped to the first/last entry.

    Returns:
        float32 array in [0, 1]; the LUT output range ``[min(table), max(table)]`` maps onto [0, 1].
        (MONOCHROME1 images: invert the result with ``1 - out`` for display.)
    """
    table = np.asarray(lut.table, dtype=np.float64)  # the table is small: normalise it, then index
    lo, hi = float(table.min()), float(table.max())
    span = min(max(hi - lo, _MIN_WIDTH), _MAX_WIDTH)
    with np.errstate(over="ignore", invalid="ignore"):
        norm = np.clip(np.nan_to_num((table - lo) / span, nan=0.0), 0.0, 1.0).astype(np.float32)
        idx = np.asarray(modality_values, dtype=np.float64) - float(lut.first_mapped)
    idx = np.clip(np.nan_to_num(idx, nan=0.0), 0, table.size - 1).astype(np.intp)
    return np.asarray(norm[idx], dtype=np.float32)


def voi_lut_display(image: XrayImage) -> np.ndarray | None:
    """The image through its DICOM VOI LUT, in display orientation: float32 (H, W) in [0, 1].

    The LUT is defined on modality values, so MONOCHROME1 pixels are mapped back first and the LUT
    output is inverted afterwards (higher = brighter again). None when the image has no VOI LUT.
    """
    if image.voi_lut is None:
        return None
    values: np.ndarray = image.pixels
    if image.inverted:  # in float64: pivot - value can overflow float32 for values near its maximum
        values = float(image.inversion_pivot) - values.astype(np.float64)
    out = apply_voi_lut_table(values, image.voi_lut)
    return (1.0 - out).astype(np.float32) if image.inverted else out


def window_from_drag(
    center: float, width: float, dx: float, dy: float, value_range: float
) -> tuple[float, float]:
    """New window after a mouse drag, as in radiology viewers.

    Dragging right widens the window (less contrast); dragging up lowers the level, so the image gets
    brighter (and dragging down darker).
    One pixel of mouse motion changes the window by ``value_range / 1000``.

    Args:
        center, width: the current window.
        dx, dy: mouse motion in screen pixels (dy positive = downwards).
        value_range: the span of the image values, for the sensitivity.

    Returns:
        ``(center, width)``, finite, with width kept above a tiny positive minimum (any finite
        ``value_range`` works, e.g. 6.8e38 for values spanning float32's range).
    """
    value_range = float(value_range)
    value_range = min(value_range, _MAX_WIDTH) if value_range >= _MIN_WIDTH else _MIN_WIDTH
    step = max(value_range / 1000.0, _min_width(float(center)))
    new_width = min(max(float(width) + float(dx) * step * 2.0, step), _MAX_WIDTH)
    new_center = float(center) + float(dy) * step
    if not math.isfinite(new_center):  # only at the float64 limit: stay where we were
        new_center = float(center)
    return new_center, new_width


def display_histogram(
    pixels: np.ndarray, bins: int = 256, max_samples: int = 250_000
) -> tuple[np.ndarray, np.ndarray]:
    """A histogram of the finite pixel values, for the window controls.

    Args:
        pixels: any real array (typically float32 (H, W)); not modified. Subsampled on a regular grid
            to about ``max_samples`` values.
        bins: number of equal-width bins.
        max_samples: the subsample size.

    Returns:
        ``(counts, edges)``: int64 ``(bins,)`` and float64 ``(bins + 1,)``, strictly increasing and
        finite for any finite values (computed in float64: a float32 range can overflow); a constant
        image gets a small range around its value. Empty arrays when there is no finite value.
    """
    arr = np.asarray(pixels)
    step = max(1, int(math.sqrt(arr.size / max_samples)))
    sample = arr[::step, ::step] if arr.ndim == 2 else arr.ravel()[:: step * step]
    sample = sample[np.isfinite(sample)].astype(np.float64)
    if sample.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    lo, hi = float(sample.min()), float(sample.max())
    lo, hi = _distinct_range(lo, hi, bins)
    if not math.isfinite(hi - lo):  # float64 input spanning more than the float64 maximum
        sample = sample / 2.0
        counts, edges = np.histogram(sample, bins=bins, range=(lo / 2.0, hi / 2.0))
        return counts.astype(np.int64), edges * 2.0
    counts, edges = np.histogram(sample, bins=bins, range=(lo, hi))
    return counts.astype(np.int64), edges


def stored_window(window: tuple[float, float], image: XrayImage) -> tuple[float, float]:
    """A window in pixel units (display orientation) as the file's stored (modality) values.

    For MONOCHROME1 the centre maps back through the inversion (``pivot - centre``); the width is the
    same. This is the one set of numbers the user sees: W/L readout, histogram axis, pixel readout.
    """
    center, width = float(window[0]), float(window[1])
    return (float(image.inversion_pivot) - center, width) if image.inverted else (center, width)


def window_from_stored(window: tuple[float, float], image: XrayImage) -> tuple[float, float]:
    """The inverse of :func:`stored_window` (the inversion is its own inverse)."""
    return stored_window(window, image)


def stored_histogram(image: XrayImage, bins: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """:func:`display_histogram` of the image on the axis of its stored (modality) values.

    Returns ``(counts, edges)`` with increasing edges; for MONOCHROME1 the bins are those of the pixels,
    mirrored through the inversion pivot (so counts are identical, only the axis differs).
    """
    counts, edges = display_histogram(image.pixels, bins=bins)
    if not image.inverted or counts.size == 0:
        return counts, edges
    return counts[::-1].copy(), (float(image.inversion_pivot) - edges)[::-1].copy()


def _distinct_range(lo: float, hi: float, bins: int) -> tuple[float, float]:
    """``(lo, hi)`` widened when needed so that ``bins`` equal bins have distinct float64 edges."""
    min_span = max(1.0, abs(lo), abs(hi)) * 1e-12 * bins
    if hi - lo >= min_span:
        return lo, hi
    mid = lo / 2.0 + hi / 2.0
    return max(mid - min_span, -_MAX_WIDTH), min(mid + min_span, _MAX_WIDTH)


@dataclass(frozen=True)
class WindowPreset:
    """A named way to choose a window for an image (see :func:`presets_for`)."""

    name: str
    shortcut: str
    compute: Callable[[np.ndarray], tuple[float, float]]
    #: ``(low, high)`` when ``compute`` is ``auto_window`` of these percentiles (batched by
    #: :func:`percentile_windows`)
    percentiles: tuple[float, float] | None = None


def _percentile_preset(name: str, key: str, low: float, high: float) -> WindowPreset:
    return WindowPreset(name, key, lambda px: auto_window(px, low, high), (low, high))


def presets_for(default_window: tuple[float, float] | None) -> list[WindowPreset]:
    """Window presets that make sense for projection radiographs.

    CR/DX values are not calibrated like CT Hounsfield units, so fixed numeric "lung" or "bone"
    windows would be meaningless across vendors; the presets are derived from each image instead.

    Args:
        default_window: the file's own window, listed first when present.

    Returns:
        Presets in menu order; each ``compute(pixels)`` returns ``(center, width)``.
    """
    presets = []
    if default_window is not None:
        dw = (float(default_window[0]), float(default_window[1]))
        presets.append(WindowPreset("File default", "1", lambda _px: dw))
    presets += [
        _percentile_preset("Auto (0.5-99.5 %)", "2", 0.5, 99.5),
        _percentile_preset("High contrast (5-95 %)", "3", 5.0, 95.0),
        _percentile_preset("Soft (0-100 %)", "4", 0.0, 100.0),
        _percentile_preset("Dense areas (50-99.9 %)", "5", 50.0, 99.9),
    ]
    presets += ANATOMICAL_PRESETS
    return presets


#: chest windows, relative to each image's histogram (display orientation: higher = brighter): the
#: lungs are the dark part of a chest film, the mediastinum and bone the bright part. CR/DX values are
#: not calibrated, so these are percentile windows, not fixed numbers.
ANATOMICAL_PRESETS = [
    _percentile_preset("Lung (1-65 %)", "6", 1.0, 65.0),
    _percentile_preset("Mediastinum (35-99.5 %)", "7", 35.0, 99.5),
    _percentile_preset("Bone (60-99.9 %)", "8", 60.0, 99.9),
]
