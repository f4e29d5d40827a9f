"""What image code streams and containers declare, read from their headers without decoding.

Used by the readers to check a file against `cxr_viewer.core.limits` before a decoder allocates:

- `codestream_header`: the size, component count and precision of a JPEG / JPEG-LS (SOF) or
  JPEG 2000 (SIZ, also inside a JP2 box) code stream, as found in encapsulated DICOM frames;
- `tiff_page_count`: the number of pages (IFDs) of a TIFF or BigTIFF, counted in linear time up to
  a bound (Pillow's own count re-checks every page against a list, quadratic in the page count).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

__all__ = ["CodestreamHeader", "codestream_header", "tiff_page_count"]

_J2K_SOC_SIZ = b"\xff\x4f\xff\x51"
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"


@dataclass(frozen=True)
class CodestreamHeader:
    """What a code stream declares about the image it decodes to.

    Attributes:
        kind: ``"JPEG"``, ``"JPEG-LS"`` or ``"JPEG 2000"``.
        rows: height in pixels.
        cols: width in pixels.
        components: samples per pixel (image components).
        bits: bits per sample (the largest over the components).
    """

    kind: str
    rows: int
    cols: int
    components: int
    bits: int


def codestream_header(data: bytes) -> CodestreamHeader | None:
    """The header of a JPEG, JPEG-LS or JPEG 2000 code stream (or JP2 file) at the start of ``data``.

    Args:
        data: the first bytes of the stream (64 KiB is plenty: the size marker comes first).

    Returns:
        The declared size, components and precision, or None when ``data`` is none of these or the
        header cannot be found.
    """
    if data.startswith(_JP2_SIGNATURE):
        at = data.find(_J2K_SOC_SIZ)
        return _j2k_header(data[at:]) if at >= 0 else None
    if data.startswith(_J2K_SOC_SIZ):
        return _j2k_header(data)
    if data.startswith(b"\xff\xd8"):
        return _jpeg_header(data)
    return None


def _j2k_header(data: bytes) -> CodestreamHeader | None:
    # SOC, SIZ marker, Lsiz, Rsiz, Xsiz, Ysiz, XOsiz, YOsiz, XTsiz, YTsiz, XTOsiz, YTOsiz, Csiz, then
    # (Ssiz, XRsiz, YRsiz) for each component; Ssiz & 0x7F is the precision minus one
    if len(data) < 42:
        return None
    xsiz, ysiz, xo, yo = struct.unpack_from(">4I", data, 8)
    (components,) = struct.unpack_from(">H", data, 40)
    present = data[42 : 42 + 3 * components : 3]
    bits = max((s & 0x7F) + 1 for s in present) if present else 8
    return CodestreamHeader("JPEG 2000", max(0, ysiz - yo), max(0, xsiz - xo), components, bits)


def _jpeg_header(data: bytes) -> CodestreamHeader | None:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # SOI, TEM, RSTn: no length
            i += 2
            continue
        (length,) = struct.unpack_from(">H", data, i + 2)
        sof = 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)
        if (sof or marker == 0xF7) and i + 10 <= len(data):  # F7: JPEG-LS SOF55
            # Lf, P (precision), Y (lines), X (samples per line), Nf (components)
            bits, rows, cols, components = struct.unpack_from(">BHHB", data, i + 4)
            return CodestreamHeader("JPEG-LS" if marker == 0xF7 else "JPEG", rows, cols, components, bits)
        if marker == 0xDA or length < 2:  # start of scan before any frame header: give up
            return None
        i += 2 + length
    return None


def tiff_page_count(fh: BinaryIO, limit: int) -> int | None:
    """Count the pages (IFDs) of a TIFF or BigTIFF file, stopping after ``limit`` + 1.

    Only the IFD chain is followed (entry count and next offset of each IFD), each offset once, so a
    chain that loops ends too.

    Args:
        fh: the file, opened in binary mode (any position; it is moved).
        limit: the most pages to count.

    Returns:
        The number of pages (at most ``limit`` + 1, meaning "more than ``limit``"), or None when the
        file is not a TIFF.
    """
    fh.seek(0)
    head = fh.read(16)
    order = {b"II": "<", b"MM": ">"}.get(head[:2])
    if order is None or len(head) < 8:
        return None
    (version,) = struct.unpack_from(order + "H", head, 2)
    if version == 42:
        count_fmt, entry_size, offset_fmt = "H", 12, "I"
        (offset,) = struct.unpack_from(order + "I", head, 4)
    elif version == 43 and len(head) >= 16:
        count_fmt, entry_size, offset_fmt = "Q", 20, "Q"
        (offset,) = struct.unpack_from(order + "Q", head, 8)
    else:
        return None
    count_size = struct.calcsize(count_fmt)
    offset_size = struct.calcsize(offset_fmt)
    seen: set[int] = set()
    pages = 0
    while offset and offset not in seen and pages <= limit:
        seen.add(offset)
        try:
            fh.seek(offset)
            raw = fh.read(count_size)
            if len(raw) < count_size:
                break
            pages += 1
            (entries,) = struct.unpack(order + count_fmt, raw)
            fh.seek(offset + count_size + entries * entry_size)
            raw = fh.read(offset_size)
        except (OSError, OverflowError, ValueError):  # an offset beyond what the file system can seek
            break
        if len(raw) < offset_size:
            break
        (offset,) = struct.unpack(order + offset_fmt, raw)
    return pages
