"""New DICOM UIDs for the result objects (SR and Secondary Capture), made by pydicom's generator.

Root: pydicom's own root, ``1.2.826.0.1.3680043.8.498.`` (`pydicom.uid.PYDICOM_ROOT_UID`). This project
has no UID root registered to it, and a root may only be used by the organisation it was issued to;
pydicom's root was issued (by Medical Connections) for UIDs that pydicom's ``generate_uid`` makes, which
is exactly how these are made. A site that has its own root passes it as ``root``.

The UIDs are *derived*, not random: ``generate_uid(root, entropy_srcs=[...])`` hashes (SHA-512) the
source's UIDs, the algorithm's identity (checkpoint SHA-256, version) and the object's kind. So the same
image triaged by the same model again gets the same SR and SC UIDs, and a PACS that receives them a
second time (a resend after a lost acknowledgement, a node restarted halfway) replaces the objects
instead of filing duplicates; a different model (other checkpoint) gives new UIDs, so its results never
overwrite another model's. The results of every image of one study go into one SR series and one SC
series (their Series Instance UIDs depend on the study, not on the image).
"""

from __future__ import annotations

from pydicom.uid import PYDICOM_ROOT_UID, generate_uid

__all__ = ["UID_ROOT", "derived_uid"]

#: the UID root used unless the caller names its own (pydicom's, see the module docstring)
UID_ROOT = PYDICOM_ROOT_UID


def derived_uid(kind: str, *parts: str, root: str = UID_ROOT) -> str:
    """A UID under ``root`` that depends only on ``kind`` and ``parts`` (same inputs, same UID).

    Args:
        kind: what the UID names, e.g. ``"sr-series"``, ``"sc-instance"``.
        parts: what it is derived from (source UIDs, the algorithm's checkpoint SHA-256...).
        root: the UID root, ending in ``"."`` (at most 32 characters, pydicom's rule).

    Returns:
        A valid UID of at most 64 characters.

    Raises:
        ValueError: for a root pydicom refuses.
    """
    return str(generate_uid(root, entropy_srcs=["cxr-triage-results", kind, *parts]))
