"""Small seeded CRAL networks and checkpoints for the tests (torch and cral_model are imported on use).

The weights are random (``pretrained=None``), so the checkpoints say nothing about chest X-rays: they
exercise loading, preprocessing, the forward pass and the viewer around it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from cral_model import CRAL


def random_cral(
    backbone: str = "resnet18",
    attention: str = "att1",
    mode: str = "full",
    *,
    num_classes: int = 14,
    seed: int = 0,
    warm_up_batch: int = 0,
    size: int = 64,
) -> CRAL:
    """A seeded, randomly initialised CRAL network in eval mode, on the CPU.

    Args:
        backbone: backbone name (`cral_model.build_model`).
        attention: ``att1`` or ``att2``.
        mode: ``full``, ``no_category``, ``no_residual`` or ``no_attention``.
        num_classes: K.
        seed: `torch.manual_seed` set before the weights are drawn.
        warm_up_batch: when > 0, one forward pass in training mode over that many random
            (3, ``size``, ``size``) images, so that the batch-norm statistics are not their defaults
            (images then get different scores, and a round trip covers the buffers too).
        size: side of the warm-up images, in pixels.

    Returns:
        The network, in eval mode.
    """
    import torch

    import cral_model

    torch.manual_seed(seed)
    model = cral_model.build_model(
        backbone, attention=attention, mode=mode, num_classes=num_classes, pretrained=None
    )
    if warm_up_batch > 0:
        model.train()
        with torch.no_grad():
            model(torch.randn(warm_up_batch, 3, size, size))
    return model.eval()


def write_tiny_checkpoint(
    path: Path,
    *,
    backbone: str = "resnet18",
    attention: str = "att1",
    seed: int = 0,
    warm_up_batch: int = 0,
    input_size: int = 64,
    threshold: float | None = 0.5,
    provenance: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    model_card: str | None = None,
) -> Path:
    """Write a small random CRAL checkpoint (`random_cral`) whose preprocessing is ``input_size`` px.

    Args:
        path: destination, normally ``*.safetensors``.
        backbone: backbone name.
        attention: ``att1`` or ``att2``.
        seed: seed of the weights (and of the warm-up images).
        warm_up_batch: see `random_cral` (the warm-up images are ``input_size`` px).
        input_size: network input side; the image is resized to it directly.
        threshold: the operating point stored for all 14 classes; no thresholds when None.
        provenance: stored as is (`cral_model.save_checkpoint` fills in date, commit and torch).
        metrics: free-form metrics to store.
        model_card: text of a ``MODEL_CARD.md`` written beside the checkpoint, when given.

    Returns:
        The path written.
    """
    import cral_model

    model = random_cral(backbone, attention, seed=seed, warm_up_batch=warm_up_batch, size=input_size)
    out = cral_model.save_checkpoint(
        model,
        path,
        preprocessing=cral_model.PreprocessConfig(input_size=input_size, resize=input_size),
        thresholds=None if threshold is None else [threshold] * 14,
        provenance=provenance,
        metrics=metrics,
    )
    if model_card is not None:
        (out.parent / "MODEL_CARD.md").write_text(model_card)
    return out
