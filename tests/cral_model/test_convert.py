from __future__ import annotations

import torch

from cral_model import build_model, load_checkpoint
from cral_model.cli.convert import main


def test_plain_state_dict_is_imported_with_identical_outputs(tmp_path):
    model = build_model("resnet18", "att1").eval()
    src = tmp_path / "w.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in model.state_dict().items()}, "epoch": 3}, src)
    dest = tmp_path / "w.safetensors"
    assert main([str(src), str(dest), "--backbone", "resnet18", "--input-size", "64", "--resize", "64"]) == 0
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(load_checkpoint(dest).model(x), model(x), rtol=0, atol=0)
    assert load_checkpoint(dest).metadata["provenance"]["converted_from"] == "w.pth"


def test_a_malicious_pickle_is_not_executed(tmp_path, capsys):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    src = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "x": Payload()}, src)
    assert main([str(src), str(tmp_path / "o.safetensors"), "--backbone", "resnet18"]) == 2
    assert not marker.exists()
    assert not (tmp_path / "o.safetensors").exists()
    assert "refusing to unpickle" in capsys.readouterr().err


def test_weights_for_another_architecture_are_refused(tmp_path, capsys):
    src = tmp_path / "r34.pt"
    torch.save(build_model("resnet34").state_dict(), src)
    assert main([str(src), str(tmp_path / "o.safetensors"), "--backbone", "resnet18"]) == 2
    assert "do not fit resnet18" in capsys.readouterr().err
