"""``cxr-triage``: analyse files and folders without a window and write one CSV row per file.

Usage::

    cxr-triage FILES_OR_FOLDERS... -o results.csv [--model CHECKPOINT] [--device auto]
               [--batch-size 16] [--workers 2] [--fast | --no-fast] [--threads N] [--no-progress]

Columns: ``file``, ``error`` (empty when analysed, else why not), ``triage_score``, ``prob_<class>``
for every class, ``flags`` (findings at or above their threshold), ``top8`` and ``warning`` (why the
DICOM header says the study is not a frontal chest radiograph, else empty); rows sorted by triage
score, highest first, studies with a ``warning`` after the others, error rows last. ``-o -`` writes to
stdout.

Exit status: 0 when it ran, even if some files could not be read (they are rows with an ``error``);
1 when it could not run (no model, a model that does not load, an output that cannot be written);
2 for bad arguments.

Not for clinical use.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from cxr_viewer import __version__
from cxr_viewer.batch import DEFAULT_BATCH_SIZE, DEFAULT_WORKERS, collect_files, triage_files, write_csv
from cxr_viewer.core.io import quiet_decoder_output
from cxr_viewer.core.reasons import message_of
from cxr_viewer.inference import NOT_FOR_CLINICAL_USE, default_model_path, fast_mode, load_predictor

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["get_parser", "main"]

log = logging.getLogger("cxr_viewer.cli.triage")


def get_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    p = argparse.ArgumentParser(
        prog="cxr-triage",
        description="Batch chest X-ray triage to CSV (research demonstration, not for clinical use).",
    )
    p.add_argument(
        "paths", nargs="+", metavar="FILE_OR_FOLDER", help="images (DICOM, PNG, JPEG...) or folders"
    )
    p.add_argument(
        "-o", "--output", required=True, metavar="results.csv", help="CSV file to write ('-': stdout)"
    )
    p.add_argument(
        "--model",
        metavar="CHECKPOINT",
        help="a cral-train checkpoint (*.safetensors); default: $CXR_TRIAGE_MODEL or the bundled demo model",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1... (default: %(default)s)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help="images per forward pass (default: %(default)s)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        help="decoding threads; 0 decodes inline (default: %(default)s)",
    )
    p.add_argument(
        "--fast",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="CPU fast path (ONNX Runtime) when available; --no-fast runs eager PyTorch "
        "(default: on, unless $CXR_TRIAGE_FAST=off)",
    )
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the model (default: all cores)")
    p.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bar on stderr"
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the batch triage. Returns the exit status (see the module docstring); 130 on Ctrl-C."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        sys.stderr.write("\ncxr-triage: interrupted; no results written\n")
        return 130


def _main(argv: Sequence[str] | None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be >= 1")
    if args.workers < 0:
        parser.error("--workers must be >= 0")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    quiet_decoder_output()  # no header values (patient data) or redundant decoder warnings on stderr

    model = args.model or default_model_path()
    if model is None:
        sys.stderr.write("cxr-triage: no model: pass --model CHECKPOINT or set $CXR_TRIAGE_MODEL\n")
        return 1
    if args.threads:
        import torch

        torch.set_num_threads(max(1, args.threads))
    t0 = time.perf_counter()
    try:
        predictor = load_predictor(model, device=args.device, fast=fast_mode(args.fast))
    except Exception as exc:
        sys.stderr.write(f"cxr-triage: cannot load model {model}: {message_of(exc)}\n")
        return 1
    sys.stderr.write(
        f"cxr-triage: model {Path(model).name} on {predictor.device} ({predictor.backend}), "
        f"loaded in {time.perf_counter() - t0:.1f} s. {NOT_FOR_CLINICAL_USE}\n"
    )

    files = collect_files(args.paths)
    bar = None
    if args.progress:
        from tqdm import tqdm

        bar = tqdm(total=len(files), unit="img", file=sys.stderr, desc="triage", dynamic_ncols=True)
    t1 = time.perf_counter()
    try:
        rows = triage_files(
            files,
            predictor,
            batch_size=args.batch_size,
            workers=args.workers,
            on_progress=bar.update if bar is not None else None,
        )
    finally:
        if bar is not None:
            bar.close()
    elapsed = time.perf_counter() - t1
    try:
        if args.output == "-":
            write_csv(rows, predictor.class_names, sys.stdout)
            sys.stdout.flush()
        else:
            out = Path(args.output)
            tmp = out.with_name(out.name + ".part")
            with open(tmp, "w", encoding="utf-8", newline="") as fh:
                write_csv(rows, predictor.class_names, fh)
            os.replace(tmp, out)
    except OSError as exc:
        sys.stderr.write(f"cxr-triage: cannot write {args.output}: {exc.strerror or exc}\n")
        return 1
    n_err = sum(1 for r in rows if r.error)
    n_flag = sum(1 for r in rows if r.flags)
    n_scope = sum(1 for r in rows if r.warning)
    rate = (len(rows) - n_err) / elapsed if elapsed > 0 else 0.0
    scope = f", {n_scope} not chest per header (listed last)" if n_scope else ""
    sys.stderr.write(
        f"cxr-triage: {len(rows) - n_err} analysed ({n_flag} flagged{scope}), {n_err} not readable, "
        f"{elapsed:.1f} s ({rate:.1f} images/s) -> {args.output}\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
