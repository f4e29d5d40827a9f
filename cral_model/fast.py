"""Fast CPU inference: the same checkpoint run by ONNX Runtime.

The model (probabilities, attention maps, class-agnostic map) is exported once with
``torch.onnx.export`` and cached on disk under a key made of the weights' SHA-256, the input size,
the variant and the library versions, so later starts load it in well under a second. ``int8`` adds
static post-training quantisation (QDQ, per-channel weights) calibrated on preprocessed images.

Why ONNX Runtime fp32 (``docs/PERFORMANCE.md``, ``python -m benchmarks``): measured side by side against
eager PyTorch, channels-last, TorchScript freezing, ``torch.compile`` and int8 quantisation on the demo
configuration, it is the fastest CPU option whose probabilities match eager fp32 (within 1e-6, same
top-8 order): 1.6 x eager at batch 1 with one thread each on a 2-core AVX2 machine. int8 (static QDQ,
per-channel) was 2.7-3.2 x faster but moved probabilities by 0.02-0.05 and reordered the top 8 of most
images (no VNNI on that CPU); dynamic int8 was slower than eager.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from collections.abc import Sequence

    from cral_model.models.base import ChestNet

__all__ = ["FAST_VARIANTS", "FastPathUnavailable", "OnnxRunner", "default_cache_dir", "fast_path_available"]

log = logging.getLogger(__name__)
FAST_VARIANTS: tuple[str, ...] = ("fp32", "int8")


class FastPathUnavailable(RuntimeError):
    """ONNX Runtime (or the exporter's dependencies) is not installed or export failed."""


def fast_path_available() -> bool:
    """True when onnxruntime and onnx can be imported."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def default_cache_dir() -> Path:
    """``$CXR_TRIAGE_CACHE`` or ``$XDG_CACHE_HOME/cxr-triage`` (default ``~/.cache/cxr-triage``)."""
    env = os.environ.get("CXR_TRIAGE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cxr-triage"


class _Outputs(nn.Module):
    """What the runtime computes: probabilities (B, K), attention (B, K, h, w), saliency (B, h, w),
    evidence (B, K, h, w), and for a method with a crop (AG-CNN) its box (B, 4)."""

    def __init__(self, model: ChestNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model.forward_all(x)
        outputs = (torch.sigmoid(out.logits), out.attention, out.saliency, out.evidence)
        return (*outputs, out.box) if out.box is not None else outputs


def _output_names(model: ChestNet) -> list[str]:
    names = _GRAPH_OUTPUTS.split(",")
    return [*names, "crop_box"] if model.returns_box else names


def _export(model: ChestNet, input_size: int, dest: Path) -> None:
    wrapper = _Outputs(model).eval()
    x = torch.zeros(2, 3, input_size, input_size)
    batch = torch.export.Dim("batch", min=1, max=1024)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        program = torch.onnx.export(
            wrapper,
            (x,),
            dynamo=True,
            input_names=["x"],
            output_names=_output_names(model),
            dynamic_shapes=({0: batch},),
            external_data=False,
            verbose=False,
        )
        if program is None:  # only the TorchScript exporter (dynamo=False) returns nothing
            raise RuntimeError("torch.onnx.export(dynamo=True) returned no ONNX program")
        program.save(str(dest), external_data=False)


def _quantize(src: Path, dest: Path, calibration: np.ndarray) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class _Reader(CalibrationDataReader):  # type: ignore[misc]  # onnxruntime has no type information
        def __init__(self) -> None:
            self._it = iter([{"x": calibration[i : i + 1]} for i in range(len(calibration))])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(dest),
            _Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
        )


#: the exported graph's outputs, in order (the cache key includes them)
_GRAPH_OUTPUTS = "probabilities,attention,saliency,evidence"


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class OnnxRunner:
    """A CRAL-family model (`ChestNet`) compiled for ONNX Runtime's CPU provider.

    Args:
        model: the network (eval mode).
        input_size: the network input side S.
        weights_key: a string identifying the weights (the checkpoint's SHA-256); used for the cache.
        variant: ``"fp32"`` or ``"int8"``.
        calibration: (N, 3, S, S) float32 preprocessed images, required for ``int8``.
        cache_dir: where exported models are kept (default `default_cache_dir`).
        threads: intra-op threads (default: torch's).

    Raises:
        FastPathUnavailable: onnxruntime/onnx missing or the export failed.
    """

    def __init__(
        self,
        model: ChestNet,
        input_size: int,
        *,
        weights_key: str,
        variant: str = "fp32",
        calibration: np.ndarray | None = None,
        cache_dir: Path | None = None,
        threads: int | None = None,
    ) -> None:
        if variant not in FAST_VARIANTS:
            raise ValueError(f"variant must be one of {FAST_VARIANTS}")
        if not fast_path_available():
            raise FastPathUnavailable(
                "onnxruntime and onnx are needed for the fast path (pip install onnxruntime onnx)"
            )
        import onnxruntime as ort

        self.variant = variant
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        # the export's outputs are part of the key: a cached graph from an older layout is never reused
        base = f"{','.join(_output_names(model))}|{torch.__version__}|{ort.__version__}|{input_size}"
        versions = f"{base}|{variant}|{weights_key}"
        fp32_cached = cache / "onnx" / f"cral-{_key(f'{base}|fp32|{weights_key}')}.onnx"
        if variant == "int8":
            if calibration is None or len(calibration) == 0:
                raise ValueError("int8 needs calibration images")
            versions += (
                "|" + hashlib.sha256(np.ascontiguousarray(calibration, np.float32).tobytes()).hexdigest()
            )
        path = cache / "onnx" / f"cral-{_key(versions)}.onnx"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
                fp32 = Path(tmp) / "fp32.onnx"
                try:
                    if variant == "int8" and fp32_cached.is_file():  # quantise the cached export
                        fp32 = fp32_cached
                    else:
                        _export(model, input_size, fp32)
                    if variant == "int8":
                        assert calibration is not None
                        _quantize(
                            fp32, Path(tmp) / "int8.onnx", np.ascontiguousarray(calibration, np.float32)
                        )
                        fp32 = Path(tmp) / "int8.onnx"
                except Exception as exc:  # exporter errors come in many types
                    raise FastPathUnavailable(f"ONNX export failed: {type(exc).__name__}: {exc}") from exc
                os.replace(fp32, path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        # No busy-waiting between runs: spinning pool threads keep a core busy for a while after each
        # call, which on a small or shared machine slows the GUI thread and the decode threads that run
        # beside inference (measured in benchmarks/: without spinning ORT itself was also faster there).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = path
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def run(self, batch: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(B, 3, S, S) float32 -> (probabilities (B, K), attention (B, K, h, w), saliency (B, h, w),
        evidence (B, K, h, w))."""
        probs, att, sal, ev, *_ = self.run_all(batch)
        return probs, att, sal, ev

    def run_all(self, batch: np.ndarray | torch.Tensor) -> list[np.ndarray]:
        """Every output of the graph: those of `run`, then AG-CNN's crop box (B, 4) when it has one."""
        x = batch.numpy() if isinstance(batch, torch.Tensor) else batch
        outputs: list[np.ndarray] = self.session.run(None, {"x": np.ascontiguousarray(x, dtype=np.float32)})
        return outputs

    def __repr__(self) -> str:
        return f"OnnxRunner(variant={self.variant!r}, path={str(self.path)!r})"


def calibration_batch(images: Sequence[Any], prepare: Any) -> np.ndarray:
    """Stack ``prepare(image)`` for each image into an (N, 3, S, S) float32 array for int8 calibration."""
    return torch.stack([prepare(im) for im in images]).numpy()
