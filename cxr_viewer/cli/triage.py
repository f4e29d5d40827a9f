"""``cxr-triage``: analyse files and folders without a window and write one CSV row per file.

Usage::

    cxr-triage FILES_OR_FOLDERS... -o results.csv [--model CHECKPOINT] [--device auto]
               [--batch-size 16] [--workers 2] [--fast | --no-fast] [--threads N] [--no-progress]
               [--dicom-out DIR]
    cxr-triage serve --ae-title AET --port 11112 --accept AET... --destination AET@HOST:PORT --spool DIR
               (the DICOM node: see `cxr_viewer.cli.serve`)

Columns: ``file``, ``error`` (empty when analysed, else why not), ``triage_score``, ``prob_<class>``
for every class, ``flags`` (findings at or above their threshold), ``top8`` and ``warning`` (why the
DICOM header says the study is not a frontal chest radiograph, else empty); rows sorted by triage
score, highest first, studies with a ``warning`` after the others, error rows last.

``--dicom-out DIR`` also writes, for each analysed DICOM input, a DICOM SR (TID 1500: every finding's
probability, threshold and flag, the triage score, the model and its checkpoint's SHA-256) and a
Secondary Capture (the picture with the top findings, map and research notice burned in) into ``DIR``,
in the input's study and new series (`cxr_viewer.results`). A PNG or JPEG input has no study: it gets
its CSV row only, and the closing line counts it.

The CSV is UTF-8; file names that are not UTF-8 are written with ``\\xNN`` escapes and text cells that
start like a spreadsheet formula get a leading ``'`` (see :func:`cxr_viewer.batch.write_csv`).

Output (``-o``), checked before any file is analysed: ``-`` is stdout; a symbolic link is followed and
the file it leads to written; a special file (FIFO, terminal, ``/dev/stdout``, ``/dev/null``) is written
to directly; any other file is written as ``NAME.part`` beside it and renamed over it when complete, and
the ``.part`` is removed if the run fails or is interrupted. A folder, a missing folder or one that
cannot be written is refused with one line before the model is loaded.

Exit status: 0 when it ran, even if some files could not be read (they are rows with an ``error``);
1 when it could not run (no model, a model that does not load, an output that cannot be written);
2 for bad arguments.

Not for clinical use.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import stat
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING

from cxr_viewer import __version__
from cxr_viewer.batch import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_WORKERS,
    collect_files,
    printable_text,
    triage_files,
    write_csv,
)
from cxr_viewer.core.io import quiet_decoder_output
from cxr_viewer.core.reasons import message_of
from cxr_viewer.inference import NOT_FOR_CLINICAL_USE, default_model_path, fast_mode, load_predictor

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

    from cxr_viewer.batch import TriageRow
    from cxr_viewer.inference import BatchPredictor, PredictionLike

__all__ = ["get_parser", "main"]

log = logging.getLogger("cxr_viewer.cli.triage")

#: symbolic links followed at most, as the kernel does (ELOOP beyond)
_MAX_LINKS = 40


def _shown(path: str | os.PathLike[str]) -> str:
    """A path for a message on stderr: bytes that are not UTF-8 as ``\\xNN``, control characters
    escaped (a file name cannot move the cursor or start a new line)."""
    text = printable_text(os.fspath(path))
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def _through_proc(path: Path) -> bool:
    """True when ``path`` reaches its file through ``/proc`` (``/dev/stdout``, ``/dev/fd/1``,
    ``/proc/self/fd/1``, or a link to one): an open file of this process, such as a shell redirection,
    which must be written in place and not replaced by another file."""
    p = os.path.abspath(path)
    for _ in range(_MAX_LINKS):
        parent = os.path.realpath(os.path.dirname(p))
        if parent == "/proc" or parent.startswith("/proc/"):
            return True
        if not os.path.islink(p):
            return False
        p = os.path.join(parent, os.readlink(p))
    return False


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


class _OutputError(Exception):
    """``-o`` names something that cannot be written; the message is the line to show."""


class _CsvOutput:
    """Where the CSV goes: checked (and, for a file, the ``.part`` created) before the run, written once
    at the end, the ``.part`` removed on any failure (use it as a context manager).

    Args:
        spec: the ``-o`` argument.

    Raises:
        _OutputError: a folder, a missing or unwritable folder, a link loop, an unwritable special file.
    """

    def __init__(self, spec: str) -> None:
        self.shown = _shown(spec)
        self._stdout = spec == "-"
        self._direct: Path | None = None  # special file, written in place
        self._final: Path | None = None  # regular file, replaced by the .part
        self._part: Path | None = None
        self._fh: IO[bytes] | None = None
        if self._stdout:
            return
        path = Path(spec)
        try:
            st: os.stat_result | None = path.stat()  # through symbolic links
        except FileNotFoundError:
            st = None
        except OSError as exc:  # a link loop, a file used as a folder, no permission
            raise _OutputError(f"cannot write {self.shown}: {_why(exc)}") from None
        if st is not None and stat.S_ISDIR(st.st_mode):
            example = _shown(path / "results.csv")
            raise _OutputError(f"cannot write {self.shown}: it is a folder; name a file, e.g. {example}")
        if st is not None and (stat.S_ISBLK(st.st_mode) or stat.S_ISSOCK(st.st_mode)):
            raise _OutputError(f"cannot write {self.shown}: a block device or socket, not a CSV file")
        if st is not None and (not stat.S_ISREG(st.st_mode) or _through_proc(path)):
            # a FIFO, a terminal, /dev/null, /dev/stdout: written in place, as a shell would
            if not os.access(path, os.W_OK):
                raise _OutputError(f"cannot write {self.shown}: permission denied")
            self._direct = path
            return
        real = Path(os.path.realpath(path))  # a symbolic link stays; the file it leads to is written
        if not real.parent.is_dir():
            raise _OutputError(f"cannot write {self.shown}: folder {_shown(real.parent)} does not exist")
        self._final = real
        self._part = real.with_name(real.name + ".part")
        try:
            self._fh = open(self._part, "wb")  # noqa: SIM115 (held open for the run, closed in write/discard)
        except OSError as exc:
            self._part = None
            raise _OutputError(f"cannot write {self.shown}: {_why(exc)}") from None

    def write(self, data: bytes) -> None:
        """Write the whole CSV (UTF-8 bytes) and, for a regular file, put it in place.

        Raises:
            OSError: when writing fails (the ``.part`` is then removed by `discard`).
        """
        if self._stdout:
            sys.stdout.flush()
            raw = getattr(sys.stdout, "buffer", None)
            if raw is None:  # a replaced sys.stdout without bytes underneath
                sys.stdout.write(data.decode("utf-8"))
                sys.stdout.flush()
            else:
                raw.write(data)
                raw.flush()
        elif self._direct is not None:
            # append, as the shell's ">>" would: a FIFO or device does not care, and a file behind
            # /dev/stdout keeps what the shell's redirection put there
            with open(self._direct, "ab") as fh:
                fh.write(data)
        elif self._fh is not None and self._part is not None and self._final is not None:
            self._fh.write(data)
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None
            os.replace(self._part, self._final)
            self._part = None

    def discard(self) -> None:
        """Remove the ``.part`` if the CSV was not put in place (idempotent)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._part is not None:
            with contextlib.suppress(FileNotFoundError):
                self._part.unlink()
            self._part = None

    def __enter__(self) -> _CsvOutput:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.discard()


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
    p.add_argument(
        "--dicom-out",
        metavar="DIR",
        help="also write a DICOM SR (TID 1500) and a Secondary Capture for each DICOM input into DIR "
        "(same study, new series; PNG/JPEG inputs have no study and get none)",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the batch triage. Returns the exit status (see the module docstring); 130 on Ctrl-C.

    ``cxr-triage serve ...`` (first argument ``serve``) runs the DICOM node instead
    (`cxr_viewer.cli.serve`); a file named ``serve`` is passed as ``./serve``.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["serve"]:
        from cxr_viewer.cli.serve import main as serve_main

        return serve_main(args[1:])
    try:
        return _main(args)
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
    try:
        output = _CsvOutput(args.output)  # before the model and the files: a bad -o costs nothing
    except _OutputError as exc:
        sys.stderr.write(f"cxr-triage: {exc}\n")
        return 1
    if args.dicom_out:
        try:
            Path(args.dicom_out).mkdir(parents=True, exist_ok=True)
            if not os.access(args.dicom_out, os.W_OK):
                raise PermissionError(13, "permission denied")
        except OSError as exc:
            sys.stderr.write(
                f"cxr-triage: cannot write DICOM results to {_shown(args.dicom_out)}: {_why(exc)}\n"
            )
            return 1
    with output:  # removes the .part on any failure, Ctrl-C included
        return _run(args, model, output)


def _run(args: argparse.Namespace, model: str | os.PathLike[str], output: _CsvOutput) -> int:
    if args.threads:
        import torch

        torch.set_num_threads(max(1, args.threads))
    t0 = time.perf_counter()
    try:
        predictor = load_predictor(model, device=args.device, fast=fast_mode(args.fast))
    except Exception as exc:
        sys.stderr.write(f"cxr-triage: cannot load model {_shown(model)}: {message_of(exc)}\n")
        return 1
    sys.stderr.write(
        f"cxr-triage: model {_shown(Path(model).name)} on {predictor.device} ({predictor.backend}), "
        f"loaded in {time.perf_counter() - t0:.1f} s. {NOT_FOR_CLINICAL_USE}\n"
    )

    files = collect_files(args.paths)
    bar = None
    if args.progress:
        from tqdm import tqdm

        bar = tqdm(total=len(files), unit="img", file=sys.stderr, desc="triage", dynamic_ncols=True)
    dicom = _DicomOut(Path(args.dicom_out), predictor) if args.dicom_out else None
    t1 = time.perf_counter()
    try:
        rows = triage_files(
            files,
            predictor,
            batch_size=args.batch_size,
            workers=args.workers,
            on_progress=bar.update if bar is not None else None,
            on_result=dicom.write if dicom is not None else None,
        )
    finally:
        if bar is not None:
            bar.close()
    elapsed = time.perf_counter() - t1
    text = io.StringIO(newline="")
    write_csv(rows, predictor.class_names, text)
    try:
        output.write(text.getvalue().encode("utf-8"))  # write_csv's text always encodes to UTF-8
    except OSError as exc:
        sys.stderr.write(f"cxr-triage: cannot write {output.shown}: {_why(exc)}\n")
        return 1
    n_err = sum(1 for r in rows if r.error)
    n_flag = sum(1 for r in rows if r.flags)
    n_scope = sum(1 for r in rows if r.warning)
    rate = (len(rows) - n_err) / elapsed if elapsed > 0 else 0.0
    scope = f", {n_scope} not chest per header (listed last)" if n_scope else ""
    sys.stderr.write(
        f"cxr-triage: {len(rows) - n_err} analysed ({n_flag} flagged{scope}), {n_err} not readable, "
        f"{elapsed:.1f} s ({rate:.1f} images/s) -> {output.shown}\n"
    )
    if dicom is not None:
        sys.stderr.write(dicom.summary() + "\n")
    return 0


class _DicomOut:
    """``--dicom-out``: the SR and SC of each analysed DICOM input, written as its batch finishes
    (the file is decoded again for the picture; inputs that are not DICOM are counted, not written)."""

    def __init__(self, folder: Path, predictor: BatchPredictor) -> None:
        from cxr_viewer.inference import attention_region, model_provenance

        self.folder = folder
        self.algorithm = model_provenance(predictor)
        self.region = attention_region(predictor)
        self.written = self.not_dicom = self.failed = 0

    def write(self, path: Path, prediction: PredictionLike, row: TriageRow) -> None:
        from cxr_viewer.core.io import load_image, sniff_format
        from cxr_viewer.results.export import write_dicom_results

        try:
            if sniff_format(path) != "DICOM":
                self.not_dicom += 1
                return
            image = load_image(path)
            write_dicom_results(path, image, prediction, self.algorithm, self.folder, map_region=self.region)
            self.written += 1
        except Exception as exc:  # one file's results must not stop the run; the CSV row stays
            self.failed += 1
            sys.stderr.write(f"cxr-triage: no DICOM results for {_shown(path.name)}: {message_of(exc)}\n")

    def summary(self) -> str:
        """One line: how many results were written, skipped (not DICOM) and failed."""
        extra = f", {self.not_dicom} inputs not DICOM (no study: CSV rows only)" if self.not_dicom else ""
        failed = f", {self.failed} failed" if self.failed else ""
        return (
            f"cxr-triage: DICOM results (SR + SC) for {self.written} images{extra}{failed} "
            f"-> {_shown(self.folder)}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
