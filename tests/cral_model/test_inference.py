from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.checkpoints import write_tiny_checkpoint
from PIL import Image

from cral_model import CLASS_NAMES, Prediction, Predictor
from cral_model.devices import resolve_device
from cral_model.inference import default_checkpoint_path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.safetensors")


def test_predictor_matches_a_direct_forward_pass(checkpoint):
    pred = Predictor.from_checkpoint(checkpoint, device="cpu")
    image = np.random.default_rng(0).integers(0, 4096, (200, 180)).astype(np.uint16)
    result = pred.predict(image)
    assert isinstance(result, Prediction)
    assert result.class_names == CLASS_NAMES
    assert result.probabilities.shape == (14,) and result.probabilities.dtype == np.float32
    assert result.attention.shape == (14, 2, 2)
    assert result.saliency.shape == (2, 2)
    assert 0 <= result.saliency.min() and result.saliency.max() <= 1  # noqa: SIM300 (a range check)
    with torch.no_grad():
        direct = torch.sigmoid(pred.model(pred.prepare(image)[None]))[0].numpy()
    np.testing.assert_allclose(result.probabilities, direct, rtol=1e-6, atol=1e-6)


def test_top_k_is_sorted_descending_and_flags_follow_thresholds():
    probs = np.linspace(0.05, 0.9, 14).astype(np.float32)[::-1].copy()
    thr = np.full(14, 0.5, np.float32)
    p = Prediction(CLASS_NAMES, probs, np.zeros((14, 1, 1), np.float32), np.zeros((1, 1), np.float32), thr)
    top = p.top_k(8)
    assert len(top) == 8
    assert [v for _, v in top] == sorted((v for _, v in top), reverse=True)
    assert top[0] == (CLASS_NAMES[0], pytest.approx(0.9))
    assert p.flagged() == [n for n, v in zip(CLASS_NAMES, probs) if v >= 0.5]  # noqa: B905
    assert p.triage_score() == pytest.approx(0.9 / 0.5)


def test_batch_equals_single_and_keeps_order(checkpoint):
    pred = Predictor.from_checkpoint(checkpoint, device="cpu")
    rng = np.random.default_rng(1)
    images = [rng.random((64 + 10 * i, 70)).astype(np.float32) for i in range(5)]
    batch = pred.predict_batch(images, batch_size=2)
    for im, b in zip(images, batch, strict=True):
        np.testing.assert_allclose(pred.predict(im).probabilities, b.probabilities, atol=1e-5)


def test_device_resolution():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            resolve_device("cuda")


def test_default_checkpoint_follows_the_environment(monkeypatch, checkpoint):
    monkeypatch.setenv("CXR_TRIAGE_MODEL", str(checkpoint))
    assert default_checkpoint_path() == checkpoint


@pytest.mark.parametrize("folder", ["chestxray14-fullres-samples/images", "chestxray14-nih1000-64px/images"])
def test_a_real_nih_image_goes_through_the_predictor(shared_data, checkpoint, folder):
    path = sorted((shared_data / folder).glob("*.png"))[0]
    image = np.asarray(Image.open(path))
    result = Predictor.from_checkpoint(checkpoint, device="cpu").predict(image)
    assert np.isfinite(result.probabilities).all()
    names = [n for n, _ in result.top_k(8)]
    assert len(set(names)) == 8 and set(names) <= set(CLASS_NAMES)
