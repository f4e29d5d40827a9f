"""What the View menu does to the shown image: tools, zoom, orientation, window (the actions' slots)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cxr_viewer.core.orientation import Orientation
from cxr_viewer.core.windowing import auto_window

if TYPE_CHECKING:
    from PySide6.QtGui import QAction

    from cxr_viewer.core.image import XrayImage
    from cxr_viewer.core.state import ViewerState
    from cxr_viewer.qt.presets import PresetControls
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
        self.presets: PresetControls | None = None  # set by the window once its presets exist

    def set_tool(self, tool: str) -> None:
        """Left-drag tool: ``"window"``, ``"pan"``, ``"measure"``, ``"angle"``, ``"ctr"``, ``"ellipse"``."""
        self.image_view.set_tool(tool)

    def actual_pixels(self) -> None:
        """Zoom 1:1 (one image pixel per screen pixel)."""
        self.image_view.actual_pixels()

    def delete_measurement(self) -> None:
        """Remove the measurement under the mouse, else the newest one."""
        self.image_view.delete_measurement()

    def save_preset(self) -> None:
        """Ask for a name and keep the current window as a user preset."""
        if self.presets is not None:
            self.presets.ask_user_preset()

    def forget_presets(self) -> None:
        """Forget the user's window presets."""
        if self.presets is not None:
            self.presets.forget_user_presets()

    def fit(self) -> None:
        """Fit the image to the view."""
        self.image_view.fit()

    def zoom(self, factor: float) -> None:
        """Zoom by ``factor`` about the view centre."""
        self.image_view.zoom(factor)

    def clear_measurement(self) -> None:
        """Remove every measurement of the shown image."""
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
