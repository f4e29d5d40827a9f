"""The viewer's PACS client: DICOMweb study search (QIDO-RS) and retrieve (WADO-RS), Qt-free.

See `cxr_viewer.pacs.client`; the dialog that drives it is `cxr_viewer.qt.pacs_dialog`.
"""

from __future__ import annotations

from cxr_viewer.pacs.client import (
    PacsConfig,
    PacsError,
    StudyMatch,
    StudyQuery,
    retrieve_study,
    search_studies,
)

__all__ = ["PacsConfig", "PacsError", "StudyMatch", "StudyQuery", "retrieve_study", "search_studies"]
