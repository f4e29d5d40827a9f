"""The main window end to end (offscreen) with a fake predictor: drop, analyse, select, cancel, close."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from qt_support import drop_paths as _drop

from cxr_viewer.core.state import SALIENCY

if TYPE_CHECKING:
    from pathlib import Path

FINISHED = {"done", "error", "viewed (no model)", "cancelled"}


def _all_finished(window, n: int) -> bool:
    return (
        len(window.studies) == n
        and all(s.status in FINISHED for s in window.studies.values())
        and window.is_idle()
    )


def test_no_model_says_so_and_still_views(qtbot, make_window, studies_folder: Path) -> None:
    window = make_window(model_path=None)
    assert "No trained model loaded" in window.model_label.text()
    _drop(window, [studies_folder])
    qtbot.waitUntil(lambda: _all_finished(window, 3), timeout=20_000)
    assert window.worklist.study_count() == 3
    assert {s.status for s in window.studies.values()} == {"viewed (no model)"}
    assert any(f.path.name == "notes.txt" for f in window.skipped)
    qtbot.waitUntil(lambda: window.state.image is not None, timeout=10_000)
    assert "No trained model loaded" in window.findings_panel.status.text()
    from cxr_viewer.inference import model_card_text

    assert "not for clinical use" in model_card_text(window.model_info).lower()


def test_missing_default_model_is_reported(qtbot, make_window, monkeypatch) -> None:
    monkeypatch.setattr("cxr_viewer.inference.default_model_path", lambda: None)
    window = make_window(model_path="")
    qtbot.waitUntil(lambda: window.model_status == "missing", timeout=20_000)
    assert "No trained model loaded" in window.model_label.text()


def test_drop_on_child_widget_fills_worklist(
    qtbot, make_window, studies_folder: Path, fake_predictor_cls
) -> None:
    window = make_window(model_path="fake", predictor_factory=lambda _p: fake_predictor_cls())
    _drop(window, [studies_folder], target=window.image_view.graphics.viewport())
    qtbot.waitUntil(lambda: _all_finished(window, 3), timeout=20_000)
    assert {s.status for s in window.studies.values()} == {"done"}
    scores = [window.worklist.score_of(sid) for sid in window.worklist.study_ids_in_view_order()]
    assert scores == sorted(scores, reverse=True)  # most suspicious first
    assert all(s is not None for s in scores)
    assert window.settings.value("last_folder") == str(studies_folder)
    assert "on CPU" in window.model_label.text()


def test_broken_file_is_an_error_row_and_the_rest_is_analysed(
    qtbot, make_window, studies_folder: Path, fake_predictor_cls
) -> None:
    (studies_folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    (studies_folder / "truncated.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00")
    window = make_window(model_path="fake", predictor_factory=lambda _p: fake_predictor_cls())
    window.open_paths([studies_folder])
    qtbot.waitUntil(lambda: _all_finished(window, 5), timeout=20_000)
    by_name = {s.name: s for s in window.studies.values()}
    assert by_name["broken.png"].status == "error"
    assert by_name["broken.png"].reason
    assert by_name["truncated.dcm"].status == "error"
    assert window.worklist.status_of(by_name["broken.png"].id).startswith("error: ")
    assert [s.status for n, s in sorted(by_name.items()) if n.startswith("img_")] == ["done"] * 3
    window.select_study(by_name["broken.png"].id)
    qtbot.waitUntil(lambda: "cannot be shown" in window.image_view.placeholder.text(), timeout=5_000)


def test_selecting_a_finding_changes_the_overlay(
    qtbot, make_window, studies_folder: Path, fake_predictor_cls
) -> None:
    window = make_window(model_path="fake", predictor_factory=lambda _p: fake_predictor_cls())
    window.open_paths([studies_folder / "img_0.png"])
    qtbot.waitUntil(lambda: _all_finished(window, 1) and window.state.prediction is not None, timeout=20_000)
    panel = window.findings_panel
    assert len(panel.findings()) == 8
    assert panel.list.count() == 9  # 8 findings + the class-agnostic map
    assert window.image_view.overlay_image() is None
    panel.select_row(0)
    first = window.image_view.overlay_image()
    assert first is not None
    assert window.state.selected_map == panel.findings()[0].index
    assert first.shape == window.state.image.shape
    caption = window.image_view.corner_bottom_right.text()
    assert caption.startswith("Map: Finding 0 ")
    assert "(threshold 50.0%)" in caption and "4 x 4 map" in caption  # the grid is said
    panel.select_row(1)
    second = window.image_view.overlay_image()
    assert second is not None
    assert not np.allclose(first, second)
    panel.select_row(8)
    assert window.state.selected_map == SALIENCY
    assert window.image_view.overlay_image() is not None
    panel.show_overlay.setChecked(False)
    assert window.image_view.overlay_image() is None
    assert not window.image_view.overlay_item.isVisible()
    panel.show_overlay.setChecked(True)
    panel.opacity.setValue(80)
    assert window.image_view.overlay_item.opacity() == pytest.approx(0.8)
    window.close()
    assert float(window.settings.value("overlay_opacity")) == pytest.approx(0.8)


def test_cancel_drops_stale_results(qtbot, make_window, studies_folder: Path, fake_predictor_cls) -> None:
    predictor = fake_predictor_cls(delay=5.0)
    window = make_window(model_path="fake", predictor_factory=lambda _p: predictor, max_in_flight=1)
    window.open_paths([studies_folder])
    qtbot.waitUntil(lambda: any(s.status == "analysing" for s in window.studies.values()), timeout=20_000)
    assert window.progress.isVisible()  # progress in the status bar while analysing
    assert window.progress.maximum() == 3
    window.cancel_action.trigger()
    assert {s.status for s in window.studies.values()} == {"cancelled"}
    predictor.release.set()  # the running analysis finishes now; its answer must be ignored
    qtbot.waitUntil(lambda: predictor.calls >= 1, timeout=5_000)
    qtbot.wait(300)
    assert {s.status for s in window.studies.values()} == {"cancelled"}
    assert all(s.prediction is None for s in window.studies.values())
    assert predictor.calls == 1  # the queued ones were never run
    predictor.delay = 0.0
    window.reanalyse_action.trigger()
    qtbot.waitUntil(
        lambda: _all_finished(window, 3) and {s.status for s in window.studies.values()} == {"done"},
        timeout=20_000,
    )


def test_new_model_supersedes_old_results(
    qtbot, make_window, studies_folder: Path, fake_predictor_cls
) -> None:
    models = iter([fake_predictor_cls(), fake_predictor_cls(thresholds=False)])
    window = make_window(model_path="first", predictor_factory=lambda _p: next(models))
    window.open_paths([studies_folder / "img_1.png"])
    qtbot.waitUntil(lambda: _all_finished(window, 1) and window.model_info is not None, timeout=20_000)
    first_score = window.worklist.score_of(1)
    with qtbot.waitSignal(window.model_changed, timeout=10_000):
        window.load_model("second.safetensors")
    qtbot.waitUntil(
        lambda: _all_finished(window, 1) and window.studies[1].model_generation == 2, timeout=20_000
    )
    assert window.model_info.thresholds is None
    assert window.worklist.score_of(1) != first_score  # without thresholds: the max probability


def test_close_during_analysis_shuts_down_cleanly(
    qtbot, make_window, studies_folder: Path, fake_predictor_cls
) -> None:
    predictor = fake_predictor_cls(delay=0.5)
    window = make_window(model_path="fake", predictor_factory=lambda _p: predictor)
    window.open_paths([studies_folder])
    qtbot.waitUntil(lambda: any(s.status == "analysing" for s in window.studies.values()), timeout=20_000)
    window.close()  # must wait for the running prediction, drop the rest, and not raise
    assert not window.inference_thread.thread.isRunning()
    assert not window.loader_thread.thread.isRunning()
    assert predictor.calls <= 2


def test_keyboard_navigation_and_view_tools(qtbot, make_window, studies_folder: Path) -> None:
    window = make_window(model_path=None)
    window.open_paths([studies_folder])
    qtbot.waitUntil(lambda: _all_finished(window, 3) and window.state.image is not None, timeout=20_000)
    order = window.worklist.study_ids_in_view_order()
    window.worklist.setFocus()
    window.select_study(order[0])
    with qtbot.waitSignal(window.study_shown, timeout=5_000) as shown:
        qtbot.keyClick(window.worklist, Qt.Key.Key_Down)
    assert shown.args == [order[1]]
    qtbot.waitUntil(
        lambda: (
            window.state.image is not None and window.state.image.source.name == window.studies[order[1]].name
        ),
        timeout=5_000,
    )
    # window/level by drag, invert, rotate, presets
    before = window.state.window
    window.image_view.drag_window(40, -20)  # right and up: wider and brighter
    assert window.state.window[1] > before[1]
    assert window.state.window[0] < before[0]
    window.auto_window_action.trigger()
    window.invert_action.trigger()
    assert window.state.invert
    shape = window.state.image.shape
    window.rotate_action.trigger()
    assert window.image_view.base_item.image.shape == (shape[1], shape[0])
    window.reset_view_action.trigger()
    assert not window.state.invert
    info = window.image_view.pixel_info_at(2.5, 3.5)
    assert info.startswith("x 2  y 3  value ")
    assert window.image_view.pixel_info_at(-5, 3) == ""


def test_measurement_units(qtbot, make_window, tmp_path: Path, make_dicom) -> None:
    ramp = np.tile(np.arange(64, dtype=np.uint16) * 50, (48, 1))
    make_dicom(tmp_path / "ps.dcm", ramp, pixel_spacing=(0.2, 0.25))
    make_dicom(tmp_path / "ips.dcm", ramp, imager_pixel_spacing=(0.1, 0.1))
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "none.png")
    window = make_window(model_path=None)
    window.open_paths([tmp_path / "ps.dcm", tmp_path / "ips.dcm", tmp_path / "none.png"])
    qtbot.waitUntil(lambda: _all_finished(window, 3), timeout=20_000)
    expected = {"ps.dcm": "10.0 mm", "ips.dcm": "4.0 mm at detector", "none.png": "40 px (no spacing)"}
    for study in window.studies.values():
        window.select_study(study.id)
        qtbot.waitUntil(
            lambda s=study: window.state.image is not None and window.state.image.name == s.name,
            timeout=5_000,
        )
        window.image_view.set_measurement((0.0, 0.0), (40.0, 0.0))
        assert window.image_view.measurement_text() == expected[study.name]
    window.image_view.clear_measurement()
    assert window.measure_label.text() == ""


def test_monochrome1_chest_is_displayed_with_dark_lungs(qtbot, make_window, shared_data) -> None:
    import pyqtgraph as pg

    path = shared_data("dicom", "RG1_UNCI.dcm")
    window = make_window(model_path=None)
    window.open_paths([path])
    qtbot.waitUntil(lambda: window.state.image is not None, timeout=30_000)
    item = window.image_view.base_item
    item.render()  # what is on screen: the windowed, LUT-mapped picture
    shown = pg.functions.ndarray_from_qimage(item.qimage)
    grey = shown[..., :3].mean(axis=-1) if shown.ndim == 3 else shown.astype(float)
    h, w = grey.shape
    lungs = np.concatenate(
        [
            grey[int(0.3 * h) : int(0.55 * h), int(0.2 * w) : int(0.38 * w)].ravel(),
            grey[int(0.3 * h) : int(0.55 * h), int(0.62 * w) : int(0.8 * w)].ravel(),
        ]
    )
    mediastinum = grey[int(0.3 * h) : int(0.55 * h), int(0.46 * w) : int(0.54 * w)]
    assert np.median(lungs) < np.median(mediastinum) - 20  # on the 0-255 display scale
    assert np.median(lungs) < np.median(grey)
    assert not window.state.invert


def test_voi_lut_sequence_is_the_default_display(qtbot, make_window, tmp_path: Path, make_dicom) -> None:
    raw = np.tile(np.arange(64, dtype=np.uint16) * 60, (48, 1))
    table = (np.linspace(0, 1, 4096) ** 0.5 * 65535).astype(np.uint16)
    make_dicom(tmp_path / "lut.dcm", raw, voi_lut=(0, table))
    window = make_window(model_path=None)
    window.open_paths([tmp_path / "lut.dcm"])
    qtbot.waitUntil(lambda: window.state.image is not None, timeout=20_000)
    assert window.state.use_voi_lut
    assert window.preset_combo.itemText(0) == "File VOI LUT (test LUT)"
    assert "VOI LUT" in window.image_view.corner_bottom_left.text()
    shown = window.image_view.base_item.image
    assert shown.max() <= 1.0
    assert shown[0, 10] == pytest.approx(np.sqrt(600 / 4095), abs=2e-3)
    window.image_view.drag_window(10, 0)  # dragging switches to a linear window
    assert not window.state.use_voi_lut
    assert window.image_view.base_item.image.max() > 1.0
    window.preset_combo.activated.emit(0)
    assert window.state.use_voi_lut


def test_patient_data_stays_out_of_logs_and_output(
    qtbot, make_window, tmp_path: Path, make_dicom, caplog, capfd, fake_predictor_cls
) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    make_dicom(tmp_path / "p.dcm", np.tile(np.arange(32, dtype=np.uint16), (32, 1)), patient_name="Doe^Jane")
    (tmp_path / "broken.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x00" * 10)
    window = make_window(model_path="fake", predictor_factory=lambda _p: fake_predictor_cls())
    window.open_paths([tmp_path])
    qtbot.waitUntil(lambda: _all_finished(window, 2), timeout=20_000)
    window.select_study(next(s.id for s in window.studies.values() if s.name == "p.dcm"))
    qtbot.waitUntil(lambda: window.state.image is not None, timeout=5_000)
    assert "Doe Jane" in window.image_view.corner_top_right.text()  # shown on screen ...
    out, err = capfd.readouterr()
    for text in (caplog.text, out, err, *(s.reason for s in window.studies.values())):
        assert "Doe" not in text  # ... but never logged or printed
        assert "SECRET-ID" not in text


def test_geometry_is_remembered(qtbot, make_window, settings) -> None:
    window = make_window(model_path=None, size=(760, 540))  # fits the offscreen platform's 800x600 screen
    qtbot.wait(50)
    window.close()
    assert not settings.value("geometry").isEmpty()
    again = make_window(model_path=None, size=None)
    assert (again.size().width(), again.size().height()) == (760, 540)  # not the default 1400 x 860


def test_menus_open_files_folder_and_model(
    qtbot, make_window, studies_folder: Path, monkeypatch, fake_predictor_cls
) -> None:
    from PySide6.QtWidgets import QFileDialog, QTextBrowser

    window = make_window(model_path=None, predictor_factory=lambda _p: fake_predictor_cls())
    png = studies_folder / "img_0.png"
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", lambda *a, **k: ([str(png)], ""))
    window.open_files_action.trigger()
    qtbot.waitUntil(lambda: len(window.studies) == 1, timeout=10_000)
    assert window.settings.value("last_folder") == str(studies_folder)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(studies_folder / "nested"))
    window.open_folder_action.trigger()
    qtbot.waitUntil(lambda: len(window.studies) == 2 and window.is_idle(), timeout=10_000)
    assert {s.status for s in window.studies.values()} == {"viewed (no model)"}
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: ("chosen.safetensors", ""))
    with qtbot.waitSignal(window.model_changed, timeout=10_000):
        window.load_model_action.trigger()
    qtbot.waitUntil(lambda: {s.status for s in window.studies.values()} == {"done"}, timeout=20_000)
    assert window.model_info.name == "chosen.safetensors"
    window.about_model_action.trigger()
    dialog = window._model_card_dialog
    text = dialog.findChild(QTextBrowser)
    assert "NOT FOR CLINICAL USE" in text.toPlainText()
    assert "chosen.safetensors" in text.toPlainText()
    dialog.close()
    window.clear_action.trigger()
    assert window.worklist.study_count() == 0
    assert window.state.image is None


def test_histogram_region_follows_and_sets_the_window(qtbot, make_window, studies_folder: Path) -> None:
    window = make_window(model_path=None)
    window.open_paths([studies_folder / "img_1.png"])
    qtbot.waitUntil(lambda: window.state.image is not None, timeout=10_000)
    hist = window.histogram
    assert hist.isVisible()
    assert hist.region.getRegion() == pytest.approx((0.0, 255.0))  # 8-bit PNG: shown as stored
    window.state.update(window=(100.0, 50.0))
    assert hist.region.getRegion() == pytest.approx((75.0, 125.0))
    hist.region.setRegion((10.0, 30.0))  # as a drag would
    assert window.state.window == pytest.approx((20.0, 20.0))
    assert window.image_view.base_item.levels == pytest.approx([10.0, 30.0])
