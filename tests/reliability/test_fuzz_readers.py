"""Item 1 of issue 7: damaged, hostile and odd files give an image or one typed, readable error.

Two layers:

* a corpus run in a child process (`reliability_helpers.run_in_subprocess`): every file has a wall-clock
  limit and a memory budget (the child's peak RSS while it reads the file, 1.5 x what the largest real
  radiograph needs: `reliability_helpers.MEMORY_BUDGET`), and a crash, hang or memory bomb fails only
  its own case. The corpus: hand-made hostile cases (absurd sizes, wrong/missing tags, unsupported
  photometric interpretations, no pixel data, zero-byte files, FIFOs, link loops...) plus deterministic
  byte mutations (truncation, bit flips, junk blocks, cuts) of small seeds of every format and of the
  real CR files in ../shared/data/dicom, which are also read unchanged (they must fit the budget);
* hypothesis property tests in-process (`test_fuzz_hypothesis.py`).
"""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path

import numpy as np
import pytest
from reliability_helpers import (
    MEMORY_BUDGET,
    byte_mutations,
    patch_jpeg_size,
    png_with_size,
    real_dicom_files,
    run_in_subprocess,
    summarise,
)

#: damaged variants per small seed (20 seeds): with the other fuzz tests, over 10,000 generated cases
SEED_MUTATIONS = 400

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _edit_dicom(src: Path, dest: Path, edit) -> Path:
    import pydicom

    ds = pydicom.dcmread(src)
    edit(ds)
    ds.save_as(dest, enforce_file_format=False)
    return dest


def _set(**values):
    def edit(ds):
        for k, v in values.items():
            if v is None:
                if k in ds:
                    delattr(ds, k)
            else:
                setattr(ds, k, v)

    return edit


def _raw_element(tag: int, vr: str, value: bytes):
    def edit(ds):
        from pydicom.dataelem import RawDataElement
        from pydicom.tag import Tag

        ds[Tag(tag)] = RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)

    return edit


