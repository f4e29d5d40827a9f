"""Window presets of the shown image: the toolbar box, the View > Window presets menu and keys 0-8.

The box always says which preset the shown window is (or "Custom window" when none is): it follows
the state, so A (auto window), Ctrl+0 (reset view), the number keys, a W/L drag and the histogram all
show in it. Key 0 is the file's own display: its VOI LUT when it has one, else its window.

User presets ("Save window as preset...") are kept in the settings as stored (modality) values, so a
preset saved on one MONOCHROME1 image means the same numbers on the next.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

from PySide6.QtCore import QSignalBlocker
from PySide6.QtWidgets import QComboBox, QInputDialog, QMainWindow, QMenu

from cxr_viewer.core.windowing import (
    WindowPreset,
    percentile_windows,
    presets_for,
    stored_window,
    window_from_stored,
)
from cxr_viewer.qt.actions import make_action

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np
    from PySide6.QtCore import QSettings
    from PySide6.QtGui import QAction

    from cxr_viewer.core.image import XrayImage
    from cxr_viewer.core.state import ViewerState

__all__ = ["USER_PRESETS_KEY", "PresetControls", "file_display"]

#: QSettings key of the user presets: a JSON list of {"name", "center", "width"} in stored values
USER_PRESETS_KEY = "window_presets"
_CUSTOM = "Custom window"
_MAX_USER_PRESETS = 20


def file_display(image: XrayImage) -> dict[str, object]:
    """``ViewerState`` fields for key 0: the file's VOI LUT, else its window, else the automatic one."""
    from cxr_viewer.core.windowing import auto_window

    window = image.window if image.window is not None else auto_window(image.pixels)
    return {"window": window, "use_voi_lut": image.voi_lut is not None}


def _same(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return all(math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9) for x, y in zip(a, b, strict=True))


