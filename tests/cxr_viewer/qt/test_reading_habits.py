"""Issue 13, reading habits: PageUp/PageDown step studies and arrows step images (RadiAnt / Weasis),
current and prior side by side with linked zoom/pan, the DICOM tag browser (PHI on screen only),
worklist housekeeping (remove a study, read/unread, flagged only, search by name)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from test_worklist_studies import _all_finished, nih_patients

if TYPE_CHECKING:
    from pathlib import Path

PATIENTS = ("00000001", "00000008", "00000021")


@pytest.fixture
def nih_window(qtbot, make_window, shared_data, tmp_path: Path, fake_predictor_cls):
    """A window with every 64 px image of three NIH patients (7 files), analysed by the fake model,
    plus one almost black PNG whose findings stay below threshold."""
    folder, files = nih_patients(shared_data, tmp_path, PATIENTS)
    dark = np.zeros((64, 64), np.uint8)
    dark[0, 0] = 255
    Image.fromarray(dark).save(folder / "dark.png")
    window = make_window(model_path="fake", predictor_factory=lambda _p: fake_predictor_cls())
    qtbot.waitUntil(lambda: window.model_status == "ready", timeout=20_000)
    window.open_paths([folder])
    qtbot.waitUntil(lambda: _all_finished(window, len(files) + 1), timeout=60_000)
    return window


def _shown_name(window) -> str:
    return "" if window.state.image is None else window.state.image.name


def test_page_keys_step_studies_and_arrows_step_images(qtbot, nih_window) -> None:
    window, worklist = nih_window, nih_window.worklist
    tops = worklist.top_study_ids()
    assert len(tops) == 4
    window.select_study(tops[0])
    worklist.setFocus()
    with qtbot.waitSignal(window.study_shown, timeout=5_000) as shown:
        qtbot.keyClick(worklist, Qt.Key.Key_PageDown)
    assert shown.args == [tops[1]]
    qtbot.keyClick(worklist, Qt.Key.Key_PageDown)
    qtbot.keyClick(worklist, Qt.Key.Key_PageDown)
    qtbot.keyClick(worklist, Qt.Key.Key_PageDown)  # clamped at the last study
    assert worklist.current_study() == tops[3]
    qtbot.keyClick(worklist, Qt.Key.Key_PageUp)
    assert worklist.current_study() == tops[2]
    # on the image: Down/Right = next image (priors included), Up/Left = previous
    order = worklist.study_ids_in_view_order()
    window.select_study(tops[0])
    graphics = window.image_view.graphics
    graphics.setFocus()
    qtbot.waitUntil(graphics.hasFocus, timeout=2_000)
    start = order.index(tops[0])
    with qtbot.waitSignal(window.study_shown, timeout=5_000) as shown:
        qtbot.keyClick(graphics, Qt.Key.Key_Down)
    assert shown.args == [order[start + 1]]
    assert worklist.patient_of(order[start + 1]).patient == worklist.patient_of(tops[0]).patient  # a prior
    qtbot.keyClick(graphics, Qt.Key.Key_Right)
    assert worklist.current_study() == order[start + 2]
    qtbot.keyClick(graphics, Qt.Key.Key_Up)
    qtbot.keyClick(graphics, Qt.Key.Key_Left)
    assert worklist.current_study() == order[start]
    qtbot.waitUntil(lambda: _shown_name(window) == window.studies[order[start]].name, timeout=5_000)
    # the menu actions do the same from anywhere
    window.next_action.trigger()
    assert worklist.current_study() == worklist.top_study_ids()[1]
    window.prev_image_action.trigger()
    assert worklist.current_study() == order[order.index(worklist.top_study_ids()[1]) - 1]


def test_current_and_prior_side_by_side_with_linked_zoom_and_pan(qtbot, nih_window) -> None:
    window, worklist = nih_window, nih_window.worklist
    patient = next(p for p in worklist.patients() if p.patient == "nih:00000001")
    current, prior = patient.current, patient.priors[0]
    window.select_study(current.best_image)
    qtbot.waitUntil(lambda: _shown_name(window) == window.studies[current.best_image].name, timeout=5_000)
    assert not window.prior_view.isVisible()
    window.compare_action.trigger()
    assert window.compare_action.isChecked() and window.prior_view.isVisible()
    prior_name = window.studies[prior.best_image].name
    view = window.prior_view
    qtbot.waitUntil(
        lambda: view.state.image is not None and view.state.image.name == prior_name, timeout=5_000
    )
    assert view.caption.text() == f"Prior: {prior.label} \u00b7 {prior_name}"
    assert view.image_view.base_item.image is not None  # drawn
    main_box, prior_box = window.image_view.view_box, view.image_view.view_box

    def same_range() -> bool:  # same centre and magnification (the two views differ in size)
        return np.allclose(view.view_geometry("main"), view.view_geometry("prior"), rtol=1e-4, atol=1e-3)

    assert same_range()
    window.zoom_in_action.trigger()  # zoom on the current: the prior follows
    assert same_range()
    prior_box.translateBy(x=7.0, y=-3.0)  # pan the prior: the current follows
    assert same_range()
    zoomed = main_box.viewRange()
    window.fit_action.trigger()
    assert same_range() and not np.allclose(main_box.viewRange(), zoomed)
    # the oldest study has no prior
    window.select_study(patient.priors[-1].best_image)
    qtbot.waitUntil(lambda: "No prior study" in view.image_view.placeholder.text(), timeout=5_000)
    assert view.state.image is None
    window.compare_action.trigger()
    assert not window.prior_view.isVisible()


def test_housekeeping_search_flagged_read_remove(qtbot, nih_window) -> None:
    window, worklist = nih_window, nih_window.worklist
    panel = window.worklist_panel
    assert worklist.top_row_count() == 4
    window.search_action.trigger()
    assert panel.search.hasFocus() or qtbot.waitUntil(panel.search.hasFocus, timeout=2_000) is None
    qtbot.keyClicks(panel.search, "00000008")
    assert worklist.top_row_count() == 1
    assert worklist.row_text(worklist.top_study_ids()[0]).startswith("00000008")
    panel.search.clear()
    qtbot.keyClicks(panel.search, "dark")
    assert [window.studies[i].name for i in worklist.top_study_ids()] == ["dark.png"]
    panel.search.clear()
    assert worklist.top_row_count() == 4
    # flagged only: the dark image has no finding above its threshold
    dark = next(s for s in window.studies.values() if s.name == "dark.png")
    assert not dark.flagged and all(s.flagged for s in window.studies.values() if s is not dark)
    window.flagged_only_action.trigger()
    assert panel.flagged_only.isChecked()
    assert dark.id not in worklist.top_study_ids() and worklist.top_row_count() == 3
    panel.flagged_only.setChecked(False)
    assert not window.flagged_only_action.isChecked() and worklist.top_row_count() == 4
    # read / unread: unread studies are bold
    top = worklist.top_study_ids()[0]
    window.select_study(top)
    index = worklist.currentIndex()
    assert index.data(Qt.ItemDataRole.FontRole).bold()
    window.read_action.trigger()
    assert worklist.is_read(top)
    assert not worklist.currentIndex().data(Qt.ItemDataRole.FontRole).bold()
    window.read_action.trigger()
    assert not worklist.is_read(top)
    # remove a study: its images leave the worklist and the pipeline; the patient's prior becomes current
    patient = next(p for p in worklist.patients() if p.patient == "nih:00000001")
    window.select_study(patient.current.best_image)
    n = len(window.studies)
    window.remove_study_action.trigger()
    assert len(window.studies) == n - 1 and patient.current.best_image not in window.studies
    after = next(p for p in worklist.patients() if p.patient == "nih:00000001")
    assert after.current.key == patient.priors[0].key
    assert "Removed a study" in window.statusBar().currentMessage()


def test_tag_browser_lists_the_header_on_screen_and_logs_no_patient_data(
    qtbot, make_window, tmp_path: Path, make_dicom, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    path = make_dicom(tmp_path / "tags.dcm", np.full((40, 40), 500, np.uint16), view_position="PA")
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "plain.png")
    window = make_window(model_path=None)
    window.open_paths([path, tmp_path / "plain.png"])
    qtbot.waitUntil(lambda: _all_finished(window, 2), timeout=20_000)
    by_name = {s.name: s for s in window.studies.values()}
    window.select_study(by_name["tags.dcm"].id)
    qtbot.waitUntil(lambda: _shown_name(window) == "tags.dcm", timeout=5_000)
    window.tags_action.trigger()
    browser = window.reading.tag_browser
    assert browser is not None
    if browser.note.text().startswith("Reading"):
        with qtbot.waitSignal(browser.loaded, timeout=10_000) as loaded:
            pass
        assert loaded.args[0] > 10
    rows = browser.rows_shown()
    by_keyword = {r[1]: r for r in rows}
    assert by_keyword["PatientName"][2:] == ("PN", "Doe^Jane")  # PHI shown on screen
    assert by_keyword["PatientID"][3] == "SECRET-ID-123"
    assert by_keyword["ViewPosition"][3] == "PA"
    assert by_keyword["PixelData"][3].endswith("bytes>")  # binary: its size, not its bytes
    browser.filter.setText("patient")
    shown = browser.rows_shown()
    assert shown and all("patient" in " ".join(r).lower() for r in shown)
    assert len(shown) < len(rows)
    # a PNG has no tags: the dialog says so
    window.select_study(by_name["plain.png"].id)
    qtbot.waitUntil(lambda: _shown_name(window) == "plain.png", timeout=5_000)
    window.tags_action.trigger()
    browser = window.reading.tag_browser
    qtbot.waitUntil(lambda: browser.note.text().startswith("No DICOM tags"), timeout=10_000)
    assert "PNG is not DICOM" in browser.note.text()
    logged = caplog.text
    assert "Doe" not in logged and "SECRET-ID-123" not in logged and "19010101" not in logged
