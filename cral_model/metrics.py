"""ROC AUC and operating-point metrics for multi-label predictions (numpy only).

Conventions: ``probs`` and ``targets`` are ``(N, K)`` arrays, targets 0/1. A class whose targets are all
0 or all 1 has an undefined AUC: it is NaN here (``null`` in JSON), a `UndefinedAUCWarning` is issued
(MONAI ``rocauc._calculate``), and means skip it.

Also holds the paper's reference numbers (Guan & Huang, Tables 1 and 2; see docs/CRAL.md) for the
side-by-side tables printed by ``cral-eval`` and ``cral-ablation``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from cral_model.labels import CLASS_NAMES

__all__ = [
    "PAPER_TABLE1",
    "PAPER_TABLE2",
    "AUCMetric",
    "UndefinedAUCWarning",
    "bootstrap_auc_ci",
    "mean_auc",
    "normal_flag_rate",
    "normal_flag_rate_thresholds",
    "paired_bootstrap_auc_difference",
    "per_class_auc",
    "resample_weights",
    "roc_auc",
    "roc_curve",
    "sensitivity_specificity",
    "youden_thresholds",
]


class UndefinedAUCWarning(UserWarning):
    """A class has only one label value, so its ROC AUC is undefined (NaN)."""


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of a 1-D array, ties getting the mean of their ranks."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    # Boundaries of runs of equal values.
    boundary = np.concatenate(([True], xs[1:] != xs[:-1], [True]))
    starts = np.flatnonzero(boundary)
    run_len = np.diff(starts)
    avg = starts[:-1] + (run_len + 1) / 2.0  # 1-based mean rank of each run
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(avg, run_len)
    return ranks


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of one class (Mann-Whitney U / (n_pos n_neg); ties count one half).

    Args:
        scores: ``(N,)`` scores, higher = more likely positive.
        labels: ``(N,)`` 0/1.

    Returns:
        The AUC in [0, 1], or NaN when ``labels`` has a single value (no warning here).
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel() > 0.5
    if s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and labels {y.shape} differ in shape")
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = _average_ranks(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _check(probs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, dtype=np.float64)
    t = np.asarray(targets, dtype=np.float64)
    if p.ndim != 2 or p.shape != t.shape:
        raise ValueError(f"expected probs and targets of the same (N, K) shape, got {p.shape} and {t.shape}")
    return p, t


def per_class_auc(
    probs: np.ndarray,
    targets: np.ndarray,
    class_names: Sequence[str] = CLASS_NAMES,
    *,
    warn: bool = True,
) -> dict[str, float]:
    """ROC AUC of each class: ``name -> AUC`` (NaN, with a `UndefinedAUCWarning`, when undefined)."""
    p, t = _check(probs, targets)
    if p.shape[1] != len(class_names):
        raise ValueError(f"{p.shape[1]} columns but {len(class_names)} class names")
    out = {name: roc_auc(p[:, k], t[:, k]) for k, name in enumerate(class_names)}
    undefined = [n for n, v in out.items() if math.isnan(v)]
    if undefined and warn:
        warnings.warn(
            f"ROC AUC undefined (only one label value) for {undefined}; "
            "reported as NaN and skipped in the mean",
            UndefinedAUCWarning,
            stacklevel=2,
        )
    return out


def mean_auc(aucs: Mapping[str, float] | Sequence[float]) -> float:
    """Mean of the defined (non-NaN) AUCs; NaN when none is defined."""
    vals = np.asarray(list(aucs.values()) if isinstance(aucs, Mapping) else list(aucs), dtype=np.float64)
    vals = vals[~np.isnan(vals)]
    return float(vals.mean()) if vals.size else math.nan


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve of one class.

    Returns:
        ``(fpr, tpr, thresholds)``: one point per distinct score (predict positive when
        ``score >= threshold``), preceded by the point (0, 0) at threshold +inf. Empty-class rates are NaN.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel() > 0.5
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_run = np.flatnonzero(np.concatenate((s[1:] != s[:-1], [True])))
    tp = np.cumsum(y)[last_of_run].astype(np.float64)
    fp = (last_of_run + 1 - tp).astype(np.float64)
    n_pos, n_neg = float(y.sum()), float(len(y) - y.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.concatenate(([0.0], tp / n_pos)) if n_pos else np.full(len(tp) + 1, np.nan)
        fpr = np.concatenate(([0.0], fp / n_neg)) if n_neg else np.full(len(fp) + 1, np.nan)
    thresholds = np.concatenate(([np.inf], s[last_of_run]))
    return fpr, tpr, thresholds


def youden_thresholds(probs: np.ndarray, targets: np.ndarray, *, default: float = 0.5) -> list[float]:
    """Per-class operating threshold maximising Youden's J = sensitivity + specificity - 1.

    The threshold is the score of the best ROC point (predict positive when ``p >= threshold``); among
    ties of J the highest threshold (fewest positives) wins. A class lacking positives or negatives
    gets ``default``.
    """
    p, t = _check(probs, targets)
    out = []
    for k in range(p.shape[1]):
        fpr, tpr, thr = roc_curve(p[:, k], t[:, k])
        if np.isnan(fpr).any() or np.isnan(tpr).any():
            out.append(float(default))
            continue
        j = tpr - fpr
        j[0] = -np.inf  # the +inf threshold (nothing positive) is not an operating point
        out.append(float(thr[int(np.argmax(j))]))
    return out


def normal_flag_rate(
    probs: np.ndarray, targets: np.ndarray, thresholds: Sequence[float] | np.ndarray
) -> float:
    """Share of "No Finding" images (all targets 0) with at least one class at or above its threshold.

    NaN when there is no such image.
    """
    p, t = _check(probs, targets)
    normal = ~(t > 0.5).any(axis=1)
    if not normal.any():
        return math.nan
    flagged = (p[normal] >= np.asarray(thresholds, dtype=np.float64)[None, :]).any(axis=1)
    return float(flagged.mean())


def _specificity_thresholds(p: np.ndarray, t: np.ndarray, spec: float) -> np.ndarray:
    """Per class, the lowest threshold at which at least ``spec`` of that class's negatives are below it."""
    out = np.empty(p.shape[1])
    for k in range(p.shape[1]):
        neg = np.sort(p[t[:, k] <= 0.5, k])
        if neg.size == 0:
            out[k] = 0.5
            continue
        # the ceil(spec * n)-th smallest negative score; predicting at >= the next float above it keeps
        # at least that many negatives negative
        idx = min(max(math.ceil(spec * neg.size) - 1, 0), neg.size - 1)
        out[k] = np.nextafter(neg[idx], np.inf)
    return np.clip(out, 0.0, 1.0)


