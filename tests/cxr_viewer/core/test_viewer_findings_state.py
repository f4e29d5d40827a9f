"""Findings ranking, triage score, the view state, the model-card text, and the import boundary."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from cxr_viewer.core.findings import Finding, format_findings
from cxr_viewer.core.state import SALIENCY, ViewerState
from cxr_viewer.inference import ModelInfo, attention_region, model_card_text, rank_findings, triage_score

NAMES = ("A", "B_c", "C", "D")


def test_rank_findings_order_topk_thresholds() -> None:
    probs = np.array([0.1, 0.9, 0.5, 0.5], np.float32)
    thresholds = [0.05, 0.95, 0.4, 0.6]
    ranked = rank_findings(probs, NAMES, thresholds=thresholds, top_k=3)
    # with thresholds: by p / t, so the finding that drives the triage score comes first
    assert [f.name for f in ranked] == ["A", "C", "B_c"]
    assert ranked[0].ratio == pytest.approx(triage_score(probs, thresholds))
    assert [f.index for f in ranked] == [0, 2, 1]
    assert [f.above_threshold for f in ranked] == [True, True, False]
    assert ranked[2].display_name == "B c"
    assert ranked[1].ratio == pytest.approx(0.5 / 0.4)
    # without thresholds: by probability, ties keep class order
    assert [f.name for f in rank_findings(probs, NAMES, top_k=3)] == ["B_c", "C", "D"]
    assert len(rank_findings(probs, NAMES, top_k=None)) == 4
    assert all(not f.above_threshold for f in rank_findings(probs, NAMES))
    with pytest.raises(ValueError, match="class names"):
        rank_findings(probs, NAMES[:3])
    with pytest.raises(ValueError, match="thresholds"):
        rank_findings(probs, NAMES, thresholds=[0.1])


def test_triage_score() -> None:
    probs = np.array([0.1, 0.9, 0.5, 0.2])
    assert triage_score(probs) == pytest.approx(0.9)
    assert triage_score(probs, [0.05, 0.95, 0.4, 0.6]) == pytest.approx(2.0)  # 0.1 / 0.05
    assert triage_score(probs, [0.0, 0.95, np.nan, 0.6]) == pytest.approx(0.9 / 0.95)
    assert triage_score([]) == 0.0


def test_format_findings() -> None:
    lines = format_findings([Finding(0, "Pleural_Thickening", 0.5, 0.25, ratio=2.0, above_threshold=True)])
    assert "Pleural Thickening" in lines[0]
    assert "ABOVE" in lines[0]


def test_viewer_state_notifies_only_changes() -> None:
    state = ViewerState()
    seen: list[set[str]] = []
    unsubscribe = state.subscribe(seen.append)
    assert state.update(selected_map=SALIENCY, overlay_opacity=2.0) == {"selected_map", "overlay_opacity"}
    assert state.overlay_opacity == 1.0
    assert state.update(selected_map=SALIENCY) == set()
    assert seen == [{"selected_map", "overlay_opacity"}]
    unsubscribe()
    state.update(invert=True)
    assert len(seen) == 1
    with pytest.raises(AttributeError):
        state.update(nope=1)


def test_model_card_text() -> None:
    assert "No trained model loaded" in model_card_text(None)
    info = ModelInfo("/x/m.safetensors", "cpu", NAMES, (0.1, 0.2, 0.3, 0.4), {"metrics": {"auc": 0.71}})
    text = model_card_text(info)
    assert "NOT FOR CLINICAL USE" in text
    assert "auc: 0.71" in text
    assert "A=0.100" in text


def test_attention_region() -> None:
    class Cfg:
        resize, input_size = 256, 224

    class P:
        preprocessing = Cfg()

    top, _left, bottom, _right = attention_region(P())
    assert top == pytest.approx(16 / 256)
    assert bottom == pytest.approx(240 / 256)
    assert attention_region(object()) == (0.0, 0.0, 1.0, 1.0)


def test_core_imports_no_qt_no_torch() -> None:
    heavy = "('torch', 'PySide6', 'pyqtgraph', 'cral_model')"
    code = (
        "import sys, json, cxr_viewer, cxr_viewer.core, cxr_viewer.core.io, cxr_viewer.core.overlay, "
        "cxr_viewer.inference; "
        f"print(json.dumps(sorted(m for m in {heavy} if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
