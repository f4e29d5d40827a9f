"""The tag browser's rows (core.dicom_tags): every element of a real header, sequences nested,
binary values by size, long values cut, patient data kept out of reprs; non-DICOM and cut files refused."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from cxr_viewer.core.dicom_tags import MAX_VALUE_CHARS, read_tags
from cxr_viewer.core.errors import CorruptImageError, NotAnImageError

if TYPE_CHECKING:
    from pathlib import Path


def test_rows_of_a_real_header(shared_data) -> None:
    pydicom = pytest.importorskip("pydicom")
    path = shared_data("dicom", "RG3_J2KI.dcm")
    rows = read_tags(path)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    top = [r for r in rows if r.depth == 0 and r.tag and not r.tag.startswith("(0002")]
    assert len(top) == len(ds) + 1  # every top-level element, plus the pixel data
    by_keyword = {r.keyword: r for r in rows}
    assert by_keyword["PatientName"].value == str(ds.PatientName)
    assert by_keyword["ViewPosition"].value == "AP"
    assert by_keyword["TransferSyntaxUID"].tag == "(0002,0010)"  # the file meta comes first
    assert rows[0].tag.startswith("(0002,")
    assert by_keyword["PixelData"].value.endswith("bytes>")
    seq = by_keyword["SourceImageSequence"]
    assert seq.vr == "SQ" and seq.value == f"{len(ds.SourceImageSequence)} item(s)"
    at = rows.index(seq)
    assert rows[at + 1].keyword == "item 1" and rows[at + 2].depth == seq.depth + 2
    assert str(ds.PatientName) not in repr(by_keyword["PatientName"])


def test_long_values_are_cut_and_other_files_refused(tmp_path: Path, make_dicom, shared_data) -> None:
    pydicom = pytest.importorskip("pydicom")
    import numpy as np

    path = make_dicom(tmp_path / "long.dcm", np.zeros((8, 8), np.uint16))
    ds = pydicom.dcmread(path)
    ds.ImageComments = "x" * 5000
    ds.save_as(path)
    (comment,) = [r for r in read_tags(path) if r.keyword == "ImageComments"]
    assert comment.value.startswith("x" * MAX_VALUE_CHARS) and comment.value.endswith("(5,000 characters)")
    png = tmp_path / "a.png"
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png)
    with pytest.raises(NotAnImageError, match="PNG is not DICOM"):
        read_tags(png)
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(shared_data("dicom", "RG1_UNCI.dcm").read_bytes()[:1000])
    with pytest.raises(CorruptImageError):
        read_tags(cut)
