"""What the View menu does to the shown image: tools, zoom, orientation, window (the actions' slots)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cxr_viewer.core.orientation import Orientation
from cxr_viewer.core.windowing import auto_window

if TYPE_CHECKING:
    from PySide6.QtGui import QAction

    from cxr_viewer.core.image import XrayImage
    from cxr_viewer.core.state import ViewerState
    from cxr_viewer.qt.widgets.image_view import ImageView

__all__ = ["ViewControls", "file_window"]


def file_window(image: XrayImage) -> dict[str, Any]:
    """``ViewerState`` fields for the file's own window: its window centre/width, else its VOI LUT
    (the LUT is the default only when the file gives no window), else the automatic window."""
    return {
        "window": image.window if image.window is not None else auto_window(image.pixels),
        "use_voi_lut": image.voi_lut is not None and image.window is None,
    }


class ViewControls:
    """Slots of the View actions, on one `ViewerState` and `ImageView`."""

    def __init__(self, state: ViewerState, image_view: ImageView) -> None:
        self.state = state
        self.image_view = image_view
        self.invert_action: QAction | None = None  # unchecked by a view reset

    def set_tool(self, tool: str) -> None:
        """Left-drag tool: ``"window"``, ``"pan"`` or ``"measure"``."""
        self.image_view.set_tool(tool)

    def fit(self) -> None:
        """Fit the image to the view."""
        self.image_view.fit()

    def zoom(self, factor: float) -> None:
        """Zoom by ``factor`` about the view centre."""
        self.image_view.zoom(factor)

    def clear_measurement(self) -> None:
        """Remove the length measurement."""
        self.image_view.clear_measurement()

    def set_invert(self, on: bool) -> None:
        """Show the image negative (or not)."""
        self.state.update(invert=bool(on))

    def rotate(self, clockwise: bool) -> None:
        """Rotate the display by 90 degrees."""
        self.state.update(orientation=self.state.orientation.rotated(clockwise))

    def flip(self, horizontal: bool) -> None:
        """Mirror the display."""
        self.state.update(orientation=self.state.orientation.flipped(horizontal))

    def reset_view(self) -> None:
        """Original orientation, no inversion, the file's window, fitted."""
        if self.invert_action is not None:
            self.invert_action.setChecked(False)
        self.state.update(orientation=Orientation(), invert=False)
        if self.state.image is not None:
            self.state.update(**file_window(self.state.image))
        self.image_view.fit()

    def auto_window(self) -> None:
        """Window from the 0.5-99.5 percentiles of the image."""
        if self.state.image is not None:
            self.state.update(window=auto_window(self.state.image.pixels), use_voi_lut=False)
