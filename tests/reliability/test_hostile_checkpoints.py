"""Items 4 and 8 of issue 18: hostile checkpoints, and ``cral-train --resume`` on a damaged ``last.pt``.

Checkpoints (``load_checkpoint``/``read_metadata``, which `Predictor.from_checkpoint`, the viewer and
``cxr-triage`` use): weights that are not finite (a diverged run, the digest consistent) or not of a
floating dtype, metadata of the wrong type or out of range (class count, image sides, mean/std,
thresholds), metadata nested 100,000 deep, a header too large, and files that are not regular files
(a FIFO would block the reader forever) must all be refused with one `CheckpointError` of one line,
before anything large is built.

``--resume`` on a truncated, empty, renamed safetensors or JSON ``last.pt``, a state without its
config, or a state whose weights do not fit: exit status 2, one line that says what to do, no traceback.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
from typing import TYPE_CHECKING

import pytest
import torch
from helpers.checkpoints import random_cral, write_tiny_checkpoint

from cral_model import CheckpointError, Predictor, load_checkpoint, read_metadata, save_checkpoint

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = pytest.mark.timeout(120)


# =============================================================================== crafting helpers
def _split(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _join(path: Path, header: dict, data: bytes) -> None:
    new = json.dumps(header).encode()
    new += b" " * (-len(new) % 8)
    path.write_bytes(struct.pack("<Q", len(new)) + new + data)


def _edit_meta(path: Path, fn: Callable[[dict], object]) -> Path:
    """Rewrite the CRAL metadata in place (``json.dumps`` writes NaN/Infinity as JSON allows)."""
    header, data = _split(path)
    meta = json.loads(header["__metadata__"]["cral"])
    fn(meta)
    header["__metadata__"]["cral"] = json.dumps(meta)
    _join(path, header, data)
    return path


def _edit_tensors(path: Path, fn: Callable[[dict[str, torch.Tensor]], object]) -> Path:
    """Change the weights and record their new SHA-256, as a tool that re-signs a file would."""
    from safetensors.torch import load_file, save_file

    from cral_model.checkpoint import _weights_digest

    header, _ = _split(path)
    tensors = load_file(str(path))
    fn(tensors)
    meta = json.loads(header["__metadata__"]["cral"])
    meta["weights_sha256"] = _weights_digest(tensors)
    save_file(tensors, str(path), metadata={"cral": json.dumps(meta)})
    return path


def _refused(fn: Callable[[Path], object], path: Path, match: str) -> str:
    """``fn(path)`` raises a one-line `CheckpointError` matching ``match``; returns the message."""
    with pytest.raises(CheckpointError, match=match) as info:
        fn(path)
    message = str(info.value)
    assert "\n" not in message
    assert "\r" not in message
    assert 0 < len(message) <= 600
    return message


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tpl") / "m.safetensors")


@pytest.fixture
def ckpt(template, tmp_path) -> Path:
    return shutil.copy(template, tmp_path / "m.safetensors")


@pytest.fixture
def never_build(monkeypatch):
    """Building the network from the metadata fails the test: the refusal has to come first."""
    import cral_model.checkpoint as ck

    def _fail(*args, **kwargs):
        raise AssertionError("a network was built from metadata that should have been refused")

    monkeypatch.setattr(ck, "build_model_from_config", _fail)


# =============================================================================== weights
def test_nan_weights_with_a_consistent_digest_are_refused(tmp_path):
    """A diverged run: NaN in one convolution, saved normally (so the digest matches)."""
    model = random_cral()
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if n.endswith("conv1.weight"))[0, 0, 0, 0] = math.nan
    p = save_checkpoint(model, tmp_path / "diverged.safetensors", thresholds=[0.5] * 14)
    read_metadata(p)  # the metadata is fine: only the weights say the model is broken
    message = _refused(load_checkpoint, p, "not finite")
    assert "conv1.weight" in message
    _refused(Predictor.from_checkpoint, p, "not finite")


def test_infinite_batch_norm_statistics_are_refused(tmp_path):
    model = random_cral()
    name, buf = next((n, b) for n, b in model.named_buffers() if n.endswith("running_var"))
    buf[0] = math.inf
    p = save_checkpoint(model, tmp_path / "inf.safetensors")
    assert name in _refused(load_checkpoint, p, "not finite")


def test_integer_weights_are_refused(ckpt):
    def to_int(tensors):
        key = next(k for k in sorted(tensors) if k.endswith("conv1.weight"))
        tensors[key] = (tensors[key] * 1000).to(torch.int64)

    _edit_tensors(ckpt, to_int)
    _refused(load_checkpoint, ckpt, "dtype int64")


def test_a_float_counter_where_an_integer_belongs_is_refused(ckpt):
    def to_float(tensors):
        key = next(k for k in sorted(tensors) if k.endswith("num_batches_tracked"))
        tensors[key] = tensors[key].float()

    _edit_tensors(ckpt, to_float)
    _refused(load_checkpoint, ckpt, "dtype float32")


# =============================================================================== metadata
def _classes(k: int) -> Callable[[dict], None]:
    def edit(meta: dict) -> None:
        meta["model"]["num_classes"] = k
        meta["class_names"] = [f"c{i}" for i in range(k)]
        meta["thresholds"] = None

    return edit


def _pre(**values) -> Callable[[dict], None]:
    return lambda meta: meta["preprocessing"].update(values)


_BAD_METADATA = [
    pytest.param(_classes(1001), r"num_classes .*1\.\.1000", id="1001-classes"),
    pytest.param(lambda m: m["model"].update(num_classes=True), "num_classes", id="bool-class-count"),
    pytest.param(lambda m: m["model"].update(att_channels=10**7), "att_channels", id="att-channels-1e7"),
    pytest.param(_pre(input_size=8192, resize=8192), r"input_size .*32\.\.2048", id="input-8192"),
    pytest.param(_pre(resize=100_000), r"resize .*32\.\.2048", id="resize-100000"),
    pytest.param(_pre(base_size=10**6), "base_size", id="base-size-1e6"),
    pytest.param(_pre(mean=[math.nan, 0.5, 0.5]), "mean .*finite", id="nan-mean"),
    pytest.param(_pre(std=[math.inf, 0.2, 0.2]), "std .*finite", id="infinite-std"),
    pytest.param(_pre(mean=["0.5", "0.5", "0.5"]), "mean .*number", id="string-mean"),
    pytest.param(_pre(mean="abc"), "mean .*list", id="mean-a-string"),
    pytest.param(_pre(std=[True, True, True]), "std .*number", id="bool-std"),
    pytest.param(_pre(channels=1, mean=[0.5], std=[0.2]), "channels", id="one-channel"),
    pytest.param(lambda m: m.update(thresholds=["0.5"] * 14), "thresholds", id="string-thresholds"),
    pytest.param(lambda m: m.update(thresholds="0.5"), "thresholds", id="thresholds-a-string"),
    pytest.param(lambda m: m.update(format_version=True), "format_version", id="bool-version"),
    pytest.param(
        lambda m: m["class_names"].__setitem__(0, "Atelectasis\n=HYPERLINK()"),
        "class_names",
        id="newline-name",
    ),
    pytest.param(lambda m: m.update(weights_dtype="int64"), "weights_dtype", id="int-weights-dtype"),
]


@pytest.mark.usefixtures("never_build")
@pytest.mark.parametrize(("edit", "match"), _BAD_METADATA)
def test_metadata_of_the_wrong_type_or_range_is_refused_before_building(ckpt, edit, match):
    _edit_meta(ckpt, edit)
    _refused(read_metadata, ckpt, match)
    _refused(load_checkpoint, ckpt, match)


def _append_to_meta(path: Path, key: str, json_text: str) -> None:
    """Add ``"key": json_text`` to the metadata as raw JSON text (what json.dumps would not write)."""
    header, data = _split(path)
    text = header["__metadata__"]["cral"]
    header["__metadata__"]["cral"] = text[:-1] + f', "{key}": {json_text}}}'
    _join(path, header, data)


def test_a_number_of_5000_digits_is_a_checkpoint_error(ckpt):
    _append_to_meta(ckpt, "big", "9" * 5000)  # over Python's int/str conversion limit
    _refused(read_metadata, ckpt, "metadata is not valid JSON")


def test_two_million_classes_are_refused_cheaply(ckpt, never_build):
    _edit_meta(ckpt, _classes(2_000_000))
    assert ckpt.stat().st_size > 16 * 1024**2
    tracemalloc.start()
    try:
        start = time.perf_counter()
        _refused(read_metadata, ckpt, "header")
        _refused(load_checkpoint, ckpt, "header")
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 2.0
    assert peak < 32 * 1024**2


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [100_000, 200])
def test_deeply_nested_metadata_is_a_checkpoint_error(ckpt, depth):
    _append_to_meta(ckpt, "deep", _nested(depth))
    _refused(read_metadata, ckpt, "nested")
    _refused(load_checkpoint, ckpt, "nested")


def test_a_header_over_the_size_limit_is_refused(ckpt):
    _edit_meta(ckpt, lambda m: m["extra"].update(note="x" * (17 * 1024**2)))
    _refused(read_metadata, ckpt, r"header of \d+ bytes .*limit")


# =============================================================================== not a regular file
def _call_with_deadline(fn: Callable[[], object], fifo: Path, seconds: float = 10.0) -> BaseException | None:
    """Run ``fn`` in a thread; if it is still blocked after ``seconds``, open the FIFO's other end to
    release it and fail (the reader opened the FIFO and would have waited forever)."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            fn()
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        thread.join(10)
        pytest.fail(f"reading a FIFO blocked for more than {seconds} s")
    return outcome[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("entry", [read_metadata, load_checkpoint, Predictor.from_checkpoint])
@pytest.mark.parametrize("through_link", [False, True])
def test_a_fifo_is_refused_without_blocking(tmp_path, entry, through_link):
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    target = fifo
    if through_link:
        target = tmp_path / "link.safetensors"
        target.symlink_to(fifo)
    exc = _call_with_deadline(lambda: entry(target), fifo)
    assert isinstance(exc, CheckpointError), exc
    assert "not a regular file" in str(exc)
    assert "\n" not in str(exc)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_a_device_is_refused(tmp_path):
    link = tmp_path / "zero.safetensors"
    link.symlink_to("/dev/zero")
    _refused(load_checkpoint, link, "not a regular file")
    _refused(read_metadata, link, "not a regular file")


def test_a_folder_named_like_a_checkpoint_is_refused(tmp_path):
    (tmp_path / "m.safetensors").mkdir()
    _refused(load_checkpoint, tmp_path / "m.safetensors", "folder")


# =============================================================================== --resume
_TRAIN_ARGS = [
    "--backbone", "resnet18", "--input-size", "32", "--resize", "32", "--pretrained", "none",
    "--batch-size", "8", "--workers", "0", "--threads", "1", "--val-fraction", "0.3", "--no-progress",
    "--epochs", "2",
]  # fmt: skip


@pytest.fixture(scope="module")
def finished_epoch(tmp_path_factory) -> Path:
    """A real ``last.pt`` after 1 of 2 epochs of a tiny run (in-process, a few seconds)."""
    from cral_model.cli.train import main as train_main
    from cral_model.data import make_synthetic_nih

    base = tmp_path_factory.mktemp("resume")
    root = base / "nih"
    make_synthetic_nih(root, n_patients=6, images_per_patient=2, test_patients=2, size=32, seed=1)
    out = base / "run"
    argv = ["--data-root", str(root), "--output", str(out), *_TRAIN_ARGS]
    assert train_main([*argv, "--epochs", "1"]) == 0
    return out / "last.pt"


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _empty(p: Path) -> None:
    p.write_bytes(b"")


def _safetensors(p: Path) -> None:
    p.unlink()
    write_tiny_checkpoint(p)


def _json(p: Path) -> None:
    p.write_text(json.dumps({"format": "cral-train-state", "version": 1, "epoch": 1}))


def _resave(fn: Callable[[dict], object]) -> Callable[[Path], None]:
    def damage(p: Path) -> None:
        state = torch.load(p, weights_only=True)
        fn(state)
        torch.save(state, p)

    return damage


def _fifo(p: Path) -> None:
    p.unlink()
    os.mkfifo(p)


_DAMAGE = [
    pytest.param(_truncate, "damaged or truncated", id="truncated"),
    pytest.param(_empty, "empty", id="empty"),
    pytest.param(_safetensors, "safetensors", id="safetensors"),
    pytest.param(_json, "JSON", id="json"),
    pytest.param(_resave(lambda s: s.pop("config")), "config", id="no-config"),
    pytest.param(_resave(lambda s: s.update(config={"backbone": 3})), "config", id="invalid-config"),
    pytest.param(_resave(lambda s: s.update(epoch="one")), "epoch", id="string-epoch"),
    pytest.param(
        lambda p: torch.save({"weights": torch.zeros(2)}, p), "not a cral-train state", id="foreign"
    ),
    pytest.param(
        _resave(lambda s: s["model"].pop(sorted(s["model"])[0])), "model weights", id="weights-do-not-fit"
    ),
    pytest.param(_fifo, "not a regular file", id="fifo"),
]


@pytest.mark.parametrize(("damage", "reason"), _DAMAGE)
def test_resume_on_a_damaged_last_pt_says_what_to_do(finished_epoch, tmp_path, capsys, damage, reason):
    from cral_model.cli.train import main as train_main

    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(finished_epoch.parent / "config.yaml", out / "config.yaml")
    last = shutil.copy(finished_epoch, out / "last.pt")
    damage(last)
    before = None if last.is_fifo() else last.read_bytes()
    capsys.readouterr()
    try:
        status = train_main(["--output", str(out), "--resume", "--no-progress"])
    except SystemExit as exc:  # argparse's error exit
        status = exc.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2
    assert "Traceback" not in err
    assert len(lines) == 1, err
    (line,) = lines
    assert reason in line
    assert str(last) in line
    assert "without --resume" in line
    assert "--resume FILE" in line
    if before is not None:
        assert last.read_bytes() == before  # the damaged file is left for the user to inspect


@pytest.mark.slow
def test_resume_on_a_truncated_last_pt_in_a_real_process(finished_epoch, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    last = shutil.copy(finished_epoch, out / "last.pt")
    _truncate(last)
    proc = subprocess.run(
        [sys.executable, "-m", "cral_model.cli.train", "--output", str(out), "--resume"],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "damaged or truncated" in lines[0]
    assert "without --resume" in lines[0]
