"""File > Export results (Ctrl+E) through the real window: a real model, the real RG1 film and a PNG,
the dialog filled and accepted with qtbot, the export run on its worker, the files read back."""

from __future__ import annotations

import csv
import threading
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QDialogButtonBox

from cxr_viewer.core.io import load_image
from cxr_viewer.results.export import CSV_NAME, SUMMARY_STEM

pytestmark = pytest.mark.slow


def _analysed(qtbot, window, n: int) -> None:
    qtbot.waitUntil(
        lambda: (
            len(window.studies) == n
            and window.is_idle()
            and all(s.status.finished for s in window.studies.values())
        ),
        timeout=180_000,
    )


def _small_png(folder: Path) -> Path:
    from PIL import Image

    arr = np.tile(np.linspace(30, 220, 96, dtype=np.uint8), (96, 1))
    path = folder / "chest.png"
    Image.fromarray(arr).save(path)
    return path


def _export(qtbot, window, folder: Path, whole: bool):
    assert window.export_action.shortcut() == QKeySequence("Ctrl+E")
    assert window.export_action in window.menuBar().actions()[0].menu().actions()  # under File
    window.export_action.trigger()
    dialog = window.export.dialog
    assert dialog is not None and dialog.isVisible()
    (dialog.worklist_radio if whole else dialog.current_radio).setChecked(True)
    dialog.folder_edit.setText(str(folder))
    with qtbot.waitSignal(window.export.done, timeout=180_000) as blocker:
        qtbot.mouseClick(dialog.buttons.button(QDialogButtonBox.StandardButton.Ok), Qt.MouseButton.LeftButton)
    return blocker.args[0]


def test_export_worklist_dicom_csv_and_summary(qtbot, make_window, tiny_checkpoint, shared_data, tmp_path):
    rg1 = shared_data("dicom", "RG1_UNCI.dcm")
    png = _small_png(tmp_path)
    window = make_window(model_path=str(tiny_checkpoint))
    qtbot.waitUntil(lambda: window.model_status == "ready", timeout=120_000)
    window.open_paths([rg1, png])
    _analysed(qtbot, window, 2)
    assert {s.status for s in window.studies.values()} == {"done"}

    gui = threading.get_ident()
    seen: list[int] = []
    window.export.worker.progressed.connect(
        lambda *_: seen.append(threading.get_ident()), Qt.ConnectionType.DirectConnection
    )
    out = tmp_path / "export"
    report = _export(qtbot, window, out, whole=True)
    assert seen and all(t != gui for t in seen)  # written on the export thread, not the GUI's

    names = sorted(p.name for p in report.written)
    assert [n[:3] for n in names if n.endswith(".dcm")] == ["SC_", "SR_"]
    assert {CSV_NAME, f"{SUMMARY_STEM}.png", f"{SUMMARY_STEM}.pdf"} <= set(names)
    # the PNG has no DICOM study: one failure line saying so; the RG1 study is exported
    assert report.failures == (("chest.png", report.failures[0][1]),)
    assert "not DICOM" in report.failures[0][1]
    assert window.export.message_box is not None and "chest.png" in window.export.message_box.text()

    with open(out / CSV_NAME, newline="", encoding="utf-8") as fh:
        rows = {Path(r["file"]).name: r for r in csv.DictReader(fh)}
    assert set(rows) == {"RG1_UNCI.dcm", "chest.png"} and not rows["chest.png"]["error"]
    sr_path = next(p for p in report.written if p.name.startswith("SR_"))
    sr = hd.sr.srread(sr_path)
    groups = hd.sr.MeasurementReport.from_sequence([sr]).get_image_measurement_groups()
    study = next(s for s in window.studies.values() if s.name == "RG1_UNCI.dcm")
    for g in groups[:-1]:
        name = str(g.tracking_identifier)
        p = next(
            float(m.value) for m in g.get_measurements() if m.name.meaning.startswith("Model probability")
        )
        assert f"{p:.6f}" == rows["RG1_UNCI.dcm"][f"prob_{name}"]
        k = study.prediction.class_names.index(name)
        assert p == float(study.prediction.probabilities[k])  # what the window shows, exactly
    src = pydicom.dcmread(rg1, stop_before_pixels=True)
    assert sr.StudyInstanceUID == src.StudyInstanceUID and sr.SeriesInstanceUID != src.SeriesInstanceUID
    sc_path = next(p for p in report.written if p.name.startswith("SC_"))
    assert load_image(sc_path).shape == (src.Rows, src.Columns)  # opens in the viewer's reader
    summary = load_image(out / f"{SUMMARY_STEM}.png")
    assert summary.shape[0] > summary.shape[1] > 500  # a portrait page
    assert (out / f"{SUMMARY_STEM}.pdf").read_bytes().startswith(b"%PDF")


def test_export_current_study_only(qtbot, make_window, tiny_checkpoint, tmp_path):
    png = _small_png(tmp_path)
    window = make_window(model_path=str(tiny_checkpoint))
    qtbot.waitUntil(lambda: window.model_status == "ready", timeout=120_000)
    window.open_paths([png])
    _analysed(qtbot, window, 1)
    window.select_study(next(iter(window.studies)))
    qtbot.waitUntil(lambda: window.pipeline.shown in window.studies, timeout=30_000)
    out = tmp_path / "one"
    window.export_action.trigger()
    window.export.dialog.format_boxes[next(iter(window.export.dialog.format_boxes))].setChecked(
        False
    )  # DICOM
    window.export.dialog.current_radio.setChecked(True)
    window.export.dialog.folder_edit.setText(str(out))
    with qtbot.waitSignal(window.export.done, timeout=120_000) as blocker:
        window.export.dialog.accept()
    report = blocker.args[0]
    assert report.failures == () and report.studies == 1
    assert sorted(p.name for p in report.written) == sorted(
        [CSV_NAME, f"{SUMMARY_STEM}.pdf", f"{SUMMARY_STEM}.png"]
    )


def test_export_into_an_unwritable_place_is_a_message_not_a_crash(
    qtbot, make_window, tiny_checkpoint, tmp_path
):
    png = _small_png(tmp_path)
    blocker_file = tmp_path / "a_file"
    blocker_file.write_text("x")
    window = make_window(model_path=str(tiny_checkpoint))
    qtbot.waitUntil(lambda: window.model_status == "ready", timeout=120_000)
    window.open_paths([png])
    _analysed(qtbot, window, 1)
    report = _export(qtbot, window, blocker_file / "sub", whole=True)
    assert report.written == () and "cannot write" in report.failures[0][1]
    assert window.export.message_box is not None and window.export.message_box.isVisible()
    assert not window.export.busy  # a second export can start
