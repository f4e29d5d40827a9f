"""Reading X-ray files into :class:`~cxr_viewer.core.image.XrayImage` (no Qt, no torch).

DICOM (via pydicom and its pylibjpeg / pyjpegls decoders: JPEG baseline/extended/lossless, JPEG-LS,
JPEG 2000, RLE, uncompressed):

1. The pixel data is decoded; of a multi-frame object only the first frame is read (noted on the image).
2. The modality LUT is applied (``RescaleSlope``/``RescaleIntercept`` or ``ModalityLUTSequence``,
   via :func:`pydicom.pixels.apply_modality_lut`).
3. MONOCHROME1 is inverted around the middle of its value range so that higher means brighter.
4. The VOI is *not* burnt into the pixels: ``WindowCenter``/``WindowWidth`` (first pair) become the
   image's default window (mapped through the inversion) and a ``VOILUTSequence`` is kept as a
   :class:`~cxr_viewer.core.image.VoiLut` table that the display can apply.
5. ``PixelSpacing`` (patient plane) and ``ImagerPixelSpacing`` (detector plane) are kept apart.
   A spacing of zero (seen in the wild) counts as absent.

Colour DICOM (RGB/YBR) is converted to grey (ITU-R BT.601 luma). PALETTE COLOR and other
photometric interpretations are refused with a clear error rather than guessed.

PNG (8/16-bit), JPEG, TIFF, BMP: via Pillow, EXIF orientation applied, grey kept, RGB converted to grey
(one channel when all three are equal, luma otherwise).

Limits (checked before anything is decoded, so a hostile header cannot make us allocate without
bound): files above :data:`MAX_FILE_BYTES` and images whose declared rows x columns exceed
:data:`MAX_PIXELS` are refused with :class:`ImageTooLargeError`. For compressed DICOM the size written
inside the first frame's code stream (JPEG/JPEG-LS SOF, JPEG 2000 SIZ) is checked as well, since that
is what the decoder allocates. Only regular files are opened (a FIFO or device would block or never end).

Errors: every failure is an :class:`ImageLoadError`, more precisely one of :class:`UnreadableFileError`,
:class:`NotAnImageError`, :class:`UnsupportedImageError`, :class:`CorruptImageError` and
:class:`ImageTooLargeError`. Messages are one short line and never contain header values, so they are
safe to log.
"""

from __future__ import annotations

import io
import logging
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cxr_viewer.core.image import HeaderSummary, VoiLut, XrayImage
from cxr_viewer.core.reasons import short_reason

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
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

#: Largest image accepted, in pixels (rows x columns of one frame): 40 million, e.g. 6300 x 6300. The
#: largest chest detectors are about 4300 x 4300 (18.5 MP). Bounds memory: about 10 bytes per pixel.
MAX_PIXELS = 40_000_000
#: Largest file accepted (1 GiB); a chest radiograph is at most some tens of MB.
MAX_FILE_BYTES = 1 << 30


class ImageLoadError(Exception):
    """A file could not be turned into an image. ``str(err)`` is a short, log-safe reason.

    The subclasses say why; catch this base class to handle them all.
    """


class UnreadableFileError(ImageLoadError):
    """The file cannot be opened or read (missing, permissions, a folder, a FIFO or device)."""


class NotAnImageError(ImageLoadError):
    """The file is not an image: unrecognised type, a DICOM object without pixel data, DICOMDIR."""


class UnsupportedImageError(ImageLoadError):
    """A real image in a form we do not show (e.g. PALETTE COLOR, unusual sample layout)."""


class CorruptImageError(ImageLoadError):
    """The file is damaged or inconsistent: truncated, undecodable, contradictory tags."""


class ImageTooLargeError(ImageLoadError):
    """The declared image or the file is above :data:`MAX_PIXELS` / :data:`MAX_FILE_BYTES`."""


@dataclass(frozen=True)
class FoundFile:
    """One file met while scanning: either a candidate image or a skipped file with its reason."""

    path: Path
    skip_reason: str | None = None

    @property
    def skipped(self) -> bool:
        """True when the file is not an image we can read."""
        return self.skip_reason is not None


