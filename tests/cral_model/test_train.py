"""cral-train: outputs, config precedence, loss goes down, overfitting, determinism, exact resume."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
import yaml

from cral_model.cli.train import main as train_main
from cral_model.data import make_synthetic_nih
from cral_model.engine import fit, load_train_state
from cral_model.train_config import TrainConfig

if TYPE_CHECKING:
    from pathlib import Path

TINY = [
    "--backbone", "resnet18", "--input-size", "32", "--resize", "36", "--pretrained", "none",
    "--batch-size", "4", "--workers", "0", "--threads", "1", "--val-fraction", "0.3", "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "nih"
    make_synthetic_nih(root, n_patients=12, images_per_patient=2, test_patients=3, size=32, seed=1)
    return root


def _tiny_cfg(root: Path, out: Path, **kw) -> TrainConfig:
    base = {
        "data_root": str(root), "output": str(out), "backbone": "resnet18", "input_size": 32, "resize": 36,
        "pretrained": "none", "batch_size": 4, "workers": 0, "threads": 1, "val_fraction": 0.3,
        "progress": False, "epochs": 3, "lr_steps": (2,),
    }  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_train_state(path)["model"]


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_cli_outputs_and_config_precedence(synth_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(yaml.safe_dump({"epochs": 5, "lr": 0.02, "attention": "att1", "weight-decay": 0.0}))
    argv = [
        "--data-root",
        str(synth_root),
        "--output",
        str(out),
        "--config",
        str(cfg_file),
        *TINY,
        "--epochs",
        "2",
    ]
    assert train_main(argv) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["epochs"] == 2  # flag beats YAML
    assert saved["lr"] == 0.02  # YAML beats default
    assert saved["weight_decay"] == 0.0
    assert saved["momentum"] == 0.9  # paper default
    assert saved["lr_steps"] == [20]
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    assert {"train_loss", "val_mean_auc", "val_per_class_auc", "lr", "train_images_per_s"} <= set(log[0])
    assert (out / "last.pt").is_file()
    assert (out / "train.log").is_file()

    from cral_model import Predictor, load_checkpoint

    ck = load_checkpoint(out / "best.safetensors")
    meta = ck.metadata
    assert len(meta["thresholds"]) == 14
    assert meta["model"]["backbone"] == "resnet18"
    assert meta["preprocessing"]["input_size"] == 32
    assert meta["preprocessing"]["resize"] == 36
    prov = meta["provenance"]
    assert prov["data"]["data_root"] == "nih"
    assert prov["data"]["split_seed"] == 0
    assert prov["data"]["val_fraction"] == 0.3
    assert "cral-train" in prov["command"]
    assert "date" in prov
    assert "val_mean_auc" in meta["metrics"]
    assert meta["metrics"]["epoch"] in (1, 2)
    pred = Predictor.from_checkpoint(out / "best.safetensors", device="cpu").predict(
        np.zeros((40, 40), np.uint8)
    )
    assert pred.probabilities.shape == (14,)

    assert train_main(["--print-config", "--backbone", "densenet121"]) == 0
    with pytest.raises(SystemExit):
        train_main(["--output", str(out), "--backbone", "nope"])


def test_missing_images_refused(synth_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "partial"
    make_synthetic_nih(root, n_patients=6, test_patients=1, size=16)
    next(root.rglob("*.png")).unlink()
    argv = ["--data-root", str(root), "--output", str(tmp_path / "o"), *TINY, "--epochs", "1"]
    assert train_main(argv) == 2
    assert not (tmp_path / "o" / "best.safetensors").exists()
    assert train_main([*argv, "--allow-missing"]) == 0


def test_short_training_lowers_loss(synth_root: Path, tmp_path: Path) -> None:
    result = fit(_tiny_cfg(synth_root, tmp_path / "r", epochs=4, lr=0.02, lr_steps=()))
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]


def test_overfit_small_batch_auc_near_one(synth_root: Path) -> None:
    from cral_model import build_model
    from cral_model.config import PreprocessConfig
    from cral_model.data import EvalPreset, ImageDataset, load_nih_split
    from cral_model.metrics import mean_auc, per_class_auc

    torch.set_num_threads(1)
    images = load_nih_split(synth_root, "train_val").subset(range(16))
    ds = ImageDataset(images, EvalPreset(PreprocessConfig(input_size=32, resize=32)))
    x = torch.stack([ds[i][0] for i in range(16)])
    y = torch.stack([ds[i][1] for i in range(16)])
    torch.manual_seed(0)
    model = build_model("resnet18", "att1", "full")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    crit = torch.nn.BCEWithLogitsLoss()
    model.train()
    for _ in range(60):
        opt.zero_grad()
        loss = crit(model(x), y)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        probs = torch.sigmoid(model(x)).numpy()
    auc = mean_auc(per_class_auc(probs, y.numpy(), warn=False))
    assert auc > 0.97, auc


def test_two_runs_identical_and_worker_count_irrelevant(synth_root: Path, tmp_path: Path) -> None:
    fit(_tiny_cfg(synth_root, tmp_path / "a", epochs=2))
    fit(_tiny_cfg(synth_root, tmp_path / "b", epochs=2, workers=2))
    _assert_same_weights(_weights(tmp_path / "a" / "last.pt"), _weights(tmp_path / "b" / "last.pt"))


class _Interrupt(Exception):
    pass


def test_resume_after_interruption_equals_uninterrupted(synth_root: Path, tmp_path: Path) -> None:
    full = tmp_path / "full"
    fit(_tiny_cfg(synth_root, full))

    part = tmp_path / "part"

    def crash(epoch: int, step: int) -> None:
        if epoch == 1 and step == 1:  # in the middle of the second epoch (after its first update)
            raise _Interrupt

    with pytest.raises(_Interrupt):
        fit(_tiny_cfg(synth_root, part), on_step=crash)
    assert load_train_state(part / "last.pt")["epoch"] == 1
    # A kill between the epoch-1 save and its log line loses the line; a line from a later epoch whose
    # state was never saved would be stale. The resumed log is rebuilt from last.pt either way.
    (part / "log.jsonl").write_text('{"epoch": 7}\n', encoding="utf-8")
    # Resume through the CLI: only --output and --resume given; the rest comes from the saved state.
    assert train_main(["--output", str(part), "--resume", "--no-progress"]) == 0

    a, b = load_train_state(full / "last.pt"), load_train_state(part / "last.pt")
    assert a["epoch"] == b["epoch"] == 3
    _assert_same_weights(a["model"], b["model"])
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert a["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.001)  # lr divided by 10 after epoch 2
    ha = [{k: v for k, v in r.items() if "seconds" not in k and "per_s" not in k} for r in a["history"]]
    hb = [{k: v for k, v in r.items() if "seconds" not in k and "per_s" not in k} for r in b["history"]]
    assert ha == hb
    log = [json.loads(line)["epoch"] for line in (part / "log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3]
    from safetensors.torch import load_file

    wa, wb = load_file(full / "best.safetensors"), load_file(part / "best.safetensors")
    _assert_same_weights(wa, wb)


@pytest.mark.slow
def test_real_subset_short_training(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "real"
    argv = [
        "--data-root", str(shared_data / "chestxray14-nih1000-64px"),
        "--labels-dir", str(shared_data / "chestxray14-labels"),
        "--allow-missing", "--output", str(out), "--backbone", "resnet18", "--input-size", "64",
        "--pretrained", "none", "--epochs", "2", "--batch-size", "32", "--workers", "0", "--threads", "1",
        "--max-train-images", "256",
        "--val-fraction", "0.2", "--no-progress", "--lr", "0.01",
    ]  # fmt: skip
    assert train_main(argv) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert log[1]["train_loss"] < log[0]["train_loss"]
    prov = json.loads(json.dumps(load_train_state(out / "last.pt")["config"]))
    assert prov["allow_missing"] is True


def test_train_and_eval_on_own_csv(synth_root: Path, tmp_path: Path) -> None:
    import csv

    from cral_model.cli.evaluate import main as eval_main
    from cral_model.data import load_nih_split
    from cral_model.labels import CLASS_NAMES

    def write(path: Path, split: str) -> None:
        ds = load_nih_split(synth_root, split)
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["path", "Patient ID", *CLASS_NAMES])
            for p, pid, lab in zip(ds.paths, ds.patients, ds.labels, strict=True):
                w.writerow([p, pid, *lab.astype(int).tolist()])

    write(tmp_path / "train.csv", "train_val")
    write(tmp_path / "test.csv", "test")
    out = tmp_path / "csvrun"
    argv = ["--train-csv", str(tmp_path / "train.csv"), "--output", str(out), *TINY, "--epochs", "1"]
    assert train_main(argv) == 0
    from cral_model import read_metadata

    assert read_metadata(out / "best.safetensors")["provenance"]["data"]["format"] == "csv"
    ev = tmp_path / "csveval"
    assert eval_main([str(out / "best.safetensors"), "--csv", str(tmp_path / "test.csv"), "--output", str(ev),
                      "--workers", "0", "--bootstrap", "0", "--no-progress"]) == 0  # fmt: skip
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["n_images"] == 6
    assert metrics["evaluated"]["source"] == "csv"


def test_ema_and_export_last_resume_exactly(synth_root: Path, tmp_path: Path) -> None:
    """The weight average is validated, exported and resumed; export=last keeps the final epoch."""
    kw = {"ema_decay": 0.9, "export": "last", "rotate": 10.0, "intensity": 0.2}
    full = tmp_path / "full"
    result = fit(_tiny_cfg(synth_root, full, **kw))
    assert result.best_epoch == 3  # the last epoch, whatever the validation AUC did
    state = load_train_state(full / "last.pt")
    assert state["ema"] is not None and int(state["ema"]["n_averaged"]) > 0
    from safetensors.torch import load_file

    exported = load_file(full / "best.safetensors")
    ema_weights = {k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}
    # The export is the average (rounded to the checkpoint's dtype), not the raw weights.
    k = "head.weight"
    assert torch.allclose(exported[k].float(), ema_weights[k].float(), atol=1e-3)
    assert not torch.allclose(ema_weights[k], state["model"][k])

    part = tmp_path / "part"

    def crash(epoch: int, step: int) -> None:
        if epoch == 1 and step == 0:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        fit(_tiny_cfg(synth_root, part, **kw), on_step=crash)
    assert train_main(["--output", str(part), "--resume", "--no-progress"]) == 0
    b = load_train_state(part / "last.pt")
    _assert_same_weights(state["model"], b["model"])
    _assert_same_weights(state["ema"], b["ema"])


def test_train_options_validated() -> None:
    from cral_model.config import ConfigError

    for bad in ({"rotate": -1.0}, {"intensity": 1.5}, {"ema_decay": 1.0}, {"export": "first"}):
        with pytest.raises(ConfigError):
            TrainConfig(**bad)


def test_adamw_cosine_jitter_and_normal_flag_rate_thresholds_end_to_end(
    synth_root: Path, tmp_path: Path
) -> None:
    """The demo recipe's options through a real (tiny) run: the exported thresholds follow the rule."""
    from cral_model.checkpoint import load_checkpoint

    cfg = _tiny_cfg(
        synth_root, tmp_path / "run", optimizer="adamw", lr=1e-3, lr_schedule="cosine", warmup_epochs=1,
        downscale=0.5, downscale_min=16, threshold_rule="normal_flag_rate", max_normal_flag_rate=0.25,
        epochs=2,
    )  # fmt: skip
    result = fit(cfg)
    assert [h["lr"] for h in result.history] == pytest.approx([1e-4, 5e-4])
    meta = load_checkpoint(tmp_path / "run" / "best.safetensors").metadata
    assert "common specificity" in meta["metrics"]["threshold_rule"]
    rate = meta["metrics"]["val_normal_flag_rate"]
    assert rate is None or rate <= 0.25
    again = fit(cfg.replace(output=str(tmp_path / "again")))  # seeded augmentation: the same run
    _assert_same_weights(_weights(tmp_path / "run" / "last.pt"), _weights(tmp_path / "again" / "last.pt"))
    assert again.history[-1]["train_loss"] == result.history[-1]["train_loss"]
