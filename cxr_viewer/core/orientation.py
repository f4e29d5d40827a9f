"""Rotating/flipping the displayed image, and mapping display coordinates back (no Qt)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

__all__ = ["Orientation", "measure_length"]


@dataclass(frozen=True)
class Orientation:
    """A display transform: first ``rot90`` by ``quarter_turns`` clockwise, then optional flips.

    The image data is never changed: :meth:`apply` returns a view for display, and :meth:`to_source`
    maps a display pixel back to the original row/column for readouts and measurements.
    """

    quarter_turns: int = 0
    flip_horizontal: bool = False
    flip_vertical: bool = False

    def rotated(self, clockwise: bool = True) -> Orientation:
        """This orientation turned by another 90 degrees."""
        return replace(self, quarter_turns=(self.quarter_turns + (1 if clockwise else -1)) % 4)

    def flipped(self, horizontal: bool = True) -> Orientation:
        """This orientation with the displayed image mirrored left-right (or top-bottom)."""
        if horizontal:
            return replace(self, flip_horizontal=not self.flip_horizontal)
        return replace(self, flip_vertical=not self.flip_vertical)

    @property
    def swaps_axes(self) -> bool:
        """True when display rows correspond to source columns (odd number of quarter turns)."""
        return self.quarter_turns % 2 == 1

    def apply(self, arr: np.ndarray) -> np.ndarray:
        """Display view of a (H, W[, C]) array (a view where numpy allows; input not modified)."""
        out = np.rot90(arr, k=-(self.quarter_turns % 4), axes=(0, 1))
        if self.flip_horizontal:
            out = out[:, ::-1]
        if self.flip_vertical:
            out = out[::-1, :]
        return out

    def display_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        """``(H, W)`` of the displayed image for a source of ``shape``."""
        return (shape[1], shape[0]) if self.swaps_axes else (shape[0], shape[1])

    def to_source(self, row: int, col: int, shape: tuple[int, int]) -> tuple[int, int]:
        """Map a display (row, col) to the source (row, col); ``shape`` is the *source* (H, W)."""
        dh, dw = self.display_shape(shape)
        if self.flip_vertical:
            row = dh - 1 - row
        if self.flip_horizontal:
            col = dw - 1 - col
        h, w = shape
        k = self.quarter_turns % 4
        # undo a clockwise rotation by k quarter turns
        if k == 0:
            return row, col
        if k == 1:  # display (r, c) came from source (h - 1 - c, r)
            return h - 1 - col, row
        if k == 2:
            return h - 1 - row, w - 1 - col
        return col, w - 1 - row  # k == 3


def measure_length(
    start: tuple[float, float],
    end: tuple[float, float],
    spacing: tuple[float, float] | None,
    orientation: Orientation = Orientation(),
) -> float:
    """Length of a line drawn on the *displayed* image.

    Args:
        start, end: ``(x, y)`` = (column, row) in display pixel coordinates.
        spacing: ``(row_mm, col_mm)`` of the *source* image, or None to measure in pixels.
        orientation: the display orientation (with a quarter turn, display x runs along source rows).

    Returns:
        Length in mm (or pixels when ``spacing`` is None).
    """
    dx, dy = float(end[0] - start[0]), float(end[1] - start[1])
    if spacing is None:
        return float(np.hypot(dx, dy))
    row_mm, col_mm = spacing
    d_col, d_row = (dy, dx) if orientation.swaps_axes else (dx, dy)
    return float(np.hypot(d_col * col_mm, d_row * row_mm))
