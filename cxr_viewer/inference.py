"""The viewer's side of the model: what it needs from a predictor, and the adapter to ``cral_model``.

Nothing here imports torch or ``cral_model`` at module level: they are imported inside
:func:`load_predictor`, which the inference worker calls on its own thread, so the window appears
before the (slow) torch import happens.

What the viewer passes to the model is :func:`model_input`: the image mapped to grey [0, 1] by the
input contract (8-bit files / 255 exactly as training reads them; DICOM through its VOI LUT or window;
display orientation, higher = brighter), float32, full resolution. The predictor does its own resizing
and normalisation (its single preprocessing pipeline). The on-screen window never reaches the model.

Triage score of a study (the worklist's sort key): ``max_k p_k / t_k`` over classes when the model has
per-class thresholds, else ``max_k p_k``. The rule has one home, `cral_model.triage` (numpy only); this
module is the viewer's only door to it (:func:`rank_findings`, :func:`triage_score`,
:func:`rank_prediction`), as it is the viewer's only importer of ``cral_model``.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from cxr_viewer.core import findings as _findings
from cxr_viewer.core.network_input import network_input
from cxr_viewer.core.prediction import BatchPredictor, PredictionLike, Predictor

if TYPE_CHECKING:
    from collections.abc import Sequence

    from cxr_viewer.core.findings import Finding, TriageRule
    from cxr_viewer.core.image import XrayImage

__all__ = [
    "FAST_ENV",
    "TOP_K",
    "BatchPredictor",
    "ModelInfo",
    "ModelProvenance",
    "PredictionLike",
    "Predictor",
    "attention_region",
    "default_model_path",
    "fast_mode",
    "load_predictor",
    "model_card_text",
    "model_input",
    "model_provenance",
    "rank_findings",
    "rank_prediction",
    "triage_score",
]

#: Environment variable for the CPU fast path: ``off`` (or ``0``/``no``) turns it off, ``fp32``/``int8``
#: pick a variant; unset means ``auto`` (ONNX Runtime fp32 when it is installed, else PyTorch).
FAST_ENV = "CXR_TRIAGE_FAST"

#: findings listed per study (panel, CSV ``top8``)
TOP_K = 8

NOT_FOR_CLINICAL_USE = "Research demonstration only - NOT FOR CLINICAL USE. Do not use for diagnosis."


def _rule() -> TriageRule:
    from cral_model import triage  # numpy only: importing it does not import torch

    return triage


def rank_findings(
    probabilities: Sequence[float] | np.ndarray,
    class_names: Sequence[str],
    thresholds: Sequence[float] | np.ndarray | None = None,
    top_k: int | None = TOP_K,
) -> list[Finding]:
    """Classes, the most suspicious first, by `cral_model.triage` (see `cxr_viewer.core.findings`)."""
    return _findings.rank_findings(probabilities, class_names, thresholds, top_k, rule=_rule())


def triage_score(
    probabilities: Sequence[float] | np.ndarray, thresholds: Sequence[float] | np.ndarray | None = None
) -> float:
    """``max_k p_k / t_k`` (``max_k p_k`` without thresholds; 0.0 for no classes), `cral_model.triage`."""
    return _rule().triage_score(probabilities, thresholds)


def rank_prediction(prediction: PredictionLike, top_k: int | None = TOP_K) -> tuple[list[Finding], float]:
    """(findings in triage order, triage score) of one prediction.

    Raises:
        AttributeError, ValueError: for a malformed prediction (missing fields, mismatched lengths).
    """
    probs, thresholds = prediction.probabilities, prediction.thresholds
    ranked = rank_findings(probs, prediction.class_names, thresholds, top_k)
    return ranked, triage_score(probs, thresholds)


@runtime_checkable
class _Preprocessed(Protocol):
    """A predictor that says how it resizes (`cral_model.Predictor` does)."""

    preprocessing: Any


@dataclass(frozen=True)
class ModelInfo:
    """A loaded model, described for the GUI thread (plain data, no torch objects)."""

    path: str
    device: str
    class_names: tuple[str, ...]
    thresholds: tuple[float, ...] | None
    metadata: dict[str, Any]
    #: (top, left, bottom, right) fractions of the image the attention maps cover
    region: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
    #: how it runs, e.g. "pytorch" or "onnxruntime-fp32" ("" when the predictor does not say)
    backend: str = ""

    @property
    def name(self) -> str:
        """The checkpoint's file name."""
        return Path(self.path).name if self.path else "(unnamed model)"


