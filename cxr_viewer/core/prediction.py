"""The typed seam between the viewer and a model: what a prediction and a predictor must offer.

`cral_model.Prediction` and `cral_model.Predictor` satisfy these protocols structurally; so do the
fakes of the tests. Everything of the viewer that touches a model's output or a model (the worklist
pipeline, the inference worker, ``cxr-triage``'s batch loop, the overlays) is typed against them, never
against ``cral_model`` itself (only `cxr_viewer.inference` imports ``cral_model``; an import contract
checks it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np

__all__ = ["BatchPredictor", "PredictionLike", "Predictor", "SupportsEvidenceMap"]


@runtime_checkable
class PredictionLike(Protocol):
    """What the viewer reads from a prediction for one image."""

    @property
    def class_names(self) -> tuple[str, ...]:
        """K class names."""
        ...

    @property
    def probabilities(self) -> np.ndarray:
        """(K,) float32 in [0, 1]."""
        ...

    @property
    def attention(self) -> np.ndarray:
        """(K, h, w) float32 in [0, 1], per-class maps on the feature grid."""
        ...

    @property
    def saliency(self) -> np.ndarray:
        """(h, w) float32 in [0, 1], the class-agnostic map."""
        ...

    @property
    def thresholds(self) -> np.ndarray | None:
        """(K,) per-class operating points, or None."""
        ...


@runtime_checkable
class SupportsEvidenceMap(Protocol):
    """A prediction that can draw a class's map on an absolute scale (`cral_model.Prediction` can)."""

    def evidence_map(self, index: int) -> np.ndarray | None:
        """(h, w) float32 >= 0, 1 = the class's threshold; None when the model gave no evidence."""
        ...


@runtime_checkable
class Predictor(Protocol):
    """A model that analyses one image at a time (what the viewer's inference worker needs)."""

    device: str
    class_names: tuple[str, ...]
    thresholds: np.ndarray | None
    metadata: dict[str, Any]

    def predict(self, image: np.ndarray) -> PredictionLike:
        """One 2-D image by the input contract (`cral_model.preprocessing`) -> prediction."""
        ...


@runtime_checkable
class BatchPredictor(Predictor, Protocol):
    """A predictor that can also preprocess images on other threads and analyse them in batches
    (what ``cxr-triage`` needs; `cral_model.Predictor` is one)."""

    backend: str

    def prepare(self, image: np.ndarray) -> Any:
        """One image -> the network input (opaque to the viewer; thread-safe, may run on a pool)."""
        ...

    def predict_prepared(self, inputs: Sequence[Any]) -> Sequence[PredictionLike]:
        """Network inputs from :meth:`prepare` -> one prediction each, in order (one forward pass)."""
        ...
