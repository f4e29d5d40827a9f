"""Item 1 of issue 7, property-based: hypothesis builds DICOM headers and damaged files in-process.

Every example must give a valid image (2-D float32, finite, within `MAX_PIXELS`) or one *typed*
`ImageLoadError` subclass with a one-line readable reason, within the per-file time limit and the memory
budget (in-process, so the budget is on the growth of this process's peak RSS while it reads the file:
`CASE_MEMORY_ALLOWANCE`, the child harness's budget less its worker's idle RSS). Runs are reproducible
(``derandomize=True``, no example database) and sized to take seconds.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from decode_worker import peak_rss, reset_peak_rss, rss
from helpers.dicom import file_meta
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_helpers import (
    CASE_MEMORY_ALLOWANCE,
    PATIENT_ID,
    PATIENT_NAME,
    PER_FILE_TIMEOUT_S,
    png_with_size,
)

from cxr_viewer.core.io import MAX_PIXELS, ImageLoadError, load_image

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning"),
    pytest.mark.timeout(300),
]

FUZZ = settings(
    max_examples=500,
    derandomize=True,
    database=None,
    deadline=None,  # the machine is shared; the time limit is checked below instead
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)


#: stats keys that are not outcome counts
_NOT_COUNTS = ("max_ms", "cases", "max_rss_growth_mb")


def _cases(stats: Counter) -> int:
    return sum(v for k, v in stats.items() if k not in _NOT_COUNTS)


def _outcome(path: Path, stats: Counter) -> None:
    resettable = reset_peak_rss()
    start = rss()
    t0 = time.perf_counter()
    try:
        img = load_image(path)
    except ImageLoadError as exc:
        msg = str(exc)
        assert type(exc) is not ImageLoadError, f"untyped error: {msg}"  # noqa: PT017 (either outcome is valid)
        assert msg and len(msg) <= 300 and "\n" not in msg and msg.isprintable(), repr(msg)
        assert "for memory" not in msg  # the limits must refuse before any allocation fails
        stats[type(exc).__name__] += 1
    else:
        px = img.pixels
        assert px.ndim == 2 and px.dtype == np.float32 and 0 < px.size <= MAX_PIXELS
        assert np.isfinite(px).all()
        stats["ok"] += 1
    seconds = time.perf_counter() - t0
    stats["max_ms"] = max(stats["max_ms"], round(seconds * 1000))
    assert seconds < PER_FILE_TIMEOUT_S
    if resettable and start:
        growth = max(0, peak_rss() - start)
        stats["max_rss_growth_mb"] = max(stats["max_rss_growth_mb"], round(growth / 1e6, 1))
        assert growth <= CASE_MEMORY_ALLOWANCE, f"{growth / 1e6:.0f} MB for one file"


PHOTOMETRIC = ["MONOCHROME1", "MONOCHROME2"] * 3 + [
    "RGB",
    "YBR_FULL",
    "YBR_FULL_422",
    "PALETTE COLOR",
    "HSV",
    "",
    "X",
]
SYNTAX = ["1.2.840.10008.1.2.1"] * 6 + ["1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.5",
          "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90", "1.2.3"]  # fmt: skip

dicom_headers = st.fixed_dictionaries(
    {
        "Rows": st.one_of(st.integers(1, 80), st.sampled_from([0, 1, 65535, 50000])),
        "Columns": st.one_of(st.integers(1, 80), st.sampled_from([0, 1, 65535, 50000])),
        "BitsAllocated": st.sampled_from([8, 16, 16, 16, 0, 1, 12, 32, 64]),
        "BitsStored": st.one_of(st.sampled_from([8, 12, 16]), st.integers(0, 40)),
        "SamplesPerPixel": st.sampled_from([1, 1, 1, 3, 3, 0, 2, 4]),
        "PhotometricInterpretation": st.sampled_from(PHOTOMETRIC),
        "PixelRepresentation": st.integers(0, 2),
        "NumberOfFrames": st.one_of(st.none(), st.integers(-1, 4), st.just(10**9)),
        "PlanarConfiguration": st.one_of(st.none(), st.integers(0, 2)),
        "RescaleSlope": st.one_of(st.none(), st.sampled_from(["1", "0", "-2.5", "1e38", "1e-30"])),
        "TransferSyntax": st.sampled_from(SYNTAX),
        "pixel_bytes": st.one_of(
            st.just(-1), st.just(-1), st.integers(0, 40_000)
        ),  # -1: exactly what the header says
    }
)


def _write_dicom(path: Path, h: dict) -> None:
    from pydicom.dataset import Dataset

    meta = file_meta(h["TransferSyntax"], instance_uid="1.2.3.4")
    ds = Dataset()
    ds.file_meta = meta
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    for key in ("Rows", "Columns", "BitsAllocated", "BitsStored", "SamplesPerPixel", "PixelRepresentation"):
        setattr(ds, key, h[key])
    ds.HighBit = max(0, h["BitsStored"] - 1)
    if h["PhotometricInterpretation"]:
        ds.PhotometricInterpretation = h["PhotometricInterpretation"]
    for key in ("NumberOfFrames", "PlanarConfiguration"):
        if h[key] is not None:
            setattr(ds, key, h[key])
    if h["RescaleSlope"] is not None:
        ds.RescaleSlope, ds.RescaleIntercept = h["RescaleSlope"], "0"
    n = h["pixel_bytes"]
    if n < 0:
        n = min(
            h["Rows"] * h["Columns"] * max(h["SamplesPerPixel"], 1) * max(h["BitsAllocated"], 8) // 8, 400_000
        )
    rng = np.random.default_rng(n)
    ds.PixelData = rng.integers(0, 256, n + n % 2, dtype=np.uint8).tobytes()
    # The body is explicit VR little endian whatever the meta says: a header that lies about the
    # encoding is one of the cases.
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info

    del ds.file_meta
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    body = fp.getvalue()
    head = DicomBytesIO()
    head.is_little_endian, head.is_implicit_VR = True, False
    head.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(head, meta, enforce_standard=False)
    path.write_bytes(head.getvalue() + body)


@pytest.mark.slow
def test_hypothesis_dicom_headers(tmp_path, figures):
    stats: Counter = Counter()

    @settings(FUZZ, max_examples=800)
    @given(h=dicom_headers)
    def check(h):
        p = tmp_path / "h.dcm"
        _write_dicom(p, h)
        _outcome(p, stats)

    check()
    stats["cases"] = _cases(stats)
    figures["fuzz (hypothesis): generated DICOM headers"] = dict(stats)


@pytest.mark.slow
def test_hypothesis_damaged_bytes_of_every_format(tmp_path, seeds, figures):
    names = sorted(seeds)
    blobs = {n: seeds[n].read_bytes() for n in names}
    stats: Counter = Counter()

    @FUZZ
    @given(
        name=st.sampled_from(names),
        cut=st.one_of(st.none(), st.floats(0, 1)),
        flips=st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)), max_size=12),
        insert=st.one_of(st.none(), st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=64))),
    )
    def check(name, cut, flips, insert):
        data = bytearray(blobs[name])
        for where, xor in flips:
            data[min(int(where * len(data)), len(data) - 1)] ^= xor
        if insert is not None:
            at = int(insert[0] * len(data))
            data[at:at] = insert[1]
        if cut is not None:
            del data[int(cut * len(data)) :]
        p = tmp_path / f"x{Path(name).suffix}"
        p.write_bytes(bytes(data))
        _outcome(p, stats)

    check()
    stats["cases"] = _cases(stats)
    figures["fuzz (hypothesis): damaged bytes of the seeds"] = dict(stats)


def test_hypothesis_declared_picture_sizes(tmp_path, figures):
    stats: Counter = Counter()

    @FUZZ
    @given(w=st.integers(0, 2**31 - 1), h=st.integers(0, 2**31 - 1), crc=st.booleans())
    def check(w, h, crc):
        p = tmp_path / "s.png"
        p.write_bytes(png_with_size(w, h, fix_crc=crc))
        _outcome(p, stats)
        if w * h > MAX_PIXELS and crc:
            assert stats["ImageTooLargeError"] > 0

    check()
    stats["cases"] = _cases(stats)
    figures["fuzz (hypothesis): declared PNG sizes"] = dict(stats)
