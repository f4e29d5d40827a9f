"""``cral-prepare``: one pass over the NIH download (or a CSV) into a pre-resized 8-bit image cache.

Decoding a 1024 px NIH PNG costs most of a training item's time; the cache stores every image once,
resized to ``--size`` (default 256, the paper's resize before the 224 crop), in a memory-mapped uint8
array with an index and a SHA-256 manifest (`cral_model.data.cache`). Training then reads it like a data
root::

    cral-prepare --data-root /data/ChestX-ray14 --output /data/cxr14-256 --size 256
    cral-train --paper --data-root /data/cxr14-256 --output runs/r50_att1

The NIH label files (``Data_Entry_2017*.csv[.gz]``, both lists) are copied into the cache; a CSV given
with ``--csv`` is copied with its path column reduced to file names (the cache's keys). Interrupted? Run
the same command again: finished rows are kept. ``--verify`` recomputes every row's checksum.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["get_parser", "main", "prepare"]

_log = logging.getLogger("cral_model.cli.prepare")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cral-prepare",
        description="Resize the training images once into a memory-mapped 8-bit cache that cral-train reads "
        "with --data-root CACHE.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data-root", nargs="+", help="NIH ChestX-ray14 root(s): images anywhere below")
    p.add_argument(
        "--labels-dir", help="folder with the NIH label files (default: searched below --data-root)"
    )
    p.add_argument(
        "--csv", help="own data: a plain-format CSV (cral_model.data.nih) instead of the NIH lists"
    )
    p.add_argument("--output", required=True, help="cache folder (created; an unfinished one is resumed)")
    p.add_argument("--size", type=int, default=256, help="side of the stored square images")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="decoding processes")
    p.add_argument(
        "--allow-missing",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="cache the images present when a list names images that are not on disk",
    )
    p.add_argument("--verify", action="store_true", help="only check an existing cache against its manifest")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    return p


def _nih_images(args: argparse.Namespace) -> tuple[list[str], list[str], list[Path], dict[str, Any]]:
    from cral_model.data import MissingImagesError, load_nih_split
    from cral_model.data.nih import DATA_ENTRY_NAMES, data_roots, find_label_file, index_image_roots

    roots = data_roots(args.data_root)
    index = index_image_roots(roots)
    names: list[str] = []
    paths: list[str] = []
    seen: set[str] = set()
    counts: dict[str, int] = {}
    for split in ("train_val", "test"):
        try:
            imgs = load_nih_split(
                roots, split, labels_dir=args.labels_dir, allow_missing=args.allow_missing, image_index=index
            )
        except MissingImagesError as exc:
            if args.allow_missing and "none of the" in str(exc):
                _log.warning("%s; that split is not cached", exc)
                counts[split] = 0
                continue
            raise
        counts[split] = len(imgs)
        for n, p in zip(imgs.names, imgs.paths, strict=True):
            if n not in seen:
                seen.add(n)
                names.append(n)
                paths.append(p)
    search = [args.labels_dir, *roots]
    files = [
        find_label_file(DATA_ENTRY_NAMES, search),
        find_label_file(["train_val_list.txt"], search),
        find_label_file(["test_list.txt"], search),
    ]
    source = {"format": "nih", "data_root": [r.resolve().name for r in roots], "images_per_split": counts}
    return names, paths, files, source


def _csv_images(args: argparse.Namespace, out: Path) -> tuple[list[str], list[str], dict[str, Any]]:
    """The CSV's images; writes the CSV into the cache with its path column reduced to file names."""
    from cral_model.data import load_csv_dataset
    from cral_model.data.nih import _open_text

    root = args.data_root[0] if args.data_root else None
    imgs = load_csv_dataset(args.csv, data_root=root, allow_missing=args.allow_missing)
    names = [Path(p).name for p in imgs.paths]
    by_raw = dict(zip(imgs.names, names, strict=True))
    src = Path(args.csv)
    with _open_text(src) as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    path_col = next(c for c in ("path", "image", "Image Index", "filename") if c in fields)
    out.mkdir(parents=True, exist_ok=True)
    target = out / (src.name[: -len(".gz")] if src.name.endswith(".gz") else src.name)
    with open(target, "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for row in rows:
            raw = row[path_col].strip()
            if raw in by_raw:  # images not found (--allow-missing) stay out of the copy
                w.writerow({**row, path_col: by_raw[raw]})
    return names, list(imgs.paths), {"format": "csv", "csv": src.name}


def prepare(args: argparse.Namespace) -> int:
    """Build (or finish) the cache named by ``args``; the exit status."""
    from cral_model.data.cache_build import build_cache

    out = Path(args.output)
    files: list[Path] = []
    if args.csv:
        names, paths, source = _csv_images(args, out)
    else:
        names, paths, files, source = _nih_images(args)
    _log.info("caching %d images at %d x %d px into %s with %d processes", len(names), args.size, args.size,
              out, args.workers)  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    for f in files:  # first: an interrupted cache is then named as such, not as lacking its labels
        shutil.copyfile(f, out / f.name)
    summary = build_cache(
        names, paths, out, size=args.size, workers=args.workers, source=source, progress=args.progress
    )
    _log.info(
        "cache %s: %d images (%d written now, %d kept from an earlier run), %d unreadable%s",
        out,
        summary.n - len(summary.failed),
        summary.written,
        summary.reused,
        len(summary.failed),
        f" (listed in {out / 'failed.txt'})" if summary.failed else "",
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cral-prepare``; returns the process exit status."""
    parser = get_parser()
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from cral_model.data import MissingImagesError
    from cral_model.data.cache import CacheError, verify_cache

    try:
        if args.verify:
            bad = verify_cache(args.output)
            if bad:
                _log.error("%d images do not match the manifest (e.g. %s)", len(bad), ", ".join(bad[:3]))
                return 1
            _log.info("%s: every image matches its checksum", args.output)
            return 0
        if not args.csv and not args.data_root:
            parser.error("--data-root is required (or --csv)")
        if args.size < 8:
            parser.error("--size must be >= 8")
        return prepare(args)
    except (CacheError, MissingImagesError, FileNotFoundError, ValueError) as exc:
        _log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        _log.warning("interrupted; run the same command again to finish the cache")
        return 130


if __name__ == "__main__":
    sys.exit(main())
