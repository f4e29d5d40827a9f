"""CRAL: category-wise residual attention learning for multi-label chest X-ray classification."""

from cral_model.checkpoint import CheckpointError, LoadedCheckpoint, load_checkpoint, read_metadata, save_checkpoint
from cral_model.config import ModelConfig, PreprocessConfig
from cral_model.inference import Prediction, Predictor, default_checkpoint_path, resolve_device
from cral_model.labels import CLASS_NAMES
from cral_model.models.backbones import PretrainedWeightsUnavailable
from cral_model.models.cral import CRAL, CRALOutput, build_model, build_model_from_config

__all__ = [
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
