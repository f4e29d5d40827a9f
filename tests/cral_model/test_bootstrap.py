"""Patient-level (cluster) bootstrap: intervals and paired comparisons, in `metrics` and in ``cral-eval``."""

from __future__ import annotations

import csv
import json
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

from cral_model.metrics import (
    bootstrap_auc_ci,
    paired_bootstrap_auc_difference,
    per_class_auc,
    resample_weights,
    roc_auc,
)

if TYPE_CHECKING:
    from pathlib import Path


def _patients(n_patients: int, per_patient: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Each patient's images are copies of one (score, label): the extreme of within-patient correlation."""
    rng = np.random.default_rng(seed)
    t = (rng.random((n_patients, 2)) < 0.4).astype(float)
    p = rng.random((n_patients, 2)) + 0.6 * t
    rep = np.repeat(np.arange(n_patients), per_patient)
    return p[rep], t[rep], [f"pt{i}" for i in rep]


def test_patient_clustering_widens_the_interval_to_that_of_the_patients() -> None:
    """400 images of 40 patients (10 identical images each): resampled as images, the interval is as if
    there were 400 independent cases; resampled as patients it is exactly the interval of the 40
    distinct cases (same draws: 40 patients from the same generator), about sqrt(10) wider."""
    p, t, groups = _patients(40, 10)
    names = ("a", "b")
    by_image = bootstrap_auc_ci(p, t, names, n_resamples=400, seed=5)
    by_patient = bootstrap_auc_ci(p, t, names, n_resamples=400, seed=5, groups=groups)
    distinct = bootstrap_auc_ci(p[::10], t[::10], names, n_resamples=400, seed=5)
    assert by_image["unit"] == "image" and by_patient["unit"] == "patient" and by_patient["n_clusters"] == 40
    np.testing.assert_allclose(by_patient["mean_auc"], distinct["mean_auc"], rtol=0, atol=1e-12)
    for name in names:
        np.testing.assert_allclose(by_patient["per_class"][name], distinct["per_class"][name], atol=1e-12)
    width = {k: v["mean_auc"][1] - v["mean_auc"][0] for k, v in (("i", by_image), ("p", by_patient))}
    assert width["p"] > 2 * width["i"]


def test_patient_resample_equals_explicit_resampling() -> None:
    """The weighted statistic over patient multiplicities equals roc_auc on the images written out."""
    rng = np.random.default_rng(2)
    groups = [f"p{g}" for g in rng.integers(0, 9, 50)]
    t = (rng.random(50) < 0.35).astype(float)
    s = np.round(rng.random(50), 1)  # ties
    draw = resample_weights(50, groups, np.random.default_rng(7))
    order = list(dict.fromkeys(groups))
    members = {g: [i for i, x in enumerate(groups) if x == g] for g in order}
    explicit = np.random.default_rng(7)
    from cral_model.metrics import _WeightedAUC

    auc = _WeightedAUC(s, t)
    for _ in range(20):
        w = draw()
        picks = explicit.integers(0, len(order), len(order))
        idx = np.concatenate([members[order[j]] for j in picks])
        np.testing.assert_array_equal(np.bincount(idx, minlength=50), w)
        ref = roc_auc(s[idx], t[idx])
        assert (np.isnan(ref) and np.isnan(auc(w))) or auc(w) == pytest.approx(ref, abs=1e-12)


def test_paired_difference_clustered_is_wider_and_zero_for_one_model() -> None:
    p, t, groups = _patients(40, 10, seed=1)
    rng = np.random.default_rng(3)
    other = p + rng.normal(0, 0.3, size=(40, 2)).repeat(10, axis=0)
    names = ("a", "b")
    img = paired_bootstrap_auc_difference(p, other, t, names, n_resamples=300, seed=1)
    pat = paired_bootstrap_auc_difference(p, other, t, names, n_resamples=300, seed=1, groups=groups)
    point = per_class_auc(p, t, names, warn=False)
    point_o = per_class_auc(other, t, names, warn=False)
    expected = np.mean([point[n] - point_o[n] for n in names])
    assert pat["mean_auc_difference"] == pytest.approx(expected, abs=1e-12)
    assert img["mean_auc_difference"] == pat["mean_auc_difference"]
    wi = img["mean_auc_difference_ci"][1] - img["mean_auc_difference_ci"][0]
    wp = pat["mean_auc_difference_ci"][1] - pat["mean_auc_difference_ci"][0]
    assert wp > 2 * wi
    same = paired_bootstrap_auc_difference(p, p, t, names, n_resamples=50, groups=groups)
    assert same["mean_auc_difference"] == 0.0 and same["mean_auc_difference_ci"] == [0.0, 0.0]
    assert same["p_not_better"] == 1.0


# ------------------------------------------------------------------------------------------- cral-eval


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    from cral_model.checkpoint import save_checkpoint
    from cral_model.config import PreprocessConfig
    from cral_model.data import make_synthetic_nih
    from cral_model.models.cral import build_model

    base = tmp_path_factory.mktemp("boot")
    root = base / "nih"
    make_synthetic_nih(
        root, n_patients=6, images_per_patient=4, test_patients=8, size=32, seed=1, p_positive=0.4
    )
    ckpts = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = build_model("resnet18", "att1", "full").eval()
        ckpts.append(
            save_checkpoint(model, base / f"m{seed}.safetensors", preprocessing=PreprocessConfig(32, 32))
        )
    return root, ckpts[0], ckpts[1]


def _eval(ckpt: Path, root: Path, out: Path, *extra: str) -> dict:
    from cral_model.cli.evaluate import main

    argv = [str(ckpt), "--data-root", str(root), "--output", str(out), "--workers", "0", "--threads", "1",
            "--bootstrap", "60", "--no-progress", *extra]  # fmt: skip
    assert main(argv) == 0
    return json.loads((out / "metrics.json").read_text())


def test_cral_eval_patient_bootstrap_by_default_and_csv_equals_metrics(setup, tmp_path: Path) -> None:
    root, ckpt, _ = setup
    m = _eval(ckpt, root, tmp_path / "a")
    from cral_model.data import load_nih_split

    test = load_nih_split(root, "test")
    assert m["ci95"]["unit"] == "patient" and m["ci95"]["n_clusters"] == len(set(test.patients)) > 1
    assert m["n_images"] == len(test) > m["ci95"]["n_clusters"]
    mi = _eval(ckpt, root, tmp_path / "b", "--bootstrap-unit", "image")
    assert mi["ci95"]["unit"] == "image" and mi["mean_auc"] == m["mean_auc"]
    assert mi["ci95"]["mean_auc"] != m["ci95"]["mean_auc"]
    # AUCs recomputed from predictions.csv are those of metrics.json, exactly
    with open(tmp_path / "a" / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    names = list(m["per_class_auc"])
    probs = np.array([[float(r[f"prob_{n}"]) for n in names] for r in rows])
    targets = np.array([[float(r[f"true_{n}"]) for n in names] for r in rows])
    assert probs.dtype == np.float64 and len(set(probs.ravel().tolist())) > 24  # not rounded to a few values
    recomputed = per_class_auc(probs, targets, names, warn=False)
    for n in names:
        assert (recomputed[n] == m["per_class_auc"][n]) or (m["per_class_auc"][n] is None)


def test_cral_eval_paired_comparison(setup, tmp_path: Path) -> None:
    root, ckpt, other = setup
    _eval(other, root, tmp_path / "other")
    m = _eval(ckpt, root, tmp_path / "cmp", "--compare", str(tmp_path / "other" / "predictions.csv"))
    o = json.loads((tmp_path / "other" / "metrics.json").read_text())
    c = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert c == m["comparison"] and c["unit"] == "patient" and c["other"] == "predictions.csv"
    assert c["mean_auc_difference"] == pytest.approx(m["mean_auc"] - o["mean_auc"], abs=1e-12)
    lo, hi = c["mean_auc_difference_ci"]
    assert lo <= hi
    # the other model's file over different images is refused with a message
    bad = tmp_path / "bad.csv"
    lines = (tmp_path / "other" / "predictions.csv").read_text().splitlines()
    bad.write_text("\n".join(lines[:-1]) + "\n")
    from cral_model.cli.evaluate import main

    argv = [str(ckpt), "--data-root", str(root), "--output", str(tmp_path / "x"), "--workers", "0",
            "--no-progress", "--compare", str(bad)]  # fmt: skip
    assert main(argv) == 2
