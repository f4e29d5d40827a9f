"""Checkpoints round-trip exactly, and anything else is refused without being executed."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from helpers.checkpoints import random_cral

from cral_model import CheckpointError, PreprocessConfig, load_checkpoint, read_metadata, save_checkpoint


@pytest.fixture
def model():
    # move BN statistics away from their defaults so the round trip covers buffers too
    return random_cral("resnet18", "att2", warm_up_batch=4)


def _rewrite_header(path, mutate):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    mutate(header)
    new = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + n :])


def test_round_trip_gives_identical_outputs_and_metadata(model, tmp_path):
    pre = PreprocessConfig(input_size=64, resize=72, base_size=64)
    thresholds = [0.1 * (i % 9) + 0.05 for i in range(14)]
    path = save_checkpoint(
        model,
        tmp_path / "m.safetensors",
        preprocessing=pre,
        thresholds=thresholds,
        provenance={"data": "unit test", "command": "pytest"},
        metrics={"val_mean_auc": 0.5},
        note="hello",
    )
    loaded = load_checkpoint(path)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), model(x), rtol=0, atol=0)
        torch.testing.assert_close(
            loaded.model.forward_with_attention(x)[1], model.forward_with_attention(x)[1], rtol=0, atol=0
        )
    meta = loaded.metadata
    assert loaded.preprocessing == pre
    assert loaded.thresholds == pytest.approx(thresholds)
    assert meta["model"] == model.config.to_dict()
    assert meta["provenance"]["data"] == "unit test"
    assert "date" in meta["provenance"] and "git_commit" in meta["provenance"]
    assert meta["metrics"] == {"val_mean_auc": 0.5}
    assert meta["extra"] == {"note": "hello"}
    assert not loaded.model.training


def test_float16_storage_is_half_the_size_and_close(model, tmp_path):
    p32 = save_checkpoint(model, tmp_path / "a.safetensors")
    p16 = save_checkpoint(model, tmp_path / "b.safetensors", dtype="float16")
    assert p16.stat().st_size < 0.55 * p32.stat().st_size
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = load_checkpoint(p32).model(x), load_checkpoint(p16).model(x)
    torch.testing.assert_close(torch.sigmoid(a), torch.sigmoid(b), atol=5e-3, rtol=0)


def test_a_pickle_checkpoint_is_refused_and_never_executed(tmp_path, model):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    bad = tmp_path / "evil.pth"
    torch.save({"state_dict": model.state_dict(), "x": Payload()}, bad)
    with pytest.raises(CheckpointError, match="pickle") as info:
        load_checkpoint(bad)
    assert "cral-convert" in str(info.value)
    assert not marker.exists()

    legacy = tmp_path / "legacy.pt"
    torch.save(model.state_dict(), legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(legacy)


@pytest.mark.parametrize("content", [b"", b"hello world, not a model", b"\xff" * 64])
def test_junk_files_are_refused_clearly(tmp_path, content):
    p = tmp_path / "junk.safetensors"
    p.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a safetensors"):
        load_checkpoint(p)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_truncated_file_is_refused(model, tmp_path):
    p = save_checkpoint(model, tmp_path / "m.safetensors")
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(p)


def test_plain_safetensors_without_our_metadata_is_refused(tmp_path, model):
    from safetensors.torch import save_file

    p = tmp_path / "foreign.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, p)
    with pytest.raises(CheckpointError, match="no CRAL metadata"):
        load_checkpoint(p)


def _edit_meta(path, fn):
    def mutate(header):
        meta = json.loads(header["__metadata__"]["cral"])
        fn(meta)
        header["__metadata__"]["cral"] = json.dumps(meta)

    _rewrite_header(path, mutate)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["model"].update(backbone="resnet34"), "do not fit"),
        (lambda m: m["model"].update(attention="att1"), "do not fit"),
        (lambda m: m["model"].update(num_classes=13), "class names"),
        (lambda m: m.update(class_names=m["class_names"][:-1]), "class names"),
        (lambda m: m.update(thresholds=[2.0] * 14), "thresholds"),
        (lambda m: m.update(format_version=99), "newer"),
        (lambda m: m.update(format="something"), "not a cral-checkpoint"),
        (lambda m: m["preprocessing"].update(input_size=50), "invalid config"),
        (lambda m: m.pop("weights_sha256"), "lacks"),
    ],
)
def test_tampered_metadata_is_refused(model, tmp_path, edit, message):
    p = save_checkpoint(model, tmp_path / "m.safetensors")
    _edit_meta(p, edit)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(p)


def test_tampered_weights_are_refused(model, tmp_path):
    p = save_checkpoint(model, tmp_path / "m.safetensors")
    raw = bytearray(p.read_bytes())
    raw[-100] ^= 0x55
    p.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(p)


def test_metadata_is_readable_without_loading_weights(model, tmp_path):
    p = save_checkpoint(model, tmp_path / "m.safetensors", metrics={"auc": 0.7})
    assert read_metadata(p)["metrics"] == {"auc": 0.7}


def test_save_is_atomic_and_leaves_no_temporary_files(model, tmp_path):
    save_checkpoint(model, tmp_path / "m.safetensors")
    save_checkpoint(model, tmp_path / "m.safetensors")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.safetensors"]
