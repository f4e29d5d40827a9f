"""File > Open from PACS: a small dialog that searches a DICOMweb server and retrieves one study.

The network work is `cxr_viewer.pacs` (QIDO-RS search, WADO-RS retrieve), run by `PacsWorker`, a
QObject on its own QThread; the dialog only collects the query, lists the studies found and shows the
progress (``done of total`` instances). A retrieved study is written into a folder of its own under
the cache folder (``<cache>/pacs/<StudyInstanceUID>/``) and handed to the window's ``open_paths``, so it
lands in the worklist exactly like a dropped folder (same readers, same budgets, grouped by study).

Patient names and IDs are shown in the dialog's table only; status lines and messages name the number
of studies or instances, never a patient.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from cxr_viewer.pacs import PacsConfig, PacsError, StudyMatch, StudyQuery, retrieve_study, search_studies

if TYPE_CHECKING:
    from cxr_viewer.qt.main_window import MainWindow

__all__ = ["PacsControls", "PacsDialog", "PacsWorker"]

DEFAULT_URL = "http://127.0.0.1:8042/dicom-web"


def pacs_cache_folder() -> Path:
    """Where retrieved studies are written: ``$CXR_VIEWER_PACS_CACHE`` or ``<tmp>/cxr-viewer-pacs``."""
    return Path(os.environ.get("CXR_VIEWER_PACS_CACHE") or Path(tempfile.gettempdir()) / "cxr-viewer-pacs")


class PacsWorker(QObject):
    """DICOMweb calls on their own thread. Slots `search` and `retrieve`; signals `found(list)`,
    `progressed(done, total)`, `retrieved(folder, files)` and `failed(message)`."""

    found = Signal(object)
    progressed = Signal(int, int)
    retrieved = Signal(str, object)
    failed = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.cancel_requested = False

    @Slot(object, object)
    def search(self, config: PacsConfig, query: StudyQuery) -> None:
        """QIDO-RS search; answers `found` or `failed`."""
        try:
            self.found.emit(search_studies(config, query))
        except (PacsError, ValueError) as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # the thread must survive whatever a server answers
            self.failed.emit(f"search failed: {type(exc).__name__}")

    @Slot(object, str, str)
    def retrieve(self, config: PacsConfig, study_uid: str, folder: str) -> None:
        """WADO-RS retrieve of one study into ``folder``; answers `retrieved` or `failed`."""
        self.cancel_requested = False
        try:
            files = retrieve_study(
                config,
                study_uid,
                folder,
                on_progress=self.progressed.emit,
                cancelled=lambda: self.cancel_requested,
            )
        except PacsError as exc:
            self.failed.emit(str(exc))
            return
        except OSError as exc:
            self.failed.emit(f"cannot write the retrieved study: {exc.strerror or type(exc).__name__}")
            return
        except Exception as exc:
            self.failed.emit(f"retrieve failed: {type(exc).__name__}")
            return
        self.retrieved.emit(folder, files)


class PacsDialog(QDialog):
    """Search fields, the studies found, Retrieve with progress. Non-modal; one per window."""

    search_requested = Signal(object, object)
    retrieve_requested = Signal(object, str, str)

    def __init__(self, parent: MainWindow, url: str) -> None:
        super().__init__(parent)
        self.setWindowTitle("Open from PACS (DICOMweb)")
        self.resize(760, 460)
        self.matches: list[StudyMatch] = []
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.url_edit = QLineEdit(url)
        self.patient_id_edit = QLineEdit()
        self.patient_name_edit = QLineEdit()
        self.patient_name_edit.setPlaceholderText("e.g. Doe^J* (fuzzy where the server supports it)")
        self.date_from_edit = QLineEdit()
        self.date_from_edit.setPlaceholderText("YYYYMMDD")
        self.date_to_edit = QLineEdit()
        self.date_to_edit.setPlaceholderText("YYYYMMDD")
        self.modality_edit = QLineEdit()
        self.modality_edit.setPlaceholderText("CR, DX...")
        form.addRow("DICOMweb URL:", self.url_edit)
        form.addRow("Patient ID:", self.patient_id_edit)
        form.addRow("Patient name:", self.patient_name_edit)
        dates = QHBoxLayout()
        dates.addWidget(self.date_from_edit)
        dates.addWidget(QLabel("to"))
        dates.addWidget(self.date_to_edit)
        form.addRow("Study date:", dates)
        form.addRow("Modality:", self.modality_edit)
        layout.addLayout(form)
        self.search_button = QPushButton("&Search")
        self.search_button.clicked.connect(self.search)
        layout.addWidget(self.search_button)
        self.table = QTableWidget(0, 6)
        self.table.setHorizontalHeaderLabels(["Patient", "ID", "Date", "Modality", "Description", "Images"])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.doubleClicked.connect(lambda _index: self.retrieve())
        layout.addWidget(self.table, 1)
        self.progress = QProgressBar()
        self.progress.hide()
        layout.addWidget(self.progress)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        layout.addWidget(self.status_label)
        buttons = QHBoxLayout()
        self.retrieve_button = QPushButton("&Retrieve and open")
        self.retrieve_button.setEnabled(False)
        self.retrieve_button.clicked.connect(self.retrieve)
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.close)
        buttons.addStretch(1)
        buttons.addWidget(self.retrieve_button)
        buttons.addWidget(self.close_button)
        layout.addLayout(buttons)
        self.table.itemSelectionChanged.connect(self._selection_changed)

    def config(self) -> PacsConfig:
        """The server from the URL field."""
        return PacsConfig(self.url_edit.text().strip())

    def query(self) -> StudyQuery:
        """The search from the fields."""
        return StudyQuery(
            patient_id=self.patient_id_edit.text(),
            patient_name=self.patient_name_edit.text(),
            date_from=self.date_from_edit.text(),
            date_to=self.date_to_edit.text(),
            modality=self.modality_edit.text(),
        )

    def search(self) -> None:
        """Send the query to the worker (the dialog waits without blocking)."""
        self._busy(True, "Searching...")
        self.search_requested.emit(self.config(), self.query())

    def retrieve(self) -> None:
        """Retrieve the selected study (written under `pacs_cache_folder`)."""
        row = self.table.currentRow()
        if not 0 <= row < len(self.matches):
            return
        uid = self.matches[row].study_uid
        safe = "".join(ch for ch in uid if ch.isdigit() or ch == ".")[:64] or "study"
        folder = pacs_cache_folder() / safe
        self.progress.setRange(0, 0)
        self.progress.show()
        self._busy(True, "Retrieving...")
        self.retrieve_requested.emit(self.config(), uid, str(folder))

    def show_matches(self, matches: list[StudyMatch]) -> None:
        """Fill the table with a search's answer."""
        self.matches = list(matches)
        self.table.setRowCount(len(self.matches))
        for r, m in enumerate(self.matches):
            cells = [
                m.patient_name.replace("^", " "),
                m.patient_id,
                m.study_date,
                ", ".join(m.modalities),
                m.description,
                "" if m.instances is None else str(m.instances),
            ]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                self.table.setItem(r, c, item)
        if self.matches:
            self.table.selectRow(0)
        self._busy(False, f"{len(self.matches)} studies found" + ("" if self.matches else " (none match)"))

    def show_progress(self, done: int, total: int) -> None:
        """``done`` of ``total`` instances retrieved."""
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.status_label.setText(f"Retrieving: {done} of {total} images")

    def show_retrieved(self, n_files: int) -> None:
        """The retrieve finished and the study went to the worklist."""
        self.progress.hide()
        self._busy(False, f"Retrieved {n_files} images: opened in the worklist")

    def show_failure(self, message: str) -> None:
        """A search or retrieve failed (one line, no patient data)."""
        self.progress.hide()
        self._busy(False, message)

    def _busy(self, busy: bool, text: str) -> None:
        self.status_label.setText(text)
        self.search_button.setEnabled(not busy)
        self.retrieve_button.setEnabled(not busy and self.table.currentRow() >= 0)

    def _selection_changed(self) -> None:
        self.retrieve_button.setEnabled(self.search_button.isEnabled() and self.table.currentRow() >= 0)


