"""The bundled demo model and the tool that makes it (`make demo-model`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cral_model.cli.demo_model import bootstrap_mean_auc, paired_mean_auc_difference
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


def test_patient_bootstrap_is_wider_when_a_patient_has_many_images() -> None:
    """Images of one patient are not independent: resampling patients widens the interval."""
    rng = np.random.default_rng(1)
    n_patients, per = 40, 8
    base = rng.random((n_patients, 2)) < 0.4
    targets = np.repeat(base, per, axis=0).astype(float)  # every image of a patient shares the label
    scores = np.repeat(base + rng.normal(0, 0.8, base.shape), per, axis=0) + rng.normal(
        0, 0.05, targets.shape
    )
    groups = [str(i // per) for i in range(n_patients * per)]
    by_image = bootstrap_mean_auc(scores, targets, n_resamples=300)
    by_patient = bootstrap_mean_auc(scores, targets, n_resamples=300, groups=groups)
    assert by_image["mean_auc"] == by_patient["mean_auc"]
    assert by_patient["resampled"] == "patients"
    width = lambda r: r["ci95"][1] - r["ci95"][0]  # noqa: E731
    assert width(by_patient) > 1.5 * width(by_image)


def test_bundled_checkpoint_is_the_default_and_validates() -> None:
    from cral_model.checkpoint import load_checkpoint

    assert BUNDLED.is_file(), "resources/models/cral_demo.safetensors is missing (make demo-model)"
    assert default_checkpoint_path() == BUNDLED or default_checkpoint_path() is not None
    assert BUNDLED.stat().st_size < 50e6
    loaded = load_checkpoint(BUNDLED)
    meta = loaded.metadata
    assert meta["weights_dtype"] == "float16"
    assert len(meta["thresholds"]) == 14
    train_cfg = meta["provenance"]["train_config"]
    assert train_cfg["pretrained"] == "imagenet" and train_cfg["backbone"] == "efficientnet_lite0"
    assert meta["preprocessing"]["input_size"] >= 224  # 7 x 7 maps
    assert meta["metrics"]["val_eval"]["mean_auc"] > 0.6
    assert meta["metrics"]["val_normal_flag_rate"] <= 0.2  # the stated threshold rule held on validation
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


def test_bundled_model_flags_few_no_finding_samples_through_cxr_triage(
    shared_data: Path, tmp_path: Path
) -> None:
    """Operating points that mean something: run the 24 full-resolution NIH samples through
    ``cxr-triage`` as a user would; at most 3 of the 9 "No Finding" images may be flagged, and the
    flag must not be always on or always off for the others."""
    import csv

    from cral_model.data.nih import read_data_entry
    from cxr_viewer.cli.triage import main as triage_main

    folder = shared_data / "chestxray14-fullres-samples" / "images"
    labels = read_data_entry(shared_data / "chestxray14-labels" / "Data_Entry_2017_v2020.csv.gz")
    out = tmp_path / "triage.csv"
    assert triage_main([str(folder), "--model", str(BUNDLED), "--output", str(out), "--device", "cpu"]) == 0
    with open(out, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if not r["error"]]
    assert len(rows) == 24
    normal = [r for r in rows if not labels[Path(r["file"]).name][0].any()]
    abnormal = [r for r in rows if labels[Path(r["file"]).name][0].any()]
    assert len(normal) == 9
    flagged_normal = sum(float(r["triage_score"]) >= 1 for r in normal)
    assert flagged_normal <= 3, [(Path(r["file"]).name, r["triage_score"], r["flags"]) for r in normal]
    assert all(bool(r["flags"]) == (float(r["triage_score"]) >= 1) for r in rows)
    assert 0 < sum(float(r["triage_score"]) >= 1 for r in abnormal) < len(abnormal)
