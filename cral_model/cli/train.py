"""``cral-train``: train CRAL on ChestX-ray14 (or own CSV data) with the paper's recipe by default.

Examples::

    # Table 1, ResNet-50 att1, on the full NIH download (one GPU; for eight:
    # torchrun --nproc_per_node=8 -m cral_model.cli.train ...)
    cral-train --data-root /data/ChestX-ray14 --output runs/r50_att1 --backbone resnet50 --attention att1

    # the 690-image, 64 px subset in ../shared/data, CPU
    cral-train --data-root ../shared/data/chestxray14-nih1000-64px \\
        --labels-dir ../shared/data/chestxray14-labels \\
        --allow-missing --output runs/demo --backbone resnet18 --input-size 128 --pretrained none

Precedence of settings: the paper's defaults < ``--config FILE.yaml`` < flags. With ``--resume`` the
saved run's config is the base instead of the defaults. A ``last.pt`` that cannot be resumed (truncated,
empty, not a training state, no config, weights that do not fit) ends the command with status 2 and one
line saying why and what to do, without a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cral_model.cli._defaults import default_help
from cral_model.config import AGCNN_FUSION_INITS, ATTENTIONS, BACKBONES, LOSSES, METHODS, MODES, ConfigError
from cral_model.train_config import PAPER_PRESET, TrainConfig

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["get_parser", "main", "resolve_config"]

_log = logging.getLogger("cral_model.cli.train")

_BOOL = argparse.BooleanOptionalAction
_LOG_LEVEL = "INFO"


def _d(name: str, text: str = "", **meaning: str) -> str:
    """Help ``text`` with the `TrainConfig` default of field ``name`` (see `default_help`)."""
    return default_help(TrainConfig, name, text, **meaning)


def get_parser() -> argparse.ArgumentParser:
    """The ``cral-train`` argument parser. Every option defaults to "not given" (``SUPPRESS``)."""
    p = argparse.ArgumentParser(
        prog="cral-train",
        description="Train a CRAL multi-label chest X-ray classifier. The defaults (in brackets) follow "
        "Guan & Huang (2018), Section 4.2: resize, random resized crop, horizontal flip, SGD with momentum "
        "and weight decay, a step learning-rate schedule, an ImageNet-pretrained backbone.",
        argument_default=argparse.SUPPRESS,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    d = p.add_argument_group("data")
    d.add_argument(
        "--data-root",
        nargs="+",
        help=(
            "NIH ChestX-ray14 root: images anywhere below it, found by file name; "
            "several roots pool their images"
        ),
    )
    d.add_argument(
        "--labels-dir",
        help="folder with Data_Entry_2017[_v2020].csv[.gz], train_val_list.txt, test_list.txt "
        "(default: searched below --data-root)",
    )
    d.add_argument(
        "--train-csv", help="own data: CSV with a path column and 14 class columns or 'Finding Labels'"
    )
    d.add_argument(
        "--val-csv", help="own data: validation CSV (default: split --val-fraction off --train-csv)"
    )
    d.add_argument(
        "--val-fraction",
        type=float,
        help=_d("val_fraction", "fraction of train_val patients held out for validation"),
    )
    d.add_argument("--split-seed", type=int, help=_d("split_seed", "seed of the patient split"))
    d.add_argument(
        "--allow-missing", action=_BOOL, help="use the images present instead of refusing a partial copy"
    )
    d.add_argument("--max-train-images", type=int, help="train on a seeded random subset of this many images")
    d.add_argument(
        "--cache-images",
        action=_BOOL,
        help=_d("cache_images", "keep decoded images in memory", none="auto: when < 2 GiB"),
    )
    m = p.add_argument_group("model")
    m.add_argument(
        "--method",
        choices=METHODS,
        help=_d("method", "CRAL, AG-CNN, CAN or iterative attention mining (docs/METHODS.md)"),
    )
    m.add_argument("--loss", choices=LOSSES, help=_d("loss", "bce, or CAN's class-balanced focal loss"))
    m.add_argument("--agcnn-tau", type=float, help=_d("agcnn_tau", "AG-CNN heat-map threshold of the crop"))
    m.add_argument(
        "--agcnn-fusion-init",
        choices=AGCNN_FUSION_INITS,
        help=_d(
            "agcnn_fusion_init",
            "AG-CNN fusion layer at its stage's start: mean of the branch heads, or random",
        ),
    )
    m.add_argument(
        "--iam-rounds", type=int, help=_d("iam_rounds", "attention-mining rounds of --epochs each")
    )
    m.add_argument("--backbone", choices=BACKBONES, help=_d("backbone"))
    m.add_argument("--attention", choices=ATTENTIONS, help=_d("attention"))
    m.add_argument("--mode", choices=MODES, help=_d("mode", "Table 2 ablation"))
    m.add_argument(
        "--att-channels",
        type=int,
        help=_d("att_channels", "att1 intermediate width", none="backbone default"),
    )
    m.add_argument(
        "--pretrained",
        choices=("imagenet", "imagenet_v1", "none"),
        help=_d(
            "pretrained",
            "backbone initialisation (imagenet: V2 weights for ResNet-50; imagenet_v1: the paper's)",
        ),
    )
    a = p.add_argument_group("preprocessing and augmentation")
    a.add_argument("--input-size", type=int, help=_d("input_size", "network input side"))
    a.add_argument(
        "--resize", type=int, help=_d("resize", "resize side before cropping", none="input-size * 256/224")
    )
    a.add_argument(
        "--base-size", type=int, help="first resize images to this side (low-resolution training data)"
    )
    a.add_argument(
        "--normalize",
        choices=("imagenet", "mean"),
        help=_d("normalize", "imagenet: (x - mean) / std; mean: x - mean only (the paper's)"),
    )
    a.add_argument(
        "--crop-scale",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        help=_d("crop_scale", "random resized crop area"),
    )
    a.add_argument("--hflip", action=_BOOL, help=_d("hflip", "random horizontal flip"))
    a.add_argument(
        "--rotate", type=float, help=_d("rotate", "random rotation up to this many degrees", zero="off")
    )
    a.add_argument(
        "--intensity",
        type=float,
        help=_d("intensity", "random contrast/brightness change up to this fraction", zero="off"),
    )
    a.add_argument(
        "--downscale",
        type=float,
        help=_d(
            "downscale",
            "probability of passing an image through a random lower resolution and back",
            zero="off",
        ),
    )
    a.add_argument(
        "--downscale-min", type=int, help=_d("downscale_min", "smallest side of that resolution jitter")
    )
    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=int, help=_d("epochs"))
    o.add_argument(
        "--batch-size", type=int, help=_d("batch_size", "global batch, split over distributed ranks")
    )
    o.add_argument("--optimizer", choices=("sgd", "adamw"), help=_d("optimizer"))
    o.add_argument("--lr", type=float, help=_d("lr"))
    o.add_argument("--momentum", type=float, help=_d("momentum"))
    o.add_argument("--weight-decay", type=float, help=_d("weight_decay"))
    o.add_argument(
        "--lr-steps", type=int, nargs="*", help=_d("lr_steps", "epochs after which lr *= lr-gamma")
    )
    o.add_argument("--lr-gamma", type=float, help=_d("lr_gamma"))
    o.add_argument(
        "--lr-schedule",
        choices=("step", "cosine"),
        help=_d("lr_schedule", "step (--lr-steps) or cosine decay"),
    )
    o.add_argument(
        "--warmup-epochs",
        type=int,
        help=_d("warmup_epochs", "linear warm-up from lr/10 over this many epochs"),
    )
    o.add_argument(
        "--ema-decay",
        type=float,
        help=_d("ema_decay", "validate and export a moving average of the weights", none="off"),
    )
    o.add_argument(
        "--export",
        choices=("best", "last"),
        help=_d("export", "exported epoch: best validation mean AUC, or the last"),
    )
    o.add_argument(
        "--threshold-rule",
        choices=("youden", "normal_flag_rate"),
        help=_d(
            "threshold_rule",
            "per-class operating points fitted on validation at export: Youden's J per class, or one "
            "common specificity that flags at most --max-normal-flag-rate of the 'No Finding' images",
        ),
    )
    o.add_argument(
        "--max-normal-flag-rate",
        type=float,
        help=_d("max_normal_flag_rate", "for --threshold-rule normal_flag_rate"),
    )
    r = p.add_argument_group("runtime")
    r.add_argument("--output", help="run folder (config.yaml, last.pt, best.safetensors, log.jsonl)")
    r.add_argument("--config", help="YAML file of TrainConfig fields (flags override it)")
    r.add_argument(
        "--paper",
        action="store_true",
        help="Guan & Huang's recipe: ImageNet V1 weights, all of train_val (no validation split), 30 epochs, "
        "the last exported, mean subtraction only (--config and flags still override)",
    )
    r.add_argument(
        "--resume", nargs="?", const="auto", help="continue from OUTPUT/last.pt (or the given file)"
    )
    r.add_argument("--workers", type=int, help=_d("workers", "DataLoader worker processes per rank"))
    r.add_argument("--seed", type=int, help=_d("seed"))
    r.add_argument("--device", help=_d("device", "auto, cpu, cuda or cuda:N"))
    r.add_argument("--amp", action=_BOOL, help=_d("amp", "CUDA automatic mixed precision"))
    r.add_argument(
        "--channels-last", action=_BOOL, help=_d("channels_last", "CUDA channels-last memory format")
    )
    r.add_argument(
        "--deterministic",
        action=_BOOL,
        help=_d("deterministic", "deterministic algorithms", none="on for CPU, off for CUDA"),
    )
    r.add_argument("--threads", type=int, help=_d("threads", "torch CPU threads", none="torch default"))
    r.add_argument(
        "--freeze-bn", action=_BOOL, help=_d("freeze_bn", "batch norm keeps its running statistics")
    )
    r.add_argument(
        "--sync-bn",
        action=_BOOL,
        help=_d(
            "sync_bn",
            "batch norm over the global batch of all ranks (per-GPU batch = --batch-size / GPUs)",
            none="on for multi-GPU CUDA runs",
        ),
    )
    r.add_argument(
        "--eval-batch-size",
        type=int,
        help=_d("eval_batch_size", "validation batch per rank", none="batch-size per rank"),
    )
    r.add_argument("--progress", action=_BOOL, help=_d("progress", "progress bar"))
    r.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    r.add_argument("--log-level", help=f"logging level [{_LOG_LEVEL}]")
    return p


_NOT_FIELDS = {"config", "resume", "print_config", "log_level", "paper"}


def resolve_config(args: argparse.Namespace) -> tuple[Any, str | None]:
    """Merge defaults (or the resumed run's config), the YAML file and the given flags.

    Returns:
        ``(TrainConfig, resume path or None)``.

    Raises:
        TrainStateError: the ``last.pt`` to resume cannot be loaded, or its saved config is invalid.
        ConfigError: the flags or the YAML file are invalid, or there is nothing to resume.
    """
    from cral_model.engine import TrainStateError, load_train_state
    from cral_model.train_config import load_yaml_config

    given = {k: v for k, v in vars(args).items() if k not in _NOT_FIELDS}
    if "lr_steps" in given:
        given["lr_steps"] = tuple(given["lr_steps"])
    if "data_root" in given:
        roots = list(given["data_root"])
        given["data_root"] = roots[0] if len(roots) == 1 else tuple(roots)
    if "crop_scale" in given:
        given["crop_scale"] = tuple(given["crop_scale"])
    from_yaml = load_yaml_config(args.config) if getattr(args, "config", None) else {}
    base: dict[str, Any] = {}
    resume = getattr(args, "resume", None)
    resume_path = None
    if resume is not None:
        output = given.get("output", from_yaml.get("output"))
        if resume == "auto":
            if not output:
                raise ConfigError("--resume needs --output (or a path: --resume RUN/last.pt)")
            resume_path = str(Path(output) / "last.pt")
        else:
            resume_path = resume
        if not Path(resume_path).exists():
            raise ConfigError(f"nothing to resume: {resume_path} does not exist")
        base = dict(load_train_state(resume_path)["config"])
        if not output:
            given["output"] = str(Path(resume_path).parent)
    # --paper: the paper's recipe over the defaults (a resumed run already holds it in its saved config)
    preset = PAPER_PRESET if getattr(args, "paper", False) and not base else {}
    merged = {**base, **preset, **from_yaml, **given}
    try:
        cfg = TrainConfig.from_dict(merged)
    except (ConfigError, TypeError, ValueError):
        if base:  # whose fault: the saved config (damaged state) or a flag/YAML value?
            try:
                TrainConfig.from_dict(base)
            except (ConfigError, TypeError, ValueError) as exc:
                raise TrainStateError(f"{resume_path}: its saved run config is invalid ({exc})") from exc
        raise
    return cfg, resume_path


def _cannot_resume(exc: Exception, args: argparse.Namespace) -> int:
    """Report a ``last.pt`` that cannot be resumed in one line, with what to do; the exit status."""
    output, resume = getattr(args, "output", None), getattr(args, "resume", None)
    folder = Path(output) if output else Path(resume).parent if resume not in (None, "auto") else None
    saved = folder / "config.yaml" if folder is not None else None
    how = "it restarts from epoch 1"
    if saved is not None and saved.is_file():
        how = f"`cral-train --config {saved}` restarts it from epoch 1 with its settings"
    sys.stderr.write(
        f"cral-train: error: cannot resume: {exc}. Start the run again without --resume ({how}), "
        "or point --resume FILE to another last.pt\n"
    )
    return 2


def _setup_logging(level: str, output: str | None) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    else:
        root.setLevel(level.upper())
    if output:
        Path(output).mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(Path(output) / "train.log", encoding="utf-8")
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        fh.set_name("cral-train-file")
        for h in list(root.handlers):
            if h.get_name() == "cral-train-file":
                root.removeHandler(h)
                h.close()
        root.addHandler(fh)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cral-train``; returns the process exit status."""
    import os

    parser = get_parser()
    args = parser.parse_args(argv)
    from cral_model.engine import TrainStateError

    try:
        cfg, resume_path = resolve_config(args)
    except TrainStateError as exc:
        return _cannot_resume(exc, args)
    except (ConfigError, ValueError, TypeError, OSError) as exc:
        parser.error(str(exc))
    if getattr(args, "print_config", False):
        import yaml

        sys.stdout.write(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        return 0
    if not cfg.output:
        parser.error("--output is required")
    if not cfg.data_root and not cfg.train_csv:
        parser.error("--data-root is required (or --train-csv for own data)")
    is_main = int(os.environ.get("RANK", "0")) == 0
    _setup_logging(getattr(args, "log_level", _LOG_LEVEL), cfg.output if is_main else None)

    from cral_model.data import MissingImagesError
    from cral_model.data.cache import CacheError
    from cral_model.engine import fit
    from cral_model.models.backbones import PretrainedWeightsUnavailable

    command = ["cral-train", *(sys.argv[1:] if argv is None else list(argv))]
    try:
        result = fit(cfg, resume=resume_path, command=command)
    except TrainStateError as exc:  # found while restoring: the weights do not fit the model, ...
        return _cannot_resume(exc, args)
    except (MissingImagesError, PretrainedWeightsUnavailable, FileNotFoundError, CacheError) as exc:
        _log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        _log.warning("interrupted; continue with: cral-train --output %s --resume", cfg.output)
        return 130
    if is_main:
        auc = f"{result.best_mean_auc:.4f}" if result.best_mean_auc is not None else "n/a"
        _log.info(
            "done: best epoch %s (validation mean AUC %s) -> %s",
            result.best_epoch,
            auc,
            Path(cfg.output) / "best.safetensors",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
