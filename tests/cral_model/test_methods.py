"""AG-CNN, CAN and iterative attention mining: real forward/backward passes, the phases, overfitting one
batch, cral-train end to end into Predictor and the ONNX fast path, and an exact resume."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cral_model.cli.train import main as train_main
from cral_model.config import METHODS, ConfigError, ModelConfig
from cral_model.data import make_synthetic_nih
from cral_model.engine import fit, load_train_state
from cral_model.models.agcnn import AGCNN, crop_and_resize, largest_region_box
from cral_model.models.cral import build_model_from_config
from cral_model.models.iam import IAM, erase_mask
from cral_model.train_config import TrainConfig

if TYPE_CHECKING:
    from pathlib import Path

    from cral_model.models.base import ChestNet

NEW_METHODS = [m for m in METHODS if m != "cral"]
K = 14


def _net(method: str, **kw) -> ChestNet:
    return build_model_from_config(ModelConfig(backbone="resnet18", method=method, num_classes=K, **kw))


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth_methods") / "nih"
    make_synthetic_nih(root, n_patients=8, images_per_patient=2, test_patients=2, size=32, seed=3)
    return root


# ------------------------------------------------------------------------------------ pieces


def test_largest_region_box_hand_computed() -> None:
    mask = torch.zeros(4, 4, 4, dtype=torch.bool)
    mask[0, 0, 0] = mask[0, 0, 1] = mask[0, 1, 1] = True  # 3 cells: columns 0-1, rows 0-1
    mask[0, 3, 3] = True  # 1 cell
    mask[1, 0, 0] = mask[1, 1, 1] = mask[1, 2, 2] = True  # diagonal: one 8-connected region
    mask[1, 0, 3] = True
    mask[2, 2, 0] = mask[2, 0, 3] = True  # two single cells: the first in row-major order wins
    # mask[3] empty: the whole grid
    boxes = largest_region_box(mask)
    assert boxes.tolist() == [[0, 0, 2, 2], [0, 0, 3, 3], [3, 0, 4, 1], [0, 0, 4, 4]]


def test_crop_and_resize_samples_the_box_bilinearly() -> None:
    ramp = torch.arange(64, dtype=torch.float32).expand(1, 1, 64, 64).clone()  # value = column index
    full = crop_and_resize(ramp, torch.tensor([[0.0, 0.0, 1.0, 1.0]]))
    assert torch.allclose(full, ramp, atol=1e-4)  # the whole image is the identity
    out = crop_and_resize(ramp, torch.tensor([[0.25, 0.25, 0.75, 0.75]]))
    # output column j samples source x = 16 + (j + 0.5) * 32 / 64 - 0.5 (pixel centres); linear in x
    expected = 16 + (torch.arange(64, dtype=torch.float32) + 0.5) * 0.5 - 0.5
    assert torch.allclose(out[0, 0, 10], expected, atol=1e-4)


def test_erase_mask_hides_the_salient_cells_of_positive_classes_only() -> None:
    cam = torch.zeros(2, 3, 2, 2)
    cam[:, 0, 0, 0] = 5.0  # class 0: top-left cell salient
    cam[:, 1, 1, 1] = 5.0  # class 1: bottom-right
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    mask = erase_mask(cam, targets, (4, 4))
    assert mask.shape == (2, 1, 4, 4)
    assert mask[0, 0].tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert mask[1].sum() == 0  # no positive class: nothing erased


def test_unknown_method_and_iam_ema_refused() -> None:
    with pytest.raises(ConfigError, match="unknown method"):
        ModelConfig(method="gradcam")
    with pytest.raises(ConfigError, match="agcnn_tau"):
        ModelConfig(method="agcnn", agcnn_tau=1.0)
    with pytest.raises(ConfigError, match="ema_decay"):
        TrainConfig(method="iam", ema_decay=0.9)
    assert TrainConfig(method="agcnn", epochs=4).total_epochs == 12
    assert TrainConfig(method="iam", epochs=4, iam_rounds=3).total_epochs == 12


# ------------------------------------------------------------------------------------ networks


@pytest.mark.parametrize("method", NEW_METHODS)
def test_shapes_ranges_and_maps(method: str) -> None:
    net = _net(method).eval()
    with torch.no_grad():
        out = net.forward_all(torch.randn(2, 3, 64, 64))
        plain = net(torch.randn(2, 3, 64, 64))
    grid = 4 if method == "iam" else 2  # attention mining's maps are at stride 16 (multi-scale)
    assert out.logits.shape == plain.shape == (2, K)
    assert out.attention.shape == out.evidence.shape == (2, K, grid, grid)
    assert out.saliency.shape == (2, grid, grid)
    assert torch.isfinite(out.logits).all()
    assert ((out.attention >= 0) & (out.attention <= 1)).all()
    assert torch.allclose(out.attention, torch.sigmoid(out.evidence)) or method == "iam"
    if method == "agcnn":
        assert out.box is not None and out.box.shape == (2, 4)
        assert ((out.box >= 0) & (out.box <= 1)).all()
        assert (out.box[:, 2] > out.box[:, 0]).all() and (out.box[:, 3] > out.box[:, 1]).all()
    else:  # a GAP + linear head: the class map's grid mean is exactly the logit
        assert out.box is None
        assert torch.allclose(out.evidence.mean(dim=(2, 3)), out.logits, atol=1e-5)


def _grads(modules) -> list[bool]:
    return [any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters()) for m in modules]


def test_agcnn_stages_train_one_branch_each() -> None:
    net = _net("agcnn")
    assert isinstance(net, AGCNN)
    x = torch.randn(2, 3, 64, 64)
    y = torch.randint(0, 2, (2, K)).float()
    branches = [net.global_net, net.local_net, net.fusion_fc]
    for stage in range(3):
        net.set_phase(stage)
        net.train()
        net.zero_grad(set_to_none=True)
        F.binary_cross_entropy_with_logits(net(x), y).backward()
        assert _grads(branches) == [i == stage for i in range(3)], stage
        # frozen branches keep batch-norm statistics (eval mode)
        assert net.global_net.training == (stage == 0)
    assert int(net.stage) == 2
    net.eval()
    with torch.no_grad():
        out = net.forward_all(x)
        g = net.global_net(x)
        pooled = torch.cat([g.amax(dim=(2, 3)), net._local(x, out.box)], dim=1)
    assert torch.allclose(out.logits, net.fusion_fc(pooled), atol=1e-5)  # the fusion stage answers


def _branch_logits(net: AGCNN, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Global, local and fusion logits of one eval pass."""
    net.eval()
    with torch.no_grad():
        g = net.global_net(x)
        pooled_g, pooled_l = g.amax(dim=(2, 3)), net._local(x, net.crop_box(g))
        return (
            net.global_fc(pooled_g),
            net.local_fc(pooled_l),
            net.fusion_fc(torch.cat([pooled_g, pooled_l], dim=1)),
        )


