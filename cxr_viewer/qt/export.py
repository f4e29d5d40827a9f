"""File > Export results (Ctrl+E): the current study or the whole worklist as DICOM SR + SC, CSV and a
one-page PNG/PDF summary, written on a worker thread (`cxr_viewer.results.export` does the work).

`ExportControls` is built once by the main window (``window.export``, the slot of ``export_action`` in
`cxr_viewer.qt.actions.MENUS`). It opens `ExportDialog`; on OK it gathers the studies on the GUI thread
(paths, predictions, images already in the cache: plain data) and hands them to `ExportWorker`, a
QObject on its own QThread, which re-reads images not in the cache, hashes the checkpoint, renders and
writes. The answer comes back as an `ExportReport`: a message box lists how many files were written and
one line per study that could not be exported (a PNG has no DICOM study, a study not analysed...).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QThread, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
)

from cxr_viewer.core.pipeline import StudyStatus
from cxr_viewer.results.export import ExportFormat, ExportItem, ExportReport, export_results

if TYPE_CHECKING:
    from PySide6.QtWidgets import QWidget

    from cxr_viewer.inference import ModelInfo
    from cxr_viewer.qt.main_window import MainWindow

__all__ = ["ExportControls", "ExportDialog", "ExportJob", "ExportWorker"]

_FORMAT_LABELS = (
    (ExportFormat.DICOM, "DICOM SR + Secondary Capture (DICOM studies only)"),
    (ExportFormat.CSV, "CSV (cxr-triage columns)"),
    (ExportFormat.SUMMARY_PNG, "One-page summary, PNG"),
    (ExportFormat.SUMMARY_PDF, "One-page summary, PDF"),
)


@dataclass(frozen=True)
class ExportJob:
    """What the worker is asked to do (plain data, made on the GUI thread)."""

    items: tuple[ExportItem, ...]
    folder: Path
    formats: frozenset[ExportFormat]
    model: ModelInfo | None


class ExportWorker(QObject):
    """Runs exports on its own thread: slot `run`, signals `progressed(done, total)`,
    `finished(ExportReport)` and `failed(message)` (the folder itself could not be created)."""

    progressed = Signal(int, int)
    finished = Signal(object)
    failed = Signal(str)

    @Slot(object)
    def run(self, job: ExportJob) -> None:
        """Export one job (blocking this worker's thread, never the GUI's)."""
        from cxr_viewer.inference import model_provenance

        try:
            algorithm = model_provenance(job.model) if job.model is not None else None
            report = export_results(
                job.items,
                job.folder,
                job.formats,
                algorithm,
                class_names=job.model.class_names if job.model is not None else (),
                map_region=job.model.region if job.model is not None else (0.0, 0.0, 1.0, 1.0),
                on_progress=self.progressed.emit,
            )
        except OSError as exc:
            self.failed.emit(f"cannot write to {job.folder.name or job.folder}: {exc.strerror or exc}")
            return
        except Exception as exc:  # the worker thread must survive anything an export does
            self.failed.emit(f"export failed: {type(exc).__name__}")
            return
        self.finished.emit(report)


class ExportDialog(QDialog):
    """What to export (the current study or the worklist), as what, and where."""

    def __init__(self, parent: QWidget | None, folder: str, has_current: bool, n_studies: int) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export results")
        layout = QVBoxLayout(self)
        scope = QGroupBox("Studies")
        scope_layout = QVBoxLayout(scope)
        self.current_radio = QRadioButton("Current study")
        self.worklist_radio = QRadioButton(f"Whole worklist ({n_studies} studies)")
        self.current_radio.setEnabled(has_current)
        (self.current_radio if has_current else self.worklist_radio).setChecked(True)
        scope_layout.addWidget(self.current_radio)
        scope_layout.addWidget(self.worklist_radio)
        layout.addWidget(scope)
        formats = QGroupBox("Write")
        formats_layout = QVBoxLayout(formats)
        self.format_boxes: dict[ExportFormat, QCheckBox] = {}
        for fmt, label in _FORMAT_LABELS:
            box = QCheckBox(label)
            box.setChecked(True)
            formats_layout.addWidget(box)
            self.format_boxes[fmt] = box
        layout.addWidget(formats)
        row = QHBoxLayout()
        row.addWidget(QLabel("Folder:"))
        self.folder_edit = QLineEdit(folder)
        row.addWidget(self.folder_edit, 1)
        browse = QPushButton("Browse...")
        browse.clicked.connect(self._browse)
        row.addWidget(browse)
        layout.addLayout(row)
        layout.addWidget(
            QLabel("Research use only - not for diagnosis. Patient data goes into the DICOM files.")
        )
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)

    def _browse(self) -> None:
        chosen = QFileDialog.getExistingDirectory(self, "Export results to", self.folder_edit.text())
        if chosen:
            self.folder_edit.setText(chosen)

    def formats(self) -> frozenset[ExportFormat]:
        """The ticked formats."""
        return frozenset(f for f, box in self.format_boxes.items() if box.isChecked())

    def whole_worklist(self) -> bool:
        """True for the whole worklist, False for the current study."""
        return self.worklist_radio.isChecked()


class ExportControls(QObject):
    """The window's export: the dialog, the worker thread, the answer (``window.export``)."""

    #: (job) to the worker
    requested = Signal(object)
    #: the last export's report (also kept as `last_report`), for the window and tests
    done = Signal(object)

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.dialog: ExportDialog | None = None
        self.message_box: QMessageBox | None = None
        self.last_report: ExportReport | None = None
        self.busy = False
        self.worker_thread = QThread()
        self.worker_thread.setObjectName("cxr-export")
        self.worker = ExportWorker()
        self.worker.moveToThread(self.worker_thread)
        self.requested.connect(self.worker.run)
        self.worker.progressed.connect(self._progressed)
        self.worker.finished.connect(self._finished)
        self.worker.failed.connect(self._failed)
        self.worker_thread.start()

    # ------------------------------------------------------------------------------ the dialog
    def export_dialog(self) -> None:
        """File > Export results: ask what and where (non-blocking dialog), then `export`."""
        if self.busy:
            self.window.statusBar().showMessage("An export is already running", 5000)
            return
        folder = str(self.window.settings.value("export/folder", "") or "") or os.path.join(
            self.window.last_folder() or os.path.expanduser("~"), "cxr_results"
        )
        shown = self.window.pipeline.shown
        self.dialog = ExportDialog(
            self.window, folder, shown in self.window.studies, len(self.window.studies)
        )
        self.dialog.accepted.connect(self._accepted)
        self.dialog.open()

    def _accepted(self) -> None:
        dialog = self.dialog
        if dialog is None:
            return
        folder = dialog.folder_edit.text().strip()
        if not folder:
            self._show("Export results", "No folder chosen: nothing exported.")
            return
        self.window.settings.setValue("export/folder", folder)
        self.export(Path(folder), dialog.formats(), dialog.whole_worklist())

    def export(self, folder: Path, formats: frozenset[ExportFormat], whole_worklist: bool) -> bool:
        """Start an export on the worker thread; False (with a message) when there is nothing to do."""
        if self.busy:
            return False
        studies = self.window.studies
        if whole_worklist:
            chosen = list(studies.values())
        else:
            current = studies.get(self.window.pipeline.shown)
            chosen = [current] if current is not None else []
        if not chosen or not formats:
            self._show("Export results", "Nothing to export (no study, or no format ticked).")
            return False
        items = tuple(self._item(s) for s in chosen)
        self.busy = True
        self.window.statusBar().showMessage(f"Exporting {len(items)} studies...")
        self.requested.emit(ExportJob(items, folder, frozenset(formats), self.window.model_info))
        return True

    def _item(self, study) -> ExportItem:
        pred = study.prediction if study.status is StudyStatus.DONE else None
        reason = "" if pred is not None else (study.reason or f"not analysed ({study.status})")
        return ExportItem(study.path, pred, self.window.pipeline.cached_image(study.id), reason)

    # ------------------------------------------------------------------------------ answers
    def _progressed(self, done: int, total: int) -> None:
        self.window.statusBar().showMessage(f"Exporting results: {done} of {total} studies...")

    def _finished(self, report: ExportReport) -> None:
        self.busy = False
        self.last_report = report
        self.window.statusBar().showMessage(
            f"Exported: {len(report.written)} files, {len(report.failures)} not exported", 10000
        )
        self._show("Export results", report.message(), warn=bool(report.failures))
        self.done.emit(report)

    def _failed(self, message: str) -> None:
        self.busy = False
        self.last_report = ExportReport((), (("(export)", message),), 0)
        self._show("Export results", message, warn=True)
        self.done.emit(self.last_report)

    def _show(self, title: str, text: str, warn: bool = False) -> None:
        icon = QMessageBox.Icon.Warning if warn else QMessageBox.Icon.Information
        self.message_box = QMessageBox(icon, title, text, QMessageBox.StandardButton.Ok, self.window)
        self.message_box.open()  # not exec(): the window stays live (and tests are not blocked)

    def close(self) -> None:
        """Stop the worker thread (waits for a running export to finish)."""
        if self.worker_thread.isRunning():
            self.worker_thread.quit()
            self.worker_thread.wait()
