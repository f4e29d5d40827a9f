"""Operating points: the one home of the triage rule (numpy only; importing it does not import torch).

With per-class thresholds ``t`` a class's *ratio* is ``p / t``; a class is *flagged* when ``p >= t``; a
study's *triage score* is its highest ratio (>= 1 means at least one class is flagged). A threshold that
is missing, NaN or <= 0 is no operating point: that class's ratio is its probability and it is never
flagged. Without thresholds every ratio is the probability and nothing is flagged. NaN probabilities
count as 0.

Used by `cral_model.Prediction`, `cral-eval`, the viewer's findings panel and worklist, and
``cxr-triage`` (through `cxr_viewer.inference`), so that they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["flagged_mask", "threshold_ratios", "triage_order", "triage_score", "valid_thresholds"]

ArrayLike = Sequence[float] | np.ndarray


def _probabilities(probabilities: ArrayLike) -> np.ndarray:
    return np.nan_to_num(np.asarray(probabilities, dtype=np.float64).reshape(-1), nan=0.0)


def valid_thresholds(thresholds: ArrayLike | None, k: int) -> np.ndarray | None:
    """(k,) float64 thresholds with every unusable one (NaN, inf, <= 0) as NaN; None stays None.

    Raises:
        ValueError: when there are not exactly ``k`` thresholds.
    """
    if thresholds is None:
        return None
    thr = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if thr.size != k:
        raise ValueError(f"got {thr.size} thresholds for {k} classes")
    return np.where(np.isfinite(thr) & (thr > 0), thr, np.nan)


def threshold_ratios(probabilities: ArrayLike, thresholds: ArrayLike | None = None) -> np.ndarray:
    """(K,) ``p / t`` per class; ``p`` where the class has no usable threshold (see the module text)."""
    probs = _probabilities(probabilities)
    thr = valid_thresholds(thresholds, probs.size)
    if thr is None:
        return probs
    valid = ~np.isnan(thr)
    return np.where(valid, probs / np.where(valid, thr, 1.0), probs)


def flagged_mask(probabilities: ArrayLike, thresholds: ArrayLike | None = None) -> np.ndarray:
    """(K,) bool: ``p >= t`` for classes with a usable threshold (all False without thresholds)."""
    probs = _probabilities(probabilities)
    thr = valid_thresholds(thresholds, probs.size)
    if thr is None:
        return np.zeros(probs.size, dtype=bool)
    usable = ~np.isnan(thr)
    reached: np.ndarray = probs >= np.where(usable, thr, np.inf)
    mask: np.ndarray = usable & reached
    return mask


def triage_order(probabilities: ArrayLike, thresholds: ArrayLike | None = None) -> np.ndarray:
    """Class indices, the most suspicious first: descending ratio, ties in class order.

    Every flagged class comes before every unflagged one (a flagged ratio is >= 1, an unflagged one < 1).
    """
    return np.argsort(-threshold_ratios(probabilities, thresholds), kind="stable")


def triage_score(probabilities: ArrayLike, thresholds: ArrayLike | None = None) -> float:
    """The highest ratio (``max_k p_k / t_k``; ``max_k p_k`` without thresholds); 0.0 for no classes."""
    ratios = threshold_ratios(probabilities, thresholds)
    return float(ratios.max()) if ratios.size else 0.0
