"""Ranking model outputs into findings and a triage score (no Qt, no torch)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Finding", "format_findings", "rank_findings", "triage_score"]


@dataclass(frozen=True)
class Finding:
    """One class of the model's output.

    Attributes:
        index: position in the model's class list (and in the attention maps).
        name: class name, e.g. ``"Effusion"``.
        probability: in [0, 1].
        threshold: the model's operating threshold for the class, or None when it has none.
    """

    index: int
    name: str
    probability: float
    threshold: float | None = None

    @property
    def above_threshold(self) -> bool:
        """True when a threshold is known and the probability reaches it."""
        return self.threshold is not None and self.probability >= self.threshold

    @property
    def ratio(self) -> float:
        """Probability relative to the threshold (the probability itself when there is none)."""
        if self.threshold is None or self.threshold <= 0:
            return self.probability
        return self.probability / self.threshold

    @property
    def display_name(self) -> str:
        """The class name with underscores as spaces (``Pleural_Thickening`` -> ``Pleural Thickening``)."""
        return self.name.replace("_", " ")


def _thresholds(thresholds: Sequence[float] | np.ndarray | None, k: int) -> np.ndarray | None:
    if thresholds is None:
        return None
    thr = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if thr.size != k:
        raise ValueError(f"got {thr.size} thresholds for {k} classes")
    return thr


def rank_findings(
    probabilities: Sequence[float] | np.ndarray,
    class_names: Sequence[str],
    thresholds: Sequence[float] | np.ndarray | None = None,
    top_k: int | None = 8,
) -> list[Finding]:
    """Sort classes, the most suspicious first (ties keep class order).

    With thresholds the key is ``p / t`` (the triage score's own ratio, see `triage_score`), so the
    first finding is the one that drives the study's triage score and every flagged finding comes
    before every unflagged one; without thresholds the key is the probability.

    Args:
        probabilities: (K,) values in [0, 1]; NaN is treated as 0.
        class_names: K names.
        thresholds: (K,) per-class thresholds or None.
        top_k: keep this many (None: all).

    Returns:
        Up to ``top_k`` :class:`Finding`, in that order.

    Raises:
        ValueError: when the lengths do not match.
    """
    probs = np.nan_to_num(np.asarray(probabilities, dtype=np.float64).reshape(-1), nan=0.0)
    if probs.size != len(class_names):
        raise ValueError(f"got {probs.size} probabilities for {len(class_names)} class names")
    thr = _thresholds(thresholds, probs.size)
    order = np.argsort(-_ratios(probs, thr), kind="stable")
    if top_k is not None:
        order = order[: max(int(top_k), 0)]
    return [
        Finding(
            index=int(i),
            name=str(class_names[i]),
            probability=float(probs[i]),
            threshold=None if thr is None or not np.isfinite(thr[i]) else float(thr[i]),
        )
        for i in order
    ]


def triage_score(
    probabilities: Sequence[float] | np.ndarray, thresholds: Sequence[float] | np.ndarray | None = None
) -> float:
    """How suspicious a study is, for ordering the worklist.

    Defined as ``max_k p_k / t_k`` when per-class thresholds ``t`` are known (a score >= 1 means at
    least one finding is at or above its operating point), else ``max_k p_k``. Thresholds <= 0 or NaN
    fall back to the probability of that class.

    Args:
        probabilities: (K,) values in [0, 1].
        thresholds: (K,) or None.

    Returns:
        The score (0.0 for an empty input).
    """
    probs = np.nan_to_num(np.asarray(probabilities, dtype=np.float64).reshape(-1), nan=0.0)
    if probs.size == 0:
        return 0.0
    return float(_ratios(probs, _thresholds(thresholds, probs.size)).max())


def _ratios(probs: np.ndarray, thr: np.ndarray | None) -> np.ndarray:
    """``p / t`` per class (``p`` where the threshold is missing, NaN or <= 0; all ``p`` without)."""
    if thr is None:
        return probs
    valid = np.isfinite(thr) & (thr > 0)
    return np.where(valid, probs / np.where(valid, thr, 1.0), probs)


def format_findings(findings: Sequence[Finding]) -> list[str]:
    """Plain-text lines ``"  1. Effusion  0.734  (threshold 0.210, ABOVE)"`` for stdout/reports."""
    lines = []
    for rank, f in enumerate(findings, 1):
        extra = ""
        if f.threshold is not None:
            extra = f"  (threshold {f.threshold:.3f}{', ABOVE' if f.above_threshold else ''})"
        lines.append(f"{rank:3d}. {f.display_name:<20s} {f.probability:.3f}{extra}")
    return lines
