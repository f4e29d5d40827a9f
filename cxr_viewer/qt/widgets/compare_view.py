"""Current and prior side by side: a second `ImageView` whose zoom and pan follow the main one's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from cxr_viewer.core.state import ViewerState
from cxr_viewer.qt.view_controls import file_window
from cxr_viewer.qt.widgets.image_view import ImageView

if TYPE_CHECKING:
    from collections.abc import Callable

    from cxr_viewer.core.image import XrayImage

__all__ = ["PriorView"]


class PriorView(QWidget):
    """The prior study's image, with a caption above it; zoom and pan linked to ``main``.

    It has its own `ViewerState` (its own window/level: a prior from another machine needs another
    window) and no overlay. The link: each view box's ``sigRangeChanged`` gives the other its centre and
    magnification, so a zoom or pan in either moves the other. (pyqtgraph's
    ``ViewBox.setXLink``/``setYLink`` does the same, but with the two views linked, PySide6 6.12
    aborted at interpreter exit while collecting them: "bool_dealloc" after the window tests.)
    """

    def __init__(self, main: ImageView, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = ViewerState()
        self.image_view = ImageView(self.state)
        self.caption = QLabel("Prior")
        self.caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.caption.setStyleSheet("background: #202020; color: #e0e0e0; padding: 3px;")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.caption)
        layout.addWidget(self.image_view, 1)
        self._main = main
        self._syncing = False
        self._links: list[tuple[Any, Callable[..., None]]] = []
        for source, target in (
            (main.view_box, self.image_view.view_box),
            (self.image_view.view_box, main.view_box),
        ):
            follow = self._follower(target)
            source.sigRangeChanged.connect(follow)
            self._links.append((source, follow))

    def _follower(self, target: Any) -> Callable[..., None]:
        def follow(source: Any, *_args: object) -> None:
            if self._syncing or self.state.image is None:
                return
            rect = source.viewRect()
            width, height = float(source.width()), float(source.height())
            if min(width, height, rect.width(), rect.height()) <= 0:
                return
            # same centre and same magnification (screen pixels per image pixel), whatever each
            # view's size: the views lock the aspect ratio, so equal ranges could not be shown
            sx, sy = width / rect.width(), height / rect.height()
            cx, cy = rect.center().x(), rect.center().y()
            half_w, half_h = float(target.width()) / sx / 2, float(target.height()) / sy / 2
            self._syncing = True
            try:
                target.setRange(
                    xRange=(cx - half_w, cx + half_w), yRange=(cy - half_h, cy + half_h), padding=0
                )
            finally:
                self._syncing = False

        return follow

    def view_geometry(self, which: str = "prior") -> tuple[float, float, float]:
        """``(centre x, centre y, screen pixels per image pixel)`` of the prior or the main view."""
        box = self.image_view.view_box if which == "prior" else self._main.view_box
        rect = box.viewRect()
        return rect.center().x(), rect.center().y(), float(box.width()) / max(rect.width(), 1e-12)

    def show_image(self, image: XrayImage, caption: str) -> None:
        """Show a prior's image in its file's window, at the main view's zoom and pan."""
        self.caption.setText(caption)
        self.state.update(image=image, prediction=None, selected_map=None, **file_window(image))
        self.image_view.placeholder.hide()
        self._links[0][1](self._main.view_box)  # take the main view's centre and magnification

    def show_message(self, text: str) -> None:
        """No image: say why (no prior, loading, failed)."""
        self.state.update(image=None, prediction=None, selected_map=None)
        self.caption.setText("Prior")
        self.image_view.placeholder.setText(text)
        self.image_view.placeholder.show()

    def close_view(self) -> None:
        """Unlink and release the view (on window close)."""
        for source, follow in self._links:
            source.sigRangeChanged.disconnect(follow)
        self._links.clear()
        self.image_view.close_view()