def test_agcnn_fusion_stage_starts_as_the_mean_of_the_branches() -> None:
    torch.manual_seed(0)
    net = _net("agcnn")
    assert isinstance(net, AGCNN) and net.fusion_init == "branches"
    x = torch.randn(3, 3, 64, 64)
    net.set_phase(0)
    net.set_phase(1)
    g, loc, fused = _branch_logits(net, x)
    assert not torch.allclose(fused, (g + loc) / 2, atol=1e-3)  # random before the fusion stage
    net.set_phase(2)
    g, loc, fused = _branch_logits(net, x)
    torch.testing.assert_close(fused, (g + loc) / 2, atol=1e-5, rtol=1e-5)
    # a later epoch of the stage, or a resume into it, keeps the trained fusion weights
    with torch.no_grad():
        net.fusion_fc.bias.add_(1.0)
    trained = {k: v.clone() for k, v in net.state_dict().items()}
    net.set_phase(2)
    torch.testing.assert_close(net.fusion_fc.bias, trained["fusion_fc.bias"], atol=0, rtol=0)
    resumed = _net("agcnn")
    assert isinstance(resumed, AGCNN)
    resumed.load_state_dict(trained)
    resumed.set_phase(2)
    torch.testing.assert_close(resumed.fusion_fc.weight, trained["fusion_fc.weight"], atol=0, rtol=0)
    # "random" leaves PyTorch's initialisation
    plain = _net("agcnn")
    assert isinstance(plain, AGCNN)
    plain.fusion_init = "random"
    before = plain.fusion_fc.weight.clone()
    plain.set_phase(1)
    plain.set_phase(2)
    torch.testing.assert_close(plain.fusion_fc.weight, before, atol=0, rtol=0)


