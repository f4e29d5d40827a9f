"""GUI responsiveness: time to a shown window, and the longest event-loop stall while the worker analyses.

Each probe runs in a fresh subprocess (``QT_QPA_PLATFORM=offscreen`` unless a display is set), so the
measured startup includes the interpreter and every import, as for a user launching ``cxr-viewer``.

- startup: the parent notes the wall clock, starts ``cxr_viewer.__main__.main(["--model", CKPT])`` in a
  child; a zero-delay timer (it fires once the event loop runs, i.e. after ``window.show()``) processes
  the pending paint events and reports the elapsed time, and whether torch had been imported when the
  event loop started (the viewer holds model loading, and so torch, until then).
  The model loads on the worker thread meanwhile, as in real use.
- stall: a 1 ms ``QTimer`` on the GUI thread records its ticks from the moment files are opened until
  every study is analysed (decode thread + inference worker busy, results and images shown as they
  come); the longest gap between ticks, minus the 1 ms period, is the longest stall.

Usage (the suite calls these): ``python -m benchmarks.gui startup CKPT`` /
``python -m benchmarks.gui stall CKPT --fast auto FILE...``; each prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_STARTUP_CHILD = r"""
import json, os, sys, time
t_launch = float(os.environ["CXR_BENCH_T0"])
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
app = QApplication(sys.argv[:1])
def shown():
    torch_loaded = "torch" in sys.modules  # before the pending events: one of them releases model loading
    app.processEvents()
    t = time.time() - t_launch
    visible = [w for w in app.topLevelWidgets() if w.isVisible() and w.windowTitle()]
    print("RESULT " + json.dumps({"startup_s": t, "torch_at_show": torch_loaded,
                                 "windows": len(visible)}), flush=True)
    for w in visible:
        w.close()
QTimer.singleShot(0, shown)
import cxr_viewer.__main__ as viewer
sys.exit(viewer.main(sys.argv[1:]))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    return env


def _result(stdout: str) -> dict[str, object]:
    for line in stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            return dict(json.loads(line[len("RESULT ") :]))
    raise RuntimeError("the probe printed no result")


def startup_once(viewer_args: list[str], timeout: float = 120.0) -> dict[str, object]:
    """Launch the viewer in a subprocess; seconds from launch to the shown window (see the module doc)."""
    env = _env()
    with tempfile.TemporaryDirectory() as home:
        env["XDG_CONFIG_HOME"] = home  # fresh QSettings: no restored geometry or recent files
        env["CXR_BENCH_T0"] = repr(time.time())
        proc = subprocess.run(
            [sys.executable, "-c", _STARTUP_CHILD, *viewer_args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
    if proc.returncode != 0 and "RESULT " not in proc.stdout:
        raise RuntimeError(f"viewer probe failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
    return _result(proc.stdout)


def stall_once(checkpoint: str, fast: str, files: list[str], timeout: float = 300.0) -> dict[str, object]:
    """Run the stall probe in a subprocess (see the module doc)."""
    cmd = [sys.executable, "-m", "benchmarks.gui", "stall", checkpoint, "--fast", fast, *files]
    with tempfile.TemporaryDirectory() as home:
        env = _env()
        env["XDG_CONFIG_HOME"] = home
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=Path(__file__).parents[1]
        )
    if proc.returncode != 0:
        raise RuntimeError(f"stall probe failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
    return _result(proc.stdout)


def _stall_child(checkpoint: str, fast: str, files: list[str], timeout: float) -> dict[str, object]:
    from functools import partial

    import numpy as np
    import pyqtgraph as pg
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from cxr_viewer.inference import load_predictor

    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    from cxr_viewer.qt.main_window import MainWindow

    tmp = tempfile.TemporaryDirectory()
    settings = QSettings(str(Path(tmp.name) / "s.ini"), QSettings.Format.IniFormat)
    window = MainWindow(
        model_path=checkpoint,
        predictor_factory=partial(load_predictor, fast=fast),
        settings=settings,
        cpu_threads="auto",
    )
    window.resize(1400, 860)
    window.show()
    deadline = time.monotonic() + timeout
    while window.model_status == "loading" and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.01)
    backend = window.model_info.backend if window.model_info is not None else ""
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(1)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    finished = {"error", "done", "viewed (no model)", "cancelled"}

    def check() -> None:
        done = window.studies and all(s.status in finished for s in window.studies.values())
        if (done and window.is_idle()) or time.monotonic() > deadline:
            app.quit()

    checker = QTimer()
    checker.setInterval(20)
    checker.timeout.connect(check)
    t0 = time.perf_counter()
    timer.start()
    checker.start()
    window.open_paths(files)
    app.exec()
    elapsed = time.perf_counter() - t0
    timer.stop()
    checker.stop()
    n_done = sum(1 for s in window.studies.values() if s.status == "done")
    window.close()
    gaps = np.diff(np.asarray(ticks)) * 1e3 - 1.0 if len(ticks) > 1 else np.array([float("nan")])
    return {
        "max_stall_ms": float(np.max(gaps)),
        "p99_stall_ms": float(np.percentile(gaps, 99)),
        "ticks": len(ticks),
        "analysed": n_done,
        "files": len(files),
        "seconds": elapsed,
        "backend": backend,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="probe", required=True)
    s = sub.add_parser("startup")
    s.add_argument("checkpoint")
    st = sub.add_parser("stall")
    st.add_argument("checkpoint")
    st.add_argument("files", nargs="+")
    st.add_argument("--fast", default="auto")
    st.add_argument("--timeout", type=float, default=240.0)
    args = p.parse_args(argv)
    if args.probe == "startup":
        res = startup_once(["--model", args.checkpoint])
    else:
        res = _stall_child(args.checkpoint, args.fast, args.files, args.timeout)
    sys.stdout.write("RESULT " + json.dumps(res) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
