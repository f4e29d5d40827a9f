"""``cxr-viewer``: start the desktop viewer, or take a headless screenshot.

Usage::

    cxr-viewer [FILE_OR_FOLDER ...] [--model CHECKPOINT | --no-model] [--no-fast]
    cxr-viewer --screenshot OUT.png FILE ... [--select-finding N] [--size 1400x860]

With ``--screenshot`` the window opens the files, waits for the analysis of the first one, selects its
top finding (so its attention map is shown), waits for the others, saves a picture of the whole window,
prints the top-8 findings of every file to stdout and exits with 0 (1 when the window could not be saved).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from cxr_viewer import APP_NAME, ORG_NAME, __version__
from cxr_viewer.core.overlay import MAP_STYLES

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["get_parser", "main"]


def get_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(
        prog=APP_NAME, description="Chest X-ray triage viewer (not for clinical use)."
    )
    parser.add_argument("paths", nargs="*", help="files or folders to open")
    model = parser.add_mutually_exclusive_group()
    model.add_argument(
        "--model",
        metavar="CHECKPOINT",
        help="a cral-train checkpoint (*.safetensors); default: the bundled demo model, or $CXR_TRIAGE_MODEL",
    )
    model.add_argument("--no-model", action="store_true", help="view images only")
    parser.add_argument(
        "--fast",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="CPU fast path (ONNX Runtime) when it is available; --no-fast runs eager PyTorch "
        "(default: on, unless $CXR_TRIAGE_FAST=off)",
    )
    parser.add_argument(
        "--screenshot", metavar="OUT.png", help="headless: save a picture of the window and exit"
    )
    parser.add_argument(
        "--select-finding",
        type=int,
        default=0,
        metavar="N",
        help="with --screenshot: which finding of the first study to show (0 = top)",
    )
    parser.add_argument(
        "--map-style",
        choices=MAP_STYLES,
        default=None,
        help="how class maps are drawn: filled colour map or outline at the threshold "
        "(default: as last used, remembered between sessions)",
    )
    parser.add_argument("--size", default="1400x860", help="with --screenshot: window size WxH")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="with --screenshot: give up after SECONDS"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the viewer. Returns the process exit code."""
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # pydicom logs every failed decoder plugin with a traceback before we try our fallback, and its
    # warnings may quote header values (patient data); the viewer reports unreadable files itself.
    from cxr_viewer.core.io import quiet_decoder_output

    quiet_decoder_output()
    if args.screenshot and not args.paths:
        get_parser().error("--screenshot needs at least one FILE")
    if args.screenshot:  # a mistyped path is said at once, before any window or model is made
        missing = [p for p in args.paths if not Path(p).exists()]
        for path in missing:
            _write(sys.stderr, f"not found: {path}\n")
        args.paths = [p for p in args.paths if p not in missing]
        if not args.paths:
            return 1

    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)
    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    app.setOrganizationName(ORG_NAME)
    app.setApplicationName(APP_NAME)
    app.setDesktopFileName("cxr-viewer")  # matches packaging/linux/cxr-viewer.desktop (taskbar icon)
    icon = _icon_path()
    if icon is not None:
        from PySide6.QtGui import QIcon

        app.setWindowIcon(QIcon(str(icon)))

    from functools import partial

    from PySide6.QtCore import QTimer

    from cxr_viewer.inference import fast_mode, load_predictor
    from cxr_viewer.qt.main_window import MainWindow
    from cxr_viewer.qt.worker import hold_model_loading, release_model_loading

    model_path: str | None = None if args.no_model else (args.model or "")
    # torch is imported by the model loading on the worker thread; let it start once the window is up
    hold_model_loading()
    QTimer.singleShot(0, release_model_loading)  # runs once the event loop has shown the window
    window = MainWindow(
        model_path=model_path,
        predictor_factory=partial(load_predictor, fast=fast_mode(args.fast)),
        cpu_threads="auto",
    )
    if args.map_style:
        window.state.update(map_style=args.map_style)
    if args.screenshot:
        return _screenshot(app, window, args)
    window.show()
    if args.paths:
        window.open_paths(args.paths)
    return int(app.exec())


def _icon_path() -> Path | None:
    """resources/icons/cxr-triage.svg beside the source tree, or inside a PyInstaller bundle."""
    roots = [Path(__file__).resolve().parents[1]]
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        roots.insert(0, Path(bundle))
    for root in roots:
        for name in ("cxr-triage.svg", "cxr-triage-256.png"):
            candidate = root / "resources" / "icons" / name
            if candidate.is_file():
                return candidate
    return None


def _wait(app: object, condition: object, timeout: float) -> bool:
    from PySide6.QtCore import QEventLoop
    from PySide6.QtWidgets import QApplication

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        QApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def _write(stream: TextIO | None, text: str) -> None:
    """Write to stdout/stderr, which are None for a GUI entry point on Windows."""
    if stream is not None:
        stream.write(text)
        stream.flush()


def _screenshot(app: object, window: object, args: argparse.Namespace) -> int:
    from cxr_viewer.core.findings import format_findings
    from cxr_viewer.core.pipeline import ModelStatus, StudyStatus
    from cxr_viewer.qt.main_window import MainWindow

    assert isinstance(window, MainWindow)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        width, height = 1400, 860
    window.resize(width, height)
    window.show()
    window.open_paths(args.paths)
    # a folder without images ends its scan with no study: stop waiting then, not at the timeout
    ok = _wait(
        app,
        lambda: window.model_status is not ModelStatus.LOADING and (window.studies or window.is_idle()),
        args.timeout,
    )
    ordered = sorted(window.studies.values(), key=lambda s: s.id)
    if not ok or not ordered:
        _write(sys.stderr, "no image could be opened\n")
    first = ordered[0] if ordered else None
    if first is not None:
        _wait(app, lambda: first.status.finished, args.timeout)
        window.select_study(first.id)
        _wait(app, lambda: window.state.image is not None or first.status is StudyStatus.ERROR, 60)
        if first.findings:
            n = min(max(args.select_finding, 0), len(first.findings) - 1)
            window.findings_panel.select_row(n)
    _wait(
        app,
        lambda: window.is_idle() and all(s.status.finished for s in window.studies.values()),
        args.timeout,
    )
    window.image_view.fit()
    _wait(app, lambda: False, 0.5)  # let the layout and the pyqtgraph items settle
    out = Path(args.screenshot)
    out.parent.mkdir(parents=True, exist_ok=True)
    saved = window.grab().save(os.fspath(out))
    lines = [] if window.model_info is not None else ["No trained model loaded: findings not available"]
    for study in ordered:
        lines.append(f"{study.path}:")
        if study.status is StudyStatus.ERROR:
            lines.append(f"  error: {study.reason}")
        elif not study.findings:
            lines.append(f"  {study.status}")
        else:
            lines.append(f"  triage score {study.score:.3f}")
            lines += ["  " + line for line in format_findings(study.findings)]
    _write(sys.stdout, "\n".join(lines) + "\n")
    window.close()
    if not saved:
        _write(sys.stderr, f"could not save {out}\n")
    return 0 if saved else 1


if __name__ == "__main__":
    raise SystemExit(main())
