"""A tiny synthetic dataset in the NIH ChestX-ray14 layout, for tests, smoke runs and trying the CLI.

Each image is grey noise plus, for every finding it has, a bright square in a fixed cell of a 4 x 4
grid (cell k for class k), so a network can learn the labels from a few hundred steps.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np

from cral_model.labels import CLASS_NAMES

__all__ = ["make_synthetic_nih"]


def make_synthetic_nih(
    root: str | Path,
    *,
    n_patients: int = 12,
    images_per_patient: int = 2,
    test_patients: int = 4,
    size: int = 32,
    seed: int = 0,
    gzip_table: bool = True,
    table_name: str = "Data_Entry_2017_v2020.csv",
    nested: bool = True,
    p_positive: float = 0.25,
) -> dict[str, list[str]]:
    """Write a small NIH-style dataset below ``root``.

    Layout: ``root/<table_name>[.gz]``, ``root/train_val_list.txt``, ``root/test_list.txt`` and the
    PNGs in ``root/images_001/images/`` and ``root/images_002/images/`` (``nested``) or ``root/images/``.
    The first ``test_patients`` patients form the test list, the others train_val.

    Args:
        root: destination folder (created).
        n_patients: total number of patients.
        images_per_patient: images per patient (follow-ups).
        test_patients: patients in the test list.
        size: image side in pixels (8-bit grey PNG).
        seed: NumPy seed.
        gzip_table: write the label table gzipped.
        table_name: ``Data_Entry_2017.csv`` or ``Data_Entry_2017_v2020.csv``.
        nested: spread images over two ``images_00N/images`` folders as the NIH download does.
        p_positive: probability of each finding per image.

    Returns:
        ``{"train_val": names, "test": names}``.
    """
    from PIL import Image

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    k = len(CLASS_NAMES)
    cell = size // 4
    rows: list[list[object]] = []
    split: dict[str, list[str]] = {"train_val": [], "test": []}
    n_images = 0
    for pid in range(1, n_patients + 1):
        for follow in range(images_per_patient):
            name = f"{pid:08d}_{follow:03d}.png"
            labels = rng.random(k) < p_positive
            img = rng.normal(60, 15, (size, size))
            for c in np.flatnonzero(labels):
                r, q = divmod(int(c), 4)
                img[r * cell + 1 : (r + 1) * cell - 1, q * cell + 1 : (q + 1) * cell - 1] += 150
            img8 = np.clip(img, 0, 255).astype(np.uint8)
            folder = root / f"images_{1 + n_images % 2:03d}" / "images" if nested else root / "images"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img8).save(folder / name)
            findings = "|".join(CLASS_NAMES[c] for c in np.flatnonzero(labels)) or "No Finding"
            rows.append(
                [name, findings, follow, pid, 40 + pid % 30, "MF"[pid % 2], "PA", size, size, 0.143, 0.143]
            )
            split["test" if pid <= test_patients else "train_val"].append(name)
            n_images += 1
    header = [
        "Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
        "View Position", "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]",
    ]  # fmt: skip
    table = root / (table_name + (".gz" if gzip_table else ""))
    with (
        gzip.open(table, "wt", encoding="utf-8", newline="")
        if gzip_table
        else open(table, "w", encoding="utf-8", newline="")
    ) as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    for key, fname in (("train_val", "train_val_list.txt"), ("test", "test_list.txt")):
        (root / fname).write_text("\n".join(split[key]) + "\n", encoding="utf-8")
    return split
