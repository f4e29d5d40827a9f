"""cral-ablation: four variants trained and evaluated, table printed beside the paper's Table 2."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from cral_model.cli.ablation import format_table
from cral_model.cli.ablation import main as ablation_main
from cral_model.data import make_synthetic_nih

if TYPE_CHECKING:
    from pathlib import Path


def test_ablation_runs_all_modes_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "nih"
    make_synthetic_nih(
        root, n_patients=10, images_per_patient=2, test_patients=3, size=32, seed=5, p_positive=0.3
    )
    argv = [
        "--output", str(tmp_path / "abl"), "--bootstrap", "20",
        "--data-root", str(root), "--backbone", "resnet18", "--input-size", "32", "--resize", "32",
        "--pretrained", "none", "--epochs", "1", "--batch-size", "8", "--workers", "0", "--threads", "1",
        "--val-fraction", "0.3", "--no-progress",
    ]  # fmt: skip
    assert ablation_main(argv) == 0
    printed = capsys.readouterr().out
    for label in ("CRAL (full)", "w/o category", "w/o residual", "w/o attention"):
        assert f"| {label} |" in printed
    assert "Table 2 reports ResNet-50 and DenseNet-121 only" in printed
    data = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert [r["mode"] for r in data["rows"]] == ["full", "no_category", "no_residual", "no_attention"]
    for mode in ("full", "no_category", "no_residual", "no_attention"):
        assert (tmp_path / "abl" / mode / "eval_test" / "metrics.json").is_file()
        from cral_model import read_metadata

        assert read_metadata(tmp_path / "abl" / mode / "best.safetensors")["model"]["mode"] == mode
    # A second call reuses the finished runs.
    stamp = (tmp_path / "abl" / "full" / "best.safetensors").stat().st_mtime_ns
    assert ablation_main(argv) == 0
    assert (tmp_path / "abl" / "full" / "best.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(SystemExit):
        ablation_main([*argv, "--mode", "full"])


def test_table_next_to_paper() -> None:
    rows = [
        {"mode": "full", "mean_auc": 0.8101, "ci95": [0.80, 0.82], "n_images": 25596},
        {"mode": "no_attention", "mean_auc": None, "ci95": None, "n_images": 25596},
    ]
    text = format_table(rows, "resnet50", "att1", "test")
    assert "| CRAL (full) | 0.8101 | 0.8000-0.8200 | 25596 | 0.8136 | -0.0035 |" in text
    assert "| w/o attention | n/a |  | 25596 | 0.8034 |  |" in text


@pytest.mark.slow
def test_methods_and_seeds_side_by_side(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "nih"
    make_synthetic_nih(
        root, n_patients=8, images_per_patient=2, test_patients=2, size=32, seed=5, p_positive=0.3
    )
    argv = [
        "--output", str(tmp_path / "m"), "--bootstrap", "10", "--methods", "cral", "can",
        "--modes", "no_attention", "--seeds", "0", "1", "--cost",
        "--data-root", str(root), "--backbone", "resnet18", "--input-size", "32", "--resize", "32",
        "--pretrained", "none", "--epochs", "1", "--batch-size", "8", "--workers", "0", "--threads", "1",
        "--val-fraction", "0.3", "--no-progress",
    ]  # fmt: skip
    assert ablation_main(argv) == 0
    printed = capsys.readouterr().out
    assert "| w/o attention |" in printed and "| CAN |" in printed
    assert "mean over seeds" in printed and "CPU ms/image" in printed
    data = json.loads((tmp_path / "m" / "ablation.json").read_text())
    assert [(r["method"], r["mode"]) for r in data["rows"]] == [("cral", "no_attention"), ("can", "full")]
    for row in data["rows"]:
        assert [s["seed"] for s in row["seeds"]] == [0, 1]
        aucs = [s["mean_auc"] for s in row["seeds"]]
        assert row["mean_auc"] == pytest.approx(sum(aucs) / 2)
        assert row["train_s_per_epoch"] > 0 and row["ms_per_image"] > 0
    from cral_model import read_metadata

    assert read_metadata(tmp_path / "m" / "can" / "seed1" / "best.safetensors")["model"]["method"] == "can"
    with pytest.raises(SystemExit):
        ablation_main([*argv, "--method", "iam"])
