"""Input pipeline: training items per second per core from 1024 px PNGs, from the pre-resized cache, and
from tar shards of 256 px PNGs (the WebDataset layout), and the cores a GPU needs for each.

One item = what a DataLoader worker does for one training sample: read the image, then the training
transform (resize to 256, random resized crop 224, flip, normalise; ``cral_model.data.TrainPreset``).
Each source is timed on the same real NIH images (``../shared/data/chestxray14-fullres-samples``, 1024 x
1024, 8-bit), in one process with one torch thread (one core), the sources interleaved round by round
so that load from other processes on a shared machine hits all of them alike; the table gives the median
over rounds of the wall clock and of this process's CPU time; the rates, ratios and cores come from the
CPU time (what one dedicated core would take: single-threaded, files in the page cache), which other
processes on a shared machine disturb far less than the wall clock. ``cores per GPU`` divides ``--gpu-rate``
(images/s one GPU consumes; default 375 = the ~3,000 img/s of ResNet-50 at 224 px on 8 GPUs, an
assumption, not measured here) by the per-core rate.

Also reported: the one-off ``cral-prepare`` cost per image (decode + resize to 256 + checksum), the bytes
per image of each format, and an estimate of one epoch of the paper's recipe (all 86,524 train_val
images) on 8 GPUs: ``max(N / (8 x gpu-rate), N / (cores x per-core rate))``.

Usage: python -m benchmarks.input_pipeline [--quick] [--rounds 7] [--items 24] [--cores 32]
       [--gpu-rate 375] [--size 256]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from benchmarks._common import FULLRES, table

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

TRAIN_VAL_IMAGES = 86_524


def _write_shard(rows: list[np.ndarray], names: list[str], path: Path) -> None:
    from PIL import Image

    with tarfile.open(path, "w") as tar:
        for name, row in zip(names, rows, strict=True):
            buf = io.BytesIO()
            Image.fromarray(row).save(buf, format="PNG")
            info = tarfile.TarInfo(name)
            info.size = buf.tell()
            buf.seek(0)
            tar.addfile(info, buf)


def _shard_items(path: Path) -> Iterator[np.ndarray]:
    """Sequential read of a tar shard (how WebDataset reads), PNG decode of each member."""
    from PIL import Image

    with tarfile.open(path, "r") as tar:
        for member in tar:
            fh = tar.extractfile(member)
            assert fh is not None
            with Image.open(io.BytesIO(fh.read())) as im:
                yield np.array(im)


def run(args: argparse.Namespace, out: Any = sys.stdout, heading: str = "# Input pipeline") -> dict[str, Any]:
    """Measure and print the table; returns the figures."""
    from cral_model.config import PreprocessConfig
    from cral_model.data import ImageDataset, TrainPreset, load_image
    from cral_model.data.cache import open_cache, to_cache_pixels
    from cral_model.data.cache_build import build_cache

    torch.set_num_threads(1)
    pngs = sorted(FULLRES.glob("*.png"))[: args.items]
    if not pngs:
        out.write(f"{heading}\n\nskipped: no images in {FULLRES}\n")
        return {}
    names = [p.name for p in pngs]
    paths = [str(p) for p in pngs]
    with tempfile.TemporaryDirectory(prefix="cral-input-bench-") as tmp:
        work = Path(tmp)
        # the one-off preparation, timed per image on one core
        c0 = time.process_time()
        build_cache(names, paths, work / "cache", size=args.size, workers=0)
        prepare_s = (time.process_time() - c0) / len(pngs)  # CPU time, as the rates below
        cache = open_cache(work / "cache")
        refs = [cache.refs()[n] for n in names]
        rows = [cache.read(r) for r in cache.rows]
        _write_shard(rows, names, work / "shard-000000.tar")
        pre = PreprocessConfig(input_size=224, resize=256)
        preset = TrainPreset(pre)

        class _Images:  # the minimum ImageDataset reads: paths and labels
            def __init__(self, p: list[str]) -> None:
                self.paths = p
                self.labels = np.zeros((len(p), 14), dtype=np.float32)

            def __len__(self) -> int:
                return len(self.paths)

        ds_png = ImageDataset(_Images(paths), preset)  # type: ignore[arg-type]
        ds_cache = ImageDataset(_Images(refs), preset)  # type: ignore[arg-type]
        n = len(pngs)

        def png() -> None:
            for i in range(n):
                ds_png[(i, i)]

        def cached() -> None:
            for i in range(n):
                ds_cache[(i, i)]

        def shard() -> None:
            for i, arr in enumerate(_shard_items(work / "shard-000000.tar")):
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(i)
                    preset(arr)

        def png_read() -> None:
            for p in paths:
                load_image(p)

        def cache_read() -> None:
            for r in refs:
                load_image(r)

        def shard_read() -> None:
            for _ in _shard_items(work / "shard-000000.tar"):
                pass

        fns: dict[str, Callable[[], None]] = {
            "PNG 1024 px": png,
            f"cache ({args.size} px memmap)": cached,
            f"tar shard ({args.size} px PNG)": shard,
            "PNG 1024 px, read only": png_read,
            "cache, read only": cache_read,
            "tar shard, read only": shard_read,
        }
        times: dict[str, list[float]] = {k: [] for k in fns}
        cpu: dict[str, list[float]] = {k: [] for k in fns}
        for r in range(args.rounds + 1):  # round 0 warms the page cache and the allocators
            for k, fn in fns.items():
                t, c = time.perf_counter(), time.process_time()
                fn()
                if r:
                    times[k].append((time.perf_counter() - t) / n)
                    cpu[k].append((time.process_time() - c) / n)
        png_check = to_cache_pixels(load_image(paths[0]), args.size)
        assert np.array_equal(png_check, load_image(refs[0])), "cache row differs from its PNG"
        sizes = {
            "PNG 1024 px": sum(p.stat().st_size for p in pngs) / n,
            f"cache ({args.size} px memmap)": args.size * args.size,
            f"tar shard ({args.size} px PNG)": (work / "shard-000000.tar").stat().st_size / n,
        }
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    base = med_cpu["PNG 1024 px"]
    res: dict[str, Any] = {"items": n, "rounds": args.rounds, "prepare_ms_per_image": 1e3 * prepare_s}
    table_rows = []
    for k, v in med.items():
        rate = 1.0 / med_cpu[k]  # a dedicated core: its CPU time (single-threaded, page cache warm)
        cores = args.gpu_rate / rate
        table_rows.append(
            [
                k,
                f"{1e3 * v:.2f} ms",
                f"{1e3 * min(times[k]):.2f}-{1e3 * max(times[k]):.2f}",
                f"{1e3 * med_cpu[k]:.2f} ms",
                f"{rate:.0f}",
                f"{base / med_cpu[k]:.1f}x",
                "" if "read only" in k else f"{cores:.1f}",
                f"{sizes[k] / 1024:.0f} KiB" if k in sizes else "",
            ]
        )
        res[k] = {
            "ms_per_item": 1e3 * v,
            "cpu_ms_per_item": 1e3 * med_cpu[k],
            "items_per_s_per_core": rate,
            "cores_per_gpu": cores,
        }
    out.write(
        f"{heading} ({n} real NIH 1024 px images x {args.rounds} rounds, one core, sources interleaved)\n\n"
    )
    out.write(
        table(
            table_rows,
            [
                "source",
                "wall per item (median)",
                "wall min-max",
                "CPU per item (median)",
                "items/s per core (CPU)",
                "vs PNG",
                "cores per GPU",
                "bytes/img",
            ],
        )
        + "\n\n"
    )
    cache_rate = 1.0 / med_cpu[f"cache ({args.size} px memmap)"]
    png_rate = 1.0 / base
    gpu_total = 8 * args.gpu_rate
    epoch_gpu = TRAIN_VAL_IMAGES / gpu_total
    est = {
        "png": max(epoch_gpu, TRAIN_VAL_IMAGES / (args.cores * png_rate)),
        "cache": max(epoch_gpu, TRAIN_VAL_IMAGES / (args.cores * cache_rate)),
    }
    res.update(
        {
            "epoch_s_8gpu_png": est["png"],
            "epoch_s_8gpu_cache": est["cache"],
            "cores": args.cores,
            "gpu_rate": args.gpu_rate,
        }
    )
    out.write(
        f"cral-prepare: {1e3 * prepare_s:.1f} ms CPU per image on one core (decode + resize + checksum); "
        f"all 112,120 NIH images on {args.cores} cores: {112_120 * prepare_s / args.cores / 60:.1f} min, "
        f"{112_120 * args.size**2 / 1e9:.2f} GB.\n\n"
        f"Paper recipe, one epoch ({TRAIN_VAL_IMAGES:,} train_val images) on 8 GPUs at {args.gpu_rate:.0f} "
        f"img/s each (assumed, not measured here) with {args.cores} loader cores: from PNGs "
        f"{est['png']:.0f} s ({'input' if est['png'] > epoch_gpu else 'GPU'}-bound), from the cache "
        f"{est['cache']:.0f} s ({'input' if est['cache'] > epoch_gpu else 'GPU'}-bound); "
        f"30 epochs: {30 * est['png'] / 60:.0f} vs {30 * est['cache'] / 60:.0f} min.\n"
    )
    return res


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.input_pipeline", description=__doc__.splitlines()[0]
    )
    p.add_argument("--quick", action="store_true", help="CI run: 6 images x 2 rounds")
    p.add_argument("--rounds", type=int, default=None, help="timed rounds (default 7; 2 quick)")
    p.add_argument("--items", type=int, default=None, help="images per round (default 24; 6 quick)")
    p.add_argument("--size", type=int, default=256, help="side of the cached images")
    p.add_argument("--cores", type=int, default=32, help="loader cores of the 8-GPU machine in the estimate")
    p.add_argument("--gpu-rate", type=float, default=375.0, help="images/s one GPU trains (assumed)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else 7)
    args.items = args.items or (6 if args.quick else 24)
    run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
