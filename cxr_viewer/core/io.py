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

Error messages never contain header values, so they are safe to log.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cxr_viewer.core.image import HeaderSummary, VoiLut, XrayImage

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = [
    "IMAGE_SUFFIXES",
    "FoundFile",
    "ImageLoadError",
    "iter_study_files",
    "load_image",
    "sniff_format",
]

IMAGE_SUFFIXES = frozenset({".dcm", ".dicom", ".dic", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})
_DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic"})
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_MAX_REASON = 240


class ImageLoadError(Exception):
    """A file could not be turned into an image. ``str(err)`` is a short, log-safe reason."""


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
    """
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for f in sorted(files):
                    if f.startswith("."):
                        continue
                    yield from _classify(Path(root) / f, seen)
        elif p.exists():
            yield from _classify(p, seen)
        else:
            yield FoundFile(p, "does not exist")


def _classify(path: Path, seen: set[Path]) -> Iterator[FoundFile]:
    key = path.resolve()
    if key in seen:
        return
    seen.add(key)
    if path.name.upper() == "DICOMDIR":
        yield FoundFile(path, "DICOMDIR index file, not an image")
        return
    try:
        fmt = sniff_format(path)
    except OSError as exc:
        yield FoundFile(path, f"unreadable: {exc.strerror or type(exc).__name__}")
        return
    yield FoundFile(path, None if fmt is not None else "not an image (unrecognised file type)")


def load_image(path: str | os.PathLike[str]) -> XrayImage:
    """Read one file into an :class:`XrayImage` (see the module docstring for what is applied).

    Args:
        path: a DICOM, PNG, JPEG, TIFF or BMP file.

    Returns:
        The image, float32 (H, W), display orientation.

    Raises:
        ImageLoadError: for anything that prevents showing the image; the message is a short reason
            that contains no patient data.
    """
    p = Path(path)
    try:
        fmt = sniff_format(p)
    except OSError as exc:
        raise ImageLoadError(f"cannot open file: {exc.strerror or type(exc).__name__}") from exc
    if fmt is None:
        raise ImageLoadError("not an image (unrecognised file type)")
    try:
        if fmt == "DICOM":
            return _load_dicom(p)
        return _load_pillow(p, fmt)
    except ImageLoadError:
        raise
    except MemoryError as exc:
        raise ImageLoadError("image too large for memory") from exc
    except Exception as exc:  # decoders raise all kinds of things; any of them means "broken file"
        raise ImageLoadError(_reason(f"cannot decode {fmt}", exc)) from exc


def _reason(prefix: str, exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    text = f"{prefix}: {type(exc).__name__}" + (f": {first}" if first else "")
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


# ----------------------------------------------------------------------------------------- DICOM
def _load_dicom(path: Path) -> XrayImage:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels.processing import apply_modality_lut

    try:
        ds = pydicom.dcmread(path, force=True)
    except (InvalidDicomError, EOFError, OSError, ValueError) as exc:
        raise ImageLoadError(_reason("not a readable DICOM file", exc)) from exc
    if "PixelData" not in ds:
        raise ImageLoadError("DICOM file has no pixel data (not an image object)")
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if photometric in ("", "MONOCHROME1", "MONOCHROME2"):
        mono = True
    elif photometric in ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"):
        mono = False
    else:
        raise ImageLoadError(f"unsupported photometric interpretation {photometric!r}")
    if not photometric:
        photometric = "MONOCHROME2"
    if "SamplesPerPixel" not in ds:
        ds.SamplesPerPixel = 1 if mono else 3
    notes: list[str] = []
    n_frames = _int(ds.get("NumberOfFrames", 1), 1)
    arr = _decode_first_frame(ds, n_frames)
    if n_frames > 1:
        notes.append(f"multi-frame object: first frame of {n_frames} shown and analysed")
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):  # colour, already converted to RGB by pydicom
        arr = arr[..., :3].astype(np.float32) @ _LUMA
        notes.append(f"{photometric} colour image converted to grey")
        mono = False
    if arr.ndim != 2:
        raise ImageLoadError(f"unexpected pixel array shape {tuple(arr.shape)}")
    if arr.size == 0:
        raise ImageLoadError("empty pixel array")

    bits = _int(ds.get("BitsStored", ds.get("BitsAllocated", 8)), 8)
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
        value_unit=str(ds.get("RescaleType", "") or ""),
        notes=tuple(notes),
        header=_header(ds),
    )


def _decode_first_frame(ds: Dataset, n_frames: int) -> np.ndarray:
    from pydicom.pixels.utils import pixel_array

    index = 0 if n_frames > 1 else None
    try:
        return np.asarray(pixel_array(ds, index=index))
    except Exception as exc:
        fixed = _decode_jpeg_with_fixed_sos(ds)
        if fixed is not None:
            return fixed
        raise ImageLoadError(_reason(f"cannot decode {_syntax_name(ds)} pixel data", exc)) from exc


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
            n_frames = int(getattr(img, "n_frames", 1) or 1)
            img.seek(0)
            img.load()
            upright = ImageOps.exif_transpose(img) or img
            pixels, bits = _pillow_to_grey(upright, notes)
            mode = upright.mode
    except UnidentifiedImageError as exc:
        raise ImageLoadError(f"not a readable {fmt} image") from exc
    except OSError as exc:  # truncated or corrupt data
        raise ImageLoadError(_reason(f"cannot decode {fmt}", exc)) from exc
    if n_frames > 1:
        notes.append(f"multi-page file: first page of {n_frames} shown and analysed")
    if pixels.size == 0:
        raise ImageLoadError("empty image")
    # 8-bit pictures are already display-ready: show them as they are; deeper ones get an auto window
    window = (127.5, 255.0) if bits == 8 else None
    return XrayImage(
        pixels=np.ascontiguousarray(pixels, dtype=np.float32),
        source=path,
        format=fmt,
        photometric=mode,
        window=window,
        bits_stored=bits,
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
    raise ImageLoadError(f"unsupported image mode {mode!r}")
