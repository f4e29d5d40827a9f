"""The DICOM tag browser: every element of the shown file's header, filterable (PHI on screen only).

The header is parsed off the GUI thread (a `QRunnable` on the global thread pool) with the viewer's
guarded reader (`cxr_viewer.core.dicom_tags.read_tags`). Values include patient data: they go to the
table and nowhere else; a failure is logged with its short, log-safe reason only.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QLineEdit,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from cxr_viewer.core.reasons import message_of, short_reason

if TYPE_CHECKING:
    from pathlib import Path

    from cxr_viewer.core.dicom_tags import TagRow

__all__ = ["TagBrowser"]

log = logging.getLogger(__name__)


class _Signals(QObject):
    read = Signal(object)  # list[TagRow]
    failed = Signal(str)


class _ReadTags(QRunnable):
    """Reads the tags on a pool thread and hands them back through queued signals."""

    def __init__(self, path: Path, signals: _Signals) -> None:
        super().__init__()
        self._path, self._signals = path, signals

    def run(self) -> None:  # Qt override, on the pool thread
        from cxr_viewer.core.dicom_tags import read_tags
        from cxr_viewer.core.errors import ImageLoadError

        try:
            rows = read_tags(self._path)
        except ImageLoadError as exc:  # the reader's own reasons are log-safe and say what is wrong
            self._signals.failed.emit(message_of(exc))
            return
        except Exception as exc:  # any other failure is a message in the dialog, never a crash
            self._signals.failed.emit(short_reason(exc, "cannot read the header"))
            return
        self._signals.read.emit(rows)


class TagBrowser(QDialog):
    """A non-modal dialog listing the header of ``path``; type in the box to filter by tag, keyword or
    value."""

    #: the tags were read and listed (number of rows) or the read failed (-1)
    loaded = Signal(int)

    def __init__(self, path: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"DICOM tags - {path.name}")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)
        self.note = QLabel("Reading the header...")
        self.note.setWordWrap(True)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter by tag, keyword or value")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self._apply_filter)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Tag", "Keyword", "VR", "Value"])
        self.tree.setUniformRowHeights(True)
        self.tree.header().setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.note)
        layout.addWidget(self.filter)
        layout.addWidget(self.tree, 1)
        layout.addWidget(buttons)
        self.resize(760, 620)
        self._signals = _Signals(self)
        self._signals.read.connect(self._show_rows)
        self._signals.failed.connect(self._show_failure)
        QThreadPool.globalInstance().start(_ReadTags(path, self._signals))

    def _show_rows(self, rows: list[TagRow]) -> None:
        self.tree.clear()
        parents: list[QTreeWidgetItem] = []
        for row in rows:
            item = QTreeWidgetItem([row.tag, row.keyword, row.vr, row.value])
            item.setToolTip(3, row.value)
            del parents[row.depth :]
            if parents:
                parents[-1].addChild(item)
            else:
                self.tree.addTopLevelItem(item)
            parents.append(item)
        self.tree.expandAll()
        for column in range(3):
            self.tree.resizeColumnToContents(column)
        self.note.setText(
            f"{len(rows)} elements. Patient data is shown here only: it is never written to a log."
        )
        self._apply_filter(self.filter.text())
        self.loaded.emit(len(rows))

    def _show_failure(self, reason: str) -> None:
        log.info("tag browser: %s", reason)  # the reason is log-safe (no header values)
        self.note.setText(f"No DICOM tags: {reason}")
        self.loaded.emit(-1)

    def _apply_filter(self, text: str) -> None:
        needle = text.strip().lower()

        def visit(item: QTreeWidgetItem) -> bool:
            own = not needle or any(needle in item.text(c).lower() for c in range(4))
            child = False
            for i in range(item.childCount()):
                sub = item.child(i)
                if sub is not None:
                    child = visit(sub) or child
            item.setHidden(not (own or child))
            return own or child

        for i in range(self.tree.topLevelItemCount()):
            top = self.tree.topLevelItem(i)
            if top is not None:
                visit(top)

    def rows_shown(self) -> list[tuple[str, str, str, str]]:
        """The rows not hidden by the filter, depth first (for tests)."""
        out: list[tuple[str, str, str, str]] = []

        def walk(item: QTreeWidgetItem) -> None:
            if not item.isHidden():
                out.append((item.text(0), item.text(1), item.text(2), item.text(3)))
            for i in range(item.childCount()):
                sub = item.child(i)
                if sub is not None:
                    walk(sub)

        for i in range(self.tree.topLevelItemCount()):
            top = self.tree.topLevelItem(i)
            if top is not None:
                walk(top)
        return out
