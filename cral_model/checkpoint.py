"""Checkpoints: one ``.safetensors`` file, weights plus JSON metadata in its header.

Loading never unpickles: safetensors stores raw tensor bytes, and the metadata is JSON. A PyTorch
pickle/zip file (``.pt``/``.pth``) is recognised by its first bytes and refused with an explanation.
The metadata carries a SHA-256 of the weights, so edited weights or metadata that no longer match are
refused too.

Metadata (key ``"cral"`` of the safetensors header, a JSON object):
    format ("cral-checkpoint"), format_version (1), model (`ModelConfig` dict), class_names,
    preprocessing (`PreprocessConfig` dict), thresholds (K floats in [0, 1] or null),
    provenance (data, command, date, git_commit, ...), metrics (free-form JSON), weights_dtype,
    weights_sha256, extra (free-form JSON).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import secrets
import stat
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from cral_model.config import ConfigError, ModelConfig, PreprocessConfig
from cral_model.labels import CLASS_NAMES
from cral_model.models.cral import CRAL, build_model_from_config

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "CheckpointError",
    "LoadedCheckpoint",
    "load_checkpoint",
    "read_metadata",
    "save_checkpoint",
]

FORMAT_NAME = "cral-checkpoint"
FORMAT_VERSION = 1
_META_KEY = "cral"
_MAX_HEADER = 100 * 1024 * 1024
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class CheckpointError(ValueError):
    """The file is not a valid CRAL checkpoint (wrong format, pickle, tampered, inconsistent)."""


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A model rebuilt from a checkpoint (eval mode, CPU, float32) and its validated metadata."""

    model: CRAL
    metadata: dict[str, Any]

    @property
    def preprocessing(self) -> PreprocessConfig:
        return PreprocessConfig.from_dict(self.metadata["preprocessing"])

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.metadata["class_names"])

    @property
    def thresholds(self) -> list[float] | None:
        thresholds: list[float] | None = self.metadata["thresholds"]
        return thresholds


