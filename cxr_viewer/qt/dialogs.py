"""The window's small dialogs: the model card, mouse and keyboard help, about."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QMessageBox,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from cxr_viewer import APP_NAME
from cxr_viewer.inference import ModelInfo, model_card_text

__all__ = [
    "SHORTCUTS_TEXT",
    "ask_checkpoint",
    "ask_files",
    "ask_folder",
    "model_card_dialog",
    "show_about",
    "show_shortcuts",
]

_IMAGE_FILTER = "Images (*.dcm *.dicom *.png *.jpg *.jpeg *.tif *.tiff *.bmp);;All files (*)"

SHORTCUTS_TEXT = """Mouse on the image
  Left drag: what the tool says: window/level (W; right = wider, up = brighter), pan (P),
    length (M), angle (G: drag one ray to the vertex, then drag or click the other end),
    cardiothoracic ratio (C: drag the heart's width, then the thorax's), elliptical ROI (E)
  Middle drag: pan    Right drag: zoom about where it starts (up = in, 100 px = 2x)
  Wheel: zoom    Double click: fit
  Histogram below the image (stored values): drag the shaded window or its edges

Keys
  W / P / M / G / C / E: window-level, pan, length, angle, CTR, ellipse ROI tool
  Backspace: delete the measurement under the mouse (else the newest)    Esc: clear all of the image's
  F: fit    Ctrl+1: actual pixels (1:1)    + / -: zoom    Ctrl+0: reset view
  I: invert    R / Shift+R: rotate    H / V: flip
  A: auto window    0: the file's VOI LUT, else its window    1: the file's window
  2-5: automatic windows    6 / 7 / 8: lung / mediastinum / bone    Ctrl+Shift+S: save window as preset
  PageDown / PageUp (or Ctrl+Down / Ctrl+Up): next / previous study
  On the image, Down / Right and Up / Left (anywhere: Ctrl+Right / Ctrl+Left): next / previous image
  (a study's images and its priors); in the worklist the arrows move row by row
  Shift+P: compare with the prior study (side by side, zoom and pan linked)    Ctrl+I: DICOM tags
  Worklist: Del remove study    Ctrl+U mark read/unread (unread is bold)    Ctrl+Shift+F flagged only
            Ctrl+F search by name (file name, patient number, study)
  O: attention map on/off    Ctrl+.: cancel analysis    Ctrl+Return: analyse remaining
  Ctrl+O: open files    Ctrl+Shift+O: open folder    Ctrl+Shift+P: open from PACS    Ctrl+L: load model
  Ctrl+E: export results (DICOM SR + secondary capture)    F1: this list    Ctrl+Q: quit

Files and folders can be dropped anywhere on the window."""


def ask_files(parent: QWidget, folder: str) -> list[str]:
    """File > Open files: the chosen files (empty when cancelled)."""
    files, _ = QFileDialog.getOpenFileNames(parent, "Open chest X-rays", folder, _IMAGE_FILTER)
    return list(files)


def ask_folder(parent: QWidget, folder: str) -> str:
    """File > Open folder: the chosen folder ("" when cancelled)."""
    return QFileDialog.getExistingDirectory(parent, "Open a folder of chest X-rays", folder)


def ask_checkpoint(parent: QWidget, folder: str) -> str:
    """File > Load model: the chosen checkpoint ("" when cancelled)."""
    filters = "Checkpoints (*.safetensors);;All files (*)"
    path, _ = QFileDialog.getOpenFileName(parent, "Load a cral-train checkpoint", folder, filters)
    return path


def model_card_dialog(parent: QWidget, info: ModelInfo | None) -> QDialog:
    """Help > About model: the checkpoint's card, always with the not-for-clinical-use notice (opened
    non-modally; the caller keeps a reference)."""
    dialog = QDialog(parent)
    dialog.setWindowTitle("About model")
    browser = QTextBrowser()
    browser.setPlainText(model_card_text(info))
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
    buttons.rejected.connect(dialog.reject)
    layout = QVBoxLayout(dialog)
    layout.addWidget(browser)
    layout.addWidget(buttons)
    dialog.resize(640, 520)
    dialog.open()
    return dialog


def show_shortcuts(parent: QWidget) -> None:
    """Help > Mouse and keyboard."""
    QMessageBox.information(parent, "Mouse and keyboard", SHORTCUTS_TEXT)


def show_about(parent: QWidget) -> None:
    """Help > About."""
    QMessageBox.about(
        parent,
        f"About {APP_NAME}",
        f"{APP_NAME}: chest X-ray triage viewer with the CRAL attention model.\n\n"
        "Research demonstration only - NOT FOR CLINICAL USE.",
    )
