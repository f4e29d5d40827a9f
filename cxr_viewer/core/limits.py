"""Every bound the image readers put on a file, in one place, with the checks that apply them.

A hostile or damaged header must not make the readers allocate without bound or run for long, so what
a decoder would allocate is computed from what the file *declares* and checked here *before* anything
is decoded:

- the file: at most `MAX_FILE_BYTES` on disk;
- the decoded image: at most `MAX_PIXELS` pixels per frame, and at most `MAX_DECODED_BYTES` for
  rows x columns x samples per pixel x bytes per sample x frames decoded (the readers decode one
  frame). For compressed DICOM the same budget applies to what the code stream itself declares
  (JPEG / JPEG-LS SOF, JPEG 2000 SIZ: its component count and precision as well as its size);
- lookup tables (DICOM VOI LUT / modality LUT): at most `MAX_LUT_ENTRIES` entries;
- deflated DICOM: inflated in steps and refused beyond `MAX_INFLATED_BYTES`;
- DICOM element count: at most `MAX_DICOM_ELEMENTS` element headers are read;
- multi-page TIFF: pages are counted up to `MAX_PAGES_COUNTED`.

Over a limit, the check raises `ImageTooLargeError` with a one-line reason that gives the limit and the
declared size (numbers only, never header text).
"""

from __future__ import annotations

import zlib

from cxr_viewer.core.errors import CorruptImageError, ImageTooLargeError

__all__ = [
    "MAX_DECODED_BYTES",
    "MAX_DICOM_ELEMENTS",
    "MAX_FILE_BYTES",
    "MAX_INFLATED_BYTES",
    "MAX_LUT_ENTRIES",
    "MAX_PAGES_COUNTED",
    "MAX_PIXELS",
    "bytes_per_sample",
    "check_decoded_size",
    "check_lut_entries",
    "check_pixel_count",
    "inflate_bounded",
]

#: Largest file accepted (1 GiB); a chest radiograph is at most some tens of MB.
MAX_FILE_BYTES = 1 << 30
#: Largest image accepted, in pixels (rows x columns of one frame): 40 million, e.g. 6300 x 6300. The
#: largest chest detectors are about 4300 x 4300 (18.5 MP).
MAX_PIXELS = 40_000_000
#: Largest decoded frame, in bytes (rows x columns x samples x bytes per sample): 256 MiB, which holds
#: `MAX_PIXELS` pixels of three 16-bit samples (240 MB). The readers' copies (float32 grey, the
#: modality LUT in float64) come to a few times the decoded size of a grey image.
MAX_DECODED_BYTES = 256 << 20
#: Largest deflated DICOM data set after inflating: 64 MiB (a 4300 x 4300 16-bit radiograph is 37 MB).
#: Lower than `MAX_DECODED_BYTES` because the inflated copy is held while the data set is parsed and
#: deflate reaches ratios of 1000:1 (a 4 MB file would otherwise fill the whole budget).
MAX_INFLATED_BYTES = 64 << 20
#: Most entries a DICOM LUT may have: its descriptor is 16-bit (0 means 65536).
MAX_LUT_ENTRIES = 1 << 16
#: Most DICOM element headers read from one file (a real radiograph has a few hundred elements; a
#: value of exactly eight bytes is counted as one more header, so the margin is wide).
MAX_DICOM_ELEMENTS = 100_000
#: Pages of a multi-page TIFF that are counted (for the "first page of N" note); beyond, "more than".
MAX_PAGES_COUNTED = 10_000


def bytes_per_sample(bits: int) -> int:
    """Bytes a decoder stores one sample of ``bits`` bits in: 1, 2, 4 or 8 (at least 1)."""
    for size in (1, 2, 4):
        if bits <= 8 * size:
            return size
    return 8