def _weights_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def git_commit() -> str | None:
    """The commit of this source tree, when it is a git checkout (provenance for checkpoints)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _validate_thresholds(thresholds: Any, k: int) -> list[float] | None:
    if thresholds is None:
        return None
    try:
        values = [float(t) for t in thresholds]
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"thresholds must be a list of numbers: {exc}") from exc
    if len(values) != k:
        raise CheckpointError(f"thresholds has {len(values)} values for {k} classes")
    if not all(0.0 <= v <= 1.0 for v in values):
        raise CheckpointError("thresholds must be probabilities in [0, 1]")
    return values


def save_checkpoint(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    preprocessing: PreprocessConfig | Mapping[str, Any] | None = None,
    thresholds: Sequence[float] | None = None,
    provenance: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
    dtype: str = "float32",
    **extra: Any,
) -> Path:
    """Write ``model`` and its metadata to one safetensors file, atomically.

    Args:
        model: a `CRAL` (or a DDP/compiled wrapper of one: ``.module``/``._orig_mod`` are unwrapped).
        path: destination, normally ``*.safetensors``.
        preprocessing: the eval/inference pipeline (default `PreprocessConfig()`).
        thresholds: per-class operating points (K probabilities) or None.
        provenance: data, command, etc.; ``date``, ``git_commit`` and ``torch`` are filled in if absent.
        metrics: free-form JSON-able metrics (e.g. validation AUC).
        class_names: defaults to `CLASS_NAMES` when K == 14.
        dtype: ``float32``, ``float16`` or ``bfloat16`` storage for floating tensors.
        **extra: more JSON-able metadata, stored under ``extra``.

    Returns:
        The path written.
    """
    net = getattr(model, "module", model)
    net = getattr(net, "_orig_mod", net)
    if not isinstance(net, CRAL):
        raise TypeError(f"save_checkpoint expects a CRAL model, got {type(net).__name__}")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}")
    cfg: ModelConfig = net.config
    k = cfg.num_classes
    names = (
        list(class_names)
        if class_names is not None
        else (list(CLASS_NAMES) if k == len(CLASS_NAMES) else None)
    )
    if names is None or len(names) != k:
        raise ValueError(f"class_names must list {k} names")
    if preprocessing is None:
        pre = PreprocessConfig()
    elif isinstance(preprocessing, PreprocessConfig):
        pre = preprocessing
    else:
        pre = PreprocessConfig.from_dict(dict(preprocessing))
    prov = dict(provenance or {})
    prov.setdefault("date", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    prov.setdefault("git_commit", git_commit())
    prov.setdefault("torch", torch.__version__)

    store = _DTYPES[dtype]
    tensors = {
        name: (t.detach().to("cpu", store) if t.is_floating_point() else t.detach().cpu())
        .contiguous()
        .clone()
        for name, t in net.state_dict().items()
    }
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model": cfg.to_dict(),
        "class_names": names,
        "preprocessing": pre.to_dict(),
        "thresholds": _validate_thresholds(thresholds, k),
        "provenance": prov,
        "metrics": dict(metrics or {}),
        "weights_dtype": dtype,
        "weights_sha256": _weights_digest(tensors),
        "extra": extra,
    }
    text = json.dumps(meta, allow_nan=False, default=_json_default)

    from safetensors.torch import save_file

    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _reserve_temporary(dest)
    try:
        mode = stat.S_IMODE(os.stat(tmp).st_mode)  # 0666 & ~umask, applied by the kernel
        save_file(tensors, tmp, metadata={_META_KEY: text})
        os.chmod(tmp, mode)  # safetensors may replace the file with its own 0600 temporary
        replace_durably(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def replace_durably(tmp: str | os.PathLike[str], dest: Path) -> None:
    """Rename a finished temporary file over ``dest``: its data reaches the disk before the rename and
    the rename before returning, so a crash or power cut leaves the old or the new file, whole."""
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, dest)
    _fsync_dir(dest.parent)


def _reserve_temporary(dest: Path) -> str:
    """Create an empty, unique ``dest.<random>.tmp`` beside ``dest`` and return its path.

    Unlike `tempfile.mkstemp` (always 0600), the file is created with mode 0666 so the process umask
    applies as for any other file the user saves (0644 with the usual umask 022), without reading or
    changing the process-wide umask (racy with other threads).
    """
    for _ in range(100):
        tmp = dest.parent / f"{dest.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return str(tmp)
    raise FileExistsError(f"cannot create a temporary file beside {dest}")


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"metadata value of type {type(obj).__name__} is not JSON-serialisable")


def _sniff(path: Path) -> None:
    """Refuse anything that is not a safetensors file, naming what it looks like.

    A safetensors file starts with its header length ``n`` (little-endian u64) and then ``n`` bytes of
    UTF-8 JSON holding an object. That is checked first, fully (length sane against the file size, JSON
    object parses), because the length's first byte may be anything, 0x80 included, which is also the
    first byte of a pickle (PROTO opcode). Only a file that is not a safetensors file is then matched
    against PyTorch's formats (zip: ``PK\x03\x04``; legacy pickle: ``\x80`` + protocol 2-5) for the
    explanatory refusal. Nothing here unpickles.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            header = _read_header(fh, head, size)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path.name} is a folder, not a checkpoint file") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from exc
    if header is not None:
        return
    is_zip = head[:4] == b"PK\x03\x04"
    is_pickle = head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")
    if is_zip or is_pickle:
        raise CheckpointError(
            f"{path.name} is a PyTorch pickle checkpoint (torch.save format). Pickle files can execute "
            "code when loaded, so this program never opens them. Convert a plain state dict with "
            "`cral-convert IN.pt OUT.safetensors --backbone ...` (it uses torch.load(weights_only=True))."
        )
    if size < 10:
        raise CheckpointError(f"{path.name} is not a safetensors checkpoint (only {size} bytes)")
    raise CheckpointError(f"{path.name} is not a safetensors checkpoint (bad or truncated header)")


