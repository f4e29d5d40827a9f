"""Window presets of the shown image: the toolbar box, the View > Window presets menu and keys 0-5."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QSignalBlocker
from PySide6.QtWidgets import QComboBox, QMainWindow, QMenu

from cxr_viewer.core.windowing import WindowPreset, presets_for
from cxr_viewer.qt.actions import make_action

if TYPE_CHECKING:
    from PySide6.QtGui import QAction

    from cxr_viewer.core.image import XrayImage
    from cxr_viewer.core.state import ViewerState

__all__ = ["PresetControls"]


class PresetControls:
    """Keeps the presets box, menu and key actions in step with the shown image.

    Presets come from `cxr_viewer.core.windowing.presets_for` (the file's window first); a file with a
    VOI LUT gets "File VOI LUT" as preset 0.
    """

    def __init__(self, window: QMainWindow, state: ViewerState, menu: QMenu) -> None:
        self._window = window
        self._state = state
        self._menu = menu
        self.combo = QComboBox()
        self.combo.setToolTip("Window presets (keys 1-5)")
        self.combo.activated.connect(self.apply)
        self._presets: list[WindowPreset] = []
        self._actions: list[QAction] = []
        self._voi_preset = False
        self.refresh(None)

    def refresh(self, image: XrayImage | None) -> None:
        """Presets for ``image`` (None: the generic ones)."""
        self._presets = presets_for(image.window if image is not None else None)
        if image is not None and image.voi_lut is not None:
            label = "File VOI LUT" + (f" ({image.voi_lut.explanation})" if image.voi_lut.explanation else "")
            self._presets.insert(0, WindowPreset(label, "0", lambda _px: self._state.window))
        self._voi_preset = image is not None and image.voi_lut is not None
        with QSignalBlocker(self.combo):
            self.combo.clear()
            self.combo.addItems([p.name for p in self._presets])
        for act in self._actions:
            self._window.removeAction(act)
        self._menu.clear()
        self._actions = []
        for i, preset in enumerate(self._presets):
            act = make_action(self._window, preset.name, lambda _=False, n=i: self.apply(n), preset.shortcut)
            self._menu.addAction(act)
            self._actions.append(act)

    def apply(self, index: int) -> None:
        """Apply preset ``index`` to the shown image."""
        image = self._state.image
        if image is None or not 0 <= index < len(self._presets):
            return
        use_lut = self._voi_preset and index == 0
        self._state.update(window=self._presets[index].compute(image.pixels), use_voi_lut=use_lut)
        with QSignalBlocker(self.combo):
            self.combo.setCurrentIndex(index)
