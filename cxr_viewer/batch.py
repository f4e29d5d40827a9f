"""Headless batch triage: many files -> one row of findings per file (Qt-free, torch imported lazily).

The pipeline overlaps decoding with inference: a thread pool reads files
(:func:`cxr_viewer.core.io.load_image`) and preprocesses them (the predictor's own ``prepare``) while
the calling thread runs the model on the previous batch (``predict_prepared``; the predictor is any
`cxr_viewer.inference.BatchPredictor`, e.g. ``cral_model.Predictor``). Decoders (Pillow, pydicom's
codecs), torch's resize and the model (PyTorch or ONNX Runtime) release the GIL for their heavy parts,
so threads are enough and nothing is pickled.

A file that cannot be read or analysed becomes a row with its ``error``; the other files go on, and so
does a folder that could not be listed.

The CSV is safe to open in a spreadsheet and to decode as UTF-8 (:func:`write_csv`): file names are any
bytes, so those that are not UTF-8 are written with ``\\xNN`` escapes (:func:`printable_text`), and a text
cell that a spreadsheet would run as a formula is prefixed with ``'`` (:func:`csv_text`).

Rows are sorted by triage score (highest first, see :func:`cxr_viewer.inference.triage_score`),
studies whose DICOM header puts them outside the model's scope (:mod:`cxr_viewer.core.scope`) after the
others, then the error rows in input order.
"""

from __future__ import annotations

import re
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from cxr_viewer.core.io import ImageLoadError, iter_study_files, load_image
from cxr_viewer.core.network_input import network_input
from cxr_viewer.core.reasons import message_of, short_reason
from cxr_viewer.core.scope import not_a_radiograph, scope_warning
from cxr_viewer.inference import TOP_K, BatchPredictor, PredictionLike, rank_findings, triage_score

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Iterable, Iterator, Sequence

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_WORKERS",
    "TriageRow",
    "collect_files",
    "csv_header",
    "csv_text",
    "printable_text",
    "triage_files",
    "write_csv",
]

#: images per forward pass, and decoding threads, unless the caller says otherwise
DEFAULT_BATCH_SIZE = 16
DEFAULT_WORKERS = 2

#: first characters that make a spreadsheet read a cell as a formula (OWASP, "CSV Injection"); line feed
#: too, which some importers drop before looking
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")
#: characters that make a CSV cell need quotes
_NEEDS_QUOTES = re.compile('[,"\r\n]')


@dataclass(frozen=True)
class TriageRow:
    """The result for one file.

    Attributes:
        file: the path as found.
        error: empty when analysed, else a short reason (no patient data).
        probabilities: (K,) float in [0, 1], or None for an error row.
        triage_score: ``max_k p_k / t_k`` (``max_k p_k`` without thresholds), or None for an error row.
        flags: findings at or above their threshold, in triage order (p / t, highest first).
        top8: 8 findings as (name, probability) in triage order (p / t with thresholds, else p): the
            first is the one that drives the triage score, as in the viewer's findings panel.
        warning: why the DICOM header puts the study outside what the model reads (see
            :mod:`cxr_viewer.core.scope`), else empty.
    """

    file: str
    error: str = ""
    probabilities: tuple[float, ...] | None = None
    triage_score: float | None = None
    flags: tuple[str, ...] = ()
    top8: tuple[tuple[str, float], ...] = ()
    warning: str = ""


def collect_files(paths: Iterable[str | os.PathLike[str]]) -> list[tuple[Path, str]]:
    """Files to analyse under ``paths`` (folders recursively, sorted) as (path, skip reason or "").

    A file named on the command line is always listed (with its reason when it is not an image, so it
    gets an error row); inside folders, files that are not images at all (a README, a DICOMDIR) are left
    out silently, the way the viewer's worklist does. Every other reason is kept: an unreadable file, a
    sub-folder that could not be listed or a path too long to open is a row, so nothing vanishes from
    the results and the counts.
    """
    paths = list(paths)
    named = {Path(p) for p in paths if not Path(p).is_dir()}
    out: list[tuple[Path, str]] = []
    for found in iter_study_files(paths):
        reason = found.skip_reason or ""
        if reason and found.path not in named and _not_an_image(reason):
            continue
        out.append((found.path, reason))
    return out


