"""The bundled demo model and the tool that makes it (`make demo-model`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cral_model.cli.demo_model import paired_mean_auc_difference
from cral_model.inference import default_checkpoint_path

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "resources" / "models" / "cral_demo.safetensors"


def test_paired_difference_sign_and_interval() -> None:
    rng = np.random.default_rng(0)
    targets = (rng.random((300, 3)) < 0.3).astype(float)
    good = targets + rng.normal(0, 0.5, targets.shape)  # informative scores
    noise = rng.normal(0, 1, targets.shape)  # chance
    better = paired_mean_auc_difference(good, noise, targets, n_resamples=200)
    assert better["difference"] > 0.2
    assert 0 < better["ci95"][0] < better["difference"] < better["ci95"][1]
    assert better["p_not_better"] == 0.0
    same = paired_mean_auc_difference(good, good, targets, n_resamples=50)
    assert same["difference"] == 0.0 and same["ci95"] == [0.0, 0.0]


def test_bundled_checkpoint_is_the_default_and_validates() -> None:
    from cral_model.checkpoint import load_checkpoint

    assert BUNDLED.is_file(), "resources/models/cral_demo.safetensors is missing (make demo-model)"
    assert default_checkpoint_path() == BUNDLED or default_checkpoint_path() is not None
    assert BUNDLED.stat().st_size < 50e6
    loaded = load_checkpoint(BUNDLED)
    meta = loaded.metadata
    assert meta["weights_dtype"] == "float16"
    assert len(meta["thresholds"]) == 14
    assert meta["provenance"]["train_config"]["pretrained"] == "none"
    assert meta["metrics"]["val_eval"]["mean_auc"] > 0.5
    card = (BUNDLED.parent / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "Not for clinical use" in card
    assert f"{meta['metrics']['val_eval']['mean_auc']:.3f}" in card  # the card quotes the shipped figures


def test_bundled_model_predicts_on_real_images(shared_data: Path) -> None:
    """The shipped model loads through the Predictor and gives well-formed findings on full-size images."""
    import cv2

    from cral_model.inference import Predictor

    predictor = Predictor.from_checkpoint(BUNDLED, device="cpu")
    images = sorted((shared_data / "chestxray14-fullres-samples" / "images").glob("*.png"))
    if not images:
        pytest.skip("no full-resolution NIH samples in ../shared/data")
    for path in images[:4]:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        pred = predictor.predict(image)
        assert pred.probabilities.shape == (14,)
        assert np.all((pred.probabilities >= 0) & (pred.probabilities <= 1))
        side = predictor.preprocessing.input_size // 32
        assert pred.attention.shape == (14, side, side)
        assert len(pred.top_k(8)) == 8


def test_bundled_model_reads_a_full_size_study_like_its_64px_copy(shared_data: Path) -> None:
    """The model is trained on 64 px copies; a 1024 px original must be shrunk the same way.

    16 studies are in ../shared/data both at 1024 px and as the 64 px training copy. Their findings
    must agree (same ranking at the top, probabilities within 0.03), so the model scores full-size
    images, such as the official test list's, as it was trained and validated.
    """
    import cv2

    from cral_model.inference import Predictor

    full = {p.name: p for p in (shared_data / "chestxray14-fullres-samples" / "images").glob("*.png")}
    small = {p.name: p for p in (shared_data / "chestxray14-nih1000-64px" / "images").glob("*.png")}
    both = sorted(set(full) & set(small))
    if len(both) < 8:
        pytest.skip("fewer than 8 studies in ../shared/data at both resolutions")
    predictor = Predictor.from_checkpoint(BUNDLED, device="cpu")
    diffs, same_top1 = [], 0
    for name in both:
        a = predictor.predict(cv2.imread(str(full[name]), cv2.IMREAD_GRAYSCALE))
        b = predictor.predict(cv2.imread(str(small[name]), cv2.IMREAD_GRAYSCALE))
        diffs.append(float(np.abs(a.probabilities - b.probabilities).max()))
        same_top1 += a.top_k(1)[0][0] == b.top_k(1)[0][0]
    assert max(diffs) < 0.03, dict(zip(both, diffs, strict=True))
    assert same_top1 >= len(both) - 1
