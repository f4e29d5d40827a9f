"""Parameter counts and CPU forward time per 224 x 224 image: CRAL att1/att2 vs the bare backbones.

Usage: python -m benchmarks.model_stats [--repeats 5] [--backbones resnet50 densenet121] [--size 224]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from cral_model import build_model
from cral_model.models.backbones import build_backbone


class _Bare(nn.Module):
    """The plain torchvision classifier equivalent: backbone + GAP + one linear layer."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.body, n = build_backbone(name)
        self.fc = nn.Linear(n, 14)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).mean(dim=(2, 3)))


def _time(model: nn.Module, x: torch.Tensor, repeats: int) -> list[float]:
    model.eval()
    with torch.inference_mode():
        model(x)  # warm-up
        out = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--backbones", nargs="+", default=["resnet50", "densenet121"])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    x = torch.randn(1, 3, args.size, args.size)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, input 1x3x{args.size}x{args.size}")
    print("| model | params (M) | vs backbone | forward median ms | min | max |")
    print("|---|---|---|---|---|---|")
    for name in args.backbones:
        bare = _Bare(name)
        n0 = sum(p.numel() for p in bare.parameters())
        rows = [("bare " + name, bare)] + [
            (f"CRAL {a} {name}", build_model(name, a)) for a in ("att1", "att2")
        ]
        for label, model in rows:
            n = sum(p.numel() for p in model.parameters())
            ts = _time(model, x, args.repeats)
            print(
                f"| {label} | {n / 1e6:.2f} | {n / n0:.2f}x | {1e3 * statistics.median(ts):.1f} | "
                f"{1e3 * min(ts):.1f} | {1e3 * max(ts):.1f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
