"""AUC, ROC, Youden thresholds, bootstrap intervals: hand-computed cases and scikit-learn agreement."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from cral_model.labels import CLASS_NAMES
from cral_model.metrics import (
    PAPER_TABLE1,
    PAPER_TABLE2,
    AUCMetric,
    UndefinedAUCWarning,
    bootstrap_auc_ci,
    mean_auc,
    per_class_auc,
    roc_auc,
    roc_curve,
    sensitivity_specificity,
    youden_thresholds,
)


def test_hand_computed_auc() -> None:
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    assert roc_auc(np.array([0.1, 0.2, 0.3]), np.array([0, 1, 1])) == 1.0
    assert roc_auc(np.array([0.9, 0.2, 0.3]), np.array([1, 0, 0])) == 1.0
    assert roc_auc(np.array([0.3, 0.2, 0.1]), np.array([0, 1, 1])) == 0.0
    # Ties count one half.
    assert roc_auc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5
    assert roc_auc(np.array([0.5, 0.5, 0.9]), np.array([0, 1, 1])) == pytest.approx(0.75)


def test_undefined_class_is_nan_with_warning_and_skipped() -> None:
    probs = np.array([[0.1, 0.2], [0.8, 0.3], [0.7, 0.9]])
    targets = np.array([[0, 0], [1, 0], [1, 0]])
    with pytest.warns(UndefinedAUCWarning, match="B"):
        aucs = per_class_auc(probs, targets, ["A", "B"])
    assert aucs["A"] == 1.0
    assert math.isnan(aucs["B"])
    assert mean_auc(aucs) == 1.0
    assert math.isnan(mean_auc([math.nan, math.nan]))
    m = AUCMetric(["A", "B"])
    m.update(probs[:2], targets[:2])
    m.update(probs[2:], targets[2:])
    got, mean = m.aggregate(warn=False)
    assert got["A"] == 1.0
    assert mean == 1.0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 6), st.booleans()), min_size=2, max_size=60).filter(
        lambda rows: 0 < sum(y for _, y in rows) < len(rows)
    )
)
def test_auc_equals_sklearn_including_ties(rows) -> None:
    scores = np.array([s / 6 for s, _ in rows])  # few distinct values: many ties
    labels = np.array([int(y) for _, y in rows])
    assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_per_class_and_roc_curve_equal_sklearn() -> None:
    rng = np.random.default_rng(0)
    targets = (rng.random((300, 14)) < 0.2).astype(float)
    probs = np.clip(targets * 0.3 + rng.random((300, 14)) * 0.7, 0, 1).round(2)
    aucs = per_class_auc(probs, targets)
    assert list(aucs) == list(CLASS_NAMES)
    for k, name in enumerate(CLASS_NAMES):
        assert aucs[name] == pytest.approx(roc_auc_score(targets[:, k], probs[:, k]), abs=1e-12)
        fpr, tpr, _ = roc_curve(probs[:, k], targets[:, k])
        sk_fpr, sk_tpr, _ = sk_roc_curve(targets[:, k], probs[:, k], drop_intermediate=False)
        np.testing.assert_allclose(fpr, sk_fpr)
        np.testing.assert_allclose(tpr, sk_tpr)
        area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # trapezoids under the curve
        assert area == pytest.approx(aucs[name])


def test_youden_threshold_is_the_brute_force_optimum() -> None:
    rng = np.random.default_rng(1)
    targets = (rng.random((200, 3)) < 0.3).astype(float)
    probs = np.clip(targets * 0.25 + rng.random((200, 3)) * 0.75, 0, 1)
    targets[:, 2] = 0  # undefined class -> default
    thr = youden_thresholds(probs, targets)
    assert thr[2] == 0.5
    for k in range(2):

        def j(t: float, k: int = k) -> float:
            ops = sensitivity_specificity(probs[:, [k]], targets[:, [k]], [t], ["c"])["c"]
            return ops["sensitivity"] + ops["specificity"] - 1

        best = max(j(t) for t in np.unique(probs[:, k]))
        assert j(thr[k]) == pytest.approx(best)


def test_sensitivity_specificity_by_hand() -> None:
    probs = np.array([[0.9], [0.6], [0.4], [0.1]])
    targets = np.array([[1], [0], [1], [0]])
    ops = sensitivity_specificity(probs, targets, [0.5], ["x"])["x"]
    assert (ops["sensitivity"], ops["specificity"], ops["n_pos"], ops["n_neg"]) == (0.5, 0.5, 2, 2)


def test_bootstrap_interval_seeded_and_brackets_estimate() -> None:
    rng = np.random.default_rng(2)
    targets = (rng.random((150, 14)) < 0.3).astype(float)
    targets[:, 13] = 0
    probs = np.clip(targets * 0.3 + rng.random((150, 14)) * 0.7, 0, 1)
    a = bootstrap_auc_ci(probs, targets, n_resamples=200, seed=7)
    b = bootstrap_auc_ci(probs, targets, n_resamples=200, seed=7)
    assert a == b
    aucs = per_class_auc(probs, targets, warn=False)
    lo, hi = a["mean_auc"]
    assert lo <= mean_auc(aucs) <= hi
    assert a["per_class"]["Hernia"] is None
    for name in CLASS_NAMES[:13]:
        lo, hi = a["per_class"][name]
        assert 0 <= lo <= aucs[name] <= hi <= 1


def test_paper_tables() -> None:
    assert PAPER_TABLE1[("resnet50", "att1")]["mean"] == 0.814
    assert PAPER_TABLE1[("densenet121", "att2")]["Hernia"] == 0.917
    assert set(PAPER_TABLE1[("resnet50", "att2")]) == {*CLASS_NAMES, "mean"}
    assert PAPER_TABLE2[("resnet50", "att1")]["no_attention"] == 0.8034


def test_fast_bootstrap_equals_naive_resampling() -> None:
    from cral_model.metrics import _bootstrap_aucs

    rng = np.random.default_rng(3)
    targets = (rng.random((60, 3)) < 0.3).astype(float)
    probs = np.round(rng.random((60, 3)), 1)  # many ties
    targets[:, 2] = 0
    targets[:2, 2] = 1  # rare class: some resamples have no positive
    fast = _bootstrap_aucs(probs, targets, 40, seed=9)
    draw = np.random.default_rng(9)
    naive = np.array(
        [
            [roc_auc(probs[idx, c], targets[idx, c]) for c in range(3)]
            for idx in (draw.integers(0, 60, 60) for _ in range(40))
        ]
    )
    np.testing.assert_allclose(fast, naive, rtol=0, atol=1e-12)
    assert np.isnan(fast[:, 2]).any()
