"""Screenshot of a length measurement on RG2 made with the real X mouse (xdotool) under Xvfb.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots/measurement_rg2.py \
        ../shared/data/dicom/RG2_JLSL.dcm docs/screenshots/measurement_rg2.png

Opens the file, fits it, picks the measure tool with the M key, then drags the X server's mouse from
image point x470 y663 to x1095 y1601 (and adds an angle and an elliptical ROI), saves the window and
prints the length shown on screen next to the length the pixel spacing gives for the pixels the mouse
really hit.
"""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
from pathlib import Path


def _say(*parts: object) -> None:
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")


def _xdotool(*args: str) -> None:
    subprocess.run(["xdotool", *args], check=True)


def main(argv: list[str]) -> int:
    import pyqtgraph as pg
    from PySide6.QtCore import QPoint, QPointF, QSettings
    from PySide6.QtWidgets import QApplication

    from cxr_viewer.core.measurement import length
    from cxr_viewer.qt.main_window import MainWindow

    source, out = Path(argv[0]), Path(argv[1])
    app = QApplication(sys.argv[:1])
    pg.setConfigOptions(imageAxisOrder="row-major")
    settings = QSettings(str(out.with_suffix(".ini")), QSettings.Format.IniFormat)
    window = MainWindow(model_path=None, settings=settings)
    window.resize(1400, 840)
    window.move(0, 0)
    window.show()
    window.open_paths([source])

    def pump(seconds: float, until: object = None) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (callable(until) and until()):
            app.processEvents()
            time.sleep(0.01)

    pump(60, lambda: window.state.image is not None and window.is_idle())
    pump(1.0)
    view = window.image_view
    window.activateWindow()
    window.fit_action.trigger()
    pump(0.5)

    def screen(x: float, y: float) -> tuple[int, int]:
        image = window.state.image
        dx, dy = window.state.orientation.point_to_display(x, y, image.shape)
        local = view.graphics.mapFromScene(view.view_box.mapViewToScene(QPointF(dx, dy)))
        g = view.graphics.viewport().mapToGlobal(local)
        return g.x(), g.y()

    def drag_x(a: tuple[int, int], b: tuple[int, int]) -> None:
        _xdotool("mousemove", str(a[0]), str(a[1]))
        time.sleep(0.2)
        _xdotool("mousedown", "1")
        for i in range(1, 21):
            x = round(a[0] + (b[0] - a[0]) * i / 20)
            y = round(a[1] + (b[1] - a[1]) * i / 20)
            _xdotool("mousemove", str(x), str(y))
            time.sleep(0.02)
        _xdotool("mouseup", "1")
        time.sleep(0.4)

    def in_thread(fn: object) -> None:
        t = threading.Thread(target=fn)
        t.start()
        while t.is_alive():
            app.processEvents()
            time.sleep(0.01)
        pump(0.5)

    start, end = screen(470, 663), screen(1095, 1601)
    first = screen(300, 1000)
    in_thread(
        lambda: (
            _xdotool("mousemove", *map(str, first)),
            time.sleep(0.2),
            _xdotool("click", "1"),
            time.sleep(0.3),
            _xdotool("key", "m"),
        )
    )
    assert view.tool == "measure", view.tool
    in_thread(lambda: drag_x(start, end))
    shown = view.measurement_text()

    def image_point(p: tuple[int, int]) -> tuple[float, float]:
        vp = view.graphics.viewport().mapFromGlobal(QPoint(*p))
        v = view.view_box.mapSceneToView(view.graphics.mapToScene(vp))
        return window.state.orientation.point_to_source(v.x(), v.y(), window.state.image.shape)

    hit0, hit1 = image_point(start), image_point(end)
    spacing = window.state.image.pixel_spacing
    from_spacing = length(hit0, hit1, spacing)
    nominal = length((470, 663), (1095, 1601), spacing)
    # an angle (drag one ray, click the other end) and an elliptical ROI, with the keys G and E
    in_thread(lambda: _xdotool("key", "g"))
    a, v, b = screen(1300, 700), screen(1000, 1100), screen(1450, 1300)
    in_thread(
        lambda: (drag_x(a, v), _xdotool("mousemove", *map(str, b)), time.sleep(0.2), _xdotool("click", "1"))
    )
    in_thread(lambda: _xdotool("key", "e"))
    in_thread(lambda: drag_x(screen(250, 1500), screen(650, 1800)))
    in_thread(lambda: _xdotool("mousemove", "5", "5"))
    pump(0.5)
    window.grab().save(str(out))
    _say(f"file: {source.name}  PixelSpacing {spacing[0]} x {spacing[1]} mm")
    hits = f"x{hit0[0]:.1f} y{hit0[1]:.1f} -> x{hit1[0]:.1f} y{hit1[1]:.1f}"
    _say(f"mouse: screen {start} -> {end}; image {hits}")
    _say(f"length on screen: {shown}")
    _say(f"length from PixelSpacing for the pixels hit: {from_spacing:.2f} mm")
    _say(f"length from PixelSpacing for x470 y663 -> x1095 y1601 exactly: {nominal:.2f} mm")
    _say("all measurements:", " | ".join(view.measurement_texts()))
    _say(f"zoom: {view.zoom_percent():.1f} %")
    window.close()
    ok = math.isclose(float(shown.split()[0]), from_spacing, abs_tol=0.051)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