@dataclass(frozen=True)
class ModelProvenance:
    """Which model made a result, as the DICOM results carry it (`cxr_viewer.results`).

    Attributes:
        name: the algorithm, e.g. ``"CRAL efficientnet_lite0 att1"`` (from the checkpoint's model config).
        version: the software that ran it (``cxr-triage`` package version).
        checkpoint: the checkpoint's file name ("" when the predictor has no file).
        checkpoint_sha256: SHA-256 of the checkpoint file's bytes, 64 hex digits ("" without a file).
        weights_sha256: the checkpoint's own digest of its weights (metadata ``weights_sha256``), or "".
    """

    name: str
    version: str
    checkpoint: str = ""
    checkpoint_sha256: str = ""
    weights_sha256: str = ""


@functools.lru_cache(maxsize=8)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_provenance(predictor: Predictor | ModelInfo) -> ModelProvenance:
    """The provenance of a loaded predictor (or of its `ModelInfo`): name, version, checkpoint file and
    its SHA-256.

    Reads the checkpoint file once to hash it (cached by path, size and modification time), so call it
    off the GUI thread. A predictor without a checkpoint file (a test fake) gets empty digests.
    """
    from cxr_viewer import __version__

    meta = dict(predictor.metadata or {})
    if not meta.get("path") and isinstance(predictor, ModelInfo) and predictor.path:
        meta["path"] = predictor.path
    raw = meta.get("model")
    model = raw if isinstance(raw, dict) else {}
    parts = [str(model.get(k)) for k in ("backbone", "attention") if model.get(k)]
    name = " ".join(["CRAL", *parts]) if parts else "CRAL"
    path = str(meta.get("path") or "")
    digest = ""
    if path:
        try:
            st = os.stat(path)
            digest = _file_sha256(path, st.st_size, st.st_mtime_ns)
        except OSError:
            digest = ""
    weights = meta.get("weights_sha256")
    return ModelProvenance(
        name=name[:64],
        version=__version__,
        checkpoint=Path(path).name if path else "",
        checkpoint_sha256=digest,
        weights_sha256=str(weights) if isinstance(weights, str) else "",
    )


def default_model_path() -> Path | None:
    """The bundled demo checkpoint (or ``$CXR_TRIAGE_MODEL``), or None when there is none yet."""
    try:
        import cral_model
    except ImportError:  # pragma: no cover - the model package is part of the same distribution
        return None
    path = cral_model.default_checkpoint_path()
    return Path(path) if path is not None else None


def fast_mode(enabled: bool | None = None) -> str:
    """The ``fast=`` argument for :func:`load_predictor` from a command-line switch and ``$CXR_TRIAGE_FAST``.

    Args:
        enabled: ``False`` (``--no-fast``) always gives ``"off"``; ``True`` or None defer to the
            environment variable, whose default is ``"auto"``.

    Returns:
        ``"off"``, ``"auto"``, ``"fp32"`` or ``"int8"``.
    """
    if enabled is False:
        return "off"
    env = os.environ.get(FAST_ENV, "").strip().lower()
    if env in ("off", "0", "no", "false", "none"):
        return "off" if enabled is None else "auto"
    if env in ("fp32", "int8"):
        return env
    return "auto"


def load_predictor(
    path: str | os.PathLike[str], device: str = "auto", fast: str | None = None
) -> BatchPredictor:
    """Load a ``cral-train`` checkpoint (safetensors; never unpickled). Slow: call off the GUI thread.

    Args:
        path: the checkpoint.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        fast: the CPU fast path (``cral_model.Predictor``'s ``fast``): None/``"off"`` eager PyTorch,
            ``"auto"`` ONNX Runtime when available (the first use of a checkpoint exports it once,
            a few seconds; later starts reuse the cached file), ``"fp32"``, ``"int8"``.

    Raises:
        cral_model.CheckpointError: for files that are not valid checkpoints.
    """
    import cral_model

    predictor: BatchPredictor = cral_model.Predictor.from_checkpoint(path, device=device, fast=fast)
    return predictor


