"""Reading X-ray files into :class:`~cxr_viewer.core.image.XrayImage` (no Qt, no torch).

DICOM (via pydicom and its pylibjpeg / pyjpegls decoders: JPEG baseline/extended/lossless, JPEG-LS,
JPEG 2000, RLE, deflated, uncompressed):

1. The pixel data is decoded; of a multi-frame object only the first frame is read (noted on the image).
2. The modality LUT is applied (``RescaleSlope``/``RescaleIntercept`` or ``ModalityLUTSequence``,
   via :func:`pydicom.pixels.apply_modality_lut`).
3. MONOCHROME1 is inverted around the middle of its value range so that higher means brighter.
4. The VOI is *not* burnt into the pixels: ``WindowCenter``/``WindowWidth`` (first pair) become the
   image's default window (mapped through the inversion) and a ``VOILUTSequence`` is kept as a
   :class:`~cxr_viewer.core.image.VoiLut` table that the display can apply.
5. ``PixelSpacing`` (patient plane) and ``ImagerPixelSpacing`` (detector plane) are kept apart.
   A spacing of zero (seen in the wild) counts as absent.

A file without the 128-byte preamble (starting with ``DICM`` or with the file meta itself) is read, and
so is an ACR-NEMA style data set without file meta (as uncompressed, with a note).

Colour DICOM (RGB/YBR) is converted to grey (ITU-R BT.601 luma). PALETTE COLOR and other
photometric interpretations are refused with a clear error rather than guessed.

PNG (8/16-bit), JPEG, TIFF, BMP: via Pillow, EXIF orientation applied, grey kept, RGB converted to grey
(one channel when all three are equal, luma otherwise). The format is chosen by the file's content
(magic bytes), not its name, and Pillow is only ever asked to open that one format: never a plugin that
runs an external program (EPS/PostScript would start Ghostscript). PostScript, PDF and other content
is a `NotAnImageError`, whatever the file is called.

Limits (`cxr_viewer.core.limits`, checked before anything is decoded, so a hostile header cannot make
us allocate without bound): the file size; rows x columns, and rows x columns x samples x bytes per
sample, both from the header and, for compressed DICOM, from the first frame's code stream (JPEG /
JPEG-LS SOF, JPEG 2000 SIZ: size, component count, precision), since that is what the decoder
allocates; LUT descriptor lengths; a deflated data set is inflated with a bound; the number of DICOM
elements read and the length of the header elements the reader uses; multi-page TIFF pages are
counted up to a bound. Over a limit: :class:`ImageTooLargeError`. Only regular files are opened (a
FIFO or device would block or never end).

Whether the image's size is plausible for a radiograph (tiny or strip-like images) is not the reader's
call: see :func:`cxr_viewer.core.scope.not_a_radiograph`.

Errors: every failure is an :class:`ImageLoadError`, more precisely one of :class:`UnreadableFileError`,
:class:`NotAnImageError`, :class:`UnsupportedImageError`, :class:`CorruptImageError` and
:class:`ImageTooLargeError`. Messages are one short line and never contain header values (sizes
excepted; photometric interpretations only when they are standard terms), so they are safe to log.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cxr_viewer.core.codestream import codestream_header, tiff_page_count
from cxr_viewer.core.dicom_file import read_dicom_file
from cxr_viewer.core.errors import (
    CorruptImageError,
    ImageLoadError,
    ImageTooLargeError,
    NotAnImageError,
    UnreadableFileError,
    UnsupportedImageError,
)
from cxr_viewer.core.image import HeaderSummary, VoiLut, XrayImage
from cxr_viewer.core.limits import (
    MAX_FILE_BYTES,
    MAX_LUT_ENTRIES,
    MAX_PAGES_COUNTED,
    MAX_PIXELS,
    check_decoded_size,
    check_lut_entries,
    check_pixel_count,
)
from cxr_viewer.core.reasons import clip, short_reason

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from pydicom.dataset import Dataset

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_FILE_BYTES",
    "MAX_PIXELS",
    "CorruptImageError",
    "FoundFile",
    "ImageLoadError",
    "ImageTooLargeError",
    "NotAnImageError",
    "UnreadableFileError",
    "UnsupportedImageError",
    "iter_study_files",
    "load_image",
    "sniff_format",
]

IMAGE_SUFFIXES = frozenset({".dcm", ".dicom", ".dic", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})
_DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic"})
_SUFFIX_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
}
#: the formats Pillow is allowed to open (its format ids); everything else is refused before Pillow
_PILLOW_FORMATS = ("PNG", "JPEG", "TIFF", "BMP")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
#: Explicit VRs that can open a file meta element (group 0002) written without preamble
_META_VRS = frozenset({b"UL", b"OB", b"UI", b"AE", b"SH", b"SV", b"UV"})
#: content we recognise but do not read: (magic prefix, what to call it)
_FOREIGN_MAGIC = (
    (b"%!PS", "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", "PostScript/EPS (DOS EPS binary)"),
    (b"%PDF", "PDF"),
    (b"GIF8", "GIF"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000 file"),
    (b"\xff\x4f\xff\x51", "JPEG 2000 code stream"),
    (b"PK\x03\x04", "ZIP archive"),
    (b"\x1f\x8b", "gzip archive"),
)


@dataclass(frozen=True)
class FoundFile:
    """One file met while scanning: either a candidate image or a skipped file with its reason."""

    path: Path
    skip_reason: str | None = None

    @property
    def skipped(self) -> bool:
        """True when the file is not an image we can read."""
        return self.skip_reason is not None


def _content_format(head: bytes) -> str | None:
    """The format the first bytes of a file say (``"DICOM"``, ``"PNG"``, ...), or None."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "DICOM"
    if head.startswith(b"DICM"):  # DICM prefix and meta, but no 128-byte preamble
        return "DICOM"
    if head[:2] == b"\x02\x00" and (head[4:6] in _META_VRS or head[4:8] == b"\x04\x00\x00\x00"):
        return "DICOM"  # the file meta group (0002) without preamble or prefix
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head.startswith(b"BM"):
        return "BMP"
    return None


