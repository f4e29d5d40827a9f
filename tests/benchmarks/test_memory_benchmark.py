"""The memory benchmark's hostile files say what the benchmark claims (so it cannot silently measure
harmless files); the runs themselves are in ``python -m benchmarks [--quick]``."""

from __future__ import annotations

import struct
import warnings
from typing import TYPE_CHECKING

import pydicom

from benchmarks import memory

if TYPE_CHECKING:
    from pathlib import Path


def _frame(path: Path) -> bytes:
    from pydicom.encaps import generate_frames

    ds = pydicom.dcmread(path)
    return next(generate_frames(ds.PixelData, number_of_frames=1))


def test_hostile_files_declare_what_the_table_says(tmp_path: Path) -> None:
    assert memory.write_postscript_png(tmp_path / "p.png").read_bytes().startswith(b"%!PS-Adobe")

    frame = _frame(memory.write_jpegls_components(tmp_path / "ls.dcm"))
    i = frame.index(b"\xff\xf7")
    assert struct.unpack(">BHHB", frame[i + 4 : i + 10]) == (8, 4000, 4000, 255)
    assert len(frame) < 2000

    frame = _frame(memory.write_j2k_components(tmp_path / "j2k.dcm"))
    i = frame.index(b"\xff\x51")
    _rsiz, x, y, *_, csiz = struct.unpack(">HIIIIIIIIH", frame[i + 4 : i + 40])
    assert (x, y, csiz) == (4600, 4600, 64) and len(frame) < 1500

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(memory.write_voi_lut_bomb(tmp_path / "voi.dcm"))
        assert list(ds.VOILUTSequence[0].LUTDescriptor) == [10**9, 0, 16]

    small = memory.write_empty_elements(tmp_path / "few.dcm", count=100_000)
    ds = pydicom.dcmread(small)
    assert len([e for e in ds if e.tag.group >= 0x0029 and e.tag.group < 0x7FE0]) == 100_000
    assert ds.pixel_array.shape == (256, 256)
    full = memory.write_empty_elements(tmp_path / "many.dcm")
    assert full.stat().st_size - small.stat().st_size == 8 * (3_000_000 - 100_000)


def test_deflate_bomb_inflates_to_valid_zeros(tmp_path: Path) -> None:
    path = memory.write_deflate_bomb(tmp_path / "d.dcm", inflated_bytes=80 << 20)
    assert path.stat().st_size < 200_000
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1.99"
    sizes = [len(ds[0x7FDF, e].value) for e in range(0x1000, 0x1010) if (0x7FDF, e) in ds]
    assert sum(sizes) == 80 << 20
    assert not any(ds[0x7FDF, 0x1000].value)  # the repeated deflate blocks inflate to zeros
    assert ds.pixel_array.shape == (256, 256)  # and the image after them is intact
    big = memory.write_deflate_bomb(tmp_path / "big.dcm")
    assert 3e6 < big.stat().st_size < 6e6  # 4 GiB of zeros (the benchmark's file)
