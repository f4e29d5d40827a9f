"""Result files on disk, and what importing the results and PACS packages loads (a subprocess)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pydicom
import pytest

from cxr_viewer.results import result_file_name, write_results


def _sc_like(uid: str) -> pydicom.Dataset:
    import highdicom as hd

    src = pydicom.Dataset()
    src.StudyInstanceUID, src.SOPInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    src.SOPClassUID = pydicom.uid.ComputedRadiographyImageStorage
    for kw in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyDate",
        "StudyTime",
        "ReferringPhysicianName",
        "StudyID",
        "AccessionNumber",
    ):
        setattr(src, kw, None)
    return hd.sc.SCImage.from_ref_dataset(
        src,
        np.zeros((8, 8, 3), np.uint8),
        "RGB",
        8,
        "PATIENT",
        pydicom.uid.generate_uid(),
        1,
        uid,
        1,
        "test",
        patient_orientation=("L", "F"),
    )


def test_write_results_whole_files_readable_as_the_umask_says(tmp_path):
    uid = pydicom.uid.generate_uid()
    ds = _sc_like(uid)
    umask = os.umask(0o022)
    os.umask(umask)
    [path] = write_results([ds], tmp_path / "out")
    assert path.name == result_file_name(ds) == f"SC_{uid}.dcm"
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    assert pydicom.dcmread(path).SOPInstanceUID == uid
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no .part left
    [again] = write_results([ds], tmp_path / "out")  # the same result again replaces its file
    assert again == path and len(list(path.parent.iterdir())) == 1


def test_write_results_under_a_file_is_an_oserror(tmp_path):
    blocker = tmp_path / "f"
    blocker.write_text("x")
    with pytest.raises(NotADirectoryError):
        write_results([_sc_like(pydicom.uid.generate_uid())], blocker / "sub")


def test_importing_results_and_pacs_loads_no_qt_torch_or_model():
    code = (
        "import sys, json; import cxr_viewer.results, cxr_viewer.results.export, cxr_viewer.pacs; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'PySide6', 'pyqtgraph', 'torch', 'cral_model'})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@pytest.mark.slow
def test_results_benchmark_quick_prints_its_table(capsys):
    from benchmarks.results_dicom import DICOM, main

    if not (DICOM / "RG1_UNCI.dcm").exists():
        pytest.skip(f"shared test data not available: {DICOM}")
    assert main(["--quick"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("RG1_UNCI.dcm"))
    assert "1955x1841" in row and row.split()[-1] == "10.80"  # the SC of RG1: 1955 x 1841 x 3 bytes + header
