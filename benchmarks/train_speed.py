"""Training throughput (images/s) of CRAL variants vs the no-attention baseline, same backbone/batch/input.

One step = forward + BCE loss + backward + SGD update (momentum 0.9, weight decay 1e-4) on a fixed
random batch, so only the network is measured (no data loading). Reports the median over ``--steps``
timed steps after ``--warmup`` untimed ones (variants interleaved step by step), and each variant's
speed relative to the baseline, by wall clock and by this process's CPU time.

Usage: python -m benchmarks.train_speed [--backbone resnet18] [--input-size 128] [--batch-size 32]
       [--steps 7] [--threads 2] [--modes full no_category no_residual no_attention] [--attention att1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from torch import nn

from cral_model import build_model


class _Stepper:
    """One model with its optimizer; ``step()`` runs and times one training step."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        self.model, self.x, self.y = model.train(), x, y
        self.opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        self.crit = nn.BCEWithLogitsLoss()
        self.times: list[float] = []
        self.cpu_times: list[float] = []

    def step(self, record: bool) -> None:
        if self.x.is_cuda:
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        self.opt.zero_grad(set_to_none=True)
        loss = self.crit(self.model(self.x), self.y)
        loss.backward()
        self.opt.step()
        if self.x.is_cuda:
            torch.cuda.synchronize()
        if record:
            self.times.append(time.perf_counter() - t0)
            self.cpu_times.append(time.process_time() - c0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--attention", default="att1")
    p.add_argument("--modes", nargs="+", default=["full", "no_attention"])
    p.add_argument("--input-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.randn(args.batch_size, 3, args.input_size, args.input_size, device=dev)
    y = (torch.rand(args.batch_size, 14, device=dev) < 0.2).float()
    steppers = {
        mode: _Stepper(build_model(args.backbone, args.attention, mode).to(dev), x, y) for mode in args.modes
    }
    # Interleave the variants step by step so that load changes on a shared machine hit all of them alike.
    for i in range(args.warmup + args.steps):
        for st in steppers.values():
            st.step(record=i >= args.warmup)
    results = {}
    for mode, st in steppers.items():
        med = statistics.median(st.times)
        results[mode] = (
            med,
            args.batch_size / med,
            min(st.times),
            max(st.times),
            statistics.median(st.cpu_times),
        )
    base = results.get("no_attention")
    out = sys.stdout
    out.write(
        f"training speed, {args.backbone} {args.attention}, batch {args.batch_size}, {args.input_size} px, "
        f"{dev.type}, {torch.get_num_threads()} threads, median of {args.steps} steps\n\n"
    )
    out.write(
        "| mode | s/step (median) | min-max | images/s (median) | speed vs no_attention (median) "
        "| speed vs no_attention (fastest step) | images per CPU-second "
        "| speed vs no_attention (CPU time) |\n"
        "|---|---|---|---|---|---|---|---|\n"
    )
    for mode, (med, ips, lo, hi, cpu) in results.items():
        rel = f"{base[0] / med:.3f}" if base else "n/a"
        rel_min = f"{base[2] / lo:.3f}" if base else "n/a"
        rel_cpu = f"{base[4] / cpu:.3f}" if base else "n/a"
        out.write(
            f"| {mode} | {med:.3f} | {lo:.3f}-{hi:.3f} | {ips:.1f} | {rel} | {rel_min} "
            f"| {args.batch_size / cpu:.1f} | {rel_cpu} |\n"
        )
    out.write(
        "\nOn a shared machine wall-clock times include waiting for other processes; the CPU time of this "
        "process (time.process_time, all its threads) is the steadier measure of the work per step.\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
