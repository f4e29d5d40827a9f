"""Issue 13's display defects, each on the real window with real files: W/L numbers of MONOCHROME1 (2),
the preset box (3), readable corner text (5), truncated DICOM (6), right-drag zoom and 1:1 (7),
orientation letters (9), low resolution (10), status tips (12); user presets; PySide's signal refcount."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, QRect, Qt
from PySide6.QtGui import QColor, QMouseEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication
from qt_support import move_gap_ms

from cxr_viewer.core.windowing import auto_window

if TYPE_CHECKING:
    from pathlib import Path

FINISHED = {"done", "error", "viewed (no model)", "cancelled", "not scored"}


def _send(widget, kind: QEvent.Type, pos: QPoint, button: Qt.MouseButton, buttons: Qt.MouseButton) -> None:
    event = QMouseEvent(
        kind, QPointF(pos), QPointF(widget.mapToGlobal(pos)), button, buttons, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(widget, event)


def _right_drag(view, start: QPoint, dy: int, steps: int = 10) -> None:
    viewport, right = view.graphics.viewport(), Qt.MouseButton.RightButton
    _send(viewport, QEvent.Type.MouseButtonPress, start, right, right)
    for i in range(1, steps + 1):
        QTest.qWait(move_gap_ms())
        _send(
            viewport,
            QEvent.Type.MouseMove,
            start + QPoint(0, dy * i // steps),
            Qt.MouseButton.NoButton,
            right,
        )
    _send(viewport, QEvent.Type.MouseButtonRelease, start + QPoint(0, dy), right, Qt.MouseButton.NoButton)
    QApplication.processEvents()  # as between two real drags (the view repaints)


def _open(qtbot, make_window, paths, **kwargs):
    window = make_window(**{"model_path": None, **kwargs})
    window.open_paths(paths)
    qtbot.waitUntil(lambda: window.state.image is not None, timeout=30_000)
    return window


def test_monochrome1_window_readout_and_histogram_in_stored_values(qtbot, make_window, shared_data) -> None:
    """Defect 2: RG1's file says centre 15000 / width 30000; readout, histogram and cursor agree."""
    window = _open(qtbot, make_window, [shared_data("dicom", "RG1_UNCI.dcm")])
    image, view = window.state.image, window.image_view
    assert image.inverted
    assert view.window_text() == "W 30000  L 15000"
    assert view.corner_bottom_left.text().startswith("W 30000  L 15000")
    window.histogram.show()
    lo, hi = window.histogram.region.getRegion()
    assert (lo, hi) == pytest.approx((0.0, 30000.0))
    # the histogram's axis: the stored values of the file (its brightest pixel's stored value at the left)
    stored = image.inversion_pivot - image.pixels.astype(np.float64)
    x = window.histogram.curve.xData
    assert x[0] == pytest.approx(stored[::3, ::3].min(), abs=(x[1] - x[0]) * 2)
    assert x[-1] == pytest.approx(stored[::3, ::3].max(), abs=(x[1] - x[0]) * 2)
    # the cursor readout at a pixel: its stored value
    info = view.pixel_info_at(100.5, 200.5)
    assert info.startswith(f"x 100  y 200  value {stored[200, 100]:.6g}")
    # dragging the histogram region to stored 10000..20000 sets L 15000 W 10000
    window.histogram.region.setRegion((10000.0, 20000.0))
    assert view.window_text() == "W 10000  L 15000"
    assert window.state.window == pytest.approx((image.inversion_pivot - 15000.0, 10000.0))


