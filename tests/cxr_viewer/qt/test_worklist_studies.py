"""Issue 13, studies not files: the worklist groups real NIH and DICOM files by patient and study,
scores a study by its best frontal image, recognises a file or an image opened twice (defect 4), and
selects the top of the triage list once the analysis ends (defect 8)."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image
from qt_support import drop_paths

from cxr_viewer.core.studies import nih_name_keys

if TYPE_CHECKING:
    from pathlib import Path

FINISHED = {"done", "error", "viewed (no model)", "cancelled", "not scored"}


def _all_finished(window, n: int) -> bool:
    return (
        len(window.studies) == n
        and all(s.status in FINISHED for s in window.studies.values())
        and window.is_idle()
    )


def nih_patients(shared_data, tmp_path: Path, patients: tuple[str, ...]) -> tuple[Path, list[Path]]:
    """A folder with every 64 px NIH image of ``patients`` (copied: small files)."""
    source = shared_data("chestxray14-nih1000-64px", "images")
    folder = tmp_path / "nih"
    folder.mkdir()
    files = []
    for patient in patients:
        found = sorted(source.glob(f"{patient}_*.png"))
        if len(found) < 2:
            pytest.skip(f"need several follow-ups of NIH patient {patient}")
        for f in found:
            files.append(shutil.copy(f, folder / f.name))
    return folder, files


def test_nih_images_are_grouped_by_patient_with_priors(
    qtbot, make_window, shared_data, tmp_path: Path, fake_predictor_cls
) -> None:
    folder, files = nih_patients(shared_data, tmp_path, ("00000001", "00000008", "00000021"))
    window = make_window(model_path="fake", predictor_factory=lambda _p: fake_predictor_cls())
    window.open_paths([folder])
    qtbot.waitUntil(lambda: _all_finished(window, len(files)), timeout=60_000)
    worklist = window.worklist
    assert worklist.top_row_count() == 3  # one row per patient, not one per file
    assert worklist.group_count() == len(files)  # each NIH follow-up is a study
    for patient in worklist.patients():
        number = patient.patient.removeprefix("nih:")
        follow_ups = sorted(nih_name_keys(f.name)[1] for f in files if f.name.startswith(number))
        assert patient.current.label == f"follow-up {follow_ups[-1]}"
        assert [s.label for s in patient.priors] == [f"follow-up {n}" for n in reversed(follow_ups[:-1])]
        text = worklist.row_text(patient.current.best_image)
        assert text.startswith(f"{number} \u00b7 follow-up {follow_ups[-1]}")
        assert f"{len(follow_ups) - 1} prior" in text
        # the row's score is its study's: here its one (frontal) image's
        study = window.studies[patient.current.best_image]
        assert patient.current.score == pytest.approx(study.score)
    tops = worklist.top_study_ids()
    scores = [window.studies[sid].score for sid in tops]
    assert scores == sorted(scores, reverse=True)  # studies in triage order


def test_the_same_files_dropped_twice_are_not_added_or_analysed_again(
    qtbot, make_window, tmp_path: Path, fake_predictor_cls, make_dicom
) -> None:
    pydicom = pytest.importorskip("pydicom")
    ramp = np.tile(np.arange(64, dtype=np.uint16) * 40, (64, 1))
    folder = tmp_path / "dicoms"
    folder.mkdir()
    paths = [make_dicom(folder / f"{name}.dcm", ramp, view_position="PA") for name in ("a", "b", "copy")]
    uids = {}
    for path in paths:  # one study; copy.dcm is the same image as a.dcm (a copy under another name)
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
        if path.name == "copy.dcm":
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uids["a.dcm"]
        uids[path.name] = ds.SOPInstanceUID
        ds.save_as(path)
    predictor = fake_predictor_cls()
    window = make_window(model_path="fake", predictor_factory=lambda _p: predictor)
    qtbot.waitUntil(lambda: window.model_status == "ready", timeout=20_000)
    drop_paths(window, paths)
    qtbot.waitUntil(lambda: _all_finished(window, 2) and predictor.calls == 2, timeout=20_000)
    qtbot.wait(200)
    assert sorted(s.name for s in window.studies.values()) in (["a.dcm", "b.dcm"], ["b.dcm", "copy.dcm"])
    assert predictor.calls == 2
    assert window.worklist.top_row_count() == 1
    assert "2 images" in window.worklist.row_text(next(iter(window.studies)))
    drop_paths(window, [folder])  # the same files again (by folder this time)
    qtbot.waitUntil(lambda: "already in the worklist" in window.statusBar().currentMessage(), timeout=10_000)
    assert "Added 0 studies; 3 already in the worklist" in window.statusBar().currentMessage()
    qtbot.wait(300)
    assert len(window.studies) == 2 and window.worklist.study_count() == 2
    assert predictor.calls == 2  # nothing analysed again


@pytest.mark.slow
def test_five_rg1_files_are_one_study(qtbot, make_window, shared_data, fake_predictor_cls) -> None:
    dicom = shared_data("dicom")
    files = [dicom / f"RG1_{v}.dcm" for v in ("UNCI", "UNCR", "J2KR", "J2KI", "JLSN")]
    predictor = fake_predictor_cls()
    window = make_window(model_path="fake", predictor_factory=lambda _p: predictor, max_in_flight=1)
    window.open_paths(files)
    qtbot.waitUntil(lambda: _all_finished(window, 4), timeout=180_000)
    qtbot.wait(200)
    assert len(window.studies) == 4  # RG1_J2KI is the same SOP instance as RG1_UNCI
    assert predictor.calls == 4
    assert window.worklist.top_row_count() == 1
    (patient,) = window.worklist.patients()
    assert patient.priors == ()
    assert len(patient.current.image_ids) == 4
    best = max(window.studies.values(), key=lambda s: s.score)
    assert patient.current.score == pytest.approx(best.score)
    assert window.worklist.score_of(patient.current.best_image) == pytest.approx(best.score)
    # the selected study stayed open while its files moved into it (headers read): its images show
    worklist = window.worklist
    assert worklist.isExpanded(worklist.proxy.index(0, 0))
    assert worklist.proxy.rowCount(worklist.proxy.index(0, 0)) == 4


def test_a_lateral_is_shown_not_scored_and_the_study_takes_the_frontal_score(
    qtbot, make_window, tmp_path: Path, fake_predictor_cls, make_dicom
) -> None:
    pydicom = pytest.importorskip("pydicom")
    bright = np.full((64, 64), 3000, np.uint16)
    dark = np.full((64, 64), 200, np.uint16)
    dark[:8, :8] = 3000
    pa = make_dicom(tmp_path / "pa.dcm", dark, view_position="PA")
    lat = make_dicom(tmp_path / "lat.dcm", bright, view_position="LL")
    for path in (pa, lat):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.2"
        ds.save_as(path)
    window = make_window(model_path="fake", predictor_factory=lambda _p: fake_predictor_cls())
    window.open_paths([pa, lat])
    qtbot.waitUntil(lambda: _all_finished(window, 2), timeout=20_000)
    by_name = {s.name: s for s in window.studies.values()}
    assert by_name["lat.dcm"].status == "not scored"
    assert by_name["lat.dcm"].reason.startswith("lateral view (LL)")
    (patient,) = window.worklist.patients()
    assert patient.current.image_ids == (by_name["pa.dcm"].id, by_name["lat.dcm"].id)  # lateral last
    assert patient.current.score == pytest.approx(by_name["pa.dcm"].score)
    assert window.worklist.status_of(by_name["lat.dcm"].id) == "not scored"
    assert window.worklist.score_text_of(by_name["lat.dcm"].id) == ""
    window.select_study(by_name["lat.dcm"].id)
    qtbot.waitUntil(lambda: window.state.image is not None and window.state.image.name == "lat.dcm")
    assert window.findings_panel.status.text().startswith("Not scored: lateral view (LL)")


def test_the_top_of_the_triage_list_is_selected_after_loading(
    qtbot, make_window, tmp_path: Path, fake_predictor_cls
) -> None:
    names = []
    for i, level in enumerate((20, 90, 250)):  # the fake model scores brighter images higher
        arr = np.full((48, 48), level, np.uint8)
        arr[0, 0] = 255
        Image.fromarray(arr).save(tmp_path / f"img_{i}.png")
        names.append(tmp_path / f"img_{i}.png")
    window = make_window(model_path="fake", predictor_factory=lambda _p: fake_predictor_cls())
    qtbot.waitUntil(lambda: window.model_status == "ready", timeout=20_000)
    window.open_paths(names)
    qtbot.waitUntil(lambda: _all_finished(window, 3), timeout=20_000)
    top = window.worklist.top_study_ids()[0]
    assert window.studies[top].name == "img_2.png"  # not the first file opened
    qtbot.waitUntil(lambda: window.worklist.current_study() == top, timeout=5_000)
    qtbot.waitUntil(lambda: window.state.image is not None and window.state.image.name == "img_2.png")
    # a study the user chose is left alone when more files arrive
    first = next(s.id for s in window.studies.values() if s.name == "img_0.png")
    window.select_study(first)
    arr = np.full((48, 48), 255, np.uint8)
    Image.fromarray(arr).save(tmp_path / "img_3.png")
    window.open_paths([tmp_path / "img_3.png"])
    qtbot.waitUntil(lambda: _all_finished(window, 4), timeout=20_000)
    qtbot.wait(200)
    assert window.worklist.current_study() == first
