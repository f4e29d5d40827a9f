"""The picture of one result as a DICOM Secondary Capture image (highdicom ``SCImage``).

The pixels are `cxr_viewer.results.render.render_results_image`'s: the radiograph with its top findings,
the top finding's map and outline, and ``RESEARCH USE ONLY - NOT FOR DIAGNOSIS`` burned in. RGB, 8 bits,
Explicit VR Little Endian (uncompressed: every viewer and PACS reads it).

- Patient and study attributes are copied from the source by highdicom (``SCImage.from_ref_dataset``);
  nothing is invented. Body Part Examined and Patient Orientation are copied when the source has them;
  a source without Patient Orientation gets it empty (Type 2: unknown), not a guess. The picture keeps
  the source's orientation (the renderer does not rotate or flip), so the copied value stays true.
- No Pixel Spacing: the picture may be scaled down and is not for measuring.
- Source Image Sequence references the source image; Derivation Description says what was drawn.
- Burned In Annotation is ``NO``: the text on the pixels names findings, never the patient or a date.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import highdicom as hd
from pydicom.dataset import Dataset

from cxr_viewer import __version__
from cxr_viewer.results.dataset import person_name_warnings_quiet
from cxr_viewer.results.sr import MANUFACTURER, algorithm_key
from cxr_viewer.results.uids import UID_ROOT, derived_uid

if TYPE_CHECKING:
    import numpy as np

    from cxr_viewer.inference import ModelProvenance

__all__ = ["SC_SERIES_DESCRIPTION", "SC_SERIES_NUMBER", "build_secondary_capture"]

SC_SERIES_NUMBER = 9902
SC_SERIES_DESCRIPTION = "CXR triage image - research use only, not for diagnosis"
_DERIVATION = "CXR triage result: top findings, class map and outline, research notice burned in"


def build_secondary_capture(
    source: Dataset, rgb: np.ndarray, algorithm: ModelProvenance, *, root: str = UID_ROOT
) -> hd.sc.SCImage:
    """The Secondary Capture of one rendered result.

    Args:
        source: the source image's header (`cxr_viewer.results.dataset.evidence_header`).
        rgb: uint8 (h, w, 3) from `render_results_image`.
        algorithm: the model's provenance (its checkpoint digest goes into the derived UIDs).
        root: UID root (`cxr_viewer.results.uids`).

    Returns:
        A ``highdicom.sc.SCImage`` (a pydicom Dataset) in the source's study, in the study's SC series.
    """
    key = algorithm_key(algorithm)
    has_orientation = _has_orientation(source)
    with person_name_warnings_quiet():
        sc = _sc_image(source, rgb, algorithm, key, root)
    if not has_orientation:  # Patient Orientation is Type 2: present and empty (unknown), not guessed
        sc.add_new(0x00200020, "CS", None)
    if source.get("BodyPartExamined"):
        sc.BodyPartExamined = source.BodyPartExamined
    ref = Dataset()
    ref.ReferencedSOPClassUID = source.SOPClassUID
    ref.ReferencedSOPInstanceUID = source.SOPInstanceUID
    sc.SourceImageSequence = [ref]
    sc.DerivationDescription = _DERIVATION
    sc.BurnedInAnnotation = "NO"
    sc.ImageComments = "RESEARCH USE ONLY - NOT FOR DIAGNOSIS. " + algorithm.name
    return sc


def _has_orientation(source: Dataset) -> bool:
    orientation = source.get("PatientOrientation")
    return orientation is not None and len(orientation) == 2 and all(orientation)


def _sc_image(
    source: Dataset, rgb: np.ndarray, algorithm: ModelProvenance, key: str, root: str
) -> hd.sc.SCImage:
    study, sop = str(source.StudyInstanceUID), str(source.SOPInstanceUID)
    orientation = source.get("PatientOrientation")
    has_orientation = _has_orientation(source)
    return hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=rgb,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=derived_uid("sc-series", study, key, root=root),
        series_number=SC_SERIES_NUMBER,
        sop_instance_uid=derived_uid("sc-instance", sop, key, root=root),
        instance_number=1,
        manufacturer=MANUFACTURER,
        # highdicom requires a value for the PATIENT coordinate system; emptied by the caller when unknown
        patient_orientation=tuple(orientation) if has_orientation else ("L", "F"),
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        series_description=SC_SERIES_DESCRIPTION,
        software_versions=f"cxr-triage {__version__}",
    )
