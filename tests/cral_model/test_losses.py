"""cral_model.losses: the CAN loss on hand-computed cases, and its use by every method through cral-train."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cral_model.losses import LOSSES, CANLoss, build_loss


def test_balanced_class_without_focusing_is_bce() -> None:
    logits = torch.tensor([[0.3, -1.2], [2.0, 0.5]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # one positive, one negative per class
    assert CANLoss(gamma=0.0)(logits, targets).item() == pytest.approx(
        F.binary_cross_entropy_with_logits(logits, targets).item(), rel=1e-6
    )


def test_focal_factor_at_chance() -> None:
    # p = 0.5 everywhere, balanced: weight 1/2 each, (1 - p_t)^2 = 1/4 -> 2 * 1/2 * 1/4 * ln 2
    loss = CANLoss()(torch.zeros(2, 1), torch.tensor([[1.0], [0.0]]))
    assert loss.item() == pytest.approx(0.25 * math.log(2), rel=1e-6)


def test_rare_positives_weigh_more() -> None:
    # 1 positive, 3 negatives: w_pos = (3 + 1) / 6, w_neg = (1 + 1) / 6; BCE = ln 2 at logit 0
    loss = CANLoss(gamma=0.0)(torch.zeros(4, 1), torch.tensor([[1.0], [0.0], [0.0], [0.0]]))
    expected = (2 * 4 / 6 + 3 * 2 * 2 / 6) / 4 * math.log(2)  # = 5/6 ln 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_easy_samples_are_down_weighted() -> None:
    targets = torch.tensor([[1.0], [0.0]])
    easy = CANLoss()(torch.tensor([[4.0], [-4.0]]), targets).item()
    bce_easy = F.binary_cross_entropy_with_logits(torch.tensor([[4.0], [-4.0]]), targets).item()
    assert easy < bce_easy * 0.01  # (1 - 0.982)^2 ~ 3e-4


def test_build_loss_names() -> None:
    assert LOSSES == ("bce", "can")
    assert isinstance(build_loss("can"), CANLoss)
    assert isinstance(build_loss("bce"), torch.nn.BCEWithLogitsLoss)
    with pytest.raises(ValueError, match="unknown loss"):
        build_loss("dice")


def test_gradient_flows() -> None:
    logits = torch.randn(3, 5, requires_grad=True)
    CANLoss()(logits, (torch.rand(3, 5) < 0.3).float()).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
