"""Memory under hostile input (issue 18): peak RSS of the real ``cxr-triage`` on crafted files.

Each case is a folder with one hostile file and one good PNG (a real 1024 px NIH image from
``../shared/data``, else a synthetic one). ``python -m cxr_viewer.cli.triage FOLDER -o out.csv --model
CKPT`` runs on it in a child process (its own process group) under a wall-clock limit and a memory cap:
the RSS of the child and of its descendants (Ghostscript, say) is polled every 10 ms and the group is
killed once it passes the cap. The table gives, per case: the peak RSS (the child's ``VmHWM``, or the
polled sum over the process tree where that is higher), the wall time, the exit status, what the CSV
says about the hostile file, whether the good file beside it was analysed, and whether the run stayed
within the budget (`BUDGET_BYTES`, 2 GB: issue 18's requirement). A first case, the good PNG alone,
is the reference (it also fills the fast path's export cache, so later runs do not pay for it).

The hostile files (issue 18, item 2 and the hang of item 1):

- PostScript named ``.png`` (Pillow would hand it to Ghostscript, which loops forever on it);
- a deflated DICOM whose data set inflates to about 4 GiB (a private element of zeros) from 4 MB;
- a JPEG-LS DICOM whose code stream declares 4000 x 4000 pixels of 255 components (1.6 KB);
- a JPEG 2000 DICOM whose code stream declares 4600 x 4600 pixels of 64 components (1 KB);
- a DICOM whose VOI LUT descriptor declares 10^9 entries (a 9 KB table);
- a DICOM with 3 million empty elements (24 MB).

It reports; it never fails on the numbers (exit status non-zero only when the benchmark itself broke).

Usage: ``python -m benchmarks.memory [--quick] [--json PATH] [--checkpoint CKPT]`` (``python -m
benchmarks`` runs it as its ``memory`` section).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks._common import FULLRES, ROOT, real_images, table

if TYPE_CHECKING:
    from collections.abc import Callable

#: the most a ``cxr-triage`` run on one hostile file and one good file should take (issue 18)
BUDGET_BYTES = 2_000_000_000
#: the child is killed once its process tree's RSS passes this (above the budget, to show by how much)
CAP_BYTES = 3_000_000_000
POLL_S = 0.01
#: wall-clock limit of one run (quick mode: `QUICK_TIMEOUT_S`)
TIMEOUT_S = 240.0
QUICK_TIMEOUT_S = 120.0
#: the cases of ``--quick`` (the reference first)
QUICK_CASES = ("good PNG alone", "VOI LUT of 10^9 entries", "JPEG 2000, 64 components")

_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_DEFLATED = "1.2.840.10008.1.2.1.99"
_JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
_J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"


# ============================================================================ hostile files
def _dataset(rows: int, cols: int, syntax: str, pixel_data: bytes | None = None, bits: int = 16) -> Any:
    """A CR image data set (pydicom ``FileDataset``) with grey pixels unless ``pixel_data`` is given."""
    import numpy as np
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.PatientName = "Hostile^Benchmark"
    ds.PatientID = "BENCH-0"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = bits
    ds.BitsStored = min(bits, 12)
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    if pixel_data is None:
        yy, xx = np.mgrid[0:rows, 0:cols]
        img = (2000 + 1500 * np.sin(xx / 17.0) * np.cos(yy / 23.0)).astype(
            np.uint16 if bits == 16 else np.uint8
        )
        pixel_data = img.tobytes()
    ds.PixelData = pixel_data
    return ds


def _dataset_bytes(ds: Any) -> tuple[bytes, bytes]:
    """``(preamble + file meta, data set)`` of ``ds`` as explicit VR little endian bytes."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info

    head = DicomBytesIO()
    head.is_little_endian, head.is_implicit_VR = True, False
    head.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(head, ds.file_meta, enforce_standard=True)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    return head.getvalue(), body.getvalue()


