"""The pre-resized cache (`cral-prepare`): from real NIH images, read transparently, resumable, checked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cral_model.cli.prepare import main as prepare_main
from cral_model.config import PreprocessConfig
from cral_model.data import (
    EvalPreset,
    ImageDataset,
    TrainPreset,
    load_csv_dataset,
    load_image,
    load_nih_split,
)
from cral_model.data.cache import CacheError, open_cache, to_cache_pixels, verify_cache
from cral_model.data.cache_build import build_cache

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"  # ../shared/data beside the repo
SIZE = 64  # small rows keep the tests lean; the format does not depend on the side


def _prepare(shared: Path, out: Path, *extra: str) -> int:
    return prepare_main(
        [
            "--data-root", str(shared / "chestxray14-fullres-samples"),
            "--labels-dir", str(shared / "chestxray14-labels"),
            "--allow-missing", "--output", str(out), "--size", str(SIZE), "--workers", "0", "--no-progress",
            *extra,
        ]
    )  # fmt: skip


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    # not `from conftest import ...`: several test folders have a conftest module, and in a full run
    # the name `conftest` may be another folder's
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    out = tmp_path_factory.mktemp("cache") / "cxr64"
    assert _prepare(SHARED_DATA, out) == 0
    return SHARED_DATA, out


def test_cache_from_real_images_reads_like_the_pngs(real_cache: tuple[Path, Path]) -> None:
    shared, cache = real_cache
    meta = json.loads((cache / "cache.json").read_text())
    assert meta["complete"] and meta["size"] == SIZE and meta["n_written"] == meta["n"] > 0
    labels = shared / "chestxray14-labels"
    raw = load_nih_split(
        shared / "chestxray14-fullres-samples", "train_val", labels_dir=labels, allow_missing=True
    )
    # the label files were copied: the cache alone is a data root
    cached = load_nih_split(cache, "train_val", allow_missing=True)
    assert cached.names == raw.names and cached.patients == raw.patients
    np.testing.assert_array_equal(cached.labels, raw.labels)
    assert all(p.endswith(tuple(f"@{i}" for i in range(meta["n"]))) for p in cached.paths)

    pre = PreprocessConfig(input_size=32, resize=36)
    for preset in (EvalPreset(pre), TrainPreset(pre, scale=(0.3, 1.0))):
        from_cache = ImageDataset(cached, preset)
        # the PNGs through the cache's one extra step (resize to SIZE, 8 bits), then the same transform
        from_png = ImageDataset(raw, lambda a, t=preset: t(to_cache_pixels(a, SIZE)))
        for i in range(len(raw)):
            xa, ya, _ = from_cache[(i, 1000 + i)]
            xb, yb, _ = from_png[(i, 1000 + i)]
            assert torch.equal(xa, xb), raw.names[i]
            assert torch.equal(ya, yb)


def test_cache_rows_are_the_float_resize_within_half_a_grey_level(real_cache: tuple[Path, Path]) -> None:
    shared, _ = real_cache
    from cral_model.preprocessing import _resize, to_unit_float

    path = sorted((shared / "chestxray14-fullres-samples").rglob("*.png"))[0]
    img = load_image(str(path))
    assert img.shape == (1024, 1024)
    exact = _resize(torch.from_numpy(to_unit_float(img))[None, None], SIZE)[0, 0].numpy()
    row = to_cache_pixels(img, SIZE)
    assert row.dtype == np.uint8 and row.shape == (SIZE, SIZE)
    assert np.abs(row / 255.0 - exact).max() <= 0.5 / 255 + 1e-6


def test_verify_finds_a_damaged_row(real_cache: tuple[Path, Path], tmp_path: Path) -> None:
    import shutil

    _, cache = real_cache
    copy = tmp_path / "copy"
    shutil.copytree(cache, copy)
    assert verify_cache(copy) == []
    cached = open_cache(copy)
    row = cached.rows[3]
    with open(copy / "pixels.u8", "r+b") as fh:
        fh.seek(row * SIZE * SIZE + 100)
        b = fh.read(1)
        fh.seek(row * SIZE * SIZE + 100)
        fh.write(bytes([b[0] ^ 0xFF]))
    assert verify_cache(copy) == [cached.names[3]]
    assert prepare_main(["--output", str(copy), "--verify"]) == 1


def _images(tmp_path: Path, n: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(0)
    names, paths = [], []
    for i in range(n):
        p = tmp_path / "src" / f"img{i:02d}.png"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40 + i, 48), dtype=np.uint8)).save(p)
        names.append(p.name)
        paths.append(str(p))
    return names, paths


def test_interrupted_build_resumes_to_the_same_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cral_model.data.cache_build as cb

    names, paths = _images(tmp_path, 12)
    build_cache(names, paths, tmp_path / "whole", size=16, workers=0)
    real = cb._prepare_one
    calls = {"n": 0}

    def dying(job):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(cb, "_prepare_one", dying)
    with pytest.raises(KeyboardInterrupt):
        build_cache(names, paths, tmp_path / "part", size=16, workers=0)
    with pytest.raises(CacheError, match="unfinished"):
        open_cache(tmp_path / "part")
    monkeypatch.setattr(cb, "_prepare_one", real)
    summary = build_cache(names, paths, tmp_path / "part", size=16, workers=0)
    assert (summary.reused, summary.written) == (5, 7)
    a, b = open_cache(tmp_path / "whole"), open_cache(tmp_path / "part")
    np.testing.assert_array_equal(np.asarray(a.pixels), np.asarray(b.pixels))
    assert verify_cache(tmp_path / "part") == []
    with pytest.raises(CacheError, match="other images or another size"):
        build_cache(names, paths, tmp_path / "part", size=24, workers=0)


def test_unreadable_file_is_listed_and_the_rest_is_cached(tmp_path: Path) -> None:
    names, paths = _images(tmp_path, 4)
    Path(paths[1]).write_bytes(b"\x89PNG\r\n\x1a\n not really")
    csv_path = tmp_path / "own.csv"
    csv_path.write_text(
        "path,Finding Labels,Patient ID\n"
        + "".join(f"src/{n},No Finding,p{i}\n" for i, n in enumerate(names))
    )
    out = tmp_path / "cache"
    rc = prepare_main(["--csv", str(csv_path), "--output", str(out), "--size", "16", "--workers", "2",
                       "--no-progress"])  # fmt: skip
    assert rc == 0
    failed = (out / "failed.txt").read_text()
    assert failed.startswith("img01.png\t") and len(failed.splitlines()) == 1
    # the copied CSV names the files; the cache is its data root
    imgs = load_csv_dataset(out / "own.csv", data_root=out, allow_missing=True)
    assert imgs.names == ("img00.png", "img02.png", "img03.png") and imgs.n_missing == 1
    row = load_image(imgs.paths[1])
    src = load_image(paths[2])
    np.testing.assert_array_equal(row, to_cache_pixels(src, 16))


@pytest.mark.slow
def test_cral_train_reads_a_cache(real_cache: tuple[Path, Path], tmp_path: Path) -> None:
    from cral_model.cli.train import main as train_main

    _, cache = real_cache
    rc = train_main(
        [
            "--data-root", str(cache), "--allow-missing", "--output", str(tmp_path / "run"),
            "--backbone", "resnet18", "--pretrained", "none", "--input-size", "32", "--resize", "36",
            "--epochs", "1", "--batch-size", "8", "--workers", "0", "--threads", "1", "--no-progress",
            "--val-fraction", "0.3",
        ]
    )  # fmt: skip
    assert rc == 0
    assert (tmp_path / "run" / "best.safetensors").is_file()


def test_a_cache_smaller_than_the_resize_is_named(real_cache: tuple[Path, Path]) -> None:
    from cral_model.data.cache import cache_resolution_warning

    shared, cache = real_cache
    assert cache_resolution_warning([cache], SIZE) is None
    msg = cache_resolution_warning([shared / "chestxray14-labels", cache], 256)
    assert msg is not None and f"{SIZE} px" in msg and "--size 256" in msg


def test_cral_train_on_an_unfinished_cache_says_what_to_do(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from cral_model.cli.train import main as train_main

    names, paths = _images(tmp_path, 3)
    build_cache(names, paths, tmp_path / "c", size=16, workers=0)
    meta = json.loads((tmp_path / "c" / "cache.json").read_text())
    (tmp_path / "c" / "cache.json").write_text(json.dumps({**meta, "complete": False}))
    from cral_model.data.cache import _open_cache

    _open_cache.cache_clear()
    own = tmp_path / "csv" / "own.csv"  # names the cached files, which are not beside it
    own.parent.mkdir()
    own.write_text("path,Finding Labels\n" + "".join(f"{n},No Finding\n" for n in names))
    argv = ["--train-csv", str(own), "--data-root", str(tmp_path / "c"), "--output", str(tmp_path / "run")]
    rc = train_main([*argv, "--no-progress"])
    assert rc == 2
    assert "unfinished cache" in caplog.text and "run the same cral-prepare command again" in caplog.text