def test_agcnn_fusion_init_is_a_checked_training_option(tmp_path: Path) -> None:
    from cral_model.cli.train import get_parser, resolve_config
    from cral_model.engine import _build_trainer

    with pytest.raises(ConfigError, match="agcnn_fusion_init"):
        TrainConfig(data_root="x", method="agcnn", agcnn_fusion_init="zeros")
    args = ["--data-root", "x", "--output", str(tmp_path), "--method", "agcnn", "--backbone", "resnet18"]
    cfg, _ = resolve_config(get_parser().parse_args([*args, "--pretrained", "none"]))
    assert cfg.agcnn_fusion_init == "branches"
    cfg, _ = resolve_config(
        get_parser().parse_args([*args, "--pretrained", "none", "--agcnn-fusion-init", "random"])
    )
    trainer = _build_trainer(cfg, torch.device("cpu"), build_model_from_config)
    assert getattr(trainer.model, "fusion_init", None) == "random"
    assert "fusion_init" not in cfg.model_config().__dict__  # training-only: not in the checkpoint's model


def test_can_gradients_reach_both_networks_and_the_gates() -> None:
    net = _net("can").train()
    x = torch.randn(2, 3, 64, 64)
    y = torch.randint(0, 2, (2, K)).float()
    F.binary_cross_entropy_with_logits(net(x), y).backward()
    assert _grads([net.net_a, net.net_b, net.gate_from_a, net.gate_from_b, net.fc]) == [True] * 5


def test_iam_round_one_erases_and_preserves_knowledge() -> None:
    net = _net("iam")
    assert isinstance(net, IAM)
    x = torch.randn(2, 3, 64, 64)
    y = torch.ones(2, K)
    net.train()
    out = net(x, y)
    assert isinstance(out, torch.Tensor)  # round 0: the plain classifier
    net.set_phase(1)
    assert int(net.round) == 1
    net.eval()  # right after the copy the teacher is the student
    with torch.no_grad():
        assert torch.equal(net.student(x), net.teacher(x))
    net.train()
    logits, kp = net(x, y)
    assert logits.shape == (2, K)
    # in training mode the student normalises with batch statistics, the teacher with running ones
    assert 0.0 <= float(kp.detach()) < 0.25
    (F.binary_cross_entropy_with_logits(logits, y) + kp).backward()
    assert _grads([net.student, net.teacher]) == [True, False]
    assert not net.teacher.training  # the teacher stays in eval mode


@pytest.mark.parametrize("method", NEW_METHODS)
def test_a_few_steps_overfit_one_tiny_batch(method: str) -> None:
    torch.manual_seed(0)
    net = _net(method)
    x = torch.randn(
        6, 3, 32, 32
    )  # 32 px: AG-CNN's 1 x 1 grid crops the whole image (the box is tested above)
    y = (torch.rand(6, K) < 0.3).float()
    last_phase = {"agcnn": 2, "iam": 1}.get(method, 0)
    for phase in range(last_phase + 1):
        net.set_phase(phase)
        opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=2e-3)
        for _ in range(15):
            net.train()
            out = net(x, y) if net.takes_targets else net(x)
            logits, extra = out if isinstance(out, tuple) else (out, None)
            loss = F.binary_cross_entropy_with_logits(logits, y) + (extra if extra is not None else 0)
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        final = F.binary_cross_entropy_with_logits(net(x), y).item()
    assert final < 0.2, final  # ln 2 = 0.69 at chance


# ------------------------------------------------------------------------------------ engine


