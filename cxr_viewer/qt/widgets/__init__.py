"""Widgets of the main window: image view, findings panel, worklist."""

from __future__ import annotations

__all__: list[str] = []
