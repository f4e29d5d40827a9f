"""``python -m benchmarks.results_dicom``: what the DICOM results (issue 14) cost per image.

For each real DICOM film (RG1, the 1955 x 1841 chest CR; RG3 without ``--quick``), with the bundled demo
model on the CPU (eager PyTorch), the median over repeats of:

- ``read_source``: the source header read again (the viewer's readers, within their budgets);
- ``render``: the burned-in picture (`cxr_viewer.results.render_result`);
- ``SR``: the TID 1500 SR built by highdicom (`cxr_viewer.results.sr.build_sr`);
- ``SC``: the Secondary Capture built by highdicom from the rendered picture;
- ``write``: both written as Part 10 files (`write_results`);

and the two files' sizes. The first call of highdicom loads its tables of the standard (seconds); it is
made once before timing and reported on its own line. Reports only; asserts nothing.

Usage: ``python -m benchmarks.results_dicom [--quick] [--repeats N]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

DICOM = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "dicom"


def _median_ms(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> int:
    """Print the table; 0 unless something crashed (missing data or model: a line saying so, status 0)."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.results_dicom")
    p.add_argument("--quick", action="store_true", help="RG1 only, 2 repeats")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    repeats = 2 if args.quick else max(1, args.repeats)
    names = ["RG1_UNCI.dcm"] if args.quick else ["RG1_UNCI.dcm", "RG3_UNCI.dcm"]
    files = [DICOM.resolve() / n for n in names]
    if not all(f.exists() for f in files):
        sys.stdout.write(f"results_dicom: shared data not available under {DICOM}; nothing measured\n")
        return 0

    from cxr_viewer.core.io import load_image
    from cxr_viewer.inference import (
        attention_region,
        default_model_path,
        load_predictor,
        model_input,
        model_provenance,
        rank_prediction,
    )
    from cxr_viewer.results import read_source, render_result, write_results
    from cxr_viewer.results.dataset import evidence_header
    from cxr_viewer.results.secondary_capture import build_secondary_capture
    from cxr_viewer.results.sr import build_sr

    model = default_model_path()
    if model is None:
        sys.stdout.write("results_dicom: no bundled demo model; nothing measured\n")
        return 0
    predictor = load_predictor(model, device="cpu", fast="off")
    algorithm = model_provenance(predictor)
    region = attention_region(predictor)
    rows = []
    first_call_ms = None
    with tempfile.TemporaryDirectory() as tmp:
        for path in files:
            image = load_image(path)
            prediction = predictor.predict(model_input(image))
            ranked, score = rank_prediction(prediction, top_k=None)
            header = evidence_header(read_source(path, image.format))
            if first_call_ms is None:
                t0 = time.perf_counter()
                build_sr(header, ranked, score, algorithm)
                first_call_ms = (time.perf_counter() - t0) * 1000
            t_src, _ = _median_ms(lambda p=path, i=image: read_source(p, i.format), repeats)
            t_render, rgb = _median_ms(
                lambda i=image, pr=prediction: render_result(i, pr, algorithm=algorithm, map_region=region),
                repeats,
            )
            t_sr, sr = _median_ms(lambda h=header, r=ranked, s=score: build_sr(h, r, s, algorithm), repeats)
            t_sc, sc = _median_ms(lambda h=header, x=rgb: build_secondary_capture(h, x, algorithm), repeats)
            t_write, paths = _median_ms(lambda a=sr, b=sc: write_results((a, b), tmp), repeats)
            sizes = [p.stat().st_size / 1e6 for p in paths]  # type: ignore[union-attr]
            rows.append((path.name, image.shape, t_src, t_render, t_sr, t_sc, t_write, *sizes))

    sys.stdout.write(
        f"DICOM results per image (demo model, CPU; median of {repeats}; first highdicom call "
        f"{first_call_ms:.0f} ms, once per process)\n"
    )
    cols = ("header", "render", "SR", "SC", "write")
    head = f"{'file':<14} {'size':>11} " + " ".join(f"{c:>8}" for c in cols) + f" {'SR MB':>7} {'SC MB':>7}"
    sys.stdout.write(head + "\n" + "-" * len(head) + "\n")
    for name, shape, *vals in rows:
        ms = " ".join(f"{v:7.0f}ms" for v in vals[:5])
        sys.stdout.write(f"{name:<14} {shape[0]:>5}x{shape[1]:<5} {ms} {vals[5]:7.2f} {vals[6]:7.2f}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