def normal_flag_rate_thresholds(
    probs: np.ndarray, targets: np.ndarray, *, max_rate: float = 0.2, tol: float = 1e-4
) -> tuple[list[float], dict[str, float]]:
    """Per-class thresholds at one common specificity, the lowest that flags at most ``max_rate`` of the
    "No Finding" images (no class positive) of the given split.

    Each class's threshold is the ``s``-quantile of its negatives' scores (so every class has
    specificity >= s on this split); ``s`` is found by bisection, since the share of normal images
    with any flag falls as ``s`` rises. Youden's J per class instead flags most normal images once 14
    classes are combined (each class alone is at ~60-70 % specificity), so a flag would say nothing.

    Returns:
        ``(thresholds, {"specificity": s, "normal_flag_rate": achieved rate, "max_rate": max_rate})``.
    """
    p, t = _check(probs, targets)
    if not 0.0 <= max_rate <= 1.0:
        raise ValueError(f"max_rate must be in [0, 1], got {max_rate}")

    def rate(spec: float) -> tuple[float, np.ndarray]:
        thr = _specificity_thresholds(p, t, spec)
        r = normal_flag_rate(p, t, thr)
        return (0.0 if math.isnan(r) else r), thr

    lo, hi = 0.5, 1.0  # rate(hi) == 0: at specificity 1 no negative is flagged, and normals are negatives
    r_lo, thr = rate(lo)
    if r_lo <= max_rate:
        return [float(v) for v in thr], {"specificity": lo, "normal_flag_rate": r_lo, "max_rate": max_rate}
    while hi - lo > tol:
        mid = (lo + hi) / 2
        if rate(mid)[0] <= max_rate:
            hi = mid
        else:
            lo = mid
    r_hi, thr = rate(hi)
    return [float(v) for v in thr], {"specificity": hi, "normal_flag_rate": r_hi, "max_rate": max_rate}


