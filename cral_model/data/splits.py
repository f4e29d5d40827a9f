"""Seeded, patient-disjoint train/validation split."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["patient_split"]


def patient_split(patients: Sequence[str], val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split image indices into train and validation so that no patient is in both.

    The unique patient ids are sorted, shuffled with ``numpy.random.default_rng(seed)`` and the first
    ``round(val_fraction * n_patients)`` of them (at least one when ``val_fraction > 0`` and there are
    two or more patients) go to validation. The split depends only on the set of patient ids given, the
    fraction and the seed, never on the order of the images.

    Args:
        patients: patient id per image, length N.
        val_fraction: fraction of *patients* in validation, in [0, 1).
        seed: split seed.

    Returns:
        ``(train_indices, val_indices)``, each sorted int64.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    pats = np.asarray([str(p) for p in patients])
    unique = np.unique(pats)  # sorted
    n_val = round(val_fraction * len(unique))
    if val_fraction > 0 and n_val == 0 and len(unique) >= 2:
        n_val = 1
    rng = np.random.default_rng(seed)
    val_patients = unique[rng.permutation(len(unique))[:n_val]]
    is_val = np.isin(pats, val_patients)
    return np.flatnonzero(~is_val).astype(np.int64), np.flatnonzero(is_val).astype(np.int64)
