"""CRAL: category-wise residual attention learning for multi-label chest X-ray classification.

The names below are imported on first use (PEP 562), so that ``import cral_model.triage`` (numpy only)
does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cral_model.checkpoint import (
        CheckpointError,
        LoadedCheckpoint,
        load_checkpoint,
        read_metadata,
        save_checkpoint,
    )
    from cral_model.config import ModelConfig, PreprocessConfig
    from cral_model.devices import resolve_device
    from cral_model.inference import Prediction, Predictor, default_checkpoint_path
    from cral_model.labels import CLASS_NAMES
    from cral_model.models.backbones import PretrainedWeightsUnavailable
    from cral_model.models.cral import CRAL, CRALOutput, build_model, build_model_from_config

_HOMES = {
    "CLASS_NAMES": "cral_model.labels",
    "CRAL": "cral_model.models.cral",
    "CRALOutput": "cral_model.models.cral",
    "CheckpointError": "cral_model.checkpoint",
    "LoadedCheckpoint": "cral_model.checkpoint",
    "ModelConfig": "cral_model.config",
    "Prediction": "cral_model.inference",
    "Predictor": "cral_model.inference",
    "PreprocessConfig": "cral_model.config",
    "PretrainedWeightsUnavailable": "cral_model.models.backbones",
    "build_model": "cral_model.models.cral",
    "build_model_from_config": "cral_model.models.cral",
    "default_checkpoint_path": "cral_model.inference",
    "load_checkpoint": "cral_model.checkpoint",
    "read_metadata": "cral_model.checkpoint",
    "resolve_device": "cral_model.devices",
    "save_checkpoint": "cral_model.checkpoint",
}

__all__ = [  # written out for type checkers; a test checks it equals _HOMES
    "CLASS_NAMES",
    "CRAL",
    "CRALOutput",
    "CheckpointError",
    "LoadedCheckpoint",
    "ModelConfig",
    "Prediction",
    "Predictor",
    "PreprocessConfig",
    "PretrainedWeightsUnavailable",
    "build_model",
    "build_model_from_config",
    "default_checkpoint_path",
    "load_checkpoint",
    "read_metadata",
    "resolve_device",
    "save_checkpoint",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'cral_model' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
