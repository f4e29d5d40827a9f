"""``cral-eval``: evaluate a viewer checkpoint on the ChestX-ray14 test list, the validation split, or a CSV.

Writes to ``--output``:

- ``metrics.json``: ``per_class_auc`` (name -> AUC, ``null`` when the class lacks positives or
  negatives), ``mean_auc`` (over the defined classes), ``n_images``, ``n_positive`` per class,
  ``ci95`` (seeded percentile bootstrap over patients by default, ``--bootstrap-unit image`` over
  images), ``operating_points`` (sensitivity/specificity at the checkpoint's thresholds), and what was
  evaluated; with ``--compare OTHER/predictions.csv``, ``comparison``: this model minus the other on the
  same images, per class and in mean AUC, with a paired bootstrap interval (also ``comparison.json``).
- ``predictions.csv``: ``image``, ``prob_<class>`` x 14 (float32, shortest exact form: AUCs recomputed
  from the file equal ``metrics.json``'s), ``true_<class>`` x 14.

The model predicts in float32 on every device, as the deployed `cral_model.Predictor` does. Under
``torchrun`` each process uses its own ``LOCAL_RANK`` device.
- ``roc.png``: the 14 ROC curves (one panel each, operating point marked) and all of them overlaid.
- ``table.md``: our AUCs with intervals next to the paper's Table 1 row of the same backbone/attention.

The validation split is recomputed from the split seed and fraction stored in the checkpoint's
provenance (``--split-seed``/``--val-fraction`` override); give the same ``--data-root`` (and
``--allow-missing``) as for training.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cral_model.cli._defaults import field_default, param_default
from cral_model.config import ModelConfig

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["evaluate_checkpoint", "get_parser", "load_eval_images", "main", "write_table"]

_log = logging.getLogger("cral_model.cli.evaluate")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cral-eval",
        description="Evaluate a CRAL checkpoint: per-class ROC AUC with bootstrap intervals, ROC curves, "
        "sensitivity/specificity at the stored thresholds, predictions CSV and a table beside the paper's.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("checkpoint", help="a .safetensors checkpoint written by cral-train")
    p.add_argument(
        "--data-root", nargs="+", help="NIH ChestX-ray14 root (images anywhere below it); several roots pool"
    )
    p.add_argument(
        "--labels-dir", help="folder with the NIH label files (default: searched below --data-root)"
    )
    p.add_argument(
        "--split",
        choices=("test", "val"),
        default=param_default(load_eval_images, "split"),
        help="official test list or validation split",
    )
    p.add_argument("--csv", help="evaluate the images of this CSV (plain CSV format) instead of an NIH split")
    p.add_argument(
        "--output", required=True, help="folder for metrics.json, predictions.csv, roc.png, table.md"
    )
    p.add_argument(
        "--allow-missing",
        action=argparse.BooleanOptionalAction,
        default=param_default(load_eval_images, "allow_missing"),
        help="evaluate the images present instead of refusing a partial copy",
    )
    p.add_argument("--val-fraction", type=float, help="validation split fraction [from the checkpoint]")
    p.add_argument("--split-seed", type=int, help="validation split seed [from the checkpoint]")
    # The defaults are evaluate_checkpoint's own (main passes each on), except --progress (on here).
    batch_size, workers = (param_default(evaluate_checkpoint, n) for n in ("batch_size", "workers"))
    p.add_argument("--batch-size", type=int, default=batch_size, help="images per batch")
    p.add_argument("--workers", type=int, default=workers, help="DataLoader processes")
    p.add_argument(
        "--device", default=param_default(evaluate_checkpoint, "device"), help="auto, cpu, cuda or cuda:N"
    )
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument(
        "--bootstrap",
        type=int,
        default=param_default(evaluate_checkpoint, "bootstrap"),
        help="bootstrap resamples for the 95%% intervals (0: none)",
    )
    p.add_argument(
        "--bootstrap-unit",
        choices=("patient", "image"),
        default=param_default(evaluate_checkpoint, "bootstrap_unit"),
        help="what the bootstrap resamples: whole patients (their images are not independent) or images",
    )
    p.add_argument(
        "--compare",
        metavar="PREDICTIONS_CSV",
        help="another model's predictions.csv on the same images: paired bootstrap of the AUC differences",
    )
    p.add_argument(
        "--seed", type=int, default=param_default(evaluate_checkpoint, "seed"), help="bootstrap seed"
    )
    p.add_argument(
        "--boxes",
        metavar="BBOX_LIST_CSV",
        help="BBox_List_2017.csv: also run the localization protocol of Wang et al. 2017 on the evaluated "
        "images that have boxes (metrics.json 'localization', table.md; cral_model.localization)",
    )
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    return p


def load_eval_images(
    metadata: dict[str, Any],
    *,
    data_root: str | Sequence[str] | None,
    labels_dir: str | None = None,
    split: str = "test",
    csv_path: str | None = None,
    allow_missing: bool = False,
    val_fraction: float | None = None,
    split_seed: int | None = None,
) -> tuple[Any, dict[str, Any]]:
    """The images to evaluate and a description of them.

    Returns:
        ``(LabeledImages, info)``.

    Raises:
        ValueError: ``split="val"`` without a stored or given split fraction/seed; no data named.
    """
    from cral_model.data import load_csv_dataset, load_nih_split, patient_split

    roots = [data_root] if isinstance(data_root, str) else list(data_root or [])
    if csv_path:
        images = load_csv_dataset(
            csv_path, data_root=roots[0] if roots else None, allow_missing=allow_missing
        )
        return images, {"source": "csv", "csv": Path(csv_path).name, "n_missing": images.n_missing}
    if not roots:
        raise ValueError("--data-root is required (or --csv)")
    data_root = roots
    names = [Path(r).resolve().name for r in roots]
    info: dict[str, Any] = {
        "source": "nih",
        "data_root": names[0] if len(names) == 1 else names,
        "split": split,
    }
    if split == "test":
        images = load_nih_split(data_root, "test", labels_dir=labels_dir, allow_missing=allow_missing)
    else:
        stored = (metadata.get("provenance") or {}).get("data") or {}
        frac = val_fraction if val_fraction is not None else stored.get("val_fraction")
        seed = split_seed if split_seed is not None else stored.get("split_seed")
        if frac is None or seed is None:
            raise ValueError(
                "the checkpoint does not record its validation split; pass --val-fraction and --split-seed"
            )
        if stored.get("format") == "csv":
            raise ValueError("this model was trained on CSV data; evaluate its validation images with --csv")
        if not float(frac) > 0:
            raise ValueError(
                "this model was trained on all of train_val (val_fraction 0, e.g. cral-train --paper): "
                "it has no validation split; evaluate it with --split test, or give --val-fraction"
            )
        full = load_nih_split(data_root, "train_val", labels_dir=labels_dir, allow_missing=allow_missing)
        _, va = patient_split(full.patients, float(frac), int(seed))
        images = full.subset(va)
        info.update({"val_fraction": frac, "split_seed": seed})
        if stored.get("n_val") not in (None, len(images)):
            _log.warning(
                "validation split has %d images but training used %d: "
                "different data root or --allow-missing?",
                len(images),
                stored["n_val"],
            )
    info["n_missing"] = images.n_missing
    return images, info


def write_table(
    path: Path,
    metrics: dict[str, Any],
    model_cfg: dict[str, Any],
    class_names: Sequence[str],
) -> None:
    """``table.md``: ours (AUC, 95% CI) next to the paper's Table 1 row of the same backbone/attention."""
    from cral_model.metrics import PAPER_TABLE1

    key = (str(model_cfg.get("backbone")), str(model_cfg.get("attention")))
    mode = model_cfg.get("mode", field_default(ModelConfig, "mode"))
    paper = PAPER_TABLE1.get(key) if mode == "full" else None
    short = {"resnet50": "R-50", "densenet121": "D-121"}
    ours_name = f"ours ({model_cfg.get('backbone')}, {model_cfg.get('attention')}, {model_cfg.get('mode')})"
    ci = (metrics.get("ci95") or {}).get("per_class") or {}

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    def fmt_ci(v: Sequence[float] | None) -> str:
        return "" if not v else f"{v[0]:.3f}-{v[1]:.3f}"

    head = ["Finding", ours_name, "95% CI"]
    if paper is not None:
        head += [f"paper (CRAL {key[1]}, {short.get(key[0], key[0])})", "difference"]
    lines = [
        f"# {metrics['evaluated'].get('split', metrics['evaluated'].get('source'))}: "
        f"{metrics['n_images']} images",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    rows = [(name, metrics["per_class_auc"][name], ci.get(name)) for name in class_names]
    rows.append(("**Mean**", metrics["mean_auc"], (metrics.get("ci95") or {}).get("mean_auc")))
    for name, ours, interval in rows:
        cells = [name, fmt(ours), fmt_ci(interval)]
        if paper is not None:
            ref = paper.get("mean" if name == "**Mean**" else name)
            diff = "" if ours is None or ref is None else f"{ours - ref:+.3f}"
            cells += [fmt(ref), diff]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if paper is None:
        lines.append(
            "The paper's Table 1 has no row for this configuration (it reports full CRAL with ResNet-50 and "
            "DenseNet-121, att1 and att2)."
        )
    else:
        lines.append(
            "Paper: Guan & Huang, Pattern Recognition Letters 2018, Table 1 "
            "(official test list, 25,596 images)."
        )
    undefined = [n for n in class_names if metrics["per_class_auc"][n] is None]
    if undefined:
        lines.append(
            f"n/a: no positive or no negative image in this set for {', '.join(undefined)}; "
            "the mean averages the other classes."
        )
    if metrics["evaluated"].get("n_missing"):
        lines.append(
            f"{metrics['evaluated']['n_missing']} images named by the source list were not found below "
            "the data "
            "root (--allow-missing); only the images present were evaluated."
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _write_roc_png(
    path: Path,
    probs: np.ndarray,
    targets: np.ndarray,
    class_names: Sequence[str],
    aucs: dict[str, float],
    thresholds: Sequence[float],
    title: str,
) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from cral_model.metrics import roc_curve

    k = len(class_names)
    ncols = 4
    nrows = math.ceil((k + 1) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.2 * nrows), squeeze=False)
    cmap = plt.get_cmap("tab20")
    overlay = axes.flat[k]
    for c, name in enumerate(class_names):
        ax = axes.flat[c]
        ax.plot([0, 1], [0, 1], color="0.8", lw=0.8, ls="--")
        auc = aucs.get(name, math.nan)
        if math.isnan(auc):
            ax.text(0.5, 0.5, "undefined\n(one label value)", ha="center", va="center", fontsize=9)
        else:
            fpr, tpr, _ = roc_curve(probs[:, c], targets[:, c])
            ax.plot(fpr, tpr, color=cmap(c % 20), lw=1.5)
            overlay.plot(fpr, tpr, color=cmap(c % 20), lw=1.0, label=f"{name} {auc:.3f}")
            pred = probs[:, c] >= thresholds[c]
            pos = targets[:, c] > 0.5
            sens = (pred & pos).sum() / max(pos.sum(), 1)
            fp = (pred & ~pos).sum() / max((~pos).sum(), 1)
            ax.plot([fp], [sens], "o", color="k", ms=4, label=f"operating point p >= {thresholds[c]:.3g}")
            ax.legend(loc="lower right", fontsize=7, frameon=False)
        ax.set_title(f"{name}  AUC {auc:.3f}" if not math.isnan(auc) else name, fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=7)
        if c % ncols == 0:
            ax.set_ylabel("sensitivity", fontsize=8)
        if c >= k + 1 - ncols:
            ax.set_xlabel("1 - specificity", fontsize=8)
    overlay.plot([0, 1], [0, 1], color="0.8", lw=0.8, ls="--")
    overlay.set_title("all classes", fontsize=9)
    overlay.set_aspect("equal")
    overlay.tick_params(labelsize=7)
    spare = list(axes.flat)[k + 1 :]
    for ax in spare:
        ax.axis("off")
    handles, labels = overlay.get_legend_handles_labels()
    if spare and handles:  # the legend of the overlay goes into the empty panel beside it
        spare[0].legend(handles, labels, loc="center", fontsize=8, frameon=False, title="AUC")
    elif handles:
        overlay.legend(loc="lower right", fontsize=5, frameon=False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def evaluate_checkpoint(
    checkpoint: str | Path,
    images: Any,
    output: str | Path,
    *,
    evaluated: dict[str, Any] | None = None,
    batch_size: int = 64,
    workers: int = 4,
    device: str = "auto",
    bootstrap: int = 1000,
    seed: int = 0,
    progress: bool = False,
    bootstrap_unit: str = "patient",
    compare: str | Path | None = None,
) -> dict[str, Any]:
    """Predict ``images`` with ``checkpoint`` and write the four outputs to ``output``.

    Args:
        bootstrap_unit: ``"patient"`` (cluster bootstrap over ``images.patients``) or ``"image"``.
        compare: another model's ``predictions.csv`` over the same images, for a paired comparison.

    Returns:
        The metrics dict written to ``metrics.json``.
    """
    from cral_model.checkpoint import load_checkpoint
    from cral_model.config import PreprocessConfig
    from cral_model.data import EpochSampler, EvalPreset, ImageDataset
    from cral_model.devices import torch_device
    from cral_model.engine import _Precision, make_loader, predict
    from cral_model.metrics import (
        bootstrap_auc_ci,
        mean_auc,
        normal_flag_rate,
        paired_bootstrap_auc_difference,
        per_class_auc,
        sensitivity_specificity,
    )

    if bootstrap_unit not in ("patient", "image"):
        raise ValueError(f"bootstrap_unit must be 'patient' or 'image', got {bootstrap_unit!r}")
    groups = list(images.patients) if bootstrap_unit == "patient" else None
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    loaded = load_checkpoint(checkpoint)
    meta = loaded.metadata
    class_names = list(meta["class_names"])
    other = _read_predictions(Path(compare), images.names, class_names) if compare is not None else None
    pre = PreprocessConfig.from_dict(dict(meta["preprocessing"]))
    # each torchrun process on its own device (a bare "cuda" means cuda:LOCAL_RANK)
    dev = torch_device(device, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    model = loaded.model.to(dev).eval()
    stored = meta.get("thresholds")
    thresholds = list(stored) if stored is not None else [0.5] * len(class_names)

    ds = ImageDataset(images, EvalPreset(pre), cache=False)
    sampler = EpochSampler(len(ds), shuffle=False, augment_seeds=False)
    loader = make_loader(ds, sampler, batch_size=batch_size, workers=workers, device=dev, seed=seed)
    # float32, as the deployed Predictor runs (bf16 autocast moved AUCs in the third decimal)
    precision = _Precision(dev, None, channels_last=False)
    probs, targets, loss = predict(model, loader, len(ds), precision=precision, progress=progress)

    aucs = per_class_auc(probs, targets, class_names, warn=False)
    undefined = [n for n, v in aucs.items() if math.isnan(v)]
    if undefined:
        _log.warning("AUC undefined (one label value only) for %s: reported as null", undefined)
    ci = (
        bootstrap_auc_ci(probs, targets, class_names, n_resamples=bootstrap, seed=seed, groups=groups)
        if bootstrap > 0
        else None
    )
    comparison = None
    if other is not None:
        comparison = paired_bootstrap_auc_difference(
            probs,
            other,
            targets,
            class_names,
            n_resamples=max(bootstrap, 1),
            seed=seed,
            groups=groups,
        ) | {"other": Path(str(compare)).name}
    ops = sensitivity_specificity(probs, targets, thresholds, class_names)
    abnormal = (targets > 0.5).any(axis=1)
    # (N,) bool; asarray because numpy's stubs type .any(axis=...) as "scalar or array"
    flagged = np.asarray((probs >= np.asarray(thresholds, dtype=np.float64)[None, :]).any(axis=1))
    study_level = {
        "n_no_finding": int((~abnormal).sum()),
        "n_with_finding": int(abnormal.sum()),
        # share of "No Finding" images with at least one class at or above its threshold
        "no_finding_flagged": normal_flag_rate(probs, targets, thresholds),
        # share of images with at least one finding that get at least one flag (any class)
        "with_finding_flagged": float(flagged[abnormal].mean()) if abnormal.any() else math.nan,
    }
    model_cfg = dict(meta["model"])

    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v

    metrics: dict[str, Any] = clean(
        {
            "per_class_auc": aucs,
            "mean_auc": mean_auc(aucs),
            "n_images": len(ds),
            "n_positive": {n: int(targets[:, i].sum()) for i, n in enumerate(class_names)},
            "undefined_classes": undefined,
            "ci95": ci,
            "comparison": comparison,
            "operating_points": ops,
            "flags": study_level,
            "thresholds_source": "checkpoint" if stored is not None else "default 0.5",
            "loss": loss,
            "evaluated": dict(evaluated or {}),
            "checkpoint": {
                "file": Path(checkpoint).name,
                "model": model_cfg,
                "weights_sha256": meta.get("weights_sha256"),
            },
        }
    )
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n", encoding="utf-8")

    with open(out / "predictions.csv", "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", *(f"prob_{n}" for n in class_names), *(f"true_{n}" for n in class_names)])
        for i, name in enumerate(images.names):
            # the float32 the model gave, in its shortest exact form (no rounding of the scores)
            w.writerow([name, *(str(np.float32(p)) for p in probs[i]), *(int(t) for t in targets[i])])
    if comparison is not None:
        (out / "comparison.json").write_text(
            json.dumps(metrics["comparison"], indent=2, allow_nan=False) + "\n", encoding="utf-8"
        )

    title = (
        f"{model_cfg.get('backbone')} {model_cfg.get('attention')} {model_cfg.get('mode')}: "
        f"{len(ds)} images, mean AUC {metrics['mean_auc']:.3f}"
        if metrics["mean_auc"] is not None
        else f"{len(ds)} images"
    )
    _write_roc_png(out / "roc.png", probs, targets, class_names, aucs, thresholds, title)
    write_table(out / "table.md", metrics, model_cfg, class_names)
    return metrics


def _read_predictions(path: Path, names: Sequence[str], class_names: Sequence[str]) -> np.ndarray:
    """``(N, K)`` probabilities of another model's ``predictions.csv``, in the order of ``names``.

    Raises:
        ValueError: the file lacks images of ``names`` or has other ones (not the same images).
    """
    with open(path, encoding="utf-8", newline="") as fh:
        rows = {r["image"]: r for r in csv.DictReader(fh)}
    if set(rows) != set(names):
        missing = [n for n in names if n not in rows]
        raise ValueError(
            f"{path} is not over the same images ({len(missing)} of {len(names)} missing, "
            f"{len(set(rows) - set(names))} others); a paired comparison needs the same images"
        )
    try:
        return np.array([[float(rows[n][f"prob_{c}"]) for c in class_names] for n in names], dtype=np.float64)
    except KeyError as exc:
        raise ValueError(f"{path} has no column {exc.args[0]!r}: predictions of other classes?") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cral-eval``; returns the process exit status."""
    parser = get_parser()
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from cral_model.checkpoint import read_metadata
    from cral_model.data import MissingImagesError

    try:
        meta = read_metadata(args.checkpoint)
        images, info = load_eval_images(
            meta,
            data_root=args.data_root,
            labels_dir=args.labels_dir,
            split=args.split,
            csv_path=args.csv,
            allow_missing=args.allow_missing,
            val_fraction=args.val_fraction,
            split_seed=args.split_seed,
        )
        metrics = evaluate_checkpoint(
            args.checkpoint,
            images,
            args.output,
            evaluated=info,
            batch_size=args.batch_size,
            workers=args.workers,
            device=args.device,
            bootstrap=args.bootstrap,
            seed=args.seed,
            progress=args.progress,
            bootstrap_unit=args.bootstrap_unit,
            compare=args.compare,
        )
        if args.boxes:
            from cral_model.localization import localize_checkpoint

            localize_checkpoint(
                args.checkpoint,
                images,
                args.boxes,
                args.output,
                device=args.device,
                batch_size=args.batch_size,
            )
    except (MissingImagesError, FileNotFoundError, ValueError) as exc:
        _log.error("%s", exc)
        return 2
    sys.stdout.write(Path(args.output, "table.md").read_text(encoding="utf-8"))
    mean = metrics["mean_auc"]
    _log.info(
        "mean AUC %s over %d images -> %s",
        "n/a" if mean is None else f"{mean:.4f}",
        metrics["n_images"],
        args.output,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
