"""The main window: worklist | image view | findings, menus, and the wiring to the background workers.

Pipeline per study: scan (loader thread) -> decode + thumbnail (loader thread) -> analyse (inference
thread) -> done/error. At most ``max_in_flight`` studies are between decode and result at any time, so
a drop of a thousand files does not queue a thousand decoded images in memory. Every request carries
an id; answers whose id is no longer expected (cancelled, superseded, another model) are dropped.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QByteArray, QEvent, QObject, QSettings, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QSplitter,
    QTextBrowser,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from cxr_viewer import APP_NAME, ORG_NAME
from cxr_viewer.core.findings import Finding, rank_findings, triage_score
from cxr_viewer.core.image import XrayImage
from cxr_viewer.core.io import FoundFile
from cxr_viewer.core.orientation import Orientation
from cxr_viewer.core.overlay import MAP_STYLES
from cxr_viewer.core.scope import scope_warning
from cxr_viewer.core.state import ViewerState
from cxr_viewer.core.windowing import WindowPreset, auto_window, presets_for
from cxr_viewer.inference import ModelInfo, Predictor, model_card_text
from cxr_viewer.qt.widgets.findings_panel import FindingsPanel
from cxr_viewer.qt.widgets.image_view import ImageView
from cxr_viewer.qt.widgets.window_controls import WindowHistogram
from cxr_viewer.qt.widgets.worklist import Worklist
from cxr_viewer.qt.worker import InferenceWorker, LoaderWorker, WorkerThread

__all__ = ["MainWindow", "Study"]

log = logging.getLogger(__name__)
TOP_K = 8
SHORTCUTS_TEXT = """Mouse on the image
  Left drag: window/level (W tool; right = wider, up = brighter), pan (P tool) or measure (M tool)
  Middle drag: pan    Right drag or wheel: zoom    Double click: fit
  Histogram below the image: drag the shaded window or its edges

