"""cxr-viewer: a desktop triage viewer for chest X-rays (PySide6 + pyqtgraph).

The Qt-free parts (reading files, windowing, overlays, ranking findings) live in
:mod:`cxr_viewer.core`; everything that draws lives in :mod:`cxr_viewer.qt`.
Importing this package imports neither Qt nor torch.

Not for clinical use.
"""

from __future__ import annotations

__all__ = ["APP_NAME", "ORG_NAME", "__version__"]

__version__ = "0.1.0"
APP_NAME = "cxr-viewer"
ORG_NAME = "cxr-triage"
