"""The worklist: one row per study with thumbnail, name, status and triage score; sortable."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QModelIndex, QSize, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QIcon, QImage, QPixmap, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QStyle, QTableView, QWidget

from cxr_viewer.core.pipeline import StudyStatus

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["STATUSES", "Worklist"]

STUDY_ROLE = Qt.ItemDataRole.UserRole + 1
SORT_ROLE = Qt.ItemDataRole.UserRole + 2
SCORE_ROLE = Qt.ItemDataRole.UserRole + 3  # the triage score itself (SORT_ROLE also encodes the scope)
COL_NAME, COL_STATUS, COL_SCORE = 0, 1, 2
#: row statuses in their sort order (most urgent work first)
STATUSES: tuple[StudyStatus, ...] = (
    StudyStatus.ANALYSING,
    StudyStatus.QUEUED,
    StudyStatus.DONE,
    StudyStatus.VIEWED_NO_MODEL,
    StudyStatus.CANCELLED,
    StudyStatus.NOT_SCORED,
    StudyStatus.ERROR,
)
_STATUS_COLOURS = {
    StudyStatus.ERROR: QColor(200, 40, 40),
    StudyStatus.ANALYSING: QColor(30, 110, 200),
    StudyStatus.CANCELLED: QColor(130, 130, 130),
    StudyStatus.NOT_SCORED: QColor(130, 130, 130),
}


def thumbnail_icon(thumb: np.ndarray) -> QIcon:
    """QIcon from a uint8 (h, w) grey thumbnail."""
    arr = np.ascontiguousarray(thumb, dtype=np.uint8)
    h, w = arr.shape
    qimage = QImage(arr.data, w, h, w, QImage.Format.Format_Grayscale8).copy()  # copy: own the memory
    return QIcon(QPixmap.fromImage(qimage))


class Worklist(QTableView):
    """Sortable table of studies (click a header to sort; arrows/PageUp/PageDown move the selection)."""

    #: the current study changed (study id, or -1 when none)
    study_selected = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source = QStandardItemModel(0, 3, self)
        self.source.setHorizontalHeaderLabels(["Study", "Status", "Score"])
        self.source.horizontalHeaderItem(COL_SCORE).setToolTip(
            "Triage score: the highest probability / class threshold over all findings\n"
            "(>= 1: at least one finding at or above its threshold; the highest probability\n"
            "when the model has no thresholds). Click a header to sort."
        )
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.source)
        self.proxy.setSortRole(SORT_ROLE)
        self.proxy.setDynamicSortFilter(True)
        self.setModel(self.proxy)
        self.setSortingEnabled(True)
        self.sortByColumn(COL_SCORE, Qt.SortOrder.DescendingOrder)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setIconSize(QSize(40, 40))
        self.verticalHeader().setDefaultSectionSize(44)
        self.verticalHeader().hide()
        header = self.horizontalHeader()
        header.setSectionResizeMode(COL_NAME, QHeaderView.ResizeMode.Stretch)
        # fixed width: long error reasons are elided here and shown in full in the tooltip
        header.setSectionResizeMode(COL_STATUS, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(COL_STATUS, 92)
        header.setSectionResizeMode(COL_SCORE, QHeaderView.ResizeMode.ResizeToContents)
        self.setWordWrap(False)
        self.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.setAlternatingRowColors(True)
        self._rows: dict[int, int] = {}  # study id -> source row
        self.selectionModel().currentRowChanged.connect(self._current_row_changed)

    # ------------------------------------------------------------------------------ rows
    def add_study(self, study_id: int, name: str, tooltip: str = "") -> None:
        """Append a queued study."""
        name_item = QStandardItem(name)
        name_item.setData(study_id, STUDY_ROLE)
        name_item.setData(len(self._rows), SORT_ROLE)
        name_item.setToolTip(tooltip or name)
        status_item = QStandardItem(StudyStatus.QUEUED.value)
        status_item.setData(STATUSES.index(StudyStatus.QUEUED), SORT_ROLE)
        score_item = QStandardItem("")
        score_item.setData(-2.0, SORT_ROLE)
        score_item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self._rows[study_id] = self.source.rowCount()
        self.source.appendRow([name_item, status_item, score_item])

    def clear_studies(self) -> None:
        """Remove every row."""
        self.source.removeRows(0, self.source.rowCount())
        self._rows.clear()

    def _item(self, study_id: int, column: int) -> QStandardItem | None:
        row = self._rows.get(study_id)
        return None if row is None else self.source.item(row, column)

    def set_thumbnail(self, study_id: int, thumb: np.ndarray) -> None:
        """Show a uint8 (h, w) thumbnail in the study's row."""
        item = self._item(study_id, COL_NAME)
        if item is not None:
            item.setIcon(thumbnail_icon(thumb))

    def set_status(self, study_id: int, status: StudyStatus, reason: str = "") -> None:
        """The row's status; ``reason`` is shown for errors (and as tooltip)."""
        item = self._item(study_id, COL_STATUS)
        if item is None:
            return
        status = StudyStatus(status)
        error = status is StudyStatus.ERROR
        item.setText(f"error: {reason}" if error and reason else status.value)
        item.setToolTip(reason or status.value)
        item.setData(STATUSES.index(status), SORT_ROLE)
        colour = _STATUS_COLOURS.get(status)
        item.setForeground(QBrush(colour) if colour is not None else QBrush())
        name_item = self._item(study_id, COL_NAME)
        if error and name_item is not None and name_item.icon().isNull():
            name_item.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning))

    def set_score(
        self, study_id: int, score: float | None, flagged: str = "", out_of_scope: str = ""
    ) -> None:
        """Show the triage score (None clears it); ``flagged`` lists findings above threshold (tooltip).

        ``out_of_scope`` (why the header says this is not a frontal chest radiograph) marks the score
        with a warning sign and sorts the row below every in-scope scored study, above unscored ones.
        """
        item = self._item(study_id, COL_SCORE)
        if item is None:
            return
        if score is None:
            item.setText("")
            item.setData(None, SCORE_ROLE)
            item.setData(-2.0, SORT_ROLE)
            item.setToolTip("")
        else:
            item.setText(f"\u26a0 {score:.2f}" if out_of_scope else f"{score:.2f}")
            item.setData(float(score), SCORE_ROLE)
            # in scope: the score (>= 0); out of scope: squeezed into [-1, 0), below them all
            item.setData(score / (1.0 + score) - 1.0 if out_of_scope else float(score), SORT_ROLE)
            tip = flagged or "no finding above its threshold"
            item.setToolTip(f"Out of scope: {out_of_scope}. Findings: {tip}" if out_of_scope else tip)
        bold = item.font()
        bold.setBold(bool(flagged) and not out_of_scope)
        item.setFont(bold)
        item.setForeground(QBrush(QColor("#8a6d00")) if out_of_scope else QBrush())

    def status_of(self, study_id: int) -> str:
        """The status text of a row ("" for an unknown id)."""
        item = self._item(study_id, COL_STATUS)
        return "" if item is None else item.text()

    def score_text_of(self, study_id: int) -> str:
        """The score cell as shown ("" for an unknown id or no score yet)."""
        return "" if (item := self._item(study_id, COL_SCORE)) is None else item.text()

    def score_of(self, study_id: int) -> float | None:
        """The shown score, or None."""
        value = None if (item := self._item(study_id, COL_SCORE)) is None else item.data(SCORE_ROLE)
        return None if value is None else float(value)

    def study_count(self) -> int:
        """Number of rows."""
        return self.source.rowCount()

    def study_ids_in_view_order(self) -> list[int]:
        """Study ids from top to bottom as currently sorted."""
        return [int(self.proxy.index(r, COL_NAME).data(STUDY_ROLE)) for r in range(self.proxy.rowCount())]

    # ------------------------------------------------------------------------------ selection
    def select_study(self, study_id: int) -> None:
        """Make a study the current row."""
        row = self._rows.get(study_id)
        if row is None:
            return
        index = self.proxy.mapFromSource(self.source.index(row, COL_NAME))
        self.setCurrentIndex(index)
        self.scrollTo(index)

    def select_first(self, wanted: Callable[[int], bool]) -> None:
        """Select the top study (in view order) for which ``wanted(study_id)`` is true, if any."""
        first = next((sid for sid in self.study_ids_in_view_order() if wanted(sid)), None)
        if first is not None:
            self.select_study(first)

    def select_step(self, step: int) -> None:
        """Select the study ``step`` rows below the current one (above for negative), clamped; the top
        one when none is current."""
        order = self.study_ids_in_view_order()
        if not order:
            return
        current = self.current_study()
        index = order.index(current) + step if current in order else 0
        self.select_study(order[max(0, min(index, len(order) - 1))])

    def current_study(self) -> int | None:
        """The current study id, or None."""
        index = self.currentIndex()
        if not index.isValid():
            return None
        return int(self.proxy.index(index.row(), COL_NAME).data(STUDY_ROLE))

    def _current_row_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if not current.isValid():
            self.study_selected.emit(-1)
            return
        self.study_selected.emit(int(self.proxy.index(current.row(), COL_NAME).data(STUDY_ROLE)))
