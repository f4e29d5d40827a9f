"""Every element of a DICOM header as rows for the tag browser (Qt-free; the rows hold patient data).

The file is parsed by the viewer's guarded reader (`cxr_viewer.core.dicom_file.read_dicom_file`: an
element budget, bounded inflate), so a hostile header cannot hang or exhaust memory here either. The
rows are for the screen only: their values include the patient's name, ID and birth date, so they are
never logged (their repr is redacted) and errors carry only the short, log-safe reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cxr_viewer.core.errors import NotAnImageError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["MAX_VALUE_CHARS", "TagRow", "read_tags"]

#: a value longer than this is cut (with its full length said); binary values show only their size
MAX_VALUE_CHARS = 200
_BINARY_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN"})


@dataclass(frozen=True)
class TagRow:
    """One element: ``(gggg,eeee)``, keyword, VR, the value as text, and its depth in sequences."""

    tag: str
    keyword: str
    vr: str
    value: str
    depth: int = 0

    def __repr__(self) -> str:  # the value may be patient data
        return f"TagRow({self.tag} {self.keyword} {self.vr}, <value redacted>)"


def _value_text(element: Any) -> str:
    vr = str(element.VR)
    value = element.value
    if vr in _BINARY_VRS or isinstance(value, bytes | bytearray):
        size = len(value) if value is not None and hasattr(value, "__len__") else 0
        return f"<{size:,} bytes>"
    text = "" if value is None else str(value)
    if len(text) > MAX_VALUE_CHARS:
        return f"{text[:MAX_VALUE_CHARS]}... ({len(text):,} characters)"
    return text


def _rows(dataset: Any, depth: int, out: list[TagRow]) -> None:
    for element in dataset:
        tag = f"({element.tag.group:04X},{element.tag.element:04X})"
        keyword = element.keyword or element.name or "(private)"
        if str(element.VR) == "SQ":
            items = element.value or []
            out.append(TagRow(tag, keyword, "SQ", f"{len(items)} item(s)", depth))
            for i, item in enumerate(items):
                out.append(TagRow("", f"item {i + 1}", "", "", depth + 1))
                _rows(item, depth + 2, out)
        else:
            out.append(TagRow(tag, keyword, str(element.VR), _value_text(element), depth))


def read_tags(path: Path) -> list[TagRow]:
    """The file meta and data set elements of a DICOM file, in file order, sequences nested.

    Raises:
        NotAnImageError: when the file is not DICOM (a PNG has no tags to show).
        ImageLoadError: its subclasses, when the file cannot be parsed (with a log-safe reason).
        OSError: when it cannot be read.
    """
    from cxr_viewer.core.dicom_file import read_dicom_file
    from cxr_viewer.core.io import sniff_format

    fmt = sniff_format(path)
    if fmt != "DICOM":
        raise NotAnImageError(f"{fmt or 'this file'} is not DICOM: it has no DICOM tags")
    with open(path, "rb") as fh:
        head = fh.read(132)
    ds = read_dicom_file(path, head, [])
    rows: list[TagRow] = []
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        _rows(meta, 0, rows)
    _rows(ds, 0, rows)
    return rows
