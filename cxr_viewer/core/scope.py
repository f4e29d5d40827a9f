"""Is a study within what the model was trained to read? Judged from its DICOM header only.

The bundled and the paper's models read frontal (PA/AP) chest radiographs. They give scores to anything,
so a hip or a lateral view would otherwise compete with real chest studies for the top of the worklist.
When the header says the study is something else, :func:`scope_warning` returns a short reason; the
viewer and ``cxr-triage`` show it and place such studies after the in-scope ones. A file without these
header fields (PNG, JPEG, a DICOM that leaves them empty) is given the benefit of the doubt: this is a
check of what the file declares, not an image-based detector.

The reason quotes only the body part, view or modality code: never patient data.

:func:`not_a_radiograph` is the other, header-free half: an image whose *size* cannot be a film (a
1 x 1 picture, an icon, a 1 x 40 million strip) is not scored at all; the callers turn its reason into
an error row instead of a score.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cxr_viewer.core.image import HeaderSummary, XrayImage

__all__ = ["MAX_ASPECT_RATIO", "MIN_RADIOGRAPH_SIDE", "not_a_radiograph", "scope_warning"]

#: Shortest side, in pixels, of an image that can be scored like a radiograph. A chest film is some
#: 2000-4300 px a side. The floor is low on purpose: downscaled copies of real films are read (the NIH
#: ChestX-ray14 64 px set that the demo model trains on is one), while an icon, a 1 x 1 pixel or a
#: scan line is refused. Issue 13 adds a low-resolution warning in the viewer above this floor.
MIN_RADIOGRAPH_SIDE = 32
#: Largest ratio of the long side to the short one (chest detectors are 1:1 to 1.25:1; stitched
#: long-leg or spine films reach about 3:1).
MAX_ASPECT_RATIO = 4.0

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


def not_a_radiograph(
    image: XrayImage | tuple[int, int],
    *,
    min_side: int = MIN_RADIOGRAPH_SIDE,
    max_aspect: float = MAX_ASPECT_RATIO,
) -> str:
    """A short reason when the image's size cannot be a radiograph's, else ``""``.

    The reader (`cxr_viewer.core.io.load_image`) returns such images (they can be shown); this
    says they must not be scored like a film. A check of the pixel grid only: no header, no content.

    Args:
        image: the image, or its ``(height, width)`` in pixels.
        min_side: the shortest side accepted, in pixels.
        max_aspect: the largest long-to-short side ratio accepted.

    Returns:
        ``""`` for a plausible size, otherwise one line that gives the size (``"W x H px"``) and the
        rule, e.g. ``"image too small to be a radiograph: 16 x 16 px (at least 32 px on the short
        side)"`` or ``"image too elongated to be a radiograph: 4000 x 300 px (aspect ratio above
        4:1)"``.
    """
    height, width = image if isinstance(image, tuple) else image.shape
    short, long = sorted((int(height), int(width)))
    size = f"{int(width)} x {int(height)} px"
    if short < min_side:
        return f"image too small to be a radiograph: {size} (at least {min_side} px on the short side)"
    if long > max_aspect * short:
        return f"image too elongated to be a radiograph: {size} (aspect ratio above {max_aspect:g}:1)"
    return ""