def attention_region(predictor: Predictor) -> tuple[float, float, float, float]:
    """Which part of the image the attention maps cover, as (top, left, bottom, right) fractions.

    ``cral_model`` squashes the whole image to ``resize`` x ``resize`` and then centre-crops
    ``input_size``; the maps cover that crop. Without that information the whole image is assumed.
    """
    if not isinstance(predictor, _Preprocessed):
        return (0.0, 0.0, 1.0, 1.0)
    resize = int(predictor.preprocessing.resize or 0)
    size = int(predictor.preprocessing.input_size or 0)
    if not resize or not size or size >= resize:
        return (0.0, 0.0, 1.0, 1.0)
    off = ((resize - size) // 2) / resize
    end = off + size / resize
    return (off, off, end, end)


def describe(predictor: Predictor, path: str | os.PathLike[str] | None) -> ModelInfo:
    """Plain-data description of a loaded predictor."""
    thr = predictor.thresholds
    return ModelInfo(
        path=str(path or ""),
        device=str(predictor.device),
        class_names=tuple(predictor.class_names),
        thresholds=None if thr is None else tuple(float(t) for t in np.asarray(thr).reshape(-1)),
        metadata=dict(predictor.metadata or {}),
        region=attention_region(predictor),
        backend=str(predictor.backend) if isinstance(predictor, BatchPredictor) else "",
    )


def model_input(image: XrayImage) -> np.ndarray:
    """The array handed to :meth:`Predictor.predict` for a study: grey float32 in [0, 1], display
    orientation, by the input contract (`cxr_viewer.core.network_input`), exactly what training reads."""
    return network_input(image)


def _fmt(value: Any, indent: int = 2) -> list[str]:
    pad = " " * indent
    if isinstance(value, dict):
        lines = []
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{k}:")
                lines += _fmt(v, indent + 2)
            else:
                lines.append(f"{pad}{k}: {_short(v)}")
        return lines
    if isinstance(value, list):
        if all(not isinstance(v, (dict, list)) for v in value):
            return [pad + ", ".join(_short(v) for v in value)]
        return [line for v in value for line in _fmt(v, indent)]
    return [pad + _short(value)]


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    text = str(v)
    return text if len(text) <= 300 else text[:297] + "..."


def model_card_text(info: ModelInfo | None, class_names: Sequence[str] | None = None) -> str:
    """The "About model" text: checkpoint metadata plus ``MODEL_CARD.md`` beside the file, if any.

    Always carries the not-for-clinical-use notice.
    """
    lines = [NOT_FOR_CLINICAL_USE, ""]
    if info is None:
        lines += [
            "No trained model loaded.",
            "",
            "Images can be viewed, but no findings are computed. Use File > Load model... to pick a",
            "checkpoint written by cral-train (*.safetensors).",
        ]
        return "\n".join(lines)
    lines += [
        f"Checkpoint: {info.path}",
        f"Device: {info.device}" + (f" ({info.backend})" if info.backend else ""),
    ]
    names = list(class_names or info.class_names)
    lines.append(f"Classes ({len(names)}): {', '.join(names)}")
    if info.thresholds is not None:
        lines.append(
            "Thresholds: " + ", ".join(f"{n}={t:.3f}" for n, t in zip(names, info.thresholds, strict=False))
        )
    else:
        lines.append("Thresholds: none (triage score = highest probability)")
    meta = {k: v for k, v in info.metadata.items() if k not in ("class_names", "thresholds", "path")}
    if meta:
        lines += ["", "Metadata:", *_fmt(meta)]
    card = Path(info.path).with_name("MODEL_CARD.md") if info.path else None
    if card is not None and card.is_file():
        try:
            text = card.read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
        if text:
            lines += ["", "MODEL_CARD.md:", "", text.strip()]
    return "\n".join(lines)
