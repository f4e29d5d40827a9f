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


def test_import_linter_contracts_hold():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("import-linter is not installed (it comes with the test extra)")
    out = subprocess.run([exe], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
