"""Writing a pre-resized image cache (`cral_model.data.cache` describes the format): resumable, checked.

`build_cache` decodes and resizes the images in a process pool, writes each row into the memory-mapped
array, and marks it done only after the pixels are flushed, so a run killed at any point resumes with
the rows it had finished and redoes at most the unflushed ones. A file that cannot be read is listed in
``failed.txt`` with its reason and left out of the index; the other images go on.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cral_model.data.cache import (
    CACHE_FORMAT,
    CACHE_VERSION,
    DONE_NAME,
    FAILED_NAME,
    INDEX_NAME,
    MANIFEST_NAME,
    META_NAME,
    PIXELS_NAME,
    SHA_NAME,
    CacheError,
    _open_cache,
    row_sha256,
    to_cache_pixels,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["BuildSummary", "build_cache", "plan_digest"]

_log = logging.getLogger(__name__)
_FLUSH_EVERY = 256


@dataclass(frozen=True)
class BuildSummary:
    """What one `build_cache` call did."""

    root: Path
    n: int
    written: int  # rows written by this call
    reused: int  # rows already done by an earlier, interrupted call
    failed: dict[str, str]  # name -> reason


def plan_digest(names: Sequence[str], size: int) -> str:
    """SHA-256 of the ordered name list and the side: a resumed build must have the same plan."""
    h = hashlib.sha256(f"{size}\n".encode())
    for n in names:
        h.update(n.encode("utf-8") + b"\n")
    return h.hexdigest()


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one decode per core; torch's own threads would oversubscribe


def _prepare_one(job: tuple[int, str, int]) -> tuple[int, np.ndarray | None, str]:
    """Worker: ``(row, path, size)`` -> ``(row, uint8 row or None, error reason)``."""
    from cral_model.data.dataset import load_image

    row, path, size = job
    try:
        return row, to_cache_pixels(load_image(path), size), ""
    except Exception as exc:  # any unreadable file: reported, the others go on
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        return row, None, f"{type(exc).__name__}: {reason}"


def _map(path: Path, shape: tuple[int, ...], dtype: Any) -> np.memmap[Any, Any]:
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if not path.exists() or path.stat().st_size != nbytes:
        with open(path, "wb") as fh:
            fh.truncate(nbytes)  # sparse: the disk fills as rows are written
    return np.memmap(path, dtype=dtype, mode="r+", shape=shape)


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def build_cache(
    names: Sequence[str],
    paths: Sequence[str],
    output: str | os.PathLike[str],
    *,
    size: int = 256,
    workers: int | None = None,
    source: dict[str, Any] | None = None,
    progress: bool = False,
) -> BuildSummary:
    """Write (or finish) the cache of ``paths`` at ``output``.

    Args:
        names: image names (file names, unique), the index keys, in row order.
        paths: the source files, same order.
        output: the cache folder (created).
        size: side S of the stored rows.
        workers: processes (None: all cores; 0: this process).
        source: JSON-able description of the source, kept in ``cache.json``.
        progress: show a tqdm bar.

    Raises:
        CacheError: ``output`` holds a cache of another plan (other images or size), or names repeat.
    """
    from tqdm.auto import tqdm

    if len(names) != len(paths):
        raise ValueError(f"{len(names)} names but {len(paths)} paths")
    if len(set(names)) != len(names):
        seen: set[str] = set()
        dup = next(n for n in names if n in seen or seen.add(n))  # type: ignore[func-returns-value]
        raise CacheError(f"image names must be unique in a cache; {dup!r} occurs more than once")
    if size < 8:
        raise ValueError(f"size must be >= 8, got {size}")
    root = Path(output)
    root.mkdir(parents=True, exist_ok=True)
    n = len(names)
    digest = plan_digest(names, size)
    meta_path = root / META_NAME
    if meta_path.is_file():
        old = json.loads(meta_path.read_text(encoding="utf-8"))
        if old.get("format") != CACHE_FORMAT or old.get("plan_sha256") != digest:
            raise CacheError(
                f"{root} already holds a cache of other images or another size; "
                "choose a new --output folder or delete that one"
            )
    meta: dict[str, Any] = {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "size": size,
        "n": n,
        "dtype": "uint8",
        "layout": f"{PIXELS_NAME}: raw C-order (n, size, size)",
        "pixels": "grey [0, 1] by the input contract, bilinear antialiased resize, round(255 x)",
        "plan_sha256": digest,
        "source": dict(source or {}),
        "complete": False,
    }
    _write_json(meta_path, meta)
    _open_cache.cache_clear()
    pixels = _map(root / PIXELS_NAME, (n, size, size), np.uint8)
    done = _map(root / DONE_NAME, (n,), np.uint8)
    sha = _map(root / SHA_NAME, (n, 32), np.uint8)
    todo = np.flatnonzero(done == 0).tolist()
    reused = n - len(todo)
    failed: dict[str, str] = {}
    pending: list[int] = []

    def flush() -> None:
        pixels.flush()
        sha.flush()
        for r in pending:  # marks only after the pixels and checksums are on disk
            done[r] = 1
        done.flush()
        pending.clear()

    jobs = [(i, paths[i], size) for i in todo]
    n_workers = (os.cpu_count() or 1) if workers is None else workers
    bar = tqdm(total=n, initial=reused, desc="cral-prepare", unit="img", disable=not progress)
    try:
        if n_workers == 0 or len(jobs) <= 1:
            results: Any = map(_prepare_one, jobs)  # this process: torch's thread count left alone
            pool = None
        else:
            import multiprocessing as mp

            pool = mp.get_context("spawn").Pool(min(n_workers, len(jobs)), initializer=_init_worker)
            results = pool.imap_unordered(_prepare_one, jobs, chunksize=4)
        try:
            for row, arr, reason in results:
                if arr is None:
                    failed[names[row]] = reason
                    _log.warning("cannot read %s: %s", names[row], reason)
                else:
                    pixels[row] = arr
                    sha[row] = np.frombuffer(row_sha256(arr), dtype=np.uint8)
                    pending.append(row)
                    if len(pending) >= _FLUSH_EVERY:
                        flush()
                bar.update(1)
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
            flush()
    finally:
        bar.close()
    written = len(todo) - len(failed)
    ok = np.flatnonzero(done == 1).tolist()
    with open(root / (INDEX_NAME + ".tmp"), "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "row", "sha256"])
        for r in ok:
            w.writerow([names[r], r, bytes(sha[r]).hex()])
    os.replace(root / (INDEX_NAME + ".tmp"), root / INDEX_NAME)
    with open(root / (MANIFEST_NAME + ".tmp"), "w", encoding="utf-8") as fh:
        fh.writelines(f"{bytes(sha[r]).hex()}  {names[r]}\n" for r in ok)
    os.replace(root / (MANIFEST_NAME + ".tmp"), root / MANIFEST_NAME)
    if failed:
        (root / FAILED_NAME).write_text(
            "".join(f"{name}\t{why}\n" for name, why in sorted(failed.items())), encoding="utf-8"
        )
    elif (root / FAILED_NAME).exists():
        (root / FAILED_NAME).unlink()
    meta.update({"complete": True, "n_written": len(ok), "n_failed": len(failed)})
    _write_json(meta_path, meta)
    _open_cache.cache_clear()
    return BuildSummary(root=root, n=n, written=written, reused=reused, failed=failed)
