"""Qt fixtures: isolated settings, a window factory that always stops its threads, fake predictors."""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

import numpy as np
import pytest
from helpers.predictions import FakePrediction
from qt_support import close_main_window, open_main_window

if TYPE_CHECKING:
    from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

NAMES = tuple(f"Finding_{i}" for i in range(14))


class FakePredictor:
    """Deterministic stand-in for cral_model.Predictor: probabilities from the image mean.

    Class k's attention map is a bright spot at a different place for every k, so overlays differ.
    """

    device = "cpu"
    class_names = NAMES

    def __init__(self, delay: float = 0.0, fail_on_constant: bool = False, thresholds: bool = True) -> None:
        self.delay = delay
        self.fail_on_constant = fail_on_constant
        self.thresholds = np.full(14, 0.5, np.float32) if thresholds else None
        self.metadata = {"provenance": {"data": "fake"}}
        self.calls = 0
        self.threads: set[str] = set()
        self.release = threading.Event()

    def predict(self, image: np.ndarray) -> FakePrediction:
        self.calls += 1
        self.threads.add("main" if threading.current_thread() is threading.main_thread() else "worker")
        if self.delay:
            self.release.wait(self.delay)
        img = np.asarray(image, dtype=np.float32)
        if self.fail_on_constant and float(img.max()) == float(img.min()):
            raise RuntimeError("constant image")
        level = float(np.clip(img.mean() / max(float(img.max()), 1e-6), 0, 1))
        probs = np.clip(np.linspace(0.9, 0.05, 14) * (0.5 + level), 0, 1).astype(np.float32)
        att = np.zeros((14, 4, 4), np.float32)
        for k in range(14):
            att[k, (k // 4) % 4, k % 4] = 1.0
        return FakePrediction(NAMES, probs, att, att.max(axis=0), self.thresholds)


@pytest.fixture(autouse=True)
def _isolated_qsettings(tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test writes to the real user's settings."""
    from PySide6.QtCore import QSettings

    folder = tmp_path_factory.mktemp("qsettings")
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, str(folder))
        QSettings.setPath(fmt, QSettings.Scope.SystemScope, str(folder))


@pytest.fixture
def settings(tmp_path: Path):
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "viewer.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def make_window(qtbot, settings):
    """``make_window(model_path=..., predictor_factory=...)`` -> shown MainWindow; closed at teardown."""
    windows = []

    def factory(size: tuple[int, int] | None = (1200, 800), **kwargs):
        kwargs.setdefault("settings", settings)
        windows.append(open_main_window(qtbot, size=size, **kwargs))
        return windows[-1]

    yield factory
    for window in windows:
        close_main_window(window)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init resnet18 CRAL checkpoint at 64 px (written once per session)."""
    cral_model = pytest.importorskip("cral_model")
    if not hasattr(cral_model, "save_checkpoint"):
        pytest.skip("cral_model.save_checkpoint not available yet")
    from helpers.checkpoints import write_tiny_checkpoint

    return write_tiny_checkpoint(
        tmp_path_factory.mktemp("model") / "tiny.safetensors",
        provenance={"data": "random initialisation (test)"},
        metrics={"note": "untrained"},
        model_card="# Tiny test model\nRandom weights. Not for clinical use.\n",
    )


def png_folder(root: Path, n: int = 3, size: int = 48) -> Path:
    """A folder with ``n`` grey PNGs (different brightness), a text file and a nested sub-folder."""
    from PIL import Image

    folder = root / "studies"
    (folder / "nested").mkdir(parents=True)
    for i in range(n):
        arr = np.full((size, size + 8), 40 + 60 * i, np.uint8)
        arr[size // 4 : size // 2, size // 4 : size // 2] = 250
        target = folder / "nested" if i == n - 1 else folder
        Image.fromarray(arr).save(target / f"img_{i}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture
def fake_predictor_cls():
    """The :class:`FakePredictor` class (tests build instances with their own delays)."""
    return FakePredictor


@pytest.fixture
def studies_folder(tmp_path: Path) -> Path:
    """A folder of 3 small PNGs (one nested) plus a text file."""
    return png_folder(tmp_path)
