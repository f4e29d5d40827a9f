"""Issue 18, the readers' part: crafted hostile files give a typed error (or an image) quickly.

Every case is a real file built in ``tmp_path`` (pydicom, Pillow or raw bytes):

1. PostScript/EPS named ``.png``/``.jpg``/``.tif``: never handed to Ghostscript (a fake ``gs`` proves it).
2. One decoded-size budget: code streams declaring 255 or 64 components, samples x bytes, LUT
   descriptors of 10^9 entries, a deflated data set that inflates past the limit, 150,000 empty
   elements, an oversized sequence. These run in a child process with an address-space limit, so that
   a regression fails its case instead of taking the machine's memory; the outcome is asserted (the
   error class, a reason that gives the limit), not the RSS (that is the benchmark's job). Images too
   small or too elongated for a radiograph: `not_a_radiograph`.
7. Folder scans: an unreadable sub-folder, a path over PATH_MAX and non-UTF-8 names get a row.
9. A 100,000-page TIFF is counted in linear time; reasons do not echo header values; a DICOM without
   its 128-byte preamble and an ACR-NEMA file are read; codec failures keep their reason.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers.dicom import write_dicom
from PIL import Image

from cxr_viewer.core.io import (
    CorruptImageError,
    ImageLoadError,
    ImageTooLargeError,
    NotAnImageError,
    UnsupportedImageError,
    iter_study_files,
    load_image,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

#: address-space limit of the child process that decodes the memory-bomb cases
CHILD_MEMORY_LIMIT = 3 << 30


def _ramp(h: int = 64, w: int = 64) -> np.ndarray:
    return (np.arange(h * w).reshape(h, w) % 4096).astype(np.uint16)


def _dicom(path: Path, **kwargs: object) -> Path:
    return write_dicom(path, _ramp(), **kwargs)  # type: ignore[arg-type]


# ====================================================================================== item 1
_EPS = (
    b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 256 256\n%%EndComments\n"
    b"newpath 0 0 moveto 256 256 lineto stroke showpage\n%%EOF\n"
)


def _dos_eps(postscript: bytes) -> bytes:
    """A DOS EPS binary file: the C5D0D3C6 header, then the PostScript section."""
    return (
        struct.pack("<4sIIIIIIH", b"\xc5\xd0\xd3\xc6", 30, len(postscript), 0, 0, 0, 0, 0xFFFF) + postscript
    )


@pytest.fixture
def fake_ghostscript(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point Pillow's EPS plugin at a ``gs`` that only leaves a marker file; returns the marker."""
    from PIL import EpsImagePlugin

    marker = tmp_path / "gs-was-run"
    gs = tmp_path / "bin" / "gs"
    gs.parent.mkdir()
    gs.write_text(f"#!/bin/sh\necho ran > '{marker}'\nexit 1\n")
    gs.chmod(0o755)
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", str(gs))
    monkeypatch.setenv("PATH", f"{gs.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    return marker


@pytest.mark.parametrize("name", ["film.png", "film.jpg", "film.tif", "film.bmp", "film.jpeg"])
@pytest.mark.parametrize("kind", ["eps", "dos-eps"])
def test_postscript_named_as_an_image_never_reaches_ghostscript(
    tmp_path: Path, fake_ghostscript: Path, name: str, kind: str
) -> None:
    path = tmp_path / name
    path.write_bytes(_EPS if kind == "eps" else _dos_eps(_EPS))
    start = time.monotonic()
    with pytest.raises((NotAnImageError, UnsupportedImageError), match="PostScript") as info:
        load_image(path)
    assert time.monotonic() - start < 5
    assert not fake_ghostscript.exists(), "Ghostscript was started"
    assert "\n" not in str(info.value)
    # a folder scan lists it (its error row comes from load_image), still without running anything
    assert [f.path for f in iter_study_files([tmp_path]) if not f.skipped] == [path]
    assert not fake_ghostscript.exists()


def test_the_content_decides_the_format_not_the_name(tmp_path: Path) -> None:
    """A PNG named .jpg is read as PNG; a GIF named .png (a format we do not read) is refused."""
    Image.fromarray(np.full((16, 20), 7, np.uint8)).save(tmp_path / "png.jpg", "PNG")
    assert load_image(tmp_path / "png.jpg").format == "PNG"
    Image.fromarray(np.full((16, 20), 7, np.uint8)).save(tmp_path / "gif.png", "GIF")
    with pytest.raises(NotAnImageError):
        load_image(tmp_path / "gif.png")


# ====================================================================================== item 2
def _replace_segment(data: bytes, marker: bytes, new_segment: bytes) -> bytes:
    """Replace the first marker segment ``marker`` (with its 16-bit length) by ``new_segment``."""
    i = data.find(marker)
    assert i >= 0, marker
    (length,) = struct.unpack_from(">H", data, i + 2)
    return data[:i] + new_segment + data[i + 2 + length :]


def _jpegls_sof(rows: int, cols: int, components: int) -> bytes:
    specs = b"".join(bytes([k + 1, 0x11, 0]) for k in range(components))
    return b"\xff\xf7" + struct.pack(">HBHHB", 8 + 3 * components, 16, rows, cols, components) + specs


def _jpeg_sof(rows: int, cols: int, components: int) -> bytes:
    specs = b"".join(bytes([k + 1, 0x11, 0]) for k in range(components))
    return b"\xff\xc0" + struct.pack(">HBHHB", 8 + 3 * components, 8, rows, cols, components) + specs


def _j2k_siz(rows: int, cols: int, components: int) -> bytes:
    comps = b"".join(bytes([15, 1, 1]) for _ in range(components))  # 16-bit, no subsampling
    body = struct.pack(">H8IH", 0, cols, rows, 0, 0, cols, rows, 0, 0, components) + comps
    return b"\xff\x51" + struct.pack(">H", 2 + len(body)) + body


def _with_codestream_header(path: Path, src: Path, marker: bytes, segment: bytes) -> Path:
    """``src`` with the marker segment ``marker`` of its (one) frame replaced by ``segment``."""
    import pydicom
    from pydicom.encaps import encapsulate, generate_frames

    ds = pydicom.dcmread(src)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([_replace_segment(frame, marker, segment)])
    ds.save_as(path)
    return path


def _with_lut_descriptor(path: Path, sequence: str, descriptor: list[int]) -> Path:
    """A DICOM whose VOI or modality LUT descriptor says ``descriptor`` (written as UL: 32-bit)."""
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    _dicom(path, window=None, voi_lut=(0, np.arange(4096, dtype=np.uint16)))
    ds = pydicom.dcmread(path)
    if sequence == "ModalityLUTSequence":
        item = Dataset()
        item.add_new(0x00283006, "US", list(range(4096)))  # LUTData
        item.ModalityLUTType = "US"
        ds.ModalityLUTSequence = Sequence([item])
        del ds.VOILUTSequence
    item = ds[sequence][0]
    if "LUTDescriptor" in item:
        del item.LUTDescriptor
    item.add_new(0x00283002, "UL", descriptor)
    ds.save_as(path)
    return path


def _deflated(path: Path, inflated_mib: int) -> Path:
    """A Deflated Explicit VR Little Endian DICOM whose data set inflates to some ``inflated_mib`` MiB.

    The data set is a valid image followed by one private OB element of zeros; its deflate stream is
    built from independent byte-aligned (full-flush) pieces, so writing it takes no time.
    """

    def piece(data: bytes) -> bytes:
        c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        return c.compress(data) + c.flush(zlib.Z_FULL_FLUSH)

    raw = _dicom(path).read_bytes()
    meta_end = 132 + 12 + struct.unpack_from("<I", raw, 132 + 8)[0]  # after the meta group length
    dataset = raw[meta_end:]
    big = inflated_mib << 20
    zeros = piece(b"\x00" * (1 << 20))
    stream = (
        piece(dataset) + piece(struct.pack("<HH2sHI", 0x7FE1, 0x1000, b"OB", 0, big)) + zeros * inflated_mib
    )
    stream += zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS).flush()  # an empty final block
    uid = b"1.2.840.10008.1.2.1.99"  # Deflated Explicit VR Little Endian (22 bytes, even)
    old = b"1.2.840.10008.1.2.1\x00"
    meta = raw[132:meta_end].replace(struct.pack("<HH2sH", 2, 0x10, b"UI", len(old)) + old, b"")
    meta += struct.pack("<HH2sH", 2, 0x10, b"UI", len(uid)) + uid
    meta = struct.pack("<HH2sHI", 2, 0, b"UL", 4, len(meta) - 12) + meta[12:]
    path.write_bytes(raw[:132] + meta + stream)
    return path


