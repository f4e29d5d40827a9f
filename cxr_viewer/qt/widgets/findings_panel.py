"""The findings panel: top-8 findings with probability bars and threshold marks, overlay controls."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QSignalBlocker, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QSlider,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from cxr_viewer.core.overlay import COLORMAPS
from cxr_viewer.core.state import SALIENCY, ViewerState

if TYPE_CHECKING:
    from cxr_viewer.core.findings import Finding

__all__ = ["FindingsPanel"]

FINDING_ROLE = Qt.ItemDataRole.UserRole + 1
MAP_ROLE = Qt.ItemDataRole.UserRole + 2
_ABOVE = QColor(220, 70, 50)
_BELOW = QColor(70, 130, 200)


class _FindingDelegate(QStyledItemDelegate):
    """Paints ``name ... 73 %`` over a probability bar with a tick at the class threshold."""

    def sizeHint(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QSize:  # Qt override
        return QSize(200, 38)

    def paint(
        self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:  # Qt override
        finding: Finding | None = index.data(FINDING_ROLE)
        painter.save()
        rect = option.rect.adjusted(4, 2, -4, -2)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        if selected:
            painter.fillRect(option.rect, option.palette.highlight())
        elif finding is not None and finding.above_threshold:
            painter.fillRect(option.rect, QColor(255, 225, 215))
        text_color = option.palette.highlightedText().color() if selected else option.palette.text().color()
        font = QFont(option.font)
        if finding is None:  # the class-agnostic map entry
            font.setItalic(True)
            painter.setFont(font)
            painter.setPen(text_color)
            painter.drawText(rect, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, index.data())
            painter.restore()
            return
        font.setBold(finding.above_threshold)
        painter.setFont(font)
        painter.setPen(text_color)
        text_rect = QRect(rect.left(), rect.top(), rect.width(), rect.height() // 2 + 2)
        percent = f"{finding.probability:.1%}"
        if finding.above_threshold:
            percent = "\u25b2 " + percent  # a triangle marks "at or above threshold"
        metrics = painter.fontMetrics()
        percent_width = metrics.horizontalAdvance(percent) + 8
        name = metrics.elidedText(
            finding.display_name, Qt.TextElideMode.ElideRight, text_rect.width() - percent_width
        )
        painter.drawText(text_rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, name)
        painter.drawText(text_rect, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, percent)
        bar = QRect(
            rect.left(), rect.top() + rect.height() // 2 + 4, rect.width(), max(6, rect.height() // 2 - 6)
        )
        painter.fillRect(bar, QColor(225, 225, 225))
        filled = QRect(
            bar.left(), bar.top(), round(bar.width() * min(max(finding.probability, 0.0), 1.0)), bar.height()
        )
        painter.fillRect(filled, _ABOVE if finding.above_threshold else _BELOW)
        if finding.threshold is not None:
            x = bar.left() + round(bar.width() * min(max(finding.threshold, 0.0), 1.0))
            painter.setPen(QPen(QColor(20, 20, 20), 2))
            painter.drawLine(x, bar.top() - 3, x, bar.bottom() + 3)
        painter.restore()


class FindingsPanel(QWidget):
    """Lists the findings of the shown study; selecting one shows its map (writes ``state.selected_map``)."""

    #: the selected map changed: class index, SALIENCY, or None
    map_selected = Signal(object)

    def __init__(self, state: ViewerState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self._findings: list[Finding] = []
        self._updating = False

        self.title = QLabel("<b>Findings</b>")
        self.status = QLabel("No study selected")
        self.status.setWordWrap(True)
        self.list = QListWidget()
        self.list.setItemDelegate(_FindingDelegate(self.list))
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.setMinimumWidth(240)
        self.list.currentItemChanged.connect(self._current_changed)

        self.show_overlay = QCheckBox("Show attention map")
        self.show_overlay.setChecked(state.overlay_visible)
        self.show_overlay.setShortcut("O")
        self.show_overlay.toggled.connect(lambda on: self.state.update(overlay_visible=bool(on)))
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(round(state.overlay_opacity * 100))
        self.opacity.valueChanged.connect(lambda v: self.state.update(overlay_opacity=v / 100.0))
        self.colormap = QComboBox()
        self.colormap.addItems(sorted(COLORMAPS))
        self.colormap.setCurrentText(state.colormap)
        self.colormap.currentTextChanged.connect(lambda name: self.state.update(colormap=name))
        self.map_style = QComboBox()
        self.map_style.addItem("Filled map", "filled")
        self.map_style.addItem("Outline at threshold", "outline")
        self.map_style.setCurrentIndex(max(self.map_style.findData(state.map_style), 0))
        self.map_style.setToolTip(
            "Filled: the class's evidence per cell on an absolute scale (full colour = the cell alone "
            "reaches the threshold). Outline: only the contour of the region that reaches it."
        )
        self.map_style.currentIndexChanged.connect(
            lambda i: self.state.update(map_style=self.map_style.itemData(i))
        )
        self.legend = QLabel(
            "Findings in triage order (probability / threshold). Bars: probability. Black tick: the "
            "class threshold. Red rows (\u25b2): at or above threshold. Click a finding to see where "
            "the model found its evidence."
        )
        self.legend.setWordWrap(True)
        self.legend.setStyleSheet("color: #555;")
        self.disclaimer = QLabel("<i>Research demo - not for clinical use.</i>")
        self.disclaimer.setWordWrap(True)

        opacity_row = QHBoxLayout()
        opacity_row.addWidget(QLabel("Opacity"))
        opacity_row.addWidget(self.opacity, 1)
        cmap_row = QHBoxLayout()
        cmap_row.addWidget(QLabel("Colour map"))
        cmap_row.addWidget(self.colormap, 1)
        style_row = QHBoxLayout()
        style_row.addWidget(QLabel("Map style"))
        style_row.addWidget(self.map_style, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.title)
        layout.addWidget(self.status)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.legend)
        layout.addWidget(self.show_overlay)
        layout.addLayout(opacity_row)
        layout.addLayout(cmap_row)
        layout.addLayout(style_row)
        layout.addWidget(self.disclaimer)
        self._unsubscribe = state.subscribe(self._state_changed)

    def close_panel(self) -> None:
        """Stop listening to the state."""
        self._unsubscribe()

    # ------------------------------------------------------------------------------ state -> widgets
    def _state_changed(self, changed: set[str]) -> None:
        self._updating = True
        try:
            if "overlay_opacity" in changed:
                with QSignalBlocker(self.opacity):
                    self.opacity.setValue(round(self.state.overlay_opacity * 100))
            if "overlay_visible" in changed:
                with QSignalBlocker(self.show_overlay):
                    self.show_overlay.setChecked(self.state.overlay_visible)
            if "colormap" in changed:
                with QSignalBlocker(self.colormap):
                    self.colormap.setCurrentText(self.state.colormap)
            if "map_style" in changed:
                with QSignalBlocker(self.map_style):
                    self.map_style.setCurrentIndex(max(self.map_style.findData(self.state.map_style), 0))
            if "selected_map" in changed:
                self._select_row_for(self.state.selected_map)
        finally:
            self._updating = False

    def set_findings(self, findings: list[Finding], status: str = "", has_saliency: bool = True) -> None:
        """Show a ranked list (empty to clear) and a status line; keeps the selected map if possible."""
        self._updating = True
        try:
            self._findings = list(findings)
            with QSignalBlocker(self.list):
                self.list.clear()
                for f in findings:
                    item = QListWidgetItem(f.display_name)
                    item.setData(FINDING_ROLE, f)
                    item.setData(MAP_ROLE, f.index)
                    tip = f"{f.name}: probability {f.probability:.3f}"
                    if f.threshold is not None:
                        tip += f", threshold {f.threshold:.3f}" + (" (above)" if f.above_threshold else "")
                    item.setToolTip(tip)
                    self.list.addItem(item)
                if findings and has_saliency:
                    item = QListWidgetItem("Class-agnostic map (all findings)")
                    item.setToolTip("Where the model looked overall, independent of the class")
                    item.setData(MAP_ROLE, SALIENCY)
                    self.list.addItem(item)
            self.status.setText(status)
            self._select_row_for(self.state.selected_map)
        finally:
            self._updating = False

    def findings(self) -> list[Finding]:
        """The findings shown, in order."""
        return list(self._findings)

    def _select_row_for(self, map_id: int | None) -> None:
        with QSignalBlocker(self.list):
            for row in range(self.list.count()):
                if self.list.item(row).data(MAP_ROLE) == map_id and map_id is not None:
                    self.list.setCurrentRow(row)
                    return
            self.list.setCurrentRow(-1)
            self.list.clearSelection()

    # ------------------------------------------------------------------------------ widgets -> state
    def select_map(self, map_id: int | None) -> None:
        """Select a class index / SALIENCY / None, as a click on the row would."""
        self.state.update(selected_map=map_id)
        self.map_selected.emit(map_id)

    def select_row(self, row: int) -> None:
        """Select the n-th row (0 = top finding)."""
        self.list.setCurrentRow(row)

    def _current_changed(self, current: QListWidgetItem | None, _previous: Any) -> None:
        if self._updating:
            return
        self.select_map(None if current is None else current.data(MAP_ROLE))
