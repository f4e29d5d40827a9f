"""A plain prediction record with the fields of `cxr_viewer.core.prediction.PredictionLike`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class FakePrediction:
    """What a model answers for one image, without a model (no evidence maps)."""

    class_names: tuple[str, ...]
    probabilities: np.ndarray
    attention: np.ndarray
    saliency: np.ndarray
    thresholds: np.ndarray | None
