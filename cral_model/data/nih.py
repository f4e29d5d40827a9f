"""ChestX-ray14 as NIH ships it, and a plain CSV format for a user's own data.

NIH layout (any nesting below the data root; everything is found by file name)::

    DATA_ROOT/
      Data_Entry_2017.csv            (or Data_Entry_2017_v2020.csv, either optionally .gz)
      train_val_list.txt             official patient-wise split, 86,524 names
      test_list.txt                  25,596 names
      images_001/images/*.png ...    the 112,120 images (or a single images/ folder)

The label files may live in a separate folder (``labels_dir``), e.g. ``../shared/data/chestxray14-labels``
next to ``../shared/data/chestxray14-nih1000-64px``. Label files are looked for in ``labels_dir`` first
(when given), then in ``data_root``, each searched recursively.

Plain CSV format (own data): one row per image with a path column (``path``, ``image`` or
``Image Index``; relative paths are resolved against the CSV's folder, then against the data root, then
by file name anywhere below the data root) and either one 0/1 column per class in `CLASS_NAMES` or a
``Finding Labels`` column with ``|``-separated findings (``No Finding`` = none). An optional
``Patient ID`` column makes the validation split patient-disjoint; without it every image is its own
patient.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cral_model.labels import CLASS_NAMES

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = [
    "DATA_ENTRY_NAMES",
    "IMAGE_SUFFIXES",
    "LabeledImages",
    "MissingImagesError",
    "data_roots",
    "find_label_file",
    "index_image_roots",
    "index_images",
    "load_csv_dataset",
    "load_nih_split",
    "parse_finding_labels",
    "read_data_entry",
    "read_name_list",
]

_log = logging.getLogger(__name__)

#: Accepted names of the NIH label table, in order of preference.
DATA_ENTRY_NAMES: tuple[str, ...] = (
    "Data_Entry_2017.csv",
    "Data_Entry_2017.csv.gz",
    "Data_Entry_2017_v2020.csv",
    "Data_Entry_2017_v2020.csv.gz",
)
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_SPLIT_FILES = {"train_val": "train_val_list.txt", "test": "test_list.txt"}
_CLASS_INDEX = {name.lower(): i for i, name in enumerate(CLASS_NAMES)}
# Spellings seen in other releases of the labels.
_CLASS_INDEX.update({"pleural thickening": CLASS_NAMES.index("Pleural_Thickening")})


class MissingImagesError(FileNotFoundError):
    """Some images named by a split are not on disk (a partial copy) and missing images were not allowed."""


@dataclass(frozen=True)
class LabeledImages:
    """A list of labelled images.

    Attributes:
        names: image identifiers (NIH: the file name, e.g. ``00000001_000.png``), length N.
        paths: absolute file paths, length N.
        labels: ``(N, K)`` float32 0/1 matrix in `CLASS_NAMES` order.
        patients: patient identifier per image, length N (used for patient-disjoint splits).
        n_missing: how many images the source listed that were not found (and were dropped).
        missing_examples: up to 5 of the missing names, for messages.
    """

    names: tuple[str, ...]
    paths: tuple[str, ...]
    labels: np.ndarray
    patients: tuple[str, ...]
    n_missing: int = 0
    missing_examples: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.names)
        if len(self.paths) != n or len(self.patients) != n or self.labels.shape != (n, len(CLASS_NAMES)):
            raise ValueError(
                f"inconsistent lengths: {n} names, {len(self.paths)} paths, {len(self.patients)} patients, "
                f"labels {self.labels.shape}"
            )

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, indices: Sequence[int] | np.ndarray) -> LabeledImages:
        """The images at ``indices`` (in that order); missing counts are kept."""
        idx = np.asarray(indices, dtype=np.int64)
        return LabeledImages(
            names=tuple(self.names[i] for i in idx),
            paths=tuple(self.paths[i] for i in idx),
            labels=self.labels[idx].copy(),
            patients=tuple(self.patients[i] for i in idx),
            n_missing=self.n_missing,
            missing_examples=self.missing_examples,
        )

    def positives(self) -> dict[str, int]:
        """Number of positive images per class."""
        counts = self.labels.sum(axis=0).astype(int)
        return {name: int(c) for name, c in zip(CLASS_NAMES, counts, strict=True)}


# --------------------------------------------------------------------------------------------- parsing


def parse_finding_labels(text: str) -> np.ndarray:
    """``"Cardiomegaly|Effusion"`` -> float32 ``(K,)`` 0/1 vector in `CLASS_NAMES` order.

    ``"No Finding"`` and the empty string give all zeros.

    Raises:
        ValueError: on a finding name that is not one of `CLASS_NAMES`.
    """
    vec = np.zeros(len(CLASS_NAMES), dtype=np.float32)
    for part in text.split("|"):
        token = part.strip()
        if not token or token.lower() == "no finding":
            continue
        try:
            vec[_CLASS_INDEX[token.lower()]] = 1.0
        except KeyError:
            raise ValueError(
                f"unknown finding {token!r} in {text!r}; expected one of {CLASS_NAMES}"
            ) from None
    return vec


def _open_text(path: Path) -> io.TextIOBase:
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def read_data_entry(path: str | os.PathLike[str]) -> dict[str, tuple[np.ndarray, str]]:
    """Read ``Data_Entry_2017*.csv[.gz]``.

    Returns:
        ``image name -> (labels (K,) float32, patient id as a string)``.
    """
    path = Path(path)
    out: dict[str, tuple[np.ndarray, str]] = {}
    with _open_text(path) as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        for col in ("Image Index", "Finding Labels", "Patient ID"):
            if col not in fields:
                raise ValueError(f"{path}: column {col!r} not found (columns: {fields})")
        for row in reader:
            pid = row["Patient ID"].strip()
            # Strip leading zeros so "00000001" and "1" name the same patient.
            pid = pid.lstrip("0") or "0"
            out[row["Image Index"].strip()] = (parse_finding_labels(row["Finding Labels"]), pid)
    return out


def read_name_list(path: str | os.PathLike[str]) -> list[str]:
    """One image name per line (``train_val_list.txt``, ``test_list.txt``); blank lines skipped."""
    with open(path, encoding="utf-8") as fh:
        return [line.strip() for line in fh if line.strip()]


# --------------------------------------------------------------------------------------------- finding files


def _walk_files(root: Path) -> Iterable[tuple[str, str]]:
    """Yield ``(name, path)`` of every file below ``root`` (sorted traversal; symlinked dirs once)."""
    stack = [str(root)]
    seen: set[str] = set()
    while stack:
        top = stack.pop()
        real = os.path.realpath(top)
        if real in seen:
            continue
        seen.add(real)
        try:
            with os.scandir(top) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            _log.warning("cannot list %s: %s", top, exc)
            continue
        subdirs = []
        for entry in entries:
            try:
                if entry.is_dir():
                    if not entry.name.startswith("."):
                        subdirs.append(entry.path)
                elif entry.is_file():
                    yield entry.name, entry.path
            except OSError:
                continue
        stack.extend(reversed(subdirs))


def index_images(root: str | os.PathLike[str]) -> dict[str, str]:
    """Map image file name -> absolute path for every image file below ``root`` (walked once).

    When the same name occurs twice, the first in sorted depth-first order wins and the duplicates
    are counted in a log message. A pre-resized cache folder (``cral-prepare``, `cral_model.data.cache`)
    gives its images as cache references, which `cral_model.data.dataset.load_image` reads.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data root {root} is not a folder")
    from cral_model.data.cache import is_cache, open_cache

    if is_cache(root):
        return open_cache(root).refs()
    index: dict[str, str] = {}
    dups = 0
    for name, path in _walk_files(root):
        if not name.lower().endswith(IMAGE_SUFFIXES):
            continue
        if name in index:
            dups += 1
            continue
        index[name] = os.path.abspath(path)
    if dups:
        _log.warning("%d image names occur more than once below %s; using the first of each", dups, root)
    return index


