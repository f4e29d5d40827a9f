"""Synthetic DICOM files for the reader, viewer and reliability tests (pydicom is imported on use)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pathlib import Path

    from pydicom.dataset import FileMetaDataset

#: SOP class of the files written here: Computed Radiography Image Storage
CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
#: Explicit VR Little Endian, the transfer syntax of uncompressed files
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"


def file_meta(
    transfer_syntax: str = EXPLICIT_VR_LITTLE_ENDIAN, instance_uid: str | None = None
) -> FileMetaDataset:
    """The file meta information of a CR image.

    Args:
        transfer_syntax: UID of the transfer syntax the meta declares.
        instance_uid: the SOP instance UID; a new random one when None.

    Returns:
        A `FileMetaDataset` with the SOP class, instance and transfer syntax UIDs set.
    """
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = instance_uid if instance_uid is not None else generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    return meta


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_allocated: int | None = None,
    bits_stored: int | None = None,
    syntax: str | None = None,
    slope: float | None = None,
    intercept: float | None = None,
    window: tuple[float, float] | None = None,
    pixel_spacing: tuple[float, float] | None = None,
    imager_pixel_spacing: tuple[float, float] | None = None,
    voi_lut: tuple[int, np.ndarray] | None = None,
    planar: int | None = None,
    patient_name: str = "Doe^Jane",
    patient_id: str = "SECRET-ID-123",
    study_date: str | None = None,
    view_position: str | None = None,
) -> Path:
    """Write a small CR DICOM file: explicit VR little endian, or compressed with ``syntax``.

    Args:
        path: destination file.
        pixels: (H, W) or (F, H, W) grey, or (H, W, 3) colour when ``photometric`` is not MONOCHROME*.
        photometric: PhotometricInterpretation.
        bits_allocated: 8 or 16; by default 8 for uint8 ``pixels`` and 16 otherwise. The pixels are
            stored as uint8 or uint16 to match.
        bits_stored: BitsStored (HighBit follows); by default 8 for 8-bit and 12 for 16-bit data.
        syntax: name of a compressed transfer syntax in `pydicom.uid` (``"RLELossless"``, ...),
            encoded by pydicom's encoder plugins (which raise when the plugin is missing).
        slope: RescaleSlope (RescaleIntercept is ``intercept`` or 0); no modality LUT when None.
        intercept: RescaleIntercept, used with ``slope`` only.
        window: (WindowCenter, WindowWidth), grey images only.
        pixel_spacing: PixelSpacing (row, column) in mm.
        imager_pixel_spacing: ImagerPixelSpacing (row, column) in mm.
        voi_lut: ``(first mapped value, table)`` of one VOI LUT Sequence item (16-bit entries).
        planar: PlanarConfiguration of colour data (default 0).
        patient_name: PatientName.
        patient_id: PatientID.
        study_date: StudyDate (YYYYMMDD); absent when None.
        view_position: ViewPosition (``"PA"``, ...); absent when None.

    Returns:
        ``path``.
    """
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    raw = np.asarray(pixels)
    bits = bits_allocated or (8 if raw.dtype == np.uint8 else 16)
    arr = np.asarray(raw, dtype=np.uint8 if bits == 8 else np.uint16)
    colour = arr.ndim == 3 and arr.shape[-1] == 3 and photometric not in ("MONOCHROME1", "MONOCHROME2")
    meta = file_meta()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19010101"
    if study_date is not None:
        ds.StudyDate = study_date
    ds.Modality = "CR"
    if view_position is not None:
        ds.ViewPosition = view_position
    if arr.ndim == 3 and not colour:
        ds.NumberOfFrames = arr.shape[0]
    ds.Rows, ds.Columns = arr.shape[:2] if colour else arr.shape[-2:]
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = planar or 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = bits
    ds.BitsStored = bits_stored or (8 if bits == 8 else 12)
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    if slope is not None:
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept or 0.0
    if window is not None and not colour:
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
    if syntax is not None:
        import pydicom.uid

        ds.compress(getattr(pydicom.uid, syntax))
    ds.save_as(path, enforce_file_format=True)
    return path


def write_jpeg_dicom(path: Path, pixels: np.ndarray, **header: Any) -> Path:
    """8-bit grey JPEG baseline encapsulated in DICOM (Pillow encodes: pydicom has no JPEG encoder).

    Args:
        path: destination file.
        pixels: (H, W) grey, stored as uint8.
        **header: more `write_dicom` keywords (patient name, spacing, ...); no window is written.

    Returns:
        ``path``.
    """
    import io

    import pydicom
    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    grey = pixels.astype(np.uint8)
    write_dicom(path, grey, **{**header, "window": None})
    buf = io.BytesIO()
    Image.fromarray(grey).save(buf, "JPEG", quality=90)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].is_undefined_length = True
    ds.save_as(path)
    return path