#: hand-made hostile DICOM edits on the 16-bit mono seed: name -> (edit, expected error class or "ok")
DICOM_EDITS: dict[str, tuple[object, str | None]] = {
    "rows-cols-absurd": (_set(Rows=65535, Columns=65535), "ImageTooLargeError"),
    "rows-zero": (_set(Rows=0), "CorruptImageError"),
    "rows-missing": (_set(Rows=None), "CorruptImageError"),
    "columns-missing": (_set(Columns=None), "CorruptImageError"),
    "rows-doubled": (_set(Rows=96), "CorruptImageError"),
    "rows-halved": (_set(Rows=24), None),  # pydicom may accept excess data: either outcome is fine
    "bits-allocated-0": (_set(BitsAllocated=0), "UnsupportedImageError"),
    "bits-allocated-12": (_set(BitsAllocated=12), "UnsupportedImageError"),
    "bits-allocated-missing": (_set(BitsAllocated=None), "UnsupportedImageError"),
    "bits-stored-0": (_set(BitsStored=0), "CorruptImageError"),
    "bits-stored-99": (_set(BitsStored=99), "CorruptImageError"),
    "high-bit-99": (_set(HighBit=99), None),
    "samples-0": (_set(SamplesPerPixel=0), "UnsupportedImageError"),
    "samples-3-mono": (_set(SamplesPerPixel=3), "UnsupportedImageError"),
    "samples-missing": (_set(SamplesPerPixel=None), "ok"),
    "pixel-representation-2": (_set(PixelRepresentation=2), "CorruptImageError"),
    "signed": (_set(PixelRepresentation=1), "ok"),
    "photometric-missing": (_set(PhotometricInterpretation=None), "ok"),
    "photometric-palette": (_set(PhotometricInterpretation="PALETTE COLOR"), "UnsupportedImageError"),
    "photometric-hsv": (_set(PhotometricInterpretation="HSV"), "UnsupportedImageError"),
    "photometric-cmyk": (_set(PhotometricInterpretation="CMYK"), "UnsupportedImageError"),
    "photometric-junk": (_set(PhotometricInterpretation="MONOCHROME9"), "UnsupportedImageError"),
    "photometric-rgb-on-mono-data": (_set(PhotometricInterpretation="RGB"), "UnsupportedImageError"),
    "photometric-ybr422-on-mono-data": (
        _set(PhotometricInterpretation="YBR_FULL_422"),
        "UnsupportedImageError",
    ),
    "frames-0": (_set(NumberOfFrames=0), "CorruptImageError"),
    "frames-million": (_set(NumberOfFrames=1_000_000), "CorruptImageError"),
    "frames-text": (_raw_element(0x00280008, "IS", b"abc "), None),
    "pixel-data-missing": (_set(PixelData=None), "NotAnImageError"),
    "pixel-data-empty": (_set(PixelData=b""), "CorruptImageError"),
    "pixel-data-short": (_set(PixelData=b"\x00" * 10), "CorruptImageError"),
    "rescale-slope-huge": (
        lambda ds: (_raw_element(0x00281053, "DS", b"1e38")(ds), _set(RescaleIntercept=0)(ds)),
        "CorruptImageError",
    ),
    "rescale-slope-nan": (
        lambda ds: (_raw_element(0x00281053, "DS", b"nan ")(ds), _set(RescaleIntercept=0)(ds)),
        None,
    ),
    "rescale-slope-inf": (_raw_element(0x00281053, "DS", b"1e999 "), None),
    "rescale-slope-text": (_raw_element(0x00281053, "DS", b"abcd"), None),
    "rescale-slope-0": (_raw_element(0x00281053, "DS", b"0 "), "ok"),
    "window-junk": (_raw_element(0x00281050, "DS", b"x\\y "), "ok"),
    "window-width-negative": (_set(WindowWidth=-5), "ok"),
    "spacing-junk": (_raw_element(0x00280030, "DS", b"a\\b "), "ok"),
    "spacing-one-value": (_raw_element(0x00280030, "DS", b"0.1 "), "ok"),
    "voi-lut-junk": (_raw_element(0x00283010, "SQ", b"\x00" * 16), None),
    "modality-lut-junk": (_raw_element(0x00283000, "SQ", b"\xff" * 16), None),
    "float-pixel-data-only": (
        lambda ds: (_set(PixelData=None)(ds), _raw_element(0x7FE00008, "OF", b"\x00" * 16)(ds)),
        "UnsupportedImageError",
    ),
    "file-meta-missing": (
        lambda ds: setattr(ds, "file_meta", __import__("pydicom").dataset.FileMetaDataset()),
        None,
    ),
}

#: the explicit-VR-little-endian UID as written in the seeds, and same-length (or shorter) replacements
_EXPLICIT_LE = b"1.2.840.10008.1.2.1\x00"
SYNTAX_PATCHES = {
    "transfer-syntax-rle-on-raw": (b"1.2.840.10008.1.2.5", "CorruptImageError"),
    "transfer-syntax-big-endian": (b"1.2.840.10008.1.2.2", None),
    "transfer-syntax-implicit": (b"1.2.840.10008.1.2", None),
    "transfer-syntax-unknown": (b"1.2.3.4", None),
    "transfer-syntax-garbage": (b"\xff\xfe\x00junk", None),
}


