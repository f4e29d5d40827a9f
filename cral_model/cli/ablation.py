"""``cral-ablation``: the paper's Table 2 in one command, and the methods of our sources side by side.

Trains the four variants (full CRAL, w/o category, w/o residual, w/o attention) with one backbone and
attention type, evaluates each best checkpoint, and prints the mean AUCs next to the paper's Table 2.
Every ``cral-train`` flag is accepted and passed on (``--mode`` is set per run). Runs land in
``OUTPUT/<mode>/`` with the evaluation in ``OUTPUT/<mode>/eval_<split>/``; the table is written to
``OUTPUT/ablation.md`` and ``OUTPUT/ablation.json``. Re-running the command skips finished variants and
resumes an interrupted one. Under ``torchrun`` every process trains; only rank 0 evaluates (on its own
device, in float32) and writes and prints the table.

``--methods cral agcnn can iam`` adds AG-CNN, CAN and iterative attention mining (each in
``OUTPUT/<method>/``) to CRAL's modes in one table; ``--seeds 0 1`` trains every variant once per seed
(``.../seedN/``) and reports the mean; ``--cost`` adds the CPU forward time per image. Every training
epoch's time comes from the runs' ``log.jsonl``.

Example (ResNet-50, att1, official test list)::

    cral-ablation --data-root /data/ChestX-ray14 --output runs/table2_r50_att1 \\
        --backbone resnet50 --attention att1
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cral_model.cli._defaults import param_default
from cral_model.cli.evaluate import evaluate_checkpoint, load_eval_images
from cral_model.config import METHODS, MODES

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["get_parser", "main"]

_log = logging.getLogger("cral_model.cli.ablation")

_LABELS = {
    "full": "CRAL (full)",
    "no_category": "w/o category",
    "no_residual": "w/o residual",
    "no_attention": "w/o attention",
}
_METHOD_LABELS = {"agcnn": "AG-CNN", "can": "CAN", "iam": "attention mining"}


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cral-ablation",
        allow_abbrev=False,  # --mode (a cral-train flag) must not match --modes
        description="Train and evaluate the four Table 2 variants; all other options are cral-train flags "
        "(see cral-train --help).",
    )
    p.add_argument("--output", required=True, help="root folder; one sub-folder per mode")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="CRAL variants to run")
    p.add_argument(
        "--methods",
        nargs="+",
        choices=METHODS,
        default=["cral"],
        help="methods side by side: cral (in each of --modes), agcnn, can, iam (docs/METHODS.md)",
    )
    p.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        help="train every variant once per seed (runs in VARIANT/seedN/); the table gives the mean",
    )
    p.add_argument(
        "--cost",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also time the eager CPU forward pass (ms per image) of every checkpoint",
    )
    p.add_argument(
        "--eval-split",
        choices=("test", "val"),
        default=param_default(load_eval_images, "split"),
        help="split the table reports",
    )
    p.add_argument("--eval-csv", help="evaluate on this CSV (own data) instead of an NIH split")
    p.add_argument(
        "--bootstrap",
        type=int,
        default=param_default(evaluate_checkpoint, "bootstrap"),
        help="bootstrap resamples for the intervals",
    )
    return p


def _fmt(v: float | None, digits: int = 4) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _label(row: dict[str, Any]) -> str:
    method = row.get("method", "cral")
    return _LABELS[row["mode"]] if method == "cral" else _METHOD_LABELS[method]


def _fmt_ci(ci: Sequence[float] | None) -> str:
    return "" if not ci else f"{ci[0]:.4f}-{ci[1]:.4f}"


def format_table(rows: list[dict[str, Any]], backbone: str, attention: str, split: str) -> str:
    """Markdown table: variant, our mean AUC (95% CI), the paper's Table 2 mean, difference.

    Rows of the other methods (``method`` other than ``cral``) have no paper column. With several
    seeds (``seeds`` in a row) the AUC is the mean over seeds, each seed's AUC and interval are listed;
    the cost columns (``train_s_per_epoch``, ``ms_per_image``) appear when a row has them.
    """
    from cral_model.metrics import PAPER_TABLE2

    paper = PAPER_TABLE2.get((backbone, attention))
    multi = any(len(r.get("seeds") or []) > 1 for r in rows)
    cost = any(r.get("train_s_per_epoch") is not None or r.get("ms_per_image") is not None for r in rows)
    head = [
        "variant",
        f"ours mean AUC ({split})" + (", mean over seeds" if multi else ""),
        "95% CI" + (" per seed" if multi else ""),
        "n images",
    ]
    if multi:
        head.insert(2, "per seed")
    if paper:
        head += [f"paper Table 2 ({backbone}, {attention})", "difference"]
    if cost:
        head += ["train s/epoch", "CPU ms/image"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        seeds = r.get("seeds") or []
        ci = "; ".join(_fmt_ci(s.get("ci95")) for s in seeds) if len(seeds) > 1 else _fmt_ci(r.get("ci95"))
        cells = [_label(r), _fmt(r["mean_auc"]), ci, str(r["n_images"])]
        if multi:
            cells.insert(2, " / ".join(_fmt(s.get("mean_auc")) for s in seeds) if len(seeds) > 1 else "")
        if paper:
            if r.get("method", "cral") == "cral":
                ref = paper[r["mode"]]
                diff = "" if r["mean_auc"] is None else f"{r['mean_auc'] - ref:+.4f}"
                cells += [f"{ref:.4f}", diff]
            else:
                cells += ["", ""]
        if cost:
            cells += [_fmt(r.get("train_s_per_epoch"), 1), _fmt(r.get("ms_per_image"), 1)]
        lines.append("| " + " | ".join(cells) + " |")
    if not paper:
        lines.append("")
        lines.append(f"The paper's Table 2 reports ResNet-50 and DenseNet-121 only (not {backbone}).")
    return "\n".join(lines) + "\n"


def _trained(run: Path, total_epochs: int) -> bool:
    """Whether ``run`` holds a finished training (its ``last.pt`` reached ``total_epochs``)."""
    if not ((run / "best.safetensors").is_file() and (run / "last.pt").is_file()):
        return False
    from cral_model.engine import TrainStateError, load_train_state

    try:
        return int(load_train_state(run / "last.pt")["epoch"]) >= total_epochs
    except TrainStateError:  # damaged: cral-train --resume says so and what to do
        return False


def _train_cost(run: Path) -> float | None:
    """Mean training seconds per epoch of ``run`` (its ``log.jsonl``), None without records."""
    path = run / "log.jsonl"
    if not path.is_file():
        return None
    seconds = [
        float(r["train_seconds"])
        for r in (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
        if r.get("train_seconds") is not None
    ]
    return sum(seconds) / len(seconds) if seconds else None


def inference_ms_per_image(checkpoint: Path, *, batch: int = 8, repeats: int = 3) -> float:
    """Eager CPU forward time (``forward_all``, float32) per image of ``checkpoint``, best of ``repeats``
    timed batches of ``batch`` random inputs after one warm-up, in milliseconds."""
    import time

    import torch

    from cral_model.checkpoint import load_checkpoint

    loaded = load_checkpoint(checkpoint)
    size = loaded.preprocessing.input_size
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    best = math.inf
    with torch.inference_mode():
        loaded.model.forward_all(x)
        for _ in range(repeats):
            t0 = time.perf_counter()
            loaded.model.forward_all(x)
            best = min(best, time.perf_counter() - t0)
    return 1000.0 * best / batch


def _variants(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(method, mode) pairs: CRAL in each of ``--modes``, every other method as it is (mode ``full``)."""
    out: list[tuple[str, str]] = []
    for method in args.methods:
        out += [(method, mode) for mode in args.modes] if method == "cral" else [(method, "full")]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cral-ablation``; returns the process exit status."""
    from cral_model.cli.train import get_parser as train_parser
    from cral_model.cli.train import main as train_main
    from cral_model.cli.train import resolve_config

    args, rest = get_parser().parse_known_args(argv)
    is_main = int(os.environ.get("RANK", "0")) == 0
    if "--mode" in rest:
        get_parser().error("--mode is set by cral-ablation for each run; use --modes to choose them")
    if "--method" in rest:
        get_parser().error("--method is set by cral-ablation for each run; use --methods to choose them")
    if args.seeds and "--seed" in rest:
        get_parser().error("--seed and --seeds: give the seeds with --seeds only")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = Path(args.output)
    if is_main:
        root.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    cfg = None
    seeds: list[int | None] = list(args.seeds) if args.seeds else [None]
    for method, mode in _variants(args):
        base = root / (mode if method == "cral" else method)  # CRAL's runs keep the Table 2 layout
        per_seed: list[dict[str, Any]] = []
        for seed in seeds:
            run = base if seed is None else base / f"seed{seed}"
            eval_dir = run / f"eval_{args.eval_split if not args.eval_csv else 'csv'}"
            train_argv = [*rest, "--output", str(run), "--mode", mode, "--method", method]
            if seed is not None:
                train_argv += ["--seed", str(seed)]
            cfg, _ = resolve_config(train_parser().parse_args(train_argv))
            done = _trained(run, cfg.total_epochs)
            if not done:
                resume = ["--resume"] if (run / "last.pt").is_file() else []
                _log.info("training %s %s -> %s", method, mode, run)
                status = train_main([*train_argv, *resume])
                if status != 0:
                    _log.error("training %s %s failed with status %d", method, mode, status)
                    return status
            if not is_main:  # the other ranks only train; rank 0 evaluates and writes
                continue
            metrics_file = eval_dir / "metrics.json"
            if done and metrics_file.is_file():
                metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
            else:
                from cral_model.checkpoint import read_metadata

                ckpt = run / "best.safetensors"
                images, info = load_eval_images(
                    read_metadata(ckpt),
                    data_root=cfg.data_root,
                    labels_dir=cfg.labels_dir,
                    split=args.eval_split,
                    csv_path=args.eval_csv,
                    allow_missing=cfg.allow_missing,
                )
                metrics = evaluate_checkpoint(
                    ckpt,
                    images,
                    eval_dir,
                    evaluated=info,
                    batch_size=cfg.eval_batch_size or cfg.batch_size,
                    workers=cfg.workers,
                    device=cfg.device,
                    bootstrap=args.bootstrap,
                    seed=cfg.seed,
                    progress=cfg.progress,
                )
            per_seed.append(
                {
                    "seed": cfg.seed,
                    "mean_auc": metrics["mean_auc"],
                    "per_class_auc": metrics["per_class_auc"],
                    "ci95": (metrics.get("ci95") or {}).get("mean_auc"),
                    "n_images": metrics["n_images"],
                    "train_s_per_epoch": _train_cost(run),
                    "ms_per_image": inference_ms_per_image(run / "best.safetensors") if args.cost else None,
                    "run": str(run),
                }
            )
        if not is_main:
            continue
        row: dict[str, Any] = {"method": method, "mode": mode, **per_seed[0]}
        if len(per_seed) > 1:
            aucs = [r["mean_auc"] for r in per_seed if r["mean_auc"] is not None]
            row["seeds"] = per_seed
            row["mean_auc"] = sum(aucs) / len(aucs) if aucs else None
            row["ci95_per_seed"] = [r["ci95"] for r in per_seed]
            for key in ("train_s_per_epoch", "ms_per_image"):
                values = [r[key] for r in per_seed if r[key] is not None]
                row[key] = sum(values) / len(values) if values else None
            row["run"] = str(base)
        rows.append(row)
    assert cfg is not None
    if not is_main:
        return 0
    split = "csv" if args.eval_csv else args.eval_split
    table = format_table(rows, cfg.backbone, cfg.attention, split)
    (root / "ablation.md").write_text(table, encoding="utf-8")
    (root / "ablation.json").write_text(
        json.dumps(
            {"backbone": cfg.backbone, "attention": cfg.attention, "split": split, "rows": rows}, indent=2
        )
        + "\n",
        encoding="utf-8",
    )
    sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
