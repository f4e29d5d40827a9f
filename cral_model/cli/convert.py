"""``cral-convert``: import a plain PyTorch state dict (``.pt``/``.pth``) into our safetensors format.

The input is read with ``torch.load(weights_only=True)``, PyTorch's restricted unpickler, which only
rebuilds tensors and plain containers: a file whose pickle would call arbitrary code is rejected instead
of executed. The weights must fit the architecture named on the command line exactly.
"""

from __future__ import annotations

import argparse
import logging
import pickle
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from cral_model.checkpoint import save_checkpoint
from cral_model.cli._defaults import field_default, param_default
from cral_model.config import ATTENTIONS, BACKBONES, MODES, ConfigError, ModelConfig, PreprocessConfig
from cral_model.models.cral import build_model_from_config

__all__ = ["ConversionError", "convert_state_dict", "get_parser", "main"]

log = logging.getLogger("cral_model.convert")
_PREFIXES = ("module.", "_orig_mod.", "model.")


class ConversionError(ValueError):
    """The input cannot be imported safely or does not fit the requested architecture."""


def _find_state_dict(obj: Any) -> Mapping[str, torch.Tensor]:
    if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state_dict", "weights"):
            if key in obj:
                return _find_state_dict(obj[key])
    raise ConversionError(
        "no state dict found (expected a dict of tensors, or one under 'state_dict'/'model')"
    )


def _strip(name: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if name.startswith(prefix):
                name, changed = name[len(prefix) :], True
    return name


def convert_state_dict(
    src: Path, dest: Path, config: ModelConfig, preprocessing: PreprocessConfig, dtype: str = "float32"
) -> Path:
    """Read ``src`` safely, check it against ``config`` and write a checkpoint to ``dest``.

    Raises:
        ConversionError: unsafe pickle content, no state dict, or weights that do not fit the model.
    """
    try:
        obj = torch.load(src, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ConversionError(
            f"{src.name} contains objects other than tensors and plain containers; refusing to unpickle "
            f"them (they could run code). Re-save a plain state dict: torch.save(model.state_dict(), ...). "
            f"Detail: {str(exc).splitlines()[0]}"
        ) from exc
    except (RuntimeError, OSError, EOFError) as exc:
        raise ConversionError(f"cannot read {src}: {exc}") from exc
    state = {_strip(k): v for k, v in _find_state_dict(obj).items()}
    model = build_model_from_config(config)
    expected = model.state_dict()
    # Compare names and shapes before load_state_dict, which raises a bare RuntimeError on a shape
    # mismatch even with strict=False (e.g. weights for another class count).
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    bad = [k for k, v in state.items() if k in expected and expected[k].shape != v.shape]
    if missing or unexpected or bad:
        raise ConversionError(
            f"the weights do not fit {config.backbone}/{config.attention}/{config.mode} with "
            f"{config.num_classes} classes: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, shape mismatch {bad[:5]}"
        )
    model.load_state_dict(state, strict=True)
    return save_checkpoint(
        model,
        dest,
        preprocessing=preprocessing,
        provenance={"converted_from": src.name, "command": "cral-convert"},
        dtype=dtype,
    )


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cral-convert",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("input", type=Path, help="a .pt/.pth file holding a state dict")
    p.add_argument("output", type=Path, help="the .safetensors checkpoint to write")
    p.add_argument("--backbone", choices=BACKBONES, required=True)
    # The defaults are ModelConfig's, PreprocessConfig's and convert_state_dict's own.
    p.add_argument(
        "--attention", choices=ATTENTIONS, default=field_default(ModelConfig, "attention"), help="attention"
    )
    p.add_argument("--mode", choices=MODES, default=field_default(ModelConfig, "mode"), help="Table 2 row")
    p.add_argument(
        "--num-classes", type=int, default=field_default(ModelConfig, "num_classes"), help="findings K"
    )
    p.add_argument(
        "--att-channels",
        type=int,
        default=field_default(ModelConfig, "att_channels"),
        help="att1 intermediate width; None: the backbone's channels / 8",
    )
    p.add_argument(
        "--input-size",
        type=int,
        default=field_default(PreprocessConfig, "input_size"),
        help="network input side",
    )
    p.add_argument(
        "--resize",
        type=int,
        default=field_default(PreprocessConfig, "resize"),
        help="resize side before the centre crop",
    )
    p.add_argument(
        "--base-size",
        type=int,
        default=field_default(PreprocessConfig, "base_size"),
        help="first resize to this side (low-resolution training data)",
    )
    p.add_argument(
        "--dtype",
        choices=["float32", "float16"],
        default=param_default(convert_state_dict, "dtype"),
        help="precision of the stored weights",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        cfg = ModelConfig(args.backbone, args.attention, args.mode, args.num_classes, args.att_channels)
        pre = PreprocessConfig(input_size=args.input_size, resize=args.resize, base_size=args.base_size)
        out = convert_state_dict(args.input, args.output, cfg, pre, args.dtype)
    except (ConversionError, ConfigError) as exc:
        sys.stderr.write(f"cral-convert: error: {exc}\n")
        return 2
    log.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
