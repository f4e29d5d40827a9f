"""What the image view shows, as plain data with plain callbacks (no Qt).

Widgets read from and write to a :class:`ViewerState`; they never talk to each other directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

from cxr_viewer.core.orientation import Orientation

if TYPE_CHECKING:
    from cxr_viewer.core.image import XrayImage
    from cxr_viewer.core.prediction import PredictionLike

__all__ = ["SALIENCY", "ViewerState"]

#: ``selected_map`` value for the class-agnostic map (a class index selects that class's map).
SALIENCY = -1

Callback = Callable[[set[str]], None]
_BY_IDENTITY = frozenset({"image", "prediction"})


@dataclass(eq=False)
class ViewerState:
    """The displayed study and how it is shown.

    Attributes:
        image: the study on screen, or None.
        window: ``(center, width)`` in pixel units of ``image``.
        use_voi_lut: show the image through its DICOM VOI LUT instead of ``window``.
        invert: show the image negative (on top of any MONOCHROME1 handling, which is already done).
        orientation: rotation/flips of the display.
        selected_map: a class index, :data:`SALIENCY`, or None for no overlay.
        overlay_visible: show the overlay at all.
        overlay_opacity: in [0, 1].
        colormap: name from :data:`cxr_viewer.core.overlay.COLORMAPS`.
        map_style: ``"filled"`` (colour map) or ``"outline"`` (the contour where the class map reaches
            its threshold, see :data:`cxr_viewer.core.overlay.MAP_STYLES`).
        prediction: the model's answer for ``image`` (a `cxr_viewer.core.prediction.PredictionLike`),
            or None.
        map_region: (top, left, bottom, right) fractions of the image the maps cover.
    """

    image: XrayImage | None = None
    window: tuple[float, float] = (0.5, 1.0)
    use_voi_lut: bool = False
    invert: bool = False
    orientation: Orientation = field(default_factory=Orientation)
    selected_map: int | None = None
    overlay_visible: bool = True
    overlay_opacity: float = 0.45
    colormap: str = "jet"
    map_style: str = "filled"
    prediction: PredictionLike | None = None
    map_region: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
    _callbacks: list[Callback] = field(default_factory=list, repr=False)

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """Call ``callback(changed_field_names)`` after each :meth:`update`; returns an unsubscriber."""
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return unsubscribe

    def update(self, **changes: object) -> set[str]:
        """Set fields and notify subscribers of those that really changed.

        Raises:
            AttributeError: for an unknown field name.
        """
        names = {f.name for f in fields(self) if not f.name.startswith("_")}
        changed: set[str] = set()
        for key, value in changes.items():
            if key not in names:
                raise AttributeError(f"ViewerState has no field {key!r}")
            if key == "map_style" and value not in ("filled", "outline"):
                raise ValueError(f"map_style must be 'filled' or 'outline', got {value!r}")
            if key == "overlay_opacity":
                value = min(max(float(value), 0.0), 1.0)  # type: ignore[arg-type]
            old = getattr(self, key)
            # images and predictions hold arrays: they are "the same" only when they are the same object
            same = old is value if key in _BY_IDENTITY else (old is value or old == value)
            if not same:
                setattr(self, key, value)
                changed.add(key)
        if changed:
            for cb in list(self._callbacks):
                cb(changed)
        return changed