def sniff_format(path: Path) -> str | None:
    """Guess the format of a file from its first bytes, falling back to the file name.

    Args:
        path: the file.

    Returns:
        ``"DICOM"``, ``"PNG"``, ``"JPEG"``, ``"TIFF"``, ``"BMP"`` or None when it does not look like an
        image. A file named ``*.dcm`` without the ``DICM`` preamble still counts as DICOM (old
        ACR-NEMA style files); whether it decodes is found out later.

    Raises:
        OSError: when the file cannot be read.
    """
    with open(path, "rb") as fh:
        head = fh.read(132)
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "DICOM"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head.startswith(b"BM"):
        return "BMP"
    suffix = path.suffix.lower()
    if suffix in _DICOM_SUFFIXES:
        return "DICOM"
    if suffix in IMAGE_SUFFIXES:
        # named like an image but the bytes say otherwise: let the decoder report what is wrong
        return {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}.get(
            suffix, "BMP"
        )
    return None


def iter_study_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[FoundFile]:
    """Walk files and folders (recursively, sorted, hidden entries ignored) and classify each file.

    Args:
        paths: files and/or folders, e.g. what was dropped on the window.

    Yields:
        One :class:`FoundFile` per file: ``skip_reason`` None for things that look like images,
        otherwise why the file is skipped ("not an image", "unreadable: ..."). Files are not decoded
        here; a file that looks like an image but is broken fails later in :func:`load_image`.

    Symbolic links to folders are followed, but every folder is visited once (by device and inode), so
    link cycles end; a file reached twice is listed once. FIFOs, devices and sockets are skipped without
    being opened.
    """
    seen: set[Path] = set()
    seen_dirs: set[tuple[int, int]] = set()
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            yield from _walk(p, seen, seen_dirs)
        elif p.exists() or p.is_symlink():
            yield from _classify(p, seen)
        else:
            yield FoundFile(p, "does not exist")


def _walk(top: Path, seen: set[Path], seen_dirs: set[tuple[int, int]]) -> Iterator[FoundFile]:
    def first_visit(folder: str) -> bool:
        try:
            st = os.stat(folder)
        except OSError:
            return False
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            return False
        seen_dirs.add(key)
        return True

    if not first_visit(os.fspath(top)):
        return
    for root, dirs, files in os.walk(top, followlinks=True, onerror=None):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and first_visit(os.path.join(root, d)))
        for f in sorted(files):
            if f.startswith("."):
                continue
            yield from _classify(Path(root) / f, seen)


def _classify(path: Path, seen: set[Path]) -> Iterator[FoundFile]:
    try:
        key = path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: symlink loop (Python < 3.13)
        yield FoundFile(path, "unreadable: symbolic link loop")
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
        yield FoundFile(path, f"unreadable: {exc.strerror or type(exc).__name__}")
        return
    yield FoundFile(path, None if fmt is not None else "not an image (unrecognised file type)")


def _check_regular_file(path: Path) -> int:
    """Size of ``path`` in bytes; raises `UnreadableFileError` for anything but a regular file."""
    try:
        st = os.stat(path)
    except RuntimeError:
        raise UnreadableFileError("symbolic link loop") from None
    except OSError as exc:
        if exc.errno == 40:  # ELOOP
            raise UnreadableFileError("symbolic link loop") from None
        raise UnreadableFileError(f"cannot open file: {exc.strerror or type(exc).__name__}") from exc
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


def load_image(path: str | os.PathLike[str]) -> XrayImage:
    """Read one file into an :class:`XrayImage` (see the module docstring for what is applied).

    Args:
        path: a DICOM, PNG, JPEG, TIFF or BMP file.

    Returns:
        The image, float32 (H, W), display orientation.

    Raises:
        ImageLoadError: for anything that prevents showing the image; the message is a short reason
            that contains no patient data. The subclass says what kind of problem it is
            (:class:`UnreadableFileError`, :class:`NotAnImageError`, :class:`UnsupportedImageError`,
            :class:`CorruptImageError`, :class:`ImageTooLargeError`).
    """
    p = Path(path)
    size = _check_regular_file(p)
    if size == 0:
        raise NotAnImageError("empty file (0 bytes)")
    if size > MAX_FILE_BYTES:
        raise ImageTooLargeError(f"file too large ({size / 2**20:.0f} MiB; limit {MAX_FILE_BYTES >> 20} MiB)")
    try:
        fmt = sniff_format(p)
    except OSError as exc:
        raise UnreadableFileError(f"cannot open file: {exc.strerror or type(exc).__name__}") from exc
    if fmt is None:
        raise NotAnImageError("not an image (unrecognised file type)")
    try:
        if fmt == "DICOM":
            return _load_dicom(p)
        return _load_pillow(p, fmt)
    except ImageLoadError:
        raise
    except MemoryError as exc:
        raise ImageTooLargeError("image too large for memory") from exc
    except RecursionError as exc:  # deeply nested sequences in a crafted header
        raise CorruptImageError(f"cannot decode {fmt}: structure nested too deeply") from exc
    except Exception as exc:  # decoders raise all kinds of things; any of them means "broken file"
        raise CorruptImageError(_reason(f"cannot decode {fmt}", exc)) from exc


