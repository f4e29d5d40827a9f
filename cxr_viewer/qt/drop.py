"""Drops anywhere on the window: child widgets forward drag-and-drop events to it."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from PySide6.QtCore import QEvent, QObject

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from PySide6.QtGui import QDropEvent
    from PySide6.QtWidgets import QWidget

__all__ = ["DropForwarder", "dropped_paths"]


def dropped_paths(event: QDropEvent) -> list[str]:
    """Local file and folder paths of a drop (other URLs are ignored)."""
    return [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]


class DropForwarder(QObject):
    """Event filter: accepts drags that carry URLs and hands drops to ``on_drop``."""

    def __init__(self, parent: QObject, on_drop: Callable[[QDropEvent], None]) -> None:
        super().__init__(parent)
        self._on_drop = on_drop

    def install(self, widgets: Iterable[QWidget]) -> None:
        """Let ``widgets`` accept drops and forward them."""
        for widget in widgets:
            widget.setAcceptDrops(True)
            widget.installEventFilter(self)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # Qt override
        kind = event.type()
        if kind not in (QEvent.Type.DragEnter, QEvent.Type.DragMove, QEvent.Type.Drop):
            return False
        drop = cast("QDropEvent", event)  # the three kinds are QDropEvent or its subclasses
        if not drop.mimeData().hasUrls():
            return False
        if kind == QEvent.Type.Drop:
            self._on_drop(drop)
        else:
            drop.acceptProposedAction()
        return True
