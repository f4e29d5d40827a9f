"""``cral-ablation``: the paper's Table 2 in one command.

Trains the four variants (full CRAL, w/o category, w/o residual, w/o attention) with one backbone and
attention type, evaluates each best checkpoint, and prints the mean AUCs next to the paper's Table 2.
Every ``cral-train`` flag is accepted and passed on (``--mode`` is set per run). Runs land in
``OUTPUT/<mode>/`` with the evaluation in ``OUTPUT/<mode>/eval_<split>/``; the table is written to
``OUTPUT/ablation.md`` and ``OUTPUT/ablation.json``. Re-running the command skips finished variants and
resumes an interrupted one. Under ``torchrun`` every process trains; only rank 0 evaluates (on its own
device, in float32) and writes and prints the table.

Example (ResNet-50, att1, official test list)::

    cral-ablation --data-root /data/ChestX-ray14 --output runs/table2_r50_att1 \\
        --backbone resnet50 --attention att1
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cral_model.cli._defaults import param_default
from cral_model.cli.evaluate import evaluate_checkpoint, load_eval_images
from cral_model.config import MODES

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


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cral-ablation",
        allow_abbrev=False,  # --mode (a cral-train flag) must not match --modes
        description="Train and evaluate the four Table 2 variants; all other options are cral-train flags "
        "(see cral-train --help).",
    )
    p.add_argument("--output", required=True, help="root folder; one sub-folder per mode")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="variants to run")
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


def format_table(rows: list[dict[str, Any]], backbone: str, attention: str, split: str) -> str:
    """Markdown table: mode, our mean AUC (95% CI), the paper's Table 2 mean, difference."""
    from cral_model.metrics import PAPER_TABLE2

    paper = PAPER_TABLE2.get((backbone, attention))
    head = ["variant", f"ours mean AUC ({split})", "95% CI", "n images"]
    if paper:
        head += [f"paper Table 2 ({backbone}, {attention})", "difference"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ci = r.get("ci95")
        cells = [
            _LABELS[r["mode"]],
            _fmt(r["mean_auc"]),
            "" if not ci else f"{ci[0]:.4f}-{ci[1]:.4f}",
            str(r["n_images"]),
        ]
        if paper:
            ref = paper[r["mode"]]
            diff = "" if r["mean_auc"] is None else f"{r['mean_auc'] - ref:+.4f}"
            cells += [f"{ref:.4f}", diff]
        lines.append("| " + " | ".join(cells) + " |")
    if not paper:
        lines.append("")
        lines.append(f"The paper's Table 2 reports ResNet-50 and DenseNet-121 only (not {backbone}).")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cral-ablation``; returns the process exit status."""
    from cral_model.cli.train import get_parser as train_parser
    from cral_model.cli.train import main as train_main
    from cral_model.cli.train import resolve_config

    args, rest = get_parser().parse_known_args(argv)
    is_main = int(os.environ.get("RANK", "0")) == 0
    if "--mode" in rest:
        get_parser().error("--mode is set by cral-ablation for each run; use --modes to choose them")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = Path(args.output)
    if is_main:
        root.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    cfg = None
    for mode in args.modes:
        run = root / mode
        eval_dir = run / f"eval_{args.eval_split if not args.eval_csv else 'csv'}"
        train_argv = [*rest, "--output", str(run), "--mode", mode]
        cfg, _ = resolve_config(train_parser().parse_args(train_argv))
        done = (run / "best.safetensors").is_file() and (run / "last.pt").is_file()
        if done:
            from cral_model.engine import TrainStateError, load_train_state

            try:
                done = int(load_train_state(run / "last.pt")["epoch"]) >= cfg.epochs
            except TrainStateError:  # damaged: cral-train --resume below says so and what to do
                done = False
        if not done:
            resume = ["--resume"] if (run / "last.pt").is_file() else []
            _log.info("training %s -> %s", mode, run)
            status = train_main([*train_argv, *resume])
            if status != 0:
                _log.error("training %s failed with status %d", mode, status)
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
        rows.append(
            {
                "mode": mode,
                "mean_auc": metrics["mean_auc"],
                "per_class_auc": metrics["per_class_auc"],
                "ci95": (metrics.get("ci95") or {}).get("mean_auc"),
                "n_images": metrics["n_images"],
                "run": str(run),
            }
        )
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
