"""Folder scanning never hangs: symlink cycles, FIFOs, devices, link loops, zero-byte files."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from cxr_viewer.core.io import iter_study_files

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(
        not hasattr(os, "symlink") or not hasattr(os, "mkfifo"), reason="needs POSIX links/FIFOs"
    ),
]


def _tree(root: Path, seeds: dict[str, Path]) -> Path:
    top = root / "study"
    (top / "a" / "b").mkdir(parents=True)
    (top / "c").mkdir()
    (top / "a" / "one.png").write_bytes(seeds["grey8.png"].read_bytes())
    (top / "a" / "b" / "two.dcm").write_bytes(seeds["mono2.dcm"].read_bytes())
    (top / "c" / "three.jpg").write_bytes(seeds["grey.jpg"].read_bytes())
    os.symlink("..", top / "a" / "b" / "up")  # cycle to the parent
    os.symlink(".", top / "c" / "self")  # cycle to itself
    os.symlink(top, top / "c" / "root")  # absolute cycle to the top
    os.symlink("../c", top / "a" / "to_c")  # a second way into c: visited once
    os.symlink("loop2", top / "loop1")  # file link loop
    os.symlink("loop1", top / "loop2")
    os.symlink("missing.png", top / "dangling.png")
    os.mkfifo(top / "pipe.dcm")  # opening it would block forever
    (top / "empty.dcm").write_bytes(b"")
    (top / "DICOMDIR").write_bytes(b"\0" * 200)
    (top / ".hidden.png").write_bytes(seeds["grey8.png"].read_bytes())
    return top


def test_symlink_cycles_fifos_and_loops_end_with_reasons(tmp_path, seeds):
    top = _tree(tmp_path, seeds)
    found = list(iter_study_files([top]))
    images = sorted(f.path.name for f in found if not f.skipped)
    skipped = {f.path.name: f.skip_reason for f in found if f.skipped}
    assert images == ["empty.dcm", "one.png", "three.jpg", "two.dcm"]  # empty.dcm fails at decoding
    assert "not a regular file" in skipped["pipe.dcm"]
    assert "loop" in skipped["loop1"] and "loop" in skipped["loop2"]
    assert "unreadable" in skipped["dangling.png"]
    assert "DICOMDIR" in skipped["DICOMDIR"]
    assert ".hidden.png" not in skipped


def test_the_same_tree_given_twice_and_through_links_is_listed_once(tmp_path, seeds):
    top = _tree(tmp_path, seeds)
    os.symlink(top, tmp_path / "alias")
    found = list(iter_study_files([top, tmp_path / "alias", top / "a" / "one.png", top / "c"]))
    images = [f.path.name for f in found if not f.skipped]
    assert sorted(images) == ["empty.dcm", "one.png", "three.jpg", "two.dcm"]


def test_special_paths_given_directly(tmp_path):
    os.mkfifo(tmp_path / "fifo.png")
    found = {f.path.name: f.skip_reason for f in iter_study_files(
        [tmp_path / "fifo.png", "/dev/null", tmp_path / "nope.dcm"])}  # fmt: skip
    assert "not a regular file" in found["fifo.png"]
    assert "not a regular file" in found["null"]
    assert found["nope.dcm"] == "does not exist"
