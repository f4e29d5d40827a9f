"""The main window: worklist | image view | findings, menus, and the wiring to the background workers.

The window decides nothing about scheduling: `cxr_viewer.core.pipeline.StudyPipeline` (Qt-free) owns
the queue, the requests in flight, the image cache, cancellation and model generations. The window
connects the pipeline's requests to the loader and inference threads (`cxr_viewer.qt.worker`), the
workers' answers back to the pipeline, and the pipeline's news to the widgets. Actions come from one
table (`cxr_viewer.qt.actions`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from cxr_viewer import APP_NAME, ORG_NAME
from cxr_viewer.core.orientation import Orientation
from cxr_viewer.core.pipeline import (
    ModelStatus,
    PipelineHooks,
    Study,
    StudyPipeline,
    StudyStatus,
    findings_message,
    scan_summary,
)
from cxr_viewer.inference import ModelInfo, Predictor, rank_prediction
from cxr_viewer.qt import dialogs
from cxr_viewer.qt.actions import MENUS, build_menu
from cxr_viewer.qt.drop import DropForwarder, dropped_paths
from cxr_viewer.qt.export import ExportControls
from cxr_viewer.qt.gui_gc import collect_on_gui_thread
from cxr_viewer.qt.pacs_dialog import PacsControls
from cxr_viewer.qt.presets import PresetControls
from cxr_viewer.qt.reading import ReadingControls
from cxr_viewer.qt.status_bar import WindowStatusBar, model_text
from cxr_viewer.qt.view_controls import ViewControls, file_window
from cxr_viewer.qt.widgets.compare_view import PriorView
from cxr_viewer.qt.widgets.findings_panel import FindingsPanel
from cxr_viewer.qt.widgets.image_view import ImageView
from cxr_viewer.qt.widgets.window_controls import WindowHistogram
from cxr_viewer.qt.widgets.worklist import Worklist, WorklistPanel
from cxr_viewer.qt.window_settings import WindowSettings
from cxr_viewer.qt.workers_bridge import WorkerBridge

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QDragEnterEvent, QDragMoveEvent, QDropEvent

    from cxr_viewer.core.image import XrayImage
    from cxr_viewer.core.io import FoundFile

__all__ = ["MainWindow", "Study"]

log = logging.getLogger(__name__)


class MainWindow(QMainWindow):
    """The viewer window.

    Args:
        model_path: a checkpoint to load, ``""`` for the bundled default (may be absent), or None for no
            model at all.
        predictor_factory: ``factory(path) -> Predictor`` (tests inject fakes); default loads with
            ``cral_model`` on the inference thread.
        settings: where preferences are kept; default ``QSettings(ORG_NAME, APP_NAME)``.
        max_in_flight: studies decoded/analysed concurrently (bounds memory).
        cache_size: decoded images kept for fast switching between studies.
        cpu_threads: torch threads for CPU inference (see :class:`InferenceWorker`); None leaves torch alone.
    """

    # Actions built from the MENUS table (set as attributes by build_menu) that other modules use by name.
    next_action: QAction
    prev_action: QAction
    flagged_only_action: QAction

    model_requested = Signal(str)

    #: a study row was added (study id)
    study_added = Signal(int)
    #: a study finished its pipeline: analysed, failed, or decoded without a model (study id)
    study_finished = Signal(int)
    #: the model finished loading (ModelInfo) or there is none (None)
    model_changed = Signal(object)
    #: the shown study changed (study id or -1)
    study_shown = Signal(int)

    def __init__(
        self,
        *,
        model_path: str | os.PathLike[str] | None = "",
        predictor_factory: Callable[[str], Predictor] | None = None,
        settings: QSettings | None = None,
        max_in_flight: int = 2,
        cache_size: int = 4,
        cpu_threads: int | str | None = None,
    ) -> None:
        super().__init__()
        # before any worker thread starts: cycles holding Qt objects are freed on this thread only
        self.gc_collector = collect_on_gui_thread()
        self.setWindowTitle(f"{APP_NAME} - chest X-ray triage (research demo, not for clinical use)")
        self.settings = settings if settings is not None else QSettings(ORG_NAME, APP_NAME)
        self.prefs = WindowSettings(self.settings)
        self.state = self.prefs.initial_state()
        self.model_info: ModelInfo | None = None
        self.pipeline = StudyPipeline(
            self._pipeline_hooks(),
            rank_prediction,
            max_in_flight=max_in_flight,
            cache_size=cache_size,
            model_status=ModelStatus.LOADING if model_path is not None else ModelStatus.MISSING,
        )
        self._model_card_dialog: QDialog | None = None

        self._build_widgets()
        self._build_actions()
        self.status = WindowStatusBar(self.statusBar(), self.image_view)
        self.model_label, self.progress = self.status.model_label, self.status.progress
        self.measure_label = self.status.measure_label
        self._start_workers(predictor_factory, cpu_threads)
        self.prefs.restore(self, self.splitter)
        if model_path is not None:
            self.status.set_model("Loading model...", busy=True)
            self.model_requested.emit(os.fspath(model_path))
        else:
            self._model_missing("No trained model loaded")

    # ================================================================================ what tests read
    @property
    def studies(self) -> dict[int, Study]:
        """The worklist's studies by id."""
        return self.pipeline.studies

    @property
    def skipped(self) -> list[FoundFile]:
        """Files that were found but are not images (with their reasons)."""
        return self.pipeline.skipped

    @property
    def model_status(self) -> ModelStatus:
        """loading, ready, missing or failed."""
        return self.pipeline.model_status

    def is_idle(self) -> bool:
        """True when nothing is queued or running (scans included)."""
        return self.pipeline.is_idle()

    # ================================================================================ construction
    def _pipeline_hooks(self) -> PipelineHooks:
        return PipelineHooks(
            study_added=self._on_study_added,
            status_changed=self._on_status_changed,
            thumbnail_ready=self._on_thumbnail,
            analysed=lambda s: self.worklist.set_score(s.id, s.score, ", ".join(s.flagged), s.out_of_scope),
            show_image=self._display,
            show_findings=self._show_findings,
            show_error=self._show_error,
            finished=self._on_finished,
            progress=self._update_progress,
        )

    def _build_widgets(self) -> None:
        self.worklist = Worklist()
        self.worklist_panel = WorklistPanel(self.worklist)
        self.worklist.study_selected.connect(self.show_study)
        self.image_view = ImageView(self.state)
        self.prior_view = PriorView(self.image_view)  # current and prior side by side (View > Compare)
        self.prior_view.hide()
        views = QSplitter(Qt.Orientation.Horizontal)
        views.addWidget(self.image_view)
        views.addWidget(self.prior_view)
        self.view = ViewControls(self.state, self.image_view)
        self.findings_panel = FindingsPanel(self.state)
        self.histogram = WindowHistogram(self.state)
        self.histogram.hide()
        centre = QWidget()
        centre_layout = QVBoxLayout(centre)
        centre_layout.setContentsMargins(0, 0, 0, 0)
        centre_layout.setSpacing(0)
        centre_layout.addWidget(views, 1)
        centre_layout.addWidget(self.histogram)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        for i, (widget, stretch) in enumerate(
            ((self.worklist_panel, 0), (centre, 1), (self.findings_panel, 0))
        ):
            self.splitter.addWidget(widget)
            self.splitter.setStretchFactor(i, stretch)
        self.worklist.setMinimumWidth(350)
        self.findings_panel.setMinimumWidth(300)
        self.splitter.setSizes([360, 760, 300])
        self.setCentralWidget(self.splitter)
        self.setAcceptDrops(True)
        self._drop_filter = DropForwarder(self, self.dropEvent)
        panel = self.findings_panel
        self._drop_filter.install(
            (
                self.worklist.viewport(),
                self.image_view.graphics.viewport(),
                self.prior_view.image_view.graphics.viewport(),
                panel.list.viewport(),
                panel,
            )
        )
        self.reading = ReadingControls(self)
        self.export = ExportControls(self)  # File > Export results (worker thread)
        self.pacs = PacsControls(self)  # File > Open from PACS (worker thread)
        self.resize(1400, 860)

    def _build_actions(self) -> None:
        toolbar = QToolBar("View")
        toolbar.setObjectName("view_toolbar")
        toolbar.setMovable(False)
        self.addToolBar(toolbar)
        groups: dict[str, QActionGroup] = {}
        for spec in MENUS:  # each action becomes window.<name> (tests and scripts use those names)
            built = build_menu(self, spec, toolbar, groups)
            if spec.title == "&View":
                self.presets = PresetControls(self, self.state, built.submenus["preset_menu"], self.settings)
                self.view.presets = self.presets
                toolbar.addWidget(self.presets.combo)
                self.tool_actions = {
                    t: built.actions[f"tool_{t}_action"]
                    for t in ("window", "pan", "measure", "angle", "ctr", "ellipse")
                }
                self.view.invert_action = built.actions["invert_action"]
        self.preset_combo = self.presets.combo
        self.reading.bind_actions()
        self.tool_actions["window"].setChecked(True)

    def _start_workers(
        self, predictor_factory: Callable[[str], Predictor] | None, cpu_threads: int | str | None
    ) -> None:
        self.workers = WorkerBridge(self.pipeline, self._on_scanned, predictor_factory, cpu_threads, self)
        self.loader_thread, self.inference_thread = self.workers.loader_thread, self.workers.inference_thread
        inference = self.workers.inference
        self.model_requested.connect(inference.load_model)
        inference.model_loaded.connect(self._on_model_loaded)
        inference.model_failed.connect(self._on_model_failed)
        inference.model_missing.connect(self._model_missing)

    def last_folder(self) -> str:
        """The folder the file dialogs start in."""
        return self.prefs.last_folder()

    # ================================================================================ opening
    def open_files_dialog(self) -> None:
        """File > Open files."""
        files = dialogs.ask_files(self, self.last_folder())
        if files:
            self.prefs.remember_folder(files[0])
            self.open_paths(files)

    def open_folder_dialog(self) -> None:
        """File > Open folder (read recursively)."""
        folder = dialogs.ask_folder(self, self.last_folder())
        if folder:
            self.prefs.remember_folder(folder)
            self.open_paths([folder])

    def open_paths(self, paths: Iterable[str | os.PathLike[str]]) -> None:
        """Add files and folders to the worklist (scanned off the GUI thread)."""
        n = self.pipeline.scan(paths)
        if n:
            self.status.message(f"Scanning {n} item(s)...", 3000)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # Qt override
        if event.mimeData().hasUrls():
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:  # Qt override
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # Qt override
        """Files and folders dropped anywhere on the window are opened."""
        paths = dropped_paths(event)
        if paths:
            event.acceptProposedAction()
            self.prefs.remember_folder(paths[0])
            self.open_paths(paths)
        else:
            event.ignore()

    def _on_scanned(self, request_id: int, found: list[FoundFile]) -> None:
        added = self.pipeline.scanned(request_id, found)
        if added is None:
            return
        skipped = [f for f in found if f.skipped]
        self.status.message(scan_summary(len(added), skipped, len(self.pipeline.already_open)), 10000)
        if self.worklist.current_study() is None and added:
            self.worklist.select_first(lambda sid: self.studies[sid].status is not StudyStatus.ERROR)
        self.pipeline.pump()

    def _on_thumbnail(self, study: Study) -> None:
        if study.thumbnail is not None:
            self.worklist.set_thumbnail(study.id, study.thumbnail)

    def _on_study_added(self, study: Study) -> None:
        self.worklist.add_study(study.id, study.name, str(study.path), study.facts)
        self.study_added.emit(study.id)

    def _on_finished(self, study: Study) -> None:
        self.study_finished.emit(study.id)
        if self.pipeline.is_idle() and self.pipeline.progress_counts()[0] == 0:
            # everything is analysed: the top of the triage list, unless the user chose a study
            self.worklist.select_top(lambda sid: self.studies[sid].status is not StudyStatus.ERROR)

    def clear_worklist(self) -> None:
        """Remove all studies (in-flight answers are dropped)."""
        self.pipeline.clear()
        self.worklist.clear_studies()
        self.image_view.forget_measurements()
        self._show_nothing()

    # ================================================================================ analysis
    def cancel_analysis(self, quiet: bool = False) -> None:
        """Stop: queued studies become "cancelled"; answers still on their way are dropped."""
        cancelled = self.pipeline.cancel()
        if not quiet:
            self.status.message(
                f"Analysis cancelled ({cancelled} stud{'y' if cancelled == 1 else 'ies'})", 5000
            )

    def analyse_remaining(self) -> None:
        """Queue cancelled and not-yet-analysed studies again."""
        self.pipeline.requeue(self.worklist.study_ids_in_view_order())

    def _on_status_changed(self, study: Study) -> None:
        self.worklist.set_status(study.id, study.status, study.reason)  # a reason only when failed
        self._update_progress()

    def _update_progress(self) -> None:
        if hasattr(self, "status"):
            self.status.show_progress(*self.pipeline.progress_counts())

    # ================================================================================ model
    def load_model_dialog(self) -> None:
        """File > Load model."""
        path = dialogs.ask_checkpoint(self, self.last_folder())
        if path:
            self.load_model(path)

    def load_model(self, path: str | os.PathLike[str]) -> None:
        """Load a checkpoint on the inference thread; studies are re-analysed when it is ready."""
        self.pipeline.model_loading()
        self.status.set_model(f"Loading model {Path(path).name}...", busy=True)
        self.model_requested.emit(os.fspath(path))

    def _on_model_loaded(self, info: ModelInfo) -> None:
        if self.pipeline.closed:
            return
        self.pipeline.model_ready(self.worklist.study_ids_in_view_order())
        self.model_info = info
        if self.gc_collector is not None:  # the model and the window are long-lived from here
            self.gc_collector.freeze_long_lived()
        self.status.set_model(model_text(info), tooltip=info.path)
        self.state.update(map_region=info.region)
        self._refresh_shown_findings()
        self.model_changed.emit(info)
        self.pipeline.pump()

    def _on_model_failed(self, reason: str) -> None:
        if self.pipeline.closed:
            return
        if self.model_info is not None:  # keep using the previous model
            self.pipeline.model_ready_again(self.worklist.study_ids_in_view_order())
            self.status.set_model(model_text(self.model_info))
            QMessageBox.warning(self, "Model not loaded", f"The model could not be loaded:\n{reason}")
            return
        self.status.set_model(f"No trained model loaded (load failed: {reason})", error=True)
        self._no_model(ModelStatus.FAILED)

    def _model_missing(self, message: str) -> None:
        if self.pipeline.closed:
            return
        self.status.set_model(f"{message} - viewing only (File > Load model...)", error=True)
        self._no_model(ModelStatus.MISSING)

    def _no_model(self, status: ModelStatus) -> None:
        self.pipeline.model_unavailable(status)
        self._refresh_shown_findings()
        self.pipeline.pump()
        self.model_changed.emit(None)

    def _refresh_shown_findings(self) -> None:
        study = self.studies.get(self.pipeline.shown)
        if study is not None and study.status is not StudyStatus.ERROR:
            self._show_findings(study)

    def show_model_card(self) -> None:
        """Help > About model: the checkpoint's card, always with the not-for-clinical-use notice."""
        self._model_card_dialog = dialogs.model_card_dialog(self, self.model_info)

    def show_shortcuts(self) -> None:
        """Help > Mouse and keyboard."""
        dialogs.show_shortcuts(self)

    def show_about(self) -> None:
        """Help > About."""
        dialogs.show_about(self)

    # ================================================================================ display
    def show_study(self, study_id: int) -> None:
        """Show a study (decoding it off the GUI thread when it is not cached)."""
        image = self.pipeline.show(study_id)
        study = self.studies.get(study_id)
        if study is None:
            self._show_nothing()
            return
        self.study_shown.emit(study_id)
        self.reading.update_prior()
        if study.status is StudyStatus.ERROR:
            self._show_error(study)
        elif image is not None:
            self._display(study, image)
        else:
            self.state.update(image=None, prediction=None)
            self.image_view.placeholder.setText(f"Loading {study.name}...")
            self.image_view.placeholder.show()

    def _display(self, study: Study, image: XrayImage) -> None:
        keep = self.state.selected_map if study.prediction is not None else None
        self.state.update(
            image=image,
            orientation=Orientation(),
            prediction=study.prediction,
            selected_map=keep,
            **file_window(image),
        )
        self.presets.refresh(image)
        self._show_findings(study)

    def _show_findings(self, study: Study) -> None:
        if study.id != self.pipeline.shown:
            return
        self.state.update(prediction=study.prediction)
        if study.prediction is None:
            self.state.update(selected_map=None)
        thresholds_known = self.model_info is None or self.model_info.thresholds is not None
        text = findings_message(study, self.model_status, thresholds_known)
        if study.prediction is None:
            self.findings_panel.set_findings([], text)
        else:
            self.findings_panel.set_findings(
                study.findings, text, has_saliency=study.prediction.saliency is not None
            )

    def _show_error(self, study: Study) -> None:
        self.state.update(image=None, prediction=None, selected_map=None)
        self.image_view.placeholder.setText(f"{study.name}\ncannot be shown: {study.reason}")
        self.image_view.placeholder.show()
        self.findings_panel.set_findings([], f"Error: {study.reason}")

    def _show_nothing(self) -> None:
        self.pipeline.show(-1)
        self.state.update(image=None, prediction=None, selected_map=None)
        self.findings_panel.set_findings([], "No study selected")

    def select_study(self, study_id: int) -> None:
        """Make a study current in the worklist (and show it)."""
        self.worklist.select_study(study_id)

    # ================================================================================ shutdown
    def closeEvent(self, event: QCloseEvent) -> None:  # Qt override
        """Save settings, stop the workers (quit + wait), then close."""
        if not self.pipeline.closed:
            self.pipeline.close()
            self.prefs.save(self, self.splitter, self.state)
            self.shutdown_workers()
            self.image_view.close_view()
            self.reading.close()
            self.export.close()
            self.pacs.close()
            self.findings_panel.close_panel()
            self.histogram.close_controls()
            self.presets.close_controls()
        super().closeEvent(event)

    def shutdown_workers(self) -> None:
        """Cancel queued requests and stop both threads, waiting for a running analysis to end."""
        self.workers.stop()