def check_pixel_count(rows: int, cols: int, what: str = "image") -> None:
    """Refuse an image without pixels or with more than `MAX_PIXELS` pixels per frame.

    Raises:
        CorruptImageError: when ``rows`` or ``cols`` is not positive.
        ImageTooLargeError: when ``rows * cols`` is above `MAX_PIXELS`.
    """
    if rows <= 0 or cols <= 0:
        raise CorruptImageError(f"{what} has no rows or columns ({rows} x {cols})")
    if rows * cols > MAX_PIXELS:
        raise ImageTooLargeError(
            f"{what} too large: {cols} x {rows} pixels (limit {MAX_PIXELS / 1e6:.0f} million)"
        )


def check_decoded_size(
    rows: int, cols: int, *, samples: int = 1, bits: int = 8, frames: int = 1, what: str = "image"
) -> None:
    """The one decoded-size budget: pixels per frame, then the bytes of all frames decoded.

    Args:
        rows: declared rows (height).
        cols: declared columns (width).
        samples: samples (components, channels) per pixel.
        bits: bits per sample as declared; stored in `bytes_per_sample` bytes.
        frames: frames that will be decoded (the readers decode the first frame only: 1).
        what: what is checked, for the message ("DICOM image", "compressed frame", ...).

    Raises:
        CorruptImageError: when a size is not positive.
        ImageTooLargeError: above `MAX_PIXELS` pixels or `MAX_DECODED_BYTES` bytes; the reason
            gives the declared sizes and the limit.
    """
    check_pixel_count(rows, cols, what)
    if samples <= 0 or bits <= 0 or frames <= 0:
        raise CorruptImageError(f"{what} declares no samples, bits or frames")
    size = bytes_per_sample(bits)
    total = rows * cols * samples * size * frames
    if total > MAX_DECODED_BYTES:
        shape = f"{cols} x {rows} pixels x {samples} samples x {size} byte{'s' if size > 1 else ''}"
        if frames > 1:
            shape += f" x {frames} frames"
        raise ImageTooLargeError(
            f"{what} too large to decode: {shape} = {total / 2**20:.0f} MiB "
            f"(limit {MAX_DECODED_BYTES >> 20} MiB)"
        )


def check_lut_entries(entries: int, what: str = "LUT") -> None:
    """Refuse a lookup table declaring more than `MAX_LUT_ENTRIES` entries.

    Raises:
        ImageTooLargeError: above the limit; the reason gives the declared count and the limit.
    """
    if entries > MAX_LUT_ENTRIES:
        raise ImageTooLargeError(f"{what} too large: {entries} entries declared (limit {MAX_LUT_ENTRIES})")


#: output of one inflate step (bytes)
_INFLATE_STEP = 1 << 20


def inflate_bounded(data: bytes, limit: int = MAX_INFLATED_BYTES, what: str = "deflated data") -> bytearray:
    """Inflate raw deflate ``data`` (no zlib header, as in DICOM's Deflated Explicit VR Little Endian)
    in steps, never holding more than ``limit`` + 1 bytes of output.

    Returns:
        The inflated bytes (a bytearray: returned without a copy).

    Raises:
        ImageTooLargeError: when the output would exceed ``limit`` bytes.
        CorruptImageError: when ``data`` is not a valid deflate stream.
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray()
    source = memoryview(data)
    fed = 0
    pending: bytes | memoryview = b""
    try:
        while not inflater.eof:
            # small steps in and out: no copy of the whole input per step, and the output grows in
            # place instead of arriving as one more copy of itself; at most one byte more than
            # allowed, enough to know that the limit is passed
            if not pending and fed < len(source):
                pending = source[fed : fed + _INFLATE_STEP]
                fed += len(pending)
            chunk = inflater.decompress(pending, min(_INFLATE_STEP, limit + 1 - len(out)))
            out += chunk
            if len(out) > limit:
                raise ImageTooLargeError(
                    f"{what} too large: inflates to more than {limit >> 20} MiB "
                    f"from {len(data) / 2**20:.1f} MiB (limit {limit >> 20} MiB)"
                )
            pending = inflater.unconsumed_tail
            if not chunk and not pending and fed >= len(source):  # input used up before the end
                break
    except zlib.error as exc:
        raise CorruptImageError(f"{what} cannot be inflated (damaged deflate stream)") from exc
    return out
