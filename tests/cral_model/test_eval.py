"""cral-eval: the four outputs exist and hold what they claim."""

from __future__ import annotations

import csv
import json
from typing import TYPE_CHECKING

import numpy as np
import pytest

from cral_model.cli.evaluate import main as eval_main
from cral_model.data import make_synthetic_nih
from cral_model.labels import CLASS_NAMES

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    r = tmp_path_factory.mktemp("evaldata") / "nih"
    make_synthetic_nih(
        r, n_patients=14, images_per_patient=2, test_patients=5, size=32, seed=4, p_positive=0.3
    )
    return r


@pytest.fixture(scope="module")
def trained(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cral_model.cli.train import main as train_main

    out = tmp_path_factory.mktemp("evalrun")
    argv = [
        "--data-root", str(root), "--output", str(out), "--backbone", "resnet18", "--input-size", "32",
        "--resize", "36", "--pretrained", "none", "--batch-size", "6", "--workers", "0", "--threads", "1",
        "--val-fraction", "0.35", "--no-progress", "--epochs", "2",
    ]  # fmt: skip
    assert train_main(argv) == 0
    return out / "best.safetensors"


def _run_eval(ckpt: Path, root: Path, out: Path, *extra: str) -> dict:
    argv = [
        str(ckpt),
        "--data-root",
        str(root),
        "--output",
        str(out),
        "--workers",
        "0",
        "--threads",
        "1",
        "--bootstrap",
        "50",
        "--no-progress",
        *extra,
    ]
    assert eval_main(argv) == 0
    return json.loads((out / "metrics.json").read_text())


def test_eval_outputs(trained: Path, root: Path, tmp_path: Path) -> None:
    from cral_model.data import load_nih_split

    test = load_nih_split(root, "test")
    m = _run_eval(trained, root, tmp_path, "--split", "test")
    # metrics.json
    assert m["n_images"] == len(test) == 10
    assert list(m["per_class_auc"]) == list(CLASS_NAMES)
    defined = [v for v in m["per_class_auc"].values() if v is not None]
    assert m["mean_auc"] == pytest.approx(np.mean(defined))
    for name in CLASS_NAMES:
        pos = int(test.labels[:, CLASS_NAMES.index(name)].sum())
        assert m["n_positive"][name] == pos
        assert (m["per_class_auc"][name] is None) == (pos in (0, len(test)))
        op = m["operating_points"][name]
        assert {"threshold", "sensitivity", "specificity"} <= set(op)
    assert set(m["ci95"]) >= {"per_class", "mean_auc", "level", "n_resamples"}
    assert m["thresholds_source"] == "checkpoint"
    # predictions.csv: columns and values that reproduce the AUCs
    with open(tmp_path / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == [
        "image",
        *(f"prob_{n}" for n in CLASS_NAMES),
        *(f"true_{n}" for n in CLASS_NAMES),
    ]
    assert [r["image"] for r in rows] == list(test.names)
    from sklearn.metrics import roc_auc_score

    for name in CLASS_NAMES:
        y = np.array([int(r[f"true_{name}"]) for r in rows])
        p = np.array([float(r[f"prob_{name}"]) for r in rows])
        np.testing.assert_array_equal(y, test.labels[:, CLASS_NAMES.index(name)])
        if m["per_class_auc"][name] is not None:
            assert m["per_class_auc"][name] == pytest.approx(roc_auc_score(y, p), abs=1e-4)
    # roc.png decodes
    from PIL import Image

    with Image.open(tmp_path / "roc.png") as im:
        im.load()
        assert im.size[0] > 400
        assert im.size[1] > 400
    # table.md: 14 class rows + mean
    table = (tmp_path / "table.md").read_text()
    for name in CLASS_NAMES:
        assert f"| {name} |" in table
    assert "| **Mean** |" in table
    assert "no row for this configuration" in table  # resnet18 is not in the paper


def test_val_split_reproduces_training_validation(trained: Path, root: Path, tmp_path: Path) -> None:
    from cral_model import read_metadata

    meta = read_metadata(trained)
    m = _run_eval(trained, root, tmp_path, "--split", "val")
    assert m["n_images"] == meta["provenance"]["data"]["n_val"]
    assert m["mean_auc"] == pytest.approx(meta["metrics"]["val_mean_auc"], abs=1e-6)


def test_table_has_paper_row_and_missing_refused(root: Path, tmp_path: Path) -> None:
    from helpers.checkpoints import write_tiny_checkpoint

    ckpt = write_tiny_checkpoint(
        tmp_path / "r50.safetensors", backbone="resnet50", input_size=32, threshold=None
    )
    _run_eval(ckpt, root, tmp_path / "e", "--bootstrap", "0")
    table = (tmp_path / "e" / "table.md").read_text()
    assert "paper (CRAL att1, R-50)" in table
    assert "| **Mean** |" in table
    assert "0.814" in table
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["thresholds_source"] == "default 0.5"
    assert metrics["ci95"] is None

    moved = next(p for p in sorted(root.rglob("*.png")) if p.name.startswith("00000001_"))
    moved.rename(tmp_path / "away.png")
    try:
        argv = [str(ckpt), "--data-root", str(root), "--output", str(tmp_path / "f"), "--workers", "0"]
        assert eval_main(argv) == 2
        assert not (tmp_path / "f" / "metrics.json").exists()
        m = _run_eval(ckpt, root, tmp_path / "g", "--allow-missing", "--bootstrap", "0")
        assert m["n_images"] == 9
        assert m["evaluated"]["n_missing"] == 1
    finally:
        (tmp_path / "away.png").rename(moved)
