"""The window's small dialogs: the model card, mouse and keyboard help, about."""

from __future__ import annotations

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QMessageBox, QTextBrowser, QVBoxLayout, QWidget

from cxr_viewer import APP_NAME
from cxr_viewer.inference import ModelInfo, model_card_text

__all__ = ["SHORTCUTS_TEXT", "model_card_dialog", "show_about", "show_shortcuts"]

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
