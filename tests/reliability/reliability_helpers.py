"""Seed files, mutations and a crash/hang-proof decoding harness for the reader fuzz tests.

The harness (`run_in_subprocess`) feeds file paths to ``decode_worker.py`` in a child process with an
address-space limit and watches every file with a wall-clock limit: a segfault, abort or hang in a C
decoder is recorded as a failure of that one case, the child is restarted, and the run goes on.
"""

from __future__ import annotations

import io
import json
import os
import select
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from helpers import dicom

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Iterable, Sequence

HERE = Path(__file__).resolve().parent
DATA_DIR = (HERE.parents[1] / ".." / "shared" / "data").resolve()
DICOM_DIR = DATA_DIR / "dicom"
WORKER = HERE / "decode_worker.py"

#: wall-clock limit for one file (generous: the machine may be busy with training)
PER_FILE_TIMEOUT_S = 20.0
#: address-space limit of the decoding child process
CHILD_MEMORY_LIMIT = 3 << 30

PATIENT_NAME = "Zyxwvut^Qqqqq"  # unusual strings that cannot appear in output by chance
PATIENT_ID = "PID-8675309-XQ"


# ============================================================================ seed files
#: the header of this suite's DICOM files: the patient markers, 0.15 mm pixels and a 12-bit window
DICOM_HEADER: dict[str, Any] = {
    "patient_name": PATIENT_NAME,
    "patient_id": PATIENT_ID,
    "window": (2048.0, 4096.0),
    "pixel_spacing": (0.15, 0.15),
}


def write_dicom(path: Path, pixels: np.ndarray, **kwargs: Any) -> Path:
    """`helpers.dicom.write_dicom` with `DICOM_HEADER` (``kwargs`` override it)."""
    return dicom.write_dicom(path, pixels, **{**DICOM_HEADER, **kwargs})


def write_jpeg_dicom(path: Path, pixels: np.ndarray) -> Path:
    """`helpers.dicom.write_jpeg_dicom` with `DICOM_HEADER` (no window)."""
    return dicom.write_jpeg_dicom(path, pixels, **DICOM_HEADER)


