"""The Qt side of the viewer: the only package that imports PySide6 and pyqtgraph."""

from __future__ import annotations

__all__: list[str] = []