def find_label_file(names: Sequence[str], search_dirs: Sequence[str | os.PathLike[str] | None]) -> Path:
    """First file called one of ``names`` (in that preference) in ``search_dirs`` or below them.

    Raises:
        FileNotFoundError: when none exists, naming what was looked for and where.
    """
    dirs = [Path(d) for d in search_dirs if d is not None]
    for d in dirs:  # direct children first: cheap and the usual layout
        for name in names:
            if (d / name).is_file():
                return d / name
    wanted = set(names)
    for d in dirs:
        if not d.is_dir():
            continue
        found = {name: Path(path) for name, path in _walk_files(d) if name in wanted}
        for name in names:
            if name in found:
                return found[name]
    raise FileNotFoundError(
        f"none of {list(names)} found in or below {[str(d) for d in dirs]}; "
        "pass --labels-dir to point at the folder holding the NIH label files"
    )


def _resolve_present(
    names: Sequence[str],
    index: dict[str, str],
    *,
    what: str,
    root: Path | Sequence[Path],
    allow_missing: bool,
) -> tuple[list[int], list[str], list[str]]:
    present, paths, missing = [], [], []
    for i, name in enumerate(names):
        p = index.get(name)
        if p is None:
            missing.append(name)
        else:
            present.append(i)
            paths.append(p)
    if not isinstance(root, Path):
        root = " and ".join(str(r) for r in root)  # type: ignore[assignment]
    if missing:
        msg = (
            f"{len(missing)} of {len(names)} images of {what} are missing below {root} "
            f"(e.g. {', '.join(missing[:3])})"
        )
        if not allow_missing:
            raise MissingImagesError(
                msg + f". This looks like a partial copy; pass --allow-missing to use the {len(present)} "
                "images that are present"
            )
        _log.warning("%s; using the %d present (--allow-missing)", msg, len(present))
    if not present:
        raise MissingImagesError(f"none of the {len(names)} images of {what} was found below {root}")
    return present, paths, missing


