"""The small inference API the viewer and the tools use: numpy in, numpy out."""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from cral_model import triage
from cral_model.checkpoint import load_checkpoint
from cral_model.devices import resolve_device
from cral_model.labels import CLASS_NAMES
from cral_model.preprocessing import preprocess

if TYPE_CHECKING:
    from collections.abc import Sequence

    from cral_model.config import PreprocessConfig
    from cral_model.models.base import ChestNet

__all__ = ["DEFAULT_MODEL_ENV", "Prediction", "Predictor", "default_checkpoint_path"]

_log = logging.getLogger(__name__)

#: Environment variable that points the tools at a checkpoint instead of the bundled one.
DEFAULT_MODEL_ENV = "CXR_TRIAGE_MODEL"
_BUNDLED_NAME = "cral_demo.safetensors"


def default_checkpoint_path() -> Path | None:
    """The checkpoint the tools use by default, or None when there is none.

    Order: ``$CXR_TRIAGE_MODEL``; ``resources/models/cral_demo.safetensors`` beside the source tree
    (editable install); the same path inside a PyInstaller bundle.
    """
    env = os.environ.get(DEFAULT_MODEL_ENV)
    if env:
        return Path(env)
    roots = [Path(__file__).resolve().parents[1]]
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        roots.insert(0, Path(bundle))
    for root in roots:
        candidate = root / "resources" / "models" / _BUNDLED_NAME
        if candidate.is_file():
            return candidate
    return None


def _state_digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class Prediction:
    """The model's answer for one image (numpy only).

    Attributes:
        class_names: K names.
        probabilities: (K,) float32 in [0, 1].
        attention: (K, h, w) float32 in [0, 1], per-class attention maps on the feature grid.
        saliency: (h, w) float32 in [0, 1], class-agnostic map max_n |F| (the paper's Fig. 5).
        thresholds: (K,) operating points, or None when the checkpoint has none.
        evidence: (K, h, w) float32 per-cell logits whose grid mean is each class's logit (an
            attention-weighted class activation map, `CategoryResidualHead.evidence`), or None.
        crop_box: (4,) float32 ``(x0, y0, x1, y1)``, fractions of the network input (the frame the
            attention maps cover): the region AG-CNN's local branch looked at; None for other methods.
    """

    class_names: tuple[str, ...]
    probabilities: np.ndarray
    attention: np.ndarray
    saliency: np.ndarray
    thresholds: np.ndarray | None = None
    evidence: np.ndarray | None = None
    crop_box: np.ndarray | None = None

    def evidence_map(self, index: int) -> np.ndarray | None:
        """Class ``index``'s map on an absolute scale: (h, w) float32 >= 0 (None without evidence).

        Each cell is ``sigmoid(cell logit) / threshold`` (``/ 1`` without thresholds): >= 1 where that
        cell alone would carry the class to its operating point, small where the class's evidence is
        small. Nothing is stretched: a 2 % finding with a 20 % threshold stays near 0.1. Displays clip
        at 1 after upsampling (so the region at the threshold keeps its extent).
        """
        if self.evidence is None:
            return None
        local = 1.0 / (1.0 + np.exp(-np.asarray(self.evidence[index], dtype=np.float64)))
        scale = 1.0
        if self.thresholds is not None and float(self.thresholds[index]) > 0:
            scale = float(self.thresholds[index])
        return (local / scale).astype(np.float32)

    def top_k(self, k: int = 8) -> list[tuple[str, float]]:
        """The k most probable findings as (name, probability), descending (ties keep class order)."""
        order = np.argsort(-self.probabilities, kind="stable")[:k]
        return [(self.class_names[i], float(self.probabilities[i])) for i in order]

    def flagged(self) -> list[str]:
        """Findings at or above their threshold, in triage order (empty without thresholds; the rule is
        `cral_model.triage`)."""
        mask = triage.flagged_mask(self.probabilities, self.thresholds)
        return [
            self.class_names[i] for i in triage.triage_order(self.probabilities, self.thresholds) if mask[i]
        ]

    def triage_score(self) -> float:
        """max_c p_c / t_c (>= 1 means at least one finding is flagged); max_c p_c without thresholds
        (`cral_model.triage.triage_score`)."""
        return triage.triage_score(self.probabilities, self.thresholds)