def _many_elements(path: Path, count: int) -> Path:
    """A valid image with ``count`` extra empty private elements (8 bytes each) before its pixels."""
    raw = _dicom(path).read_bytes()
    i = raw.rfind(b"\xe0\x7f\x10\x00")
    empty = b"".join(
        struct.pack("<HH2sH", 0x0009 + 2 * (k >> 16), k & 0xFFFF, b"LO", 0) for k in range(count)
    )
    path.write_bytes(raw[:i] + empty + raw[i:])
    return path


def _huge_voi_sequence(path: Path, count: int) -> Path:
    """A VOI LUT sequence of defined length (parsed only when read) holding ``count`` empty elements."""
    raw = _dicom(path, window=None).read_bytes()
    empty = b"".join(struct.pack("<HH2sH", 0x0009, k & 0xFFFF, b"LO", 0) for k in range(count))
    item = struct.pack("<HHI", 0xFFFE, 0xE000, len(empty)) + empty
    element = struct.pack("<HH2sHI", 0x0028, 0x3010, b"SQ", 0, len(item)) + item
    i = raw.rfind(b"\xe0\x7f\x10\x00")
    path.write_bytes(raw[:i] + element + raw[i:])
    return path


def _bomb_cases(folder: Path) -> dict[str, tuple[Path, tuple[str, ...]]]:
    """name -> (file, words its ImageTooLargeError reason must hold besides "limit")."""
    folder.mkdir()
    jls = _dicom(folder / "jls-src.dcm", syntax="JPEGLSLossless")
    j2k = _dicom(folder / "j2k-src.dcm", syntax="JPEG2000Lossless")
    from helpers.dicom import write_jpeg_dicom

    jpg = write_jpeg_dicom(folder / "jpg-src.dcm", (_ramp() // 16).astype(np.uint8))
    rgb32 = folder / "rgb32.dcm"
    _dicom(rgb32)
    import pydicom

    ds = pydicom.dcmread(rgb32)
    ds.Rows = ds.Columns = 6000
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 32, 31
    ds.save_as(rgb32)
    return {
        "jpeg-ls 4000x4000x255": (
            _with_codestream_header(folder / "jls.dcm", jls, b"\xff\xf7", _jpegls_sof(4000, 4000, 255)),
            ("4000 x 4000", "255 samples"),
        ),
        "jpeg 2000 3000x3000x64": (
            _with_codestream_header(folder / "j2k.dcm", j2k, b"\xff\x51", _j2k_siz(3000, 3000, 64)),
            ("3000 x 3000", "64 samples"),
        ),
        "jpeg 4000x4000x255": (
            _with_codestream_header(folder / "jpg.dcm", jpg, b"\xff\xc0", _jpeg_sof(4000, 4000, 255)),
            ("4000 x 4000", "255 samples"),
        ),
        "rgb 6000x6000 32-bit": (rgb32, ("6000 x 6000", "3 samples", "4 bytes")),
        "voi lut 10^9 entries": (
            _with_lut_descriptor(folder / "voi.dcm", "VOILUTSequence", [10**9, 0, 16]),
            ("1000000000 entries",),
        ),
        "modality lut 10^9 entries": (
            _with_lut_descriptor(folder / "mlut.dcm", "ModalityLUTSequence", [10**9, 0, 16]),
            ("1000000000 entries",),
        ),
        "deflated 100 MiB": (_deflated(folder / "deflated.dcm", 100), ("inflates",)),
        "150,000 empty elements": (_many_elements(folder / "many.dcm", 150_000), ("elements",)),
        "VOI LUT sequence of 200,000 elements": (
            _huge_voi_sequence(folder / "seq.dcm", 200_000),
            ("VOILUTSequence", "bytes"),
        ),
    }


_CHILD = textwrap.dedent(
    """
    import json, resource, sys, time, warnings
    warnings.simplefilter("ignore")
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from cxr_viewer.core.io import load_image
    for path in sys.argv[2:]:
        start = time.monotonic()
        try:
            img = load_image(path)
            out = ["ok", f"{img.shape}"]
        except MemoryError:
            out = ["MemoryError", ""]
        except Exception as exc:
            out = [type(exc).__name__, str(exc)]
        print(json.dumps(out + [time.monotonic() - start]), flush=True)
    """
)


def _decode_in_child(paths: list[Path], timeout_s: float = 120) -> list[tuple[str, str, float]]:
    """Load each file in one child process under `CHILD_MEMORY_LIMIT`: (error class or "ok", reason, s)."""
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(CHILD_MEMORY_LIMIT), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=Path(__file__).resolve().parents[2],
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        check=False,
    )
    rows = [tuple(json.loads(line)) for line in proc.stdout.splitlines()]
    rows += [("child died", proc.stderr[-300:], 0.0)] * (len(paths) - len(rows))
    return rows  # type: ignore[return-value]


@pytest.mark.timeout(180)
def test_the_decoded_size_budget_is_checked_before_decoding(tmp_path: Path) -> None:
    cases = _bomb_cases(tmp_path / "bombs")
    results = _decode_in_child([path for path, _ in cases.values()])
    wrong = []
    for (name, (_, words)), (kind, reason, seconds) in zip(cases.items(), results, strict=True):
        if kind != "ImageTooLargeError" or "limit" not in reason or not all(w in reason for w in words):
            wrong.append(f"{name}: {kind}: {reason}")
        elif seconds > 10:
            wrong.append(f"{name}: {seconds:.1f} s")
        elif "\n" in reason or len(reason) > 240 or "SECRET" in reason:
            wrong.append(f"{name}: unsafe reason {reason!r}")
    assert not wrong, wrong


def test_the_budgets_leave_real_files_alone(tmp_path: Path) -> None:
    """The same writers at a legitimate size: an image (deflated, LUTs, code streams) within budget."""
    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    for mib in (1, 40):  # 40 MiB: more than a 4300 x 4300 16-bit radiograph (37 MB)
        deflated = _deflated(tmp_path / f"deflated{mib}.dcm", mib)
        assert pydicom.dcmread(deflated).file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian
        assert load_image(deflated).shape == (64, 64)
    ok = _with_lut_descriptor(tmp_path / "voi.dcm", "VOILUTSequence", [4096, 0, 16])
    assert load_image(ok).voi_lut is not None
    assert load_image(_many_elements(tmp_path / "some.dcm", 2000)).shape == (64, 64)
    for syntax in ("JPEGLSLossless", "JPEG2000Lossless", "RLELossless"):
        assert load_image(_dicom(tmp_path / f"{syntax}.dcm", syntax=syntax)).shape == (64, 64)


def test_deflated_dicom_is_inflated_with_a_bound_in_process(tmp_path: Path) -> None:
    """The bounded inflater itself (fast, in-process): refuses past the limit, reads what fits."""
    from cxr_viewer.core.limits import inflate_bounded

    data = zlib.compress(b"\x00" * (3 << 20))[2:-4]  # raw deflate: no zlib header or checksum
    assert len(inflate_bounded(data, limit=3 << 20)) == 3 << 20
    with pytest.raises(ImageTooLargeError, match="limit 2 MiB"):
        inflate_bounded(data, limit=2 << 20)
    with pytest.raises(CorruptImageError):
        inflate_bounded(b"\xff" * 100, limit=1 << 20)


@pytest.mark.parametrize(
    ("shape", "words"),
    [
        ((1, 1), "too small"),
        ((8, 500), "too small"),
        ((1, 39_999_999), "too small"),
        ((300, 4000), "elongated"),
        ((5000, 1000), "elongated"),
    ],
)
def test_not_a_radiograph_gives_a_reason_for_tiny_or_elongated_images(
    tmp_path: Path, shape: tuple[int, int], words: str
) -> None:
    from cxr_viewer.core.scope import not_a_radiograph

    reason = not_a_radiograph(shape)
    assert words in reason and "radiograph" in reason
    assert f"{shape[1]} x {shape[0]}" in reason and "\n" not in reason
    if shape[0] * shape[1] <= 4_000_000:  # the same through a real file
        path = tmp_path / "x.png"
        Image.fromarray(np.zeros(shape, np.uint8)).save(path)
        img = load_image(path)  # the reader itself does not refuse small images
        assert not_a_radiograph(img) == reason


@pytest.mark.parametrize("shape", [(64, 64), (128, 128), (2048, 2500), (3000, 750), (128, 512)])
def test_not_a_radiograph_accepts_film_like_sizes(shape: tuple[int, int]) -> None:
    from cxr_viewer.core.scope import not_a_radiograph

    assert not_a_radiograph(shape) == ""
    assert not_a_radiograph(shape, min_side=shape[0] + 1).startswith("image too small")


def test_not_a_radiograph_floor_is_min_radiograph_side() -> None:
    from cxr_viewer.core.scope import MAX_ASPECT_RATIO, MIN_RADIOGRAPH_SIDE, not_a_radiograph

    side = MIN_RADIOGRAPH_SIDE
    assert not_a_radiograph((side, side)) == ""
    assert not_a_radiograph((side - 1, side * 2)).startswith("image too small")
    assert not_a_radiograph((side, int(side * MAX_ASPECT_RATIO))) == ""
    assert not_a_radiograph((side, int(side * MAX_ASPECT_RATIO) + 1)).startswith("image too elongated")


# ====================================================================================== item 7
def test_an_unreadable_sub_folder_gets_a_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Permission denied on listing a sub-folder (simulated: the tests may run as root)."""
    good = tmp_path / "study" / "a.png"
    good.parent.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(good)
    locked = tmp_path / "study" / "locked"
    locked.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(locked / "b.png")
    real_scandir = os.scandir

    def scandir(path):  # type: ignore[no-untyped-def]
        if os.fspath(path) == os.fspath(locked):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    found = list(iter_study_files([tmp_path / "study"]))
    assert [(f.path, f.skipped) for f in found] == [(good, False), (locked, True)]
    assert "permission denied" in (found[1].skip_reason or "").lower()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads folders whatever their mode")
def test_an_unreadable_sub_folder_gets_a_row_for_real(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "b.dcm").write_bytes(b"")
    locked.chmod(0)
    try:
        found = list(iter_study_files([tmp_path]))
    finally:
        locked.chmod(stat.S_IRWXU)
    assert [(f.path, f.skipped) for f in found] == [(locked, True)]


def _deep_folder(top: Path, depth: int = 24, name_len: int = 200) -> Path:
    """``top``/d.../d.../... deeper than PATH_MAX (4096), built with folder descriptors; a PNG at the end."""
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for k in range(depth):
            name = f"{k:02d}" + "d" * (name_len - 2)
            os.mkdir(name, dir_fd=fd)
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = sub
        buf = Path(top.parent / "tmp.png")
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(buf)
        out = os.open("deep.png", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(out, buf.read_bytes())
        os.close(out)
    finally:
        os.close(fd)
    return top


def test_a_path_over_path_max_gets_a_row(tmp_path: Path) -> None:
    top = _deep_folder(tmp_path / "deep")
    found = list(iter_study_files([top]))
    assert found, "the folder deeper than PATH_MAX vanished"
    assert all(f.skipped for f in found)
    assert any("too long" in (f.skip_reason or "") for f in found)
    assert len(os.fsencode(found[-1].path)) > 4096 - 256
    # the same path given directly (a file argument over PATH_MAX) is a row, not an exception
    too_long = Path(str(found[-1].path) + "/" + "x" * 200 + "/deep.png")
    rows = list(iter_study_files([too_long]))
    assert len(rows) == 1 and rows[0].skipped and "too long" in (rows[0].skip_reason or "")


def test_file_names_that_are_not_utf8(tmp_path: Path) -> None:
    raw_name = b"\xff\xfe-film-\xe9.png"
    buf = tmp_path / "src.png"
    Image.fromarray(np.full((8, 8), 5, np.uint8)).save(buf)
    folder = tmp_path / "names"
    folder.mkdir()
    bytes_path = os.fsencode(folder) + b"/" + raw_name
    with open(bytes_path, "wb") as fh:
        fh.write(buf.read_bytes())
    str_path = os.fsdecode(bytes_path)  # surrogate-escaped
    found = list(iter_study_files([folder]))
    assert [(os.fsencode(f.path), f.skipped) for f in found] == [(bytes_path, False)]
    assert [os.fsencode(f.path) for f in iter_study_files([bytes_path, os.fsencode(folder)])] == [bytes_path]
    assert load_image(bytes_path).shape == (8, 8)
    assert load_image(str_path).shape == (8, 8)
    assert load_image(found[0].path).shape == (8, 8)


# ====================================================================================== item 9
def _many_page_tiff(path: Path, pages: int) -> Path:
    """A little-endian TIFF of ``pages`` 1 x 1 8-bit pages sharing one pixel byte (raw bytes)."""
    entries = 8
    ifd_size = 2 + 12 * entries + 4
    pixel_at = 8
    first_ifd = 10
    out = bytearray(b"II*\x00" + struct.pack("<I", first_ifd) + b"\x80\x00")
    for k in range(pages):
        at = first_ifd + k * ifd_size
        nxt = at + ifd_size if k + 1 < pages else 0
        tags = [
            (256, 3, 1, 1),  # ImageWidth
            (257, 3, 1, 1),  # ImageLength
            (258, 3, 1, 8),  # BitsPerSample
            (259, 3, 1, 1),  # Compression: none
            (262, 3, 1, 1),  # PhotometricInterpretation: BlackIsZero
            (273, 4, 1, pixel_at),  # StripOffsets
            (278, 3, 1, 1),  # RowsPerStrip
            (279, 4, 1, 1),  # StripByteCounts
        ]
        out += struct.pack("<H", entries)
        for tag, kind, n, value in tags:
            out += struct.pack("<HHII", tag, kind, n, value)
        out += struct.pack("<I", nxt)
    path.write_bytes(bytes(out))
    return path


@pytest.mark.timeout(120)
def test_a_100000_page_tiff_is_counted_in_linear_time(tmp_path: Path) -> None:
    path = _many_page_tiff(tmp_path / "pages.tif", 100_000)
    start = time.monotonic()
    img = load_image(path)
    assert time.monotonic() - start < 10
    assert img.shape == (1, 1)
    assert any("first page of more than 10000" in n for n in img.notes), img.notes
    few = load_image(_many_page_tiff(tmp_path / "few.tif", 3))
    assert any("first page of 3 " in n for n in few.notes), few.notes


@pytest.mark.parametrize(
    ("tag", "value", "error"),
    [
        ("PhotometricInterpretation", "SECRETWORD", UnsupportedImageError),
        ("PhotometricInterpretation", "MONOCHROME3 SECRETWORD", UnsupportedImageError),
        ("NumberOfFrames", "-7", CorruptImageError),
        ("BitsAllocated", 24, UnsupportedImageError),
        ("SamplesPerPixel", 7, UnsupportedImageError),
        ("BitsStored", 77, CorruptImageError),
    ],
)
def test_reasons_do_not_echo_header_values(tmp_path: Path, tag: str, value: object, error: type) -> None:
    import pydicom

    path = _dicom(tmp_path / "x.dcm")
    ds = pydicom.dcmread(path)
    setattr(ds, tag, value)
    ds.save_as(path)
    with pytest.raises(error) as info:
        load_image(path)
    text = str(info.value)
    assert str(value) not in text and "SECRET" not in text, text
    assert tag in text.replace(" ", "") or "photometric" in text


def test_standard_photometric_terms_may_be_named(tmp_path: Path) -> None:
    import pydicom

    path = _dicom(tmp_path / "x.dcm")
    ds = pydicom.dcmread(path)
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.save_as(path)
    with pytest.raises(UnsupportedImageError, match="PALETTE COLOR"):
        load_image(path)


def test_dicom_without_its_preamble_is_read(tmp_path: Path) -> None:
    raw = _dicom(tmp_path / "full.dcm").read_bytes()
    with_prefix = tmp_path / "dicm-first.dcm"
    with_prefix.write_bytes(raw[128:])  # "DICM", the meta, the data set: no 128-byte preamble
    meta_first = tmp_path / "meta-first.img"  # not even "DICM", and a name that says nothing
    meta_first.write_bytes(raw[132:])
    for path in (with_prefix, meta_first):
        img = load_image(path)
        assert img.shape == (64, 64)
        np.testing.assert_array_equal(img.pixels, _ramp())
        assert [f.skipped for f in iter_study_files([path])] == [False]


def test_acr_nema_file_without_meta_is_read(tmp_path: Path) -> None:
    import pydicom

    path = _dicom(tmp_path / "acr.dcm")
    ds = pydicom.dcmread(path)
    del ds.file_meta
    ds.preamble = None
    ds.save_as(path, enforce_file_format=False, implicit_vr=True, little_endian=True)
    assert path.read_bytes()[:2] == b"\x08\x00"  # no preamble, no meta: a bare data set
    img = load_image(path)
    np.testing.assert_array_equal(img.pixels, _ramp())
    assert any("ACR-NEMA" in n for n in img.notes)


@pytest.mark.parametrize("syntax", ["JPEG2000Lossless", "RLELossless"])
def test_codec_failures_keep_their_reason(tmp_path: Path, syntax: str) -> None:
    """A code stream damaged after its header: the reason names the codec's complaint, not just
    "all plugins failed"."""
    import pydicom
    from pydicom.encaps import encapsulate, generate_frames

    path = _dicom(tmp_path / "x.dcm", syntax=syntax)
    ds = pydicom.dcmread(path)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([frame[:60] + b"\xff" * 20])
    ds.save_as(path)
    with pytest.raises(CorruptImageError) as info:
        load_image(path)
    text = str(info.value)
    assert text.startswith("cannot decode"), text
    assert not text.rstrip().endswith(":"), text
    assert "all available plugins" not in text, text
    assert len(text) <= 240 and "\n" not in text


def test_every_hostile_reader_error_is_typed(tmp_path: Path) -> None:
    """A few extra odd files: an error of the family, never anything else."""
    cases = {
        "ps.dcm": _EPS,
        "pdf.png": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
        "dicm-only.dcm": b"DICM",
        "meta-junk.img": b"\x02\x00\x00\x00UL\x04\x00" + b"\xff" * 200,
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageLoadError) as info:
            load_image(tmp_path / name)
        assert type(info.value) is not ImageLoadError


def test_exif_orientation_is_applied_without_a_copy(tmp_path: Path) -> None:
    """The EXIF turn is done in place (a copy of every picture doubled the peak of a large one)."""
    arr = np.zeros((10, 30), np.uint8)
    arr[:, :5] = 255  # a bright band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to show
    Image.fromarray(arr).save(tmp_path / "turned.jpg", exif=exif, quality=95)
    img = load_image(tmp_path / "turned.jpg")
    assert img.shape == (30, 10)
    assert img.pixels[:5].mean() > 200 and img.pixels[-5:].mean() < 50  # the band is now on top
