"""The input contract: the same picture reaches the network as the same tensor on every road
(training loader, viewer, cxr-triage, DICOM in either polarity)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cral_model.config import PreprocessConfig
from cral_model.data.dataset import load_image as training_load_image
from cral_model.data.transforms import EvalPreset
from cral_model.preprocessing import preprocess, to_unit_float
from cxr_viewer.core.io import load_image
from cxr_viewer.core.network_input import network_input
from cxr_viewer.core.windowing import apply_window

CFG = PreprocessConfig(input_size=224, resize=256)  # the bundled model's


def _first_pngs(folder, n):
    files = sorted(folder.glob("*.png"))[:n]
    assert files, f"no PNG in {folder}"
    return files


@pytest.mark.parametrize(
    ("folder", "n"),
    [
        (("chestxray14-nih1000-64px", "images"), 6),  # RGB PNG with three equal channels
        (("chestxray14-trainval-512px", "images"), 3),  # 8-bit grey
        (("chestxray14-fullres-samples", "images"), 2),  # 1024 px 8-bit grey
    ],
)
def test_nih_png_viewer_path_equals_training_path_bitwise(shared_data, folder, n):
    for path in _first_pngs(shared_data(*folder), n):
        train_x = EvalPreset(CFG)(training_load_image(str(path)))
        viewer_x = preprocess(network_input(load_image(path)), CFG)
        assert torch.equal(train_x, viewer_x), path.name


def _png_pixels(shared_data) -> tuple[np.ndarray, object]:
    path = _first_pngs(shared_data("chestxray14-trainval-512px", "images"), 1)[0]
    return training_load_image(str(path)), path


def test_8bit_monochrome2_dicom_from_a_png_gives_the_png_tensor(shared_data, make_dicom, tmp_path):
    grey, png = _png_pixels(shared_data)
    assert grey.dtype == np.uint8
    dcm = make_dicom(tmp_path / "m2.dcm", grey.astype(np.uint16), bits_stored=8)
    image = load_image(dcm)
    assert image.value_range == (0.0, 255.0)
    assert torch.equal(preprocess(network_input(image), CFG), preprocess(network_input(load_image(png)), CFG))


def test_monochrome1_copy_gives_the_same_tensor(shared_data, make_dicom, tmp_path):
    grey, png = _png_pixels(shared_data)
    stored = (255 - grey.astype(np.int32)).astype(np.uint16)  # MONOCHROME1: higher = darker
    image = load_image(make_dicom(tmp_path / "m1.dcm", stored, photometric="MONOCHROME1", bits_stored=8))
    assert image.inverted
    assert torch.equal(preprocess(network_input(image), CFG), preprocess(network_input(load_image(png)), CFG))


def test_dicom_window_defines_the_input_and_monochrome1_window_matches(make_dicom, tmp_path):
    rng = np.random.default_rng(0)
    stored = rng.integers(0, 4096, (40, 50)).astype(np.uint16)
    m2 = load_image(make_dicom(tmp_path / "w2.dcm", stored, window=(2000, 1000)))
    x2 = network_input(m2)
    np.testing.assert_array_equal(x2, apply_window(m2.pixels, 2000, 1000))
    assert x2.min() == 0.0 and x2.max() == 1.0  # the window clips: outside it is black or white
    # the same picture stored as MONOCHROME1 with the window mirrored: the same network input
    m1 = load_image(
        make_dicom(tmp_path / "w1.dcm", (4095 - stored).astype(np.uint16), photometric="MONOCHROME1",
                   window=(4095 - 2000, 1000))
    )  # fmt: skip
    np.testing.assert_allclose(network_input(m1), x2, atol=1e-6)


def test_dicom_without_window_uses_the_stored_range_not_min_max(make_dicom, tmp_path):
    stored = np.full((16, 16), 1000, np.uint16)
    stored[0, 0] = 1100
    image = load_image(make_dicom(tmp_path / "r.dcm", stored, bits_stored=12))
    x = network_input(image)
    np.testing.assert_allclose(x[1, 1], 1000 / 4095, rtol=1e-6)  # min-max would give 0
    np.testing.assert_allclose(x[0, 0], 1100 / 4095, rtol=1e-6)


def test_dicom_voi_lut_defines_the_input(make_dicom, tmp_path):
    stored = np.arange(256, dtype=np.uint16).reshape(16, 16)
    table = np.clip(np.arange(128) * 512, 0, 65535).astype(np.uint16)  # LUT over modality 64..191
    image = load_image(make_dicom(tmp_path / "lut.dcm", stored, bits_stored=8, voi_lut=(64, table)))
    x = network_input(image)
    assert x[0, 0] == 0.0 and x[-1, -1] == 1.0
    np.testing.assert_allclose(x.ravel()[64:192], table / table.max(), atol=1e-6)


def test_16bit_png_by_its_bit_depth(tmp_path):
    from PIL import Image

    arr = np.array([[0, 1000], [30000, 65535]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "g16.png")
    image = load_image(tmp_path / "g16.png")
    np.testing.assert_allclose(network_input(image), arr / 65535.0, rtol=1e-6)
    np.testing.assert_array_equal(network_input(image), to_unit_float(arr))


def test_preprocessing_never_guesses_a_range():
    with pytest.raises(ValueError, match="not \\[0, 1\\]"):
        to_unit_float(np.array([[0.0, 255.0]], np.float32))
    with pytest.raises(ValueError, match="no stated range"):
        to_unit_float(np.array([[0, 7]], np.int32))
    np.testing.assert_allclose(to_unit_float(np.array([[-10, 0, 10]], np.int32), (-10, 10)), [[0, 0.5, 1]])
    # MONOCHROME1 given on stored values: white below black
    np.testing.assert_allclose(to_unit_float(np.array([[0.0, 255.0]]), (255, 0)), [[1, 0]])
