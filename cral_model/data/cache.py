"""A pre-resized image cache: one memory-mapped ``(N, S, S)`` uint8 array, an index and a checksum manifest.

Why this format (measured on the build machine, see ``benchmarks/input_pipeline.py`` and the README):
reading an image back from the array is one page-cache copy of ``S * S`` bytes (no decoding, no file
open, random access by row), which makes a training item about as cheap as the transform alone; tar
shards of 256 px PNGs (WebDataset style) still pay a PNG decode per item and force sequential,
shard-shuffled reading. The array has no dependency beyond NumPy and works with the seeded
``(seed, epoch, index)`` sampler of `cral_model.data.dataset` unchanged.

Layout of a cache folder::

    CACHE/
      cache.json        {"format": "cral-image-cache", "version": 1, "size": S, "n": N, "complete": bool, ...}
      pixels.u8         raw (N, S, S) uint8, row i = image i of the plan
      done.u8           (N,) 1 = row i is written (resume skips those); pixels are flushed before marks
      sha256.u8         (N, 32) SHA-256 of each written row
      index.csv         name, row, source height/width, sha256 (the images written, written at the end)
      manifest.sha256   "<sha256>  <name>" per image (`verify_cache` checks the array against it)
      failed.txt        images that could not be read, with the reason (not in the index)
      Data_Entry_2017*.csv[.gz], train_val_list.txt, test_list.txt, or the user's CSV (copied)

A row is the image as `to_cache_pixels` makes it: grey [0, 1] by the input contract
(`cral_model.preprocessing.to_unit_float`), resized to ``S x S`` with the same bilinear, antialiased
resize as the training and inference pipeline (`cral_model.preprocessing`), then ``round(255 x)``.
So an item read from the cache equals, bit for bit, the item made from the source file through the same
first step (`load_source_pixels` + `to_cache_pixels`); against a pipeline without that step (float all
the way), the difference is the 8-bit rounding at ``S``, at most 0.5 / 255 before normalisation.

`index_images` of `cral_model.data.nih` returns cache references for a cache folder, so
``cral-train --data-root CACHE`` and ``--train-csv CACHE/own.csv --data-root CACHE`` read it without
any other change, and `cral_model.data.dataset.load_image` reads a reference as a uint8 row.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "CACHE_FORMAT",
    "CacheError",
    "ImageCache",
    "cache_ref",
    "cache_resolution_warning",
    "is_cache",
    "open_cache",
    "parse_cache_ref",
    "read_cache_ref",
    "to_cache_pixels",
    "verify_cache",
]

CACHE_FORMAT = "cral-image-cache"
CACHE_VERSION = 1
META_NAME = "cache.json"
PIXELS_NAME = "pixels.u8"
DONE_NAME = "done.u8"
SHA_NAME = "sha256.u8"
INDEX_NAME = "index.csv"
MANIFEST_NAME = "manifest.sha256"
FAILED_NAME = "failed.txt"
_REF = re.compile(r"^(?P<root>.*)[/\\]" + re.escape(PIXELS_NAME) + r"@(?P<row>\d+)$")


class CacheError(ValueError):
    """A cache folder that cannot be read: unfinished, of another format or version, or damaged."""


def is_cache(root: str | os.PathLike[str]) -> bool:
    """Whether ``root`` is a cache folder (has ``cache.json``)."""
    return (Path(root) / META_NAME).is_file()


def cache_ref(root: str | os.PathLike[str], row: int) -> str:
    """The path-like reference of one row: ``ROOT/pixels.u8@ROW`` (what `LabeledImages.paths` holds)."""
    return f"{os.path.abspath(root)}{os.sep}{PIXELS_NAME}@{int(row)}"


def parse_cache_ref(path: str) -> tuple[str, int] | None:
    """``(cache root, row)`` of a reference made by `cache_ref`, else None (an ordinary file path)."""
    m = _REF.match(path)
    if m is None or not os.path.isfile(os.path.join(m.group("root"), PIXELS_NAME)):
        return None
    return m.group("root"), int(m.group("row"))


def to_cache_pixels(image: np.ndarray, size: int) -> np.ndarray:
    """An image -> the cache's ``(size, size)`` uint8 row (pure; the input is not modified).

    Grey [0, 1] by the input contract, bilinear antialiased resize to ``size x size`` (the function the
    training and inference pipelines use), then ``round(255 x)``.
    """
    import torch

    from cral_model.preprocessing import _resize, to_unit_float

    x = torch.from_numpy(np.ascontiguousarray(to_unit_float(image)))[None, None]
    with torch.no_grad():
        x = _resize(x, size)[0, 0]
    return np.asarray(torch.round(x.clamp(0.0, 1.0) * 255.0).to(torch.uint8).numpy())


def row_sha256(row: np.ndarray) -> bytes:
    """SHA-256 of one row's bytes (C order)."""
    return hashlib.sha256(np.ascontiguousarray(row, dtype=np.uint8).tobytes()).digest()