def sensitivity_specificity(
    probs: np.ndarray,
    targets: np.ndarray,
    thresholds: Sequence[float],
    class_names: Sequence[str] = CLASS_NAMES,
) -> dict[str, dict[str, float]]:
    """Sensitivity and specificity of each class at ``p >= threshold``.

    Returns:
        ``name -> {"threshold", "sensitivity", "specificity", "n_pos", "n_neg"}`` (rates NaN when undefined).
    """
    p, t = _check(probs, targets)
    out = {}
    for k, name in enumerate(class_names):
        pred = p[:, k] >= thresholds[k]
        pos = t[:, k] > 0.5
        n_pos, n_neg = int(pos.sum()), int((~pos).sum())
        sens = float((pred & pos).sum() / n_pos) if n_pos else math.nan
        spec = float((~pred & ~pos).sum() / n_neg) if n_neg else math.nan
        out[name] = {
            "threshold": float(thresholds[k]),
            "sensitivity": sens,
            "specificity": spec,
            "n_pos": n_pos,
            "n_neg": n_neg,
        }
    return out


def resample_weights(
    n: int, groups: Sequence[object] | None, rng: np.random.Generator
) -> Callable[[], np.ndarray]:
    """A function drawing the multiplicity of each image in one bootstrap resample: ``(N,)`` float64.

    Without ``groups`` the images are drawn (``rng.integers(0, N, N)``); with ``groups`` (one cluster
    id per image, e.g. the patient) whole clusters are drawn with replacement (``rng.integers(0, G, G)``
    over the G clusters in order of first appearance) and every image of a drawn cluster counts once
    per draw: images of one patient are not independent, so they are resampled together.
    """
    if groups is None:
        return lambda: np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
    if len(groups) != n:
        raise ValueError(f"{len(groups)} group ids for {n} images")
    codes: dict[object, int] = {}
    image_group = np.fromiter((codes.setdefault(g, len(codes)) for g in groups), dtype=np.int64, count=n)
    n_groups = len(codes)

    def draw() -> np.ndarray:
        counts = np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)
        return counts[image_group].astype(np.float64)

    return draw


class _WeightedAUC:
    """AUC of one class under image multiplicities ``w`` (the weighted Mann-Whitney statistic).

    Each class is sorted once; a resample is then O(N) per class instead of a sort. Equals `roc_auc`
    of the resample written out image by image (ties count one half); NaN when it lacks a label value.
    """

    def __init__(self, scores: np.ndarray, labels: np.ndarray) -> None:
        self.order = np.argsort(scores, kind="mergesort")
        sc = scores[self.order]
        self.starts = np.flatnonzero(np.concatenate(([True], sc[1:] != sc[:-1])))
        self.positive = labels[self.order] > 0.5

    def __call__(self, w: np.ndarray) -> float:
        ws = w[self.order]
        pos_w = np.add.reduceat(np.where(self.positive, ws, 0.0), self.starts)
        neg_w = np.add.reduceat(np.where(self.positive, 0.0, ws), self.starts)
        n_pos, n_neg = pos_w.sum(), neg_w.sum()
        if n_pos <= 0 or n_neg <= 0:
            return math.nan
        below = np.cumsum(neg_w) - neg_w  # negatives with a strictly lower score
        return float((pos_w * (below + 0.5 * neg_w)).sum() / (n_pos * n_neg))


def _bootstrap_aucs(
    p: np.ndarray, t: np.ndarray, n_resamples: int, seed: int, groups: Sequence[object] | None = None
) -> np.ndarray:
    """``(n_resamples, K)`` AUCs of one model's resamples (`_bootstrap_many` with a single model)."""
    return _bootstrap_many([p], t, n_resamples, seed, groups)[0]