def test_preset_box_follows_every_way_of_setting_the_window(qtbot, make_window, shared_data) -> None:
    """Defect 3: after A it says Auto; after 3 then Ctrl+0 the file's window; key 0 works."""
    window = _open(qtbot, make_window, [shared_data("dicom", "RG1_UNCI.dcm")])
    combo, presets = window.preset_combo, window.presets
    assert combo.currentText() == "File default"
    window.auto_window_action.trigger()
    assert combo.currentText().startswith("Auto")
    assert window.state.window == auto_window(window.state.image.pixels)
    keys = {a.shortcut().toString(): a for a in window.findChildren(type(window.fit_action))}
    keys["3"].trigger()
    assert combo.currentText().startswith("High contrast")
    window.reset_view_action.trigger()  # Ctrl+0
    assert combo.currentText() == "File default"
    window.image_view.drag_window(30, 10)
    assert combo.currentIndex() == -1 and combo.placeholderText() == "Custom window"
    keys["0"].trigger()  # no VOI LUT in RG1: key 0 is the file's window
    assert combo.currentText() == "File default"
    assert window.image_view.window_text() == "W 30000  L 15000"
    for key, name in (("6", "Lung"), ("7", "Mediastinum"), ("8", "Bone")):
        keys[key].trigger()
        assert combo.currentText().startswith(name)
    lung = presets.current_index()
    assert window.state.window == presets._presets[lung].compute(window.state.image.pixels)


def test_key_0_is_the_files_voi_lut(qtbot, make_window, tmp_path: Path, make_dicom) -> None:
    raw = np.tile(np.arange(64, dtype=np.uint16) * 60, (48, 1))
    table = (np.linspace(0, 1, 4096) ** 0.5 * 65535).astype(np.uint16)
    make_dicom(tmp_path / "lut.dcm", raw, voi_lut=(0, table), window=(1500.0, 2000.0))
    window = _open(qtbot, make_window, [tmp_path / "lut.dcm"])
    window.auto_window_action.trigger()
    assert not window.state.use_voi_lut
    keys = {a.shortcut().toString(): a for a in window.findChildren(type(window.fit_action))}
    keys["0"].trigger()
    assert window.state.use_voi_lut
    assert window.preset_combo.currentText().startswith("File VOI LUT")
    assert "VOI LUT" in window.image_view.corner_bottom_left.text()


def test_user_presets_are_kept_in_the_settings(qtbot, make_window, settings, shared_data) -> None:
    window = _open(qtbot, make_window, [shared_data("dicom", "RG1_UNCI.dcm")])
    window.image_view.drag_window(-40, 25)
    stored = window.image_view.window_text()
    assert window.presets.save_user_preset("my lungs")
    assert window.preset_combo.currentText() == "My: my lungs"
    window.close()
    again = _open(qtbot, make_window, [shared_data("dicom", "RG1_JLSN.dcm")], settings=settings)
    names = [again.preset_combo.itemText(i) for i in range(again.preset_combo.count())]
    assert "My: my lungs" in names
    again.presets.apply(names.index("My: my lungs"))
    assert again.image_view.window_text() == stored  # the same stored numbers on another file
    again.forget_presets_action.trigger()
    assert "My: my lungs" not in [again.preset_combo.itemText(i) for i in range(again.preset_combo.count())]


def _dark_fraction(window, label) -> float:
    shot = window.image_view.graphics.grab().toImage()
    rect: QRect = label.geometry()
    dark = total = 0
    for y in range(rect.top(), rect.bottom(), 2):
        for x in range(rect.left(), rect.right(), 2):
            total += 1
            dark += QColor(shot.pixel(x, y)).lightness() < 90
    return dark / max(total, 1)


def test_corner_text_has_a_backing_and_stays_in_the_view(
    qtbot, make_window, tmp_path: Path, make_dicom
) -> None:
    """Defect 5: white collimation (a white image here) must not swallow the text; long text wraps."""
    white = np.full((400, 400), 4000, np.uint16)
    make_dicom(tmp_path / ("a_very_long_file_name_" * 4 + ".dcm"), white, window=(100.0, 50.0))
    window = _open(qtbot, make_window, [next(tmp_path.glob("*.dcm"))], size=(1150, 700))
    view = window.image_view
    qtbot.waitUntil(lambda: view.corner_top_left.isVisible(), timeout=5_000)
    assert _dark_fraction(window, view.corner_top_left) > 0.3  # dark backing behind light text
    bounds = view.graphics.rect()
    for label in (view.corner_top_left, view.corner_top_right, view.corner_bottom_left):
        if label.isVisible():
            assert bounds.contains(label.geometry()), label.text()
    assert not view.corner_top_left.geometry().intersects(view.corner_top_right.geometry())


