"""The 14 ChestX-ray14 findings in one canonical order (the paper's Table 1 order)."""

from __future__ import annotations

__all__ = ["CLASS_NAMES", "NUM_CLASSES"]

#: The findings, in the order of Guan & Huang's Table 1. "No Finding" is the all-zero vector, not a class.
CLASS_NAMES: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
NUM_CLASSES: int = len(CLASS_NAMES)
