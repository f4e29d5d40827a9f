"""Findings of one study: ranked classes with their thresholds (no Qt, no torch).

The rule that ranks and flags (``p / t``, ``p >= t``, what an unusable threshold means) has one home,
`cral_model.triage`; :func:`rank_findings` takes it as an argument (`TriageRule`) because the viewer's
core does not import the model package. `cxr_viewer.inference.rank_findings` passes the real one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

__all__ = ["Finding", "TriageRule", "format_findings", "rank_findings"]

ArrayLike = Sequence[float] | np.ndarray


class TriageRule(Protocol):
    """The operating-point rule (the module `cral_model.triage` is one)."""

    def valid_thresholds(self, thresholds: ArrayLike | None, k: int) -> np.ndarray | None: ...

    def threshold_ratios(
        self, probabilities: ArrayLike, thresholds: ArrayLike | None = None
    ) -> np.ndarray: ...

    def flagged_mask(self, probabilities: ArrayLike, thresholds: ArrayLike | None = None) -> np.ndarray: ...

    def triage_order(self, probabilities: ArrayLike, thresholds: ArrayLike | None = None) -> np.ndarray: ...

    def triage_score(self, probabilities: ArrayLike, thresholds: ArrayLike | None = None) -> float: ...


@dataclass(frozen=True)
class Finding:
    """One class of the model's output, as the rule judged it.

    Attributes:
        index: position in the model's class list (and in the attention maps).
        name: class name, e.g. ``"Effusion"``.
        probability: in [0, 1].
        threshold: the class's operating point, or None when it has none (or an unusable one).
        ratio: ``probability / threshold`` (the probability itself without a threshold): the triage key.
        above_threshold: the class is flagged (probability at or above a usable threshold).
    """

    index: int
    name: str
    probability: float
    threshold: float | None
    ratio: float
    above_threshold: bool

    @property
    def display_name(self) -> str:
        """The class name with underscores as spaces (``Pleural_Thickening`` -> ``Pleural Thickening``)."""
        return self.name.replace("_", " ")


def rank_findings(
    probabilities: ArrayLike,
    class_names: Sequence[str],
    thresholds: ArrayLike | None,
    top_k: int | None,
    *,
    rule: TriageRule,
) -> list[Finding]:
    """Classes, the most suspicious first, by ``rule``'s triage order (ties keep class order).

    With thresholds the key is ``p / t``, so the first finding is the one that drives the study's
    triage score and every flagged finding comes before every unflagged one; without, the probability.

    Args:
        probabilities: (K,) values in [0, 1]; NaN is treated as 0.
        class_names: K names.
        thresholds: (K,) per-class thresholds or None.
        top_k: keep this many (None: all).
        rule: the operating-point rule (`cral_model.triage`).

    Raises:
        ValueError: when the lengths do not match.
    """
    probs = np.nan_to_num(np.asarray(probabilities, dtype=np.float64).reshape(-1), nan=0.0)
    if probs.size != len(class_names):
        raise ValueError(f"got {probs.size} probabilities for {len(class_names)} class names")
    thr = rule.valid_thresholds(thresholds, probs.size)
    ratios = rule.threshold_ratios(probs, thr)
    flagged = rule.flagged_mask(probs, thr)
    order = rule.triage_order(probs, thr)
    if top_k is not None:
        order = order[: max(int(top_k), 0)]
    return [
        Finding(
            index=int(i),
            name=str(class_names[i]),
            probability=float(probs[i]),
            threshold=None if thr is None or np.isnan(thr[i]) else float(thr[i]),
            ratio=float(ratios[i]),
            above_threshold=bool(flagged[i]),
        )
        for i in order
    ]


def format_findings(findings: Sequence[Finding]) -> list[str]:
    """Plain-text lines ``"  1. Effusion  0.734  (threshold 0.210, ABOVE)"`` for stdout/reports."""
    lines = []
    for rank, f in enumerate(findings, 1):
        extra = ""
        if f.threshold is not None:
            extra = f"  (threshold {f.threshold:.3f}{', ABOVE' if f.above_threshold else ''})"
        lines.append(f"{rank:3d}. {f.display_name:<20s} {f.probability:.3f}{extra}")
    return lines
