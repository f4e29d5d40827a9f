"""The ONNX Runtime fast path gives the same answers as eager PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.checkpoints import write_tiny_checkpoint

from cral_model import Predictor
from cral_model import fast as fastpath

pytestmark = pytest.mark.skipif(not fastpath.fast_path_available(), reason="onnxruntime/onnx not installed")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    # non-trivial BN statistics
    return write_tiny_checkpoint(
        tmp_path_factory.mktemp("fast") / "m.safetensors", attention="att2", warm_up_batch=8, threshold=None
    )


def test_fp32_fast_path_matches_eager(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("CXR_TRIAGE_CACHE", str(tmp_path))
    eager = Predictor.from_checkpoint(checkpoint, device="cpu")
    fast = Predictor.from_checkpoint(checkpoint, device="cpu", fast="fp32")
    assert eager.backend == "torch-cpu"
    assert fast.backend == "onnxruntime-fp32"
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (80 + 7 * i, 90), dtype=np.uint8) for i in range(5)]
    for a, b in zip(eager.predict_batch(images), fast.predict_batch(images, batch_size=3), strict=True):
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-4)
        np.testing.assert_allclose(a.attention, b.attention, atol=1e-4)
        np.testing.assert_allclose(a.saliency, b.saliency, atol=1e-4)
        assert [n for n, _ in a.top_k(8)] == [n for n, _ in b.top_k(8)]
    # the export is cached: a second predictor reuses the same file
    files = list((tmp_path / "onnx").glob("*.onnx"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    Predictor.from_checkpoint(checkpoint, device="cpu", fast="fp32")
    assert files[0].stat().st_mtime_ns == mtime


def test_auto_falls_back_to_torch_when_onnxruntime_is_missing(checkpoint, monkeypatch):
    monkeypatch.setattr(fastpath, "fast_path_available", lambda: False)
    pred = Predictor.from_checkpoint(checkpoint, device="cpu", fast="auto")
    assert pred.backend == "torch-cpu"
    assert pred.predict(np.zeros((64, 64), np.uint8)).probabilities.shape == (14,)


def test_a_wrong_or_damaged_cached_export_falls_back_to_pytorch(checkpoint, tmp_path, monkeypatch, caplog):
    """The fast path may change speed, never findings: a cached file that disagrees is not used."""
    monkeypatch.setenv("CXR_TRIAGE_CACHE", str(tmp_path))
    other_path = write_tiny_checkpoint(
        tmp_path / "other.safetensors", attention="att2", seed=1, threshold=None
    )
    Predictor.from_checkpoint(other_path, device="cpu", fast="fp32")
    Predictor.from_checkpoint(checkpoint, device="cpu", fast="fp32")
    f_other, f_ckpt = sorted((tmp_path / "onnx").glob("*.onnx"), key=lambda p: p.stat().st_mtime_ns)
    eager = Predictor.from_checkpoint(checkpoint, device="cpu")
    image = np.random.default_rng(3).integers(0, 255, (70, 70), dtype=np.uint8)

    f_ckpt.write_bytes(f_other.read_bytes())  # a stale export of other weights under this checkpoint's key
    stale = Predictor.from_checkpoint(checkpoint, device="cpu", fast="fp32")
    assert stale.backend == "torch-cpu"
    assert "disagrees with PyTorch" in caplog.text
    np.testing.assert_allclose(
        stale.predict(image).probabilities, eager.predict(image).probabilities, atol=1e-6
    )

    f_ckpt.write_bytes(f_other.read_bytes()[:5000])  # a truncated file
    damaged = Predictor.from_checkpoint(checkpoint, device="cpu", fast="fp32")
    assert damaged.backend == "torch-cpu"
    np.testing.assert_allclose(
        damaged.predict(image).probabilities, eager.predict(image).probabilities, atol=1e-6
    )
