"""Seed files, mutations and a crash/hang-proof decoding harness for the reader fuzz tests.

The harness (`run_in_subprocess`) feeds file paths to ``decode_worker.py`` in a child process and
watches every file with a wall-clock limit and a memory budget: a segfault, abort or hang in a C decoder,
or a file that makes the child's resident set grow past `MEMORY_BUDGET`, is recorded as a failure of
that one case, the child is restarted (killed first where it was still growing), and the run goes on.
"""

from __future__ import annotations

import io
import json
import os
import re
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
#: Memory budget of one case: the peak resident set size (RSS) the decoding child may reach while it
#: handles one file, 1.5 x the largest legitimate case. Measured for issue 18 on the 2-core dev machine
#: with this worker (warmed up: Python, numpy, pydicom, Pillow and the pylibjpeg/OpenJPEG/JPEG-LS
#: decoders imported, 51-58 MB idle): the largest real images in ../shared/data at full resolution,
#: read and windowed as the worker does, peak at 119 MB each in a fresh worker (RG2_JPLY.dcm,
#: 2140 x 1760; RG1_J2KR.dcm, 1955 x 1841) and at up to 128 MB in a worker that has read the others
#: before (RG2_JLSL.dcm); a 1024 px NIH PNG at 76 MB. 1.5 x 128 MB = 192 MB. Only a reader that
#: allocates far more than a real radiograph needs goes over it (the memory bombs of issue 18 take
#: gigabytes). This flat budget holds every case that ends in an error or in an image up to the size of
#: those real files; a larger image (the readers accept up to 40 million pixels) is allowed 1.5 x what an
#: image of its size needs (`memory_budget_for`), so that the budget follows the result, not the file.
MEMORY_BUDGET = 192_000_000
#: the warmed-up worker's idle RSS (measured: 51-58 MB, rounded up), and what a file may add to it:
#: the budget of in-process checks, which measure the growth of the test process's peak instead
WORKER_IDLE_RSS = 60_000_000
CASE_MEMORY_ALLOWANCE = MEMORY_BUDGET - WORKER_IDLE_RSS
#: a worker whose RSS, after a file and a garbage collection, stays this much above its idle RSS is
#: restarted before the next file, so that what one file leaks does not count against the next ones
#: (what each file keeps is recorded: `CaseResult.kept_rss`)
KEPT_RSS_RESTART = 32_000_000
#: what a decoded image needs beyond the idle worker, per pixel of the result: the largest real file's
#: peak (128 MB) less the idle RSS (60 MB) over its 3.77 million pixels, rounded up (18 bytes: the float32
#: pixels, the windowed copy and the decoder's buffers)
BYTES_PER_IMAGE_PIXEL = 18
#: the largest image the readers return (``cxr_viewer.core.limits``: 40 million pixels)
LARGEST_IMAGE_PIXELS = 40_000_000


def memory_budget_for(pixels: int, flat: int = MEMORY_BUDGET) -> int:
    """The budget of a case whose result is an image of ``pixels`` pixels (0 for an error): the flat
    budget, or 1.5 x (idle worker + `BYTES_PER_IMAGE_PIXEL` x pixels), whichever is larger. A file that
    makes the reader allocate far more than its own result needs (every memory bomb of issue 18) still
    fails; a legitimately large image does not."""
    return max(int(flat), int(1.5 * (WORKER_IDLE_RSS + BYTES_PER_IMAGE_PIXEL * max(0, int(pixels)))))


def _result_pixels(status: str, detail: str) -> int:
    """Pixels of the image an ``ok`` case returned (its detail ends in ``W``x``H``), else 0."""
    match = re.search(r"(\d+)x(\d+)$", detail) if status == "ok" else None
    return int(match.group(1)) * int(match.group(2)) if match else 0


#: how often the harness looks at the child's RSS; past the budget, the child is killed at once (as on a
#: machine that has only that much for the case)
RSS_POLL_S = 0.005
#: address-space backstop of the decoding child (not the budget: an address-space cap makes a memory
#: bomb fail inside the allocator, where a decoder may turn it into an ordinary decoding error and hide
#: it; the budget is watched on the RSS instead)
CHILD_MEMORY_LIMIT = 64 << 30

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
    peak_rss: int = 0  # bytes: the child's peak resident set size during this case (0: not reported)
    kept_rss: int = 0  # bytes: how much more the child held after this case than before it

    @property
    def failed(self) -> bool:
        return self.status.startswith("FAIL")


class HarnessResults(list[CaseResult]):
    """The cases' results, in order, plus what each child process used.

    Attributes:
        child_peak_rss: every child's peak RSS in bytes, one per child: the highest of the peaks it
            reported for its files and of the RSS the harness saw while polling. (Not ``ru_maxrss``
            from ``wait4``: that counts the parent's memory image, which the child has until ``exec``.)
        restarts: children restarted because they kept more than `KEPT_RSS_RESTART` after a file.
        memory_budget: the per-case budget the run was held to (bytes).
    """

    def __init__(self, memory_budget: int) -> None:
        super().__init__()
        self.child_peak_rss: list[int] = []
        self.restarts = 0
        self.memory_budget = memory_budget


