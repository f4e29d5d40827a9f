"""Fixtures for the reliability tests; the fuzz counts are printed at the end of the session.

Set ``CXR_RELIABILITY_REPORT=path.json`` to also write the figures as JSON (used for
docs/RELIABILITY.md).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from reliability_helpers import build_seeds

_FIGURES: dict[str, dict[str, object]] = {}


@pytest.fixture(scope="session")
def figures() -> dict[str, dict[str, object]]:
    """Tests put their figures here (``figures["fuzz: ..."] = {...}``); printed in the summary."""
    return _FIGURES


@pytest.fixture(scope="session")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small valid DICOM/PNG/JPEG/TIFF/BMP files of every supported kind."""
    return build_seeds(tmp_path_factory.mktemp("seeds"))


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("reliability figures")
    for name, values in _FIGURES.items():
        terminalreporter.write_line(f"{name}: {json.dumps(values, default=str)}")
    out = os.environ.get("CXR_RELIABILITY_REPORT")
    if out:
        Path(out).write_text(json.dumps(_FIGURES, indent=2, default=str))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-initialised resnet18 checkpoint at 64 px."""
    from helpers.checkpoints import write_tiny_checkpoint

    return write_tiny_checkpoint(
        tmp_path_factory.mktemp("model") / "tiny.safetensors",
        provenance={"data": "random initialisation (reliability test)"},
    )


@pytest.fixture(scope="session")
def batch_200(
    tmp_path_factory: pytest.TempPathFactory, seeds: dict[str, Path]
) -> tuple[list[Path], list[Path]]:
    """200 files, a tenth of them broken: ``(good, broken)``."""
    from reliability_helpers import make_batch

    return make_batch(tmp_path_factory.mktemp("batch200"), seeds)
