"""Wires a `StudyPipeline` to the two worker threads: its requests go out through queued signals, the
workers' answers come back to the GUI thread (this QObject lives there) and into the pipeline."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import QApplication

from cxr_viewer.qt.worker import InferenceWorker, LoaderWorker, WorkerThread

if TYPE_CHECKING:
    from collections.abc import Callable

    from cxr_viewer.core.image import XrayImage
    from cxr_viewer.core.io import FoundFile
    from cxr_viewer.core.pipeline import StudyPipeline
    from cxr_viewer.core.prediction import PredictionLike, Predictor

__all__ = ["WorkerBridge"]

log = logging.getLogger(__name__)


class WorkerBridge(QObject):
    """The loader and inference threads of one window, connected to its pipeline.

    Requests travel as queued signals carrying plain data (ids, paths, `XrayImage`); answers arrive in
    this object's slots on the GUI thread. ``scanned`` is handed to ``on_scanned`` (the window shows a
    message and picks the first study); everything else goes straight to the pipeline.
    """

    scan_requested = Signal(int, object)
    decode_requested = Signal(int, str)
    inference_requested = Signal(int, object)

    def __init__(
        self,
        pipeline: StudyPipeline,
        on_scanned: Callable[[int, list[FoundFile]], None],
        predictor_factory: Callable[[str], Predictor] | None,
        cpu_threads: int | str | None,
        parent: QObject,
    ) -> None:
        super().__init__(parent)
        self._pipeline = pipeline
        self._on_scanned = on_scanned
        hooks = pipeline.hooks
        hooks.scan = self.scan_requested.emit
        hooks.decode = self.decode_requested.emit
        hooks.analyse = self.inference_requested.emit

        self.loader = LoaderWorker()
        self.loader_thread = WorkerThread(self.loader, "cxr-loader")
        hooks.cancel_decodes = self.loader.cancel_through
        self.scan_requested.connect(self.loader.scan)
        self.decode_requested.connect(self.loader.decode)
        self.loader.scanned.connect(self._scanned)
        self.loader.decoded.connect(self._decoded)
        self.loader.decode_failed.connect(self._decode_failed)

        self.inference = InferenceWorker(predictor_factory, cpu_threads)
        self.inference_thread = WorkerThread(self.inference, "cxr-inference")
        hooks.cancel_analyses = self.inference.cancel_through
        self.inference_requested.connect(self.inference.run)
        self.inference.started.connect(self._started)
        self.inference.result_ready.connect(self._result)
        self.inference.failed.connect(self._failed)

    @Slot(int, object)
    def _scanned(self, request_id: int, found: list[FoundFile]) -> None:
        self._on_scanned(request_id, found)

    @Slot(int, object, object)
    def _decoded(self, request_id: int, image: XrayImage, thumbnail: object) -> None:
        self._pipeline.decoded(request_id, image, thumbnail)  # type: ignore[arg-type]

    @Slot(int, str)
    def _decode_failed(self, request_id: int, reason: str) -> None:
        self._pipeline.decode_failed(request_id, reason)

    @Slot(int)
    def _started(self, request_id: int) -> None:
        self._pipeline.analysis_started(request_id)

    @Slot(int, object)
    def _result(self, request_id: int, prediction: PredictionLike) -> None:
        self._pipeline.result(request_id, prediction)

    @Slot(int, str)
    def _failed(self, request_id: int, reason: str) -> None:
        self._pipeline.analysis_failed(request_id, reason)

    def stop(self) -> None:
        """Cancel queued requests and stop both threads, waiting for a running analysis to end."""
        for wt in (self.inference_thread, self.loader_thread):
            if not wt.stop():
                log.warning("worker thread %s did not stop in time", wt.thread.objectName())
        QApplication.processEvents()