def _read_header(fh: Any, head: bytes, size: int) -> dict[str, Any] | None:
    """The parsed safetensors header (a JSON object) or None when ``fh`` is not a safetensors file."""
    if len(head) < 8:
        return None
    (n,) = struct.unpack("<Q", head)
    if n < 2 or n > _MAX_HEADER or n + 8 > size:
        return None
    raw = fh.read(n)
    if len(raw) != n or raw[:1] != b"{":
        return None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return header if isinstance(header, dict) else None


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a checkpoint's metadata without loading its weights.

    Raises:
        CheckpointError: not a safetensors file, a pickle, missing/invalid/inconsistent metadata.
    """
    p = Path(path)
    _sniff(p)
    from safetensors import safe_open

    try:
        with safe_open(str(p), framework="pt") as fh:
            header = fh.metadata() or {}
    except Exception as exc:  # safetensors raises its own SafetensorError on malformed headers
        raise CheckpointError(f"{p.name}: unreadable safetensors header ({exc})") from exc
    if _META_KEY not in header:
        raise CheckpointError(f"{p.name} has no CRAL metadata: it was not written by save_checkpoint")
    try:
        meta = json.loads(header[_META_KEY])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{p.name}: metadata is not valid JSON ({exc})") from exc
    return _validate_metadata(meta, p.name)


def _validate_metadata(meta: Any, name: str) -> dict[str, Any]:
    if not isinstance(meta, dict):
        raise CheckpointError(f"{name}: metadata must be a JSON object")
    if meta.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{name}: not a {FORMAT_NAME} file (format={meta.get('format')!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{name}: invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{name}: format_version {version} is newer than this program supports "
            f"({FORMAT_VERSION}); upgrade"
        )
    required = (
        "model",
        "class_names",
        "preprocessing",
        "thresholds",
        "provenance",
        "metrics",
        "weights_sha256",
    )
    missing = [k for k in required if k not in meta]
    if missing:
        raise CheckpointError(f"{name}: metadata lacks {missing}")
    try:
        cfg = ModelConfig.from_dict(meta["model"])
        PreprocessConfig.from_dict(meta["preprocessing"])
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"{name}: invalid config in metadata: {exc}") from exc
    names = meta["class_names"]
    if not isinstance(names, list) or not all(isinstance(s, str) and s for s in names):
        raise CheckpointError(f"{name}: class_names must be a list of non-empty strings")
    if len(names) != cfg.num_classes or len(set(names)) != len(names):
        raise CheckpointError(
            f"{name}: {len(names)} class names (unique: {len(set(names))}) "
            f"for a model with {cfg.num_classes} classes"
        )
    meta["thresholds"] = _validate_thresholds(meta["thresholds"], cfg.num_classes)
    if not isinstance(meta["provenance"], dict) or not isinstance(meta["metrics"], dict):
        raise CheckpointError(f"{name}: provenance and metrics must be JSON objects")
    return meta


def load_checkpoint(path: str | os.PathLike[str]) -> LoadedCheckpoint:
    """Load and validate a checkpoint written by `save_checkpoint`. Never unpickles.

    Returns:
        `LoadedCheckpoint` with the model in eval mode on the CPU, float32.

    Raises:
        CheckpointError: pickle or foreign file, bad metadata, weights that do not match the metadata
            (digest, names or shapes).
    """
    p = Path(path)
    meta = read_metadata(p)
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(p), device="cpu")
    except Exception as exc:
        raise CheckpointError(f"{p.name}: cannot read weights ({exc})") from exc
    if _weights_digest(tensors) != meta["weights_sha256"]:
        raise CheckpointError(
            f"{p.name}: weights do not match their recorded SHA-256 (file altered or corrupt)"
        )
    cfg = ModelConfig.from_dict({**meta["model"], "pretrained": None})
    model = build_model_from_config(cfg)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    bad_shapes = [
        f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in tensors and tensors[k].shape != v.shape
    ]
    if missing or unexpected or bad_shapes:
        detail = "; ".join(
            part
            for part in (
                f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}" if missing else "",
                f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}" if unexpected else "",
                f"shape mismatch {bad_shapes[:3]}" if bad_shapes else "",
            )
            if part
        )
        raise CheckpointError(
            f"{p.name}: weights do not fit the model described in its metadata "
            f"({cfg.backbone}/{cfg.attention}/{cfg.mode}, {cfg.num_classes} classes): {detail}"
        )
    state = {k: tensors[k].to(v.dtype) for k, v in expected.items()}
    model.load_state_dict(state, strict=True)
    model.eval()
    return LoadedCheckpoint(model=model, metadata=meta)