class PacsControls(QObject):
    """The window's Open from PACS (``window.pacs``): the dialog, the worker thread, the hand-over to
    the worklist."""

    #: the files of a retrieved study, just handed to ``window.open_paths`` (for tests)
    opened = Signal(object)

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.dialog: PacsDialog | None = None
        self.worker_thread = QThread()
        self.worker_thread.setObjectName("cxr-pacs")
        self.worker = PacsWorker()
        self.worker.moveToThread(self.worker_thread)
        self.worker_thread.start()

    def open_dialog(self) -> None:
        """File > Open from PACS: show the dialog (one per window, kept between uses)."""
        if self.dialog is None:
            url = str(self.window.settings.value("pacs/url", "") or "") or DEFAULT_URL
            dialog = PacsDialog(self.window, url)
            dialog.search_requested.connect(self.worker.search)
            dialog.retrieve_requested.connect(self.worker.retrieve)
            self.worker.found.connect(dialog.show_matches)
            self.worker.progressed.connect(dialog.show_progress)
            self.worker.failed.connect(dialog.show_failure)
            self.worker.retrieved.connect(self._retrieved)
            dialog.url_edit.editingFinished.connect(
                lambda: self.window.settings.setValue("pacs/url", dialog.url_edit.text().strip())
            )
            self.dialog = dialog
        self.dialog.show()
        self.dialog.raise_()

    def _retrieved(self, folder: str, files: list[Path]) -> None:
        if self.dialog is not None:
            self.dialog.show_retrieved(len(files))
        if files:
            self.window.open_paths([folder])  # like a dropped folder
        self.opened.emit(list(files))

    def close(self) -> None:
        """Stop the worker thread (a running retrieve stops before its next instance)."""
        self.worker.cancel_requested = True
        if self.dialog is not None:
            self.dialog.close()
        if self.worker_thread.isRunning():
            self.worker_thread.quit()
            self.worker_thread.wait()
