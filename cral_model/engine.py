"""Training and evaluation loops (plain functions, no globals) and `fit`, the whole ``cral-train`` run.

Run layout (``OUTPUT/``): ``config.yaml`` (resolved `TrainConfig`), ``last.pt`` (training state after
the latest epoch, written atomically; loaded with ``torch.load(weights_only=True)``), ``best.safetensors``
(viewer checkpoint of the epoch with the best validation mean AUC, per-class thresholds by Youden's J on
the validation set), ``log.jsonl`` (one JSON object per epoch) and ``train.log``.

Reproducibility: with the same config, data and thread count, a CPU run gives bit-identical weights
every time, and ``--resume`` after an interruption gives the same weights as an uninterrupted run: the
model is seeded, the data order and every augmentation are functions of ``(seed, epoch, index)`` (see
`cral_model.data.dataset`), deterministic algorithms are enforced, and the state (`TrainState`)
holds model, optimizer, grad scaler and RNG states.

`fit` runs in steps: set up the data (`_make_loaders`) and what trains (`_build_trainer`), restore a
``last.pt`` (`_restore`), then per epoch train and validate (`_run_epoch`) and select, export and save
(`_record_epoch`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import math
import os
import pickle
import platform
import random
import shlex
import stat
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from cral_model.checkpoint import git_commit, replace_durably
from cral_model.data import (
    EpochSampler,
    EvalPreset,
    ImageDataset,
    LabeledImages,
    TrainPreset,
    load_csv_dataset,
    load_nih_split,
    patient_split,
)
from cral_model.devices import torch_device
from cral_model.distributed import (
    DistInfo,
    all_gather_array,
    all_reduce_mean,
    barrier,
    cleanup,
    convert_sync_batchnorm,
    init_distributed,
)
from cral_model.labels import CLASS_NAMES
from cral_model.losses import build_loss
from cral_model.metrics import (
    mean_auc,
    normal_flag_rate,
    normal_flag_rate_thresholds,
    per_class_auc,
    youden_thresholds,
)
from cral_model.models.agcnn import AGCNN

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from cral_model.train_config import TrainConfig

__all__ = [
    "STATE_FORMAT",
    "EvalResult",
    "FitResult",
    "TrainState",
    "TrainStateError",
    "evaluate",
    "fit",
    "load_train_state",
    "predict",
    "seed_everything",
    "train_one_epoch",
]

_log = logging.getLogger(__name__)

STATE_FORMAT = "cral-train-state"
STATE_VERSION = 1
_AUTO_CACHE_BYTES = 2 * 1024**3  # cache decoded images automatically when they fit in this


# =============================================================================================== helpers


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _worker_init(worker_id: int) -> None:
    # torch seeds each worker with base_seed + worker_id; derive NumPy's and Python's seeds from it.
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def _atomic_torch_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        torch.save(obj, tmp)
        replace_durably(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _remove_stale_temporaries(out: Path) -> None:
    """Delete ``last.pt.*.tmp`` / ``best*.safetensors.*.tmp`` left by a run killed while saving.

    Only the run that owns ``out`` writes there, so at its start no temporary file is in use.
    """
    for pattern in ("last.pt.*.tmp", "*.safetensors.*.tmp"):
        for tmp in out.glob(pattern):
            with contextlib.suppress(OSError):
                tmp.unlink()


def _nan_to_none(obj: Any) -> Any:
    """JSON-safe copy: float NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def _set_bn_eval(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


# =============================================================================================== data


@dataclass
class DataSplits:
    """Resolved training and validation images plus a JSON-able description (goes into provenance)."""

    train: LabeledImages
    val: LabeledImages | None
    info: dict[str, Any] = field(default_factory=dict)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's) or AdamW; AdamW leaves biases and norm weights undecayed."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr)


def load_splits(cfg: TrainConfig) -> DataSplits:
    """Read the training data named by ``cfg`` and split off validation patients.

    NIH: ``train_val_list.txt`` minus a seeded ``val_fraction`` of its patients (among the images
    present when ``allow_missing``). CSV: ``train_csv`` and ``val_csv``, or a patient split of ``train_csv``.
    """
    val: LabeledImages | None
    if cfg.train_csv:
        csv_root = cfg.data_roots[0] if cfg.data_roots else None
        full = load_csv_dataset(cfg.train_csv, data_root=csv_root, allow_missing=cfg.allow_missing)
        source: dict[str, Any] = {"format": "csv", "train_csv": Path(cfg.train_csv).name}
        if cfg.val_csv:
            val = load_csv_dataset(cfg.val_csv, data_root=csv_root, allow_missing=cfg.allow_missing)
            train = full
            source["val_csv"] = Path(cfg.val_csv).name
        else:
            tr, va = patient_split(full.patients, cfg.val_fraction, cfg.split_seed)
            train, val = full.subset(tr), (full.subset(va) if len(va) else None)
    else:
        if not cfg.data_root:
            raise ValueError("data_root is required (or train_csv for the plain CSV format)")
        full = load_nih_split(
            cfg.data_roots, "train_val", labels_dir=cfg.labels_dir, allow_missing=cfg.allow_missing
        )
        names = [Path(r).resolve().name for r in cfg.data_roots]
        source = {"format": "nih", "data_root": names[0] if len(names) == 1 else names}
        if cfg.labels_dir:
            source["labels_dir"] = Path(cfg.labels_dir).resolve().name
        tr, va = patient_split(full.patients, cfg.val_fraction, cfg.split_seed)
        train, val = full.subset(tr), (full.subset(va) if len(va) else None)
    if cfg.max_train_images is not None and len(train) > cfg.max_train_images:
        rng = np.random.default_rng(cfg.seed)
        keep = np.sort(rng.choice(len(train), cfg.max_train_images, replace=False))
        train = train.subset(keep)
    info = {
        **source,
        "val_fraction": cfg.val_fraction,
        "split_seed": cfg.split_seed,
        "allow_missing": cfg.allow_missing,
        "n_missing": full.n_missing,
        "n_train": len(train),
        "n_val": len(val) if val is not None else 0,
        "n_train_patients": len(set(train.patients)),
        "n_val_patients": len(set(val.patients)) if val is not None else 0,
    }
    return DataSplits(train=train, val=val, info=info)


def _auto_cache(images: LabeledImages, setting: bool | None) -> bool:
    if setting is not None:
        return setting
    if len(images) == 0:
        return False
    from PIL import Image

    # Data pooled from several folders can mix sizes: estimate from the largest of a few spread samples.
    picks = sorted({round(i * (len(images) - 1) / 7) for i in range(8)})
    bytes_per = 0
    try:
        for i in picks:
            with Image.open(images.paths[i]) as im:
                w, h = im.size
                bytes_per = max(bytes_per, w * h * (2 if im.mode.startswith("I") else 1))
    except OSError:
        return False
    return bytes_per * len(images) <= _AUTO_CACHE_BYTES


def make_loader(
    dataset: ImageDataset,
    sampler: EpochSampler,
    *,
    batch_size: int,
    workers: int,
    device: torch.device,
    seed: int,
    drop_last: bool = False,
) -> torch.utils.data.DataLoader[Any]:
    """A DataLoader over ``sampler`` with seeded, persistent workers."""
    g = torch.Generator()
    g.manual_seed(seed)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=drop_last,
        persistent_workers=workers > 0,
        worker_init_fn=_worker_init if workers > 0 else None,
        generator=g,
    )