def _gradient(h: int, w: int, top: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    g = np.linspace(0, top, w)[None, :] * np.linspace(0.3, 1.0, h)[:, None]
    return (g + rng.integers(0, max(1, top // 50), (h, w))).clip(0, top)


def build_seeds(folder: Path) -> dict[str, Path]:
    """Small valid files of every supported kind (names say what they are)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    g16 = _gradient(48, 40, 4095).astype(np.uint16)
    g8 = _gradient(48, 40, 255).astype(np.uint8)
    rgb = np.stack([g8, g8[::-1], 255 - g8], axis=-1).astype(np.uint8)
    seeds: dict[str, Path] = {}

    def add(name: str, fn: Callable[[Path], object]) -> None:
        p = folder / name
        try:
            fn(p)
        except (RuntimeError, ValueError, ImportError):  # an encoder plugin missing: fewer seeds
            return
        seeds[name] = p

    add("mono2.dcm", lambda p: write_dicom(p, g16))
    add("mono1.dcm", lambda p: write_dicom(p, g16, photometric="MONOCHROME1"))
    add("mono2_8bit.dcm", lambda p: write_dicom(p, g8, window=None))
    add("multiframe.dcm", lambda p: write_dicom(p, np.stack([g16, g16 // 2, g16 // 3])))
    add("rgb.dcm", lambda p: write_dicom(p, rgb, photometric="RGB"))
    add("ybr_full.dcm", lambda p: write_dicom(p, rgb, photometric="YBR_FULL"))
    add("rle.dcm", lambda p: write_dicom(p, g16, syntax="RLELossless"))
    add("jpegls.dcm", lambda p: write_dicom(p, g16, syntax="JPEGLSLossless"))
    add("j2k.dcm", lambda p: write_dicom(p, g16, syntax="JPEG2000Lossless"))
    add("jpeg_baseline.dcm", lambda p: write_jpeg_dicom(p, g8))
    add("grey8.png", lambda p: Image.fromarray(g8).save(p))
    add("grey16.png", lambda p: Image.fromarray(g16.astype(np.uint16)).save(p))
    add("rgb.png", lambda p: Image.fromarray(rgb).save(p))
    add("palette.png", lambda p: Image.fromarray(rgb).convert("P").save(p))
    add("grey.jpg", lambda p: Image.fromarray(g8).save(p, quality=90))
    add("progressive.jpg", lambda p: Image.fromarray(rgb).save(p, quality=80, progressive=True))
    add("grey16.tif", lambda p: Image.fromarray(g16.astype(np.uint16)).save(p))
    add(
        "multipage.tif",
        lambda p: Image.fromarray(g8).save(p, save_all=True, append_images=[Image.fromarray(g8)]),
    )
    add("float.tif", lambda p: Image.fromarray(g16.astype(np.float32)).save(p))
    add("grey.bmp", lambda p: Image.fromarray(g8).save(p))
    return seeds


def real_dicom_files() -> list[Path]:
    """The real CR files in ../shared/data/dicom (empty when absent)."""
    return sorted(DICOM_DIR.glob("*.dcm")) if DICOM_DIR.is_dir() else []


# ============================================================================ mutations
def truncate(data: bytes, at: int) -> bytes:
    return data[: max(0, min(at, len(data)))]


def flip_bits(data: bytes, positions: Iterable[int]) -> bytes:
    out = bytearray(data)
    for pos in positions:
        if out:
            i = pos % (len(out) * 8)
            out[i // 8] ^= 1 << (i % 8)
    return bytes(out)


def overwrite(data: bytes, at: int, junk: bytes) -> bytes:
    at = max(0, min(at, len(data)))
    return data[:at] + junk + data[at + len(junk) :]


def byte_mutations(data: bytes, rng: random.Random, n: int) -> list[tuple[str, bytes]]:
    """``n`` deterministic damaged variants: truncations, bit flips (header and anywhere), junk blocks."""
    out: list[tuple[str, bytes]] = []
    head = min(len(data), 1024)
    for k in range(n):
        kind = k % 5
        if kind == 0:
            at = rng.randrange(0, len(data)) if k else len(data) // 2
            out.append((f"truncate@{at}", truncate(data, at)))
        elif kind == 1:
            pos = [rng.randrange(0, head * 8) for _ in range(rng.choice([1, 2, 8]))]
            out.append((f"flip-header{pos[:3]}", flip_bits(data, pos)))
        elif kind == 2:
            pos = [rng.randrange(0, len(data) * 8) for _ in range(rng.choice([1, 16, 128]))]
            out.append((f"flip-any x{len(pos)}", flip_bits(data, pos)))
        elif kind == 3:
            at = rng.randrange(0, len(data))
            junk = bytes(
                rng.choice([0x00, 0xFF, rng.randrange(256)]) for _ in range(rng.choice([4, 64, 512]))
            )
            out.append((f"junk@{at}+{len(junk)}", overwrite(data, at, junk)))
        else:
            at = rng.randrange(0, len(data))
            out.append((f"cut-middle@{at}", data[:at] + data[at + rng.randrange(1, 256) :]))
    return out


def png_with_size(width: int, height: int, fix_crc: bool = True) -> bytes:
    """A tiny grey PNG whose IHDR declares ``width x height`` (the IDAT holds a few bytes only)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    crc = zlib.crc32(b"IHDR" + ihdr) if fix_crc else 0
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", crc)
        + struct.pack(">I", len(idat)) + b"IDAT" + idat + struct.pack(">I", zlib.crc32(b"IDAT" + idat))
        + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    )  # fmt: skip


def patch_jpeg_size(data: bytes, rows: int, cols: int) -> bytes:
    """Rewrite the first SOF (JPEG) / SOF55 (JPEG-LS) / SIZ (J2K) dimensions found in ``data``."""
    out = bytearray(data)
    siz = out.find(b"\xff\x4f\xff\x51")
    if siz >= 0:
        out[siz + 8 : siz + 12] = struct.pack(">I", cols)
        out[siz + 12 : siz + 16] = struct.pack(">I", rows)
        return bytes(out)
    for marker in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc2", b"\xff\xc3", b"\xff\xf7"):
        i = out.find(marker)
        if i >= 0:
            out[i + 5 : i + 7] = struct.pack(">H", rows)
            out[i + 7 : i + 9] = struct.pack(">H", cols)
            return bytes(out)
    return bytes(out)


# ============================================================================ harness
@dataclass
class CaseResult:
    name: str
    status: str  # ok | error (typed ImageLoadError) | FAIL-*
    detail: str
    seconds: float

    @property
    def failed(self) -> bool:
        return self.status.startswith("FAIL")


def run_in_subprocess(
    cases: Sequence[tuple[str, Path]], timeout_s: float = PER_FILE_TIMEOUT_S, worker: Path = WORKER
) -> list[CaseResult]:
    """Decode every file in a child process; crashes and hangs fail only their own case."""
    results: list[CaseResult] = []
    todo = list(cases)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONFAULTHANDLER="0")
    env["CXR_RELIABILITY_MEMORY_LIMIT"] = str(CHILD_MEMORY_LIMIT)
    while todo:
        # The list goes through a file, not stdin: writing it all to a pipe while the child fills its
        # stdout pipe would deadlock.
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as fh:
            fh.write("".join(json.dumps(str(p)) + "\n" for _, p in todo))
        proc = subprocess.Popen(
            [sys.executable, str(worker), fh.name],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=HERE.parents[1],
        )
        assert proc.stdout is not None
        buf = b""
        done = 0
        start = time.monotonic()
        broke = False
        while done < len(todo):
            line = None
            while b"\n" not in buf:
                left = timeout_s - (time.monotonic() - start)
                ready, _, _ = select.select([proc.stdout], [], [], max(0.0, left))
                if not ready:
                    break
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                buf += chunk
            if b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
            name = todo[done][0]
            if line is None:
                elapsed = time.monotonic() - start
                if elapsed >= timeout_s:
                    proc.kill()
                    proc.wait()
                    results.append(CaseResult(name, "FAIL-timeout", f"> {timeout_s:.0f} s", elapsed))
                else:
                    code = proc.wait()
                    results.append(CaseResult(name, "FAIL-crash", f"child exited with {code}", elapsed))
                todo = todo[done + 1 :]
                broke = True
                break
            rec = json.loads(line)
            results.append(CaseResult(name, rec["status"], rec["detail"], rec["seconds"]))
            done += 1
            start = time.monotonic()
        proc.stdout.close()
        os.unlink(fh.name)
        if not broke:
            proc.wait()
            todo = []
    return results


def summarise(results: Sequence[CaseResult]) -> dict[str, object]:
    """Counts by status, failures listed, slowest case."""
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    slowest = max(results, key=lambda r: r.seconds) if results else None
    return {
        "cases": len(results),
        "failures": sum(r.failed for r in results),
        "counts": counts,
        "failed": [f"{r.name}: {r.status} {r.detail}" for r in results if r.failed][:50],
        "slowest": f"{slowest.name} {slowest.seconds:.2f} s" if slowest else "",
    }


# ============================================================================ batches of files
NIH_64PX = DATA_DIR / "chestxray14-nih1000-64px" / "images"


def make_batch(
    folder: Path, seeds: dict[str, Path], n: int = 200, broken_every: int = 10
) -> tuple[list[Path], list[Path]]:
    """``n`` files in ``folder``, every ``broken_every``-th one broken in a different way.

    Good files are real 64 px NIH PNGs when ../shared/data is there (else synthetic PNGs), with a
    DICOM (PatientName/PatientID set) every 7th file. Returns ``(good, broken)``.
    """
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    real = sorted(NIH_64PX.glob("*.png"))[:n] if NIH_64PX.is_dir() else []
    breakers: list[tuple[str, Callable[[Path], bytes]]] = [
        ("truncated.png", lambda src: src.read_bytes()[: len(src.read_bytes()) // 3]),
        ("zero.dcm", lambda src: b""),
        ("junk.jpg", lambda src: b"\xff\xd8\xff" + bytes(range(256)) * 4),
        ("huge.png", lambda src: png_with_size(100_000, 100_000)),
        ("palette.dcm", lambda src: _palette_dicom_bytes(seeds["mono2.dcm"])),
        ("nopixels.dcm", lambda src: _no_pixels_dicom_bytes(seeds["mono2.dcm"])),
        ("text.dcm", lambda src: b"not a dicom file\n" * 50),
        ("flipped.dcm", lambda src: _flip_tail(seeds["j2k.dcm"].read_bytes())),
    ]  # fmt: skip
    good: list[Path] = []
    broken: list[Path] = []
    rng = np.random.default_rng(0)
    for i in range(n):
        if i % broken_every == broken_every - 1:
            kind, make = breakers[(i // broken_every) % len(breakers)]
            p = folder / f"{i:03d}_broken_{kind}"
            p.write_bytes(make(seeds["grey8.png"]))
            broken.append(p)
        elif i % 7 == 3:
            p = folder / f"{i:03d}_study.dcm"
            write_dicom(p, (_gradient(64, 64, 4095, seed=i)).astype(np.uint16))
            good.append(p)
        else:
            p = folder / f"{i:03d}_image.png"
            if real:
                p.write_bytes(real[i % len(real)].read_bytes())
            else:
                Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(p)
            good.append(p)
    return good, broken


def _flip_tail(data: bytes) -> bytes:
    """Every third bit of the last 500 bytes flipped (the compressed pixel data of a small file)."""
    n = len(data) * 8
    return flip_bits(data, range(n - 4000, n, 3))


def _palette_dicom_bytes(src: Path) -> bytes:
    import pydicom

    ds = pydicom.dcmread(src)
    ds.PhotometricInterpretation = "PALETTE COLOR"
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


def _no_pixels_dicom_bytes(src: Path) -> bytes:
    import pydicom

    ds = pydicom.dcmread(src)
    del ds.PixelData
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()
