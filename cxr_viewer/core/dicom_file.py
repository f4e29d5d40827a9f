"""Reading a DICOM file's data set within the readers' budgets (pydicom parses; nothing is decoded).

pydicom is given a file object that guards it (`_GuardedReader`): no read larger than what the file has
left (a hostile length field would otherwise allocate it), and at most `MAX_DICOM_ELEMENTS` element
headers (3 million empty elements would take gigabytes and many seconds). Deflated data sets are
inflated here, in steps and with a bound (`cxr_viewer.core.limits.inflate_bounded`), instead of by
pydicom in one unbounded ``zlib.decompress``. Files without their 128-byte preamble and ACR-NEMA data
sets without file meta are read too.
"""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING, Any

from cxr_viewer.core.errors import CorruptImageError, ImageLoadError, ImageTooLargeError
from cxr_viewer.core.limits import MAX_DICOM_ELEMENTS, inflate_bounded
from cxr_viewer.core.reasons import short_reason

if TYPE_CHECKING:
    from pathlib import Path

    from pydicom.dataset import Dataset

__all__ = ["read_dicom_file"]


def read_dicom_file(path: Path, head: bytes, notes: list[str]) -> Dataset:
    """Parse a DICOM file with pydicom, within the element budget; deflated data inflated with a bound.

    A file that starts with ``DICM`` (the preamble left out) is read as if the 128 bytes were there; a
    data set without a transfer syntax (ACR-NEMA, no file meta) gets the one pydicom found it in, and
    a note says so.

    Args:
        path: the file (a regular file, at most `MAX_FILE_BYTES`).
        head: its first 132 bytes (or fewer when it is shorter).
        notes: remarks for the image are appended here.

    Returns:
        The data set, pixel data not decoded.

    Raises:
        ImageTooLargeError: past `MAX_DICOM_ELEMENTS` element headers, or inflating past
            `MAX_INFLATED_BYTES`.
        CorruptImageError: when pydicom cannot parse the file.
    """
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    prefix = b"\x00" * 128 if head.startswith(b"DICM") else b""
    budget = _ElementBudget(MAX_DICOM_ELEMENTS)
    try:
        with open(path, "rb", buffering=0) as raw:
            size = os.fstat(raw.fileno()).st_size
            source: Any = _PrefixedRaw(prefix, raw, size) if prefix else raw
            with _GuardedReader(source, len(prefix) + size, budget) as fh:
                preamble = read_preamble(fh, force=True)
                meta = _read_file_meta_info(fh)
                if meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
                    inflated = inflate_bounded(fh.read(), what="deflated DICOM data set")
                    with _GuardedReader(_MemoryRaw(inflated), len(inflated), budget) as body:
                        dataset = read_dataset(body, is_implicit_VR=False, is_little_endian=True)
                    del inflated
                    ds: Dataset = FileDataset(
                        os.fspath(path), dataset, preamble, meta, is_implicit_VR=False, is_little_endian=True
                    )
                    ds.set_original_encoding(False, True, dataset._character_set)
                else:
                    fh.seek(0)
                    ds = pydicom.dcmread(fh, force=True)
    except (ImageLoadError, RecursionError, MemoryError):
        raise  # typed already, or given their own reasons by the caller
    except Exception as exc:  # InvalidDicomError, EOFError, OSError, ValueError, struct.error...
        budget.check()  # a read cut off by the budget can surface as any of these
        raise CorruptImageError(short_reason(exc, "not a readable DICOM file")) from exc
    budget.check()
    file_meta = getattr(ds, "file_meta", None)
    if file_meta is None or "TransferSyntaxUID" not in file_meta:
        from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

        implicit, little = ds.original_encoding
        if file_meta is None:
            ds.file_meta = file_meta = FileMetaDataset()
        if implicit is not False:
            file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        else:
            file_meta.TransferSyntaxUID = (
                ExplicitVRLittleEndian if little is not False else ExplicitVRBigEndian
            )
        if "PixelData" in ds:
            notes.append("no DICOM file meta (ACR-NEMA style): read as uncompressed")
    return ds


class _ElementBudget:
    """Counts DICOM element headers read (pydicom reads each header as one 8-byte read)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    @property
    def exceeded(self) -> bool:
        return self.count > self.limit

    def check(self) -> None:
        if self.exceeded:
            raise ImageTooLargeError(
                f"DICOM file has too many elements: more than {self.limit} (limit {self.limit})"
            )


#: reads up to this size are passed on as they are (the clamp is for hostile lengths)
_SMALL_READ = 1 << 16


class _GuardedReader(io.BufferedReader):
    """A file reader that never asks for more bytes than the file has left, within an element budget.

    pydicom reads an element with ``read(declared_length)``; a damaged or hostile length field
    (e.g. 0xFFFFFFF0) would otherwise make Python allocate a buffer of that size before reading.
    Every 8-byte read (an element or item header) is counted; past the budget the file reads as
    ended, so pydicom stops, and the caller raises `ImageTooLargeError` (pydicom turns some read
    errors into its own, so raising here could be lost).
    """

    def __init__(self, raw: Any, size: int, budget: _ElementBudget) -> None:
        super().__init__(raw)
        self._size = size
        self._budget = budget

    def read(self, n: int | None = -1) -> bytes:
        budget = self._budget
        if n == 8:
            budget.count += 1
        if budget.count > budget.limit:
            return b""
        if n is not None and n > _SMALL_READ:  # small reads cannot allocate much: no need to clamp
            n = min(n, max(0, self._size - self.tell()))
            if n == 0:
                return b""
        return super().read(n)


class _SeekableRaw(io.RawIOBase):
    """A readable, seekable raw file of ``_end`` bytes; subclasses provide ``readinto``."""

    def __init__(self, end: int) -> None:
        super().__init__()
        self._end = end
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._end}[whence]
        self._pos = max(0, base + offset)
        return self._pos


class _PrefixedRaw(_SeekableRaw):
    """A raw file that reads as ``prefix`` followed by the bytes of ``raw`` (a missing preamble)."""

    def __init__(self, prefix: bytes, raw: Any, size: int) -> None:
        super().__init__(len(prefix) + size)
        self._prefix = prefix
        self._raw = raw
        self.name = getattr(raw, "name", "")  # pydicom's FileDataset records the file name

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._pos < len(self._prefix):
            part = self._prefix[self._pos : self._pos + len(view)]
            view[: len(part)] = part
            self._pos += len(part)
            return len(part)
        self._raw.seek(self._pos - len(self._prefix))
        got = int(self._raw.readinto(view) or 0)
        self._pos += got
        return got


class _MemoryRaw(_SeekableRaw):
    """A raw file over a bytes-like object, without copying it (io.BytesIO copies a bytearray)."""

    def __init__(self, data: bytes | bytearray) -> None:
        self._data = memoryview(data)
        super().__init__(len(self._data))

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        part = self._data[self._pos : self._pos + len(view)]
        view[: len(part)] = part
        self._pos += len(part)
        return len(part)

    def close(self) -> None:
        self._data.release()
        super().close()