def _explicit_element(group: int, elem: int, vr: bytes, value: bytes) -> bytes:
    if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT", b"UC", b"UR", b"OD", b"OF", b"OL", b"OV"):
        return struct.pack("<HH", group, elem) + vr + b"\0\0" + struct.pack("<I", len(value)) + value
    return struct.pack("<HH", group, elem) + vr + struct.pack("<H", len(value)) + value


def _encapsulated(ds: Any, frame: bytes) -> None:
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate([frame + (b"\0" if len(frame) % 2 else b"")])
    ds["PixelData"].VR = "OB"


def write_postscript_png(path: Path) -> Path:
    """An EPS file named ``.png``: a drawing, then an endless loop (Ghostscript never returns)."""
    path.write_bytes(
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 256 256\n%%EndComments\n"
        b"newpath 10 10 moveto 246 246 lineto 10 246 lineto closepath 0.5 setgray fill\n"
        b"{ 1 pop } loop\nshowpage\n%%EOF\n"
    )
    return path


def _deflated_zeros(chunk: int) -> bytes:
    """Raw deflate blocks (ending byte-aligned, not final) that inflate to ``chunk`` zero bytes when
    the 32 KiB before them are zeros too: the same bytes can then be repeated for more zeros."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    comp.compress(bytes(chunk))
    comp.flush(zlib.Z_SYNC_FLUSH)  # what follows sees a window of zeros only
    return comp.compress(bytes(chunk)) + comp.flush(zlib.Z_SYNC_FLUSH)


def write_deflate_bomb(path: Path, inflated_bytes: int = 4 << 30) -> Path:
    """A deflated explicit VR DICOM (a valid 256 x 256 image) whose data set inflates to about
    ``inflated_bytes``: private elements of zeros, at most 1 GiB each, before the pixel data.

    Each element's first 16 MiB of zeros are compressed; the rest repeats one precomputed block of
    deflated zeros (valid: it only refers back to zeros), so writing takes seconds, not minutes."""
    head, body = _dataset_bytes(_dataset(256, 256, _DEFLATED))
    cut = body.rindex(_PIXEL_DATA_TAG)
    chunk = 16 << 20
    zeros = bytes(chunk)
    repeat = _deflated_zeros(chunk)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate, as the transfer syntax says
    with path.open("wb") as fh:
        fh.write(head)
        fh.write(comp.compress(body[:cut]))
        fh.write(comp.compress(_explicit_element(0x7FDF, 0x0010, b"LO", b"BENCH BOMB")))
        left, elem = inflated_bytes, 0x1000
        while left > 0:
            size = max(chunk, min(left, 1 << 30) // chunk * chunk)
            fh.write(comp.compress(struct.pack("<HH", 0x7FDF, elem) + b"OB\0\0" + struct.pack("<I", size)))
            fh.write(comp.compress(zeros) + comp.flush(zlib.Z_SYNC_FLUSH))
            for _ in range(size // chunk - 1):
                fh.write(repeat)
            left -= size
            elem += 1
        fh.write(comp.compress(body[cut:]))
        fh.write(comp.flush())
    return path


def write_jpegls_components(path: Path, rows: int = 4000, cols: int = 4000, components: int = 255) -> Path:
    """A JPEG-LS lossless DICOM whose code stream declares ``rows x cols x components`` (8-bit), with a
    few hundred bytes of scan data."""
    sof = struct.pack(">BHHB", 8, rows, cols, components)
    sof += b"".join(struct.pack(">BBB", i + 1, 0x11, 0) for i in range(components))
    sos = struct.pack(">B", 1) + struct.pack(">BB", 1, 0) + struct.pack(">BBB", 0, 0, 0)
    frame = (
        b"\xff\xd8"
        + b"\xff\xf7" + struct.pack(">H", 2 + len(sof)) + sof
        + b"\xff\xda" + struct.pack(">H", 2 + len(sos)) + sos
        + bytes(range(1, 255)) * 2
        + b"\xff\xd9"
    )  # fmt: skip
    ds = _dataset(rows, cols, _JPEG_LS_LOSSLESS, pixel_data=b"\0\0", bits=8)
    _encapsulated(ds, frame)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_j2k_components(path: Path, side: int = 4600, components: int = 64) -> Path:
    """A JPEG 2000 lossless DICOM whose code stream declares ``side x side x components`` (8-bit, one
    tile, 5 reversible wavelet levels), with a few hundred bytes of tile data."""
    siz = struct.pack(">HIIIIIIIIH", 0, side, side, 0, 0, side, side, 0, 0, components)
    siz += struct.pack(">BBB", 7, 1, 1) * components
    # Scod; progression LRCP, 1 layer, no MCT; 5 levels, 64 x 64 code blocks, style 0, 5/3 reversible
    cod = struct.pack(">BBHBBBBBB", 0, 0, 1, 0, 5, 4, 4, 0, 1)
    qcd = struct.pack(">B", 0x40) + bytes([0x48] * 16)
    tile = bytes((i * 37) % 251 for i in range(400))
    sot = struct.pack(">HIBB", 0, 0, 0, 1)
    frame = (
        b"\xff\x4f"
        + b"\xff\x51" + struct.pack(">H", 2 + len(siz)) + siz
        + b"\xff\x52" + struct.pack(">H", 2 + len(cod)) + cod
        + b"\xff\x5c" + struct.pack(">H", 2 + len(qcd)) + qcd
        + b"\xff\x90" + struct.pack(">H", 2 + len(sot)) + sot
        + b"\xff\x93" + tile
        + b"\xff\xd9"
    )  # fmt: skip
    ds = _dataset(side, side, _J2K_LOSSLESS, pixel_data=b"\0\0", bits=8)
    _encapsulated(ds, frame)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_voi_lut_bomb(path: Path, entries: int = 10**9) -> Path:
    """A valid 256 x 256 DICOM with a VOI LUT whose descriptor (written as UL) declares ``entries``
    entries; the table itself holds 4,500 (9 KB)."""
    import numpy as np
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = _dataset(256, 256, _EXPLICIT_LE)
    with warnings.catch_warnings():  # pydicom: "a value for a tag with VR US must be ..." (the point)
        warnings.simplefilter("ignore")
        item = Dataset()
        item.add(DataElement(0x00283002, "UL", [entries, 0, 16]))
        item.LUTExplanation = "BENCH"
        item.add(DataElement(0x00283006, "OW", np.arange(4500, dtype=np.uint16).tobytes()))
        ds.VOILUTSequence = Sequence([item])
        ds.save_as(path, enforce_file_format=True)
    return path


def write_empty_elements(path: Path, count: int = 3_000_000) -> Path:
    """A valid 256 x 256 DICOM with ``count`` empty private elements (8 bytes each) before its pixels."""
    head, body = _dataset_bytes(_dataset(256, 256, _EXPLICIT_LE))
    cut = body.rindex(_PIXEL_DATA_TAG)
    per_group = 0xFFFF - 0x1000 + 1
    with path.open("wb") as fh:
        fh.write(head + body[:cut])
        group, left = 0x0029, count
        while left > 0:
            n = min(left, per_group)
            fh.write(b"".join(struct.pack("<HH", group, 0x1000 + i) + b"LO\0\0" for i in range(n)))
            left -= n
            group += 2
        fh.write(body[cut:])
    return path


#: case name -> (file name, builder)
HOSTILE: dict[str, tuple[str, Callable[[Path], Path]]] = {
    "PostScript named .png": ("postscript.png", write_postscript_png),
    "deflated DICOM bomb (4 GiB inflated)": ("deflated.dcm", write_deflate_bomb),
    "JPEG-LS 4000x4000x255 components": ("jpegls_255.dcm", write_jpegls_components),
    "JPEG 2000, 64 components": ("j2k_64.dcm", write_j2k_components),
    "VOI LUT of 10^9 entries": ("voi_lut.dcm", write_voi_lut_bomb),
    "3 million empty elements": ("empty_elements.dcm", write_empty_elements),
}


def good_png(folder: Path) -> Path:
    """A real 1024 px NIH PNG (``../shared/data``), or a synthetic 1024 px one when that is absent."""
    real = real_images(FULLRES, 1)
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / "good.png"
    if real:
        dest.write_bytes(real[0].read_bytes())
        return dest
    from benchmarks._common import synthetic_images

    synthetic_images(folder / "_synthetic", 1, size=1024)[0].replace(dest)
    return dest


# ============================================================================ measuring a run
def _status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux ``/proc/PID/task/TID/children``)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children", encoding="ascii") as fh:
                    todo += [int(c) for c in fh.read().split()]
        except (OSError, ValueError):
            continue
    return out


@dataclass
class RunResult:
    """One ``cxr-triage`` run."""

    peak_rss: int  # bytes
    wall_s: float
    exit: int | None  # None: killed by the benchmark
    ended: str  # "exited", "killed: RSS past the cap", "killed: timeout"
    rows: list[dict[str, str]]
    stderr_tail: str


def run_triage(
    folder: Path, checkpoint: Path, out_csv: Path, *, timeout_s: float = TIMEOUT_S, cap: int = CAP_BYTES
) -> RunResult:
    """Run the real ``cxr-triage`` on ``folder`` in a child process, watching its memory (module doc)."""
    cmd = [sys.executable, "-m", "cxr_viewer.cli.triage", str(folder), "-o", str(out_csv)]
    cmd += ["--model", str(checkpoint), "--no-progress"]
    env = dict(os.environ, PYTHONFAULTHANDLER="0")
    with tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=ROOT,
            start_new_session=True,
        )  # fmt: skip
        peak, ended = 0, "exited"
        while proc.poll() is None:
            pids = _tree(proc.pid)
            rss = sum(_status_kb(p, "VmRSS:") for p in pids) * 1024
            hwm = _status_kb(proc.pid, "VmHWM:") * 1024  # the child's own peak (kernel-exact)
            peak = max(peak, rss, hwm)
            over = rss > cap
            late = time.monotonic() - t0 > timeout_s
            if over or late:
                ended = "killed: RSS past the cap" if over else "killed: timeout"
                with contextlib.suppress(ProcessLookupError):  # the whole group: no orphaned Ghostscript
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                break
            time.sleep(POLL_S)
        wall = time.monotonic() - t0
        # what is left of the group after a normal exit (a decoder's helper program)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        err.seek(0)
        tail = err.read()[-600:].decode("utf-8", "replace")
    rows: list[dict[str, str]] = []
    if out_csv.is_file():
        with out_csv.open(newline="", encoding="utf-8", errors="replace") as fh:
            rows = list(csv.DictReader(fh))
    return RunResult(peak, wall, proc.returncode if ended == "exited" else None, ended, rows, tail)


def _row_for(rows: list[dict[str, str]], name: str) -> dict[str, str] | None:
    return next((r for r in rows if Path(r.get("file", "")).name == name), None)


def _outcome(result: RunResult, name: str) -> str:
    if result.ended != "exited":
        return result.ended
    row = _row_for(result.rows, name)
    if row is None:
        return f"no row (exit {result.exit})" + (
            f": {result.stderr_tail.strip()[-120:]}" if result.exit else ""
        )
    error = (row.get("error") or "").strip()
    if error:
        return "error row: " + (error if len(error) <= 140 else error[:137] + "...")
    return f"ANALYSED as an image (triage score {row.get('triage_score', '?')})"


def _good_analysed(result: RunResult) -> bool:
    row = _row_for(result.rows, "good.png")
    return row is not None and not (row.get("error") or "").strip()


# ============================================================================ the benchmark
def run(
    checkpoint: Path, workdir: Path, out: Any, *, quick: bool = False, heading: str = "## Memory"
) -> dict[str, Any]:
    """Write the hostile files, run ``cxr-triage`` on each beside a good PNG, print the table.

    Returns:
        ``{"cases": {case: figures}, "max_peak_rss_mb": ..., "cases_over_budget": ...,
        "good_files_lost": ...}``.
    """
    timeout_s = QUICK_TIMEOUT_S if quick else TIMEOUT_S
    cases: dict[str, dict[str, Any]] = {}
    rows = []
    names = ["good PNG alone", *HOSTILE]
    if quick:
        names = [n for n in names if n in QUICK_CASES]
    for case in names:
        folder = workdir / f"case_{len(cases):02d}"
        good_png(folder)
        hostile_name, hostile_size = "", 0
        if case in HOSTILE:
            hostile_name, build = HOSTILE[case]
            hostile_size = build(folder / hostile_name).stat().st_size
        result = run_triage(folder, checkpoint, workdir / f"case_{len(cases):02d}.csv", timeout_s=timeout_s)
        outcome = _outcome(result, hostile_name) if hostile_name else "(none)"
        good = _good_analysed(result)
        within = result.peak_rss <= BUDGET_BYTES
        cases[case] = {
            "file": hostile_name,
            "file_bytes": hostile_size,
            "peak_rss_mb": round(result.peak_rss / 1e6, 1),
            "wall_s": round(result.wall_s, 2),
            "exit": result.exit,
            "ended": result.ended,
            "hostile_outcome": outcome,
            "good_file_analysed": good,
            "within_budget": within,
        }
        rows.append(
            [
                case,
                f"{hostile_name} ({_size(hostile_size)})" if hostile_name else "-",
                f"{result.peak_rss / 1e6:.0f}",
                f"{result.wall_s:.1f}",
                "-" if result.exit is None else str(result.exit),
                outcome.replace("|", "/"),
                "yes" if good else "NO",
                "yes" if within else "NO",
            ]
        )
    out.write(
        f"{heading}: `cxr-triage` on hostile files, each beside a good PNG ({'quick' if quick else 'full'}; "
        f"budget {BUDGET_BYTES / 1e9:.0f} GB, killed past {CAP_BYTES / 1e9:.0f} GB or {timeout_s:.0f} s)\n\n"
    )
    header = ["case", "hostile file", "peak RSS (MB)", "wall (s)", "exit", "hostile file's outcome"]
    out.write(table(rows, [*header, "good file analysed", "within budget"]) + "\n\n")
    out.flush()
    peaks = [c["peak_rss_mb"] for c in cases.values()]
    return {
        "cases": cases,
        "max_peak_rss_mb": max(peaks) if peaks else None,
        "cases_over_budget": sum(not c["within_budget"] for c in cases.values()),
        "good_files_lost": sum(not c["good_file_analysed"] for c in cases.values()),
    }


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK_CASES)}")
    p.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    p.add_argument("--checkpoint", help="checkpoint (default: the bundled demo model, else a built one)")
    return p


def main(argv: list[str] | None = None) -> int:
    from benchmarks._common import ensure_checkpoint

    args = get_parser().parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="cxr-bench-memory-"))
    os.environ.setdefault("CXR_TRIAGE_CACHE", str(work / "cache"))
    ckpt, origin = ensure_checkpoint(
        args.checkpoint, work, backbone="resnet18", attention="att1", input_size=128, base_size=64
    )
    sys.stdout.write(f"# cxr-triage memory benchmark (checkpoint {ckpt.name}, {origin})\n\n")
    # a first run fills the fast path's export cache (python -m benchmarks has filled it already)
    good_png(work / "warm_up")
    run_triage(work / "warm_up", ckpt, work / "warm_up.csv")
    res = run(ckpt, work, sys.stdout, quick=args.quick)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
