"""Open from PACS against a real Orthanc (DICOMweb plugin) on loopback: the Qt-free client's QIDO-RS
searches and WADO-RS retrieve, then the window's dialog through qtbot, which retrieves RG1 and shows it
in the worklist with findings from a real model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from PySide6.QtCore import Qt

from cxr_viewer.pacs import PacsConfig, PacsError, StudyQuery, retrieve_study, search_studies
from cxr_viewer.qt.pacs_dialog import pacs_cache_folder


@pytest.fixture
def pacs(orthanc, shared_data):
    """The test Orthanc holding RG1 (CR chest, patient 9RG1) and RG3 (CR extremity)."""
    for name in ("RG1_UNCI.dcm", "RG3_UNCI.dcm"):
        orthanc.upload(shared_data("dicom", name))
    return orthanc


def _uids(path: Path) -> tuple[str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SOPInstanceUID)


def test_search_by_patient_date_and_modality(pacs, shared_data):
    rg1_study, _ = _uids(shared_data("dicom", "RG1_UNCI.dcm"))
    config = PacsConfig(pacs.dicomweb_url)
    assert len(search_studies(config, StudyQuery())) == 2
    by_id = search_studies(config, StudyQuery(patient_id="9RG1"))
    assert [m.study_uid for m in by_id] == [rg1_study]
    assert by_id[0].patient_id == "9RG1" and by_id[0].modalities == ("CR",)
    assert "RG1" not in repr(by_id[0])  # patient data stays out of reprs (and so out of tracebacks)
    by_name = search_studies(config, StudyQuery(patient_name="CompressedSamples^RG1"))
    assert [m.study_uid for m in by_name] == [rg1_study]
    src = pydicom.dcmread(shared_data("dicom", "RG1_UNCI.dcm"), stop_before_pixels=True)
    day = str(src.StudyDate)
    in_range = search_studies(config, StudyQuery(patient_id="9RG1", date_from=day, date_to=day))
    assert [m.study_uid for m in in_range] == [rg1_study]
    assert (
        search_studies(config, StudyQuery(patient_id="9RG1", date_from="19000101", date_to="19000102")) == []
    )
    assert search_studies(config, StudyQuery(patient_id="9RG1", modality="MR")) == []
    assert [m.study_uid for m in search_studies(config, StudyQuery(patient_id="9RG1", modality="cr"))] == [
        rg1_study
    ]


def test_retrieve_writes_the_instances_with_progress(pacs, shared_data, tmp_path):
    rg1 = shared_data("dicom", "RG1_UNCI.dcm")
    study, sop = _uids(rg1)
    progress: list[tuple[int, int]] = []
    files = retrieve_study(
        PacsConfig(pacs.dicomweb_url),
        study,
        tmp_path / "got",
        on_progress=lambda d, t: progress.append((d, t)),
    )
    assert [f.name for f in files] == [f"{sop}.dcm"]
    assert progress == [(0, 1), (1, 1)]
    got, original = pydicom.dcmread(files[0]), pydicom.dcmread(rg1)
    assert got.SOPInstanceUID == original.SOPInstanceUID
    np.testing.assert_array_equal(got.pixel_array, original.pixel_array)
    # cancelled before the first instance: nothing fetched
    assert (
        retrieve_study(PacsConfig(pacs.dicomweb_url), study, tmp_path / "none", cancelled=lambda: True) == []
    )


def test_unreachable_server_and_bad_query_are_clear_errors(tmp_path, caplog):
    from helpers.orthanc import free_port

    config = PacsConfig(f"http://127.0.0.1:{free_port()}/dicom-web", timeout=5)
    with (
        caplog.at_level("DEBUG"),
        pytest.raises(PacsError, match=r"study search failed at http://127\.0\.0\.1:.*cannot connect") as err,
    ):
        search_studies(config, StudyQuery(patient_id="SECRET-ID-123", patient_name="Doe^Jane"))
    for text in (caplog.text, str(err.value)):  # the query's patient data reaches no log or message
        assert "SECRET" not in text and "Doe" not in text
    with pytest.raises(ValueError, match="YYYYMMDD"):
        StudyQuery(date_from="2024-01-01").filters()
    with pytest.raises(PacsError, match="not a DICOMweb address"):
        search_studies(PacsConfig("ftp://example"), StudyQuery())


@pytest.mark.slow
def test_open_from_pacs_shows_rg1_with_findings(
    qtbot, make_window, tiny_checkpoint, pacs, tmp_path, monkeypatch
):
    monkeypatch.setenv("CXR_VIEWER_PACS_CACHE", str(tmp_path / "cache"))
    window = make_window(model_path=str(tiny_checkpoint))
    qtbot.waitUntil(lambda: window.model_status == "ready", timeout=120_000)
    window.open_pacs_action.trigger()
    dialog = window.pacs.dialog
    assert dialog is not None and dialog.isVisible()
    dialog.url_edit.setText(pacs.dicomweb_url)
    dialog.patient_id_edit.setText("9RG1")
    dialog.modality_edit.setText("CR")
    qtbot.mouseClick(dialog.search_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.table.rowCount() == 1 and dialog.search_button.isEnabled(), timeout=30_000)
    assert dialog.table.item(0, 1).text() == "9RG1"
    assert dialog.retrieve_button.isEnabled()
    with qtbot.waitSignal(window.pacs.opened, timeout=60_000) as blocker:
        qtbot.mouseClick(dialog.retrieve_button, Qt.MouseButton.LeftButton)
    files = blocker.args[0]
    assert len(files) == 1 and Path(files[0]).is_relative_to(pacs_cache_folder())
    assert dialog.progress.isHidden() and "Retrieved 1 images" in dialog.status_label.text()
    qtbot.waitUntil(
        lambda: (
            len(window.studies) == 1
            and window.is_idle()
            and all(s.status.finished for s in window.studies.values())
        ),
        timeout=120_000,
    )
    study = next(iter(window.studies.values()))
    assert study.status == "done" and len(study.findings) == 8 and study.score is not None
    window.select_study(study.id)
    qtbot.waitUntil(lambda: window.state.image is not None, timeout=30_000)
    assert window.state.image.shape == (1955, 1841)
    assert window.findings_panel.list.count() >= 1  # the findings are listed beside the image


def test_dialog_reports_an_unreachable_server(qtbot, make_window):
    from helpers.orthanc import free_port

    window = make_window(model_path=None)
    window.open_pacs_action.trigger()
    dialog = window.pacs.dialog
    dialog.url_edit.setText(f"http://127.0.0.1:{free_port()}/dicom-web")
    qtbot.mouseClick(dialog.search_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "cannot connect" in dialog.status_label.text(), timeout=30_000)
    assert dialog.search_button.isEnabled() and dialog.table.rowCount() == 0
