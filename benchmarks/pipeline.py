"""File-to-findings latency and batch-triage throughput, each against the bare torchvision backbone.

Both sides run in the same process, interleaved call by call, with the same torch thread count, on the
same preprocessed input size. The bare backbone gets an already preprocessed tensor (no file reading);
the pipeline starts from the file, so the ratio shows what decoding, preprocessing, the attention head
and the Python glue cost on top of the network.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from benchmarks._common import Timing, interleaved

if TYPE_CHECKING:
    from pathlib import Path


def latency(
    predictors: dict[str, Any], bare: Any, image: Path, repeats: int
) -> tuple[dict[str, Timing], tuple[int, ...]]:
    """Time ``load_image`` + ``predict`` (findings and maps) per predictor vs the bare forward.

    Returns:
        (name -> Timing, the network input shape). The bare backbone is under ``"backbone"``.
    """
    import torch

    from cxr_viewer.core.io import load_image
    from cxr_viewer.core.network_input import network_input

    first = next(iter(predictors.values()))
    x = first.prepare(network_input(load_image(image)))[None]

    def bare_forward() -> None:
        with torch.inference_mode():
            bare(x)

    fns: dict[str, Any] = {"backbone": bare_forward}
    for name, pred in predictors.items():
        fns[name] = lambda pred=pred: pred.predict(network_input(load_image(image)))
    return interleaved(fns, repeats=repeats, warmup=2), tuple(x.shape)


def throughput(
    predictors: dict[str, Any],
    bare: Any,
    files: list[Path],
    *,
    batch_size: int,
    workers: int,
    rounds: int,
) -> dict[str, Timing]:
    """Images per second: ``triage_files`` over ``files`` vs the bare backbone on batches of the same size.

    Returns:
        name -> Timing whose ``seconds`` are *per image* (so the ratio of medians is a throughput ratio).
    """
    import torch

    from cxr_viewer.batch import collect_files, triage_files

    first = next(iter(predictors.values()))
    size = first.preprocessing.input_size
    n = len(files)
    x = torch.randn(batch_size, 3, size, size)
    n_batches = math.ceil(n / batch_size)
    found = collect_files(files)

    def bare_run() -> None:
        with torch.inference_mode():
            for _ in range(n_batches - 1):
                bare(x)
            bare(x[: n - (n_batches - 1) * batch_size])

    fns: dict[str, Any] = {"backbone": bare_run}
    for name, pred in predictors.items():
        fns[name] = lambda pred=pred: triage_files(found, pred, batch_size=batch_size, workers=workers)
    timings = interleaved(fns, repeats=rounds, warmup=1)
    for t in timings.values():
        t.seconds = [s / n for s in t.seconds]
    return timings
