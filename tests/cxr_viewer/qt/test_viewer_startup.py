"""The window appears without importing torch, and real mouse events drive window/level."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication
from qt_support import move_gap_ms


def test_window_starts_without_torch() -> None:
    code = (
        "import sys, json\n"
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "from cxr_viewer.qt.main_window import MainWindow\n"
        "w = MainWindow(model_path=None)\n"
        "w.show(); app.processEvents()\n"
        "loaded = sorted(m for m in ('torch', 'cral_model') if m in sys.modules)\n"
        "w.close()\n"
        "print(json.dumps(loaded))\n"
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def _mouse(widget, kind: QEvent.Type, pos: QPoint, buttons: Qt.MouseButton) -> None:
    button = Qt.MouseButton.LeftButton if kind != QEvent.Type.MouseMove else Qt.MouseButton.NoButton
    global_pos = QPointF(widget.mapToGlobal(pos))
    event = QMouseEvent(kind, QPointF(pos), global_pos, button, buttons, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)


def test_left_drag_changes_window_and_measure_tool_measures(qtbot, make_window, tmp_path, make_dicom) -> None:
    import numpy as np

    make_dicom(
        tmp_path / "a.dcm", np.tile(np.arange(200, dtype=np.uint16) * 20, (150, 1)), pixel_spacing=(0.5, 0.5)
    )
    window = make_window(model_path=None)
    window.open_paths([tmp_path / "a.dcm"])
    qtbot.waitUntil(lambda: window.state.image is not None, timeout=20_000)
    viewport = window.image_view.graphics.viewport()
    center = viewport.rect().center()
    before = window.state.window
    left = Qt.MouseButton.LeftButton
    _mouse(viewport, QEvent.Type.MouseButtonPress, center, left)
    for step in range(1, 8):
        QTest.qWait(move_gap_ms())
        _mouse(viewport, QEvent.Type.MouseMove, center + QPoint(10 * step, 0), left)
    _mouse(viewport, QEvent.Type.MouseButtonRelease, center + QPoint(70, 0), Qt.MouseButton.NoButton)
    assert window.state.window[1] > before[1]  # dragging right widened the window
    window.tool_actions["measure"].trigger()
    assert window.image_view.tool == "measure"
    qtbot.wait(QApplication.doubleClickInterval() + 100)  # not a double click (that would fit the view)
    _mouse(viewport, QEvent.Type.MouseButtonPress, center, left)
    for step in range(1, 8):
        QTest.qWait(move_gap_ms())
        _mouse(viewport, QEvent.Type.MouseMove, center + QPoint(0, 10 * step), left)
    _mouse(viewport, QEvent.Type.MouseButtonRelease, center + QPoint(0, 70), Qt.MouseButton.NoButton)
    text = window.image_view.measurement_text()
    assert text.endswith(" mm")
    assert float(text.split()[0]) > 0
    assert window.measure_label.text() == f"Length: {text}"
