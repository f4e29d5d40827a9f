"""The methods-table runner: one cral-ablation command per method at the same budget, the speed table."""

from __future__ import annotations

from pathlib import Path

from cral_model.cli.methods_table import SMOKE_BANNER, format_speed, get_parser, group_commands, main

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo_model.yaml"


def _epochs(cmd: list[str]) -> int:
    return int(cmd[cmd.index("--epochs") + 1])


def test_equal_budget_gives_every_method_the_configs_epochs_in_all(tmp_path: Path) -> None:
    args = get_parser().parse_args(["--config", str(CONFIG), "--runs", str(tmp_path), "--shared-data", "/d"])
    cmds = group_commands(args)
    assert list(cmds) == ["cral", "agcnn", "can", "iam"]
    # configs/demo_model.yaml: 6 epochs; AG-CNN 3 stages x 2, attention mining 2 rounds x 3
    assert {m: _epochs(c) for m, c in cmds.items()} == {"cral": 6, "agcnn": 2, "can": 6, "iam": 3}
    cral = cmds["cral"]
    assert cral[cral.index("--modes") + 1 : cral.index("--seeds")] == ["full", "no_attention"]
    assert cral[cral.index("--seeds") + 1 : cral.index("--seeds") + 3] == ["0", "1"]
    assert "--cost" in cral and cral[cral.index("--eval-split") + 1] == "val"
    assert cral[cral.index("--data-root") + 1 : cral.index("--labels-dir")] == [
        "/d/chestxray14-nih1000-64px",
        "/d/chestxray14-trainval-512px",
    ]
    per_phase = get_parser().parse_args(["--config", str(CONFIG), "--budget", "per-phase"])
    assert {m: _epochs(c) for m, c in group_commands(per_phase).items()} == {
        "cral": 6,
        "agcnn": 6,
        "can": 6,
        "iam": 6,
    }
    smoke = group_commands(get_parser().parse_args(["--config", str(CONFIG), "--smoke", "--methods", "can"]))
    assert "--max-train-images" in smoke["can"] and "chestxray14-trainval-512px" not in " ".join(smoke["can"])


def test_speed_table_ratios_to_the_baseline() -> None:
    rows = [
        {"method": "cral", "mode": "full", "phase": 0, "params_m": 5.5, "train_ms_per_step": 120.0,
         "infer_ms_per_image": 15.0},
        {"method": "cral", "mode": "no_attention", "phase": 0, "params_m": 3.4, "train_ms_per_step": 100.0,
         "infer_ms_per_image": 10.0},
        {"method": "agcnn", "mode": "full", "phase": 2, "params_m": 6.8, "train_ms_per_step": 50.0,
         "infer_ms_per_image": 25.0},
    ]  # fmt: skip
    text = format_speed(rows, "efficientnet_lite0", 224, 8)
    assert "| CRAL (full) | 5.5 | 120 | 1.20 | 15.0 | 1.50 |" in text
    assert "| AG-CNN (fusion stage) | 6.8 | 50 | 0.50 | 25.0 | 2.50 |" in text


def test_failed_groups_give_a_nonzero_status(tmp_path: Path) -> None:
    # no data below --shared-data: every cral-ablation fails, nothing is merged
    argv = ["--config", str(CONFIG), "--runs", str(tmp_path / "r"), "--shared-data", str(tmp_path / "none")]
    assert main([*argv, "--smoke", "--methods", "can", "--parallel", "1"]) == 1
    assert (tmp_path / "r" / "can.log").is_file()
    assert not (tmp_path / "r" / "methods.md").exists()
    assert SMOKE_BANNER.startswith("SMOKE RUN")
