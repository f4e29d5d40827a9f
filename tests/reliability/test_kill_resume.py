"""Item 4 of issue 7: training survives ``kill -9``.

A real ``cral-train`` process is killed with SIGKILL at several moments (mid-epoch, and repeatedly
right around the end-of-epoch save), resumed with ``--resume`` each time, and must end with exactly the
weights, optimizer state, history and exported checkpoint of an uninterrupted run. After every kill
``last.pt`` must load (never truncated) and the exported ``best.safetensors`` must validate.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest
import torch

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

EPOCHS = 3
ARGS = [
    "--backbone", "resnet18", "--input-size", "32", "--resize", "36", "--pretrained", "none",
    "--batch-size", "4", "--workers", "0", "--threads", "1", "--val-fraction", "0.3", "--no-progress",
    "--epochs", str(EPOCHS), "--lr-steps", "2",
]  # fmt: skip


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    from cral_model.data import make_synthetic_nih

    root = tmp_path_factory.mktemp("synth") / "nih"
    make_synthetic_nih(root, n_patients=14, images_per_patient=2, test_patients=3, size=32, seed=3)
    return root


def _train(out: Path, root: Path | None, resume: bool = False) -> subprocess.Popen:
    argv = [sys.executable, "-m", "cral_model.cli.train", "--output", str(out)]
    argv += ["--resume", "--no-progress"] if resume else ["--data-root", str(root), *ARGS]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)


def _epoch(out: Path) -> int:
    from cral_model.engine import load_train_state

    p = out / "last.pt"
    return int(load_train_state(p)["epoch"]) if p.exists() else 0


def _wait_for_epoch(proc: subprocess.Popen, out: Path, epoch: int, timeout: float = 180) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if _epoch(out) >= epoch:
            return
        if proc.poll() is not None:
            raise AssertionError(f"training ended early ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        time.sleep(0.02)
    raise AssertionError(f"epoch {epoch} not reached in {timeout} s")


def _kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _assert_intact(out: Path) -> int:
    """last.pt loads (not truncated) and best.safetensors validates; returns the saved epoch."""
    from cral_model import load_checkpoint

    epoch = _epoch(out)  # raises on a truncated or foreign file
    if (out / "best.safetensors").exists():
        load_checkpoint(out / "best.safetensors")
    return epoch


def test_kill_9_then_resume_gives_the_uninterrupted_weights(synth_root, tmp_path, figures):
    from cral_model.engine import load_train_state

    full = tmp_path / "full"
    t0 = time.perf_counter()
    ref = _train(full, synth_root)
    assert ref.wait(timeout=300) == 0, ref.stderr.read()[-2000:]
    uninterrupted_s = time.perf_counter() - t0

    part = tmp_path / "part"
    kills: list[str] = []
    # 1: mid-epoch, 0.3 s into epoch 2
    proc = _train(part, synth_root)
    _wait_for_epoch(proc, part, 1)
    time.sleep(0.3)
    _kill(proc)
    kills.append(f"mid-epoch (saved epoch {_assert_intact(part)})")
    # a save interrupted by a kill leaves its temporary file; the next start removes such leftovers
    (part / "last.pt.0123456789ab.tmp").write_bytes(b"\x80\x02partial")
    # 2: as soon as the epoch-2 state appears (the export/log writes may still be going on)
    for target in (2,):
        proc = _train(part, None, resume=True)
        _wait_for_epoch(proc, part, target)
        _kill(proc)
        kills.append(f"right after the epoch-{target} save (saved epoch {_assert_intact(part)})")
    # the last resume runs to the end
    proc = _train(part, None, resume=True)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()[-2000:]
    assert "Traceback" not in proc.stderr.read()

    a, b = load_train_state(full / "last.pt"), load_train_state(part / "last.pt")
    assert a["epoch"] == b["epoch"] == EPOCHS
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    strip = lambda h: [{k: v for k, v in r.items() if "seconds" not in k and "per_s" not in k} for r in h]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"])
    from safetensors.torch import load_file

    wa, wb = load_file(full / "best.safetensors"), load_file(part / "best.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    log = [json.loads(line)["epoch"] for line in (part / "log.jsonl").read_text().splitlines()]
    leftovers = sorted(p.name for p in part.iterdir() if p.name.endswith(".tmp"))
    figures["training: kill -9 and --resume"] = {
        "kills": kills,
        "final_weights_identical": True,
        "uninterrupted_run_s": round(uninterrupted_s, 1),
        "log_epochs": log,
        "temporary_files_left": leftovers,
    }
    assert log == list(range(1, EPOCHS + 1))
    assert leftovers == []


_SAVE_LOOP = r"""
import sys, torch
from pathlib import Path
from cral_model.engine import _atomic_torch_save
from cral_model import build_model, save_checkpoint
out = Path(sys.argv[1])
model = build_model("resnet18", "att1")
state = {"format": "x", "weights": model.state_dict(), "i": 0}
print("ready", flush=True)
i = 0
while True:
    i += 1
    state["i"] = i
    _atomic_torch_save(state, out / "last.pt")
    save_checkpoint(model, out / "best.safetensors", provenance={"i": i})
"""


def test_kill_9_during_saves_never_leaves_a_truncated_file(tmp_path, figures):
    """SIGKILL at random moments while a process saves in a loop: both files always load."""
    import random

    from cral_model import load_checkpoint

    rng = random.Random(5)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    loaded = 0
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", _SAVE_LOOP, str(tmp_path)], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=env, text=True)  # fmt: skip
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.2, 1.5))
        _kill(proc)
        if (tmp_path / "last.pt").exists():
            state = torch.load(tmp_path / "last.pt", weights_only=True)
            assert state["i"] >= 1
            loaded += 1
        if (tmp_path / "best.safetensors").exists():
            load_checkpoint(tmp_path / "best.safetensors")
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp"))
    figures["training: kill -9 during saves"] = {
        "kills": 5,
        "last_pt_loaded": loaded,
        "temporary_files_left": len(leftovers),
    }
    assert loaded >= 1