def _bootstrap_many(
    probs: Sequence[np.ndarray],
    t: np.ndarray,
    n_resamples: int,
    seed: int,
    groups: Sequence[object] | None = None,
) -> list[np.ndarray]:
    """Per model, ``(n_resamples, K)`` AUCs over the same resamples (NaN where a class is undefined).

    Resamples come from `resample_weights` with ``default_rng(seed)``: images, or whole ``groups``.
    """
    n, k = t.shape
    rng = np.random.default_rng(seed)
    draw = resample_weights(n, groups, rng)
    aucs = [[_WeightedAUC(p[:, c], t[:, c]) for c in range(k)] for p in probs]
    boot = [np.full((n_resamples, k), np.nan) for _ in probs]
    for b in range(n_resamples):
        w = draw()
        for m, per_class in enumerate(aucs):
            for c in range(k):
                boot[m][b, c] = per_class[c](w)
    return boot


def _percentile_interval(v: np.ndarray, n_resamples: int, level: float) -> list[float] | None:
    """Percentile interval of the defined values; None when fewer than max(10, n_resamples / 10)."""
    v = v[~np.isnan(v)]
    if v.size < max(10, n_resamples // 10):
        return None
    lo_q, hi_q = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    return [float(np.percentile(v, lo_q)), float(np.percentile(v, hi_q))]


def _row_means(boot: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
        return np.asarray(np.nanmean(boot, axis=1))  # NaN for a resample with no defined class


def _unit(groups: Sequence[object] | None) -> dict[str, object]:
    if groups is None:
        return {"unit": "image"}
    return {"unit": "patient", "n_clusters": len(set(groups))}


def bootstrap_auc_ci(
    probs: np.ndarray,
    targets: np.ndarray,
    class_names: Sequence[str] = CLASS_NAMES,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    groups: Sequence[object] | None = None,
) -> dict[str, object]:
    """Percentile bootstrap confidence intervals of the per-class AUCs and of the mean AUC.

    Images are resampled with replacement (``numpy.random.default_rng(seed)``), or, with ``groups``
    (one patient id per image), whole patients (a cluster bootstrap, `resample_weights`): on NIH's
    test list a patient has 9 images on average, and resampling them as if independent gives too
    narrow intervals. A resample in which a class lacks positives or negatives is skipped for that
    class; the mean of a resample averages the classes defined in it (as the point estimate does).

    Returns:
        ``{"level", "n_resamples", "seed", "unit" ("image" or "patient"), ["n_clusters"],
        "per_class": name -> [lo, hi] or None, "mean_auc": [lo, hi] or None}``.
    """
    p, t = _check(probs, targets)
    boot = _bootstrap_aucs(p, t, n_resamples, seed, groups)
    return {
        "level": level,
        "n_resamples": n_resamples,
        "seed": seed,
        **_unit(groups),
        "per_class": {
            name: _percentile_interval(boot[:, c], n_resamples, level) for c, name in enumerate(class_names)
        },
        "mean_auc": _percentile_interval(_row_means(boot), n_resamples, level),
    }


def paired_bootstrap_auc_difference(
    probs_a: np.ndarray,
    probs_b: np.ndarray,
    targets: np.ndarray,
    class_names: Sequence[str] = CLASS_NAMES,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    groups: Sequence[object] | None = None,
) -> dict[str, object]:
    """AUC of model A minus model B on the same images, with a paired percentile bootstrap interval.

    Both models are scored on each resample (images, or whole ``groups`` as in `bootstrap_auc_ci`); a
    class undefined in a resample is left out of both means of that resample.

    Returns:
        ``{"level", "n_resamples", "seed", "unit", ["n_clusters"], "mean_auc_difference",
        "mean_auc_difference_ci", "p_not_better" (share of resamples with difference <= 0),
        "per_class": name -> {"difference", "ci"}}``.
    """
    pa, t = _check(probs_a, targets)
    pb, _ = _check(probs_b, targets)
    boot_a, boot_b = _bootstrap_many([pa, pb], t, n_resamples, seed, groups)
    point_a = per_class_auc(pa, t, class_names, warn=False)
    point_b = per_class_auc(pb, t, class_names, warn=False)
    diff = boot_a - boot_b
    mean_diff = _row_means(diff)
    defined = mean_diff[~np.isnan(mean_diff)]

    def nan_none(v: float) -> float | None:
        return None if math.isnan(v) else v

    return {
        "level": level,
        "n_resamples": n_resamples,
        "seed": seed,
        **_unit(groups),
        "mean_auc_difference": nan_none(mean_auc(point_a) - mean_auc(point_b)),
        "mean_auc_difference_ci": _percentile_interval(mean_diff, n_resamples, level),
        "p_not_better": float(np.mean(defined <= 0)) if defined.size else None,
        "per_class": {
            name: {
                "difference": nan_none(point_a[name] - point_b[name]),
                "ci": _percentile_interval(diff[:, c], n_resamples, level),
            }
            for c, name in enumerate(class_names)
        },
    }


class AUCMetric:
    """Accumulate ``(probs, targets)`` batches, then aggregate (MONAI ``ROCAUCMetric`` style)."""

    def __init__(self, class_names: Sequence[str] = CLASS_NAMES) -> None:
        self.class_names = tuple(class_names)
        self.reset()

    def reset(self) -> None:
        self._probs: list[np.ndarray] = []
        self._targets: list[np.ndarray] = []

    def update(self, probs: np.ndarray, targets: np.ndarray) -> None:
        """Add a batch: ``(B, K)`` probabilities and 0/1 targets."""
        p, t = _check(probs, targets)
        self._probs.append(p)
        self._targets.append(t)

    def aggregate(self, *, warn: bool = True) -> tuple[dict[str, float], float]:
        """``(per_class_auc, mean_auc)`` over everything added since the last reset."""
        k = len(self.class_names)
        p = np.concatenate(self._probs) if self._probs else np.zeros((0, k))
        t = np.concatenate(self._targets) if self._targets else np.zeros((0, k))
        aucs = per_class_auc(p, t, self.class_names, warn=warn)
        return aucs, mean_auc(aucs)


# --------------------------------------------------------------------------------- the paper's numbers

#: Table 1 (official split, test AUC) by ``(backbone, attention)``: class name (and "mean") -> AUC.
PAPER_TABLE1: dict[tuple[str, str], dict[str, float]] = {
    key: {**dict(zip(CLASS_NAMES, vals[:14], strict=True)), "mean": vals[14]}
    for key, vals in {
        ("resnet50", "att1"):
            (.779, .879, .824, .694, .831, .766, .726, .858, .758, .850, .909, .832, .778, .906, .814),
        ("resnet50", "att2"):
            (.777, .875, .826, .695, .825, .765, .720, .852, .751, .848, .905, .819, .777, .908, .810),
        ("densenet121", "att1"):
            (.781, .883, .831, .697, .830, .764, .725, .866, .758, .853, .911, .826, .780, .918, .816),
        ("densenet121", "att2"):
            (.781, .880, .829, .702, .834, .773, .729, .857, .754, .850, .908, .830, .778, .917, .816),
    }.items()
}  # fmt: skip

_MODES = ("full", "no_category", "no_residual", "no_attention")
#: Table 2 ablation means by ``(backbone, attention)``: mode -> mean AUC.
PAPER_TABLE2: dict[tuple[str, str], dict[str, float]] = {
    ("resnet50", "att1"): dict(zip(_MODES, (0.8136, 0.8114, 0.8069, 0.8034), strict=True)),
    ("resnet50", "att2"): dict(zip(_MODES, (0.8102, 0.8093, 0.8052, 0.8034), strict=True)),
    ("densenet121", "att1"): dict(zip(_MODES, (0.8157, 0.8135, 0.8069, 0.8056), strict=True)),
    ("densenet121", "att2"): dict(zip(_MODES, (0.8157, 0.8136, 0.8073, 0.8056), strict=True)),
}
