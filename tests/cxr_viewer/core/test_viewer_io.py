"""cxr_viewer.core.io: synthetic files of every kind, and the real NEMA WG04 CR DICOM set."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

from cxr_viewer.core.io import ImageLoadError, iter_study_files, load_image, sniff_format

if TYPE_CHECKING:
    from pathlib import Path


def _ramp(h: int = 32, w: int = 24, hi: int = 4095) -> np.ndarray:
    return (np.linspace(0, hi, h * w).reshape(h, w)).astype(np.uint16)


# ------------------------------------------------------------------------------ synthetic DICOM
def test_dicom_monochrome2_modality_lut_window_and_spacing(tmp_path: Path, make_dicom) -> None:
    raw = _ramp()
    path = make_dicom(
        tmp_path / "a.dcm",
        raw,
        slope=2.0,
        intercept=-100.0,
        window=(1000.0, 2000.0),
        pixel_spacing=(0.2, 0.3),
    )
    img = load_image(path)
    assert img.pixels.dtype == np.float32
    assert img.shape == raw.shape
    np.testing.assert_allclose(img.pixels, raw * 2.0 - 100.0)
    assert img.window == (1000.0, 2000.0)
    assert not img.inverted
    assert img.pixel_spacing == (0.2, 0.3)
    assert img.imager_pixel_spacing is None
    assert img.measurement_spacing() == ((0.2, 0.3), "mm")
    assert img.header.modality == "CR"
    assert img.header.view == "PA"


def test_dicom_monochrome1_is_inverted_and_window_follows(tmp_path: Path, make_dicom) -> None:
    raw = _ramp(hi=4095)
    path = make_dicom(tmp_path / "m1.dcm", raw, photometric="MONOCHROME1", window=(1000.0, 500.0))
    img = load_image(path)
    assert img.inverted
    assert img.inversion_pivot == 4095.0  # 0 + (2**12 - 1)
    np.testing.assert_allclose(img.pixels, 4095.0 - raw)
    # the darkest stored value (0 = white in MONOCHROME1) is now the brightest
    assert img.pixels[0, 0] == img.pixels.max()
    assert img.window == (4095.0 - 1000.0, 500.0)
    assert img.modality_value(float(img.pixels[0, 0])) == float(raw[0, 0])


def test_dicom_imager_spacing_only_is_at_detector(tmp_path: Path, make_dicom) -> None:
    path = make_dicom(tmp_path / "d.dcm", _ramp(), imager_pixel_spacing=(0.14, 0.14))
    img = load_image(path)
    assert img.pixel_spacing is None
    assert img.imager_pixel_spacing == (0.14, 0.14)
    assert img.measurement_spacing() == ((0.14, 0.14), "mm at detector")


def test_dicom_zero_spacing_is_ignored_with_note(tmp_path: Path, make_dicom) -> None:
    path = make_dicom(tmp_path / "z.dcm", _ramp(), pixel_spacing=(0.0, 0.0))
    img = load_image(path)
    assert img.pixel_spacing is None
    assert any("PixelSpacing" in n for n in img.notes)
    assert img.measurement_spacing() == (None, "px")


def test_dicom_multiframe_reads_first_frame_and_says_so(tmp_path: Path, make_dicom) -> None:
    frames = np.stack([_ramp(), _ramp()[::-1] // 2, np.zeros((32, 24), np.uint16)])
    img = load_image(make_dicom(tmp_path / "mf.dcm", frames))
    np.testing.assert_array_equal(img.pixels, frames[0])
    assert any("first frame of 3" in n for n in img.notes)


def test_dicom_voi_lut_sequence_is_kept(tmp_path: Path, make_dicom) -> None:
    table = (np.sqrt(np.linspace(0, 1, 4096)) * 65535).astype(np.uint16)
    img = load_image(make_dicom(tmp_path / "v.dcm", _ramp(), voi_lut=(0, table)))
    assert img.voi_lut is not None
    assert img.voi_lut.first_mapped == 0
    assert img.voi_lut.table.shape == (4096,)
    np.testing.assert_allclose(img.voi_lut.table[[0, 4095]], [0, 65535])


def test_header_is_display_only(tmp_path: Path, make_dicom) -> None:
    img = load_image(make_dicom(tmp_path / "p.dcm", _ramp(), patient_name="Doe^Jane"))
    assert "Patient: Doe Jane" in img.header.display_lines()
    for text in (repr(img), repr(img.header), str(img.header)):
        assert "Doe" not in text
        assert "SECRET" not in text


def test_broken_dicom_gives_a_reason(tmp_path: Path, make_dicom) -> None:
    good = make_dicom(tmp_path / "g.dcm", _ramp())
    data = good.read_bytes()
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(data[: len(data) // 2])  # truncated pixel data
    with pytest.raises(ImageLoadError) as info:
        load_image(broken)
    assert str(info.value)
    assert "SECRET" not in str(info.value)


def test_dicom_without_pixels(tmp_path: Path, make_dicom) -> None:
    import pydicom

    path = make_dicom(tmp_path / "np.dcm", _ramp())
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    with pytest.raises(ImageLoadError, match="no pixel data"):
        load_image(path)


# ------------------------------------------------------------------------------ Pillow formats
@pytest.mark.parametrize(
    ("mode", "suffix", "bits"),
    [
        ("L", ".png", 8),
        ("I;16", ".png", 16),
        ("RGB", ".png", 8),
        ("L", ".jpg", 8),
        ("L", ".tif", 8),
        ("I;16", ".tif", 16),
    ],
)
def test_pillow_formats(tmp_path: Path, mode: str, suffix: str, bits: int) -> None:
    grey = np.linspace(0, 255 if bits == 8 else 60000, 16 * 20).reshape(16, 20)
    if mode == "RGB":
        arr = np.repeat(grey[..., None], 3, axis=2).astype(np.uint8)
        img = Image.fromarray(arr, "RGB")
    elif mode == "I;16":
        img = Image.fromarray(grey.astype(np.uint16))
    else:
        img = Image.fromarray(grey.astype(np.uint8))
    path = tmp_path / f"x{suffix}"
    img.save(path)
    out = load_image(path)
    assert out.shape == (16, 20)
    assert out.pixels.dtype == np.float32
    assert out.bits_stored == bits
    if suffix != ".jpg":
        np.testing.assert_allclose(out.pixels, grey.astype(np.uint16 if bits == 16 else np.uint8))
    assert (out.window is not None) == (bits == 8)


def test_colour_png_converted_to_grey_with_note(tmp_path: Path, make_dicom) -> None:
    arr = np.zeros((8, 8, 3), np.uint8)
    arr[..., 0] = 255
    Image.fromarray(arr, "RGB").save(tmp_path / "red.png")
    out = load_image(tmp_path / "red.png")
    np.testing.assert_allclose(out.pixels, 0.299 * 255, rtol=1e-5)
    assert any("grey" in n for n in out.notes)


def test_not_an_image_and_broken_png(tmp_path: Path, make_dicom) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(ImageLoadError, match="not an image"):
        load_image(tmp_path / "notes.txt")
    with pytest.raises(ImageLoadError):
        load_image(tmp_path / "bad.png")


def test_iter_study_files_recursive_with_reasons(tmp_path: Path, make_dicom) -> None:
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(sub / "one.png")
    make_dicom(tmp_path / "a" / "two", _ramp())  # no suffix, DICM preamble
    (tmp_path / "readme.txt").write_text("x")
    (tmp_path / ".hidden.png").write_bytes(b"x")
    (tmp_path / "DICOMDIR").write_bytes(b"x")
    found = list(iter_study_files([tmp_path, sub / "one.png"]))  # the duplicate is reported once
    images = sorted(f.path.name for f in found if not f.skipped)
    skipped = {f.path.name: f.skip_reason for f in found if f.skipped}
    assert images == ["one.png", "two"]
    assert set(skipped) == {"readme.txt", "DICOMDIR"}
    assert all(skipped.values())
    missing = list(iter_study_files([tmp_path / "nope.png"]))
    assert missing[0].skip_reason == "does not exist"
    assert sniff_format(tmp_path / "a" / "two") == "DICOM"


# ------------------------------------------------------------------------------ real CR files
def _load(shared_data, name: str) -> np.ndarray:
    return load_image(shared_data("dicom", name)).pixels


def test_rg1_monochrome1_chest_lungs_dark(shared_data) -> None:
    """The MONOCHROME1 chest CR must come out with dark lungs and a bright mediastinum/spine."""
    img = load_image(shared_data("dicom", "RG1_UNCI.dcm"))
    assert img.photometric == "MONOCHROME1"
    assert img.inverted
    px = img.pixels
    h, w = px.shape
    # lung fields: left and right of the midline in the upper-middle of a PA chest
    lungs = np.concatenate(
        [
            px[int(0.3 * h) : int(0.55 * h), int(0.2 * w) : int(0.38 * w)].ravel(),
            px[int(0.3 * h) : int(0.55 * h), int(0.62 * w) : int(0.8 * w)].ravel(),
        ]
    )
    mediastinum = px[int(0.3 * h) : int(0.55 * h), int(0.46 * w) : int(0.54 * w)]
    assert np.median(lungs) < np.median(mediastinum)
    assert np.median(lungs) < np.median(px)


# UNCR is the original; UNCI is the lossy J2KI image decompressed (so J2KI == UNCI exactly).
LOSSLESS_PAIRS = [
    ("RG1_J2KR.dcm", "RG1_UNCR.dcm"),
    ("RG1_J2KI.dcm", "RG1_UNCI.dcm"),
    ("RG3_J2KR.dcm", "RG3_UNCR.dcm"),
    ("RG3_J2KI.dcm", "RG3_UNCI.dcm"),
    ("RG2_JLSL.dcm", "RG2_JPLL.dcm"),
]
# (file, reference, max |diff| allowed, mean |diff| allowed as a fraction of the reference range)
LOSSY_PAIRS = [
    ("RG1_JLSN.dcm", "RG1_UNCR.dcm", 4, 0.001),  # JPEG-LS near-lossless: |error| <= NEAR
    ("RG2_JLSN.dcm", "RG2_JPLL.dcm", 4, 0.005),
    ("RG1_J2KI.dcm", "RG1_UNCR.dcm", None, 0.005),  # JPEG 2000 lossy
    ("RG3_J2KI.dcm", "RG3_UNCR.dcm", None, 0.005),
    ("RG1_UNCI.dcm", "RG1_UNCR.dcm", None, 0.005),
    ("RG2_JPLY.dcm", "RG2_JPLL.dcm", None, 0.01),  # JPEG extended 12-bit lossy (scan header patched)
]


@pytest.mark.parametrize(("name", "ref"), LOSSLESS_PAIRS)
def test_lossless_variants_are_identical(shared_data, name: str, ref: str) -> None:
    np.testing.assert_array_equal(_load(shared_data, name), _load(shared_data, ref))


@pytest.mark.parametrize(("name", "ref", "max_abs", "mean_frac"), LOSSY_PAIRS)
def test_lossy_variants_are_close(
    shared_data, name: str, ref: str, max_abs: float | None, mean_frac: float
) -> None:
    a, b = _load(shared_data, name), _load(shared_data, ref)
    assert a.shape == b.shape
    diff = np.abs(a - b)
    value_range = float(b.max() - b.min())
    assert diff.mean() <= mean_frac * value_range, (diff.mean(), value_range)
    if max_abs is not None:
        assert diff.max() <= max_abs
    assert np.corrcoef(a.ravel()[::97], b.ravel()[::97])[0, 1] > 0.99


def test_real_spacing_and_windows(shared_data) -> None:
    rg1 = load_image(shared_data("dicom", "RG1_UNCR.dcm"))
    assert rg1.pixel_spacing is None  # stored as 0.000\0.000 in this file
    rg2 = load_image(shared_data("dicom", "RG2_JPLL.dcm"))
    assert rg2.pixel_spacing == (0.2, 0.2)
    assert rg2.window == (511.0, 1024.0)
    assert rg2.photometric == "MONOCHROME2"


def test_whole_dicom_folder_scans(shared_data) -> None:
    found = list(iter_study_files([shared_data("dicom")]))
    assert sum(not f.skipped for f in found) == 13
    assert any(f.skipped and f.path.name.startswith("LICENSE") for f in found)


def test_voi_lut_display_monochrome1_stays_bright_up(tmp_path: Path, make_dicom) -> None:
    from cxr_viewer.core.windowing import voi_lut_display

    raw = _ramp(hi=4095)
    table = (np.linspace(0, 1, 4096) ** 0.5 * 65535).astype(np.uint16)
    m2 = load_image(make_dicom(tmp_path / "m2.dcm", raw, voi_lut=(0, table)))
    m1 = load_image(make_dicom(tmp_path / "m1.dcm", raw, photometric="MONOCHROME1", voi_lut=(0, table)))
    d2, d1 = voi_lut_display(m2), voi_lut_display(m1)
    assert d2 is not None
    assert d1 is not None
    assert d2.dtype == np.float32
    assert d2.min() >= 0
    assert d2.max() <= 1
    np.testing.assert_allclose(d1, 1.0 - d2, atol=1e-6)  # same stored values, opposite photometric
    assert d2[-1, -1] > d2[0, 0]
    np.testing.assert_allclose(d2[0, 1], np.sqrt(raw[0, 1] / 4095), atol=2e-3)
    assert voi_lut_display(load_image(make_dicom(tmp_path / "n.dcm", raw))) is None


@pytest.mark.filterwarnings("ignore::UserWarning:pydicom")
@pytest.mark.parametrize("name", ["RG3_J2KR.dcm", "RG2_JLSL.dcm", "RG2_JPLY.dcm"])
def test_damaged_real_files_fail_cleanly(shared_data, tmp_path: Path, name: str) -> None:
    """Truncated or scribbled-over compressed DICOM: an image or an ImageLoadError, nothing else."""
    data = shared_data("dicom", name).read_bytes()
    rng = np.random.default_rng(0)
    damaged = tmp_path / name
    variants = [data[:200], data[: len(data) // 3], data[: len(data) - 100]]
    scribbled = bytearray(data)
    for i in rng.integers(2000, len(data), 30):
        scribbled[int(i)] = int(rng.integers(0, 256))
    variants.append(bytes(scribbled))
    for variant in variants:
        damaged.write_bytes(variant)
        try:
            img = load_image(damaged)
        except ImageLoadError as exc:
            reason = str(exc)
        else:
            reason = "ok" if img.pixels.dtype == np.float32 else ""
        assert reason


@pytest.mark.parametrize("photometric", ["RGB", "PALETTE COLOR"])
def test_colour_dicom(tmp_path: Path, make_dicom, photometric: str) -> None:
    import pydicom

    path = make_dicom(tmp_path / "c.dcm", np.zeros((6, 5), np.uint16))
    ds = pydicom.dcmread(path)
    rgb = np.zeros((6, 5, 3), np.uint8)
    rgb[..., 1] = 200
    ds.PhotometricInterpretation = photometric
    ds.SamplesPerPixel = 3
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelData = rgb.tobytes()
    ds.save_as(path)
    if photometric == "RGB":
        img = load_image(path)
        np.testing.assert_allclose(img.pixels, 0.587 * 200, rtol=1e-5)
        assert any("grey" in n for n in img.notes)
    else:
        with pytest.raises(ImageLoadError, match="unsupported photometric"):
            load_image(path)


@pytest.mark.parametrize("syntax", ["RLELossless", "JPEGLSLossless", "JPEG2000Lossless"])
def test_synthetic_compressed_round_trip(tmp_path: Path, make_dicom, syntax: str) -> None:
    """Compressed transfer syntaxes written by pydicom's encoders decode to the same pixels."""
    import pydicom
    import pydicom.uid

    rng = np.random.default_rng(1)
    raw = rng.integers(0, 4096, size=(40, 33), dtype=np.uint16)
    path = make_dicom(tmp_path / "u.dcm", raw, photometric="MONOCHROME1", pixel_spacing=(0.15, 0.15))
    ds = pydicom.dcmread(path)
    try:
        ds.compress(getattr(pydicom.uid, syntax))
    except (RuntimeError, ValueError, ImportError) as exc:  # encoder plugin not installed
        pytest.skip(f"no {syntax} encoder: {exc}")
    ds.save_as(tmp_path / "c.dcm")
    img = load_image(tmp_path / "c.dcm")
    np.testing.assert_array_equal(img.pixels, 4095.0 - raw)
    assert img.pixel_spacing == (0.15, 0.15)