def _not_an_image(reason: str) -> bool:
    """True for the reasons :func:`cxr_viewer.core.io.iter_study_files` gives to files that were read
    and are not images (as opposed to things it could not read or list)."""
    return "not an image" in reason and not reason.startswith("unreadable")


def _load_one(path: Path, prepare: Callable[[np.ndarray], Any]) -> tuple[Any, str, str]:
    """Decode and preprocess one file -> (network input or None, error reason or "", scope warning)."""
    try:
        image = load_image(path)
    except ImageLoadError as exc:
        return None, message_of(exc), ""
    except Exception as exc:  # load_image converts decoder errors; anything else is still per-file
        return None, f"unexpected error while reading: {type(exc).__name__}", ""
    not_film = not_a_radiograph(image)  # a 1 x 1 icon or a strip is not scored like a film
    if not_film:
        return None, not_film, ""
    try:
        return prepare(network_input(image)), "", scope_warning(image.header)
    except Exception as exc:
        return None, short_reason(exc, "cannot preprocess"), ""


def _row(
    path: Path,
    pred: PredictionLike,
    class_names: Sequence[str],
    thresholds: np.ndarray | None,
    warning: str,
) -> TriageRow:
    probs = np.asarray(pred.probabilities, dtype=np.float64).reshape(-1)
    ranked = rank_findings(probs, class_names, thresholds, top_k=None)
    return TriageRow(
        file=str(path),
        warning=warning,
        probabilities=tuple(float(p) for p in probs),
        triage_score=triage_score(probs, thresholds),
        flags=tuple(f.name for f in ranked if f.above_threshold),
        top8=tuple((f.name, f.probability) for f in ranked[:TOP_K]),
    )


def _prepared(
    files: Sequence[tuple[Path, str]], prepare: Callable[[np.ndarray], Any], workers: int, prefetch: int
) -> Iterator[tuple[Path, Any, str, str]]:
    """(path, network input or None, reason, scope warning) in input order; up to ``prefetch`` files
    decoded ahead."""
    if workers <= 0:
        for path, reason in files:
            yield (path, None, reason, "") if reason else (path, *_load_one(path, prepare))
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cxr-decode") as pool:
        queue: deque[tuple[Path, str, Future[tuple[Any, str, str]] | None]] = deque()
        it = iter(files)

        def top_up() -> None:
            while len(queue) < prefetch:
                nxt = next(it, None)
                if nxt is None:
                    return
                path, reason = nxt
                queue.append((path, reason, None if reason else pool.submit(_load_one, path, prepare)))

        top_up()
        try:
            while queue:
                path, reason, fut = queue.popleft()
                top_up()
                yield (path, None, reason, "") if fut is None else (path, *fut.result())
        finally:
            for _, _, fut in queue:
                if fut is not None:
                    fut.cancel()


def triage_files(
    files: Sequence[tuple[Path, str]],
    predictor: BatchPredictor,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int = DEFAULT_WORKERS,
    on_progress: Callable[[int], None] | None = None,
    on_result: Callable[[Path, PredictionLike, TriageRow], None] | None = None,
) -> list[TriageRow]:
    """Analyse files (from :func:`collect_files`) and return their rows, sorted for triage.

    Args:
        files: (path, skip reason) pairs; a non-empty reason gives an error row without reading the file.
        predictor: a `cxr_viewer.inference.BatchPredictor` (``cral_model.Predictor`` is one).
        batch_size: images per forward pass (>= 1).
        workers: decoding threads (0: decode on the calling thread, no overlap).
        on_progress: called with the number of files just finished (for a progress bar).
        on_result: called for each analysed file with its path, the model's prediction (attention maps
            included) and its row, as soon as its batch is done (e.g. to build DICOM results from
            exactly what the CSV reports); not called for error rows. An exception it raises stops
            the run.

    Returns:
        One row per file: analysed rows by descending triage score (those whose DICOM header says they
        are not frontal chest radiographs after the others, with their ``warning``), then error rows
        in input order.
    """
    batch_size = max(1, int(batch_size))
    class_names = tuple(predictor.class_names)
    thresholds = predictor.thresholds
    done: list[TriageRow] = []
    errors: list[TriageRow] = []
    pending: list[tuple[Path, Any, str]] = []

    def infer(items: list[tuple[Path, Any, str]]) -> None:
        try:
            preds = predictor.predict_prepared([x for _, x, _ in items])
        except Exception as exc:  # one bad batch must not stop the run: retry its files one by one
            if len(items) > 1:
                for item in items:
                    infer([item])
                return
            reason = short_reason(exc, "analysis failed")
            errors.append(TriageRow(str(items[0][0]), reason))
        else:
            for (p, _, w), pred in zip(items, preds, strict=True):
                row = _row(p, pred, class_names, thresholds, w)
                done.append(row)
                if on_result is not None:
                    on_result(p, pred, row)

    def flush() -> None:
        if pending:
            infer(list(pending))
            if on_progress is not None:
                on_progress(len(pending))
            pending.clear()

    prefetch = max(2 * batch_size, batch_size + 2 * max(workers, 1))
    for path, x, reason, warning in _prepared(files, predictor.prepare, workers, prefetch):
        if reason:
            errors.append(TriageRow(str(path), reason))
            if on_progress is not None:
                on_progress(1)
            continue
        pending.append((path, x, warning))
        if len(pending) >= batch_size:
            flush()
    flush()
    done.sort(key=lambda r: (bool(r.warning), -(r.triage_score or 0.0), r.file))
    return done + errors


