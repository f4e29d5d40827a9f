"""Real forward/backward passes of every backbone x attention x mode."""

from __future__ import annotations

import pytest
import torch

from cral_model import CLASS_NAMES, build_model
from cral_model.config import ATTENTIONS, BACKBONES, MODES, ConfigError
from cral_model.models.backbones import PretrainedWeightsUnavailable


def test_class_names_are_the_papers_fourteen_in_order():
    assert CLASS_NAMES[0] == "Atelectasis"
    assert CLASS_NAMES[-1] == "Hernia"
    assert len(CLASS_NAMES) == len(set(CLASS_NAMES)) == 14
    assert "No Finding" not in CLASS_NAMES


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("mode", MODES)
def test_every_combination_builds_and_has_the_right_shapes(backbone, attention, mode):
    model = build_model(backbone, attention, mode, num_classes=5).eval()
    with torch.no_grad():
        logits, maps = model.forward_with_attention(torch.randn(2, 3, 64, 64))
        plain = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 5)
    assert plain.shape == (2, 5)
    assert maps.shape == (2, 5, 2, 2)
    assert torch.isfinite(logits).all()
    assert (maps >= 0).all() and (maps <= 1).all()


@pytest.mark.parametrize("size", [32, 96, (64, 128)])
def test_any_multiple_of_32_works(size):
    h, w = (size, size) if isinstance(size, int) else size
    model = build_model("resnet18", "att2").eval()
    with torch.no_grad():
        logits, maps = model.forward_with_attention(torch.randn(1, 3, h, w))
    assert logits.shape == (1, 14)
    assert maps.shape == (1, 14, h // 32, w // 32)


def test_densenet_features_are_post_relu():
    model = build_model("densenet121").eval()
    with torch.no_grad():
        feats = model.forward_features(torch.randn(2, 3, 64, 64))
    assert feats.shape[1] == model.out_channels == 1024
    assert (feats >= 0).all()


@pytest.mark.parametrize(
    ("backbone", "attention"), [("resnet18", "att1"), ("resnet18", "att2"), ("densenet121", "att1")]
)
def test_gradients_reach_the_backbone_and_the_attention(backbone, attention):
    model = build_model(backbone, attention).train()
    x = torch.randn(2, 3, 64, 64)
    y = torch.randint(0, 2, (2, 14)).float()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
    loss.backward()
    first = next(model.backbone.parameters())
    assert first.grad is not None and first.grad.abs().sum() > 0
    att_grads = [p.grad for p in model.attention.parameters()]
    assert all(g is not None for g in att_grads)
    assert sum(float(g.abs().sum()) for g in att_grads) > 0


def _naive_logits(head, feats, att, mode):
    """The paper's equations literally: materialise H (B, K, N, h, w), ReLU, GAP, per-class FC."""
    if mode == "no_residual":
        big = att[:, :, None] * feats[:, None]
    else:
        big = (1 + att[:, :, None]) * feats[:, None]
    pooled = torch.relu(big).mean(dim=(-1, -2))  # (B, K or 1, N)
    return (pooled * head.weight).sum(-1) + head.bias


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("mode", ["full", "no_residual", "no_category"])
def test_einsum_head_equals_the_naive_five_dimensional_form(attention, mode):
    model = build_model("resnet18", attention, mode).eval()
    with torch.no_grad():
        feats = model.forward_features(torch.randn(3, 3, 96, 96)).double()
        model = model.double()
        z, attended = model.attention(feats)
        att = torch.sigmoid(z)
        if attention == "att2":
            assert (attended < 0).any(), "att2's trunk features should take negative values here"
        fast = model.head(attended, att)
        slow = _naive_logits(model.head, attended, att, mode)
    torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-10)


def test_no_attention_is_gap_plus_linear():
    model = build_model("resnet18", mode="no_attention").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = model.forward_features(x)
        expected = feats.mean(dim=(2, 3)) @ model.head.weight.T + model.head.bias
        torch.testing.assert_close(model(x), expected)
        _, maps = model.forward_with_attention(x)
    # class-agnostic substitute: the same map for every class
    assert torch.equal(maps[:, 0], maps[:, 5])


def test_seeded_forward_is_reproducible():
    torch.manual_seed(1)
    a = build_model("resnet18", "att1").eval()
    torch.manual_seed(1)
    b = build_model("resnet18", "att1").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


def test_a_few_steps_overfit_one_tiny_batch():
    torch.manual_seed(0)
    model = build_model("resnet18", "att1").train()
    x = torch.randn(4, 3, 64, 64)
    y = (torch.rand(4, 14) > 0.7).float()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(25):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"backbone": "vgg16"},
        {"backbone": "resnet18", "attention": "att3"},
        {"backbone": "resnet18", "mode": "x"},
        {"backbone": "resnet18", "num_classes": 0},
        {"backbone": "resnet18", "pretrained": "yes"},
    ],
)
def test_bad_configs_are_refused(kwargs):
    with pytest.raises(ConfigError):
        build_model(**kwargs)


def test_imagenet_weights_offline_fail_with_a_message_saying_where_to_put_them(monkeypatch, tmp_path):
    import urllib.error

    import torch.hub

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(PretrainedWeightsUnavailable) as info:
        build_model("resnet18", pretrained="imagenet")
    message = str(info.value)
    assert "resnet18" in message
    assert str(tmp_path / "hub" / "checkpoints") in message
    assert "--pretrained none" in message


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("mode", MODES)
def test_evidence_maps_average_to_the_logits(attention, mode):
    """The per-cell evidence is an exact decomposition of the logit (GAP + linear head)."""
    model = build_model("resnet18", attention, mode, num_classes=4).eval()
    with torch.no_grad():
        out = model.forward_all(torch.randn(2, 3, 128, 96))
    assert out.evidence.shape == (2, 4, 4, 3)
    torch.testing.assert_close(out.evidence.mean(dim=(2, 3)), out.logits, rtol=1e-5, atol=1e-5)
