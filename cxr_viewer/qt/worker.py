"""Background workers: file scanning/decoding and model inference, each a QObject on its own QThread.

Both follow one pattern: the GUI thread sends requests through *queued* signals (numpy arrays and
paths, never widgets), each with an integer request id; the worker answers with signals carrying the
same id. The GUI keeps the ids it still cares about and drops every other answer (stale results).
:meth:`cancel_through` lets the GUI skip requests that are still waiting in the worker's queue.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import traceback
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QObject, QThread, Signal, Slot

from cxr_viewer.core.image import XrayImage
from cxr_viewer.core.io import ImageLoadError, iter_study_files, load_image
from cxr_viewer.core.reasons import message_of, short_reason
from cxr_viewer.core.windowing import apply_window, auto_window
from cxr_viewer.inference import Predictor, describe, load_predictor, model_input

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "InferenceWorker",
    "LoaderWorker",
    "WorkerThread",
    "hold_model_loading",
    "make_thumbnail",
    "release_model_loading",
]

log = logging.getLogger(__name__)

THUMBNAIL_SIZE = 64

# Model loading imports torch (about a second of mostly GIL-holding Python). The app holds it back until
# its window has been painted, so that the import never competes with building and showing the window;
# the timeout makes sure a missed release can only delay the model, never block it.
_model_gate = threading.Event()
_model_gate.set()
_GATE_TIMEOUT_S = 5.0


#: nice increment for the decode and inference threads (Linux: per thread), so that on a busy machine
#: the GUI thread wins the CPU when it has work; 0 turns it off.
BACKGROUND_NICE = 10


def _lower_this_thread() -> None:
    """Give the calling (worker) thread a lower scheduling priority, where the OS allows it per thread.

    Only Linux has per-thread nice values (``setpriority`` on the thread id); elsewhere this does nothing.
    Threads that a library starts from this thread later (ONNX Runtime's or OpenMP's pools) inherit it.
    """
    if BACKGROUND_NICE <= 0 or not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + BACKGROUND_NICE))
    except (OSError, AttributeError):  # not permitted, or no such call: stay at the normal priority
        pass


def hold_model_loading() -> None:
    """Make :meth:`InferenceWorker.load_model` wait until :func:`release_model_loading` (or 5 s)."""
    _model_gate.clear()


def release_model_loading() -> None:
    """Let held model loading go on (call once the window is shown)."""
    _model_gate.set()


def make_thumbnail(
    pixels: np.ndarray, window: tuple[float, float] | None, size: int = THUMBNAIL_SIZE
) -> np.ndarray:
    """A small uint8 (h, w) picture of an image for the worklist (longest side ``size``)."""
    h, w = pixels.shape
    step = max(1, int(max(h, w) // (size * 2)))
    small = np.asarray(pixels[::step, ::step])
    center, width = window if window is not None else auto_window(small)
    disp = apply_window(small, center, width)
    import cv2

    scale = size / max(disp.shape)
    out_w, out_h = max(1, round(disp.shape[1] * scale)), max(1, round(disp.shape[0] * scale))
    disp = cv2.resize(disp, (out_w, out_h), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(np.clip(disp * 255.0 + 0.5, 0, 255).astype(np.uint8))


class _Cancellable(QObject):
    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._cancelled_through = 0

    def cancel_through(self, request_id: int) -> None:
        """Skip every queued request with an id <= ``request_id`` (callable from any thread)."""
        with self._lock:
            self._cancelled_through = max(self._cancelled_through, int(request_id))

    def _is_cancelled(self, request_id: int) -> bool:
        with self._lock:
            return request_id <= self._cancelled_through


class LoaderWorker(_Cancellable):
    """Walks dropped paths and decodes files, off the GUI thread."""

    def __init__(self) -> None:
        super().__init__()
        self._lowered = False

    #: list[FoundFile] for one scan request (id, files)
    scanned = Signal(int, object)
    #: request id, XrayImage, thumbnail uint8 (h, w)
    decoded = Signal(int, object, object)
    #: request id, short reason (no patient data)
    decode_failed = Signal(int, str)

    @Slot(int, object)
    def scan(self, request_id: int, paths: list[str]) -> None:
        """Find candidate image files under ``paths`` (files and folders, recursive)."""
        try:
            found = list(iter_study_files(paths))
        except Exception as exc:  # a vanished folder, permissions... never crash the thread
            log.warning("scan failed: %s", type(exc).__name__)
            found = []
        self.scanned.emit(request_id, found)

    @Slot(int, str)
    def decode(self, request_id: int, path: str) -> None:
        """Read one file and make its thumbnail."""
        if self._is_cancelled(request_id):
            return
        if not self._lowered:
            self._lowered = True
            _lower_this_thread()
        try:
            image = load_image(path)
            thumb = make_thumbnail(image.pixels, image.window)
        except ImageLoadError as exc:
            self.decode_failed.emit(request_id, str(exc))
            return
        except Exception as exc:  # pragma: no cover - load_image already converts decoder errors
            self.decode_failed.emit(request_id, short_reason(exc, "unexpected error"))
            return
        self.decoded.emit(request_id, image, thumb)


class InferenceWorker(_Cancellable):
    """Loads the model once (on its own thread) and runs it on one image per request.

    Args:
        predictor_factory: ``factory(path) -> Predictor``; defaults to
            :func:`cxr_viewer.inference.load_predictor` (which imports torch, lazily, in this thread).
        cpu_threads: torch intra-op threads on CPU: a number, ``"auto"`` (all cores but one, so the GUI
            thread keeps a core; what the app uses), or None to leave torch's process-wide setting alone
            (library use, tests).
    """

    #: ModelInfo of the loaded model
    model_loaded = Signal(object)
    #: reason the model could not be loaded
    model_failed = Signal(str)
    #: no checkpoint was given and there is no bundled default (message for the user)
    model_missing = Signal(str)
    #: request id (analysis of that request begins)
    started = Signal(int)
    #: request id, prediction (a `cxr_viewer.inference.PredictionLike`, e.g. ``cral_model.Prediction``)
    result_ready = Signal(int, object)
    #: request id, reason
    failed = Signal(int, str)
    #: True while the model is computing
    busy = Signal(bool)

    def __init__(
        self,
        predictor_factory: Callable[[str], Predictor] | None = None,
        cpu_threads: int | str | None = None,
    ) -> None:
        super().__init__()
        self._factory = predictor_factory or load_predictor
        self._cpu_threads = cpu_threads
        self._predictor: Predictor | None = None
        self._lowered = False

    @Slot(str)
    def load_model(self, path: str) -> None:
        """Load (or replace) the model from a checkpoint path; ``""`` means the bundled default.

        The default is looked up here, on the worker thread, because finding it imports ``cral_model``
        (and so torch), which would otherwise delay the window.
        """
        _model_gate.wait(_GATE_TIMEOUT_S)
        if not self._lowered:
            self._lowered = True
            _lower_this_thread()
        if not path:
            try:
                from cxr_viewer.inference import default_model_path

                default = default_model_path()
            except Exception as exc:  # a broken install should still let people view images
                self.model_missing.emit(
                    f"No trained model loaded ({type(exc).__name__} while looking for it)"
                )
                return
            if default is None:
                self.model_missing.emit("No trained model loaded")
                return
            path = str(default)
        try:
            # before the predictor exists: a fast-path (ONNX Runtime) session takes its thread count from
            # torch's setting when it is created
            self._limit_cpu_threads(None)
            predictor = self._factory(path)
            self._limit_cpu_threads(predictor)
        except Exception as exc:
            reason = message_of(exc)
            log.warning("model load failed: %s", reason)
            self.model_failed.emit(reason)
            return
        self._predictor = predictor
        self.model_loaded.emit(describe(predictor, path))

    def _limit_cpu_threads(self, predictor: Predictor | None) -> None:
        if self._cpu_threads is None or (predictor is not None and str(predictor.device) != "cpu"):
            return
        try:
            import torch
        except ImportError:  # a fake predictor in tests
            return
        auto = max(1, (os.cpu_count() or 2) - 1)
        n = auto if self._cpu_threads == "auto" else int(self._cpu_threads)
        torch.set_num_threads(n)

    @Slot(int, object)
    def run(self, request_id: int, pixels: np.ndarray | XrayImage) -> None:
        """Analyse one image: an `XrayImage` (mapped to the network's [0, 1] input here, on this
        thread, not on the GUI thread) or an array already following the input contract."""
        if self._is_cancelled(request_id):
            return
        if self._predictor is None:
            self.failed.emit(request_id, "no trained model loaded")
            return
        self.started.emit(request_id)
        self.busy.emit(True)
        try:
            if isinstance(pixels, XrayImage):
                pixels = model_input(pixels)
            prediction = self._predictor.predict(pixels)
        except Exception as exc:
            log.warning("inference failed: %s", type(exc).__name__)
            log.debug("%s", traceback.format_exc())
            self.failed.emit(request_id, short_reason(exc, "analysis failed"))
        else:
            self.result_ready.emit(request_id, prediction)
        finally:
            self.busy.emit(False)


class WorkerThread:
    """A worker QObject moved onto its own, named QThread; :meth:`stop` quits and waits."""

    def __init__(self, worker: QObject, name: str) -> None:
        self.worker = worker
        self.thread = QThread()
        self.thread.setObjectName(name)
        worker.moveToThread(self.thread)
        self.thread.start()

    def stop(self, timeout_ms: int = 120_000) -> bool:
        """Ask the event loop to exit after the current request, then wait for it. True if stopped."""
        if isinstance(self.worker, _Cancellable):
            self.worker.cancel_through(2**62)
        if not self.thread.isRunning():
            return True
        self.thread.quit()
        return bool(self.thread.wait(timeout_ms))
