"""Take the issue-13 screenshots (grouped worklist, current and prior) in a real window.

Run under Xvfb from the repository root::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots/worklist_screenshots.py [N]

It opens the NIH 64 px images of ``../shared/data`` (all 690, or the first ``N`` by name, linked into a
temporary folder; ``0``: none) with the bundled demo model, waits for the analysis, and writes
``worklist_nih_grouped.png`` (the grouped worklist, three patients expanded) and
``priors_side_by_side.png`` (a patient's newest study beside its prior, zoomed, linked); then the five
RG1 DICOM files and ``worklist_rg1_one_study.png``. It prints what the worklist holds.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = (ROOT / ".." / "shared" / "data").resolve()
OUT = Path(__file__).resolve().parent


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _wait(app, condition, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        app.processEvents()
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def _save(window, name: str) -> None:
    from PIL import Image

    path = OUT / name
    window.grab().save(os.fspath(path))
    Image.open(path).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    _say(f"wrote {path.relative_to(ROOT)}")


def _window(app, settings_dir: str):
    from PySide6.QtCore import QSettings

    from cxr_viewer.qt.main_window import MainWindow

    settings = QSettings(os.path.join(settings_dir, "viewer.ini"), QSettings.Format.IniFormat)
    window = MainWindow(model_path="", settings=settings, cpu_threads=2)
    window.resize(1400, 840)
    window.show()
    window.splitter.setSizes([560, 560, 280])
    _wait(app, lambda: window.model_status in ("ready", "missing", "failed"), 300)
    _say(f"model: {window.model_status}")
    return window


def _loaded(window) -> bool:
    studies = window.studies.values()
    return bool(studies) and window.is_idle() and all(s.status.finished for s in studies)


def _nih(app, settings_dir: str, limit: int | None) -> None:
    window = _window(app, settings_dir)
    folder = DATA / "chestxray14-nih1000-64px" / "images"
    files = sorted(folder.glob("*.png"))
    if limit is not None:
        folder = Path(settings_dir) / "nih"
        folder.mkdir()
        files = files[:limit]
        for f in files:
            (folder / f.name).symlink_to(f)
    start = time.monotonic()
    window.open_paths([folder])
    _wait(app, lambda: _loaded(window) and len(window.studies) == len(files), 3600)
    worklist = window.worklist
    _say(
        f"NIH 64 px: {len(window.studies)} images, {worklist.top_row_count()} patients (top rows), "
        f"{worklist.group_count()} studies, analysed in {time.monotonic() - start:.0f} s"
    )
    tops = worklist.top_study_ids()
    for sid in tops[:8]:
        _say(f"  {worklist.row_text(sid)}  score {window.studies[sid].score:.2f}")
    with_priors = [sid for sid in tops if worklist.patient_of(sid).priors]
    for sid in with_priors[:3]:
        worklist._select(sid, study_row=True)  # expands the row: its priors show beneath
    worklist.select_study(tops[0])
    _wait(app, lambda: False, 1.0)
    _save(window, "worklist_nih_grouped.png")

    sid = with_priors[0]
    window.select_study(sid)
    window.compare_action.trigger()
    prior = window.reading.prior_for(sid)
    _wait(app, lambda: window.prior_view.state.image is not None, 30)
    _wait(app, lambda: False, 0.5)
    window.view.zoom(1.6)
    _wait(app, lambda: False, 1.0)
    _say(f"current and prior: {worklist.row_text(sid)} beside {prior.label if prior else '-'}")
    _save(window, "priors_side_by_side.png")
    window.close()


def _rg1(app, settings_dir: str) -> None:
    window = _window(app, settings_dir)
    dicom = DATA / "dicom"
    window.open_paths([dicom / f"RG1_{v}.dcm" for v in ("UNCI", "UNCR", "J2KR", "J2KI", "JLSN")])
    _wait(app, lambda: _loaded(window) and len(window.studies) >= 4, 600)
    _wait(app, lambda: False, 1.0)
    _say(f"RG1: {len(window.studies)} images kept of 5 files, {window.worklist.top_row_count()} row")
    _say(f"  {window.statusBar().currentMessage()}")
    _save(window, "worklist_rg1_one_study.png")
    window.close()


def main() -> int:
    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)
    app = QApplication(sys.argv[:1])
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else None
    with tempfile.TemporaryDirectory() as settings_dir:
        if limit != 0:
            _nih(app, settings_dir, limit)
        _rg1(app, settings_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
