"""`cral-train --paper`: V1 weights, all of train_val, 30 epochs, the last epoch, mean subtraction."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from cral_model.cli.train import get_parser, resolve_config
from cral_model.train_config import PAPER_PRESET, TrainConfig

if TYPE_CHECKING:
    from pathlib import Path


def _cfg(*argv: str) -> TrainConfig:
    cfg, _ = resolve_config(get_parser().parse_args(["--data-root", "x", "--output", "o", *argv]))
    return cfg


def test_paper_preset_fields_and_precedence(tmp_path: Path) -> None:
    default, paper = _cfg(), _cfg("--paper")
    assert (paper.pretrained, paper.val_fraction, paper.epochs, paper.export, paper.normalize) == (
        "imagenet_v1", 0.0, 30, "last", "mean",
    )  # fmt: skip
    assert (default.pretrained, default.export, default.normalize) == ("imagenet", "best", "imagenet")
    assert paper.preprocess_config().std == (1.0, 1.0, 1.0)
    assert paper.preprocess_config().mean == default.preprocess_config().mean
    for k, v in PAPER_PRESET.items():
        assert getattr(paper, k) == v, k
    # flags and --config still override the preset
    assert _cfg("--paper", "--epochs", "2").epochs == 2
    yml = tmp_path / "c.yaml"
    yml.write_text("export: best\nval_fraction: 0.1\n")
    over = _cfg("--paper", "--config", str(yml))
    assert (over.export, over.val_fraction, over.pretrained) == ("best", 0.1, "imagenet_v1")


def test_imagenet_v1_weights_are_the_original_release() -> None:
    from torchvision import models

    from cral_model.models.backbones import _weights_enum

    assert _weights_enum("resnet50", "imagenet_v1") is models.ResNet50_Weights.IMAGENET1K_V1
    assert _weights_enum("resnet50") is models.ResNet50_Weights.IMAGENET1K_V2
    assert _weights_enum("densenet121", "imagenet_v1") is models.DenseNet121_Weights.IMAGENET1K_V1


def test_paper_run_trains_on_all_images_and_exports_the_last_epoch(tmp_path: Path) -> None:
    import json

    from cral_model.checkpoint import read_metadata
    from cral_model.data import make_synthetic_nih
    from cral_model.engine import fit
    from cral_model.inference import Predictor

    root = tmp_path / "nih"
    make_synthetic_nih(root, n_patients=6, images_per_patient=2, test_patients=2, size=32, seed=3)
    cfg = _cfg(
        "--paper", "--backbone", "resnet18", "--pretrained", "none", "--input-size", "32", "--resize", "36",
        "--epochs", "2", "--batch-size", "4", "--workers", "0", "--threads", "1", "--no-progress",
    ).replace(data_root=str(root), output=str(tmp_path / "run"))  # fmt: skip
    result = fit(cfg)
    assert result.best_epoch == 2  # the last, not a selected one
    meta = read_metadata(tmp_path / "run" / "best.safetensors")
    data = meta["provenance"]["data"]
    from cral_model.data import load_nih_split

    assert data["n_val"] == 0 and data["n_train"] == len(load_nih_split(root, "train_val"))  # all train_val
    assert meta["preprocessing"]["std"] == [1.0, 1.0, 1.0]
    assert meta["provenance"]["train_config"]["normalize"] == "mean"
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2] and "val_mean_auc" not in log[-1]
    # inference applies the same mean subtraction: a constant grey 0.5 becomes 0.5 - mean per channel
    pred = Predictor.from_checkpoint(tmp_path / "run" / "best.safetensors", device="cpu")
    from cral_model.preprocessing import preprocess

    x = preprocess(np.full((40, 40), 0.5, dtype=np.float32), pred.preprocessing)
    np.testing.assert_allclose(x[:, 0, 0].numpy(), 0.5 - np.array(PAPER_MEAN), atol=1e-6)


PAPER_MEAN = (0.485, 0.456, 0.406)


@pytest.mark.parametrize("value", ["imagenet_v2", "caffe"])
def test_bad_values_are_refused(value: str) -> None:
    from cral_model.config import ConfigError

    with pytest.raises(ConfigError):
        TrainConfig(data_root="x", pretrained=value)
    with pytest.raises(ConfigError):
        TrainConfig(data_root="x", normalize=value)


def test_cral_eval_val_split_of_a_paper_model_is_refused_with_a_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from cral_model.cli.evaluate import load_eval_images

    meta = {"provenance": {"data": {"format": "nih", "val_fraction": 0.0, "split_seed": 0}}}
    with pytest.raises(ValueError, match="no validation split; evaluate it with --split test"):
        load_eval_images(meta, data_root="x", split="val")