def _cfg(root: Path, out: Path, method: str, **kw) -> TrainConfig:
    base = {
        "data_root": str(root), "output": str(out), "backbone": "resnet18", "input_size": 64, "resize": 64,
        "pretrained": "none", "batch_size": 4, "workers": 0, "threads": 1, "val_fraction": 0.3,
        "progress": False, "epochs": 1, "lr_steps": (), "method": method,
    }  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


class _Interrupt(Exception):
    pass


@pytest.mark.slow
@pytest.mark.parametrize("method", NEW_METHODS)
def test_train_resume_exactly_then_predictor_and_onnx_agree(
    method: str, synth_root: Path, tmp_path: Path
) -> None:
    epochs = 1 if method != "can" else 2  # AG-CNN: 3 stages, IAM: 2 rounds of one epoch each
    full = tmp_path / "full"
    fit(_cfg(synth_root, full, method, epochs=epochs, loss="can" if method == "can" else "bce"))
    log = [json.loads(line) for line in (full / "log.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in log] == {"agcnn": [0, 1, 2], "iam": [0, 1], "can": [0, 0]}[method]

    def crash(epoch: int, step: int) -> None:
        if epoch == 1 and step == 1:  # in the second stage / round / epoch
            raise _Interrupt

    part = tmp_path / "part"
    with pytest.raises(_Interrupt):
        fit(
            _cfg(synth_root, part, method, epochs=epochs, loss="can" if method == "can" else "bce"),
            on_step=crash,
        )
    assert train_main(["--output", str(part), "--resume", "--no-progress"]) == 0
    a, b = load_train_state(full / "last.pt"), load_train_state(part / "last.pt")
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k

    from cral_model import Predictor, read_metadata

    ckpt = full / "best.safetensors"
    assert read_metadata(ckpt)["model"]["method"] == method
    eager = Predictor.from_checkpoint(ckpt, device="cpu")
    assert type(eager.model).__name__ == {"agcnn": "AGCNN", "can": "CAN", "iam": "IAM"}[method]
    fast = Predictor.from_checkpoint(ckpt, device="cpu", fast="fp32")
    assert fast.backend == "onnxruntime-fp32"
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (70, 60), dtype=np.uint8) for _ in range(3)]
    for pe, pf in zip(eager.predict_batch(images), fast.predict_batch(images), strict=True):
        np.testing.assert_allclose(pe.probabilities, pf.probabilities, atol=1e-5)
        np.testing.assert_allclose(pe.attention, pf.attention, atol=1e-5)
        if method == "agcnn":
            assert pe.crop_box is not None and pf.crop_box is not None
            np.testing.assert_allclose(pe.crop_box, pf.crop_box, atol=1e-6)
        else:
            assert pe.crop_box is None and pf.crop_box is None


@pytest.mark.slow
def test_agcnn_two_gloo_ranks_match_one_process(synth_root: Path, tmp_path: Path) -> None:
    """AG-CNN freezes branches stage by stage after DDP wrapped the model: with --freeze-bn two ranks
    must still train exactly like one process (float32 rounding)."""
    import os
    import subprocess
    import sys

    from cral_model.cli.train import get_parser, resolve_config

    args = [
        "--data-root", str(synth_root), "--backbone", "resnet18", "--input-size", "64", "--resize", "64",
        "--pretrained", "none", "--batch-size", "8", "--workers", "0", "--threads", "1",
        "--val-fraction", "0.3", "--no-progress", "--epochs", "1", "--lr", "0.02", "--seed", "3",
        "--method", "agcnn", "--freeze-bn",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    two = tmp_path / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "cral_model.cli.train", "--output", str(two), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    one = tmp_path / "one"
    cfg, _ = resolve_config(get_parser().parse_args(["--output", str(one), *args]))
    fit(cfg)
    a, b = load_train_state(one / "last.pt"), load_train_state(two / "last.pt")
    assert a["epoch"] == b["epoch"] == 3
    for k in a["model"]:
        torch.testing.assert_close(b["model"][k], a["model"][k], atol=1e-5, rtol=0, msg=k)