def _hostile_cases(folder: Path, seeds: dict[str, Path]) -> tuple[list[tuple[str, Path]], dict[str, str]]:
    """(cases, expected outcome by case name: error class name or "ok")."""
    folder.mkdir(parents=True, exist_ok=True)
    cases: list[tuple[str, Path]] = []
    expect: dict[str, str] = {}

    def add(name: str, path: Path, expected: str | None = None) -> None:
        cases.append((name, path))
        if expected:
            expect[name] = expected

    for name, (edit, expected) in DICOM_EDITS.items():
        add(f"dicom:{name}", _edit_dicom(seeds["mono2.dcm"], folder / f"{name}.dcm", edit), expected)
    raw = seeds["mono2.dcm"].read_bytes()
    assert _EXPLICIT_LE in raw
    for name, (uid, expected) in SYNTAX_PATCHES.items():
        p = folder / f"{name}.dcm"
        p.write_bytes(raw.replace(_EXPLICIT_LE, uid.ljust(len(_EXPLICIT_LE), b"\x00"), 1))
        add(f"dicom:{name}", p, expected)
    # colour seeds with wrong tags
    add(
        "dicom:rgb-planar-1",
        _edit_dicom(seeds["rgb.dcm"], folder / "rgbp.dcm", _set(PlanarConfiguration=1)),
        "ok",
    )
    add(
        "dicom:rgb-as-palette",
        _edit_dicom(seeds["rgb.dcm"], folder / "rgbpal.dcm", _set(PhotometricInterpretation="PALETTE COLOR")),
        "UnsupportedImageError",
    )
    add(
        "dicom:rgb-samples-1",
        _edit_dicom(seeds["rgb.dcm"], folder / "rgbs1.dcm", _set(SamplesPerPixel=1)),
        "UnsupportedImageError",
    )
    # compressed streams whose own header declares an absurd size (what the decoder would allocate)
    for seed in ("j2k.dcm", "jpegls.dcm", "jpeg_baseline.dcm", "rle.dcm"):
        if seed not in seeds:
            continue
        data = seeds[seed].read_bytes()
        p = folder / f"huge-stream-{seed}"
        p.write_bytes(patch_jpeg_size(data, 60000, 60000))
        add(f"dicom:codestream-60000x60000:{seed}", p, None if seed == "rle.dcm" else "ImageTooLargeError")
    # the pixel data element claims 4 GB
    data = seeds["mono2.dcm"].read_bytes()
    i = data.rfind(b"\xe0\x7f\x10\x00")
    p = folder / "pixel-length-4g.dcm"
    p.write_bytes(data[: i + 8] + struct.pack("<I", 0xFFFFFFF0) + data[i + 12 :])
    add("dicom:pixel-data-length-4GB", p)
    # preamble only, DICM without a data set, text named .dcm
    (folder / "preamble.dcm").write_bytes(b"\x00" * 128 + b"DICM")
    add("dicom:preamble-only", folder / "preamble.dcm", "NotAnImageError")
    (folder / "text.dcm").write_text("PatientName: nobody\n" * 20)
    add("dicom:text-named-dcm", folder / "text.dcm")
    # PNG / JPEG / TIFF / BMP with absurd declared sizes
    (folder / "huge.png").write_bytes(png_with_size(100_000, 100_000))
    add("png:100000x100000", folder / "huge.png", "ImageTooLargeError")
    (folder / "wide.png").write_bytes(png_with_size(2**31 - 1, 1))
    add("png:2^31x1", folder / "wide.png", "ImageTooLargeError")
    (folder / "zero.png").write_bytes(png_with_size(0, 0))
    add("png:0x0", folder / "zero.png", "CorruptImageError")
    (folder / "crc.png").write_bytes(png_with_size(16, 16, fix_crc=False))
    add("png:bad-crc", folder / "crc.png", "CorruptImageError")
    (folder / "huge.jpg").write_bytes(patch_jpeg_size(seeds["grey.jpg"].read_bytes(), 65000, 65000))
    add("jpeg:65000x65000", folder / "huge.jpg", "ImageTooLargeError")
    tif = bytearray(seeds["grey16.tif"].read_bytes())
    for tag, value in ((256, 200_000), (257, 200_000)):  # ImageWidth, ImageLength as LONG
        j = tif.find(struct.pack("<HH", tag, 3))
        if j < 0:
            j = tif.find(struct.pack("<HH", tag, 4))
        if j >= 0:
            tif[j : j + 12] = struct.pack("<HHII", tag, 4, 1, value)
    (folder / "huge.tif").write_bytes(bytes(tif))
    add("tiff:200000x200000", folder / "huge.tif", "ImageTooLargeError")
    bmp = bytearray(seeds["grey.bmp"].read_bytes())
    bmp[18:26] = struct.pack("<ii", 100_000, 100_000)
    (folder / "huge.bmp").write_bytes(bytes(bmp))
    add("bmp:100000x100000", folder / "huge.bmp", "ImageTooLargeError")
    # NaN in a float TIFF
    from PIL import Image

    arr = np.ones((8, 8), np.float32)
    arr[2, 3] = np.nan
    Image.fromarray(arr).save(folder / "nan.tif")
    add("tiff:float-nan", folder / "nan.tif", "CorruptImageError")
    # empty and odd files
    for suffix in (".dcm", ".png", ".jpg", ".tif", ".bmp", ".xyz"):
        (folder / f"empty{suffix}").write_bytes(b"")
        add(f"zero-byte{suffix}", folder / f"empty{suffix}", "NotAnImageError")
    (folder / "dir.dcm").mkdir()
    add("folder-named.dcm", folder / "dir.dcm", "UnreadableFileError")
    add("missing-file", folder / "nope.png", "UnreadableFileError")
    os.symlink("loop_b.dcm", folder / "loop_a.dcm")
    os.symlink("loop_a.dcm", folder / "loop_b.dcm")
    add("symlink-loop", folder / "loop_a.dcm", "UnreadableFileError")
    os.symlink("nowhere.dcm", folder / "dangling.dcm")
    add("dangling-symlink", folder / "dangling.dcm", "UnreadableFileError")
    if hasattr(os, "mkfifo"):
        os.mkfifo(folder / "fifo.dcm")
        add("fifo.dcm (would block on open)", folder / "fifo.dcm", "UnreadableFileError")
    add("char-device /dev/zero", Path("/dev/zero"), "UnreadableFileError")
    # the memory bombs of issue 18, as the memory benchmark writes them (the deflated one inflating to
    # 1 GiB here): with a 3 GiB address-space cap they came out as typed errors; the budget shows them
    from benchmarks import memory as bombs

    for label, (file_name, build) in bombs.HOSTILE.items():
        p = folder / f"bomb_{file_name}"
        if build is bombs.write_deflate_bomb:
            build(p, 1 << 30)
        else:
            build(p)
        add(f"issue 18 bomb: {label.split(' (')[0]}", p)
    return cases, expect


