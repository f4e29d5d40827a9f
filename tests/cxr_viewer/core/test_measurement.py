"""Measurement geometry (Qt-free): lengths, angles, CTR, elliptical ROIs, orientation mapping and letters,
windows in stored values, zoom by drag, low-resolution note, and truncated files' reasons."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from cxr_viewer.core.errors import CorruptImageError
from cxr_viewer.core.image import XrayImage
from cxr_viewer.core.io import load_image
from cxr_viewer.core.measurement import (
    Annotation,
    angle_degrees,
    annotation_text,
    cardiothoracic_ratio,
    ellipse_mask,
    ellipse_stats,
    length,
)
from cxr_viewer.core.orientation import (
    Orientation,
    describe,
    edge_letters,
    letters_from_cosines,
    zoom_from_drag,
)
from cxr_viewer.core.overlay import low_resolution_note
from cxr_viewer.core.windowing import stored_histogram, stored_window, window_from_stored

ALL_ORIENTATIONS = [Orientation(k, fh, fv) for k in range(4) for fh in (False, True) for fv in (False, True)]


def _image(pixels: np.ndarray, **kwargs: object) -> XrayImage:
    return XrayImage(
        pixels=pixels.astype(np.float32),
        source=Path("t.dcm"),
        format="DICOM",
        photometric="MONOCHROME2",
        **kwargs,
    )  # type: ignore[arg-type]


def test_length_uses_row_and_column_spacing() -> None:
    # spacing is (row_mm, col_mm): x runs along columns
    assert length((0, 0), (10, 0), (0.5, 0.2)) == pytest.approx(2.0)
    assert length((0, 0), (0, 10), (0.5, 0.2)) == pytest.approx(5.0)
    assert length((470, 663), (1095, 1601), (0.2, 0.2)) == pytest.approx(0.2 * math.hypot(625, 938))
    assert length((1, 1), (4, 5), None) == pytest.approx(5.0)


def test_angle_in_the_patient_plane() -> None:
    assert angle_degrees((10, 0), (0, 0), (0, 10)) == pytest.approx(90.0)
    assert angle_degrees((10, 0), (0, 0), (10, 10)) == pytest.approx(45.0)
    assert angle_degrees((10, 0), (0, 0), (-10, 0)) == pytest.approx(180.0)
    # rows twice as far apart as columns: the pixel diagonal (1, 1) is atan(2) from the horizontal
    assert angle_degrees((10, 0), (0, 0), (10, 10), (2.0, 1.0)) == pytest.approx(math.degrees(math.atan(2)))
    assert math.isnan(angle_degrees((0, 0), (0, 0), (3, 3)))


def test_cardiothoracic_ratio() -> None:
    assert cardiothoracic_ratio(((30, 50), (70, 50)), ((10, 60), (110, 60))) == pytest.approx(0.4)
    assert math.isnan(cardiothoracic_ratio(((0, 0), (1, 0)), ((5, 5), (5, 5))))


def test_ellipse_mask_area_and_extent() -> None:
    mask = ellipse_mask((200, 300), (50, 40), (250, 160))  # rx 100, ry 60
    assert mask.sum() == pytest.approx(math.pi * 100 * 60, rel=0.01)
    rows, cols = np.nonzero(mask)
    assert (cols.min(), cols.max(), rows.min(), rows.max()) == (50, 249, 40, 159)
    assert not ellipse_mask((10, 10), (3, 3), (3, 8)).any()  # zero width
    assert ellipse_mask((10, 10), (-50, -50), (50, 50)).all()  # clipped to the image


def test_ellipse_stats_are_in_stored_values_for_monochrome1() -> None:
    rng = np.random.default_rng(0)
    stored = rng.integers(100, 4000, size=(60, 80)).astype(np.float32)
    pivot = 4095.0
    image = _image(pivot - stored, inverted=True, inversion_pivot=pivot, pixel_spacing=(0.5, 0.25))
    stats = ellipse_stats(image, (10, 5), (70, 55))
    inside = stored[ellipse_mask(image.shape, (10, 5), (70, 55))].astype(np.float64)
    assert stats.n == inside.size > 2000
    assert stats.mean == pytest.approx(inside.mean())
    assert stats.sd == pytest.approx(inside.std(ddof=1))
    assert stats.area == pytest.approx(math.pi * 30 * 25 * 0.5 * 0.25)
    text = annotation_text(Annotation("ellipse", ((10, 5), (70, 55))), image)
    assert f"mean {inside.mean():.1f}" in text and "mm\N{SUPERSCRIPT TWO}" in text


def test_annotation_texts_say_their_units() -> None:
    px = np.zeros((100, 100), np.float32)
    line = Annotation("length", ((0, 0), (30, 40)))
    assert annotation_text(line, _image(px, pixel_spacing=(0.2, 0.2))) == "10.0 mm"
    assert annotation_text(line, _image(px, imager_pixel_spacing=(0.1, 0.1))) == "5.0 mm at detector"
    assert annotation_text(line, _image(px)) == "50 px (no spacing)"
    ctr = Annotation("ctr", ((30, 50), (70, 50), (10, 60), (110, 60)))
    assert annotation_text(ctr, _image(px)).startswith("CTR 0.40")
    with pytest.raises(ValueError, match="takes 2 points"):
        Annotation("length", ((0, 0),))


@pytest.mark.parametrize("orientation", ALL_ORIENTATIONS)
def test_point_mapping_matches_the_displayed_array(orientation: Orientation) -> None:
    h, w = 5, 7
    src = np.arange(h * w).reshape(h, w)
    disp = orientation.apply(src)
    for r in range(h):
        for c in range(w):
            x, y = orientation.point_to_display(c + 0.5, r + 0.5, (h, w))
            assert disp[math.floor(y), math.floor(x)] == src[r, c]
            back = orientation.point_to_source(x, y, (h, w))
            assert back == pytest.approx((c + 0.5, r + 0.5))
            assert orientation.to_source(math.floor(y), math.floor(x), (h, w)) == (r, c)


@pytest.mark.parametrize("orientation", ALL_ORIENTATIONS)
def test_edge_letters_follow_the_pixels(orientation: Orientation) -> None:
    # a PA chest: the file's right edge is the patient's left (L), its bottom the feet (F)
    h, w = 9, 13
    marks = {"L": (h // 2, w - 1), "R": (h // 2, 0), "F": (h - 1, w // 2), "H": (0, w // 2)}
    letters = edge_letters("L", "F", (h, w), orientation)
    for letter, (r, c) in marks.items():
        src = np.zeros((h, w))
        src[r, c] = 1
        dr, dc = np.argwhere(orientation.apply(src))[0]
        dh, dw = orientation.display_shape((h, w))
        edge = {dc == dw - 1: "right", dc == 0: "left", dr == dh - 1: "bottom", dr == 0: "top"}[True]
        assert letters[edge] == letter
    assert edge_letters("", "F", (h, w)) == {}


def test_letters_from_direction_cosines() -> None:
    assert letters_from_cosines((1, 0, 0)) == "L"
    assert letters_from_cosines((0, 0, -1)) == "F"
    assert letters_from_cosines((0, -1, 0)) == "A"
    assert letters_from_cosines((0.8, 0, -0.6)) == "LF"
    assert letters_from_cosines((0, 0, 0)) == ""


def test_describe_and_zoom_from_drag() -> None:
    assert describe(Orientation()) == ""
    assert describe(Orientation(1, True)) == "rotated 90\N{DEGREE SIGN} right, flipped horizontally"
    assert zoom_from_drag(-100) == pytest.approx(2.0)
    assert zoom_from_drag(100) == pytest.approx(0.5)
    assert math.prod(zoom_from_drag(-10) for _ in range(10)) == pytest.approx(zoom_from_drag(-100))


def test_windows_and_histogram_in_stored_values() -> None:
    stored = np.tile(np.arange(0, 1000, dtype=np.float32), (4, 1))
    image = _image(4095.0 - stored, inverted=True, inversion_pivot=4095.0)
    assert stored_window((4095.0 - 300.0, 200.0), image) == (300.0, 200.0)
    assert window_from_stored((300.0, 200.0), image) == (3795.0, 200.0)
    counts, edges = stored_histogram(image, bins=10)
    ref_counts, ref_edges = np.histogram(stored, bins=10, range=(0, 999))
    assert np.array_equal(counts, ref_counts)
    assert edges == pytest.approx(ref_edges)
    plain = _image(stored)
    assert stored_window((300.0, 200.0), plain) == (300.0, 200.0)


def test_low_resolution_note() -> None:
    assert "64 x 64" in low_resolution_note((64, 64))
    assert low_resolution_note((512, 512)) == ""


def test_real_files_orientation_and_truncation(shared_data, tmp_path: Path) -> None:
    rg1 = shared_data("dicom", "RG1_UNCI.dcm")
    assert load_image(rg1).patient_orientation == ("L", "F")
    assert load_image(shared_data("dicom", "RG3_J2KR.dcm")).patient_orientation == ("R", "F")
    assert load_image(shared_data("dicom", "RG2_JLSL.dcm")).patient_orientation is None
    for name in ("RG1_UNCI.dcm", "RG2_JLSL.dcm"):
        data = shared_data("dicom", name).read_bytes()
        cut = tmp_path / f"cut_{name}"
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(CorruptImageError) as info:
            load_image(cut)
        message = str(info.value)
        assert message.startswith("truncated file"), message
        assert "ValueError" not in message and len(message) < 60
