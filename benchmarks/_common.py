"""Shared helpers for the benchmark suite: timing, statistics, the checkpoint and the real images."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
#: ../shared/data beside the repository (real images; absent in a user's fresh clone)
SHARED_DATA = ROOT.parent / "shared" / "data"
NIH64 = SHARED_DATA / "chestxray14-nih1000-64px" / "images"
FULLRES = SHARED_DATA / "chestxray14-fullres-samples" / "images"
DICOM = SHARED_DATA / "dicom"


@dataclass
class Timing:
    """Seconds of repeated runs of one thing."""

    name: str
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")

    @property
    def min(self) -> float:
        return min(self.seconds) if self.seconds else float("nan")

    @property
    def max(self) -> float:
        return max(self.seconds) if self.seconds else float("nan")


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, Timing]:
    """Time each function ``repeats`` times, round-robin (so load changes on a shared machine hit all alike).

    Returns:
        name -> :class:`Timing` (wall-clock seconds per call).
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    out = {name: Timing(name) for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            out[name].seconds.append(time.perf_counter() - t0)
    return out


def real_images(folder: Path, n: int | None = None, pattern: str = "*.png") -> list[Path]:
    """Sorted files in ``folder`` (the first ``n``), or [] when the folder is absent."""
    if not folder.is_dir():
        return []
    files = sorted(folder.glob(pattern))
    return files if n is None else files[:n]


def synthetic_images(folder: Path, n: int, size: int = 256) -> list[Path]:
    """Write ``n`` grey PNG test images (smooth structures plus noise) when no real data is available."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    paths = []
    for i in range(n):
        img = 120 + 80 * np.sin(6 * xx + i) * np.cos(4 * yy) + rng.normal(0, 20, (size, size))
        path = folder / f"synthetic_{i:03d}.png"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def ensure_checkpoint(
    path: str | None, workdir: Path, *, backbone: str, attention: str, input_size: int, base_size: int | None
) -> tuple[Path, str]:
    """The checkpoint to benchmark and where it came from.

    ``path`` when given; else the bundled demo checkpoint when it exists; else a freshly built
    (untrained, batch-norm statistics from random inputs) network with the given configuration, so the
    suite runs in a fresh clone. Timings do not depend on the weights' values; the fast path's accuracy
    check is more demanding on a trained model, which is why the bundled one is preferred.
    """
    import torch

    import cral_model

    if path:
        return Path(path), "given"
    bundled = cral_model.default_checkpoint_path()
    if bundled is not None and Path(bundled).is_file():
        return Path(bundled), "bundled"
    torch.manual_seed(0)
    model = cral_model.build_model(backbone, attention)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, input_size, input_size))
    out = workdir / f"bench_{backbone}_{attention}_{input_size}.safetensors"
    resize = input_size
    cfg = cral_model.PreprocessConfig(input_size=input_size, resize=resize, base_size=base_size)
    cral_model.save_checkpoint(model.eval(), out, preprocessing=cfg, thresholds=[0.5] * 14)
    return out, "built (untrained)"


def bare_backbone(name: str, like: Any = None, num_classes: int = 14):  # -> torch.nn.Module
    """The bare classifier of the same family (eval mode, CPU): torchvision's, or timm's for Lite0.

    Args:
        name: torchvision model name, e.g. ``"resnet18"``, or ``"efficientnet_lite0"`` (timm).
        like: a CRAL network whose backbone weights (and batch-norm statistics) are copied in, so both
            networks compute the same trunk activations (weights affect CPU speed through denormals);
            None keeps torchvision's random initialisation.
        num_classes: size of the ``fc``/``classifier`` output.
    """
    if name == "efficientnet_lite0":  # a timm backbone: the bare classifier is timm's own model
        import timm

        net = timm.create_model(name, pretrained=False, num_classes=num_classes, bn_eps=1e-3).eval()
        if like is not None:
            state = {k[len("net.") :]: v for k, v in like.backbone.state_dict().items()}
            missing, unexpected = net.load_state_dict(state, strict=False)
            if set(missing) - {"classifier.weight", "classifier.bias"} or unexpected:
                raise RuntimeError(f"backbone weights do not map onto timm {name}: {missing} {unexpected}")
        return net

    import torchvision

    net = torchvision.models.get_model(name, weights=None, num_classes=num_classes).eval()
    if like is not None:
        state = {}
        for key, value in like.backbone.state_dict().items():
            if key.startswith("stem."):  # ResNet trunk: stem = (conv1, bn1, relu, maxpool)
                idx, rest = key[len("stem.") :].split(".", 1)
                key = {"0": "conv1", "1": "bn1"}[idx] + "." + rest
            state[key] = value
        missing, unexpected = net.load_state_dict(state, strict=False)
        head = {k for k in missing if k.startswith(("fc.", "classifier."))}
        if set(missing) - head or unexpected:
            raise RuntimeError(f"backbone weights do not map onto torchvision {name}: {missing} {unexpected}")
    return net


def fmt_ms(seconds: float) -> str:
    return f"{1e3 * seconds:.1f}"


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
