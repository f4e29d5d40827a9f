"""The window's remembered preferences (QSettings): geometry, splitter, overlay, last folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QByteArray, QSettings

from cxr_viewer.core.overlay import MAP_STYLES
from cxr_viewer.core.state import ViewerState

if TYPE_CHECKING:
    import os

    from PySide6.QtWidgets import QMainWindow, QSplitter

__all__ = ["WindowSettings"]


class WindowSettings:
    """Reads and writes one window's preferences; bad stored values fall back to the defaults."""

    def __init__(self, settings: QSettings) -> None:
        self.qsettings = settings

    def _float(self, key: str, default: float) -> float:
        try:
            return float(self.qsettings.value(key, default))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return default

    def initial_state(self) -> ViewerState:
        """A view state with the remembered overlay opacity and map style."""
        style = str(self.qsettings.value("map_style", "filled"))
        return ViewerState(
            overlay_opacity=self._float("overlay_opacity", 0.45),
            map_style=style if style in MAP_STYLES else "filled",
        )

    def restore(self, window: QMainWindow, splitter: QSplitter) -> None:
        """Window geometry and splitter sizes, when stored."""
        geometry = self.qsettings.value("geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            window.restoreGeometry(geometry)
        sizes = self.qsettings.value("splitter")
        if isinstance(sizes, QByteArray) and not sizes.isEmpty():
            splitter.restoreState(sizes)

    def save(self, window: QMainWindow, splitter: QSplitter, state: ViewerState) -> None:
        """Everything, written to disk now."""
        self.qsettings.setValue("geometry", window.saveGeometry())
        self.qsettings.setValue("splitter", splitter.saveState())
        self.qsettings.setValue("overlay_opacity", float(state.overlay_opacity))
        self.qsettings.setValue("map_style", state.map_style)
        self.qsettings.sync()

    def last_folder(self) -> str:
        """The folder the file dialogs start in (home when the stored one is gone)."""
        value = self.qsettings.value("last_folder", "")
        return str(value) if value and Path(str(value)).is_dir() else str(Path.home())

    def remember_folder(self, path: str | os.PathLike[str]) -> None:
        """Remember a file's folder (or a folder) for the next dialog."""
        p = Path(path)
        self.qsettings.setValue("last_folder", str(p if p.is_dir() else p.parent))
