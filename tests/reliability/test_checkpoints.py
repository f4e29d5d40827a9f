"""Item 3 of issue 7: checkpoints from elsewhere, and the sniffing/permission fixes of our own format.

What `tests/cral_model/test_checkpoint.py` and `test_convert.py` already cover (zip pickle with a
payload refused by `load_checkpoint`, `cral-convert` round trip, payload refused by `cral-convert`,
resnet34 weights for resnet18) is not repeated here. Added: the 0x80 header-length false positive,
file permissions, every pickle protocol and the legacy torch format, a payload through every entry
point that opens a model file (Predictor, viewer, `cral-convert` in a real subprocess, `--resume`),
and metadata that is self-consistent but does not describe the weights.
"""

from __future__ import annotations

import json
import os
import pickle
import stat
import struct
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
import torch
from helpers.checkpoints import random_cral

from cral_model import CheckpointError, load_checkpoint, read_metadata, save_checkpoint
from cral_model.cli.convert import main as convert_main

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(scope="module")
def model():
    return random_cral("resnet18", "att1")


class _WriteFile:
    """Unpickling this calls ``open(marker, "w")``: a payload whose only effect is a file on disk."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _header_len(path: Path) -> int:
    with open(path, "rb") as fh:
        return struct.unpack("<Q", fh.read(8))[0]


def _pad_header_to_low_byte(path: Path, low: int) -> None:
    """Rewrite the safetensors header with trailing spaces (valid JSON) so its length ends in ``low``."""
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = raw[8 : 8 + n].rstrip(b" ")
    pad = (low - len(header)) % 256
    new = header + b" " * pad
    path.write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + n :])


# ------------------------------------------------------------------ our own format: the 0x80 bug
def test_header_length_with_low_byte_0x80_is_a_valid_checkpoint(model, tmp_path):
    p = save_checkpoint(model, tmp_path / "m.safetensors")
    _pad_header_to_low_byte(p, 0x80)
    assert p.read_bytes()[:1] == b"\x80"  # looks like the pickle PROTO opcode
    loaded = load_checkpoint(p)  # used to be refused as "a PyTorch pickle checkpoint"
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), model(x), rtol=0, atol=0)


def test_save_checkpoint_itself_can_write_a_0x80_header_and_read_it_back(model, tmp_path):
    """Grow a metadata string until our own writer produces a first byte of 0x80 (about 1 in 32 of
    safetensors' 8-byte aligned header lengths), without any padding workaround."""
    p = tmp_path / "m.safetensors"
    save_checkpoint(model, p, provenance={"date": "x", "git_commit": None}, note="")
    base = _header_len(p)
    need = (0x80 - base) % 256
    for extra in range(max(0, need - 8), need + 9):
        save_checkpoint(model, p, provenance={"date": "x", "git_commit": None}, note="." * extra)
        if p.read_bytes()[:1] == b"\x80":
            break
    else:  # pragma: no cover - safetensors changed its padding rule
        pytest.fail("could not produce a 0x80 header length")
    assert read_metadata(p)["extra"]["note"] == "." * extra
    load_checkpoint(p)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_saved_checkpoint_gets_the_usual_permissions(model, tmp_path, umask):
    old = os.umask(umask)
    try:
        p = save_checkpoint(model, tmp_path / "m.safetensors")
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.safetensors"]


def test_a_folder_is_refused_clearly(tmp_path):
    with pytest.raises(CheckpointError, match="folder"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize(
    "content",
    [
        struct.pack("<Q", 2**63) + b"{}",  # absurd header length
        struct.pack("<Q", 40) + b"{" + b"x" * 39,  # not JSON
        struct.pack("<Q", 2) + b"[]",  # JSON but not an object
        struct.pack("<Q", 4) + b"\xff\xfe{}",  # not UTF-8
        b"\x80" + b"\x00" * 7 + b"{}",  # 0x80 first, but the length is absurd: neither
    ],
)
def test_malformed_headers_are_refused_with_a_clear_error(tmp_path, content):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a safetensors checkpoint"):
        load_checkpoint(p)


# ------------------------------------------------------------------ pickles from elsewhere
@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_a_raw_pickle_with_a_payload_is_refused_and_not_run(tmp_path, protocol):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.pth"
    p.write_bytes(pickle.dumps({"state_dict": {}, "x": _WriteFile(marker)}, protocol=protocol))
    expected = "pickle" if protocol >= 2 else "not a safetensors"  # protocols 0/1 have no 0x80 prefix
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(p)
    assert not marker.exists()


@pytest.mark.parametrize("zip_format", [True, False])
def test_every_model_entry_point_refuses_a_payload_without_running_it(tmp_path, zip_format):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.pt"
    torch.save({"x": _WriteFile(marker)}, p, _use_new_zipfile_serialization=zip_format)

    from cral_model import Predictor

    with pytest.raises(CheckpointError, match="pickle"):
        Predictor.from_checkpoint(p)
    with pytest.raises(CheckpointError, match="pickle"):
        read_metadata(p)
    from cxr_viewer.inference import load_predictor

    with pytest.raises(Exception, match="pickle") as info:
        load_predictor(str(p))
    assert "cral-convert" in str(info.value)
    # --resume reads last.pt with torch.load(weights_only=True): refused, not run
    from cral_model.engine import load_train_state

    with pytest.raises(pickle.UnpicklingError):
        load_train_state(p)
    assert convert_main([str(p), str(tmp_path / "o.safetensors"), "--backbone", "resnet18"]) == 2
    assert not marker.exists()
    assert not (tmp_path / "o.safetensors").exists()


@pytest.mark.slow
def test_cral_convert_in_a_real_process_does_not_run_the_payload(tmp_path):
    marker = tmp_path / "pwned"
    src = tmp_path / "evil.pth"
    # The payload would also run if the file were merely unpickled by the child: use a fresh process so
    # nothing in this test process can mask it.
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": _WriteFile(marker)}, src)
    proc = subprocess.run(
        [sys.executable, "-m", "cral_model.cli.convert", str(src), str(tmp_path / "o.safetensors"),
         "--backbone", "resnet18"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "refusing to unpickle" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not marker.exists()


# ------------------------------------------------------------------ metadata vs weights
def _rewrite_meta(path: Path, fn) -> None:
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    meta = json.loads(header["__metadata__"]["cral"])
    fn(meta)
    header["__metadata__"]["cral"] = json.dumps(meta)
    new = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + n :])


def _fewer_classes(meta):
    meta["model"]["num_classes"] = 13
    meta["class_names"] = meta["class_names"][:13]
    meta["thresholds"] = None


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_fewer_classes, r"do not fit .*13 classes.*shape mismatch"),
        (lambda m: m["model"].update(backbone="densenet121"), r"do not fit the model .*densenet121"),
        (lambda m: m["model"].update(mode="no_attention"), r"do not fit the model .*no_attention"),
        (lambda m: m["model"].update(att_channels=32), r"do not fit .*shape mismatch"),
    ],
)
def test_consistent_metadata_that_does_not_describe_the_weights_is_refused(model, tmp_path, edit, message):
    p = save_checkpoint(model, tmp_path / "m.safetensors")
    _rewrite_meta(p, edit)
    read_metadata(p)  # the metadata on its own is valid...
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(p)  # ...but not for these weights


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--num-classes", "13"], "13 classes"),
        (["--backbone", "resnet34"], "do not fit resnet34"),
        (["--mode", "no_attention"], "do not fit resnet18/att1/no_attention"),
        (["--attention", "att2"], "do not fit resnet18/att2"),
    ],
)
def test_cral_convert_refuses_weights_that_do_not_match_the_requested_model(
    model, tmp_path, capsys, argv, message
):
    src = tmp_path / "w.pt"
    torch.save(model.state_dict(), src)
    args = [str(src), str(tmp_path / "o.safetensors"), "--backbone", "resnet18", *argv]
    assert convert_main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o.safetensors").exists()
