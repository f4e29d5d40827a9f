"""Qt-free, torch-free core of the viewer: files, windowing, overlays, findings, view state, the study
pipeline and the typed seam to the model (`cxr_viewer.core.prediction`)."""

from __future__ import annotations

from cxr_viewer.core.findings import Finding
from cxr_viewer.core.image import HeaderSummary, VoiLut, XrayImage
from cxr_viewer.core.io import FoundFile, ImageLoadError, iter_study_files, load_image
from cxr_viewer.core.orientation import Orientation
from cxr_viewer.core.scope import scope_warning
from cxr_viewer.core.state import SALIENCY, ViewerState

__all__ = [
    "SALIENCY",
    "Finding",
    "FoundFile",
    "HeaderSummary",
    "ImageLoadError",
    "Orientation",
    "ViewerState",
    "VoiLut",
    "XrayImage",
    "iter_study_files",
    "load_image",
    "scope_warning",
]
