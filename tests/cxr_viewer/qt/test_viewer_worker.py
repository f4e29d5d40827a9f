"""The background workers on their own threads, with a fake predictor (no torch)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QObject, Signal

from cxr_viewer.qt.worker import InferenceWorker, LoaderWorker, WorkerThread, make_thumbnail

if TYPE_CHECKING:
    from pathlib import Path


class _Sender(QObject):
    requested = Signal(int, object)


@pytest.fixture
def threads():
    started: list[WorkerThread] = []
    yield started
    for wt in started:
        assert wt.stop()
        assert not wt.thread.isRunning()


def _inference(threads, predictor) -> InferenceWorker:
    worker = InferenceWorker(lambda _path: predictor)
    threads.append(WorkerThread(worker, "test-inference"))
    return worker


def test_model_loads_on_worker_thread_and_results_arrive(qtbot, threads, fake_predictor_cls) -> None:
    predictor = fake_predictor_cls()
    worker = _inference(threads, predictor)
    with qtbot.waitSignal(worker.model_loaded, timeout=10_000) as loaded:
        worker.load_model("fake.safetensors")  # direct call: runs here; the queued path is tested below
    info = loaded.args[0]
    assert info.device == "cpu"
    assert info.thresholds == tuple([0.5] * 14)
    sender = _Sender()
    sender.requested.connect(worker.run)  # queued: the worker lives on another thread
    with qtbot.waitSignal(worker.result_ready, timeout=10_000) as result:
        sender.requested.emit(7, np.ones((20, 30), np.float32))
    request_id, prediction = result.args
    assert request_id == 7
    assert prediction.probabilities.shape == (14,)
    assert predictor.threads == {"worker"}  # ran on the worker thread, not the GUI thread


def test_run_without_model_fails_cleanly(qtbot, threads) -> None:
    worker = InferenceWorker(lambda _p: None)  # type: ignore[arg-type, return-value]
    with qtbot.waitSignal(worker.failed, timeout=5_000) as failed:
        worker.run(1, np.zeros((4, 4), np.float32))
    assert failed.args == [1, "no trained model loaded"]


def test_model_load_failure_is_reported(qtbot) -> None:
    def boom(_path: str):
        raise ValueError("not a checkpoint\nsecond line")

    worker = InferenceWorker(boom)
    with qtbot.waitSignal(worker.model_failed, timeout=5_000) as failed:
        worker.load_model("x.safetensors")
    assert failed.args == ["not a checkpoint"]


def test_cancelled_requests_are_skipped(qtbot, fake_predictor_cls) -> None:
    predictor = fake_predictor_cls()
    worker = InferenceWorker(lambda _p: predictor)
    worker.load_model("x")
    worker.cancel_through(5)
    with qtbot.assertNotEmitted(worker.result_ready, wait=100):
        worker.run(5, np.zeros((4, 4), np.float32))
    with qtbot.waitSignal(worker.result_ready, timeout=5_000):
        worker.run(6, np.zeros((4, 4), np.float32))
    assert predictor.calls == 1


def test_predictor_exception_becomes_failed_signal(qtbot, fake_predictor_cls) -> None:
    worker = InferenceWorker(lambda _p: fake_predictor_cls(fail_on_constant=True))
    worker.load_model("x")
    with qtbot.waitSignal(worker.failed, timeout=5_000) as failed:
        worker.run(3, np.zeros((4, 4), np.float32))
    assert failed.args[0] == 3
    assert "RuntimeError" in failed.args[1]


def test_loader_decodes_and_reports_broken_files(qtbot, tmp_path: Path) -> None:
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(tmp_path / "ok.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    loader = LoaderWorker()
    with qtbot.waitSignal(loader.decoded, timeout=5_000) as ok:
        loader.decode(1, str(tmp_path / "ok.png"))
    assert ok.args[0] == 1
    assert ok.args[1].shape == (8, 8)
    assert ok.args[2].dtype == np.uint8
    with qtbot.waitSignal(loader.decode_failed, timeout=5_000) as bad:
        loader.decode(2, str(tmp_path / "bad.png"))
    assert bad.args[0] == 2
    assert "PNG" in bad.args[1]
    with qtbot.waitSignal(loader.scanned, timeout=5_000) as scanned:
        loader.scan(3, [str(tmp_path)])
    assert sorted(f.path.name for f in scanned.args[1]) == ["bad.png", "ok.png"]


def test_make_thumbnail() -> None:
    thumb = make_thumbnail(np.random.default_rng(0).random((1000, 700)).astype(np.float32), None, size=64)
    assert thumb.dtype == np.uint8
    assert max(thumb.shape) == 64
    assert make_thumbnail(np.zeros((3, 3), np.float32), (0.5, 1.0)).shape == (64, 64)