def _foreign_kind(head: bytes) -> str | None:
    """What the content is when it is a known format that we do not read (PostScript, PDF...)."""
    for magic, kind in _FOREIGN_MAGIC:
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return None


def sniff_format(path: Path) -> str | None:
    """Guess the format of a file from its first bytes, falling back to the file name.

    Args:
        path: the file.

    Returns:
        ``"DICOM"``, ``"PNG"``, ``"JPEG"``, ``"TIFF"``, ``"BMP"`` or None when it does not look like an
        image. A file named ``*.dcm`` without the ``DICM`` preamble still counts as DICOM (old
        ACR-NEMA style files); whether it decodes is found out later. So does a file named like an
        image whose content is something else: :func:`load_image` then says what it is.

    Raises:
        OSError: when the file cannot be read.
    """
    with open(path, "rb") as fh:
        head = fh.read(132)
    fmt = _content_format(head)
    if fmt is not None:
        return fmt
    suffix = path.suffix.lower()
    if suffix in _DICOM_SUFFIXES:
        return "DICOM"
    if suffix in IMAGE_SUFFIXES:
        # named like an image but the bytes say otherwise: let the reader report what is wrong
        return _SUFFIX_FORMATS.get(suffix, "BMP")
    return None


# ------------------------------------------------------------------------------------ folder scans
def iter_study_files(
    paths: Iterable[str | bytes | os.PathLike[str] | os.PathLike[bytes]],
) -> Iterator[FoundFile]:
    """Walk files and folders (recursively, sorted, hidden entries ignored) and classify each file.

    Args:
        paths: files and/or folders, e.g. what was dropped on the window; ``str`` (surrogate-escaped
            for names that are not valid UTF-8) or ``bytes``.

    Yields:
        One :class:`FoundFile` per file: ``skip_reason`` None for things that look like images,
        otherwise why the file is skipped ("not an image", "unreadable: ..."). Files are not decoded
        here; a file that looks like an image but is broken fails later in :func:`load_image`.
        A folder that cannot be listed (permission denied, a path too long for the system) is
        yielded as a skipped entry with its reason too, so that nothing vanishes from the counts.

    Symbolic links to folders are followed, but every folder is visited once (by device and inode), so
    link cycles end; a file reached twice is listed once. FIFOs, devices and sockets are skipped without
    being opened. Paths are yielded as str (surrogate-escaped where the name is not valid UTF-8).
    """
    seen: set[Path] = set()
    seen_dirs: set[tuple[int, int]] = set()
    for raw in paths:
        p = Path(os.fsdecode(raw))
        try:
            is_dir = p.is_dir()
            present = is_dir or p.exists() or p.is_symlink()
        except OSError as exc:  # e.g. a path over PATH_MAX
            yield FoundFile(p, f"unreadable: {_os_reason(exc)}")
            continue
        if is_dir:
            yield from _walk(p, seen, seen_dirs)
        elif present:
            yield from _classify(p, seen)
        else:
            yield FoundFile(p, "does not exist")


def _os_reason(exc: OSError) -> str:
    """A short reason for an OS error (its strerror, never the path)."""
    if exc.errno == errno.ENAMETOOLONG:
        return "path or name too long for the system"
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    return exc.strerror or type(exc).__name__


def _walk(top: Path, seen: set[Path], seen_dirs: set[tuple[int, int]]) -> Iterator[FoundFile]:
    def first_visit(folder: str) -> bool:
        st = os.stat(folder)  # OSError: reported by the caller
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            return False
        seen_dirs.add(key)
        return True

    def unlisted(exc: OSError, folder: str) -> FoundFile:
        return FoundFile(Path(folder), f"unreadable folder: {_os_reason(exc)}")

    try:
        if not first_visit(os.fspath(top)):
            return
    except OSError as exc:
        yield unlisted(exc, os.fspath(top))
        return
    errors: list[OSError] = []  # folders os.walk could not list, reported in walk order
    for root, dirs, files in os.walk(top, followlinks=True, onerror=errors.append):
        while errors:
            failed = errors.pop(0)
            yield unlisted(failed, os.fsdecode(failed.filename or root))
        kept = []
        for d in sorted(dirs):
            if d.startswith("."):
                continue
            folder = os.path.join(root, d)
            try:
                if first_visit(folder):
                    kept.append(d)
            except OSError as exc:
                yield unlisted(exc, folder)
        dirs[:] = kept
        for f in sorted(files):
            if f.startswith("."):
                continue
            yield from _classify(Path(root) / f, seen)
    for failed in errors:
        yield unlisted(failed, os.fsdecode(failed.filename or top))