Keys
  W / P / M: window-level, pan, measure tool    Esc: clear the measurement
  F: fit    + / -: zoom    Ctrl+0: reset view    I: invert    R / Shift+R: rotate    H / V: flip
  A: auto window    0-5: window presets (0 = the file's VOI LUT, when it has one)
  Up / Down in the worklist, or Ctrl+Up / Ctrl+Down anywhere: previous / next study
  O: attention map on/off    Ctrl+.: cancel analysis    Ctrl+Return: analyse remaining
  Ctrl+O: open files    Ctrl+Shift+O: open folder    Ctrl+L: load model

Files and folders can be dropped anywhere on the window."""


@dataclass(eq=False)
class Study:
    """One row of the worklist (no pixels: decoded images live in a small cache)."""

    id: int
    path: Path
    status: str = "queued"
    reason: str = ""
    thumbnail: np.ndarray | None = None
    prediction: Any = None
    findings: list[Finding] = field(default_factory=list)
    score: float | None = None
    model_generation: int = -1  # which loaded model produced ``prediction``
    notes: tuple[str, ...] = ()
    out_of_scope: str = ""  # why the header says this is not a frontal chest radiograph (core.scope)

    @property
    def name(self) -> str:
        """File name."""
        return self.path.name


class _DropFilter(QObject):
    """Forwards drag-and-drop events from child widgets to the main window (drops work anywhere)."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self._window = window

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # Qt override
        kind = event.type()
        if kind in (QEvent.Type.DragEnter, QEvent.Type.DragMove):
            if event.mimeData().hasUrls():  # type: ignore[attr-defined]
                event.acceptProposedAction()  # type: ignore[attr-defined]
                return True
        elif kind == QEvent.Type.Drop and event.mimeData().hasUrls():  # type: ignore[attr-defined]
            self._window.dropEvent(event)  # type: ignore[arg-type]
            return True
        return False


class MainWindow(QMainWindow):
    """The viewer window.

    Args:
        model_path: a checkpoint to load, ``""`` for the bundled default (may be absent), or None for no
            model at all.
        predictor_factory: ``factory(path) -> Predictor`` (tests inject fakes); default loads with
            ``cral_model`` on the inference thread.
        settings: where preferences are kept; default ``QSettings(ORG_NAME, APP_NAME)``.
        max_in_flight: studies decoded/analysed concurrently (bounds memory).
        cpu_threads: torch threads for CPU inference (see :class:`InferenceWorker`); None leaves torch alone.
        cache_size: decoded images kept for fast switching between studies.
    """

    scan_requested = Signal(int, object)
    decode_requested = Signal(int, str)
    inference_requested = Signal(int, object)
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
        self.setWindowTitle(f"{APP_NAME} - chest X-ray triage (research demo, not for clinical use)")
        self.settings = settings if settings is not None else QSettings(ORG_NAME, APP_NAME)
        style = str(self.settings.value("map_style", "filled"))
        self.state = ViewerState(
            overlay_opacity=self._setting_float("overlay_opacity", 0.45),
            map_style=style if style in MAP_STYLES else "filled",
        )
        self.studies: dict[int, Study] = {}
        self.skipped: list[FoundFile] = []
        self.model_info: ModelInfo | None = None
        self.model_status = "loading" if model_path is not None else "missing"
        self._model_generation = 0
        self._max_in_flight = max(1, max_in_flight)
        self._cache: OrderedDict[int, XrayImage] = OrderedDict()
        self._cache_size = max(1, cache_size)
        self._pending: deque[int] = deque()
        self._inflight: dict[int, tuple[int, str, int]] = {}  # request id -> (study id, kind, model gen)
        self._next_id = 0
        self._next_study = 0
        self._display_request = -1
        self._shown_study = -1
        self._closing = False

        self._build_widgets()
        self._build_actions()
        self._build_status_bar()
        self._start_workers(predictor_factory, cpu_threads)
        self._restore_settings()
        if model_path is not None:
            self._set_model_label("Loading model...", busy=True)
            self.model_requested.emit(os.fspath(model_path))
        else:
            self._model_missing("No trained model loaded")

    # ================================================================================ construction
    def _build_widgets(self) -> None:
        self.worklist = Worklist()
        self.worklist.study_selected.connect(self.show_study)
        self.image_view = ImageView(self.state)
        self.findings_panel = FindingsPanel(self.state)
        self.histogram = WindowHistogram(self.state)
        self.histogram.hide()
        centre = QWidget()
        centre_layout = QVBoxLayout(centre)
        centre_layout.setContentsMargins(0, 0, 0, 0)
        centre_layout.setSpacing(0)
        centre_layout.addWidget(self.image_view, 1)
        centre_layout.addWidget(self.histogram)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.worklist)
        self.splitter.addWidget(centre)
        self.splitter.addWidget(self.findings_panel)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setStretchFactor(2, 0)
        self.worklist.setMinimumWidth(350)
        self.findings_panel.setMinimumWidth(300)
        self.splitter.setSizes([360, 760, 300])
        self.setCentralWidget(self.splitter)
        self.setAcceptDrops(True)
        self._drop_filter = _DropFilter(self)
        for widget in (
            self.worklist.viewport(),
            self.image_view.graphics.viewport(),
            self.findings_panel.list.viewport(),
            self.findings_panel,
        ):
            widget.setAcceptDrops(True)
            widget.installEventFilter(self._drop_filter)
        self.resize(1400, 860)

    def _action(
        self,
        text: str,
        slot: Callable[..., Any],
        shortcut: str | QKeySequence | QKeySequence.StandardKey | None = None,
        tip: str = "",
        checkable: bool = False,
    ) -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.setToolTip(tip or text)
        action.setStatusTip(tip or text)
        action.setCheckable(checkable)
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        self.open_files_action = self._action(
            "&Open files...", self.open_files_dialog, QKeySequence.StandardKey.Open
        )
        self.open_folder_action = self._action("Open &folder...", self.open_folder_dialog, "Ctrl+Shift+O")
        self.load_model_action = self._action(
            "&Load model...", self.load_model_dialog, "Ctrl+L", "Load a cral-train checkpoint (*.safetensors)"
        )
        self.clear_action = self._action("&Clear worklist", self.clear_worklist)
        quit_action = self._action("&Quit", self.close, QKeySequence.StandardKey.Quit)
        for a in (
            self.open_files_action,
            self.open_folder_action,
            None,
            self.load_model_action,
            None,
            self.clear_action,
            None,
            quit_action,
        ):
            file_menu.addAction(a) if a is not None else file_menu.addSeparator()

        view_menu = menu.addMenu("&View")
        self.fit_action = self._action("&Fit to window", self.image_view.fit, "F")
        self.zoom_in_action = self._action("Zoom &in", lambda: self.image_view.zoom(1.25), "+")
        self.zoom_out_action = self._action("Zoom &out", lambda: self.image_view.zoom(0.8), "-")
        self.invert_action = self._action(
            "&Invert", lambda on: self.state.update(invert=bool(on)), "I", checkable=True
        )
        self.rotate_action = self._action(
            "&Rotate right", lambda: self._orient(self.state.orientation.rotated()), "R"
        )
        self.rotate_left_action = self._action(
            "Rotate &left", lambda: self._orient(self.state.orientation.rotated(False)), "Shift+R"
        )
        self.flip_action = self._action(
            "Flip &horizontal", lambda: self._orient(self.state.orientation.flipped()), "H"
        )
        self.flip_v_action = self._action(
            "Flip &vertical", lambda: self._orient(self.state.orientation.flipped(False)), "V"
        )
        self.reset_view_action = self._action("Reset &view", self.reset_view, "Ctrl+0")
        self.auto_window_action = self._action("&Auto window", self.auto_window, "A")
        self.clear_measure_action = self._action(
            "Clear &measurement", self.image_view.clear_measurement, "Esc"
        )
        tools = QActionGroup(self)
        self.tool_actions: dict[str, QAction] = {}
        for tool, label, key in (
            ("window", "&Window/level (left drag)", "W"),
            ("pan", "&Pan (left drag)", "P"),
            ("measure", "&Measure length (left drag)", "M"),
        ):
            act = self._action(
                label, lambda _=False, t=tool: self.image_view.set_tool(t), key, checkable=True
            )
            tools.addAction(act)
            self.tool_actions[tool] = act
        self.tool_actions["window"].setChecked(True)
        for a in (
            *self.tool_actions.values(),
            None,
            self.fit_action,
            self.zoom_in_action,
            self.zoom_out_action,
            self.reset_view_action,
            None,
            self.auto_window_action,
            self.invert_action,
            self.rotate_action,
            self.rotate_left_action,
            self.flip_action,
            self.flip_v_action,
            None,
            self.clear_measure_action,
        ):
            view_menu.addAction(a) if a is not None else view_menu.addSeparator()
        self.preset_menu = view_menu.addMenu("Window &presets")

        analysis_menu = menu.addMenu("&Analysis")
        self.cancel_action = self._action(
            "&Cancel analysis", self.cancel_analysis, "Ctrl+.", "Stop analysing queued studies"
        )
        self.reanalyse_action = self._action(
            "&Analyse remaining",
            self.analyse_remaining,
            "Ctrl+Return",
            "Queue studies that were cancelled or not yet analysed",
        )
        self.next_action = self._action("&Next study", lambda: self._step_study(1), "Ctrl+Down")
        self.prev_action = self._action("&Previous study", lambda: self._step_study(-1), "Ctrl+Up")
        for a in (self.cancel_action, self.reanalyse_action, None, self.next_action, self.prev_action):
            analysis_menu.addAction(a) if a is not None else analysis_menu.addSeparator()

        help_menu = menu.addMenu("&Help")
        self.about_model_action = self._action("About &model...", self.show_model_card)
        about_action = self._action("&About", self._show_about)
        self.shortcuts_action = self._action("&Mouse and keyboard...", self._show_shortcuts, "F1")
        help_menu.addAction(self.shortcuts_action)
        help_menu.addAction(self.about_model_action)
        help_menu.addAction(about_action)

        toolbar = QToolBar("View")
        toolbar.setObjectName("view_toolbar")
        toolbar.setMovable(False)
        self.addToolBar(toolbar)
        toolbar.addAction(self.open_files_action)
        toolbar.addAction(self.open_folder_action)
        toolbar.addSeparator()
        for act, text in zip(self.tool_actions.values(), ("W/L", "Pan", "Measure"), strict=True):
            act.setIconText(text)
            toolbar.addAction(act)
        toolbar.addSeparator()
        self.fit_action.setIconText("Fit")
        self.zoom_in_action.setIconText("Zoom +")
        self.zoom_out_action.setIconText("Zoom -")
        self.invert_action.setIconText("Invert")
        self.rotate_action.setIconText("Rotate")
        self.flip_action.setIconText("Flip")
        self.auto_window_action.setIconText("Auto W/L")
        for a in (
            self.fit_action,
            self.zoom_in_action,
            self.zoom_out_action,
            self.invert_action,
            self.rotate_action,
            self.flip_action,
            self.auto_window_action,
        ):
            toolbar.addAction(a)
        self.preset_combo = QComboBox()
        self.preset_combo.setToolTip("Window presets (keys 1-5)")
        self.preset_combo.activated.connect(self._apply_preset)
        toolbar.addWidget(self.preset_combo)
        toolbar.addSeparator()
        self.cancel_action.setIconText("Cancel analysis")
        toolbar.addAction(self.cancel_action)
        self._preset_actions: list[QAction] = []
        self._voi_preset = False
        self._refresh_presets(None)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.pixel_label = QLabel("")
        self.measure_label = QLabel("")
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setFormat("analysed %v / %m")
        self.progress.hide()
        self.model_label = QLabel("")
        bar.addWidget(self.pixel_label, 1)
        bar.addPermanentWidget(self.measure_label)
        bar.addPermanentWidget(self.progress)
        bar.addPermanentWidget(self.model_label)
        self.image_view.pixel_info_changed.connect(self.pixel_label.setText)
        self.image_view.measurement_changed.connect(
            lambda t: self.measure_label.setText(f"Length: {t}" if t else "")
        )

    def _start_workers(
        self, predictor_factory: Callable[[str], Predictor] | None, cpu_threads: int | str | None
    ) -> None:
        self.loader = LoaderWorker()
        self.loader_thread = WorkerThread(self.loader, "cxr-loader")
        self.scan_requested.connect(self.loader.scan)
        self.decode_requested.connect(self.loader.decode)
        self.loader.scanned.connect(self._on_scanned)
        self.loader.decoded.connect(self._on_decoded)
        self.loader.decode_failed.connect(self._on_decode_failed)

        self.inference = InferenceWorker(predictor_factory, cpu_threads)
        self.inference_thread = WorkerThread(self.inference, "cxr-inference")
        self.model_requested.connect(self.inference.load_model)
        self.inference_requested.connect(self.inference.run)
        self.inference.model_loaded.connect(self._on_model_loaded)
        self.inference.model_failed.connect(self._on_model_failed)
        self.inference.model_missing.connect(self._model_missing)
        self.inference.started.connect(self._on_analysis_started)
        self.inference.result_ready.connect(self._on_result)
        self.inference.failed.connect(self._on_analysis_failed)

    # ================================================================================ settings
    def _setting_float(self, key: str, default: float) -> float:
        try:
            value: Any = self.settings.value(key, default)
            return float(value)
        except (TypeError, ValueError):
            return default

    def _restore_settings(self) -> None:
        geometry = self.settings.value("geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        splitter = self.settings.value("splitter")
        if isinstance(splitter, QByteArray) and not splitter.isEmpty():
            self.splitter.restoreState(splitter)

    def _save_settings(self) -> None:
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("splitter", self.splitter.saveState())
        self.settings.setValue("overlay_opacity", float(self.state.overlay_opacity))
        self.settings.setValue("map_style", self.state.map_style)
        self.settings.sync()

    def last_folder(self) -> str:
        """The folder the file dialogs start in."""
        value = self.settings.value("last_folder", "")
        return str(value) if value and Path(str(value)).is_dir() else str(Path.home())

    def _remember_folder(self, path: str | os.PathLike[str]) -> None:
        p = Path(path)
        self.settings.setValue("last_folder", str(p if p.is_dir() else p.parent))

    # ================================================================================ opening
    def open_files_dialog(self) -> None:
        """File > Open files."""
        files, _ = QFileDialog.getOpenFileNames(
            self,
            "Open chest X-rays",
            self.last_folder(),
            "Images (*.dcm *.dicom *.png *.jpg *.jpeg *.tif *.tiff *.bmp);;All files (*)",
        )
        if files:
            self._remember_folder(files[0])
            self.open_paths(files)

    def open_folder_dialog(self) -> None:
        """File > Open folder (read recursively)."""
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of chest X-rays", self.last_folder())
        if folder:
            self._remember_folder(folder)
            self.open_paths([folder])

    def open_paths(self, paths: Iterable[str | os.PathLike[str]]) -> None:
        """Add files and folders to the worklist (scanned off the GUI thread)."""
        plain = [os.fspath(p) for p in paths]
        if not plain:
            return
        self.statusBar().showMessage(f"Scanning {len(plain)} item(s)...", 3000)
        self.scan_requested.emit(self._new_request(-1, "scan"), plain)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # Qt override
        if event.mimeData().hasUrls():
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: Any) -> None:  # Qt override
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # Qt override
        """Files and folders dropped anywhere on the window are opened."""
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self._remember_folder(paths[0])
            self.open_paths(paths)
        else:
            event.ignore()

    def _on_scanned(self, request_id: int, found: list[FoundFile]) -> None:
        if self._inflight.pop(request_id, None) is None or self._closing:
            return
        added = 0
        skipped = [f for f in found if f.skipped]
        self.skipped.extend(skipped)
        for f in found:
            if f.skipped:
                continue
            self._next_study += 1
            study = Study(self._next_study, f.path)
            self.studies[study.id] = study
            self.worklist.add_study(study.id, study.name, str(f.path))
            self._pending.append(study.id)
            self.study_added.emit(study.id)
            added += 1
        msg = f"Added {added} stud{'y' if added == 1 else 'ies'}"
        if skipped:
            examples = "; ".join(f"{f.path.name}: {f.skip_reason}" for f in skipped[:3])
            msg += f"; skipped {len(skipped)} file(s) ({examples}{'; ...' if len(skipped) > 3 else ''})"
        self.statusBar().showMessage(msg, 10000)
        if self.worklist.current_study() is None and added:
            first = next(
                sid for sid in self.worklist.study_ids_in_view_order() if self.studies[sid].status != "error"
            )
            self.worklist.select_study(first)
        self._update_progress()
        self._pump()

    def clear_worklist(self) -> None:
        """Remove all studies (in-flight answers are dropped)."""
        self.cancel_analysis(quiet=True)
        self.studies.clear()
        self._cache.clear()
        self.worklist.clear_studies()
        self._show_nothing()
        self._update_progress()

    # ================================================================================ pipeline
    def _new_request(self, study_id: int, kind: str) -> int:
        self._next_id += 1
        self._inflight[self._next_id] = (study_id, kind, self._model_generation)
        return self._next_id

    def _busy_slots(self) -> int:
        return sum(1 for _, kind, _ in self._inflight.values() if kind in ("decode", "analyse"))

    def _needs_analysis(self, study: Study) -> bool:
        return (
            self.model_status == "ready"
            and study.status not in ("error", "cancelled")
            and study.model_generation != self._model_generation
        )

    def _pump(self) -> None:
        """Start work for pending studies while fewer than ``max_in_flight`` are in progress."""
        if self._closing:
            return
        while self._pending and self._busy_slots() < self._max_in_flight:
            study = self.studies.get(self._pending.popleft())
            if study is None or study.status in ("error", "cancelled"):
                continue
            if study.thumbnail is None:
                self._set_status(study, "queued")
                self.decode_requested.emit(self._new_request(study.id, "decode"), os.fspath(study.path))
            elif self._needs_analysis(study):
                image = self._cache.get(study.id)
                if image is None:
                    self.decode_requested.emit(self._new_request(study.id, "decode"), os.fspath(study.path))
                else:
                    self._submit_analysis(study, image)
        self._update_progress()

    def _submit_analysis(self, study: Study, image: XrayImage) -> None:
        self._set_status(study, "queued")
        # the worker maps the image to the network input (model_input) on its own thread
        self.inference_requested.emit(self._new_request(study.id, "analyse"), image)

    def _cache_put(self, study_id: int, image: XrayImage) -> None:
        self._cache[study_id] = image
        self._cache.move_to_end(study_id)
        while len(self._cache) > self._cache_size:
            oldest = next(iter(self._cache))
            if oldest == self._shown_study and len(self._cache) > 1:
                self._cache.move_to_end(oldest)
                oldest = next(iter(self._cache))
            self._cache.pop(oldest)

    def _on_decoded(self, request_id: int, image: XrayImage, thumb: np.ndarray) -> None:
        entry = self._inflight.pop(request_id, None)
        if entry is None or self._closing:
            return  # stale: cancelled or cleared
        study = self.studies.get(entry[0])
        if study is None:
            return
        self._cache_put(study.id, image)
        study.notes = image.notes
        study.out_of_scope = scope_warning(image.header)
        if study.thumbnail is None:
            study.thumbnail = thumb
            self.worklist.set_thumbnail(study.id, thumb)
        if study.id == self._shown_study and (entry[1] == "display" or self.state.image is None):
            self._display(study, image)
        if entry[1] == "decode":
            if self._needs_analysis(study):
                self._submit_analysis(study, image)
            elif self.model_status in ("missing", "failed") and study.status == "queued":
                self._set_status(study, "viewed (no model)")
                self.study_finished.emit(study.id)
        self._pump()

    def _on_decode_failed(self, request_id: int, reason: str) -> None:
        entry = self._inflight.pop(request_id, None)
        if entry is None or self._closing:
            return
        study = self.studies.get(entry[0])
        if study is not None:
            self._fail(study, reason)
        self._pump()

    def _fail(self, study: Study, reason: str) -> None:
        study.reason = reason
        self._set_status(study, "error", reason)
        if study.id == self._shown_study:
            self._show_error(study)
        self.study_finished.emit(study.id)

    def _on_analysis_started(self, request_id: int) -> None:
        entry = self._inflight.get(request_id)
        if entry is not None and (study := self.studies.get(entry[0])) is not None:
            self._set_status(study, "analysing")

    def _on_result(self, request_id: int, prediction: Any) -> None:
        entry = self._inflight.pop(request_id, None)
        if entry is None or self._closing or entry[2] != self._model_generation:
            self._pump()
            return  # stale: cancelled, cleared, or from a previous model
        study = self.studies.get(entry[0])
        if study is None:
            return
        try:
            thresholds = getattr(prediction, "thresholds", None)
            study.findings = rank_findings(
                prediction.probabilities, prediction.class_names, thresholds, TOP_K
            )
            study.score = triage_score(prediction.probabilities, thresholds)
        except (AttributeError, ValueError) as exc:
            self._fail(study, f"malformed model output: {exc}")
            self._pump()
            return
        study.prediction = prediction
        study.model_generation = entry[2]
        self._set_status(study, "done")
        flagged = ", ".join(f.display_name for f in study.findings if f.above_threshold)
        self.worklist.set_score(study.id, study.score, flagged, study.out_of_scope)
        if study.id == self._shown_study:
            self._show_findings(study)
        self.study_finished.emit(study.id)
        self._pump()

    def _on_analysis_failed(self, request_id: int, reason: str) -> None:
        entry = self._inflight.pop(request_id, None)
        if entry is None or self._closing:
            self._pump()
            return
        study = self.studies.get(entry[0])
        if study is not None:
            self._fail(study, reason)
        self._pump()

    def cancel_analysis(self, quiet: bool = False) -> None:
        """Stop: queued studies become "cancelled"; answers still on their way are dropped."""
        cancelled = 0
        for sid in list(self._pending) + [sid for sid, kind, _ in self._inflight.values() if kind != "scan"]:
            study = self.studies.get(sid)
            if study is not None and study.status in ("queued", "analysing"):
                self._set_status(study, "cancelled")
                cancelled += 1
        self._pending.clear()
        display = self._display_request if self._display_request in self._inflight else None
        self._inflight = {k: v for k, v in self._inflight.items() if v[1] == "scan"}
        self.inference.cancel_through(self._next_id)
        if display is not None:  # the image the user is looking at still has to appear
            self._inflight[display] = (self._shown_study, "display", self._model_generation)
        else:
            self.loader.cancel_through(self._next_id)
        if not quiet:
            self.statusBar().showMessage(
                f"Analysis cancelled ({cancelled} stud{'y' if cancelled == 1 else 'ies'})", 5000
            )
        self._update_progress()

    def analyse_remaining(self) -> None:
        """Queue cancelled and not-yet-analysed studies again."""
        for sid in self.worklist.study_ids_in_view_order():
            study = self.studies[sid]
            if study.status == "cancelled":
                self._set_status(study, "queued")
            if study.status == "queued" and sid not in self._pending:
                self._pending.append(sid)
        self._pump()

    def _set_status(self, study: Study, status: str, reason: str = "") -> None:
        study.status = status
        self.worklist.set_status(study.id, status, reason)
        self._update_progress()

    def _update_progress(self) -> None:
        if not hasattr(self, "progress"):
            return
        total = len(self.studies)
        waiting = sum(1 for s in self.studies.values() if s.status in ("queued", "analysing"))
        if total == 0 or waiting == 0:
            self.progress.hide()
            return
        self.progress.setMaximum(total)
        self.progress.setValue(total - waiting)
        self.progress.show()

    def is_idle(self) -> bool:
        """True when nothing is queued or running (scans included)."""
        return not self._pending and not any(kind != "display" for _, kind, _ in self._inflight.values())

    # ================================================================================ model
    def load_model_dialog(self) -> None:
        """File > Load model."""
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Load a cral-train checkpoint",
            self.last_folder(),
            "Checkpoints (*.safetensors);;All files (*)",
        )
        if path:
            self.load_model(path)

    def load_model(self, path: str | os.PathLike[str]) -> None:
        """Load a checkpoint on the inference thread; studies are re-analysed when it is ready."""
        self.model_status = "loading"
        self._set_model_label(f"Loading model {Path(path).name}...", busy=True)
        self.model_requested.emit(os.fspath(path))

    def _on_model_loaded(self, info: ModelInfo) -> None:
        if self._closing:
            return
        self._model_generation += 1
        # answers of the previous model still queued or running are not wanted any more
        self._inflight = {k: v for k, v in self._inflight.items() if v[1] != "analyse"}
        self.inference.cancel_through(self._next_id)
        self.model_info = info
        self.model_status = "ready"
        device = "CUDA" if info.device.startswith("cuda") else info.device.upper()
        self._set_model_label(f"Model: {info.name} on {device}")
        if info.backend and not info.backend.startswith(("torch", "pytorch")):
            self._set_model_label(f"Model: {info.name} on {device} ({info.backend})")
        self.model_label.setToolTip(info.path)
        self.state.update(map_region=info.region)
        for sid in self.worklist.study_ids_in_view_order():
            study = self.studies[sid]
            if study.status in ("viewed (no model)", "done", "analysing", "queued"):
                self._set_status(study, "queued")
                if sid not in self._pending:
                    self._pending.append(sid)
        self._refresh_shown_findings()
        self.model_changed.emit(info)
        self._pump()

    def _on_model_failed(self, reason: str) -> None:
        if self._closing:
            return
        if self.model_info is not None:  # keep using the previous model
            self.model_status = "ready"
            self._set_model_label(f"Model: {self.model_info.name} on {self.model_info.device.upper()}")
            QMessageBox.warning(self, "Model not loaded", f"The model could not be loaded:\n{reason}")
            return
        self.model_status = "failed"
        self._set_model_label(f"No trained model loaded (load failed: {reason})", error=True)
        self._no_model_finish()
        self.model_changed.emit(None)

    def _model_missing(self, message: str) -> None:
        if self._closing:
            return
        self.model_status = "missing"
        self._set_model_label(f"{message} - viewing only (File > Load model...)", error=True)
        self._no_model_finish()
        self.model_changed.emit(None)

    def _no_model_finish(self) -> None:
        for study in self.studies.values():
            if study.status == "queued" and study.thumbnail is not None:
                self._set_status(study, "viewed (no model)")
                self.study_finished.emit(study.id)
        self._refresh_shown_findings()
        self._pump()

    def _refresh_shown_findings(self) -> None:
        study = self.studies.get(self._shown_study)
        if study is not None and study.status != "error":
            self._show_findings(study)

    def _set_model_label(self, text: str, *, busy: bool = False, error: bool = False) -> None:
        colour = "#c62828" if error else ("#555" if busy else "#1b5e20")
        self.model_label.setText(f"<span style='color:{colour}'><b>{text}</b></span>")

    def show_model_card(self) -> None:
        """Help > About model: the checkpoint's card, always with the not-for-clinical-use notice."""
        dialog = QDialog(self)
        dialog.setWindowTitle("About model")
        browser = QTextBrowser()
        browser.setPlainText(model_card_text(self.model_info))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(dialog.reject)
        layout = QVBoxLayout(dialog)
        layout.addWidget(browser)
        layout.addWidget(buttons)
        dialog.resize(640, 520)
        self._model_card_dialog = dialog
        dialog.open()

    def _show_shortcuts(self) -> None:
        QMessageBox.information(self, "Mouse and keyboard", SHORTCUTS_TEXT)

    def _show_about(self) -> None:
        QMessageBox.about(
            self,
            f"About {APP_NAME}",
            f"{APP_NAME}: chest X-ray triage viewer with the CRAL attention model.\n\n"
            "Research demonstration only - NOT FOR CLINICAL USE.",
        )

    # ================================================================================ display
    def show_study(self, study_id: int) -> None:
        """Show a study (decoding it off the GUI thread when it is not cached)."""
        study = self.studies.get(study_id)
        self._shown_study = study_id if study is not None else -1
        if study is None:
            self._show_nothing()
            return
        self.study_shown.emit(study_id)
        if study.status == "error":
            self._show_error(study)
            return
        image = self._cache.get(study_id)
        if image is not None:
            self._cache.move_to_end(study_id)
            self._display(study, image)
            return
        self.state.update(image=None, prediction=None)
        self.image_view.placeholder.setText(f"Loading {study.name}...")
        self.image_view.placeholder.show()
        self._display_request = self._new_request(study_id, "display")
        self.decode_requested.emit(self._display_request, os.fspath(study.path))

    def _display(self, study: Study, image: XrayImage) -> None:
        window = image.window if image.window is not None else auto_window(image.pixels)
        keep = self.state.selected_map if study.prediction is not None else None
        # a VOI LUT is the default only when the file gives no window centre/width
        use_lut = image.voi_lut is not None and image.window is None
        self.state.update(
            image=image,
            window=window,
            orientation=Orientation(),
            prediction=study.prediction,
            selected_map=keep,
            use_voi_lut=use_lut,
        )
        self._refresh_presets(image)
        self._show_findings(study)

    def _show_findings(self, study: Study) -> None:
        if study.id != self._shown_study:
            return
        self.state.update(prediction=study.prediction)
        if study.prediction is None:
            self.state.update(selected_map=None)
            if self.model_status in ("missing", "failed"):
                status = "No trained model loaded: findings are not available."
            elif study.status == "cancelled":
                status = "Analysis cancelled (Analysis > Analyse remaining)."
            else:
                status = f"Waiting for the model ({study.status})..."
            self.findings_panel.set_findings([], status)
            return
        above = [f.display_name for f in study.findings if f.above_threshold]
        status = f"Triage score {study.score:.2f}. " + (
            f"Above threshold: {', '.join(above)}." if above else "No finding above its threshold."
        )
        if self.model_info is not None and self.model_info.thresholds is None:
            status = f"Triage score {study.score:.2f} (model has no thresholds)."
        if study.out_of_scope:
            status = (
                f"\u26a0 Out of scope ({study.out_of_scope}): these scores mean nothing for this study, "
                f"which is listed after the chest studies. {status}"
            )
        self.findings_panel.set_findings(
            study.findings, status, has_saliency=getattr(study.prediction, "saliency", None) is not None
        )

    def _show_error(self, study: Study) -> None:
        self.state.update(image=None, prediction=None, selected_map=None)
        self.image_view.placeholder.setText(f"{study.name}\ncannot be shown: {study.reason}")
        self.image_view.placeholder.show()
        self.findings_panel.set_findings([], f"Error: {study.reason}")

    def _show_nothing(self) -> None:
        self._shown_study = -1
        self.state.update(image=None, prediction=None, selected_map=None)
        self.findings_panel.set_findings([], "No study selected")

    def select_study(self, study_id: int) -> None:
        """Make a study current in the worklist (and show it)."""
        self.worklist.select_study(study_id)

    def _step_study(self, step: int) -> None:
        order = self.worklist.study_ids_in_view_order()
        if not order:
            return
        current = self.worklist.current_study()
        index = order.index(current) + step if current in order else 0
        self.worklist.select_study(order[max(0, min(index, len(order) - 1))])

    # ================================================================================ windowing
    def _orient(self, orientation: Orientation) -> None:
        self.state.update(orientation=orientation)

    def reset_view(self) -> None:
        """Original orientation, no inversion, the file's window, fitted."""
        image = self.state.image
        self.invert_action.setChecked(False)
        self.state.update(orientation=Orientation(), invert=False)
        if image is not None:
            self.state.update(
                window=image.window if image.window is not None else auto_window(image.pixels),
                use_voi_lut=image.voi_lut is not None and image.window is None,
            )
        self.image_view.fit()

    def auto_window(self) -> None:
        """Window from the 0.5-99.5 percentiles of the image."""
        if self.state.image is not None:
            self.state.update(window=auto_window(self.state.image.pixels), use_voi_lut=False)

    def _refresh_presets(self, image: XrayImage | None) -> None:
        self._presets = presets_for(image.window if image is not None else None)
        if image is not None and image.voi_lut is not None:
            label = "File VOI LUT" + (f" ({image.voi_lut.explanation})" if image.voi_lut.explanation else "")
            self._presets.insert(0, WindowPreset(label, "0", lambda _px: self.state.window))
        self._voi_preset = image is not None and image.voi_lut is not None
        self.preset_combo.blockSignals(True)
        self.preset_combo.clear()
        self.preset_combo.addItems([p.name for p in self._presets])
        self.preset_combo.blockSignals(False)
        for act in self._preset_actions:
            self.removeAction(act)
        self.preset_menu.clear()
        self._preset_actions = []
        for i, preset in enumerate(self._presets):
            act = self._action(preset.name, lambda _=False, n=i: self._apply_preset(n), preset.shortcut)
            self.preset_menu.addAction(act)
            self._preset_actions.append(act)

    def _apply_preset(self, index: int) -> None:
        if self.state.image is None or not 0 <= index < len(self._presets):
            return
        use_lut = self._voi_preset and index == 0
        self.state.update(window=self._presets[index].compute(self.state.image.pixels), use_voi_lut=use_lut)
        self.preset_combo.blockSignals(True)
        self.preset_combo.setCurrentIndex(index)
        self.preset_combo.blockSignals(False)

    # ================================================================================ shutdown
    def closeEvent(self, event: QCloseEvent) -> None:  # Qt override
        """Save settings, stop the workers (quit + wait), then close."""
        if not self._closing:
            self._closing = True
            self._save_settings()
            self._pending.clear()
            self._inflight.clear()
            self.shutdown_workers()
            self.image_view.close_view()
            self.findings_panel.close_panel()
            self.histogram.close_controls()
        super().closeEvent(event)

    def shutdown_workers(self) -> None:
        """Cancel queued requests and stop both threads, waiting for a running analysis to end."""
        for wt in (self.inference_thread, self.loader_thread):
            if not wt.stop():
                log.warning("worker thread %s did not stop in time", wt.thread.objectName())
        QApplication.processEvents()