def _rss(pid: int) -> int:
    """Current resident set size of ``pid`` in bytes (0 when it has gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def run_in_subprocess(
    cases: Sequence[tuple[str, Path]],
    timeout_s: float = PER_FILE_TIMEOUT_S,
    worker: Path = WORKER,
    memory_budget: int = MEMORY_BUDGET,
) -> HarnessResults:
    """Decode every file in a child process; crashes, hangs and memory bombs fail only their own case.

    A case fails as ``FAIL-memory-budget`` when the child's RSS passes its budget while it handles that
    file: ``memory_budget`` for an error or a small image, more for a large image (`memory_budget_for`;
    only for the default budget). Seen in the peak the child reports after the file, or by polling (the
    child is killed at once past the largest image's budget).
    """
    results = HarnessResults(memory_budget)
    # the default budget follows the size of each result (`memory_budget_for`); an explicit one is flat
    scale_with_image = memory_budget == MEMORY_BUDGET
    poll_cap = memory_budget_for(LARGEST_IMAGE_PIXELS) if scale_with_image else memory_budget
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
        child_peak = 0
        before = 0  # the child's RSS after its previous file
        start = time.monotonic()
        stop = False  # the child failed a case or is to be restarted: go on with a new one
        while done < len(todo):
            line = None
            over_budget = 0
            while b"\n" not in buf:
                left = timeout_s - (time.monotonic() - start)
                if left <= 0:
                    break
                ready, _, _ = select.select([proc.stdout], [], [], min(left, RSS_POLL_S))
                if not ready:
                    now = _rss(proc.pid)
                    child_peak = max(child_peak, now)
                    if now > poll_cap:  # more than even the largest image may need: stop it now
                        over_budget = now
                        break
                    continue
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                buf += chunk
            if b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
            name = todo[done][0]
            if line is None:
                elapsed = time.monotonic() - start
                if over_budget or elapsed >= timeout_s:
                    proc.kill()
                code = proc.wait()
                if over_budget:
                    detail = f"killed at {over_budget / 1e6:.0f} MB RSS (budget {poll_cap / 1e6:.0f} MB)"
                    results.append(CaseResult(name, "FAIL-memory-budget", detail, elapsed, over_budget))
                elif elapsed >= timeout_s:
                    results.append(CaseResult(name, "FAIL-timeout", f"> {timeout_s:.0f} s", elapsed))
                else:
                    results.append(CaseResult(name, "FAIL-crash", f"child exited with {code}", elapsed))
                done += 1
                stop = True
                break
            rec = json.loads(line)
            result = CaseResult(
                name, rec["status"], rec["detail"], rec["seconds"], int(rec.get("peak_rss", 0))
            )
            child_peak = max(child_peak, result.peak_rss)
            allowed = memory_budget_for(_result_pixels(result.status, result.detail), memory_budget)
            if not scale_with_image:
                allowed = memory_budget
            if result.peak_rss > allowed:
                result.detail = (
                    f"peak {result.peak_rss / 1e6:.0f} MB RSS > budget {allowed / 1e6:.0f} MB "
                    f"({result.status}: {result.detail})"
                )
                result.status = "FAIL-memory-budget"
            after, idle = int(rec.get("rss_after", 0)), int(rec.get("idle_rss", 0))
            if after and idle:
                result.kept_rss = max(0, after - (before or idle))
                before = after
            results.append(result)
            done += 1
            start = time.monotonic()
            if after and idle and after - idle > KEPT_RSS_RESTART and done < len(todo):
                results.restarts += 1
                stop = True
                break
        if stop and proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        os.unlink(fh.name)
        proc.wait()
        results.child_peak_rss.append(child_peak)
        todo = todo[done:]
    return results


def summarise(results: Sequence[CaseResult]) -> dict[str, object]:
    """Counts by status, failures listed, slowest case; peak RSS figures when the harness measured them."""
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    slowest = max(results, key=lambda r: r.seconds) if results else None
    out: dict[str, object] = {
        "cases": len(results),
        "failures": sum(r.failed for r in results),
        "counts": counts,
        "failed": [f"{r.name}: {r.status} {r.detail}" for r in results if r.failed][:50],
        "slowest": f"{slowest.name} {slowest.seconds:.2f} s" if slowest else "",
    }
    measured = [r for r in results if r.peak_rss]
    if measured:
        top = max(measured, key=lambda r: r.peak_rss)
        kept = max(results, key=lambda r: r.kept_rss)
        out["peak_rss_mb"] = {
            "max": round(top.peak_rss / 1e6, 1),
            "max_case": top.name,
            "median": round(float(np.median([r.peak_rss for r in measured])) / 1e6, 1),
        }
        out["over_memory_budget"] = counts.get("FAIL-memory-budget", 0)
        out["kept_after_case_mb"] = {
            "max": round(kept.kept_rss / 1e6, 1),
            "max_case": kept.name,
            "cases_over_8MB": sum(r.kept_rss > 8_000_000 for r in results),
        }
    if isinstance(results, HarnessResults):
        out["memory_budget_mb"] = round(results.memory_budget / 1e6, 1)
        out["children"] = len(results.child_peak_rss)
        out["restarts_after_kept_memory"] = results.restarts
        if results.child_peak_rss:
            out["child_peak_rss_mb_max"] = round(max(results.child_peak_rss) / 1e6, 1)
    return out


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