def _check_pixel_count(rows: int, cols: int, what: str = "image") -> None:
    if rows <= 0 or cols <= 0:
        raise CorruptImageError(f"{what} has no rows or columns ({rows} x {cols})")
    if rows * cols > MAX_PIXELS:
        raise ImageTooLargeError(
            f"{what} too large: {cols} x {rows} pixels (limit {MAX_PIXELS / 1e6:.0f} million)"
        )


def _reason(prefix: str, exc: BaseException) -> str:
    return short_reason(exc, prefix)


# ----------------------------------------------------------------------------------------- DICOM
def _load_dicom(path: Path) -> XrayImage:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels.processing import apply_modality_lut

    try:
        with open(path, "rb", buffering=0) as raw, _ClampedReader(raw, os.fstat(raw.fileno()).st_size) as fh:
            ds = pydicom.dcmread(fh, force=True)
    except (InvalidDicomError, EOFError, OSError, ValueError) as exc:
        raise CorruptImageError(_reason("not a readable DICOM file", exc)) from exc
    if "PixelData" not in ds:
        if any(k in ds for k in ("FloatPixelData", "DoubleFloatPixelData")):
            raise UnsupportedImageError("DICOM float pixel data is not supported")
        raise NotAnImageError("DICOM file has no pixel data (not an image object)")
    photometric = _text(ds, "PhotometricInterpretation").upper()
    if photometric in ("", "MONOCHROME1", "MONOCHROME2"):
        mono = True
    elif photometric in ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"):
        mono = False
    else:
        shown = photometric if photometric.replace("_", "").replace(" ", "").isalnum() else "?"
        raise UnsupportedImageError(f"unsupported photometric interpretation {shown[:32]!r}")
    if not photometric:
        photometric = "MONOCHROME2"
        ds.PhotometricInterpretation = photometric  # the decoders need it (pydicom refuses otherwise)
    if "SamplesPerPixel" not in ds:
        ds.SamplesPerPixel = 1 if mono else 3
    _check_dicom_geometry(ds, mono)
    notes: list[str] = []
    n_frames = _int(ds.get("NumberOfFrames", 1), 1)
    if n_frames < 1:
        raise CorruptImageError(f"invalid NumberOfFrames {n_frames}")
    _check_first_frame_size(ds, n_frames)
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
        raise CorruptImageError(f"invalid BitsStored {bits}")
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
        voi = _dicom_voi_lut(ds, arr.dtype)
        if str(ds.get("VOILUTFunction", "LINEAR")).upper() not in ("", "LINEAR"):
            notes.append(f"VOI LUT function {ds.VOILUTFunction} shown as LINEAR")
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
        bits_stored=bits,
        value_range=value_range,
        value_unit=str(ds.get("RescaleType", "") or ""),
        notes=tuple(notes),
        header=_header(ds),
    )


class _ClampedReader(io.BufferedReader):
    """A file reader that never asks for more bytes than the file has left.

    pydicom reads an element with ``read(declared_length)``; a damaged or hostile length field
    (e.g. 0xFFFFFFF0) would otherwise make Python allocate a buffer of that size before reading.
    """

    def __init__(self, raw: Any, size: int) -> None:
        super().__init__(raw)
        self._size = size

    def read(self, n: int | None = -1) -> bytes:
        if n is not None and n > 0:
            n = min(n, max(0, self._size - self.tell()))
            if n == 0:
                return b""
        return super().read(n)


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
    _check_pixel_count(rows, cols, "DICOM image")
    samples = _int(ds.get("SamplesPerPixel"), -1)
    if samples != (1 if mono else 3):
        raise UnsupportedImageError(f"SamplesPerPixel {samples} does not fit the photometric interpretation")
    allocated = _int(ds.get("BitsAllocated"), -1)
    if allocated not in (1, 8, 16, 32):
        raise UnsupportedImageError(f"unsupported BitsAllocated {allocated}")
    stored = _int(ds.get("BitsStored", allocated), allocated)
    if not 1 <= stored <= allocated:
        raise CorruptImageError(f"invalid BitsStored {stored} for BitsAllocated {allocated}")
    if _int(ds.get("PixelRepresentation", 0), 0) not in (0, 1):
        raise CorruptImageError("invalid PixelRepresentation")


