"""Child process of the reader fuzz harness: a file of JSON paths (one a line) -> one JSON result a line.

Statuses: ``ok`` (a valid image that the display pipeline can window), ``error`` (a typed
ImageLoadError with a short readable one-line reason), or ``FAIL-...`` for anything else: another
exception type, an unreadable message, an invalid image, or a MemoryError reached inside a decoder
(an allocation that the size limits should have prevented).
"""

from __future__ import annotations

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


def main() -> None:
    limit = int(os.environ.get("CXR_RELIABILITY_MEMORY_LIMIT", "0"))
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    warnings.simplefilter("ignore")  # decoders warn about damaged files; results are what counts
    with open(sys.argv[1], encoding="utf-8") as fh:
        paths = [json.loads(line) for line in fh]
    for path in paths:
        t0 = time.perf_counter()
        status, detail = _check(path)
        out = {"status": status, "detail": detail, "seconds": time.perf_counter() - t0}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