def test_rg2_corner_text_is_not_clipped(qtbot, make_window, shared_data) -> None:
    window = _open(qtbot, make_window, [shared_data("dicom", "RG2_JLSL.dcm")], size=(1100, 700))
    view = window.image_view
    bounds = view.graphics.rect()
    shown = [
        lab
        for lab in (view.corner_top_left, view.corner_top_right, view.corner_bottom_left)
        if lab.isVisible()
    ]
    assert shown
    for label in shown:
        assert bounds.contains(label.geometry()), label.text()
        assert label.height() >= label.heightForWidth(label.width()) or not label.wordWrap()


def test_truncated_dicom_says_so_briefly(qtbot, make_window, shared_data, tmp_path: Path) -> None:
    """Defect 6: a cut-off file is 'truncated', in a message that fits, not a decoder's ValueError."""
    data = shared_data("dicom", "RG1_UNCI.dcm").read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: len(data) // 2])
    window = make_window(model_path=None, size=(800, 600))
    window.open_paths([cut])
    qtbot.waitUntil(lambda: any(s.status == "error" for s in window.studies.values()), timeout=30_000)
    study = next(iter(window.studies.values()))
    assert study.reason.startswith("truncated file") and "ValueError" not in study.reason
    window.select_study(study.id)
    placeholder = window.image_view.placeholder
    qtbot.waitUntil(lambda: "truncated" in placeholder.text(), timeout=5_000)
    assert placeholder.wordWrap()
    assert window.image_view.graphics.rect().contains(placeholder.geometry())
    assert placeholder.heightForWidth(placeholder.width()) <= placeholder.height()
    assert window.worklist.status_of(study.id).startswith("error: truncated file")


def test_right_drag_zoom_readout_and_actual_pixels(qtbot, make_window, shared_data) -> None:
    """Defect 7: a 100 px right drag doubles the size (it gave ~40x); zoom % shown; 1:1 is 100 %."""
    window = _open(qtbot, make_window, [shared_data("dicom", "RG2_JLSL.dcm")])
    view = window.image_view
    window.fit_action.trigger()
    fitted = view.zoom_percent()
    assert 5 < fitted < 100  # a 2140-row film fits at a fraction of its size
    assert f"Zoom {fitted:.0f} %" in view.corner_bottom_left.text()
    centre = view.graphics.viewport().rect().center()
    _right_drag(view, centre, -100)  # up: in
    assert view.zoom_percent() / fitted == pytest.approx(2.0, rel=0.03)
    _right_drag(view, centre, 100)  # down: back
    assert view.zoom_percent() / fitted == pytest.approx(1.0, rel=0.03)
    window.actual_pixels_action.trigger()
    assert view.zoom_percent() == pytest.approx(100.0, rel=0.01)
    assert "Zoom 100 %" in view.corner_bottom_left.text()
    assert window.status.zoom_label.text() == "Zoom 100 %"


def test_orientation_letters_follow_rotate_and_flip(qtbot, make_window, shared_data) -> None:
    """Defect 9: RG1 (PatientOrientation L\\F, a PA chest) shows R | L, H / F, and they turn with it."""
    window = _open(qtbot, make_window, [shared_data("dicom", "RG1_UNCI.dcm")])
    view = window.image_view
    assert view.orientation_letters() == {"left": "R", "right": "L", "top": "H", "bottom": "F"}
    window.rotate_action.trigger()  # clockwise: the head goes to the right
    assert view.orientation_letters() == {"left": "F", "right": "H", "top": "R", "bottom": "L"}
    assert "Rotated 90\N{DEGREE SIGN} right" in view.corner_bottom_left.text()
    window.rotate_left_action.trigger()
    window.flip_action.trigger()
    assert view.orientation_letters() == {"left": "L", "right": "R", "top": "H", "bottom": "F"}
    assert "Flipped horizontally" in view.corner_bottom_left.text()
    window.reset_view_action.trigger()
    assert view.orientation_letters()["right"] == "L"
    assert "lipped" not in view.corner_bottom_left.text()