def data_roots(data_root: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> tuple[Path, ...]:
    """One image folder or several (a sequence) -> a tuple of paths."""
    if isinstance(data_root, (str, os.PathLike)):
        return (Path(data_root),)
    roots = tuple(Path(r) for r in data_root)
    if not roots:
        raise ValueError("no data root given")
    return roots


def index_image_roots(roots: Sequence[str | os.PathLike[str]]) -> dict[str, str]:
    """`index_images` of several folders merged; a name found in an earlier folder wins."""
    index: dict[str, str] = {}
    for root in roots:
        for name, path in index_images(root).items():
            index.setdefault(name, path)
    return index


def load_nih_split(
    data_root: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    split: str,
    *,
    labels_dir: str | os.PathLike[str] | None = None,
    allow_missing: bool = False,
    image_index: dict[str, str] | None = None,
) -> LabeledImages:
    """Images and labels of an official ChestX-ray14 split.

    Args:
        data_root: folder with the images anywhere below it (and possibly the label files), or a
            sequence of such folders (e.g. the 64 px and the 512 px sets): their images are pooled.
        split: ``"train_val"`` or ``"test"``.
        labels_dir: folder holding ``Data_Entry_2017*.csv[.gz]`` and the two list files, if not in data_root.
        allow_missing: use only the images present instead of refusing a partial copy.
        image_index: a precomputed `index_images` of ``data_root`` (saves walking the tree twice).

    Raises:
        MissingImagesError: images are missing and ``allow_missing`` is False, or none is present.
        FileNotFoundError: the label table or the list file cannot be found.
    """
    if split not in _SPLIT_FILES:
        raise ValueError(f"split must be one of {sorted(_SPLIT_FILES)}, got {split!r}")
    roots = data_roots(data_root)
    root = roots[0]
    search = [labels_dir, *roots]
    entry_path = find_label_file(DATA_ENTRY_NAMES, search)
    list_path = find_label_file([_SPLIT_FILES[split]], search)
    entries = read_data_entry(entry_path)
    names = read_name_list(list_path)
    unknown = [n for n in names if n not in entries]
    if unknown:
        raise ValueError(f"{len(unknown)} names in {list_path} are not in {entry_path} (e.g. {unknown[:3]})")
    index = image_index if image_index is not None else index_image_roots(roots)
    present, paths, missing = _resolve_present(
        names,
        index,
        what=f"the {split} list",
        root=root if len(roots) == 1 else roots,
        allow_missing=allow_missing,
    )
    kept = [names[i] for i in present]
    labels = np.stack([entries[n][0] for n in kept]).astype(np.float32)
    patients = tuple(entries[n][1] for n in kept)
    _log.info(
        "ChestX-ray14 %s: %d images (%d missing) from %s, labels from %s",
        split,
        len(kept),
        len(missing),
        ", ".join(str(r) for r in roots),
        entry_path,
    )
    return LabeledImages(
        names=tuple(kept),
        paths=tuple(paths),
        labels=labels,
        patients=patients,
        n_missing=len(missing),
        missing_examples=tuple(missing[:5]),
    )


def load_csv_dataset(
    csv_path: str | os.PathLike[str],
    *,
    data_root: str | os.PathLike[str] | None = None,
    allow_missing: bool = False,
) -> LabeledImages:
    """Read the plain CSV format described in the module docstring.

    Raises:
        ValueError: when neither all class columns nor ``Finding Labels`` is present, or no path column.
        MissingImagesError: as in `load_nih_split`.
    """
    csv_path = Path(csv_path)
    with _open_text(csv_path) as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    path_col = next((c for c in ("path", "image", "Image Index", "filename") if c in fields), None)
    if path_col is None:
        raise ValueError(
            f"{csv_path}: no path column (one of path, image, Image Index, filename) in {fields}"
        )
    has_classes = all(c in fields for c in CLASS_NAMES)
    if not has_classes and "Finding Labels" not in fields:
        missing_cols = [c for c in CLASS_NAMES if c not in fields]
        raise ValueError(
            f"{csv_path}: needs a 'Finding Labels' column or all class columns (missing {missing_cols})"
        )
    patient_col = next((c for c in ("Patient ID", "patient", "patient_id") if c in fields), None)

    index: dict[str, str] | None = None
    names, label_rows, patients, resolved = [], [], [], []
    for i, row in enumerate(rows):
        raw = row[path_col].strip()
        cand = Path(raw)
        path: str | None = None
        candidates = [cand] if cand.is_absolute() else [csv_path.parent / cand]
        if data_root is not None and not cand.is_absolute():
            candidates.append(Path(data_root) / cand)
        for c in candidates:
            if c.is_file():
                path = os.path.abspath(c)
                break
        if path is None and data_root is not None:
            if index is None:
                index = index_images(data_root)
            path = index.get(cand.name)
        if has_classes:
            try:
                vec = np.array([float(row[c]) for c in CLASS_NAMES], dtype=np.float32)
            except ValueError as exc:
                raise ValueError(f"{csv_path} row {i + 2}: {exc}") from None
            if not np.isin(vec, (0.0, 1.0)).all():
                raise ValueError(f"{csv_path} row {i + 2}: class columns must be 0 or 1, got {vec.tolist()}")
        else:
            vec = parse_finding_labels(row["Finding Labels"])
        names.append(raw)
        label_rows.append(vec)
        patients.append(row[patient_col].strip() if patient_col else f"row{i}")
        resolved.append(path)
    index_for_check = {n: p for n, p in zip(names, resolved, strict=True) if p is not None}
    present, paths, missing = _resolve_present(
        names,
        index_for_check,
        what=str(csv_path),
        root=Path(data_root) if data_root else csv_path.parent,
        allow_missing=allow_missing,
    )
    return LabeledImages(
        names=tuple(names[i] for i in present),
        paths=tuple(paths),
        labels=np.stack([label_rows[i] for i in present]).astype(np.float32),
        patients=tuple(patients[i] for i in present),
        n_missing=len(missing),
        missing_examples=tuple(missing[:5]),
    )
