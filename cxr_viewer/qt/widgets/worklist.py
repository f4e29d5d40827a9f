"""The worklist: one row per study (its images beneath, its priors listed with it), sortable, filterable.

Which image belongs to which study and patient, a study's score and the order of priors come from
`cxr_viewer.core.studies` (Qt-free); this widget only draws them. Rows:

- a top row per patient: their newest study (``00000013 · follow-up 5 · 3 priors``), scored by its
  best frontal image; a study of one image is that image's row;
- beneath it, the study's images when it has more than one (best frontal first, laterals last), then
  its priors (``Prior: follow-up 4``), newest first, each with its own images beneath.

Every row stands for an image (a study row: its best frontal image), so selecting any row shows one.
Housekeeping: remove a study, mark it read/unread (unread studies are bold), "flagged only", search.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import (
    QModelIndex,
    QPersistentModelIndex,
    QSize,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QBrush, QColor, QIcon, QImage, QKeyEvent, QPixmap, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QStyle,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from cxr_viewer.core.pipeline import StudyStatus
from cxr_viewer.core.studies import ImageFacts, PatientGroup, StudyGroup, group_worklist, study_score

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

__all__ = ["STATUSES", "Worklist", "WorklistPanel"]

STUDY_ROLE = Qt.ItemDataRole.UserRole + 1  # the image id a row shows
SORT_ROLE = Qt.ItemDataRole.UserRole + 2
SCORE_ROLE = Qt.ItemDataRole.UserRole + 3  # the triage score itself (SORT_ROLE also encodes the scope)
GROUP_ROLE = Qt.ItemDataRole.UserRole + 4  # the study key of a study row ("" on an image row)
CHILD_ROLE = Qt.ItemDataRole.UserRole + 5  # fixed place of a child row (images, then priors)
FLAGGED_ROLE = Qt.ItemDataRole.UserRole + 6  # a top row whose study has a finding above threshold
SEARCH_ROLE = Qt.ItemDataRole.UserRole + 7  # lower-case text the search box matches
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


@dataclass
class _Image:
    """What the worklist shows of one image."""

    facts: ImageFacts
    tooltip: str
    arrival: int
    icon: QIcon | None = None
    status: StudyStatus = StudyStatus.QUEUED
    reason: str = ""
    score: float | None = None
    flagged: str = ""
    out_of_scope: str = ""


def _patient_text(patient: str) -> str:
    """The patient part of a row's name ("" when the patient key is a file or a study)."""
    kind, _, value = patient.partition(":")
    return value if kind in ("nih", "id") else ""