@dataclass(frozen=True)
class ImageCache:
    """An opened, complete cache.

    Attributes:
        root: the cache folder.
        size: side S of every row.
        names: image name per index row (the rows written; failed images are absent).
        rows: row of the array per name, same order as ``names``.
        pixels: the read-only ``(N, S, S)`` uint8 memory map.
        meta: the parsed ``cache.json``.
    """

    root: Path
    size: int
    names: tuple[str, ...]
    rows: tuple[int, ...]
    pixels: np.ndarray
    meta: dict[str, object]

    def refs(self) -> dict[str, str]:
        """``name -> cache reference`` of every image (what `index_images` returns for a cache)."""
        return {n: cache_ref(self.root, r) for n, r in zip(self.names, self.rows, strict=True)}

    def read(self, row: int) -> np.ndarray:
        """Row ``row`` as a fresh ``(S, S)`` uint8 array (a copy: callers may not write to the map)."""
        return np.array(self.pixels[row])


def _read_meta(root: Path) -> dict[str, object]:
    try:
        meta = json.loads((root / META_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CacheError(f"{root / META_NAME} cannot be read: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
        raise CacheError(f"{root} is not a {CACHE_FORMAT} folder")
    if meta.get("version") != CACHE_VERSION:
        raise CacheError(f"{root}: unsupported cache version {meta.get('version')!r}")
    return meta


def open_cache(root: str | os.PathLike[str]) -> ImageCache:
    """Open a complete cache folder (cached per process: DataLoader workers open it once each).

    Raises:
        CacheError: not a cache, an unfinished one (run ``cral-prepare`` again to finish it), or an
            array whose size does not match ``cache.json``.
    """
    return _open_cache(os.path.abspath(root))


@functools.lru_cache(maxsize=8)
def _open_cache(root_s: str) -> ImageCache:
    root = Path(root_s)
    meta = _read_meta(root)
    if not meta.get("complete"):
        raise CacheError(
            f"{root} is an unfinished cache (interrupted cral-prepare); run the same cral-prepare "
            "command again to finish it"
        )
    size, n = int(meta["size"]), int(meta["n"])  # type: ignore[call-overload]
    expected = n * size * size
    try:
        actual = (root / PIXELS_NAME).stat().st_size
    except OSError as exc:
        raise CacheError(f"{root / PIXELS_NAME} cannot be read: {exc}") from exc
    if actual != expected:
        raise CacheError(f"{root / PIXELS_NAME} has {actual} bytes, cache.json says {n} x {size} x {size}")
    pixels = np.memmap(root / PIXELS_NAME, dtype=np.uint8, mode="r", shape=(n, size, size))
    names, rows = [], []
    with open(root / INDEX_NAME, encoding="utf-8", newline="") as fh:
        for rec in csv.DictReader(fh):
            names.append(rec["name"])
            rows.append(int(rec["row"]))
    return ImageCache(root, size, tuple(names), tuple(rows), pixels, meta)


def read_cache_ref(path: str) -> np.ndarray | None:
    """The uint8 row a cache reference points to; None when ``path`` is not a reference."""
    parsed = parse_cache_ref(path)
    if parsed is None:
        return None
    cache = open_cache(parsed[0])
    return cache.read(parsed[1])


def verify_cache(root: str | os.PathLike[str], names: Sequence[str] | None = None) -> list[str]:
    """Recompute each row's SHA-256 and compare it with ``manifest.sha256``.

    Args:
        root: the cache folder.
        names: check only these images (default: all).

    Returns:
        The names whose pixels do not match the manifest (empty: the cache is intact).
    """
    cache = open_cache(root)
    manifest: dict[str, str] = {}
    with open(Path(root) / MANIFEST_NAME, encoding="utf-8") as fh:
        for line in fh:
            digest, _, name = line.rstrip("\n").partition("  ")
            manifest[name] = digest
    wanted = set(names) if names is not None else None
    bad = []
    for name, row in zip(cache.names, cache.rows, strict=True):
        if wanted is not None and name not in wanted:
            continue
        if row_sha256(cache.pixels[row]).hex() != manifest.get(name):
            bad.append(name)
    return bad


def cache_resolution_warning(roots: Sequence[str | os.PathLike[str]], resize: int) -> str | None:
    """A message when a cache among ``roots`` holds images smaller than the pipeline's ``resize`` side
    (they would be upsampled: not the pixels of the original files resized on the fly), else None."""
    for root in roots:
        if is_cache(root):
            size = int(_read_meta(Path(root))["size"])  # type: ignore[call-overload]
            if size < resize:
                return (
                    f"the cache {root} holds {size} px images but the pipeline resizes to {resize} px: "
                    f"they are upsampled; prepare a cache with --size {resize} or more"
                )
    return None
