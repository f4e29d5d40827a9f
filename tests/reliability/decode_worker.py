"""Child process of the reader fuzz harness: a file of JSON paths (one a line) -> one JSON result a line.

Statuses: ``ok`` (a valid image that the display pipeline can window), ``error`` (a typed
ImageLoadError with a short readable one-line reason), or ``FAIL-...`` for anything else: another
exception type, an unreadable message, an invalid image, or a MemoryError reached inside a decoder
(an allocation that the size limits should have prevented).

Every result also carries ``peak_rss``: the highest resident set size of this process while it handled
that one file, in bytes (``VmHWM`` from /proc/self/status, reset before each file by writing ``5`` to
/proc/self/clear_refs; where that is not possible, the process's peak so far, an upper bound), and
``rss_after``, its RSS once the file's objects are collected and freed memory is given back, against
``idle_rss`` (after the warm-up): what a file leaves behind. The harness compares the peak with the
memory budget (`reliability_helpers.MEMORY_BUDGET`) and restarts a worker that has kept too much.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import json
import os
import resource
import sys
import time
import warnings

PATIENT_MARKERS = ("Zyxwvut", "Qqqqq", "8675309")


def _check(path: str) -> tuple[str, str]:
    import numpy as np

    from cxr_viewer.core.io import MAX_PIXELS, ImageLoadError, load_image
    from cxr_viewer.core.windowing import apply_window, auto_window

    try:
        img = load_image(path)
    except ImageLoadError as exc:
        msg = str(exc)
        if type(exc) is ImageLoadError:
            return "FAIL-untyped", msg
        if isinstance(exc.__cause__, MemoryError) or "for memory" in msg:
            return "FAIL-memory", msg
        if not msg or len(msg) > 300 or "\n" in msg or not msg.isprintable():
            return "FAIL-unreadable-message", repr(msg[:300])
        if any(m in msg for m in PATIENT_MARKERS):  # the DICOM seeds carry these in PatientName/ID
            return "FAIL-patient-data-in-message", "(message withheld)"
        return "error", f"{type(exc).__name__}: {msg}"
    except BaseException as exc:
        return "FAIL-exception", f"{type(exc).__name__}: {str(exc)[:200]}"
    px = img.pixels
    if px.ndim != 2 or px.dtype != np.float32 or px.size == 0 or px.size > MAX_PIXELS:
        return "FAIL-invalid-image", f"{px.shape} {px.dtype}"
    if not np.isfinite(px).all():
        return "FAIL-invalid-image", "non-finite pixels"
    try:
        center, width = img.window if img.window is not None else auto_window(px)
        disp = apply_window(px, center, width)
    except BaseException as exc:
        return "FAIL-window", f"{type(exc).__name__}: {str(exc)[:200]}"
    if not (np.isfinite(disp).all() and disp.min() >= 0 and disp.max() <= 1):
        return "FAIL-window", "display values outside [0, 1]"
    return "ok", f"{img.format} {px.shape[1]}x{px.shape[0]}"


def trim() -> None:
    """Free what the last file left (exceptions keep frames and arrays in reference cycles) and give
    the freed heap back to the system (glibc), so that the next file starts from the baseline."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL(None).malloc_trim(0)


def _status_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1])
    raise ValueError(field)


def rss() -> int:
    """This process's resident set size now, in bytes (0 where /proc is missing)."""
    try:
        return _status_kb("VmRSS:") * 1024
    except (OSError, ValueError):
        return 0


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (``VmHWM``) to its current RSS (Linux >= 4.0); False where not
    possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def peak_rss(resettable: bool = True) -> int:
    """Peak RSS in bytes since the last reset (of the whole process when ``resettable`` is False)."""
    if resettable:
        try:
            return _status_kb("VmHWM:") * 1024
        except (OSError, ValueError):
            pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def _warm_up() -> None:
    """Import the readers and their decoders now, so that no file's peak is an import's; then freeze
    what exists (`gc.freeze`), so that the collection after each file only looks at that file's objects."""
    import numpy  # noqa: F401
    import PIL.Image
    import pydicom  # noqa: F401
    from pydicom.pixels.utils import pixel_array  # noqa: F401

    import cxr_viewer.core.io
    import cxr_viewer.core.windowing  # noqa: F401

    PIL.Image.init()
    for name in ("pylibjpeg", "openjpeg", "libjpeg", "rle", "jpeg_ls"):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    gc.collect()
    gc.freeze()


def main() -> None:
    limit = int(os.environ.get("CXR_RELIABILITY_MEMORY_LIMIT", "0"))
    if limit:  # an address-space backstop only: the budget is watched on the resident set size
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    warnings.simplefilter("ignore")  # decoders warn about damaged files; results are what counts
    with open(sys.argv[1], encoding="utf-8") as fh:
        paths = [json.loads(line) for line in fh]
    _warm_up()
    trim()
    idle = rss()
    for path in paths:
        resettable = reset_peak_rss()
        t0 = time.perf_counter()
        status, detail = _check(path)
        seconds = time.perf_counter() - t0
        peak = peak_rss(resettable)
        trim()
        out = {
            "status": status,
            "detail": detail,
            "seconds": seconds,
            "peak_rss": peak,
            "idle_rss": idle,  # after the warm-up
            "rss_after": rss(),  # after this file, garbage collected and trimmed: above idle = kept
        }
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
