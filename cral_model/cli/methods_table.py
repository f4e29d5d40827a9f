"""``make methods-table``: CRAL, AG-CNN, CAN, attention mining and the no-attention baseline, side by side.

The measured comparison of ``docs/METHODS.md``: every method trained with the bundled model's config
(``configs/demo_model.yaml``: EfficientNet-Lite0 from ImageNet, 224 px, AdamW, cosine schedule) on the
1,275 real NIH images below ``--shared-data``, over ``--seeds``, evaluated on the same held-out
validation patients (patient-level bootstrap intervals), with the training time per epoch and the CPU
forward time per image. Each method is one ordinary ``cral-ablation`` command (printed in the log), run
into ``RUNS/<method>/``; up to ``--parallel`` of them at a time, one thread each. The merged table goes to
``RUNS/methods.md`` and ``RUNS/methods.json``. Re-running resumes and skips finished runs.

Budget (``--budget``): ``equal`` (default) gives every method the config's total number of epochs E: AG-CNN
E // 3 per stage (3 stages), attention mining E // rounds per round, so that the comparison is at the
same number of passes over the data; ``per-phase`` gives every stage / round E epochs (the papers' way:
AG-CNN trains each stage as long as the global branch).

``--smoke`` is a plumbing check only (a few batches of the 64 px images at 64 px, one epoch per phase, no
ImageNet weights): its numbers mean nothing, and its table says so on its first line.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cral_model.config import METHODS

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["get_parser", "group_commands", "main"]

_log = logging.getLogger("cral_model.cli.methods_table")
_ROOT = Path(__file__).resolve().parents[2]
#: the real NIH images the bundled model trains on, below --shared-data
_DATA_FOLDERS = ("chestxray14-nih1000-64px", "chestxray14-trainval-512px")
_SMOKE = [
    "--max-train-images", "16", "--input-size", "64", "--resize", "72", "--batch-size", "8",
    "--pretrained", "none", "--warmup-epochs", "0",
]  # fmt: skip
SMOKE_BANNER = "SMOKE RUN (plumbing check on a few 64 px images): these numbers are not results."


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cral_model.cli.methods_table",
        description="Train and evaluate CRAL, its no-attention baseline, AG-CNN, CAN and iterative attention "
        "mining under the bundled model's config and budget; one table (docs/METHODS.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--shared-data", default=str(_ROOT.parent / "shared" / "data"), help="../shared/data")
    p.add_argument("--config", default=str(_ROOT / "configs" / "demo_model.yaml"), help="training config")
    p.add_argument("--runs", default=str(_ROOT / "runs" / "methods-table"), help="folder for the runs")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="methods to run")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="training seeds")
    p.add_argument("--budget", choices=("equal", "per-phase"), default="equal", help="epochs of the phases")
    p.add_argument("--parallel", type=int, default=2, help="methods trained at a time (one thread each)")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (patient level)")
    p.add_argument("--smoke", action="store_true", help="tiny plumbing run (numbers are meaningless)")
    p.add_argument(
        "--speed",
        action="store_true",
        help="only measure, side by side on random inputs, ms per training step and CPU ms per image of each "
        "method on the config's backbone and input size (no data, no training run)",
    )
    p.add_argument("--speed-batch", type=int, default=8, help="batch of --speed")
    p.add_argument("--speed-steps", type=int, default=3, help="timed rounds of --speed (after one warm-up)")
    return p


def measure_speed(
    methods: Sequence[str], backbone: str, input_size: int, *, batch: int = 8, steps: int = 3
) -> list[dict[str, Any]]:
    """Median ms per training step (forward, loss, backward, SGD step; every stage of AG-CNN and both
    kinds of attention-mining round) and per image of an eval forward (``forward_all``), per method.

    The methods are timed in turns (round-robin over ``steps`` rounds after one warm-up round), so that
    a slow moment of a shared machine falls on all of them alike. Random inputs, random weights, CPU,
    float32, the current torch thread count.
    """
    import statistics

    import torch

    from cral_model.config import ModelConfig
    from cral_model.models.cral import build_model_from_config

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, input_size, input_size, generator=gen)
    y = (torch.rand(batch, 14, generator=gen) < 0.2).float()
    phases = {"agcnn": (0, 1, 2), "iam": (0, 1)}
    variants = [("cral", "full", 0), ("cral", "no_attention", 0)] + [
        (m, "full", ph) for m in methods if m != "cral" for ph in phases.get(m, (0,))
    ]
    nets = {}
    for method, mode, phase in variants:
        torch.manual_seed(0)
        net = build_model_from_config(ModelConfig(backbone=backbone, method=method, mode=mode))
        net.set_phase(phase)
        opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
        nets[(method, mode, phase)] = (net, opt)
    crit = torch.nn.BCEWithLogitsLoss()
    times: dict[tuple[str, str, int], dict[str, list[float]]] = {
        v: {"train": [], "infer": []} for v in variants
    }
    for round_ in range(steps + 1):
        for v, (net, opt) in nets.items():
            net.train()
            t0 = time.perf_counter()
            out = net(x, y) if net.takes_targets else net(x)
            logits, extra = out if isinstance(out, tuple) else (out, None)
            loss = crit(logits, y) + (extra if extra is not None else 0.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            t1 = time.perf_counter()
            net.eval()
            with torch.inference_mode():
                net.forward_all(x)
            t2 = time.perf_counter()
            if round_:  # the first round warms up
                times[v]["train"].append(1000 * (t1 - t0))
                times[v]["infer"].append(1000 * (t2 - t1) / batch)
    return [
        {
            "method": m,
            "mode": mode,
            "phase": ph,
            "params_m": sum(p.numel() for p in nets[(m, mode, ph)][0].parameters()) / 1e6,
            "train_ms_per_step": statistics.median(times[(m, mode, ph)]["train"]),
            "infer_ms_per_image": statistics.median(times[(m, mode, ph)]["infer"]),
        }
        for m, mode, ph in variants
    ]


def format_speed(rows: Sequence[dict[str, Any]], backbone: str, input_size: int, batch: int) -> str:
    """Markdown table of `measure_speed`, with each method's ratio to the no-attention baseline."""
    from cral_model.cli.ablation import _label

    base = next(r for r in rows if r["method"] == "cral" and r["mode"] == "no_attention")
    lines = [
        f"{backbone}, {input_size} px, batch {batch}, CPU float32, median of timed rounds",
        "",
        "| method | parameters (M) | ms / training step | x baseline | CPU ms / image (eval) | x baseline |",
        "|---|---|---|---|---|---|",
    ]
    phase_names = {"agcnn": ("global stage", "local stage", "fusion stage"), "iam": ("round 0", "round >= 1")}
    for r in rows:
        label = _label(r)
        if r["method"] in phase_names:
            label += f" ({phase_names[r['method']][r['phase']]})"
        lines.append(
            f"| {label} | {r['params_m']:.1f} | {r['train_ms_per_step']:.0f} | "
            f"{r['train_ms_per_step'] / base['train_ms_per_step']:.2f} | {r['infer_ms_per_image']:.1f} | "
            f"{r['infer_ms_per_image'] / base['infer_ms_per_image']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def _phase_epochs(method: str, total: int, budget: str, rounds: int) -> int:
    """Epochs per phase for ``method`` given the config's ``total`` epochs."""
    if budget == "per-phase" or method in ("cral", "can"):
        return total
    phases = 3 if method == "agcnn" else rounds
    return max(1, total // phases)


def group_commands(args: argparse.Namespace) -> dict[str, list[str]]:
    """One ``cral-ablation`` command per method: ``{method: argv}`` (CRAL runs its full and
    no-attention modes)."""
    from cral_model.train_config import TrainConfig, load_yaml_config

    base = TrainConfig.from_dict(load_yaml_config(args.config))
    data = Path(args.shared_data)
    folders = _DATA_FOLDERS[:1] if args.smoke else _DATA_FOLDERS
    total = 1 if args.smoke else base.epochs
    commands: dict[str, list[str]] = {}
    for method in args.methods:
        modes = ["full", "no_attention"] if method == "cral" else ["full"]
        epochs = _phase_epochs(method, total, args.budget, base.iam_rounds)
        commands[method] = [
            sys.executable, "-m", "cral_model.cli.ablation",
            "--output", str(Path(args.runs) / method),
            "--methods", method, "--modes", *modes, "--seeds", *map(str, args.seeds), "--cost",
            "--eval-split", "val", "--bootstrap", str(args.bootstrap),
            "--config", args.config, "--epochs", str(epochs),
            "--data-root", *(str(data / f) for f in folders),
            "--labels-dir", str(data / "chestxray14-labels"),
            "--no-progress", *(_SMOKE if args.smoke else []),
        ]  # fmt: skip
    return commands


def _run(commands: dict[str, list[str]], runs: Path, parallel: int) -> dict[str, int]:
    """Run the commands, at most ``parallel`` at a time; each one's output goes to ``RUNS/<name>.log``."""
    runs.mkdir(parents=True, exist_ok=True)
    pending = list(commands.items())
    running: dict[str, tuple[subprocess.Popen[bytes], Any]] = {}
    status: dict[str, int] = {}
    while pending or running:
        while pending and len(running) < max(parallel, 1):
            name, cmd = pending.pop(0)
            _log.info("%s: %s", name, shlex.join(cmd))
            log = open(runs / f"{name}.log", "wb")  # noqa: SIM115  # closed when the process ends
            running[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log)
        time.sleep(1.0)
        for name, (proc, log) in list(running.items()):
            if proc.poll() is not None:
                log.close()
                status[name] = proc.returncode
                _log.info("%s finished with status %d", name, proc.returncode)
                del running[name]
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    from cral_model.cli.ablation import format_table

    args = get_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runs = Path(args.runs)
    if args.speed:
        from cral_model.train_config import TrainConfig, load_yaml_config

        base = TrainConfig.from_dict(load_yaml_config(args.config))
        size = 64 if args.smoke else base.input_size
        rows_speed = measure_speed(
            args.methods, base.backbone, size, batch=args.speed_batch, steps=args.speed_steps
        )
        sys.stdout.write(format_speed(rows_speed, base.backbone, size, args.speed_batch))
        return 0
    commands = group_commands(args)
    status = _run(commands, runs, args.parallel)
    rows: list[dict[str, Any]] = []
    meta: dict[str, Any] = {}
    for method in commands:
        result = runs / method / "ablation.json"
        if status.get(method) != 0 or not result.is_file():
            _log.error("%s failed (see %s)", method, runs / f"{method}.log")
            continue
        data = json.loads(result.read_text(encoding="utf-8"))
        meta = {k: data[k] for k in ("backbone", "attention", "split")}
        rows += data["rows"]
    if not rows:
        return 1
    table = format_table(rows, meta["backbone"], meta["attention"], meta["split"])
    header = (SMOKE_BANNER + "\n\n") if args.smoke else ""
    commands_text = "\n".join(f"    {shlex.join(c)}" for c in commands.values())
    text = f"{header}{table}\nBudget: {args.budget}. Commands:\n\n{commands_text}\n"
    (runs / "methods.md").write_text(text, encoding="utf-8")
    (runs / "methods.json").write_text(
        json.dumps({**meta, "smoke": args.smoke, "budget": args.budget, "rows": rows}, indent=2) + "\n",
        encoding="utf-8",
    )
    sys.stdout.write(text)
    return 0 if all(s == 0 for s in status.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