def csv_header(class_names: Sequence[str]) -> list[str]:
    """``file, error, triage_score, prob_<class>..., flags, top8, warning``."""
    return ["file", "error", "triage_score", *(f"prob_{n}" for n in class_names), "flags", "top8", "warning"]


def printable_text(text: str) -> str:
    """``text`` as a string that encodes to UTF-8 whatever it holds.

    File names are bytes: Python hands over those that are not UTF-8 with surrogate escapes
    (``os.fsdecode``), which no UTF-8 stream accepts. Each such byte becomes the four characters
    ``\\xNN``; any other lone surrogate (say from a checkpoint's JSON) becomes ``\\uDNNN``. Other
    characters are left as they are.
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that is not an escaped byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def csv_text(text: str) -> str:
    """A text cell for the CSV: :func:`printable_text`, with a leading ``'`` when it starts like a
    formula (``= + - @``, tab, carriage return or line feed; OWASP's CSV-injection rule), so that a
    spreadsheet shows it as text instead of running it. Numbers are not text cells."""
    text = printable_text(text)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def write_csv(rows: Iterable[TriageRow], class_names: Sequence[str], stream: IO[str]) -> None:
    """Write rows as CSV: probabilities with 6 decimals, ``flags`` ``;``-separated, ``top8`` as
    ``name:probability`` pairs ``;``-separated (probabilities with 4 decimals). Error rows leave the
    numeric columns empty.

    Every text cell goes through :func:`csv_text` (each name in ``flags`` and ``top8`` too, for
    spreadsheets that split cells on ``;``), so the text written always encodes to UTF-8 and no cell
    starts like a formula.
    """
    stream.write(_csv_line([csv_text(h) for h in csv_header(class_names)]))
    for r in rows:
        probs = [f"{p:.6f}" for p in r.probabilities] if r.probabilities else [""] * len(class_names)
        stream.write(
            _csv_line(
                [
                    csv_text(r.file),
                    csv_text(r.error),
                    "" if r.triage_score is None else f"{r.triage_score:.6f}",
                    *probs,
                    csv_text(";".join(csv_text(n) for n in r.flags)),
                    csv_text(";".join(f"{csv_text(n)}:{p:.4f}" for n, p in r.top8)),
                    csv_text(r.warning),
                ]
            )
        )


def _csv_line(cells: Sequence[str]) -> str:
    """One CSV record (RFC 4180 quoting, ``\\n`` at the end). A cell with a comma, a quote, a line feed
    or a carriage return is quoted: `csv.writer` leaves a lone carriage return unquoted when the line
    ends in ``\\n`` (Python 3.11), and a file name may hold one."""
    return ",".join(_quoted(c) if _NEEDS_QUOTES.search(c) else c for c in cells) + "\n"


def _quoted(cell: str) -> str:
    return '"' + cell.replace('"', '""') + '"'
