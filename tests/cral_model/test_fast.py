"""The ONNX Runtime fast path gives the same answers as eager PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cral_model import Predictor, PreprocessConfig, build_model, save_checkpoint
from cral_model import fast as fastpath

pytestmark = pytest.mark.skipif(not fastpath.fast_path_available(), reason="onnxruntime/onnx not installed")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("resnet18", "att2")
    model.train()
    with torch.no_grad():  # non-trivial BN statistics
        model(torch.randn(8, 3, 64, 64))
    path = tmp_path_factory.mktemp("fast") / "m.safetensors"
    return save_checkpoint(model.eval(), path, preprocessing=PreprocessConfig(input_size=64, resize=64))


def test_fp32_fast_path_matches_eager(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("CXR_TRIAGE_CACHE", str(tmp_path))
    eager = Predictor.from_checkpoint(checkpoint, device="cpu")
    fast = Predictor.from_checkpoint(checkpoint, device="cpu", fast="fp32")
    assert eager.backend == "torch-cpu"
    assert fast.backend == "onnxruntime-fp32"
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (80 + 7 * i, 90), dtype=np.uint8) for i in range(5)]
    for a, b in zip(eager.predict_batch(images), fast.predict_batch(images, batch_size=3)):
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
