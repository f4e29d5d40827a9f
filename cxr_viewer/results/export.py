"""Export the results of analysed studies: DICOM SR + SC, a CSV and a one-page summary (no Qt).

What File > Export results (Ctrl+E) runs on its worker thread, and what ``cxr-triage --dicom-out``
uses for each file (:func:`write_dicom_results`).

- DICOM: for each study whose source is a DICOM file, its SR and Secondary Capture
  (`cxr_viewer.results.build_results`) in the output folder. A source that is not DICOM (PNG, JPEG...)
  has no study to file into: it is listed as a failure with that reason, and its CSV row and summary
  line are still written.
- CSV: ``cxr_triage_results.csv``, the columns and rules of ``cxr-triage``'s CSV
  (`cxr_viewer.batch.write_csv`), one row per study (a study without a result has its ``error``).
- Summary: ``cxr_triage_summary.png`` and/or ``.pdf`` (`cxr_viewer.results.summary`).

One study's failure is one entry of `ExportReport.failures` (file name, reason without patient data);
the others go on. Nothing is written outside the output folder.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from cxr_viewer.batch import TriageRow, write_csv
from cxr_viewer.core.io import ImageLoadError, load_image
from cxr_viewer.core.reasons import message_of, short_reason
from cxr_viewer.core.scope import scope_warning
from cxr_viewer.inference import TOP_K, rank_findings, triage_score
from cxr_viewer.results import build_results, read_source, render_result, write_results
from cxr_viewer.results.dataset import ResultsError
from cxr_viewer.results.summary import SummaryRow, write_summary

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Sequence

    from cxr_viewer.core.image import XrayImage
    from cxr_viewer.core.prediction import PredictionLike
    from cxr_viewer.inference import ModelProvenance

__all__ = [
    "CSV_NAME",
    "SUMMARY_STEM",
    "ExportFormat",
    "ExportItem",
    "ExportReport",
    "export_results",
    "write_dicom_results",
]

CSV_NAME = "cxr_triage_results.csv"
SUMMARY_STEM = "cxr_triage_summary"


class ExportFormat(str, Enum):
    """What an export writes."""

    DICOM = "dicom"  # SR + Secondary Capture per DICOM study
    CSV = "csv"
    SUMMARY_PNG = "png"
    SUMMARY_PDF = "pdf"


@dataclass(frozen=True)
class ExportItem:
    """One study to export.

    Attributes:
        path: its file.
        prediction: the model's answer, or None when it has none (then ``reason`` says why).
        image: the decoded image when the caller has it (else it is read again from ``path``).
        reason: why it has no prediction ("not analysed", the decoder's error...).
    """

    path: Path
    prediction: PredictionLike | None
    image: XrayImage | None = None
    reason: str = ""


@dataclass(frozen=True)
class ExportReport:
    """What an export did.

    Attributes:
        written: the files written, in order.
        failures: (file name, reason) for each study or file that could not be exported.
        studies: how many studies were asked for.
    """

    written: tuple[Path, ...]
    failures: tuple[tuple[str, str], ...]
    studies: int

    def message(self) -> str:
        """A short text for the window: counts, then one line per failure (at most 20)."""
        lines = [f"{len(self.written)} files written for {self.studies} studies."]
        if self.failures:
            lines.append(f"{len(self.failures)} not exported:")
            lines += [f"  {name}: {reason}" for name, reason in self.failures[:20]]
            if len(self.failures) > 20:
                lines.append(f"  ... and {len(self.failures) - 20} more")
        return "\n".join(lines)


def write_dicom_results(
    path: Path,
    image: XrayImage,
    prediction: PredictionLike,
    algorithm: ModelProvenance,
    out_dir: str | os.PathLike[str],
    *,
    map_region: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0),
) -> list[Path]:
    """The SR and SC of one analysed file, written into ``out_dir``.

    Raises:
        NoSourceStudyError: when ``image`` was not read from a DICOM file.
        ResultsError: when the source cannot be read again or has no study UIDs.
        OSError: when the files cannot be written.
    """
    source = read_source(path, image.format)
    sr, sc = build_results(source, image, prediction, None, algorithm, map_region=map_region)
    return write_results((sr, sc), out_dir)


def _row(item: ExportItem, image: XrayImage | None) -> TriageRow:
    pred = item.prediction
    if pred is None:
        return TriageRow(str(item.path), item.reason or "not analysed")
    ranked = rank_findings(pred.probabilities, pred.class_names, pred.thresholds, top_k=None)
    return TriageRow(
        file=str(item.path),
        warning=scope_warning(image.header) if image is not None else "",
        probabilities=tuple(float(p) for p in pred.probabilities),
        triage_score=triage_score(pred.probabilities, pred.thresholds),
        flags=tuple(f.name for f in ranked if f.above_threshold),
        top8=tuple((f.name, f.probability) for f in ranked[:TOP_K]),
    )


def _replace_file(dest: Path, data: bytes) -> None:
    tmp = dest.with_name(dest.name + ".part")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def export_results(
    items: Sequence[ExportItem],
    out_dir: str | os.PathLike[str],
    formats: Collection[ExportFormat],
    algorithm: ModelProvenance | None,
    *,
    class_names: Sequence[str] = (),
    map_region: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0),
    on_progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> ExportReport:
    """Export studies (blocking; the viewer runs it on a worker thread).

    Args:
        items: the studies, in the worklist's order.
        out_dir: the folder (created when missing).
        formats: what to write.
        algorithm: the model's provenance; None (no model) leaves DICOM out with a failure line.
        class_names: the model's classes, for the CSV header (default: the first prediction's).
        map_region: the part of the image the model's maps cover (`cxr_viewer.inference.attention_region`).
        on_progress: called with ``(done, total)`` after each study.
        cancelled: polled before each study; True stops the export (what is written stays).

    Returns:
        The files written and the failures.

    Raises:
        OSError: when the output folder cannot be created.
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    fmts = set(formats)
    written: list[Path] = []
    failures: list[tuple[str, str]] = []
    rows: list[TriageRow] = []
    summary: list[tuple[SummaryRow, ExportItem]] = []
    needs_image = bool(fmts & {ExportFormat.DICOM, ExportFormat.SUMMARY_PNG, ExportFormat.SUMMARY_PDF})
    for n, item in enumerate(items, 1):
        if cancelled is not None and cancelled():
            failures.append(("(export)", f"cancelled after {n - 1} of {len(items)} studies"))
            break
        name = item.path.name
        image = item.image
        reason = item.reason or ("" if item.prediction is not None else "not analysed")
        if item.prediction is not None and image is None and needs_image:
            try:
                image = load_image(item.path)
            except ImageLoadError as exc:
                reason = message_of(exc)
            except Exception as exc:
                reason = short_reason(exc, "cannot read")
        if reason and item.prediction is not None:  # analysed, but the file cannot be read again
            failures.append((name, reason))
        row = _row(item, image) if not reason else TriageRow(str(item.path), reason)
        rows.append(row)
        flags = row.flags
        summary.append(
            (
                SummaryRow(
                    name=name,
                    triage_score=row.triage_score,
                    flags=flags,
                    top=f"{row.top8[0][0].replace('_', ' ')} {row.top8[0][1]:.2f}" if row.top8 else "",
                    reason=reason,
                ),
                ExportItem(item.path, item.prediction, image, reason),
            )
        )
        prediction = item.prediction
        if prediction is None and ExportFormat.DICOM in fmts:
            failures.append((name, reason))
        elif ExportFormat.DICOM in fmts and prediction is not None and image is not None and not reason:
            if algorithm is None:
                failures.append((name, "no model loaded: no DICOM results"))
            else:
                try:
                    written += write_dicom_results(
                        item.path, image, prediction, algorithm, folder, map_region=map_region
                    )
                except ResultsError as exc:
                    failures.append((name, str(exc)))
                except OSError as exc:
                    failures.append((name, f"cannot write: {exc.strerror or type(exc).__name__}"))
                except Exception as exc:  # one study's failure must not stop the export
                    failures.append((name, short_reason(exc, "DICOM results failed")))
        if on_progress is not None:
            on_progress(n, len(items))

    if ExportFormat.CSV in fmts:
        names = list(class_names) or next(
            (list(i.prediction.class_names) for i in items if i.prediction is not None), []
        )
        done = sorted(
            (r for r in rows if not r.error), key=lambda r: (bool(r.warning), -(r.triage_score or 0.0))
        )
        text = io.StringIO(newline="")
        write_csv(done + [r for r in rows if r.error], names, text)
        dest = folder / CSV_NAME
        try:
            _replace_file(dest, text.getvalue().encode("utf-8"))
            written.append(dest)
        except OSError as exc:
            failures.append((CSV_NAME, f"cannot write: {exc.strerror or type(exc).__name__}"))

    summary_formats = [f for f in (ExportFormat.SUMMARY_PNG, ExportFormat.SUMMARY_PDF) if f in fmts]
    if summary_formats:
        ordered = sorted(summary, key=lambda s: (s[0].triage_score is None, -(s[0].triage_score or 0.0)))
        picture, pictured = None, ""
        first = next((it for row, it in ordered if not row.reason and it.image is not None), None)
        if first is not None and first.prediction is not None and first.image is not None:
            try:
                picture = render_result(
                    first.image, first.prediction, algorithm=algorithm, map_region=map_region
                )
                pictured = first.path.name
            except Exception as exc:
                failures.append((first.path.name, short_reason(exc, "cannot render its picture")))
        model = f"{algorithm.name} {algorithm.version} ({algorithm.checkpoint})" if algorithm else "no model"
        for fmt in summary_formats:
            dest = folder / f"{SUMMARY_STEM}.{fmt.value}"
            try:
                write_summary(dest, [r for r, _ in ordered], picture, model=model, picture_name=pictured)
                written.append(dest)
            except OSError as exc:
                failures.append((dest.name, f"cannot write: {exc.strerror or type(exc).__name__}"))
    return ExportReport(tuple(written), tuple(failures), len(items))
