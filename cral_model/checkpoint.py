"""Checkpoints: one ``.safetensors`` file, weights plus JSON metadata in its header.

Loading never unpickles: safetensors stores raw tensor bytes, and the metadata is JSON. A PyTorch
pickle/zip file (``.pt``/``.pth``) is recognised by its first bytes and refused with an explanation.
The metadata carries a SHA-256 of the weights, so edited weights or metadata that no longer match are
refused too.

A file from elsewhere is treated as hostile. Only regular files are opened (checked before opening, so
a FIFO or a device never blocks or streams). The JSON header is bounded in size (`MAX_HEADER_BYTES`)
and nesting depth (`MAX_JSON_DEPTH`); every metadata value is checked for type and range before
anything is built from it (class count 1..`MAX_CLASSES`, image sides `IMAGE_SIDE_RANGE`, finite mean,
finite positive std, one per channel); every weight must have the dtype of its model tensor (floating:
float32/float16/bfloat16) and, when floating, hold only finite values: a diverged run's NaN weights
are refused although their digest matches. Every refusal is one `CheckpointError` of one line.

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
import math
import os
import secrets
import stat
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

import torch
from torch import nn

from cral_model.config import ConfigError, ModelConfig, PreprocessConfig
from cral_model.labels import CLASS_NAMES
from cral_model.models.base import ChestNet
from cral_model.models.cral import build_model_from_config

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "IMAGE_SIDE_RANGE",
    "MAX_CLASSES",
    "MAX_HEADER_BYTES",
    "MAX_JSON_DEPTH",
    "CheckpointError",
    "LoadedCheckpoint",
    "load_checkpoint",
    "read_metadata",
    "save_checkpoint",
]

FORMAT_NAME = "cral-checkpoint"
FORMAT_VERSION = 1
_META_KEY = "cral"
#: Largest safetensors JSON header read (a ResNet-50 checkpoint's is about 50 kB).
MAX_HEADER_BYTES = 16 * 1024 * 1024
#: Deepest nesting of JSON arrays/objects accepted in the header and the metadata (ours: 5).
MAX_JSON_DEPTH = 64
#: Most classes (findings) a checkpoint may declare; checked before the network is built.
MAX_CLASSES = 1000
#: Inclusive range of ``input_size``, ``resize`` and ``base_size`` in checkpoint metadata, in pixels.
IMAGE_SIDE_RANGE = (32, 2048)
_MIN_BASE_SIZE = 8  # PreprocessConfig's own lower bound for base_size
_MAX_ATT_CHANNELS = 4096  # att1 width; the widest backbone has 2048 feature channels
_MAX_NAME_CHARS = 200
_CHANNELS = 3  # every backbone takes RGB input (grey images are replicated)
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_FILE_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class CheckpointError(ValueError):
    """The file is not a valid CRAL checkpoint (wrong format, pickle, tampered, inconsistent).

    The message is one line: line breaks (from a file name or a library's message) become spaces.
    """

    def __init__(self, reason: object) -> None:
        super().__init__(" ".join(str(reason).split()))


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A model rebuilt from a checkpoint (eval mode, CPU, float32) and its validated metadata."""

    model: ChestNet
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
        model: a `ChestNet` of any method (or a DDP/compiled wrapper of one: ``.module``/``._orig_mod``
            are unwrapped).
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

    Raises:
        CheckpointError: metadata that `load_checkpoint` would refuse (see `read_metadata`).
    """
    net = getattr(model, "module", model)
    net = getattr(net, "_orig_mod", net)
    if not isinstance(net, ChestNet):
        raise TypeError(f"save_checkpoint expects a CRAL-family model (ChestNet), got {type(net).__name__}")
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
    # What load_checkpoint would refuse (1001 classes, a 4096 px input...) is refused now, not later.
    _validate_metadata(json.loads(text), Path(path).name)

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
        _check_regular_file(path, os.stat(path).st_mode)
        # O_NONBLOCK: should the path be swapped for a FIFO after the stat, opening it still returns.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with open(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            _check_regular_file(path, st.st_mode)
            size = st.st_size
            head = fh.read(8)
            header = _read_header(fh, head, size, path.name)
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


def _check_regular_file(path: Path, mode: int) -> None:
    """Refuse a folder, FIFO, device or socket (``mode`` from `os.stat`, which follows links)."""
    if stat.S_ISDIR(mode):
        raise CheckpointError(f"{path.name} is a folder, not a checkpoint file")
    if not stat.S_ISREG(mode):
        kind = next((text for test, text in _FILE_KINDS if test(mode)), "a special file")
        raise CheckpointError(
            f"{path.name} is not a regular file ({kind}); a checkpoint is a .safetensors file"
        )


def _read_header(fh: Any, head: bytes, size: int, name: str) -> dict[str, Any] | None:
    """The parsed safetensors header (a JSON object) or None when ``fh`` is not a safetensors file.

    Raises:
        CheckpointError: a safetensors header over `MAX_HEADER_BYTES` or nested over `MAX_JSON_DEPTH`.
    """
    if len(head) < 8:
        return None
    (n,) = struct.unpack("<Q", head)
    if n < 2 or n + 8 > size:
        return None
    if n > MAX_HEADER_BYTES:
        if fh.read(1) != b"{":
            return None
        raise CheckpointError(
            f"{name}: safetensors header of {n} bytes is over the limit of {MAX_HEADER_BYTES} bytes"
        )
    raw = fh.read(n)
    if len(raw) != n or raw[:1] != b"{":
        return None
    try:
        header = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise CheckpointError(f"{name}: safetensors header is nested too deeply") from None
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(header, dict):
        return None
    if _json_depth(header) > MAX_JSON_DEPTH:
        raise CheckpointError(f"{name}: safetensors header is nested deeper than {MAX_JSON_DEPTH} levels")
    return header


def _json_depth(value: Any) -> int:
    """Nesting depth of JSON arrays/objects in ``value`` (0 for a scalar), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            break
        stack.extend((child, depth + 1) for child in children)
    return deepest


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
    except RecursionError:
        raise CheckpointError(f"{p.name}: metadata is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and ints over Python's digit limit
        raise CheckpointError(f"{p.name}: metadata is not valid JSON ({exc})") from exc
    if _json_depth(meta) > MAX_JSON_DEPTH:
        raise CheckpointError(f"{p.name}: metadata is nested deeper than {MAX_JSON_DEPTH} levels")
    return _validate_metadata(meta, p.name)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _show(value: Any) -> str:
    """A short repr of a metadata value for an error message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_int(section: Mapping[str, Any], key: str, lo: int, hi: int, *, nullable: bool = False) -> None:
    """``section[key]``, when present, is an int in ``lo..hi`` (or None when ``nullable``)."""
    if key not in section or (nullable and section[key] is None):
        return
    value = section[key]
    if not _is_int(value) or not lo <= value <= hi:
        null = " or null" if nullable else ""
        raise ConfigError(f"{key} must be an integer in {lo}..{hi}{null}, got {_show(value)}")


def _check_model_section(model: Any) -> None:
    """Types and ranges of the ``model`` metadata that decide what is built (before building it)."""
    if not isinstance(model, dict):
        raise ConfigError(f"model must be a JSON object, got {type(model).__name__}")
    _check_int(model, "num_classes", 1, MAX_CLASSES)
    _check_int(model, "att_channels", 1, _MAX_ATT_CHANNELS, nullable=True)


def _check_preprocessing_section(pre: Any) -> None:
    """Types and ranges of the ``preprocessing`` metadata (sizes, finite mean, finite positive std)."""
    if not isinstance(pre, dict):
        raise ConfigError(f"preprocessing must be a JSON object, got {type(pre).__name__}")
    lo, hi = IMAGE_SIDE_RANGE
    _check_int(pre, "input_size", lo, hi)
    _check_int(pre, "resize", lo, hi)
    _check_int(pre, "base_size", _MIN_BASE_SIZE, hi, nullable=True)
    if "channels" in pre and not (_is_int(pre["channels"]) and pre["channels"] == _CHANNELS):
        raise ConfigError(f"channels must be {_CHANNELS} (the network's input), got {_show(pre['channels'])}")
    for key in ("mean", "std"):
        if key not in pre:
            continue
        values = pre[key]
        if not isinstance(values, list) or len(values) != _CHANNELS:
            raise ConfigError(f"{key} must be a list of {_CHANNELS} numbers, got {_show(values)}")
        if not all(_is_number(v) for v in values):
            raise ConfigError(f"{key} values must be numbers, got {_show(values)}")
        if not all(math.isfinite(v) for v in values):
            raise ConfigError(f"{key} values must be finite, got {_show(values)}")
        if key == "std" and not all(v > 0 for v in values):
            raise ConfigError(f"std values must be > 0, got {_show(values)}")


def _check_class_names(names: Any, name: str) -> list[str]:
    if not isinstance(names, list) or not all(
        isinstance(s, str) and s and len(s) <= _MAX_NAME_CHARS and s.isprintable() for s in names
    ):
        raise CheckpointError(
            f"{name}: class_names must be a list of non-empty strings of at most {_MAX_NAME_CHARS} "
            "printable characters"
        )
    return names


def _validate_metadata(meta: Any, name: str) -> dict[str, Any]:
    """Check the metadata's structure, types and ranges; return it (thresholds as floats).

    Everything that decides an allocation (class count, attention width, image sides) is checked
    here, before `load_checkpoint` builds a network or `Predictor` resizes an image.
    """
    if not isinstance(meta, dict):
        raise CheckpointError(f"{name}: metadata must be a JSON object")
    if meta.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{name}: not a {FORMAT_NAME} file (format={_show(meta.get('format'))})")
    version = meta.get("format_version")
    if not _is_int(version) or version < 1:
        raise CheckpointError(f"{name}: invalid format_version {_show(version)}")
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
        _check_model_section(meta["model"])
        _check_preprocessing_section(meta["preprocessing"])
        cfg = ModelConfig.from_dict(meta["model"])
        PreprocessConfig.from_dict(meta["preprocessing"])
    except (ConfigError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{name}: invalid config in metadata: {exc}") from exc
    names = _check_class_names(meta["class_names"], name)
    if len(names) != cfg.num_classes or len(set(names)) != len(names):
        raise CheckpointError(
            f"{name}: {len(names)} class names (unique: {len(set(names))}) "
            f"for a model with {cfg.num_classes} classes"
        )
    thresholds = meta["thresholds"]
    if thresholds is not None and (
        not isinstance(thresholds, list) or not all(_is_number(t) for t in thresholds)
    ):
        raise CheckpointError(f"{name}: thresholds must be null or a list of numbers")
    meta["thresholds"] = _validate_thresholds(thresholds, cfg.num_classes)
    if not isinstance(meta["provenance"], dict) or not isinstance(meta["metrics"], dict):
        raise CheckpointError(f"{name}: provenance and metrics must be JSON objects")
    digest = meta["weights_sha256"]
    if not isinstance(digest, str) or len(digest) != 64:
        raise CheckpointError(f"{name}: weights_sha256 must be a SHA-256 hex digest")
    if "weights_dtype" in meta and meta["weights_dtype"] not in _DTYPES:
        raise CheckpointError(
            f"{name}: weights_dtype must be one of {sorted(_DTYPES)}, got {_show(meta['weights_dtype'])}"
        )
    return meta


def load_checkpoint(path: str | os.PathLike[str]) -> LoadedCheckpoint:
    """Load and validate a checkpoint written by `save_checkpoint`. Never unpickles.

    Returns:
        `LoadedCheckpoint` with the model in eval mode on the CPU, float32.

    Raises:
        CheckpointError: pickle or foreign file, bad metadata, weights that do not match the metadata
            (digest, names, shapes or dtypes), weights that are not finite.
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
            f"({cfg.method}: {cfg.backbone}/{cfg.attention}/{cfg.mode}, {cfg.num_classes} classes): {detail}"
        )
    _check_weight_values(tensors, expected, p.name)
    state = {k: tensors[k].to(v.dtype) for k, v in expected.items()}
    model.load_state_dict(state, strict=True)
    model.eval()
    return LoadedCheckpoint(model=model, metadata=meta)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _check_weight_values(
    tensors: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], name: str
) -> None:
    """Every weight has its model tensor's kind of dtype, and floating weights are all finite.

    A floating model tensor may be stored as float32, float16 or bfloat16 (the ``dtype`` of
    `save_checkpoint`); others (batch-norm counters) must match exactly. NaN or infinite weights (a
    diverged run) would make every score NaN, which the triage reads as "no finding": refused.
    """
    wrong = [
        f"{k}: dtype {_dtype_name(tensors[k].dtype)}, expected "
        + ("a floating dtype" if v.is_floating_point() else _dtype_name(v.dtype))
        for k, v in expected.items()
        if (
            tensors[k].dtype not in _DTYPES.values() if v.is_floating_point() else tensors[k].dtype != v.dtype
        )
    ]
    if wrong:
        raise CheckpointError(f"{name}: weights of the wrong type ({len(wrong)} tensors): {wrong[:3]}")
    not_finite = [
        k
        for k in sorted(tensors)
        if tensors[k].is_floating_point() and not bool(torch.isfinite(tensors[k]).all())
    ]
    if not_finite:
        raise CheckpointError(
            f"{name}: weights are not finite (NaN or infinite values in {len(not_finite)} tensors, e.g. "
            f"{not_finite[:3]}): the training run diverged or the file is corrupt"
        )
