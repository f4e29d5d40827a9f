"""The status bar: pixel readout, zoom, the newest measurement, analysis progress, the model's state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar

if TYPE_CHECKING:
    from cxr_viewer.inference import ModelInfo
    from cxr_viewer.qt.widgets.image_view import ImageView

__all__ = ["WindowStatusBar", "model_text"]


def model_text(info: ModelInfo) -> str:
    """``"Model: cral_demo.safetensors on CPU (onnxruntime-fp32)"`` (no backend for plain PyTorch)."""
    device = "CUDA" if info.device.startswith("cuda") else info.device.upper()
    backend = (
        f" ({info.backend})" if info.backend and not info.backend.startswith(("torch", "pytorch")) else ""
    )
    return f"Model: {info.name} on {device}{backend}"


class WindowStatusBar:
    """Fills a ``QStatusBar`` with its labels and keeps them current."""

    def __init__(self, bar: QStatusBar, image_view: ImageView) -> None:
        self.bar = bar
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
        image_view.pixel_info_changed.connect(self.pixel_label.setText)
        # "Length: 225.4 mm", "Angle: 32.0°", "Cardiothoracic ratio: CTR 0.48 (...)", "ROI: mean ..."
        image_view.measurement_changed.connect(self.measure_label.setText)
        self.zoom_label = QLabel("")
        self.zoom_label.setToolTip("Magnification: 100 % = one image pixel per screen pixel (1:1)")
        bar.addPermanentWidget(self.zoom_label)
        image_view.zoom_changed.connect(lambda percent: self.zoom_label.setText(f"Zoom {percent:.0f} %"))

    def set_model(
        self, text: str, *, busy: bool = False, error: bool = False, tooltip: str | None = None
    ) -> None:
        """The model label: red for an error, grey while loading, green when a model is ready."""
        colour = "#c62828" if error else ("#555" if busy else "#1b5e20")
        self.model_label.setText(f"<span style='color:{colour}'><b>{text}</b></span>")
        if tooltip is not None:
            self.model_label.setToolTip(tooltip)

    def show_progress(self, waiting: int, total: int) -> None:
        """``analysed n / total`` while studies wait for the model; hidden otherwise."""
        if total == 0 or waiting == 0:
            self.progress.hide()
            return
        self.progress.setMaximum(total)
        self.progress.setValue(total - waiting)
        self.progress.show()

    def message(self, text: str, timeout_ms: int) -> None:
        """A passing message on the left."""
        self.bar.showMessage(text, timeout_ms)
