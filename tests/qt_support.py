"""Helpers shared by the Qt tests of tests/cxr_viewer/qt and tests/reliability (importable: pytest's
``pythonpath`` holds tests/). Plain functions; the fixtures that use them live in each folder's conftest."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path


def move_gap_ms() -> int:
    """The least time between two synthetic mouse moves that pyqtgraph's scene does not drop.

    pyqtgraph ignores moves closer together than 1 / ``mouseRateLimit`` (100 per second by default).
    Moves sent back to back therefore all fall inside that gap except the first. A drag could then
    begin with that first move dropped too (when the previous drag's first move came under 10 ms
    earlier) and turn into a click: a measurement lost, now and then, on a fast machine. Tests that
    drag wait this long before each move, as a real mouse would.
    """
    import pyqtgraph as pg

    rate = float(pg.getConfigOption("mouseRateLimit"))
    return 1 if rate <= 0 else int(1000.0 / rate) + 2


def drop_paths(window: Any, paths: list[Path], target: Any = None) -> None:
    """Simulate a drag-and-drop of local files/folders onto ``target`` (default: the window)."""
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDropEvent

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    event = QDropEvent(
        QPointF(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    if target is None:
        window.dropEvent(event)
    else:
        # QApplication only delivers Drop events during a real drag, so call the filter that child
        # widgets forward their drops through, as Qt would.
        assert window._drop_filter.eventFilter(target, event)
    assert event.isAccepted()


def open_main_window(
    qtbot: Any, settings: Any, size: tuple[int, int] | None = (1200, 800), **kwargs: Any
) -> Any:
    """A shown MainWindow with the given (test-local) QSettings; pass it to `close_main_window` after."""
    import pyqtgraph as pg

    from cxr_viewer.qt.main_window import MainWindow

    pg.setConfigOptions(imageAxisOrder="row-major")
    kwargs.setdefault("settings", settings)
    window = MainWindow(**kwargs)
    qtbot.addWidget(window)
    if size is not None:
        window.resize(*size)
    window.show()
    return window


def close_main_window(window: Any) -> None:
    """Close the window and check that its model and loader threads have stopped."""
    window.close()
    assert not window.inference_thread.thread.isRunning()
    assert not window.loader_thread.thread.isRunning()
