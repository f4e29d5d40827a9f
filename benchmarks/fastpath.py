"""CPU inference options for one checkpoint, measured side by side: speed and agreement with eager fp32.

Options: eager fp32 (the reference), eager channels-last, TorchScript trace + freeze +
``optimize_for_inference``, ONNX Runtime fp32 (what ``cral_model.fast`` ships), ONNX Runtime int8 (static
QDQ per-channel, calibrated on real images that are not in the evaluation set; and dynamic), and
``torch.compile`` (full mode only: compiling takes minutes on two cores).

Agreement is measured on real images: the largest |probability difference| to eager fp32 over all
images and classes, and the fraction of images whose top-8 order is identical.
"""

from __future__ import annotations

import copy
import logging
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import Timing, interleaved

log = logging.getLogger(__name__)

Runner = Callable[[Any], np.ndarray]  # (B, 3, S, S) tensor -> probabilities (B, K)


@dataclass
class OptionResult:
    """One inference option."""

    name: str
    batch1: Timing | None = None
    batch16: Timing | None = None  # seconds per image
    max_abs_diff: float = float("nan")
    top8_same: float = float("nan")  # fraction of images with the same top-8 order as eager fp32
    setup_s: float = float("nan")
    error: str = ""
    notes: list[str] = field(default_factory=list)


def _torch_runner(model: Any, channels_last: bool = False) -> Runner:
    import torch

    def run(x: Any) -> np.ndarray:
        with torch.inference_mode():
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return torch.sigmoid(model.forward_all(x).logits).numpy()

    return run


def _build_options(
    model: Any, input_size: int, calib: np.ndarray, cache: Path, full: bool, weights_key: str
) -> dict[str, Any]:
    """name -> zero-argument builder returning a Runner."""
    import torch

    from cral_model import fast as fastpath

    def eager() -> Runner:
        return _torch_runner(model)

    def channels_last() -> Runner:
        m = copy.deepcopy(model).to(memory_format=torch.channels_last)
        return _torch_runner(m, channels_last=True)

    def torchscript() -> Runner:
        wrapper = fastpath._Outputs(copy.deepcopy(model)).eval()
        x = torch.randn(2, 3, input_size, input_size)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(wrapper, x)
            frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))

        def run(x: Any) -> np.ndarray:
            with torch.inference_mode():
                return frozen(x)[0].numpy()

        return run

    def ort(variant: str) -> Callable[[], Runner]:
        def build() -> Runner:
            runner = fastpath.OnnxRunner(
                model,
                input_size,
                weights_key=weights_key,
                variant=variant,
                calibration=calib if variant == "int8" else None,
                cache_dir=cache,
            )
            return lambda x: runner.run(x)[0]

        return build

    def ort_dynamic() -> Runner:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic

        fp32 = fastpath.OnnxRunner(
            model, input_size, weights_key=weights_key, variant="fp32", cache_dir=cache
        )
        dest = Path(scratch.name) / "dynamic-int8.onnx"
        quantize_dynamic(str(fp32.path), str(dest), weight_type=QuantType.QInt8, per_channel=True)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        opts.log_severity_level = 3
        sess = ort.InferenceSession(str(dest), opts, providers=["CPUExecutionProvider"])
        return lambda x: sess.run(None, {"x": np.ascontiguousarray(x.numpy(), np.float32)})[0]

    def compiled() -> Runner:
        # compile the same function the predictor runs (forward_all + sigmoid), not just ``forward``
        wrapper = torch.compile(fastpath._Outputs(copy.deepcopy(model)).eval(), dynamic=False)

        def run(x: Any) -> np.ndarray:
            with torch.inference_mode():
                return wrapper(x)[0].numpy()

        return run

    scratch = tempfile.TemporaryDirectory(prefix="cxr-bench-")  # removed with the last reference
    options: dict[str, Any] = {
        "eager fp32 (reference)": eager,
        "eager channels-last": channels_last,
        "TorchScript freeze": torchscript,
        "ONNX Runtime fp32": ort("fp32"),
        "ONNX Runtime int8 static QDQ": ort("int8"),
    }
    if full:  # slow to build or to run, and not a candidate (see docs/PERFORMANCE.md)
        options["ONNX Runtime int8 dynamic"] = ort_dynamic
        options["torch.compile"] = compiled
    return options


def compare(
    model: Any,
    input_size: int,
    eval_inputs: Any,
    calib_inputs: Any,
    *,
    repeats: int,
    full: bool,
    cache: Path | None = None,
    weights_key: str = "bench",
) -> dict[str, OptionResult]:
    """Build every option, check its agreement with eager fp32 and time batch 1 and batch 16.

    Args:
        model: the CRAL network (eval mode, CPU).
        input_size: network input side.
        eval_inputs: (N, 3, S, S) preprocessed real images for the agreement check.
        calib_inputs: (M, 3, S, S) other images, for int8 calibration.
        repeats: timed calls per option and batch size.
        full: also measure dynamic int8 and ``torch.compile``.
        cache: where exported ONNX files go (default: a temporary folder).
        weights_key: cache key of the weights (the predictor's, to reuse its export).
    """
    import time

    import torch

    tmp = None
    if cache is None:
        tmp = tempfile.TemporaryDirectory(prefix="cxr-bench-")
        cache = Path(tmp.name)
    results: dict[str, OptionResult] = {}
    runners: dict[str, Runner] = {}
    for name, build in _build_options(
        model, input_size, calib_inputs.numpy(), cache, full, weights_key
    ).items():
        res = OptionResult(name)
        results[name] = res
        t0 = time.perf_counter()
        try:
            runners[name] = build()
            runners[name](eval_inputs[:2])
        except Exception as exc:  # an option that does not work here is reported, not fatal
            res.error = (
                f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"[:160]
            )
            runners.pop(name, None)
            continue
        res.setup_s = time.perf_counter() - t0

    ref_name = "eager fp32 (reference)"
    outputs = {
        name: np.concatenate([run(eval_inputs[i : i + 16]) for i in range(0, len(eval_inputs), 16)])
        for name, run in runners.items()
    }
    ref = outputs[ref_name]
    ref_order = np.argsort(-ref, axis=1, kind="stable")[:, :8]
    for name, probs in outputs.items():
        order = np.argsort(-probs, axis=1, kind="stable")[:, :8]
        results[name].max_abs_diff = float(np.max(np.abs(probs - ref)))
        results[name].top8_same = float(np.mean(np.all(order == ref_order, axis=1)))

    x1 = eval_inputs[:1]
    x16 = eval_inputs[:16] if len(eval_inputs) >= 16 else eval_inputs.repeat(16, 1, 1, 1)[:16]
    with torch.inference_mode():
        t1 = interleaved({n: (lambda r=r: r(x1)) for n, r in runners.items()}, repeats=repeats, warmup=2)
        t16 = interleaved(
            {n: (lambda r=r: r(x16)) for n, r in runners.items()}, repeats=max(3, repeats // 3), warmup=1
        )
    for name in runners:
        results[name].batch1 = t1[name]
        t16[name].seconds = [s / len(x16) for s in t16[name].seconds]
        results[name].batch16 = t16[name]
    if tmp is not None:
        tmp.cleanup()
    return results
