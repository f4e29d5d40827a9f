"""Is a study within what the model was trained to read? Judged from its DICOM header only.

The bundled and the paper's models read frontal (PA/AP) chest radiographs. They give scores to anything,
so a hip or a lateral view would otherwise compete with real chest studies for the top of the worklist.
When the header says the study is something else, :func:`scope_warning` returns a short reason; the
viewer and ``cxr-triage`` show it and place such studies after the in-scope ones. A file without these
header fields (PNG, JPEG, a DICOM that leaves them empty) is given the benefit of the doubt: this is a
check of what the file declares, not an image-based detector.

The reason quotes only the body part, view or modality code: never patient data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cxr_viewer.core.image import HeaderSummary

__all__ = ["scope_warning"]

#: BodyPartExamined values (DICOM PS3.16 CID 4031 and common vendor spellings) that mean the chest
_CHEST_WORDS = ("CHEST", "THORA", "TORAX", "LUNG")
#: ViewPosition codes of lateral and decubitus views (PS3.3 C.8.11.5: LL, RL, LLD, RLD, ...)
_LATERAL_VIEWS = frozenset({"LL", "RL", "LLD", "RLD", "LAT", "LATERAL", "LLO", "RLO"})
#: Modalities under which projection radiographs are stored (secondary captures and "other" included)
_RADIOGRAPH_MODALITIES = frozenset({"CR", "DX", "DR", "RG", "OT", "SC"})


def _code(value: str) -> str:
    return "".join(value.split()).upper()


def scope_warning(header: HeaderSummary | None) -> str:
    """A short reason when the header says this is not a frontal chest radiograph, else ``""``."""
    if header is None:
        return ""
    modality = _code(header.modality)
    if modality and modality not in _RADIOGRAPH_MODALITIES:
        return f"modality {modality[:16]}: the model reads chest radiographs"
    body_part = _code(header.body_part)
    if body_part and not any(word in body_part for word in _CHEST_WORDS):
        return f"body part {body_part[:24]}: the model reads chest radiographs"
    view = _code(header.view)
    if view in _LATERAL_VIEWS:
        return f"{view} view: the model reads frontal (PA/AP) chest radiographs"
    return ""
