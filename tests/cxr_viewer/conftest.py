"""Shared fixtures for the viewer tests: real-data paths and synthetic DICOM/PNG builders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

#: ../shared/data beside the repository (never copied into it); tests skip when it is absent.
DATA_DIR = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data").resolve()
DICOM_DIR = DATA_DIR / "dicom"
FULLRES_DIR = DATA_DIR / "chestxray14-fullres-samples" / "images"


def need_data(*parts: str) -> Path:
    """Path under the shared data folder, or skip the test with the reason."""
    path = DATA_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared test data not available: {path} (clone without ../shared/data)")
    return path


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    slope: float | None = None,
    intercept: float | None = None,
    window: tuple[float, float] | None = None,
    pixel_spacing: tuple[float, float] | None = None,
    imager_pixel_spacing: tuple[float, float] | None = None,
    voi_lut: tuple[int, np.ndarray] | None = None,
    patient_name: str = "Doe^Jane",
) -> Path:
    """Write an uncompressed DICOM file (explicit VR little endian). ``pixels`` (H, W) or (F, H, W) uint16."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR image storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = patient_name
    ds.PatientID = "SECRET-ID-123"
    ds.PatientBirthDate = "19010101"
    ds.StudyDate = "20240102"
    ds.Modality = "CR"
    ds.ViewPosition = "PA"
    arr = np.asarray(pixels, dtype=np.uint16)
    if arr.ndim == 3:
        ds.NumberOfFrames = arr.shape[0]
    ds.Rows, ds.Columns = arr.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    if slope is not None:
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept or 0.0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if pixel_spacing is not None:
        ds.PixelSpacing = list(pixel_spacing)
    if imager_pixel_spacing is not None:
        ds.ImagerPixelSpacing = list(imager_pixel_spacing)
    if voi_lut is not None:
        first, table = voi_lut
        item = Dataset()
        item.LUTDescriptor = [len(table), first, 16]
        item.add_new(0x00283006, "US", [int(v) for v in table])  # LUTData
        item.LUTExplanation = "test LUT"
        ds.VOILUTSequence = Sequence([item])
    ds.PixelData = arr.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def make_dicom():
    """The :func:`write_dicom` builder, as a fixture."""
    return write_dicom


@pytest.fixture
def shared_data():
    """``shared_data("dicom", "RG1_UNCI.dcm")`` -> path, or skip when ../shared/data is absent."""
    return need_data
