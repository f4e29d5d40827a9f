"""The triage worker: a study whose instances stopped coming is analysed, and its results queued.

A study is *ready* when it has instances not triaged yet and none of its instances came in the last
``quiet_seconds`` (`cxr_viewer.node.journal.Journal.ready_studies`). Its pending instances go through
the same path as ``cxr-triage``: `cxr_viewer.batch.triage_files` with the predictor that
`cxr_viewer.inference.load_predictor` loaded, so the node's probabilities are the CSV's for the same
file. For each analysed image, `cxr_viewer.results.build_results` makes the SR and the Secondary
Capture from that very prediction; they are written to the spool and, in one journal transaction with
the instances' ``triaged`` mark, queued for the sender. A crash before that commit leaves the instances
``received`` (they are triaged again after the restart, and the result files are rewritten under the
same derived UIDs); a crash after it leaves them ``triaged`` (never again).

An image that cannot be analysed (unreadable pixels, not a radiograph, no study) is marked triaged with
its reason and no results; the study's other images go on.
"""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxr_viewer.batch import TriageRow, triage_files
from cxr_viewer.core.io import load_image
from cxr_viewer.core.reasons import short_reason
from cxr_viewer.inference import attention_region, model_provenance
from cxr_viewer.node.journal import QueuedResult, TriageOutcome
from cxr_viewer.node.status import triaged_line

if TYPE_CHECKING:
    from cxr_viewer.inference import BatchPredictor, PredictionLike
    from cxr_viewer.node.config import NodeConfig
    from cxr_viewer.node.journal import Journal
    from cxr_viewer.node.spool import Spool

__all__ = ["TriageWorker"]

log = logging.getLogger("cxr_viewer.node")


def _encoded(ds: Any) -> bytes:
    """A result data set as a DICOM Part 10 file (preamble, file meta), in memory."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


class TriageWorker:
    """Triages ready studies (call `run_once` from one thread: the predictor is used only there).

    Args:
        config: the node's configuration.
        journal: the state.
        spool: the folders.
        predictor: a loaded `cxr_viewer.inference.BatchPredictor`.
    """

    def __init__(self, config: NodeConfig, journal: Journal, spool: Spool, predictor: BatchPredictor) -> None:
        self.config = config
        self.journal = journal
        self.spool = spool
        self.predictor = predictor
        self.provenance = model_provenance(predictor)  # hashes the checkpoint once
        self.region = attention_region(predictor)

    def run_once(self, now: float | None = None) -> int:
        """Triage every study that is ready now; returns how many instances were triaged."""
        done = 0
        for study in self.journal.ready_studies(self.config.quiet_seconds, now):
            done += self.triage_study(study)
        return done

    def triage_study(self, study_uid: str) -> int:
        """Triage the study's pending instances and queue their results; returns how many were committed."""
        pending = self.journal.pending_instances(study_uid)
        if not pending:
            return 0
        t0 = time.perf_counter()
        by_path = {str(Path(p.path)): p.sop_uid for p in pending}
        queued: list[QueuedResult] = []
        result_errors: dict[str, str] = {}

        def on_result(path: Path, prediction: PredictionLike, row: TriageRow) -> None:
            sop = by_path[str(path)]
            try:
                queued.extend(self._results(sop, path, prediction))
            except Exception as exc:  # one image's results must not stop the study
                result_errors[sop] = short_reason(exc, "no DICOM results")

        try:
            rows = triage_files(
                [(Path(p.path), "") for p in pending],
                self.predictor,
                batch_size=self.config.batch_size,
                workers=self.config.workers,
                on_result=on_result,
            )
        except Exception as exc:  # the model itself failed: the study is not retried for ever
            reason = short_reason(exc, "analysis failed")
            rows = [TriageRow(p.path, reason) for p in pending]
            queued.clear()
        outcomes = []
        for row in rows:
            sop = by_path[str(Path(row.file))]
            error = row.error or result_errors.get(sop, "")
            outcomes.append(TriageOutcome(sop, error, row.triage_score if not row.error else None))
        n = self.journal.commit_triage(outcomes, queued, study_uid)
        analysed = [r for r in rows if not r.error]
        scores = [r.triage_score for r in analysed if r.triage_score is not None]
        flagged = sorted({f for r in analysed for f in r.flags})
        log.info(
            "%s",
            triaged_line(
                study_uid,
                len(analysed),
                [o.error for o in outcomes if o.error],
                time.perf_counter() - t0,
                max(scores) if scores else None,
                flagged,
                len(queued),
                str(self.config.destination),
            ),
        )
        return n

    def _results(self, sop_uid: str, path: Path, prediction: PredictionLike) -> list[QueuedResult]:
        """Build, write and describe the SR and SC of one analysed instance."""
        from cxr_viewer.results import build_results, read_source

        image = load_image(path)  # decoded again: the batch path keeps network inputs, not images
        sr, sc = build_results(
            read_source(path, image.format), image, prediction, None, self.provenance, map_region=self.region
        )
        out = []
        for kind, ds in (("SR", sr), ("SC", sc)):
            dest = self.spool.result_path(sop_uid, kind)
            self.spool.write_atomic(dest, _encoded(ds))
            out.append(QueuedResult(sop_uid, kind, str(ds.SOPClassUID), str(ds.SOPInstanceUID), str(dest)))
        return out