class Predictor:
    """Runs a CRAL-family model (any method of `cral_model.config.METHODS`) on 2-D images.

    Args:
        model: a `ChestNet` (`CRAL`, AG-CNN, CAN, attention mining).
        preprocessing: the pipeline the model was trained for.
        class_names: defaults to `CLASS_NAMES`.
        thresholds: per-class operating points or None.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        metadata: checkpoint metadata (model card fields), if any.
        fast: CPU fast path: ``None``/``"off"`` (eager PyTorch), ``"fp32"`` or ``"int8"`` (ONNX Runtime,
            see `cral_model.fast`), ``"auto"`` (``"fp32"`` on the CPU when onnxruntime is installed). When
            the fast path cannot be built the predictor falls back to PyTorch and says so in ``backend``.
        calibration: images for the ``"int8"`` variant.
    """

    def __init__(
        self,
        model: ChestNet,
        preprocessing: PreprocessConfig,
        *,
        class_names: Sequence[str] | None = None,
        thresholds: Sequence[float] | None = None,
        device: str = "auto",
        metadata: dict[str, Any] | None = None,
        fast: str | None = None,
        calibration: Sequence[np.ndarray] | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.model = model.eval().to(self.device)
        if self.device.startswith("cuda"):
            self.model = self.model.to(memory_format=torch.channels_last)
        self.preprocessing = preprocessing
        self.class_names = tuple(class_names) if class_names is not None else CLASS_NAMES
        self.thresholds = None if thresholds is None else np.asarray(thresholds, dtype=np.float32)
        self.metadata = dict(metadata or {})
        self._runner: Any = None
        self.backend = f"torch-{self.device}"
        if fast not in (None, "off") and self.device == "cpu":
            self._init_fast(fast, calibration)

    def _init_fast(self, fast: str, calibration: Sequence[np.ndarray] | None) -> None:
        from cral_model import fast as fastpath

        variant = "fp32" if fast == "auto" else fast
        if fast == "auto" and not fastpath.fast_path_available():
            return
        key = self.metadata.get("weights_sha256") or _state_digest(self.model)
        calib = None
        if variant == "int8":
            if not calibration:
                raise ValueError("the int8 fast path needs calibration images")
            calib = fastpath.calibration_batch(calibration, self.prepare)
        try:
            runner = fastpath.OnnxRunner(
                self.model, self.preprocessing.input_size, weights_key=key, variant=variant, calibration=calib
            )
            if variant == "fp32":
                self._check_runner(runner)
        except Exception as exc:  # export, a damaged cached file, or a disagreement: PyTorch answers
            _log.warning("fast path unavailable, using PyTorch: %s", exc)
            return
        self._runner = runner
        self.backend = f"onnxruntime-{variant}"

    @torch.inference_mode()
    def _check_runner(self, runner: Any, tolerance: float = 1e-4) -> None:
        """Refuse an fp32 fast path whose answers differ from PyTorch's on a fixed probe batch.

        Costs one forward pass at load; guards against a stale or damaged cached export and exporter
        bugs, so that the fast path can only ever change speed, never the findings.
        """
        size = self.preprocessing.input_size
        gen = torch.Generator().manual_seed(0)
        probe = torch.randn(2, 3, size, size, generator=gen)
        out = self.model.forward_all(probe)
        expected = (torch.sigmoid(out.logits.float()), out.attention.float(), out.evidence.float())
        got = runner.run(probe)
        diff = max(
            float(np.max(np.abs(g - e.numpy())))
            for g, e in zip((got[0], got[1], got[3]), expected, strict=True)
        )
        if not diff <= tolerance:
            raise RuntimeError(f"ONNX Runtime disagrees with PyTorch by {diff:.2g} on the probe batch")

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike[str], device: str = "auto", fast: str | None = None
    ) -> Predictor:
        """Load a checkpoint written by `save_checkpoint` (validated; never unpickled).

        ``fast`` selects the CPU fast path (see the class docstring).
        """
        loaded = load_checkpoint(path)
        meta = dict(loaded.metadata)
        meta["path"] = str(path)
        return cls(
            loaded.model,
            loaded.preprocessing,
            class_names=loaded.class_names,
            thresholds=loaded.thresholds,
            device=device,
            metadata=meta,
            fast=fast,
        )

    def prepare(self, image: np.ndarray, value_range: tuple[float, float] | None = None) -> torch.Tensor:
        """One image -> network input (C, S, S) on the CPU (the evaluation transform).

        ``image`` follows the input contract (`cral_model.preprocessing`): uint8, uint16, float in
        [0, 1], or any dtype with ``value_range=(black, white)``.
        """
        return preprocess(image, self.preprocessing, value_range)

    @torch.inference_mode()
    def predict_tensor(self, batch: torch.Tensor) -> list[Prediction]:
        """Run on an already preprocessed batch (B, C, S, S)."""
        if self._runner is not None:
            probs, att, sal, ev, *rest = self._runner.run_all(batch)
            return self._predictions(probs, att, sal, ev, rest[0] if rest else None)
        x = batch.to(self.device, non_blocking=True)
        if self.device.startswith("cuda"):
            x = x.contiguous(memory_format=torch.channels_last)
        out = self.model.forward_all(x)
        probs = torch.sigmoid(out.logits.float()).cpu().numpy()
        att = out.attention.float().cpu().numpy()
        sal = out.saliency.float().cpu().numpy()
        ev = out.evidence.float().cpu().numpy()
        boxes = None if out.box is None else out.box.float().cpu().numpy()
        return self._predictions(probs, att, sal, ev, boxes)

    def _predictions(
        self,
        probs: np.ndarray,
        att: np.ndarray,
        sal: np.ndarray,
        ev: np.ndarray,
        boxes: np.ndarray | None,
    ) -> list[Prediction]:
        """One :class:`Prediction` per image of a batch's outputs (eager or ONNX)."""
        return [
            Prediction(
                self.class_names,
                probs[i],
                att[i],
                sal[i],
                self.thresholds,
                ev[i],
                None if boxes is None else boxes[i],
            )
            for i in range(probs.shape[0])
        ]

    def predict_prepared(self, inputs: Sequence[torch.Tensor]) -> list[Prediction]:
        """Inputs from :meth:`prepare` (each (C, S, S)) -> one prediction each, in one forward pass."""
        return self.predict_tensor(torch.stack(list(inputs)))

    def predict(self, image: np.ndarray, value_range: tuple[float, float] | None = None) -> Prediction:
        """One 2-D image (any size, display orientation, higher = brighter) -> `Prediction`.

        uint8 is read as / 255, uint16 as / 65535, float must be in [0, 1]; any other dtype needs
        ``value_range=(black, white)`` (see the input contract in `cral_model.preprocessing`).
        """
        return self.predict_tensor(self.prepare(image, value_range)[None])[0]

    def predict_batch(self, images: Sequence[np.ndarray], batch_size: int = 16) -> list[Prediction]:
        """Many images, in chunks of ``batch_size``; results in input order."""
        results: list[Prediction] = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            results.extend(self.predict_tensor(torch.stack([self.prepare(im) for im in chunk])))
        return results