def _classify(path: Path, seen: set[Path]) -> Iterator[FoundFile]:
    try:
        key = path.resolve()
    except RuntimeError:  # symlink loop (Python < 3.13)
        yield FoundFile(path, "unreadable: symbolic link loop")
        return
    except OSError as exc:
        yield FoundFile(path, f"unreadable: {_os_reason(exc)}")
        return
    if key in seen:
        return
    seen.add(key)
    if path.name.upper() == "DICOMDIR":
        yield FoundFile(path, "DICOMDIR index file, not an image")
        return
    try:
        _check_regular_file(path)
        fmt = sniff_format(path)
    except ImageLoadError as exc:
        yield FoundFile(path, f"unreadable: {exc}")
        return
    except OSError as exc:
        yield FoundFile(path, f"unreadable: {_os_reason(exc)}")
        return
    yield FoundFile(path, None if fmt is not None else "not an image (unrecognised file type)")


def _check_regular_file(path: Path) -> int:
    """Size of ``path`` in bytes; raises `UnreadableFileError` for anything but a regular file."""
    try:
        st = os.stat(path)
    except RuntimeError:
        raise UnreadableFileError("symbolic link loop") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnreadableFileError("symbolic link loop") from None
        raise UnreadableFileError(f"cannot open file: {_os_reason(exc)}") from exc
    if stat.S_ISDIR(st.st_mode):
        raise UnreadableFileError("is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise UnreadableFileError("not a regular file (FIFO, device or socket)")
    return int(st.st_size)


def quiet_decoder_output() -> None:
    """Keep the decoders' own messages off stdout/stderr; for applications (the viewer, cxr-triage).

    - pydicom's validation warnings and decoder-plugin log records may quote header values (patient
      data); unreadable files are reported by our typed errors instead.
    - Pillow's ``DecompressionBombWarning`` (89-179 million declared pixels) is redundant: `load_image`
      refuses anything above `MAX_PIXELS` from the header, before decoding.
    Call it after `logging.basicConfig`: the log filter goes on the root handlers present then.
    """
    warnings.filterwarnings("ignore", module=r"pydicom(\..*)?$")
    warnings.filterwarnings(
        "ignore", message=r"Image size \(\d+ pixels\) exceeds limit", module=r"PIL(\..*)?$"
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(lambda record: not record.name.startswith("pydicom"))


def load_image(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> XrayImage:
    """Read one file into an :class:`XrayImage` (see the module docstring for what is applied).

    Args:
        path: a DICOM, PNG, JPEG, TIFF or BMP file (``str``, surrogate-escaped names included, or
            ``bytes``).

    Returns:
        The image, float32 (H, W), display orientation.

    Raises:
        ImageLoadError: for anything that prevents showing the image; the message is a short reason
            that contains no patient data. The subclass says what kind of problem it is
            (:class:`UnreadableFileError`, :class:`NotAnImageError`, :class:`UnsupportedImageError`,
            :class:`CorruptImageError`, :class:`ImageTooLargeError`).
    """
    p = Path(os.fsdecode(path))
    size = _check_regular_file(p)
    if size == 0:
        raise NotAnImageError("empty file (0 bytes)")
    if size > MAX_FILE_BYTES:
        raise ImageTooLargeError(f"file too large ({size / 2**20:.0f} MiB; limit {MAX_FILE_BYTES >> 20} MiB)")
    try:
        with open(p, "rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise UnreadableFileError(f"cannot open file: {_os_reason(exc)}") from exc
    fmt = _content_format(head)
    if fmt is None:
        foreign = _foreign_kind(head)
        if foreign is not None:
            raise NotAnImageError(
                f"not an image we read: {foreign} content (we read DICOM, PNG, JPEG, TIFF, BMP)"
            )
        if p.suffix.lower() in _DICOM_SUFFIXES:
            fmt = "DICOM"  # perhaps ACR-NEMA: a bare data set without preamble or meta
        elif p.suffix.lower() in IMAGE_SUFFIXES:  # named like an image: a damaged one, most likely
            named = _SUFFIX_FORMATS.get(p.suffix.lower(), "BMP")
            raise CorruptImageError(
                f"not a readable {named} image: its content is none of DICOM, PNG, JPEG, TIFF, BMP"
            )
        else:
            raise NotAnImageError("not an image (unrecognised file type)")
    try:
        if fmt == "DICOM":
            return _load_dicom(p, head)
        return _load_pillow(p, fmt)
    except ImageLoadError:
        raise
    except MemoryError as exc:
        raise ImageTooLargeError("image too large for memory") from exc
    except RecursionError as exc:  # deeply nested sequences in a crafted header
        raise CorruptImageError(f"cannot decode {fmt}: structure nested too deeply") from exc
    except Exception as exc:  # decoders raise all kinds of things; any of them means "broken file"
        raise CorruptImageError(_reason(f"cannot decode {fmt}", exc)) from exc


def _reason(prefix: str, exc: BaseException) -> str:
    return short_reason(exc, prefix)


def _decoder_reason(prefix: str, exc: BaseException) -> str:
    """``prefix: what the decoder said``, one line: pydicom's "all plugins failed:" heading is replaced
    by the plugins' own messages (``"plugin: message; ..."``), so that the cause is not cut off."""
    try:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    except Exception:  # an exception whose __str__ fails
        lines = []
    if len(lines) > 1 and lines[0].endswith(":"):
        detail = "; ".join(lines[1:])
    else:
        detail = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    text = "".join(ch if ch.isprintable() else "?" for ch in f"{prefix}: {detail}")
    return clip(text)


# ----------------------------------------------------------------------------------------- DICOM
#: PhotometricInterpretation defined terms (PS3.3 C.7.6.3.1.2, retired ones included): the only values
#: a reason may name; anything else is "not a standard term"
_STANDARD_PHOTOMETRIC = frozenset(
    {
        "MONOCHROME1",
        "MONOCHROME2",
        "PALETTE COLOR",
        "RGB",
        "HSV",
        "ARGB",
        "CMYK",
        "YBR_FULL",
        "YBR_FULL_422",
        "YBR_PARTIAL_422",
        "YBR_PARTIAL_420",
        "YBR_ICT",
        "YBR_RCT",
        "XYZ",
    }
)
_STANDARD_VOI_FUNCTIONS = frozenset({"LINEAR", "LINEAR_EXACT", "SIGMOID"})
#: Longest value (bytes in the file) of the header elements the reader converts: pydicom turns
#: numbers and multi-valued text into Python objects tens of times larger than their bytes, so a
#: hostile length is refused before it is converted. Real values are some bytes to a few hundred.
_MAX_VALUE_BYTES = 64 << 10
#: The same for the LUT sequences (parsed only when read): a few tables of 65536 16-bit entries.
_MAX_LUT_SEQUENCE_BYTES = 1 << 20
_KEYWORDS_READ = (
    "PhotometricInterpretation",
    "SamplesPerPixel",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "PlanarConfiguration",
    "NumberOfFrames",
    "RescaleSlope",
    "RescaleIntercept",
    "RescaleType",
    "WindowCenter",
    "WindowWidth",
    "VOILUTFunction",
    "PixelSpacing",
    "ImagerPixelSpacing",
    "PatientOrientation",
    "ImageOrientationPatient",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "Modality",
    "ViewPosition",
    "BodyPartExamined",
    "StudyDescription",
    "SeriesDescription",
    "SpecificCharacterSet",
)


def _load_dicom(path: Path, head: bytes) -> XrayImage:
    from pydicom.pixels.processing import apply_modality_lut

    notes: list[str] = []
    ds = read_dicom_file(path, head, notes)
    if "PixelData" not in ds:
        if _pixel_data_cut_off(path):
            raise CorruptImageError("truncated file: the pixel data ends early")
        if any(k in ds for k in ("FloatPixelData", "DoubleFloatPixelData")):
            raise UnsupportedImageError("DICOM float pixel data is not supported")
        raise NotAnImageError("DICOM file has no pixel data (not an image object)")
    _check_value_lengths(ds)
    photometric = _text(ds, "PhotometricInterpretation").upper()
    if photometric in ("", "MONOCHROME1", "MONOCHROME2"):
        mono = True
    elif photometric in ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"):
        mono = False
    else:
        shown = photometric if photometric in _STANDARD_PHOTOMETRIC else "(not a standard term)"
        raise UnsupportedImageError(f"unsupported photometric interpretation {shown}")
    if not photometric:
        photometric = "MONOCHROME2"
        ds.PhotometricInterpretation = photometric  # the decoders need it (pydicom refuses otherwise)
    if "SamplesPerPixel" not in ds:
        ds.SamplesPerPixel = 1 if mono else 3
    _check_dicom_geometry(ds, mono)
    n_frames = _int(ds.get("NumberOfFrames", 1), 1)
    if n_frames < 1:
        raise CorruptImageError("invalid NumberOfFrames (below 1)")
    _check_first_frame_size(ds, n_frames)
    _check_modality_lut(ds)
    _check_native_length(ds, n_frames)
    arr = _decode_first_frame(ds, n_frames)
    if n_frames > 1:
        notes.append(f"multi-frame object: first frame of {n_frames} shown and analysed")
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):  # colour, already converted to RGB by pydicom
        arr = arr[..., :3].astype(np.float32) @ _LUMA
        notes.append(f"{photometric} colour image converted to grey")
        mono = False
    if arr.ndim != 2:
        raise UnsupportedImageError(f"unexpected pixel array shape {tuple(arr.shape)}")
    if arr.size == 0:
        raise CorruptImageError("empty pixel array")

    bits = _int(ds.get("BitsStored", ds.get("BitsAllocated", 8)), 8)
    if not 1 <= bits <= 32:
        raise CorruptImageError("invalid BitsStored (not between 1 and 32)")
    inverted = False
    pivot = 0.0
    window: tuple[float, float] | None = None
    voi: VoiLut | None = None
    if mono:
        values = np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
        signed = _int(ds.get("PixelRepresentation", 0), 0) == 1
        lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        bounds = np.asarray(apply_modality_lut(np.array([lo, hi], dtype=arr.dtype), ds), dtype=np.float64)
        pivot = float(bounds.min() + bounds.max())
        value_range = (float(bounds.min()), float(bounds.max()))
        window = _dicom_window(ds)
        voi = _dicom_voi_lut(ds)
        function = _text(ds, "VOILUTFunction").upper()
        if function not in ("", "LINEAR"):
            shown = function if function in _STANDARD_VOI_FUNCTIONS else "(not a standard term)"
            notes.append(f"VOI LUT function {shown} shown as LINEAR")
        if photometric == "MONOCHROME1":
            inverted = True
            values = pivot - values
            if window is not None:
                window = (pivot - window[0], window[1])
    else:
        values = np.asarray(arr, dtype=np.float32)
        value_range = (0.0, float(2**bits - 1))

    if not np.isfinite(values).all():
        raise CorruptImageError("pixel values are not finite after the modality LUT (bad RescaleSlope?)")
    pixel_spacing = _spacing(ds, "PixelSpacing", notes)
    imager_spacing = _spacing(ds, "ImagerPixelSpacing", notes)
    return XrayImage(
        pixels=np.ascontiguousarray(values, dtype=np.float32),
        source=path,
        format="DICOM",
        photometric=photometric,
        inverted=inverted,
        inversion_pivot=pivot,
        window=window,
        voi_lut=voi,
        pixel_spacing=pixel_spacing,
        imager_pixel_spacing=imager_spacing,
        patient_orientation=_patient_orientation(ds),
        bits_stored=bits,
        value_range=value_range,
        value_unit=_text(ds, "RescaleType"),
        notes=tuple(notes),
        header=_header(ds),
    )


def _raw_length(ds: Dataset, key: int | str) -> int:
    """Bytes of an element's value as stored in the file, without converting it (0 when absent)."""
    from pydicom.dataelem import RawDataElement

    elem = ds.get_item(key, keep_deferred=True)
    if isinstance(elem, RawDataElement):
        if elem.length != 0xFFFFFFFF:
            return int(elem.length)
        return len(elem.value) if isinstance(elem.value, (bytes, bytearray)) else 0
    return 0  # absent, or already converted (set by us or by pydicom): nothing left to prevent


@functools.cache
def _value_limits() -> tuple[tuple[int, str, int], ...]:
    """(tag, keyword, longest stored value) of the header elements the reader converts."""
    from pydicom.datadict import tag_for_keyword

    limits = [(k, _MAX_VALUE_BYTES) for k in _KEYWORDS_READ]
    limits += [("VOILUTSequence", _MAX_LUT_SEQUENCE_BYTES), ("ModalityLUTSequence", _MAX_LUT_SEQUENCE_BYTES)]
    return tuple((int(tag_for_keyword(k) or 0), k, limit) for k, limit in limits)


def _check_value_lengths(ds: Dataset) -> None:
    """Refuse header elements the reader converts whose stored value is implausibly long."""
    for tag, keyword, limit in _value_limits():
        length = _raw_length(ds, tag)
        if length > limit:
            raise ImageTooLargeError(f"DICOM {keyword} too large: {length} bytes (limit {limit} bytes)")


def _text(ds: Dataset, keyword: str) -> str:
    try:
        value = ds.get(keyword, "")
    except Exception:  # a damaged element that pydicom cannot convert
        return ""
    return str(value if value is not None else "").strip()


def _check_dicom_geometry(ds: Dataset, mono: bool) -> None:
    """Refuse absurd or inconsistent image tags before the decoder allocates anything."""
    rows, cols = _int(ds.get("Rows"), -1), _int(ds.get("Columns"), -1)
    if rows < 0 or cols < 0:
        raise CorruptImageError("DICOM image lacks valid Rows/Columns")
    check_pixel_count(rows, cols, "DICOM image")
    samples = _int(ds.get("SamplesPerPixel"), -1)
    if samples != (1 if mono else 3):
        raise UnsupportedImageError("SamplesPerPixel does not fit the photometric interpretation")
    allocated = _int(ds.get("BitsAllocated"), -1)
    if allocated not in (1, 8, 16, 32):
        raise UnsupportedImageError("unsupported BitsAllocated (not 1, 8, 16 or 32)")
    stored = _int(ds.get("BitsStored", allocated), allocated)
    if not 1 <= stored <= allocated:
        raise CorruptImageError("invalid BitsStored (not between 1 and BitsAllocated)")
    if _int(ds.get("PixelRepresentation", 0), 0) not in (0, 1):
        raise CorruptImageError("invalid PixelRepresentation")
    check_decoded_size(rows, cols, samples=samples, bits=allocated, what="DICOM image")


def _check_first_frame_size(ds: Dataset, n_frames: int) -> None:
    """For encapsulated (compressed) pixel data, check what the code stream itself declares."""
    try:
        encapsulated = bool(ds.file_meta.TransferSyntaxUID.is_encapsulated)
    except AttributeError:
        return
    if not encapsulated:
        return
    try:
        from pydicom.encaps import generate_frames

        frame = next(generate_frames(ds.PixelData, number_of_frames=n_frames))
    except Exception:
        return  # the decoder will report the broken encapsulation itself
    header = codestream_header(bytes(frame[:65536]))
    if header is None:
        return
    # openjpeg holds every JPEG 2000 sample as a 32-bit integer while it decodes
    bits = 32 if header.kind == "JPEG 2000" else header.bits
    check_decoded_size(
        header.rows, header.cols, samples=header.components, bits=bits, what=f"{header.kind} code stream"
    )


def _lut_entries(item: Dataset, what: str) -> int | None:
    """Entries declared by a LUT item (descriptor or data, whichever is larger), refused past
    `MAX_LUT_ENTRIES`; None when the descriptor is unusable."""
    if _raw_length(item, "LUTDescriptor") > 64:
        return None
    try:
        descriptor = [int(v) for v in item.LUTDescriptor]
    except Exception:
        return None
    if len(descriptor) != 3 or descriptor[0] < 0:
        return None
    entries = descriptor[0] or MAX_LUT_ENTRIES  # 0 means 65536
    # 16-bit entries: the stored data may not hold more than the descriptor allows either
    check_lut_entries(max(entries, _raw_length(item, "LUTData") // 2), what)
    return entries


def _check_modality_lut(ds: Dataset) -> None:
    seq = ds.get("ModalityLUTSequence")
    if seq:
        _lut_entries(seq[0], "modality LUT")


def _pixel_data_cut_off(path: Path) -> bool:
    """Whether the file holds a PixelData tag that pydicom dropped: an element cut off by the file's end.

    (pydicom warns "End of file reached before delimiter" and leaves the element out.) Only the first
    64 MiB are searched (the reader's budget refuses larger headers anyway).
    """
    tag = b"\xe0\x7f\x10\x00"  # (7FE0,0010) little endian
    tail = b""
    try:
        with path.open("rb") as fh:
            for _ in range(64):  # 1 MiB at a time: memory stays small whatever the file holds
                chunk = fh.read(1 << 20)
                if not chunk:
                    return False
                if tag in tail + chunk:
                    return True
                tail = chunk[-3:]
    except OSError:
        return False
    return False


def _check_native_length(ds: Dataset, n_frames: int) -> None:
    """A native (uncompressed) file whose pixel data is shorter than its header says was cut short."""
    try:
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            return
        got = len(ds.PixelData)
    except Exception:
        return
    rows, cols = _int(ds.get("Rows"), 0), _int(ds.get("Columns"), 0)
    samples = _int(ds.get("SamplesPerPixel", 1), 1)
    bits = _int(ds.get("BitsAllocated", 8), 8)
    frames = 1 if n_frames <= 1 else n_frames
    expected = (rows * cols * samples * frames * bits + 7) // 8
    if 0 < got < expected:
        raise CorruptImageError(
            f"truncated file: pixel data {got / 1e6:.1f} of {expected / 1e6:.1f} MB"
        )


def _patient_orientation(ds: Dataset) -> tuple[str, str] | None:
    """Row and column direction letters: PatientOrientation, else ImageOrientationPatient, else None."""
    from cxr_viewer.core.orientation import letters_from_cosines

    try:
        value = ds.get("PatientOrientation")
        if isinstance(value, str):
            parts = [v.strip().upper() for v in value.split("\\")]
        else:
            parts = [] if value is None else [str(v).strip().upper() for v in value]
        if len(parts) == 2 and all(p and set(p) <= set("LRAPHF") and len(p) <= 3 for p in parts):
            return parts[0], parts[1]
        cosines = ds.get("ImageOrientationPatient")
        if cosines is not None and len(cosines) == 6:
            v = [float(c) for c in cosines]
            row, col = letters_from_cosines((v[0], v[1], v[2])), letters_from_cosines((v[3], v[4], v[5]))
            if row and col:
                return row, col
    except Exception:  # a damaged element: no letters rather than a failed file
        return None
    return None


def _decode_first_frame(ds: Dataset, n_frames: int) -> np.ndarray:
    from pydicom.pixels.utils import pixel_array

    index = 0 if n_frames > 1 else None
    try:
        return np.asarray(pixel_array(ds, index=index))
    except Exception as exc:
        fixed = _decode_jpeg_with_fixed_sos(ds)
        if fixed is not None:
            return fixed
        if isinstance(exc, MemoryError):
            raise ImageTooLargeError("image too large for memory") from exc
        raise CorruptImageError(_decoder_reason(f"cannot decode {_syntax_name(ds)} pixel data", exc)) from exc


def _syntax_name(ds: Dataset) -> str:
    """The transfer syntax's standard name; never the UID as written (a header value)."""
    try:
        uid = ds.file_meta.TransferSyntaxUID
        name = str(uid.name)
    except Exception:
        return "DICOM"
    return name if name != str(uid) and name.isprintable() else "DICOM (unknown transfer syntax)"


def _decode_jpeg_with_fixed_sos(ds: Dataset) -> np.ndarray | None:
    """Decode a sequential-DCT JPEG frame whose scan header says ``Se = 0`` instead of 63.

    Some encoders (the NEMA WG04 ``RG2_JPLY`` test image among them) write ``Ss = Se = 0`` in the
    start-of-scan of a baseline/extended (sequential DCT) JPEG. For sequential DCT the standard fixes
    ``Ss = 0, Se = 63, Ah = Al = 0``, so no other reading is possible; tolerant decoders (GDCM, old IJG)
    ignore the field. libjpeg rejects it, so patch the one byte and try again. Returns None when the
    file is not such a case or still fails.
    """
    from pydicom.uid import JPEGBaseline8Bit, JPEGExtended12Bit

    try:
        syntax = ds.file_meta.TransferSyntaxUID
    except AttributeError:
        return None
    if syntax not in (JPEGBaseline8Bit, JPEGExtended12Bit):
        return None
    try:
        from libjpeg import decode  # type: ignore[attr-defined]  # pylibjpeg-libjpeg
        from pydicom.encaps import generate_frames

        frame = bytearray(next(generate_frames(ds.PixelData, number_of_frames=1)))
        sof = frame[:16].find(b"\xff\xc0") if frame[2:4] == b"\xff\xc0" else frame.find(b"\xff\xc1")
        if sof < 0:
            return None
        sos = frame.find(b"\xff\xda")
        if sos < 0:
            return None
        n_comp = frame[sos + 4]
        se_at = sos + 5 + 2 * n_comp + 1  # after Ns and the (Cs, Td/Ta) pairs comes Ss, then Se
        if frame[se_at] == 63:
            return None
        frame[se_at - 1] = 0
        frame[se_at] = 63
        frame[se_at + 1] = 0
        out = np.asarray(decode(bytes(frame)))
    except Exception:
        return None
    return out if out.ndim in (2, 3) else None


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _first_float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            value = value[0]
        out = float(value)
    except (TypeError, ValueError, IndexError):
        return None
    return out if np.isfinite(out) else None


def _dicom_window(ds: Dataset) -> tuple[float, float] | None:
    center = _first_float(ds.get("WindowCenter"))
    width = _first_float(ds.get("WindowWidth"))
    if center is None or width is None or width <= 0:
        return None
    return center, width


def _dicom_voi_lut(ds: Dataset) -> VoiLut | None:
    """The first VOI LUT of ``VOILUTSequence`` as a table over modality values (pydicom does the parsing).

    Raises:
        ImageTooLargeError: when the LUT declares more than `MAX_LUT_ENTRIES` entries.
    """
    seq = ds.get("VOILUTSequence")
    if not seq:
        return None
    item = seq[0]
    n_entries = _lut_entries(item, "VOI LUT")
    if n_entries is None:
        return None
    try:
        from pydicom.pixels.processing import apply_voi

        first = int(item.LUTDescriptor[1])
        # pydicom reads the second descriptor value as unsigned; a signed image means it was negative
        if _int(ds.get("PixelRepresentation", 0), 0) == 1 and first >= 2**15:
            first -= 2**16
        inputs = np.arange(first, first + n_entries, dtype=np.int64)
        table = np.asarray(apply_voi(inputs, ds, index=0), dtype=np.float32)
        explanation = (
            "" if _raw_length(item, "LUTExplanation") > _MAX_VALUE_BYTES else _text(item, "LUTExplanation")
        )
        return VoiLut(float(first), table, explanation)
    except Exception:
        return None  # an unusable VOI LUT is no reason not to show the image: fall back to windows


def _spacing(ds: Dataset, keyword: str, notes: list[str]) -> tuple[float, float] | None:
    value = ds.get(keyword)
    if value is None:
        return None
    try:
        row, col = (float(v) for v in value)
    except (TypeError, ValueError):
        notes.append(f"{keyword} unreadable: ignored")
        return None
    if not (np.isfinite(row) and np.isfinite(col) and row > 0 and col > 0):
        notes.append(f"{keyword} is zero or invalid: ignored")
        return None
    return row, col


def _header(ds: Dataset) -> HeaderSummary:
    def text(keyword: str) -> str:
        try:
            value = ds.get(keyword)
        except Exception:
            return ""
        return "" if value is None else str(value).strip()

    return HeaderSummary(
        patient_name=text("PatientName").replace("^", " ").strip(),
        patient_id=text("PatientID"),
        birth_date=text("PatientBirthDate"),
        sex=text("PatientSex"),
        study_date=text("StudyDate"),
        modality=text("Modality"),
        view=text("ViewPosition"),
        body_part=text("BodyPartExamined"),
        description=text("StudyDescription") or text("SeriesDescription"),
        study_uid=text("StudyInstanceUID"),
        sop_uid=text("SOPInstanceUID"),
        study_time=text("StudyTime"),
    )


# ---------------------------------------------------------------------------------------- Pillow
def _pillow_bits(mode: str) -> int:
    """Bits per sample of a Pillow mode."""
    if mode == "1":
        return 1
    if mode.startswith("I;16"):
        return 16
    if mode in ("I", "F") or mode.startswith(("I;32", "F;32")):
        return 32
    return 8


def _load_pillow(path: Path, fmt: str) -> XrayImage:
    from PIL import (  # the four plugins, registered before Image.open looks them up
        BmpImagePlugin,  # noqa: F401
        Image,
        ImageOps,
        JpegImagePlugin,  # noqa: F401
        PngImagePlugin,  # noqa: F401
        TiffImagePlugin,  # noqa: F401
        UnidentifiedImageError,
    )

    if fmt not in _PILLOW_FORMATS:  # never reached: the content chose one of them
        raise NotAnImageError("not an image (unrecognised file type)")
    notes: list[str] = []
    try:
        # formats=[fmt]: Pillow tries that one plugin only, never EPS (Ghostscript) or any other
        with Image.open(path, formats=[fmt]) as img:
            width, height = (int(v) for v in img.size)
            check_decoded_size(
                height, width, samples=len(img.getbands()), bits=_pillow_bits(img.mode), what=f"{fmt} image"
            )
            pages = _page_count(img, path, fmt)
            img.load()
            ImageOps.exif_transpose(img, in_place=True)  # in place: no copy when nothing is to turn
            pixels, bits = _pillow_to_grey(img, notes)
            mode = img.mode
    except Image.DecompressionBombError as exc:
        limit = f"limit {MAX_PIXELS / 1e6:.0f} million pixels"
        raise ImageTooLargeError(f"{fmt} image too large ({limit})") from exc
    except UnidentifiedImageError as exc:
        raise CorruptImageError(f"not a readable {fmt} image") from exc
    except OSError as exc:  # truncated or corrupt data
        raise CorruptImageError(_reason(f"cannot decode {fmt}", exc)) from exc
    if pages > MAX_PAGES_COUNTED:
        notes.append(f"multi-page file: first page of more than {MAX_PAGES_COUNTED} shown and analysed")
    elif pages > 1:
        notes.append(f"multi-page file: first page of {pages} shown and analysed")
    if pixels.size == 0:
        raise CorruptImageError("empty image")
    if pixels.ndim != 2:
        raise UnsupportedImageError(f"unexpected pixel array shape {tuple(pixels.shape)}")
    if not np.isfinite(pixels).all():
        raise CorruptImageError("pixel values are not finite")
    # 8-bit pictures are already display-ready: show them as they are; deeper ones get an auto window
    window = (127.5, 255.0) if bits == 8 else None
    value_range: tuple[float, float] | None = (0.0, float(2**bits - 1)) if bits in (8, 16) else None
    if value_range is None:  # 32-bit integer or float pictures do not say what is black and white
        lo, hi = float(pixels.min()), float(pixels.max())
        value_range = (lo, hi if hi > lo else lo + 1.0)
        notes.append("no stated value range: the model sees it scaled from its own minimum to maximum")
    return XrayImage(
        pixels=np.ascontiguousarray(pixels, dtype=np.float32),
        source=path,
        format=fmt,
        photometric=mode,
        window=window,
        bits_stored=bits,
        value_range=value_range,
        notes=tuple(notes),
    )


def _page_count(img: Any, path: Path, fmt: str) -> int:
    """Pages (frames) in the file: TIFF pages counted by `tiff_page_count` (linear, bounded), the
    others as Pillow declares them (PNG acTL, MPO index: read from the header, no seeking)."""
    if fmt == "TIFF":
        with open(path, "rb") as fh:
            pages = tiff_page_count(fh, MAX_PAGES_COUNTED)
        return pages or 1
    return int(getattr(img, "n_frames", 1) or 1)


def _pillow_to_grey(img: Any, notes: list[str]) -> tuple[np.ndarray, int]:
    mode = img.mode
    if mode in ("1", "L", "P", "LA", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
        if mode == "1":
            return np.asarray(img.convert("L"), dtype=np.float32), 8
        if mode in ("L", "LA"):
            return np.asarray(img.convert("L"), dtype=np.float32), 8
        rgb = np.asarray(img.convert("RGB"), dtype=np.float32)
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
            return rgb[..., 0].copy(), 8
        notes.append("colour image converted to grey")
        return rgb @ _LUMA, 8
    if mode.startswith("I;16"):
        return np.asarray(img, dtype=np.float32), 16
    if mode == "I":
        arr = np.asarray(img)
        bits = 16 if arr.size and int(arr.min()) >= 0 and int(arr.max()) < 2**16 else 32
        return arr.astype(np.float32), bits
    if mode == "F":
        return np.asarray(img, dtype=np.float32), 32
    raise UnsupportedImageError(f"unsupported image mode {mode[:16]!r}")