def _check(results, expect, figures, label):
    summary = summarise(results)
    figures[label] = summary
    wrong = []
    by_name = {r.name: r for r in results}
    for name, expected in expect.items():
        r = by_name[name]
        got = "ok" if r.status == "ok" else r.detail.split(":", 1)[0] if r.status == "error" else r.status
        if got != expected:
            wrong.append(f"{name}: expected {expected}, got {got} ({r.detail})")
    assert summary["failures"] == 0, summary["failed"]
    assert not wrong, wrong


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_hostile_files_give_an_image_or_a_typed_error(tmp_path, seeds, figures):
    cases, expect = _hostile_cases(tmp_path / "hostile", seeds)
    results = run_in_subprocess(cases)
    _check(results, expect, figures, "fuzz: hand-made hostile files")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_damaged_seed_files_give_an_image_or_a_typed_error(tmp_path, seeds, figures):
    rng = random.Random(20240607)
    folder = tmp_path / "mutated"
    folder.mkdir()
    cases = []
    for name, path in sorted(seeds.items()):
        data = path.read_bytes()
        for k, (how, mutated) in enumerate(byte_mutations(data, rng, SEED_MUTATIONS)):
            p = folder / f"{k:03d}_{name}"
            p.write_bytes(mutated)
            cases.append((f"{name} {how}", p))
    results = run_in_subprocess(cases)
    _check(results, {}, figures, "fuzz: byte mutations of small seeds")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_damaged_real_dicom_give_an_image_or_a_typed_error(tmp_path, figures):
    files = real_dicom_files()
    if not files:
        pytest.skip("shared test data not available: ../shared/data/dicom")
    rng = random.Random(7)
    # the real files themselves first: legitimate radiographs must be read within the memory budget
    cases = [(f"{src.name} unchanged", src) for src in files]
    expect = {name: "ok" for name, _ in cases}
    for src in files:
        data = src.read_bytes()
        muts = [*byte_mutations(data, rng, 25), ("huge-codestream", patch_jpeg_size(data, 60000, 60000))]
        for k, (how, mutated) in enumerate(muts):
            p = tmp_path / f"{k:02d}_{src.name}"
            p.write_bytes(mutated)
            cases.append((f"{src.name} {how}", p))
    results = run_in_subprocess(cases)
    _check(results, expect, figures, "fuzz: the 13 real CR DICOM files and byte mutations of them")