def _check_first_frame_size(ds: Dataset, n_frames: int) -> None:
    """For encapsulated (compressed) pixel data, check the size the code stream itself declares."""
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
    size = _codestream_size(bytes(frame[:65536]))
    if size is not None:
        _check_pixel_count(size[0], size[1], "compressed frame")


def _codestream_size(data: bytes) -> tuple[int, int] | None:
    """(rows, cols) declared by a JPEG / JPEG-LS (SOF) or JPEG 2000 (SIZ) code stream, if found."""
    if data[:4] == b"\xff\x4f\xff\x51" and len(data) >= 24:  # J2K: SOC then SIZ
        xsiz, ysiz, xo, yo = (int.from_bytes(data[i : i + 4], "big") for i in (8, 12, 16, 20))
        return max(0, ysiz - yo), max(0, xsiz - xo)
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        sof = 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)
        if (sof or marker == 0xF7) and i + 9 <= len(data):  # F7: JPEG-LS SOF55
            return int.from_bytes(data[i + 5 : i + 7], "big"), int.from_bytes(data[i + 7 : i + 9], "big")
        if marker == 0xDA or length < 2:
            return None
        i += 2 + length
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
        raise CorruptImageError(_reason(f"cannot decode {_syntax_name(ds)} pixel data", exc)) from exc


def _syntax_name(ds: Dataset) -> str:
    try:
        return str(ds.file_meta.TransferSyntaxUID.name)
    except AttributeError:
        return "DICOM"


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


def _dicom_voi_lut(ds: Dataset, stored_dtype: np.dtype) -> VoiLut | None:
    """The first VOI LUT of ``VOILUTSequence`` as a table over modality values (pydicom does the parsing)."""
    seq = ds.get("VOILUTSequence")
    if not seq:
        return None
    try:
        from pydicom.pixels.processing import apply_voi

        item = seq[0]
        n_entries, first, _bits = (int(v) for v in item.LUTDescriptor)
        n_entries = n_entries or 65536
        # pydicom reads the second descriptor value as unsigned; a signed image means it was negative
        if _int(ds.get("PixelRepresentation", 0), 0) == 1 and first >= 2**15:
            first -= 2**16
        inputs = np.arange(first, first + n_entries, dtype=np.int64)
        table = np.asarray(apply_voi(inputs, ds, index=0), dtype=np.float32)
        return VoiLut(float(first), table, str(item.get("LUTExplanation", "") or ""))
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
    )


# ---------------------------------------------------------------------------------------- Pillow
def _load_pillow(path: Path, fmt: str) -> XrayImage:
    from PIL import Image, ImageOps, UnidentifiedImageError

    notes: list[str] = []
    try:
        with Image.open(path) as img:
            _check_pixel_count(int(img.size[1]), int(img.size[0]), f"{fmt} image")
            n_frames = int(getattr(img, "n_frames", 1) or 1)
            img.seek(0)
            _check_pixel_count(int(img.size[1]), int(img.size[0]), f"{fmt} image")
            img.load()
            upright = ImageOps.exif_transpose(img) or img
            pixels, bits = _pillow_to_grey(upright, notes)
            mode = upright.mode
    except Image.DecompressionBombError as exc:
        limit = f"limit {MAX_PIXELS / 1e6:.0f} million pixels"
        raise ImageTooLargeError(f"{fmt} image too large ({limit})") from exc
    except UnidentifiedImageError as exc:
        raise CorruptImageError(f"not a readable {fmt} image") from exc
    except OSError as exc:  # truncated or corrupt data
        raise CorruptImageError(_reason(f"cannot decode {fmt}", exc)) from exc
    if n_frames > 1:
        notes.append(f"multi-page file: first page of {n_frames} shown and analysed")
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