class PresetControls:
    """Keeps the presets box, menu and key actions in step with the shown image and its window.

    Presets come from `cxr_viewer.core.windowing.presets_for` (the file's window first, then automatic,
    then the anatomical lung/mediastinum/bone windows); a file with a VOI LUT gets "File VOI LUT" as
    preset 0; user presets follow.
    """

    def __init__(
        self, window: QMainWindow, state: ViewerState, menu: QMenu, settings: QSettings | None = None
    ) -> None:
        self._window = window
        self._state = state
        self._menu = menu
        self._settings = settings
        self.combo = QComboBox()
        self.combo.setToolTip("Window presets (keys 0-8); it shows which preset the window is")
        self.combo.setPlaceholderText(_CUSTOM)
        self.combo.setMinimumContentsLength(18)
        self.combo.activated.connect(self.apply)
        self._presets: list[WindowPreset] = []
        self._windows: list[tuple[float, float] | None] = []  # each preset's window for the shown image
        self._actions: list[QAction] = []
        self._voi_preset = False
        self._image: XrayImage | None = None
        self._unsubscribe = state.subscribe(self._state_changed)
        self.refresh(None)

    # ------------------------------------------------------------------ user presets
    def user_presets(self) -> list[tuple[str, float, float]]:
        """``(name, center, width)`` in stored values, as kept in the settings (bad entries skipped)."""
        if self._settings is None:
            return []
        raw = self._settings.value(USER_PRESETS_KEY, "[]")
        try:
            items = json.loads(str(raw))
        except (TypeError, ValueError):
            return []
        out = []
        for item in items if isinstance(items, list) else []:
            try:
                name, center, width = str(item["name"]), float(item["center"]), float(item["width"])
            except (KeyError, TypeError, ValueError):
                continue
            if name and math.isfinite(center) and math.isfinite(width) and width > 0:
                out.append((name[:60], center, width))
        return out[:_MAX_USER_PRESETS]

    def save_user_preset(self, name: str) -> bool:
        """Keep the shown window (in stored values) as a user preset called ``name`` (replacing one of
        that name); False when there is no image, no name or the VOI LUT is shown."""
        image = self._state.image
        name = name.strip()
        if image is None or not name or self._settings is None or self._state.use_voi_lut:
            return False
        center, width = stored_window(self._state.window, image)
        kept = [p for p in self.user_presets() if p[0] != name] + [(name, center, width)]
        data = [{"name": n, "center": c, "width": w} for n, c, w in kept[-_MAX_USER_PRESETS:]]
        self._settings.setValue(USER_PRESETS_KEY, json.dumps(data))
        self._settings.sync()
        self.refresh(image)
        return True

    def ask_user_preset(self) -> None:
        """View > Save window as preset: ask for a name, then keep the window."""
        if self._state.image is None:
            return
        name, ok = QInputDialog.getText(self._window, "Save window as preset", "Preset name:")
        if ok:
            self.save_user_preset(name)

    def forget_user_presets(self) -> None:
        """View > Forget my presets."""
        if self._settings is not None:
            self._settings.remove(USER_PRESETS_KEY)
            self._settings.sync()
        self.refresh(self._state.image)

    # ------------------------------------------------------------------ the presets of an image
    def refresh(self, image: XrayImage | None) -> None:
        """Presets for ``image`` (None: the generic ones)."""
        self._image = image
        self._presets = presets_for(image.window if image is not None else None)
        self._voi_preset = image is not None and image.voi_lut is not None
        if image is not None and image.voi_lut is not None:
            label = "File VOI LUT" + (f" ({image.voi_lut.explanation})" if image.voi_lut.explanation else "")
            self._presets.insert(0, WindowPreset(label, "0", lambda _px: self._state.window))
        for name, center, width in self.user_presets():
            self._presets.append(WindowPreset(f"My: {name}", "", _user_window((center, width), image)))
        self._windows = [None] * len(self._presets)
        if image is not None:
            batched = [i for i, p in enumerate(self._presets) if p.percentiles is not None]
            pairs = [p for i in batched if (p := self._presets[i].percentiles) is not None]
            for i, window in zip(batched, percentile_windows(image.pixels, pairs), strict=True):
                self._windows[i] = window
            first_lut = 1 if self._voi_preset else 0
            for i in range(first_lut, len(self._presets)):
                if self._windows[i] is None:
                    self._windows[i] = self._presets[i].compute(image.pixels)
        with QSignalBlocker(self.combo):
            self.combo.clear()
            self.combo.addItems([p.name for p in self._presets])
        self._menu.clear()
        for act in self._actions:  # gone for good: an old preset's key must not linger
            self._window.removeAction(act)
            act.setParent(None)
            act.deleteLater()
        self._actions = []
        for i, preset in enumerate(self._presets):
            act = make_action(self._window, preset.name, lambda _=False, n=i: self.apply(n), preset.shortcut)
            self._menu.addAction(act)
            self._actions.append(act)
        if not self._voi_preset:  # key 0 still means "the file's own display": its window
            act = make_action(self._window, "File display (key 0)", self.apply_file_display, "0")
            self._actions.append(act)
        self._follow()

    def apply(self, index: int) -> None:
        """Apply preset ``index`` to the shown image."""
        image = self._state.image
        if image is None or not 0 <= index < len(self._presets):
            return
        if self._voi_preset and index == 0:
            self._state.update(use_voi_lut=True)
        else:
            window = self._windows[index] if image is self._image else None
            if window is None:
                window = self._presets[index].compute(image.pixels)
            self._state.update(window=window, use_voi_lut=False)
        self._follow()

    def apply_file_display(self) -> None:
        """Key 0: the file's VOI LUT, else its window (else the automatic window)."""
        if self._state.image is not None:
            self._state.update(**file_display(self._state.image))

    def current_index(self) -> int:
        """The preset the shown window is (-1: none, the box says "Custom window")."""
        if self._state.image is None:
            return -1
        if self._state.use_voi_lut and self._voi_preset:
            return 0
        for i, window in enumerate(self._windows):
            if window is not None and _same(window, self._state.window):
                return i
        return -1

    def _follow(self) -> None:
        with QSignalBlocker(self.combo):
            self.combo.setCurrentIndex(self.current_index())

    def _state_changed(self, changed: set[str]) -> None:
        if changed & {"window", "use_voi_lut"}:
            self._follow()

    def close_controls(self) -> None:
        """Stop listening to the state."""
        self._unsubscribe()


def _user_window(
    stored: tuple[float, float], image: XrayImage | None
) -> Callable[[np.ndarray], tuple[float, float]]:
    """A user preset's window (kept in stored values) as the display window of ``image``."""

    def compute(_px: np.ndarray) -> tuple[float, float]:
        return window_from_stored(stored, image) if image is not None else stored

    return compute
