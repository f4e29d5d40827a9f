"""One direction of dependency: cral_model never sees Qt; the viewer core never loads torch."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return set(out.stdout.split())


def test_cral_model_loads_no_qt():
    mods = _loaded_after("import cral_model, cral_model.inference")
    assert not {m for m in mods if m.split(".")[0] in {"PySide6", "pyqtgraph", "cxr_viewer"}}


def test_viewer_core_loads_neither_qt_nor_torch():
    mods = _loaded_after("import cxr_viewer.core, cxr_viewer.core.io, cxr_viewer.core.windowing")
    assert not {m for m in mods if m.split(".")[0] in {"PySide6", "pyqtgraph", "torch"}}


def test_the_triage_rule_and_the_pipeline_load_no_torch():
    mods = _loaded_after("import cral_model.triage, cxr_viewer.core.pipeline, cxr_viewer.inference")
    assert not {m for m in mods if m.split(".")[0] in {"PySide6", "pyqtgraph", "torch"}}


def test_cral_model_exports_every_lazy_name():
    import cral_model

    assert sorted(cral_model.__all__) == sorted(cral_model._HOMES)
    for name in cral_model.__all__:
        assert getattr(cral_model, name) is not None


def test_one_triage_rule_for_the_model_the_viewer_and_the_csv():
    import numpy as np

    from cral_model import triage
    from cral_model.inference import Prediction
    from cxr_viewer.inference import rank_findings, triage_score

    rng = np.random.default_rng(0)
    for _ in range(200):
        probs = rng.random(5).astype(np.float32)
        thr = rng.choice([0.0, -0.1, np.nan, 0.05, 0.3, 0.5, 0.9], 5).astype(np.float32)
        names = tuple("ABCDE")
        pred = Prediction(names, probs, np.zeros((5, 1, 1)), np.zeros((1, 1)), thr)
        ranked = rank_findings(probs, names, thr, top_k=None)
        assert pred.triage_score() == triage_score(probs, thr) == triage.triage_score(probs, thr)
        assert pred.flagged() == [f.name for f in ranked if f.above_threshold]
        assert ranked[0].ratio == pred.triage_score()
        unusable = ~(np.isfinite(thr) & (thr > 0))
        assert not any(f.above_threshold for f in ranked if unusable[f.index])  # no operating point


def test_import_linter_contracts_hold():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("import-linter is not installed (it comes with the test extra)")
    out = subprocess.run([exe], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
