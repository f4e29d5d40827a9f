"""The Storage SCP's C-STORE handler: check, spool, journal, then acknowledge.

The order is what makes the node lose nothing: the instance's bytes are written and fsynced
(`cxr_viewer.node.spool.Spool.write_atomic`) and recorded in the journal (committed) *before* the handler
returns the success status that pynetdicom sends back. A crash before that point leaves the sender
without an acknowledgement, so it sends again; a crash after it finds the instance on disk and in the
journal on restart.

A data set that cannot be read is answered with a failure status and a short ``ErrorComment`` (no
patient data), and the association goes on:

* ``0xC000`` (cannot understand): not decodable, an element longer than the data, no valid SOP
  Class / SOP Instance / Study Instance UID;
* ``0xA900`` (data set does not match SOP class): its SOP Class or Instance UID is not the one the
  request names, or its native pixel data is shorter than its header says;
* ``0xA700`` (out of resources): the spool could not be written (disk full...).

A SOP Instance UID that was acknowledged before is answered with success and not stored again (a resend
after a lost response must not be triaged twice).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cxr_viewer.core.reasons import clip
from cxr_viewer.node.spool import valid_uid

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from cxr_viewer.node.journal import Journal
    from cxr_viewer.node.spool import Spool

__all__ = ["CANNOT_UNDERSTAND", "DOES_NOT_MATCH", "OUT_OF_RESOURCES", "SUCCESS", "BadDataset", "StoreHandler"]

log = logging.getLogger("cxr_viewer.node")

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000

#: undefined length (sequences, encapsulated pixel data)
_UNDEFINED = 0xFFFFFFFF
#: nesting of sequences checked at most (a deeper data set is refused)
_MAX_DEPTH = 16
#: bits per pixel sample that native PixelData may use
_BITS = (1, 8, 16, 32, 64)


class BadDataset(Exception):
    """A data set the node refuses; ``status`` is the C-STORE failure status, the message log-safe."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def _check_structure(ds: Dataset, depth: int = 0) -> None:
    """Refuse elements whose value is shorter than their declared length (pydicom reads those quietly),
    recursively through sequences."""
    if depth > _MAX_DEPTH:
        raise BadDataset(CANNOT_UNDERSTAND, "sequences nested too deeply")
    for raw in ds.elements():
        length = getattr(raw, "length", None)
        value = getattr(raw, "value", None)
        if (
            isinstance(length, int)
            and length != _UNDEFINED
            and isinstance(value, bytes)
            and len(value) != length
        ):
            raise BadDataset(
                CANNOT_UNDERSTAND, f"element ({raw.tag.group:04X},{raw.tag.element:04X}) truncated"
            )
        if getattr(raw, "VR", None) == "SQ" or (getattr(raw, "VR", None) is None and length == _UNDEFINED):
            elem = ds[raw.tag]
            if elem.VR == "SQ":
                for item in elem.value:
                    _check_structure(item, depth + 1)


def _uid(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    text = "" if value is None else str(value).strip()
    if not valid_uid(text):
        raise BadDataset(CANNOT_UNDERSTAND, f"no valid {keyword}")
    return text


def _check_pixels(ds: Dataset, compressed: bool) -> None:
    """Native pixel data at least as long as Rows x Columns x Samples x Bits x Frames says."""
    if compressed or "PixelData" not in ds:
        return
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        bits = int(ds.BitsAllocated)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        raise BadDataset(DOES_NOT_MATCH, "pixel data without a usable image size") from None
    if bits not in _BITS or min(rows, cols, samples, frames) < 1:
        raise BadDataset(DOES_NOT_MATCH, "pixel data with an impossible image size")
    expected = (rows * cols * samples * frames * bits + 7) // 8
    have = len(ds["PixelData"].value or b"")
    if have < expected:
        raise BadDataset(DOES_NOT_MATCH, f"pixel data is {have} bytes, its header needs {expected}")


@dataclass(frozen=True)
class Checked:
    """What the handler needs from a data set that passed the checks."""

    sop_class: str
    sop_uid: str
    study_uid: str


def check_dataset(ds: Dataset, sop_class: str, sop_uid: str, compressed: bool) -> Checked:
    """Check one received data set against its C-STORE request.

    Args:
        ds: the decoded data set.
        sop_class: the request's Affected SOP Class UID (its presentation context).
        sop_uid: the request's Affected SOP Instance UID.
        compressed: True when its transfer syntax is compressed (pixel length not checked).

    Raises:
        BadDataset: with the failure status and a log-safe reason.
    """
    _check_structure(ds)
    got = Checked(_uid(ds, "SOPClassUID"), _uid(ds, "SOPInstanceUID"), _uid(ds, "StudyInstanceUID"))
    if got.sop_class != sop_class:
        raise BadDataset(DOES_NOT_MATCH, "SOP Class UID differs from the request's")
    if got.sop_uid != sop_uid:
        raise BadDataset(DOES_NOT_MATCH, "SOP Instance UID differs from the request's")
    _check_pixels(ds, compressed)
    return got


def _status(code: int, comment: str = "") -> Any:
    """A C-STORE response status; with an ``ErrorComment`` (64 characters, log-safe) for failures."""
    if not comment:
        return code
    from pydicom.dataset import Dataset

    status = Dataset()
    status.Status = code
    status.ErrorComment = clip(comment, 64)
    return status


class StoreHandler:
    """``evt.EVT_C_STORE`` handler (pynetdicom calls it on each association's thread).

    Args:
        spool: where instances are written.
        journal: where they are recorded.
    """

    def __init__(self, spool: Spool, journal: Journal) -> None:
        self.spool = spool
        self.journal = journal

    def __call__(self, event: Any) -> Any:
        calling = str(getattr(event.assoc.requestor, "ae_title", "") or "").strip()
        try:
            request = event.request
            context = event.context
            sop_class = str(context.abstract_syntax)
            sop_uid = str(request.AffectedSOPInstanceUID or "").strip()
            try:
                ds = event.dataset
            except Exception as exc:  # pydicom's decoder: any error is the data set's fault
                raise BadDataset(CANNOT_UNDERSTAND, f"not decodable ({type(exc).__name__})") from None
            try:
                checked = check_dataset(ds, sop_class, sop_uid, bool(context.transfer_syntax.is_compressed))
            except BadDataset:
                raise
            except Exception as exc:
                raise BadDataset(CANNOT_UNDERSTAND, f"not decodable ({type(exc).__name__})") from None
        except BadDataset as exc:
            log.warning("refused an instance from %s: %s (status 0x%04X)", calling, exc, exc.status)
            return _status(exc.status, str(exc))
        if self.journal.known(checked.sop_uid):
            log.info("instance already acknowledged, not stored again (from %s)", calling)
            return SUCCESS
        try:
            path = self.spool.instance_path(checked.sop_uid)
            self.spool.write_atomic(path, event.encoded_dataset(include_meta=True))
            self.journal.record_instance(
                checked.sop_uid, checked.study_uid, checked.sop_class, str(path), calling
            )
        except Exception as exc:  # disk full, journal locked: the sender must try again later
            log.error("cannot spool an instance from %s: %s", calling, type(exc).__name__)
            return _status(OUT_OF_RESOURCES, f"cannot spool: {type(exc).__name__}")
        return SUCCESS