_BAD_WORKER = """
import json, os, sys, time
for line in open(sys.argv[1]):
    path = json.loads(line)
    if "hang" in path:
        time.sleep(60)
    if "crash" in path:
        os.abort()
    print(json.dumps({"status": "ok", "detail": path, "seconds": 0.0}), flush=True)
"""


_GREEDY_WORKER = """
import json, sys, time
sys.path.insert(0, sys.argv[2])
from decode_worker import peak_rss, reset_peak_rss, rss
idle = rss()
for line in open(sys.argv[1]):
    path = json.loads(line)
    reset_peak_rss()
    if "grow" in path:  # a decoder filling more and more memory: killed while it grows
        chunks = []
        for _ in range(100):
            chunks.append(bytearray(b"x" * (16 << 20)))
            time.sleep(0.002)
    if "spike" in path:  # one short allocation above the budget, freed before any poll could see it
        big = bytearray(b"x" * (int(sys.argv[3]) + (64 << 20)))
        del big
    if "leak" in path:  # what a decoder keeps after a file
        globals().setdefault("kept", []).append(bytearray(b"x" * (48 << 20)))
    out = {"status": "ok", "detail": path, "seconds": 0.0, "peak_rss": peak_rss(), "idle_rss": idle,
           "rss_after": rss()}
    print(json.dumps(out), flush=True)
"""


@pytest.mark.timeout(60)
def test_the_harness_sees_memory(tmp_path, monkeypatch):
    """The harness itself: a file whose reading passes the memory budget fails as such, whether the
    child is still growing (killed) or the peak was brief; a child that keeps memory is restarted."""
    import reliability_helpers

    worker = tmp_path / "greedy_worker.py"
    budget = 400_000_000
    text = _GREEDY_WORKER.replace("sys.argv[2]", repr(str(reliability_helpers.HERE)))
    worker.write_text(text.replace("sys.argv[3]", str(budget)))
    names = ["a", "grow", "b", "spike", "c", "leak", "d"]
    results = run_in_subprocess([(n, tmp_path / n) for n in names], worker=worker, memory_budget=budget)
    assert [(r.name, r.status) for r in results] == [
        ("a", "ok"), ("grow", "FAIL-memory-budget"), ("b", "ok"), ("spike", "FAIL-memory-budget"),
        ("c", "ok"), ("leak", "ok"), ("d", "ok"),
    ]  # fmt: skip
    assert "killed at" in results[1].detail
    assert results[5].kept_rss > 40_000_000 and results.restarts == 1
    summary = summarise(results)
    assert summary["over_memory_budget"] == 2 and summary["children"] == 4
    assert 400 < summary["child_peak_rss_mb_max"] < 1500
    # a peak between two looks at the child: caught in the peak it reports
    monkeypatch.setattr(reliability_helpers, "RSS_POLL_S", 30.0)
    results = run_in_subprocess(
        [(n, tmp_path / n) for n in ("a", "spike", "b")], worker=worker, memory_budget=budget
    )
    assert [r.status for r in results] == ["ok", "FAIL-memory-budget", "ok"]
    assert results[1].detail.startswith("peak ") and results[1].peak_rss > budget


def test_memory_budget_is_that_of_a_radiograph():
    """The budget stays a radiograph's, not a machine's (the memory bombs of issue 18 take gigabytes)."""
    assert 150e6 <= MEMORY_BUDGET <= 300e6


@pytest.mark.timeout(60)
def test_the_harness_survives_crashes_and_hangs(tmp_path):
    """The harness itself: a crash or hang fails its own case only, and the run goes on."""
    worker = tmp_path / "bad_worker.py"
    worker.write_text(_BAD_WORKER)
    names = ["a", "crash", "b", "hang", "c"]
    results = run_in_subprocess([(n, tmp_path / n) for n in names], timeout_s=2.0, worker=worker)
    assert [(r.name, r.status) for r in results] == [
        ("a", "ok"), ("crash", "FAIL-crash"), ("b", "ok"), ("hang", "FAIL-timeout"), ("c", "ok"),
    ]  # fmt: skip
