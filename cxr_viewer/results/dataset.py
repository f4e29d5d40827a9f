"""The source image's header, as the result objects need it, and the rule for sources that are not DICOM.

Results are filed *into the source's study*, so they need the source's DICOM data set: its Study,
SOP Class and SOP Instance UIDs (required: without them there is no study to file into and nothing to
reference) and its patient and study attributes (copied as they are; a Type 2 attribute the source lacks
is added *empty*, which DICOM reads as "unknown", never filled with an invented value).

PNG, JPEG and other picture files have no study: DICOM results for them are refused with
`NoSourceStudyError` (a clear one-line message). The CSV and the one-page summary do not need a study
and are still written for them (`cxr_viewer.results.export`).
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from cxr_viewer.core.errors import ImageLoadError

if TYPE_CHECKING:
    import os
    from collections.abc import Iterator

    from pydicom.dataset import Dataset

__all__ = [
    "NoSourceStudyError",
    "ResultsError",
    "evidence_header",
    "person_name_warnings_quiet",
    "read_source",
]

#: Type 2 attributes of the Patient and General Study modules that the result objects carry
_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)
_REQUIRED = ("StudyInstanceUID", "SOPClassUID", "SOPInstanceUID")


@contextlib.contextmanager
def person_name_warnings_quiet() -> Iterator[None]:
    """Silence highdicom's warning about one-component person names while the objects are built.

    Its message quotes the name (a header value must not reach a log), and copying the source's value
    as it is is what the results mean to do.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name")
        yield


class ResultsError(ValueError):
    """A result object cannot be made for this source; the message is one line, without patient data."""


class NoSourceStudyError(ResultsError):
    """The source is not a DICOM image (a PNG, a JPEG...): there is no study to file DICOM results into."""


def evidence_header(source: Dataset, name: str = "the source") -> Dataset:
    """A copy of ``source``'s header (no pixel data) with its Type 2 patient/study attributes present.

    Args:
        source: the source image's data set; not modified.
        name: how to call it in an error message (a file name; never a header value).

    Raises:
        ResultsError: when the source lacks a Study, SOP Class or SOP Instance UID.
    """
    missing = [k for k in _REQUIRED if not str(source.get(k, "") or "").strip()]
    if missing:
        raise ResultsError(f"{name} has no {', '.join(missing)}: no study to file DICOM results into")
    from pydicom.dataset import Dataset

    header = Dataset()
    for elem in source:  # everything but the pixels (group 0x7FE0) and the file meta
        if elem.tag.group != 0x7FE0:
            header.add(copy.deepcopy(elem))
    header.set_original_encoding(
        getattr(source, "is_implicit_VR", None) or False,
        getattr(source, "is_little_endian", None) is not False,
        source.get("SpecificCharacterSet", "ISO_IR 6"),
    )
    for keyword in _TYPE2:
        if keyword not in header:
            setattr(header, keyword, None)  # present and empty: "unknown", as DICOM has it
    return header


def read_source(path: str | os.PathLike[str], image_format: str = "") -> Dataset:
    """The header of a DICOM source file (read within the viewer's readers' budgets; pixels not decoded).

    Args:
        path: the file the image was read from.
        image_format: the `XrayImage.format` it was read as, when known; anything but ``"DICOM"`` is
            refused without opening the file.

    Raises:
        NoSourceStudyError: for a file that is not DICOM.
        ResultsError: for a DICOM file that cannot be read again (changed or removed since).
    """
    from cxr_viewer.core.dicom_file import read_dicom_file
    from cxr_viewer.core.io import sniff_format

    p = Path(path)
    fmt = image_format or (sniff_format(p) or "")
    if fmt.upper() != "DICOM":
        raise NoSourceStudyError(
            f"{p.name} is a {fmt or 'non-DICOM'} file, not DICOM: it has no study to file DICOM results "
            "into (the CSV and summary are still written)"
        )
    try:
        with open(p, "rb") as fh:
            head = fh.read(132)
        return read_dicom_file(p, head, [])
    except (OSError, ImageLoadError) as exc:
        raise ResultsError(f"cannot read {p.name} again for its header: {type(exc).__name__}") from None
