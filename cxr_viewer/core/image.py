"""The in-memory image every other module works with.

An :class:`XrayImage` holds one 2-D greyscale picture in *display orientation*: the modality LUT
(rescale slope/intercept) already applied and MONOCHROME1 already inverted, so a higher value is
always brighter. This is what the display windowing and the model both start from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["HeaderSummary", "VoiLut", "XrayImage"]


@dataclass(frozen=True)
class HeaderSummary:
    """Who/what/when of a study, for display in the window only.

    Never write these fields to logs, stdout or exception messages: they are patient data.
    Every field is a plain string, empty when the file does not say.
    """

    patient_name: str = ""
    patient_id: str = ""
    birth_date: str = ""
    sex: str = ""
    study_date: str = ""
    modality: str = ""
    view: str = ""
    body_part: str = ""
    description: str = ""
    study_uid: str = ""  # StudyInstanceUID: groups images into studies (core.studies)
    sop_uid: str = ""  # SOPInstanceUID: the same image dropped twice is recognised by it
    study_time: str = ""  # StudyTime (HHMMSS...), orders studies of one day

    def display_lines(self) -> list[str]:
        """Human-readable ``label: value`` lines for the non-empty fields."""
        labels = [
            ("Patient", self.patient_name),
            ("ID", self.patient_id),
            ("Born", self.birth_date),
            ("Sex", self.sex),
            ("Study date", self.study_date),
            ("Modality", self.modality),
            ("View", self.view),
            ("Body part", self.body_part),
            ("Description", self.description),
        ]
        return [f"{k}: {v}" for k, v in labels if v]

    def __repr__(self) -> str:  # keep patient data out of reprs that end up in tracebacks/logs
        return "HeaderSummary(<redacted>)"


@dataclass(frozen=True)
class VoiLut:
    """A DICOM VOI LUT (from ``VOILUTSequence``), defined on *modality* values.

    Args:
        first_mapped: the modality value mapped to ``table[0]``; values below map to ``table[0]``,
            values above ``first_mapped + len(table) - 1`` map to ``table[-1]``.
        table: the LUT entries, float32 (N,).
        explanation: the LUT's ``LUTExplanation`` (may be empty).
    """

    first_mapped: float
    table: np.ndarray
    explanation: str = ""


@dataclass(frozen=True, eq=False)
class XrayImage:
    """One greyscale X-ray in display orientation.

    Attributes:
        pixels: float32 (H, W). Modality LUT applied; MONOCHROME1 inverted (``pixels =
            inversion_pivot - modality_value``), so higher is brighter. Never modified in place.
        source: the file it came from.
        format: ``"DICOM"``, ``"PNG"``, ``"JPEG"``, ``"TIFF"``, ...
        photometric: the DICOM photometric interpretation or the Pillow mode of the source.
        inverted: True when MONOCHROME1 was inverted.
        inversion_pivot: modality value = ``inversion_pivot - pixel`` when ``inverted``.
        window: the file's default window ``(center, width)`` in *pixel* units (already mapped through
            the inversion), or None when the file has none (use an automatic window then).
        voi_lut: the file's VOI LUT, on modality values, if any.
        pixel_spacing: ``PixelSpacing`` (row, column) in mm, in the patient plane; None if absent/invalid.
        imager_pixel_spacing: ``ImagerPixelSpacing`` (row, column) in mm, at the detector; None if absent.
        patient_orientation: patient-direction letters of the image's rows and columns
            (``PatientOrientation``, else from ``ImageOrientationPatient``), e.g. ``("L", "F")``: the
            right edge points to the patient's left, the bottom edge to the feet; None when unknown.
        bits_stored: bits per sample in the source (8 for 8-bit PNG, ``BitsStored`` for DICOM).
        value_range: ``(black, white)``: the pixel values the source's encoding can hold, in display
            orientation ((0, 255) for 8-bit, (0, 65535) for 16-bit files; for DICOM the stored range
            after the modality LUT). What the model is fed is defined from it (`core.network_input`);
            None when the file states none.
        value_unit: unit of the modality values (``"HU"``, ``"US"`` (unspecified) ...), may be empty.
        notes: human-readable remarks, e.g. "first frame of 3 shown".
        header: patient/study summary for display only.
    """

    pixels: np.ndarray
    source: Path
    format: str
    photometric: str
    inverted: bool = False
    inversion_pivot: float = 0.0
    window: tuple[float, float] | None = None
    voi_lut: VoiLut | None = None
    pixel_spacing: tuple[float, float] | None = None
    imager_pixel_spacing: tuple[float, float] | None = None
    patient_orientation: tuple[str, str] | None = None
    bits_stored: int = 8
    value_range: tuple[float, float] | None = None
    value_unit: str = ""
    notes: tuple[str, ...] = ()
    header: HeaderSummary = field(default_factory=HeaderSummary)

    def __post_init__(self) -> None:
        px = self.pixels
        if px.ndim != 2:
            raise ValueError(f"pixels must be 2-D (H, W), got shape {px.shape}")
        if px.dtype != np.float32:
            raise ValueError(f"pixels must be float32, got {px.dtype}")
        px.setflags(write=False)  # shared between threads and views: nobody edits it in place

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` in pixels."""
        return (int(self.pixels.shape[0]), int(self.pixels.shape[1]))

    @property
    def name(self) -> str:
        """The file name, for lists and titles."""
        return self.source.name

    def modality_value(self, pixel_value: float) -> float:
        """Map a display-orientation pixel value back to the file's modality value."""
        return float(self.inversion_pivot - pixel_value) if self.inverted else float(pixel_value)

    def measurement_spacing(self) -> tuple[tuple[float, float] | None, str]:
        """The spacing to measure with and how to label it.

        Returns:
            ``((row_mm, col_mm), "mm")`` when ``PixelSpacing`` is known,
            ``((row_mm, col_mm), "mm at detector")`` when only ``ImagerPixelSpacing`` is known,
            ``(None, "px")`` otherwise.
        """
        if self.pixel_spacing is not None:
            return self.pixel_spacing, "mm"
        if self.imager_pixel_spacing is not None:
            return self.imager_pixel_spacing, "mm at detector"
        return None, "px"

    def __repr__(self) -> str:
        return (
            f"XrayImage(source={self.source.name!r}, format={self.format!r}, shape={self.shape}, "
            f"photometric={self.photometric!r}, inverted={self.inverted})"
        )