class _WorklistProxy(QSortFilterProxyModel):
    """Sorts top rows by the chosen column (child rows keep their fixed order) and filters top rows."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.flagged_only = False
        self.search = ""

    def lessThan(
        self, left: QModelIndex | QPersistentModelIndex, right: QModelIndex | QPersistentModelIndex
    ) -> bool:  # Qt override
        if left.parent().isValid():  # images and priors beneath a study: always in their own order
            a, b = left.data(CHILD_ROLE), right.data(CHILD_ROLE)
            return bool(a > b) if self.sortOrder() == Qt.SortOrder.DescendingOrder else bool(a < b)
        if left.data(SORT_ROLE) == right.data(SORT_ROLE):  # ties: the first to arrive first, either way
            a, b = (
                left.sibling(left.row(), COL_NAME).data(SORT_ROLE),
                right.sibling(right.row(), COL_NAME).data(SORT_ROLE),
            )
            return bool(a > b) if self.sortOrder() == Qt.SortOrder.DescendingOrder else bool(a < b)
        return bool(super().lessThan(left, right))

    def filterAcceptsRow(self, source_row: int, source_parent: QModelIndex | QPersistentModelIndex) -> bool:
        if source_parent.isValid():
            return True
        index = self.sourceModel().index(source_row, COL_NAME, source_parent)
        if self.flagged_only and not index.data(FLAGGED_ROLE):
            return False
        return not self.search or self.search in str(index.data(SEARCH_ROLE) or "")


class Worklist(QTreeView):
    """Studies grouped by patient (click a header to sort; Up/Down step rows, PageUp/PageDown studies)."""

    #: the current row changed: the image id it shows, or -1 when none
    study_selected = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source = QStandardItemModel(0, 3, self)
        self.source.setHorizontalHeaderLabels(["Study", "Status", "Score"])
        self.source.horizontalHeaderItem(COL_SCORE).setToolTip(
            "Triage score of a study: that of its highest-scoring frontal image (lateral views are\n"
            "shown, not scored). An image's score: the highest probability / class threshold over all\n"
            "findings (>= 1: at least one finding at or above its threshold; the highest probability\n"
            "when the model has no thresholds). Click a header to sort."
        )
        self.proxy = _WorklistProxy(self)
        self.proxy.setSourceModel(self.source)
        self.proxy.setSortRole(SORT_ROLE)
        self.proxy.setDynamicSortFilter(True)
        self.proxy.setRecursiveFilteringEnabled(False)
        self.setModel(self.proxy)
        self.setSortingEnabled(True)
        self.sortByColumn(COL_SCORE, Qt.SortOrder.DescendingOrder)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setIconSize(QSize(40, 40))
        self.setUniformRowHeights(True)
        self.setIndentation(14)
        self.setRootIsDecorated(True)
        header = self.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(COL_NAME, QHeaderView.ResizeMode.Stretch)
        # fixed width: long error reasons are elided here and shown in full in the tooltip
        header.setSectionResizeMode(COL_STATUS, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(COL_STATUS, 92)
        header.setSectionResizeMode(COL_SCORE, QHeaderView.ResizeMode.ResizeToContents)
        self.setWordWrap(False)
        self.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.setAlternatingRowColors(True)
        self._images: dict[int, _Image] = {}
        self._arrivals = 0
        self._read: set[str] = set()  # study keys marked read
        self._groups: list[PatientGroup] = []
        self._study_of: dict[int, str] = {}  # image id -> its study key
        self._studies: dict[str, StudyGroup] = {}
        self._patient_of_study: dict[str, PatientGroup] = {}
        self._image_rows: dict[int, list[QStandardItem]] = {}  # image id -> the row that is that image
        self._study_rows: dict[str, list[QStandardItem]] = {}  # study key -> its row
        self._dirty = False
        self._quiet = False  # rebuilding: the current row is put back without a signal
        #: the user chose a row since the last automatic selection (then the list leaves it alone)
        self.user_moved = False
        self._rebuild_timer = QTimer(self)
        self._rebuild_timer.setSingleShot(True)
        self._rebuild_timer.setInterval(0)
        self._rebuild_timer.timeout.connect(self._flush)
        self.selectionModel().currentRowChanged.connect(self._current_row_changed)

    # ------------------------------------------------------------------------------ images in
    def add_study(self, study_id: int, name: str, tooltip: str = "", facts: ImageFacts | None = None) -> None:
        """Add a queued image (``facts``: its study and patient; default: the file is its own study)."""
        if facts is None:
            facts = ImageFacts(study_id, name, f"file:{study_id}", f"file:{study_id}", name)
        self._images[study_id] = _Image(facts, tooltip or name, self._arrivals)
        self._arrivals += 1
        self._mark_dirty()

    def set_facts(self, study_id: int, facts: ImageFacts) -> None:
        """An image's study or patient changed (its header was read): it moves to its study."""
        image = self._images.get(study_id)
        if image is not None and image.facts != facts:
            image.facts = facts
            self._mark_dirty()

    def remove_images(self, study_ids: Iterable[int]) -> None:
        """Take images off the list (their studies go when they have no image left)."""
        for sid in study_ids:
            self._images.pop(sid, None)
        self._mark_dirty()
        self._flush()

    def clear_studies(self) -> None:
        """Remove every row."""
        self._images.clear()
        self._read.clear()
        self._mark_dirty()
        self._flush()

    def set_thumbnail(self, study_id: int, thumb: np.ndarray) -> None:
        """Show a uint8 (h, w) thumbnail for an image (and on its study's row when it stands for it)."""
        image = self._images.get(study_id)
        if image is None:
            return
        image.icon = thumbnail_icon(thumb)
        self._refresh(study_id)

    def set_status(self, study_id: int, status: StudyStatus, reason: str = "") -> None:
        """An image's status; ``reason`` is shown for errors (and as tooltip)."""
        image = self._images.get(study_id)
        if image is None:
            return
        image.status, image.reason = StudyStatus(status), reason
        self._refresh(study_id)

    def set_score(
        self, study_id: int, score: float | None, flagged: str = "", out_of_scope: str = ""
    ) -> None:
        """An image's triage score (None clears it); ``flagged`` lists findings above threshold (tooltip).

        ``out_of_scope`` (why the header says this is not a frontal chest radiograph) marks the score
        with a warning sign and sorts the row below every in-scope scored study, above unscored ones.
        """
        image = self._images.get(study_id)
        if image is None:
            return
        image.score, image.flagged, image.out_of_scope = score, flagged, out_of_scope
        self._refresh(study_id)

    # ------------------------------------------------------------------------------ queries
    def status_of(self, study_id: int) -> str:
        """The status text of an image's row ("" for an unknown id)."""
        self._flush()
        row = self._image_rows.get(study_id)
        return "" if row is None else row[COL_STATUS].text()

    def score_text_of(self, study_id: int) -> str:
        """An image's score cell as shown ("" for an unknown id or no score yet)."""
        self._flush()
        row = self._image_rows.get(study_id)
        return "" if row is None else row[COL_SCORE].text()

    def score_of(self, study_id: int) -> float | None:
        """An image's shown score, or None."""
        self._flush()
        row = self._image_rows.get(study_id)
        value = None if row is None else row[COL_SCORE].data(SCORE_ROLE)
        return None if value is None else float(value)

    def study_count(self) -> int:
        """Number of images in the list."""
        return len(self._images)

    def group_count(self) -> int:
        """Number of studies (top rows and priors)."""
        self._flush()
        return len(self._studies)

    def top_row_count(self) -> int:
        """Number of top rows shown (one per patient that the filters let through)."""
        self._flush()
        return self.proxy.rowCount()

    def patients(self) -> list[PatientGroup]:
        """The grouping as drawn (patients in arrival order)."""
        self._flush()
        return [self._fresh(p) for p in self._groups]

    def _fresh(self, patient: PatientGroup) -> PatientGroup:
        """The patient's studies with their scores as they are now (scores change without a rebuild)."""
        studies = self._studies
        priors = tuple(studies[s.key] for s in patient.priors)
        return PatientGroup(patient.patient, studies[patient.current.key], priors)

    def study_key_of(self, study_id: int) -> str:
        """The study an image belongs to ("" for an unknown id)."""
        self._flush()
        return self._study_of.get(study_id, "")

    def study_of(self, study_id: int) -> StudyGroup | None:
        """The study an image belongs to."""
        self._flush()
        return self._studies.get(self._study_of.get(study_id, ""))

    def patient_of(self, study_id: int) -> PatientGroup | None:
        """The patient whose studies hold an image."""
        key = self.study_key_of(study_id)
        found = self._patient_of_study.get(key)
        return None if found is None else self._fresh(found)

    def row_text(self, study_id: int) -> str:
        """The name cell of the row that stands for an image's study."""
        self._flush()
        row = self._study_rows.get(self._study_of.get(study_id, ""))
        return "" if row is None else row[COL_NAME].text()

    def study_ids_in_view_order(self) -> list[int]:
        """Image ids from top to bottom as currently sorted (collapsed rows included, each id once)."""
        self._flush()
        order: dict[int, None] = {}

        def walk(parent: QModelIndex) -> None:
            for r in range(self.proxy.rowCount(parent)):
                index = self.proxy.index(r, COL_NAME, parent)
                order[int(index.data(STUDY_ROLE))] = None
                walk(index)

        walk(QModelIndex())
        return list(order)

    def top_study_ids(self) -> list[int]:
        """The image each top row shows, top to bottom."""
        self._flush()
        return [int(self.proxy.index(r, COL_NAME).data(STUDY_ROLE)) for r in range(self.proxy.rowCount())]

    # ------------------------------------------------------------------------------ selection
    def select_study(self, study_id: int) -> None:
        """Make an image's row current (the user's choice: the list no longer moves it)."""
        self.user_moved = True
        self._select(study_id)

    def select_first(self, wanted: Callable[[int], bool]) -> None:
        """Select the top row (in view order) whose image ``wanted(study_id)`` accepts, if any (an
        automatic choice: :meth:`select_top` may move it again while the user has not)."""
        first = next((sid for sid in self.top_study_ids() if wanted(sid)), None)
        if first is not None:
            self.user_moved = False
            self._select(first, study_row=True)

    def select_top(self, wanted: Callable[[int], bool]) -> bool:
        """After loading: select the top of the triage list unless the user chose a row; True if moved."""
        if self.user_moved or len(self._images) < 2:
            return False  # the user chose; or a single image: nothing to choose from
        first = next((sid for sid in self.top_study_ids() if wanted(sid)), None)
        if first is None or (self._current_row_study() == self._study_of.get(first) and self._at_study_row()):
            return False
        self._select(first, study_row=True)
        return True

    def select_step(self, step: int) -> None:
        """Select the study (top row) ``step`` rows below the current one (above for negative), clamped;
        the top one when none is current."""
        order = self.top_study_ids()
        if not order:
            return
        current = self._current_top()
        index = current + step if current is not None else 0
        self.user_moved = True
        self._select(order[max(0, min(index, len(order) - 1))], study_row=True)

    def select_image_step(self, step: int) -> None:
        """Select the image ``step`` places after the current one in view order (images beneath
        collapsed studies included), clamped."""
        order = self.study_ids_in_view_order()
        if not order:
            return
        current = self.current_study()
        index = order.index(current) + step if current in order else 0
        self.user_moved = True
        self._select(order[max(0, min(index, len(order) - 1))])

    def current_study(self) -> int | None:
        """The image id the current row shows, or None."""
        self._flush()
        index = self.currentIndex()
        if not index.isValid():
            return None
        return int(index.siblingAtColumn(COL_NAME).data(STUDY_ROLE))

    def current_study_images(self) -> list[int]:
        """The images of the current row's study (an image row: the study it belongs to)."""
        key = self._current_row_study()
        group = self._studies.get(key or "")
        return [] if group is None else list(group.image_ids)

    # ------------------------------------------------------------------------------ housekeeping
    def toggle_read(self) -> bool | None:
        """Mark the current row's study read (or unread again); returns its new state (None: no row)."""
        key = self._current_row_study()
        if key is None:
            return None
        read = key not in self._read
        (self._read.add if read else self._read.discard)(key)
        self._fill_study(key)
        return read

    def is_read(self, study_id: int) -> bool:
        """Whether the study of an image is marked read."""
        return self.study_key_of(study_id) in self._read

    def set_flagged_only(self, on: bool) -> None:
        """Show only patients whose study has a finding at or above its threshold."""
        self._flush()
        self.proxy.flagged_only = bool(on)
        self.proxy.invalidate()

    def set_search(self, text: str) -> None:
        """Show only patients whose file names, patient number or study names contain ``text``."""
        self._flush()
        self.proxy.search = text.strip().lower()
        self.proxy.invalidate()

    # ------------------------------------------------------------------------------ keys
    def keyPressEvent(self, event: QKeyEvent) -> None:  # Qt override
        """PageUp/PageDown step studies (RadiAnt, Weasis); arrows keep stepping rows."""
        if event.key() in (Qt.Key.Key_PageDown, Qt.Key.Key_PageUp):
            self.select_step(1 if event.key() == Qt.Key.Key_PageDown else -1)
            event.accept()
            return
        if event.key() in (Qt.Key.Key_Up, Qt.Key.Key_Down, Qt.Key.Key_Home, Qt.Key.Key_End):
            self.user_moved = True
        super().keyPressEvent(event)

    def mousePressEvent(self, event: object) -> None:  # Qt override
        self.user_moved = True
        super().mousePressEvent(event)  # type: ignore[arg-type]

    # ------------------------------------------------------------------------------ drawing
    def _mark_dirty(self) -> None:
        self._dirty = True
        self._rebuild_timer.start()

    def _flush(self) -> None:
        if self._dirty:
            self._rebuild()

    def _scores(self) -> dict[int, float | None]:
        return {sid: im.score for sid, im in self._images.items()}

    def _rebuild(self) -> None:
        """Draw the grouping again, keeping the current row, the expanded studies and the sort."""
        self._dirty = False
        current_image = self._current_image_raw()
        current_key = self._current_row_key_raw()
        expanded = {
            str(self.proxy.index(r, COL_NAME).data(GROUP_ROLE))
            for r in range(self.proxy.rowCount())
            if self.isExpanded(self.proxy.index(r, COL_NAME))
        }
        here = self.currentIndex()
        while here.parent().isValid():
            here = here.parent()
        current_open = here.isValid() and self.isExpanded(here.siblingAtColumn(COL_NAME))
        arrivals = sorted(self._images.values(), key=lambda im: im.arrival)
        self._groups = group_worklist([im.facts for im in arrivals], self._scores())
        self._studies = {s.key: s for p in self._groups for s in p.studies}
        self._patient_of_study = {s.key: p for p in self._groups for s in p.studies}
        self._study_of = {sid: s.key for s in self._studies.values() for sid in s.image_ids}
        self._image_rows.clear()
        self._study_rows.clear()
        self._quiet = True
        try:
            self.source.removeRows(0, self.source.rowCount())
            for patient in self._groups:
                top = self._study_row(
                    patient.current, f"{len(patient.priors)} prior" if patient.priors else ""
                )
                self.source.appendRow(top)
                self._image_children(top[COL_NAME], patient.current)
                for i, prior in enumerate(patient.priors):
                    row = self._study_row(prior, "", prior=True)
                    for item in row:
                        item.setData(1000 + i, CHILD_ROLE)
                    top[COL_NAME].appendRow(row)
                    self._image_children(row[COL_NAME], prior)
                self._fill_study(patient.current.key)
            for r in range(self.proxy.rowCount()):
                index = self.proxy.index(r, COL_NAME)
                if str(index.data(GROUP_ROLE)) in expanded:
                    self.expand(index)
            if current_image is not None:
                on_study = current_key and current_key in self._study_rows
                self._select(current_image, study_row=bool(on_study), quiet=True)
                here = self.currentIndex()
                while here.parent().isValid():
                    here = here.parent()
                if current_open and here.isValid():  # its study moved (a header was read): still open
                    self.expand(here.siblingAtColumn(COL_NAME))
        finally:
            self._quiet = False
        if current_image is not None and self._current_image_raw() != current_image:
            self.study_selected.emit(
                self._current_image_raw() if self._current_image_raw() is not None else -1
            )

    def _study_row(self, group: StudyGroup, priors: str, prior: bool = False) -> list[QStandardItem]:
        items = [QStandardItem(), QStandardItem(), QStandardItem()]
        for item in items:
            item.setData(group.key, GROUP_ROLE)
            item.setData(group.best_image, STUDY_ROLE)
        items[COL_SCORE].setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        items[COL_NAME].setData(priors, Qt.ItemDataRole.UserRole + 20)
        items[COL_NAME].setData(prior, Qt.ItemDataRole.UserRole + 21)
        self._study_rows[group.key] = items
        if len(group.image_ids) == 1:
            self._image_rows[group.image_ids[0]] = items
        return items

    def _image_children(self, parent: QStandardItem, group: StudyGroup) -> None:
        if len(group.image_ids) < 2:
            return
        for place, sid in enumerate(group.image_ids):
            items = [QStandardItem(), QStandardItem(), QStandardItem()]
            for item in items:
                item.setData(sid, STUDY_ROLE)
                item.setData("", GROUP_ROLE)
                item.setData(place, CHILD_ROLE)
            items[COL_SCORE].setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            parent.appendRow(items)
            self._image_rows[sid] = items
            self._fill_image(sid)

    def _refresh(self, study_id: int) -> None:
        """Redraw an image's row and its study's (the study's score and image order may change)."""
        if self._dirty:
            return  # the coming rebuild draws it
        key = self._study_of.get(study_id)
        if key is None:
            self._mark_dirty()
            return
        group = self._studies[key]
        members = [self._images[sid].facts for sid in sorted(group.image_ids, key=self._arrival)]
        score, ids = study_score(members, {f.image_id: self._images[f.image_id].score for f in members})
        group = StudyGroup(group.key, group.patient, group.label, group.order, ids, ids[0], score)
        self._studies[key] = group
        rows = self._study_rows[key]
        for item in rows:
            item.setData(group.best_image, STUDY_ROLE)
        if len(ids) > 1:
            for place, sid in enumerate(ids):
                for item in self._image_rows.get(sid, []):
                    if item.data(CHILD_ROLE) != place:
                        item.setData(place, CHILD_ROLE)
            self._fill_image(study_id)
        self._fill_study(key)
        patient = self._patient_of_study.get(key)
        top = patient.current.key if patient is not None else key
        if top != key:
            self._fill_study(top)  # the top row's search text and flags cover its priors

    def _arrival(self, study_id: int) -> int:
        return self._images[study_id].arrival

    def _fill_image(self, study_id: int) -> None:
        """The cells of an image row (its own status and score)."""
        row, image = self._image_rows.get(study_id), self._images.get(study_id)
        if row is None or image is None:
            return
        name = row[COL_NAME]
        if self._study_rows.get(self._study_of.get(study_id, "")) is not row:
            name.setText(image.facts.name + (" (lateral)" if image.facts.lateral else ""))
            name.setToolTip(image.tooltip)
            name.setData(image.arrival, SORT_ROLE)
        self._fill_icon(name, image)
        self._fill_status(row[COL_STATUS], image.status, image.reason)
        self._fill_score(row[COL_SCORE], image)

    def _fill_study(self, key: str) -> None:
        """The cells of a study row: its name, best image's thumbnail and score, and its status."""
        rows, group = self._study_rows.get(key), self._studies.get(key)
        if rows is None or group is None:
            return
        images = [self._images[sid] for sid in group.image_ids if sid in self._images]
        if not images:
            return
        best = self._images[group.best_image]
        name = rows[COL_NAME]
        prior = bool(name.data(Qt.ItemDataRole.UserRole + 21))
        priors = str(name.data(Qt.ItemDataRole.UserRole + 20) or "")
        patient = _patient_text(group.patient)
        parts = [f"{patient} \u00b7 {group.label}" if patient else group.label]
        if len(images) == 1 and not patient and group.label != best.facts.name:
            parts = [best.facts.name, group.label]
        if len(images) > 1:
            parts.append(f"{len(images)} images")
        if priors:
            parts.append(priors + ("" if priors.startswith("1 ") else "s"))
        name.setText(("Prior: " if prior else "") + " \u00b7 ".join(parts))
        names = ", ".join(im.facts.name for im in images)
        name.setToolTip(best.tooltip if len(images) == 1 else f"{group.label}: {names}")
        name.setData(min(im.arrival for im in images), SORT_ROLE)
        font = name.font()
        font.setBold(key not in self._read)
        name.setFont(font)
        self._fill_icon(name, best)
        waiting = min(images, key=lambda im: STATUSES.index(im.status))
        reason = waiting.reason
        if len(images) > 1:
            counts: dict[str, int] = {}
            for im in images:
                counts[im.status.value] = counts.get(im.status.value, 0) + 1
            reason = reason or ", ".join(f"{n} {s}" for s, n in counts.items())
        self._fill_status(rows[COL_STATUS], waiting.status, reason if len(images) == 1 else "")
        if len(images) > 1:
            rows[COL_STATUS].setToolTip(", ".join(f"{im.facts.name}: {im.status.value}" for im in images))
        scored = best if group.score is not None else None
        self._fill_score(rows[COL_SCORE], scored, all_lateral=all(im.facts.lateral for im in images))
        if not prior:
            patient_group = self._patient_of_study.get(key)
            studies = patient_group.studies if patient_group is not None else (group,)
            members = [self._images[sid] for s in studies for sid in s.image_ids if sid in self._images]
            name.setData(min(im.arrival for im in members), SORT_ROLE)  # ties: the patient's first file
            name.setData(any(im.flagged and not im.facts.lateral for im in images), FLAGGED_ROLE)
            words = [patient, *(s.label for s in studies), *(im.facts.name for im in members)]
            name.setData(" ".join(words).lower(), SEARCH_ROLE)

    def _fill_icon(self, item: QStandardItem, image: _Image) -> None:
        if image.icon is not None:
            item.setIcon(image.icon)
        elif image.status is StudyStatus.ERROR:
            item.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning))

    @staticmethod
    def _fill_status(item: QStandardItem, status: StudyStatus, reason: str) -> None:
        error = status is StudyStatus.ERROR
        item.setText(f"error: {reason}" if error and reason else status.value)
        item.setToolTip(reason or status.value)
        item.setData(STATUSES.index(status), SORT_ROLE)
        colour = _STATUS_COLOURS.get(status)
        item.setForeground(QBrush(colour) if colour is not None else QBrush())

    @staticmethod
    def _fill_score(item: QStandardItem, image: _Image | None, all_lateral: bool = False) -> None:
        score = None if image is None else image.score
        if image is None or score is None:
            item.setText("")
            item.setData(None, SCORE_ROLE)
            item.setData(-2.0, SORT_ROLE)
            item.setToolTip("lateral views are shown, not scored" if all_lateral else "")
            flagged = out_of_scope = ""
        else:
            flagged, out_of_scope = image.flagged, image.out_of_scope
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

    # ------------------------------------------------------------------------------ rows and selection
    def _proxy_index(self, items: Sequence[QStandardItem]) -> QModelIndex:
        return self.proxy.mapFromSource(self.source.indexFromItem(items[COL_NAME]))

    def _select(self, study_id: int, study_row: bool = False, quiet: bool = False) -> None:
        self._flush()
        rows = self._study_rows.get(self._study_of.get(study_id, "")) if study_row else None
        rows = rows or self._image_rows.get(study_id)
        if rows is None:
            return
        index = self._proxy_index(rows)
        if not index.isValid():
            return  # filtered out
        parent = index.parent()
        while parent.isValid():
            self.expand(parent)
            parent = parent.parent()
        if not index.parent().isValid() and not quiet:
            self.expand(index)  # a chosen study shows its images and priors
        self.setCurrentIndex(index)
        self.scrollTo(index)

    def _current_image_raw(self) -> int | None:
        index = self.currentIndex()
        value = index.siblingAtColumn(COL_NAME).data(STUDY_ROLE) if index.isValid() else None
        return None if value is None else int(value)

    def _current_row_key_raw(self) -> str:
        index = self.currentIndex()
        return str(index.siblingAtColumn(COL_NAME).data(GROUP_ROLE) or "") if index.isValid() else ""

    def _current_row_study(self) -> str | None:
        """The study of the current row (an image row: the study it belongs to)."""
        self._flush()
        key = self._current_row_key_raw()
        if key:
            return key
        image = self._current_image_raw()
        return None if image is None else self._study_of.get(image)

    def _at_study_row(self) -> bool:
        return bool(self._current_row_key_raw())

    def _current_top(self) -> int | None:
        index = self.currentIndex()
        if not index.isValid():
            return None
        while index.parent().isValid():
            index = index.parent()
        return index.row()

    def _current_row_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if self._quiet:
            return
        if not current.isValid():
            self.study_selected.emit(-1)
            return
        self.study_selected.emit(int(current.siblingAtColumn(COL_NAME).data(STUDY_ROLE)))


class WorklistPanel(QWidget):
    """The worklist with its search box and "flagged only" switch above it."""

    def __init__(self, worklist: Worklist, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.worklist = worklist
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search by name (Ctrl+F)")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(worklist.set_search)
        self.flagged_only = QCheckBox("Flagged only")
        self.flagged_only.setToolTip("Show only studies with a finding at or above its threshold")
        self.flagged_only.toggled.connect(worklist.set_flagged_only)
        bar = QHBoxLayout()
        bar.setContentsMargins(2, 2, 2, 2)
        bar.addWidget(self.search, 1)
        bar.addWidget(self.flagged_only)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(bar)
        layout.addWidget(worklist, 1)
