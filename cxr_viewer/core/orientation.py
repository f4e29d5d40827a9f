"""Rotating/flipping the displayed image, and mapping display coordinates back (no Qt)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

__all__ = [
    "Orientation",
    "describe",
    "edge_letters",
    "letters_from_cosines",
    "measure_length",
    "zoom_from_drag",
]


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

    def point_to_display(self, x: float, y: float, shape: tuple[int, int]) -> tuple[float, float]:
        """Map a continuous source point ``(x, y)`` = (column, row) to display coordinates.

        ``shape`` is the *source* (H, W). Pixel ``(r, c)`` covers ``[c, c+1) x [r, r+1)`` in both frames,
        so pixel centres map onto pixel centres (consistent with :meth:`apply` and :meth:`to_source`).
        """
        h, w = shape
        k = self.quarter_turns % 4
        if k == 0:
            dx, dy = x, y
        elif k == 1:
            dx, dy = h - y, x
        elif k == 2:
            dx, dy = w - x, h - y
        else:
            dx, dy = y, w - x
        dh, dw = self.display_shape(shape)
        if self.flip_horizontal:
            dx = dw - dx
        if self.flip_vertical:
            dy = dh - dy
        return float(dx), float(dy)

    def point_to_source(self, x: float, y: float, shape: tuple[int, int]) -> tuple[float, float]:
        """The inverse of :meth:`point_to_display` (``shape`` is the *source* (H, W))."""
        h, w = shape
        dh, dw = self.display_shape(shape)
        if self.flip_horizontal:
            x = dw - x
        if self.flip_vertical:
            y = dh - y
        k = self.quarter_turns % 4
        if k == 0:
            return float(x), float(y)
        if k == 1:
            return float(y), float(h - x)
        if k == 2:
            return float(w - x), float(h - y)
        return float(w - y), float(x)


_OPPOSITE = {"L": "R", "R": "L", "A": "P", "P": "A", "H": "F", "F": "H"}


def _opposite(letters: str) -> str:
    return "".join(_OPPOSITE.get(ch, "?") for ch in letters)


def letters_from_cosines(vector: tuple[float, float, float], threshold: float = 0.25) -> str:
    """Patient-direction letters of a direction cosine in DICOM's LPS frame (+x L, +y P, +z H).

    The main direction comes first; an axis counts when its component is at least ``threshold``
    (so an oblique direction reads e.g. ``"LF"``). ``""`` for a zero or non-finite vector.
    """
    comps = [float(v) for v in vector]
    if len(comps) != 3 or not all(np.isfinite(comps)) or max(abs(v) for v in comps) == 0.0:
        return ""
    names = (("L", "R"), ("P", "A"), ("H", "F"))
    order = sorted(range(3), key=lambda i: -abs(comps[i]))
    return "".join(names[i][0 if comps[i] > 0 else 1] for i in order if abs(comps[i]) >= threshold)


def edge_letters(
    row_direction: str,
    column_direction: str,
    shape: tuple[int, int],
    orientation: Orientation = Orientation(),
) -> dict[str, str]:
    """The patient direction at each edge of the *displayed* image.

    Args:
        row_direction: where a row runs in the file, towards its last column (DICOM PatientOrientation's
            first value, e.g. ``"L"``), i.e. the letter of the source image's right edge.
        column_direction: where a column runs, towards the last row (the second value, e.g. ``"F"``).
        shape: the source (H, W).
        orientation: the display transform.

    Returns:
        ``{"left": .., "right": .., "top": .., "bottom": ..}``; ``{}`` when either direction is unknown.
    """
    if not row_direction or not column_direction:
        return {}
    source = {
        (1, 0): row_direction,
        (-1, 0): _opposite(row_direction),
        (0, 1): column_direction,
        (0, -1): _opposite(column_direction),
    }
    h, w = shape
    cx, cy = w / 2.0, h / 2.0
    ox, oy = orientation.point_to_display(cx, cy, shape)
    out: dict[str, str] = {}
    edges = {(1, 0): "right", (-1, 0): "left", (0, 1): "bottom", (0, -1): "top"}
    for (sx, sy), letters in source.items():
        px, py = orientation.point_to_display(cx + sx, cy + sy, shape)
        out[edges[(round(px - ox), round(py - oy))]] = letters
    return out


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


def describe(orientation: Orientation) -> str:
    """``"rotated 90\N{DEGREE SIGN} right, flipped horizontally"``; ``""`` for the file's orientation."""
    parts = []
    k = orientation.quarter_turns % 4
    if k:
        parts.append(
            {
                1: "rotated 90\N{DEGREE SIGN} right",
                2: "rotated 180\N{DEGREE SIGN}",
                3: "rotated 90\N{DEGREE SIGN} left",
            }[k]
        )
    if orientation.flip_horizontal:
        parts.append("flipped horizontally")
    if orientation.flip_vertical:
        parts.append("flipped vertically")
    return ", ".join(parts)


#: screen pixels of vertical drag that double (or halve) the magnification
ZOOM_DRAG_DOUBLING = 100.0


def zoom_from_drag(dy: float) -> float:
    """Magnification factor for a right-button drag of ``dy`` screen pixels (positive = downwards).

    Dragging up zooms in: 100 px up doubles the magnification, 100 px down halves it; the factor is
    multiplicative, so a drag split into many small steps gives the same result as one step.
    """
    return float(2.0 ** (-float(dy) / ZOOM_DRAG_DOUBLING))