# =============================================================================================== loops


@dataclass
class _Precision:
    device: torch.device
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False

    def autocast(self) -> Any:
        if self.amp_dtype is None:
            return torch.autocast(device_type=self.device.type, enabled=False)
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def to_input(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def train_one_epoch(
    model: nn.Module,
    loader: torch.utils.data.DataLoader[Any],
    optimizer: torch.optim.Optimizer,
    *,
    precision: _Precision | None = None,
    scaler: torch.amp.GradScaler | None = None,
    freeze_bn: bool = False,
    progress: bool = False,
    description: str = "train",
    on_step: Callable[[int], None] | None = None,
    ema: torch.optim.swa_utils.AveragedModel | None = None,
    criterion: nn.Module | None = None,
) -> dict[str, float]:
    """One pass over ``loader`` with ``criterion`` (default BCE-with-logits averaged over batch and classes).

    A network whose ``takes_targets`` is set (`cral_model.models.base.ChestNet`) is called as
    ``model(x, y)`` and may return ``(logits, extra_loss)``; the extra term is added to the loss.

    Args:
        model: network (possibly DDP-wrapped) returning logits (B, K).
        loader: yields ``(images (B, C, S, S), targets (B, K), indices (B,))``.
        precision: device, autocast dtype and memory format (default: CPU, float32).
        scaler: a GradScaler for float16 autocast, else None.
        freeze_bn: keep batch-norm layers in eval mode (running statistics).
        progress: show a tqdm bar with the running loss and images/s.
        on_step: called with the step index after each optimizer step (tests use it to interrupt).
        ema: an exponential moving average of the (unwrapped) model, updated after each step.
        criterion: ``loss(logits (B, K), targets (B, K))`` (`cral_model.losses.build_loss`).

    Returns:
        ``{"loss": mean loss of this rank, "images": count, "seconds", "images_per_s"}``.
    """
    from tqdm.auto import tqdm

    precision = precision or _Precision(torch.device("cpu"))
    model.train()
    if freeze_bn:
        _set_bn_eval(model)
    criterion = criterion if criterion is not None else nn.BCEWithLogitsLoss()
    takes_targets = bool(getattr(_unwrap(model), "takes_targets", False))
    total_loss, n_images, n_batches = 0.0, 0, 0
    t0 = time.perf_counter()
    bar = tqdm(loader, desc=description, leave=False, disable=not progress, dynamic_ncols=True)
    for step, (x, y, _) in enumerate(bar):
        x = precision.to_input(x)
        y = y.to(precision.device, non_blocking=True)
        with precision.autocast():
            out = model(x, y) if takes_targets else model(x)
            logits, extra = out if isinstance(out, tuple) else (out, None)
            loss = criterion(logits.float(), y)
            if extra is not None:
                loss = loss + extra.float()
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if ema is not None:
            ema.update_parameters(_unwrap(model))
        lv = float(loss.detach())
        if not math.isfinite(lv):
            raise FloatingPointError(f"loss is {lv} at step {step}; lower --lr or check the data")
        total_loss += lv
        n_batches += 1
        n_images += x.shape[0]
        if progress:
            dt = time.perf_counter() - t0
            bar.set_postfix(loss=f"{total_loss / n_batches:.4f}", img_s=f"{n_images / max(dt, 1e-9):.1f}")
        if on_step is not None:
            on_step(step)
    seconds = time.perf_counter() - t0
    return {
        "loss": total_loss / max(n_batches, 1),
        "images": float(n_images),
        "seconds": seconds,
        "images_per_s": n_images / max(seconds, 1e-9),
    }


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: torch.utils.data.DataLoader[Any],
    n_total: int,
    *,
    precision: _Precision | None = None,
    info: DistInfo | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Probabilities for every image of a (possibly rank-sharded) evaluation loader.

    With several ranks each predicts its shard; shards are gathered with ``all_gather`` and put back
    in dataset order (padding duplicates collapse), so every rank returns the full arrays.

    Returns:
        ``(probs (N, K) float64, targets (N, K) float64, mean BCE loss)``.
    """
    from tqdm.auto import tqdm

    precision = precision or _Precision(torch.device("cpu"))
    info = info or DistInfo()
    model.eval()
    idx_l, p_l, t_l = [], [], []
    for x, y, idx in tqdm(loader, desc="eval", leave=False, disable=not progress, dynamic_ncols=True):
        with precision.autocast():
            logits = model(precision.to_input(x))
        p_l.append(torch.sigmoid(logits.float()).cpu().numpy().astype(np.float64))
        t_l.append(y.numpy().astype(np.float64))
        idx_l.append(np.asarray(idx, dtype=np.int64))
    k = len(CLASS_NAMES) if not p_l else p_l[0].shape[1]
    idx = np.concatenate(idx_l) if idx_l else np.zeros(0, np.int64)
    probs = np.concatenate(p_l) if p_l else np.zeros((0, k))
    targets = np.concatenate(t_l) if t_l else np.zeros((0, k))
    if info.distributed:
        idx = np.concatenate(all_gather_array(idx, info))
        probs = np.concatenate(all_gather_array(probs, info))
        targets = np.concatenate(all_gather_array(targets, info))
    out_p = np.full((n_total, k), np.nan)
    out_t = np.full((n_total, k), np.nan)
    out_p[idx], out_t[idx] = probs, targets
    if np.isnan(out_p).any():
        raise RuntimeError("some images got no prediction (sampler and dataset disagree)")
    eps = 1e-12
    loss = float(-np.mean(out_t * np.log(out_p + eps) + (1 - out_t) * np.log(1 - out_p + eps)))
    return out_p, out_t, loss


@dataclass
class EvalResult:
    """Predictions and AUCs of one evaluation pass."""

    probs: np.ndarray
    targets: np.ndarray
    loss: float
    per_class_auc: dict[str, float]
    mean_auc: float


def evaluate(
    model: nn.Module,
    loader: torch.utils.data.DataLoader[Any],
    n_total: int,
    *,
    precision: _Precision | None = None,
    info: DistInfo | None = None,
    progress: bool = False,
) -> EvalResult:
    """`predict` + per-class AUC (undefined classes are NaN, without a warning) and their mean."""
    probs, targets, loss = predict(model, loader, n_total, precision=precision, info=info, progress=progress)
    aucs = per_class_auc(probs, targets, warn=False)
    return EvalResult(probs, targets, loss, aucs, mean_auc(aucs))


# =============================================================================================== state


def _rng_state() -> dict[str, Any]:
    np_state: tuple[Any, ...] = tuple(np.random.get_state())
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


@dataclass
class TrainState:
    """What ``last.pt`` holds: everything a resumed run needs to continue bit for bit.

    On disk it is the plain dict of `to_dict` (tensors, numbers, strings, lists and dicts only), so
    `load_train_state` reads it back with ``torch.load(weights_only=True)``.

    Attributes:
        epoch: epochs completed; a resumed run continues with this 0-based epoch.
        model: state dict of the (unwrapped) model.
        optimizer: the optimizer's state dict.
        rng: Python, NumPy, torch and CUDA generator states (`_rng_state`).
        config: `TrainConfig.to_dict` of the run.
        deterministic: whether deterministic algorithms were on (informational).
        ema: state dict of the weight average, None without ``ema_decay``.
        scaler: state dict of the float16 grad scaler, None without one.
        best_epoch: 1-based epoch of the current export, None before the first.
        best_mean_auc: that epoch's selection score (validation mean AUC); None when undefined.
        history: one record per completed epoch (the lines of ``log.jsonl``).
    """

    epoch: int
    model: dict[str, Any]
    optimizer: dict[str, Any]
    rng: dict[str, Any]
    config: dict[str, Any]
    deterministic: bool | None = None
    ema: dict[str, Any] | None = None
    scaler: dict[str, Any] | None = None
    best_epoch: int | None = None
    best_mean_auc: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The dict saved as ``last.pt`` (``format`` and ``version`` first; the key order of version 1)."""
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "epoch": self.epoch,
            "model": self.model,
            "ema": self.ema,
            "optimizer": self.optimizer,
            "scaler": self.scaler,
            "rng": self.rng,
            "best_epoch": self.best_epoch,
            "best_mean_auc": self.best_mean_auc,
            "history": self.history,
            "config": self.config,
            "deterministic": self.deterministic,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> TrainState:
        """The inverse of `to_dict` (``ema``, ``scaler``, ``history``, ``config`` may be missing)."""
        return cls(
            epoch=int(state["epoch"]),
            model=state["model"],
            optimizer=state["optimizer"],
            rng=state["rng"],
            config=dict(state.get("config", {})),
            deterministic=state.get("deterministic"),
            ema=state.get("ema"),
            scaler=state.get("scaler"),
            best_epoch=state["best_epoch"],
            best_mean_auc=state["best_mean_auc"],
            history=list(state.get("history", [])),
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrainState:
        """`load_train_state` as a `TrainState`."""
        return cls.from_dict(load_train_state(path))


class TrainStateError(ValueError):
    """A ``last.pt`` that cannot be resumed: missing pieces, damaged, truncated, not a training state,
    or state that does not fit this run's model. The message is one line and names the file."""

    def __init__(self, reason: object) -> None:
        super().__init__(" ".join(str(reason).split()))


class _UnsafeStateError(TrainStateError, pickle.UnpicklingError):
    """``torch.load(weights_only=True)`` refused the file's pickle (it was not run)."""


#: Keys every saved state has (`TrainState.to_dict`); ``ema``, ``scaler``, ``history`` may be None/absent.
_STATE_KEYS = ("epoch", "model", "optimizer", "rng", "config", "best_epoch", "best_mean_auc")
_ZIP_MAGIC = b"PK\x03\x04"


def _first_sentence(exc: BaseException, limit: int = 120) -> str:
    """The start of a library's (often multi-line) message, for a one-line reason."""
    text = " ".join(str(exc).split())
    text = text.split(". ", 1)[0].rstrip(".") if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _sniff_state(path: Path) -> None:
    """Refuse, by its first bytes, what cannot be a ``last.pt`` (before torch reads it).

    Only regular files are opened (a FIFO would block); empty files, safetensors model checkpoints
    and JSON files get a reason naming what they are. PyTorch zip archives and pickles go on to
    ``torch.load(weights_only=True)``.
    """
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO, device or socket"
            raise TrainStateError(f"{path} is not a regular file ({kind})")
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(9)
    except FileNotFoundError:
        raise TrainStateError(f"{path} does not exist") from None
    except OSError as exc:
        raise TrainStateError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if size == 0:
        raise TrainStateError(f"{path} is empty (0 bytes)")
    if head[:4] == _ZIP_MAGIC or head[:1] == b"\x80":
        return
    if len(head) == 9 and head[8:9] == b"{" and 2 <= struct.unpack("<Q", head[:8])[0] <= size - 8:
        raise TrainStateError(
            f"{path} is a safetensors model checkpoint (weights only), not a cral-train training state"
        )
    if head.lstrip()[:1] in (b"{", b"["):
        raise TrainStateError(f"{path} is a JSON file, not a cral-train training state")
    raise TrainStateError(f"{path} is not a cral-train state file (expected a PyTorch zip archive)")


def _check_state(state: Any, path: str | os.PathLike[str]) -> dict[str, Any]:
    """The loaded ``last.pt`` object, checked for the pieces and types a resume needs."""
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise TrainStateError(f"{path} is not a cral-train state file")
    if state.get("version") != STATE_VERSION:
        raise TrainStateError(f"{path}: unsupported state version {state.get('version')!r:.40}")
    missing = [k for k in _STATE_KEYS if k not in state]
    if missing:
        raise TrainStateError(f"{path}: the state lacks {missing} (incomplete, or not written by cral-train)")
    epoch = state["epoch"]
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise TrainStateError(f"{path}: epoch must be a count of epochs, got {epoch!r:.40}")
    wrong = [k for k in ("model", "optimizer", "rng", "config") if not isinstance(state[k], dict)]
    if wrong or not state["config"]:
        raise TrainStateError(f"{path}: {wrong or ['config']} must be non-empty dicts")
    if not isinstance(state.get("history", []), list):
        raise TrainStateError(f"{path}: history must be a list of epoch records")
    return state


def load_train_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load ``last.pt`` safely (``weights_only=True``: tensors and plain Python types only).

    Returns:
        The saved dict (`TrainState.to_dict`; `TrainState.load` gives the dataclass), with every key
        of `TrainState` but ``ema``/``scaler``/``history`` present and of the right kind.

    Raises:
        TrainStateError: not a regular file, empty, truncated or damaged, not a cral-train state file
            (a safetensors checkpoint, JSON), an unsupported version, or pieces missing (the config).
            A pickle that ``weights_only`` refuses raises it as a `pickle.UnpicklingError` too.
    """
    _sniff_state(Path(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise _UnsafeStateError(
            f"{path} cannot be unpickled safely: it is damaged or holds objects other than tensors "
            f"and plain data (nothing in it was run): {_first_sentence(exc)}"
        ) from exc
    except Exception as exc:  # torch's reader raises RuntimeError, EOFError, KeyError... on damage
        raise TrainStateError(f"{path} is damaged or truncated: {_first_sentence(exc)}") from exc
    return _check_state(state, path)


# =============================================================================================== fit


@dataclass
class FitResult:
    """What a training run produced."""

    output: Path
    best_epoch: int | None
    best_mean_auc: float | None
    history: list[dict[str, Any]]


def _configure_runtime(cfg: TrainConfig, device: torch.device) -> bool:
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    deterministic = cfg.deterministic if cfg.deterministic is not None else device.type == "cpu"
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = device.type == "cuda"
    return deterministic


def _export_best(
    model: nn.Module,
    out: Path,
    cfg: TrainConfig,
    *,
    epoch: int,
    result: EvalResult | None,
    data_info: dict[str, Any],
    command: Sequence[str],
) -> None:
    from cral_model.checkpoint import save_checkpoint

    thresholds = None
    metrics: dict[str, Any] = {"epoch": epoch + 1}
    if result is not None:
        if cfg.threshold_rule == "normal_flag_rate":
            thresholds, fit = normal_flag_rate_thresholds(
                result.probs, result.targets, max_rate=cfg.max_normal_flag_rate
            )
            rule = (
                "one common specificity for every class, the lowest at which at most "
                f"{cfg.max_normal_flag_rate:.0%} of the validation 'No Finding' images are flagged "
                f"(specificity {fit['specificity']:.3f})"
            )
        else:
            thresholds = youden_thresholds(result.probs, result.targets)
            rule = (
                "Youden's J (max sensitivity + specificity - 1) on the validation split; "
                "0.5 where the validation split lacks positives or negatives"
            )
        metrics.update(
            {
                "val_mean_auc": result.mean_auc,
                "val_per_class_auc": result.per_class_auc,
                "val_loss": result.loss,
                "threshold_rule": rule,
                "val_normal_flag_rate": normal_flag_rate(result.probs, result.targets, thresholds),
            }
        )
    provenance = {
        "data": data_info,
        "command": shlex.join(command),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "train_config": cfg.replace(output=None).to_dict() | {"data_root": data_info.get("data_root")},
    }
    save_checkpoint(
        _unwrap(model),
        out / "best.safetensors",
        preprocessing=cfg.preprocess_config(),
        thresholds=thresholds,
        provenance=_nan_to_none(provenance),
        metrics=_nan_to_none(metrics),
    )


def fit(
    cfg: TrainConfig,
    *,
    resume: str | os.PathLike[str] | None = None,
    command: Sequence[str] | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> FitResult:
    """Train according to ``cfg`` (see the module docstring for what lands in ``cfg.output``).

    Args:
        cfg: the resolved run configuration; ``cfg.output`` is required.
        resume: path of a ``last.pt`` to continue from (its model/optimizer/RNG state and epoch).
        command: the command line, for provenance (default ``sys.argv``).
        on_step: ``(epoch, step)`` callback after every optimizer step (tests interrupt runs with it).

    Returns:
        `FitResult` (on every rank; only rank 0 writes files).
    """
    from cral_model.models.cral import build_model_from_config

    if not cfg.output:
        raise ValueError("output folder is required")
    out = Path(cfg.output)
    command = list(command) if command is not None else list(sys.argv)

    # Device and process group first: the device decides the backend.
    device = torch_device(cfg.device, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    info = init_distributed(device)
    # fit() changes process-wide torch settings; put them back afterwards (tests and notebooks call it).
    saved = (
        torch.get_num_threads(),
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
    )
    try:
        return _fit(cfg, out, device, info, resume, command, on_step, build_model_from_config)
    finally:
        cleanup(info)
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])
        torch.backends.cudnn.benchmark = saved[3]


def _bind_epoch(fn: Callable[[int, int], None] | None, epoch: int) -> Callable[[int], None] | None:
    if fn is None:
        return None

    def call(step: int) -> None:
        fn(epoch, step)

    return call


@dataclass(frozen=True)
class _Run:
    """What every step of one run reads: its config, output folder, rank and provenance."""

    cfg: TrainConfig
    out: Path
    info: DistInfo
    deterministic: bool
    command: list[str]


@dataclass
class _Loaders:
    """The run's data: the splits, the training sampler (reseeded every epoch) and both loaders."""

    splits: DataSplits
    train_sampler: EpochSampler
    train: torch.utils.data.DataLoader[Any]
    val: torch.utils.data.DataLoader[Any] | None


@dataclass
class _Trainer:
    """What trains: the model (DDP-wrapped once `_distribute` ran), its optimizer, precision and average."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    precision: _Precision
    scaler: torch.amp.GradScaler | None
    ema: torch.optim.swa_utils.AveragedModel | None
    method: str = "cral"

    @property
    def scored(self) -> nn.Module:
        """The weights validated, selected and exported: the average with ``ema_decay``, else the model."""
        return self.ema.module if self.ema is not None else self.model


@dataclass
class _Progress:
    """Where the run stands: epochs completed, the exported epoch and its score, the epoch records."""

    epoch: int = 0
    best_epoch: int | None = None
    best_score: float = -math.inf  # -inf: no defined score yet
    history: list[dict[str, Any]] = field(default_factory=list)

    def select(self, epoch: int, score: float, *, always: bool) -> bool:
        """Whether 0-based ``epoch`` (with selection ``score``, NaN when undefined) becomes the export.

        It does when ``always`` (``export: last``), when nothing was exported yet (an all-undefined
        validation AUC still exports something), or when its score beats the best so far.
        """
        improved = always or self.best_epoch is None or (not math.isnan(score) and score > self.best_score)
        if improved:
            self.best_epoch, self.best_score = epoch + 1, (score if not math.isnan(score) else -math.inf)
        return improved

    @property
    def best_mean_auc(self) -> float | None:
        return self.best_score if math.isfinite(self.best_score) else None


def _fit(
    cfg: TrainConfig,
    out: Path,
    device: torch.device,
    info: DistInfo,
    resume: str | os.PathLike[str] | None,
    command: list[str],
    on_step: Callable[[int, int], None] | None,
    build: Callable[..., nn.Module],
) -> FitResult:
    """`fit` once the device and process group are set: prepare, restore, then train epoch by epoch."""
    deterministic = _configure_runtime(cfg, device)
    if cfg.batch_size % info.world_size:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the {info.world_size} ranks")
    per_rank_batch = cfg.batch_size // info.world_size
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(out)
        cfg.to_yaml(out / "config.yaml")
    run = _Run(cfg, out, info, deterministic, command)
    loaders = _make_loaders(cfg, info, device, per_rank_batch)
    trainer = _build_trainer(cfg, device, build)
    progress = _restore(resume, cfg, trainer, info) if resume is not None else _Progress()
    _distribute(trainer, info, device, sync_bn=_use_sync_bn(cfg, info, device))
    if info.is_main:
        _reset_log(out / "log.jsonl", progress.history, resumed=resume is not None)
    for epoch in range(progress.epoch, cfg.total_epochs):
        record, result = _run_epoch(run, epoch, trainer, loaders, _bind_epoch(on_step, epoch))
        _record_epoch(run, epoch, record, result, trainer, progress, data_info=loaders.splits.info)
        barrier(info)
    return FitResult(
        output=out,
        best_epoch=progress.best_epoch,
        best_mean_auc=progress.best_mean_auc,
        history=progress.history,
    )


def _make_loaders(cfg: TrainConfig, info: DistInfo, device: torch.device, per_rank_batch: int) -> _Loaders:
    """Read and split the data (`load_splits`) and build this rank's training and validation loaders."""
    splits = load_splits(cfg)
    if info.is_main:
        _log.info(
            "data: %d training images (%d patients), %d validation images (%d patients), %d missing",
            splits.info["n_train"],
            splits.info["n_train_patients"],
            splits.info["n_val"],
            splits.info["n_val_patients"],
            splits.info["n_missing"],
        )
    pre = cfg.preprocess_config()
    from cral_model.data.cache import cache_resolution_warning

    low_res = cache_resolution_warning(cfg.data_roots, pre.resize)
    if low_res and info.is_main:
        _log.warning("%s", low_res)
    cache = _auto_cache(splits.train, cfg.cache_images)
    train_ds = ImageDataset(
        splits.train,
        TrainPreset(
            pre,
            scale=cfg.crop_scale,
            hflip=cfg.hflip,
            rotate=cfg.rotate,
            intensity=cfg.intensity,
            downscale=cfg.downscale,
            downscale_min=cfg.downscale_min,
        ),
        cache=cache,
    )
    train_sampler = EpochSampler(
        len(train_ds), shuffle=True, seed=cfg.seed, num_replicas=info.world_size, rank=info.rank
    )
    drop_last = len(train_sampler) >= per_rank_batch and len(train_sampler) % per_rank_batch == 1
    train_loader = make_loader(
        train_ds,
        train_sampler,
        batch_size=per_rank_batch,
        workers=cfg.workers,
        device=device,
        seed=cfg.seed,
        drop_last=drop_last,  # only to avoid a single-image batch (batch norm cannot train on it)
    )
    val_loader = None
    if splits.val is not None:
        val_ds = ImageDataset(splits.val, EvalPreset(pre), cache=cache)
        val_sampler = EpochSampler(
            len(val_ds), shuffle=False, num_replicas=info.world_size, rank=info.rank, augment_seeds=False
        )
        eval_bs = cfg.eval_batch_size or per_rank_batch
        val_loader = make_loader(
            val_ds, val_sampler, batch_size=eval_bs, workers=cfg.workers, device=device, seed=cfg.seed
        )
    return _Loaders(splits=splits, train_sampler=train_sampler, train=train_loader, val=val_loader)


def _build_trainer(cfg: TrainConfig, device: torch.device, build: Callable[..., nn.Module]) -> _Trainer:
    """Seeded model, precision, optimizer and (with ``ema_decay``) weight average, not yet DDP-wrapped."""
    # Identical initialisation on every rank (and DDP broadcasts rank 0's anyway).
    seed_everything(cfg.seed)
    model = build(cfg.model_config()).to(device)
    if isinstance(model, AGCNN):  # a training choice, not part of the model config
        model.fusion_init = cfg.agcnn_fusion_init
    use_cuda = device.type == "cuda"
    channels_last = cfg.channels_last and use_cuda
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    amp_dtype = None
    scaler = None
    if cfg.amp and use_cuda:
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if amp_dtype == torch.float16:
            scaler = torch.amp.GradScaler("cuda")
    optimizer = make_optimizer(model, cfg)
    ema = None
    if cfg.ema_decay is not None:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        # Batch-norm running statistics are averaged too (use_buffers), so the average is usable as is.
        # get_ema_multi_avg_fn has no annotations in torch.
        average = get_ema_multi_avg_fn(cfg.ema_decay)  # type: ignore[no-untyped-call]
        ema = AveragedModel(_unwrap(model), multi_avg_fn=average, use_buffers=True)
    return _Trainer(model, optimizer, _Precision(device, amp_dtype, channels_last), scaler, ema, cfg.method)


def _restore(
    resume: str | os.PathLike[str], cfg: TrainConfig, trainer: _Trainer, info: DistInfo
) -> _Progress:
    """Load ``resume`` (a ``last.pt``) into ``trainer`` and the RNGs; return where that run stood.

    Raises:
        TrainStateError: the file cannot be loaded, or its pieces do not fit this run's model,
            optimizer or weight average.
    """
    state = TrainState.load(resume)
    with _restoring(resume, "model weights"):
        trainer.model.load_state_dict(state.model)
    if trainer.ema is not None:
        if state.ema is None:
            raise TrainStateError(f"{resume} has no weight average but this run sets ema_decay")
        with _restoring(resume, "weight average"):
            trainer.ema.load_state_dict(state.ema)
    with _restoring(resume, "optimizer state"):
        trainer.optimizer.load_state_dict(state.optimizer)
    if trainer.scaler is not None and state.scaler:
        with _restoring(resume, "grad scaler state"):
            trainer.scaler.load_state_dict(state.scaler)
    with _restoring(resume, "random generator states"):
        _set_rng_state(state.rng)
    if info.is_main:
        saved_cfg = state.config
        diffs = {k: (saved_cfg.get(k), v) for k, v in cfg.to_dict().items() if saved_cfg.get(k) != v}
        if diffs:
            _log.warning("resuming with config changes (saved -> now): %s", diffs)
        _log.info("resumed from %s after epoch %d", resume, state.epoch)
    return _Progress(
        epoch=state.epoch,
        best_epoch=state.best_epoch,
        best_score=state.best_mean_auc if state.best_mean_auc is not None else -math.inf,
        history=state.history,
    )


@contextlib.contextmanager
def _restoring(resume: str | os.PathLike[str], part: str) -> Iterator[None]:
    """Turn the errors of ``load_state_dict`` (and of setting RNG states) into a `TrainStateError`."""
    try:
        yield
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise TrainStateError(f"{resume}: cannot restore its {part} ({_first_sentence(exc)})") from exc


def _use_sync_bn(cfg: TrainConfig, info: DistInfo, device: torch.device) -> bool:
    """Global-batch batch norm: ``cfg.sync_bn``, or by default for multi-process CUDA runs."""
    if not info.distributed or cfg.freeze_bn:
        return False
    return cfg.sync_bn if cfg.sync_bn is not None else device.type == "cuda"


def _distribute(trainer: _Trainer, info: DistInfo, device: torch.device, *, sync_bn: bool = False) -> None:
    """Wrap the model in DistributedDataParallel when the run has several ranks (batch norm over the
    global batch first, with ``sync_bn``: `cral_model.distributed.convert_sync_batchnorm`)."""
    if info.distributed:
        if sync_bn:
            trainer.model = convert_sync_batchnorm(trainer.model, device)
        ddp_kwargs: dict[str, Any] = {"device_ids": [device.index]} if device.type == "cuda" else {}
        if trainer.method != "cral":  # AG-CNN's stages and IAM's teacher leave parameters unused
            ddp_kwargs["find_unused_parameters"] = True
        trainer.model = nn.parallel.DistributedDataParallel(trainer.model, **ddp_kwargs)


def _reset_log(log_path: Path, history: list[dict[str, Any]], *, resumed: bool) -> None:
    """Start ``log.jsonl`` afresh, or (resuming) rewrite it as the resumed state's epoch records."""
    if not resumed:
        if log_path.exists():
            log_path.unlink()
        return
    # last.pt is the record: a kill between its save and the log append would otherwise lose a line,
    # and lines written after the state being resumed would be repeated.
    tmp = log_path.with_name(log_path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in history), encoding="utf-8")
    os.replace(tmp, log_path)


def _run_epoch(
    run: _Run,
    epoch: int,
    trainer: _Trainer,
    loaders: _Loaders,
    on_step: Callable[[int], None] | None,
) -> tuple[dict[str, Any], EvalResult | None]:
    """Train 0-based ``epoch`` and validate the scored weights.

    Returns:
        ``(record, result)``: the epoch's record (lr, train loss and speed, validation loss and AUCs)
        and the validation `EvalResult` (None without a validation split).
    """
    cfg, info = run.cfg, run.info
    phase, phase_epoch = divmod(epoch, cfg.epochs)  # AG-CNN stage / attention-mining round
    lr = cfg.lr_at(phase_epoch)  # the schedule restarts with every phase
    for group in trainer.optimizer.param_groups:
        group["lr"] = lr
    set_phase = getattr(_unwrap(trainer.model), "set_phase", None)
    if set_phase is not None:
        set_phase(phase)
    loaders.train_sampler.set_epoch(epoch)
    stats = train_one_epoch(
        trainer.model,
        loaders.train,
        trainer.optimizer,
        precision=trainer.precision,
        scaler=trainer.scaler,
        freeze_bn=cfg.freeze_bn,
        progress=cfg.progress and info.is_main,
        description=f"epoch {epoch + 1}/{cfg.total_epochs}",
        on_step=on_step,
        ema=trainer.ema,
        criterion=build_loss(cfg.loss),
    )
    (loss,) = all_reduce_mean([stats["loss"]], info)
    record: dict[str, Any] = {
        "epoch": epoch + 1,
        "phase": phase,
        "lr": lr,
        "train_loss": loss,
        "train_images_per_s": stats["images_per_s"] * info.world_size,
        "train_seconds": stats["seconds"],
    }
    result = None
    if loaders.val is not None and loaders.splits.val is not None:
        result = evaluate(
            trainer.scored,
            loaders.val,
            len(loaders.splits.val),
            precision=trainer.precision,
            info=info,
            progress=False,
        )
        record.update(
            {
                "val_loss": result.loss,
                "val_mean_auc": result.mean_auc,
                "val_per_class_auc": result.per_class_auc,
            }
        )
    return record, result


def _record_epoch(
    run: _Run,
    epoch: int,
    record: dict[str, Any],
    result: EvalResult | None,
    trainer: _Trainer,
    progress: _Progress,
    *,
    data_info: dict[str, Any],
) -> None:
    """Select, record and save 0-based ``epoch`` (files on the main rank only).

    Model selection (`_Progress.select`) runs on every rank; the main rank then exports
    ``best.safetensors`` when the epoch was selected, saves the `TrainState` as ``last.pt`` (before
    the log line: ``last.pt`` is the record, see `_reset_log`), appends to ``log.jsonl`` and logs.
    """
    cfg, out = run.cfg, run.out
    score = result.mean_auc if result is not None else float(epoch)
    improved = progress.select(epoch, score, always=cfg.export == "last")
    record["best_epoch"] = progress.best_epoch
    progress.history.append(_nan_to_none(record))
    progress.epoch = epoch + 1
    if not run.info.is_main:
        return
    if improved:
        _export_best(
            trainer.scored, out, cfg, epoch=epoch, result=result, data_info=data_info, command=run.command
        )
    state = TrainState(
        epoch=epoch + 1,
        model=_unwrap(trainer.model).state_dict(),
        optimizer=trainer.optimizer.state_dict(),
        rng=_rng_state(),
        config=cfg.to_dict(),
        deterministic=run.deterministic,
        ema=trainer.ema.state_dict() if trainer.ema is not None else None,
        scaler=trainer.scaler.state_dict() if trainer.scaler is not None else None,
        best_epoch=progress.best_epoch,
        best_mean_auc=progress.best_mean_auc,
        history=progress.history,
    )
    _atomic_torch_save(state.to_dict(), out / "last.pt")
    with open(out / "log.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(_nan_to_none(record)) + "\n")
    val_txt = f", val mean AUC {result.mean_auc:.4f}" if result is not None else ""
    _log.info(
        "epoch %d/%d: lr %.2g, train loss %.4f, %.1f img/s%s%s",
        epoch + 1,
        cfg.total_epochs,
        record["lr"],
        record["train_loss"],
        record["train_images_per_s"],
        val_txt,
        (" (exported)" if cfg.export == "last" else " (best)") if improved else "",
    )
