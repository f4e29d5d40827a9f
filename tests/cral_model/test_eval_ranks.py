"""Evaluation under torchrun and on CUDA: rank 0 alone evaluates and writes in ``cral-ablation``; each
process evaluates on its own ``LOCAL_RANK`` device; evaluation runs in float32 (no autocast), as the
deployed ``Predictor`` does. The training under torchrun is stubbed: only the evaluation side is tested."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import pytest
import torch

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def trained_stub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], Path, list[Any]]:
    """cral-ablation over one mode whose 'training' writes an untrained checkpoint; evaluations recorded."""
    import cral_model.cli.ablation as ablation
    import cral_model.cli.train as train
    from cral_model.checkpoint import save_checkpoint
    from cral_model.config import PreprocessConfig
    from cral_model.data import make_synthetic_nih
    from cral_model.models.cral import build_model

    root = tmp_path / "nih"
    make_synthetic_nih(
        root, n_patients=6, images_per_patient=2, test_patients=3, size=32, seed=1, p_positive=0.4
    )

    def fake_train(argv: list[str]) -> int:
        out = argv[argv.index("--output") + 1]
        save_checkpoint(build_model("resnet18", "att1", "full"), f"{out}/best.safetensors",
                        preprocessing=PreprocessConfig(32, 32))  # fmt: skip
        return 0

    calls: list[Any] = []
    real_eval = ablation.evaluate_checkpoint

    @functools.wraps(real_eval)  # the parser reads the defaults from its signature
    def recording_eval(*a: Any, **kw: Any) -> Any:
        calls.append(kw)
        return real_eval(*a, **kw)

    monkeypatch.setattr(train, "main", fake_train)
    monkeypatch.setattr(ablation, "evaluate_checkpoint", recording_eval)
    out = tmp_path / "abl"
    argv = ["--output", str(out), "--modes", "full", "--bootstrap", "10", "--data-root", str(root),
            "--workers", "0", "--no-progress", "--pretrained", "none", "--device", "cpu"]  # fmt: skip
    (out / "full").mkdir(parents=True)
    return argv, out, calls


def test_ablation_evaluates_and_writes_on_rank_0_only(
    trained_stub: tuple[list[str], Path, list[Any]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from cral_model.cli.ablation import main

    argv, out, calls = trained_stub
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert main(argv) == 0
    assert calls == [] and not (out / "ablation.md").exists() and capsys.readouterr().out == ""
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert main(argv) == 0
    assert len(calls) == 1 and (out / "ablation.md").is_file()
    assert "CRAL (full)" in capsys.readouterr().out


def test_evaluation_is_float32_on_the_local_rank_device(
    trained_stub: tuple[list[str], Path, list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import cral_model.devices as devices
    import cral_model.engine as engine
    from cral_model.cli.ablation import main

    argv, _, _ = trained_stub
    seen: dict[str, Any] = {}
    real_device, real_predict = devices.torch_device, engine.predict

    def device(name: str = "auto", *, local_rank: int = 0) -> torch.device:
        seen["local_rank"] = local_rank
        return real_device("cpu")

    def predict(*a: Any, precision: Any = None, **kw: Any) -> Any:
        seen["amp_dtype"] = precision.amp_dtype
        with precision.autocast():  # what the loop runs under: no reduced precision
            seen["autocast"] = torch.is_autocast_enabled("cpu")
        return real_predict(*a, precision=precision, **kw)

    monkeypatch.setattr(devices, "torch_device", device)
    monkeypatch.setattr(engine, "predict", predict)
    monkeypatch.setenv("LOCAL_RANK", "3")  # rank 0 of a second machine, say
    assert main(argv) == 0
    assert seen == {"local_rank": 3, "amp_dtype": None, "autocast": False}