def test_orientation_letters_absent_without_header(qtbot, make_window, shared_data) -> None:
    window = _open(qtbot, make_window, [shared_data("dicom", "RG2_JLSL.dcm")])
    assert window.image_view.orientation_letters() == {}


def test_low_resolution_image_is_scored_and_flagged(
    qtbot, make_window, fake_predictor_cls, shared_data
) -> None:
    """Defect 10: a real 64 x 64 NIH image is still scored, with a warning on the image."""
    folder = shared_data("chestxray14-nih1000-64px", "images")
    path = sorted(folder.glob("*.png"))[0]
    window = _open(
        qtbot,
        make_window,
        [path],
        model_path="fake.safetensors",
        predictor_factory=lambda _p: fake_predictor_cls(),
    )
    qtbot.waitUntil(lambda: all(s.status == "done" for s in window.studies.values()), timeout=30_000)
    view = window.image_view
    assert window.state.image.shape == (64, 64)
    assert view.warning_label.isVisible()
    assert view.warning_label.text().startswith("Low resolution: 64 x 64 px")
    assert next(iter(window.studies.values())).score is not None


def test_full_size_image_has_no_warning(qtbot, make_window, shared_data) -> None:
    path = sorted(shared_data("chestxray14-fullres-samples", "images").glob("*.png"))[0]
    window = _open(qtbot, make_window, [path])
    assert not window.image_view.warning_label.isVisible()


def test_no_status_tip_shows_a_mnemonic_ampersand(qtbot, make_window, shared_data) -> None:
    """Defect 12: "&Fit to window" must not show its '&' in a status or tool tip (every action)."""
    window = _open(qtbot, make_window, [shared_data("dicom", "RG1_UNCI.dcm")])
    actions = window.findChildren(type(window.fit_action))
    assert len(actions) > 40
    for action in actions:
        for tip in (action.statusTip(), action.toolTip()):
            assert "&" not in tip.replace("&&", ""), (action.text(), tip)
    assert window.fit_action.statusTip() == "Fit to window"


def test_signal_emits_do_not_abort_the_interpreter() -> None:
    """PySide6 6.12.0 dropped a reference to True per Signal.emit: the viewer died after ~2,300."""
    code = (
        "from PySide6.QtCore import QCoreApplication, QObject, Signal\n"
        "app = QCoreApplication([])\n"
        "class E(QObject):\n    s = Signal(float)\n"
        "e = E()\ne.s.connect(lambda v: None)\n"
        "for _ in range(20000):\n    e.s.emit(1.0)\n"
        "print('ok')\n"
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-500:]


def test_help_and_readme_list_the_new_keys(qtbot, make_window) -> None:
    """Every key of the measurement, zoom and preset actions is in the F1 help and the README."""
    from pathlib import Path

    from cxr_viewer.qt.dialogs import SHORTCUTS_TEXT

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    window = make_window(model_path=None)
    names = (
        "tool_measure_action",
        "tool_angle_action",
        "tool_ctr_action",
        "tool_ellipse_action",
        "actual_pixels_action",
        "delete_measure_action",
        "clear_measure_action",
        "save_preset_action",
    )
    for name in names:
        key = getattr(window, name).shortcut().toString()
        assert key and key in SHORTCUTS_TEXT and key in readme, (name, key)
    for keys in (
        "0: the file's VOI LUT",
        "1: the file's window",
        "2-5:",
        "6 / 7 / 8: lung / mediastinum / bone",
    ):
        assert keys in SHORTCUTS_TEXT
    assert "6 lung" in readme and "8 bone" in readme


def test_no_two_actions_share_a_key(qtbot, make_window, shared_data) -> None:
    """A shared key is an 'ambiguous shortcut' in Qt: neither action runs (presets included)."""
    import collections

    window = _open(qtbot, make_window, [shared_data("dicom", "RG1_UNCI.dcm")])
    keys = collections.Counter(
        a.shortcut().toString()
        for a in window.findChildren(type(window.fit_action))
        if not a.shortcut().isEmpty()
    )
    assert {k: n for k, n in keys.items() if n > 1} == {}
