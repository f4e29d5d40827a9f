"""Headless command-line tools of the viewer package (no Qt): ``cxr-triage``."""

from __future__ import annotations

__all__: list[str] = []
