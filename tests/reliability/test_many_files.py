"""Item 2 of issue 7: 200 files dropped at once, a tenth broken; closing during analysis.

The viewer test uses the real model code (a random-initialised resnet18 at 64 px) and measures the GUI
thread's responsiveness with a 10 ms timer: the longest gap between its ticks is the longest time the
window could not react.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from qt_support import close_main_window, open_main_window
from qt_support import drop_paths as _drop

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

FINISHED = {"done", "error", "viewed (no model)", "cancelled"}
#: the longest the GUI thread may be unresponsive (generous: 2 busy cores, another job training)
MAX_GAP_S = 1.0


@pytest.fixture
def window_factory(qtbot, tmp_path):
    from PySide6.QtCore import QSettings

    settings = QSettings(str(tmp_path / "viewer.ini"), QSettings.Format.IniFormat)
    windows = []

    def make(**kwargs):
        windows.append(open_main_window(qtbot, settings, **kwargs))
        return windows[-1]

    yield make
    for w in windows:
        close_main_window(w)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_viewer_200_files_dropped_at_once(qtbot, window_factory, tiny_model, batch_200, figures):
    from PySide6.QtCore import QTimer

    good, broken = batch_200
    window = window_factory(model_path=str(tiny_model), cpu_threads=1)
    qtbot.waitUntil(lambda: window.model_status == "ready", timeout=120_000)

    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(10)
    t0 = time.perf_counter()
    _drop(window, good + broken)
    qtbot.waitUntil(
        lambda: (
            len(window.studies) == len(good) + len(broken)
            and all(s.status in FINISHED for s in window.studies.values())
            and window.is_idle()
        ),
        timeout=240_000,
    )
    elapsed = time.perf_counter() - t0
    timer.stop()
    gaps = sorted(b - a for a, b in itertools.pairwise(ticks))

    by_name = {s.path.name: s for s in window.studies.values()}
    not_done = [n for n in (p.name for p in good) if by_name[n].status != "done"]
    assert not not_done, [(n, by_name[n].status, by_name[n].reason) for n in not_done]
    for p in broken:
        s = by_name[p.name]
        assert s.status == "error", (p.name, s.status)
        assert s.reason and "\n" not in s.reason and len(s.reason) <= 240, s.reason
        assert window.worklist.status_of(s.id).startswith("error")  # the row shows the reason
    figures["viewer: 200 files dropped at once"] = {
        "good_analysed": f"{len(good) - len(not_done)}/{len(good)}",
        "broken_listed_with_reason": f"{sum(by_name[p.name].status == 'error' for p in broken)}"
        f"/{len(broken)}",
        "seconds": round(elapsed, 1),
        "gui_longest_gap_ms": round(1000 * gaps[-1]) if gaps else None,
        "gui_median_gap_ms": round(1000 * gaps[len(gaps) // 2]) if gaps else None,
        "reasons": sorted({by_name[p.name].reason.split(":")[0] for p in broken}),
    }
    assert gaps and gaps[-1] < MAX_GAP_S, f"GUI thread blocked for {gaps[-1]:.2f} s"


_CLOSE_SCRIPT = r"""
import json, sys, time
from pathlib import Path
from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication
import pyqtgraph as pg

app = QApplication([])
pg.setConfigOptions(imageAxisOrder="row-major")
from cxr_viewer.qt.main_window import MainWindow

model, folder, settings, after = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
w = MainWindow(model_path=model, settings=QSettings(settings, QSettings.Format.IniFormat), cpu_threads=1)
w.show()
done = []
closed_at = []

def finished(_sid):
    done.append(_sid)
    if len(done) == after and not closed_at:
        closed_at.append(time.perf_counter())
        QTimer.singleShot(0, w.close)

w.study_finished.connect(finished)
w.model_changed.connect(lambda _info: w.open_paths([folder]))
QTimer.singleShot(180_000, app.quit)  # safety net
w.destroyed.connect(app.quit)
from PySide6.QtCore import Qt
w.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
app.exec()
t_exit = time.perf_counter()
print(json.dumps({"finished_before_close": len(done),
                  "close_to_exit_s": round(t_exit - closed_at[0], 2) if closed_at else None}))
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_closing_during_analysis_exits_cleanly(tmp_path, tiny_model, batch_200, figures):
    good, _broken = batch_200
    folder = good[0].parent
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONFAULTHANDLER": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _CLOSE_SCRIPT, str(tiny_model), str(folder), str(tmp_path / "s.ini"), "20"],
        capture_output=True, text=True, env=env, timeout=240, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "QThread: Destroyed while thread" not in proc.stderr
    assert "Fatal Python error" not in proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["finished_before_close"] >= 20
    figures["viewer: close during analysis of 200 files"] = {
        "exit_code": proc.returncode,
        "studies_finished_before_close": result["finished_before_close"],
        "close_to_exit_s": result["close_to_exit_s"],
        "stderr_traceback": False,
    }


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_cxr_triage_200_files_a_tenth_broken(tmp_path, tiny_model, batch_200, figures):
    import csv

    good, broken = batch_200
    out = tmp_path / "results.csv"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "cxr_viewer.cli.triage", str(good[0].parent), "-o", str(out),
         "--model", str(tiny_model), "--no-progress"],
        capture_output=True, text=True, env=env, timeout=240, check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    with open(out, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:3] == ["file", "error", "triage_score"]
    by_name = {Path(r["file"]).name: r for r in rows}
    assert len(rows) == len(good) + len(broken) == 200
    not_analysed = [p.name for p in good if by_name[p.name]["error"] or not by_name[p.name]["triage_score"]]
    assert not not_analysed, [(n, by_name[n]["error"]) for n in not_analysed]
    for p in broken:
        reason = by_name[p.name]["error"]
        assert reason and "\n" not in reason and not by_name[p.name]["triage_score"], (p.name, reason)
    figures["cxr-triage: 200 files, a tenth broken"] = {
        "good_analysed": f"{len(good) - len(not_analysed)}/{len(good)}",
        "broken_with_reason": f"{sum(bool(by_name[p.name]['error']) for p in broken)}/{len(broken)}",
        "wall_s_incl_startup": round(elapsed, 1),
        "exit_code": proc.returncode,
        "summary_line": proc.stderr.strip().splitlines()[-1][:200],
    }
