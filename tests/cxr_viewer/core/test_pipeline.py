"""The study pipeline without Qt or threads: requests asked for, answers given by hand, stale ones dropped."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from helpers.predictions import FakePrediction

from cxr_viewer.core.image import XrayImage
from cxr_viewer.core.io import FoundFile
from cxr_viewer.core.pipeline import (
    ModelStatus,
    PipelineHooks,
    Request,
    RequestKind,
    StudyPipeline,
    StudyStatus,
    findings_message,
    scan_summary,
)
from cxr_viewer.inference import rank_prediction

NAMES = ("Atelectasis", "Effusion", "Nodule")


def _prediction(probs: list[float], thresholds: list[float] | None = (0.5, 0.5, 0.5)) -> FakePrediction:
    att = np.zeros((3, 2, 2), np.float32)
    thr = None if thresholds is None else np.asarray(thresholds, np.float32)
    return FakePrediction(NAMES, np.asarray(probs, np.float32), att, att[0], thr)


def _image(name: str = "a.png") -> XrayImage:
    return XrayImage(np.zeros((64, 64), np.float32), Path(name), "PNG", "L")


@dataclass
class Recorder:
    """Hooks that record every call (the work a window would start, the news it would show)."""

    decodes: list[tuple[int, str]] = field(default_factory=list)
    analyses: list[tuple[int, XrayImage]] = field(default_factory=list)
    scans: list[tuple[int, list[str]]] = field(default_factory=list)
    cancelled_decodes: list[int] = field(default_factory=list)
    cancelled_analyses: list[int] = field(default_factory=list)
    shown: list[int] = field(default_factory=list)
    errors: list[int] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)
    statuses: list[tuple[int, StudyStatus]] = field(default_factory=list)

    def hooks(self) -> PipelineHooks:
        return PipelineHooks(
            scan=lambda rid, paths: self.scans.append((rid, paths)),
            decode=lambda rid, path: self.decodes.append((rid, path)),
            analyse=lambda rid, image: self.analyses.append((rid, image)),
            cancel_decodes=self.cancelled_decodes.append,
            cancel_analyses=self.cancelled_analyses.append,
            status_changed=lambda s: self.statuses.append((s.id, s.status)),
            show_image=lambda s, _image: self.shown.append(s.id),
            show_error=lambda s: self.errors.append(s.id),
            finished=lambda s: self.finished.append(s.id),
        )


def _pipeline(n: int, *, model: ModelStatus = ModelStatus.READY, max_in_flight: int = 2, cache_size: int = 4):
    rec = Recorder()
    pipe = StudyPipeline(
        rec.hooks(), rank_prediction, max_in_flight=max_in_flight, cache_size=cache_size, model_status=model
    )
    assert pipe.scan(["/data/studies"]) == 1
    ((scan_id, paths),) = rec.scans
    assert paths == ["/data/studies"]
    added = pipe.scanned(scan_id, [FoundFile(Path(f"/data/studies/{i}.png")) for i in range(n)])
    assert added is not None and [s.id for s in added] == list(range(1, n + 1))
    return pipe, rec


def test_at_most_max_in_flight_studies_are_decoded_or_analysed() -> None:
    pipe, rec = _pipeline(5, max_in_flight=2)
    pipe.pump()
    assert [p for _, p in rec.decodes] == ["/data/studies/0.png", "/data/studies/1.png"]
    rid, _ = rec.decodes[0]
    pipe.decoded(rid, _image(), np.zeros((4, 4), np.uint8))
    # study 1 is now analysed; the decode of study 2 waits, because 2 slots are busy
    assert len(rec.analyses) == 1 and len(rec.decodes) == 2
    aid, _ = rec.analyses[0]
    pipe.analysis_started(aid)
    assert pipe.studies[1].status is StudyStatus.ANALYSING
    pipe.result(aid, _prediction([0.9, 0.1, 0.2]))
    study = pipe.studies[1]
    assert study.status is StudyStatus.DONE and study.status == "done"
    assert study.score == pytest.approx(1.8)
    assert [f.name for f in study.findings] == ["Atelectasis", "Nodule", "Effusion"]
    assert study.flagged == ["Atelectasis"]
    assert rec.finished == [1]
    assert [p for _, p in rec.decodes][-1] == "/data/studies/2.png"  # its slot went to the next study
    assert not pipe.is_idle()


def test_answers_for_cancelled_requests_are_dropped_and_cancel_reaches_the_workers() -> None:
    pipe, rec = _pipeline(3, max_in_flight=1)
    pipe.pump()
    rid, _ = rec.decodes[0]
    assert pipe.cancel() == 3
    assert {s.status for s in pipe.studies.values()} == {StudyStatus.CANCELLED}
    assert rec.cancelled_decodes and rec.cancelled_analyses  # queued requests skipped in the workers
    pipe.decoded(rid, _image(), np.zeros((4, 4), np.uint8))  # arrives late
    assert pipe.cached_image(1) is None and not rec.analyses
    assert pipe.is_idle()
    pipe.requeue([3, 2, 1])  # the worklist's order
    assert {s.status for s in pipe.studies.values()} == {StudyStatus.QUEUED}
    assert rec.decodes[-1][1] == "/data/studies/2.png"  # study 3 first


def test_the_shown_study_survives_a_cancel_and_is_never_evicted() -> None:
    pipe, rec = _pipeline(3, max_in_flight=1, cache_size=1)
    assert pipe.show(2) is None  # not cached: a display decode is asked for
    display_id, path = rec.decodes[-1]
    assert path == "/data/studies/1.png"
    assert pipe.in_flight()[display_id] == Request(2, RequestKind.DISPLAY, 0)
    pipe.cancel()
    assert display_id in pipe.in_flight()
    assert rec.cancelled_analyses and not rec.cancelled_decodes  # the loader keeps the display decode
    image = _image("b.png")
    pipe.decoded(display_id, image, np.zeros((4, 4), np.uint8))
    assert rec.shown == [2]
    pipe.requeue([1])
    rid = rec.decodes[-1][0]
    pipe.decoded(rid, _image("a.png"), np.zeros((4, 4), np.uint8))  # cache of 1: study 1 would evict 2
    assert pipe.cached_image(2) is image
    assert pipe.show(2) is image  # from the cache, no new request


def test_results_of_a_replaced_model_are_dropped_and_studies_are_analysed_again() -> None:
    pipe, rec = _pipeline(1)
    pipe.pump()
    pipe.decoded(rec.decodes[0][0], _image(), np.zeros((4, 4), np.uint8))
    old_request = rec.analyses[0][0]
    pipe.model_loading()
    pipe.model_ready([1])  # a new model: generation 1
    assert rec.cancelled_analyses[-1] >= old_request
    pipe.result(old_request, _prediction([0.9, 0.9, 0.9]))
    assert pipe.studies[1].prediction is None and pipe.studies[1].status is StudyStatus.QUEUED
    pipe.pump()
    new_request = rec.analyses[-1][0]  # straight from the cache, no second decode
    assert new_request != old_request and len(rec.decodes) == 1
    pipe.result(new_request, _prediction([0.1, 0.2, 0.3]))
    assert pipe.studies[1].status is StudyStatus.DONE and pipe.studies[1].model_generation == 1


def test_without_a_model_decoded_studies_are_viewed_and_failures_are_errors() -> None:
    pipe, rec = _pipeline(2, model=ModelStatus.LOADING)
    pipe.pump()
    (first, _), (second, _) = rec.decodes
    pipe.show(2)
    pipe.decoded(first, _image(), np.zeros((4, 4), np.uint8))
    assert pipe.studies[1].status is StudyStatus.QUEUED  # waiting for the model that is loading
    pipe.decode_failed(second, "cannot read: truncated file")
    assert (
        pipe.studies[2].status is StudyStatus.ERROR
        and pipe.studies[2].reason == "cannot read: truncated file"
    )
    assert rec.errors == [2]  # it was on screen
    pipe.model_unavailable(ModelStatus.MISSING)
    assert pipe.studies[1].status is StudyStatus.VIEWED_NO_MODEL
    assert sorted(rec.finished) == [1, 2]
    with pytest.raises(ValueError, match="without a model"):
        pipe.model_unavailable(ModelStatus.READY)


def test_malformed_output_fails_the_study_and_stale_scans_and_closing_drop_everything() -> None:
    pipe, rec = _pipeline(2)
    pipe.pump()
    pipe.decoded(rec.decodes[0][0], _image(), np.zeros((4, 4), np.uint8))
    bad = FakePrediction(NAMES[:2], np.zeros(3, np.float32), np.zeros((3, 1, 1)), np.zeros((1, 1)), None)
    pipe.result(rec.analyses[0][0], bad)
    assert pipe.studies[1].status is StudyStatus.ERROR
    assert pipe.studies[1].reason.startswith("malformed model output")
    pipe.clear()
    assert pipe.studies == {} and pipe.is_idle()
    pipe.scan(["/more"])
    scan_id = rec.scans[-1][0]
    pipe.close()
    assert pipe.scanned(scan_id, [FoundFile(Path("/more/x.png"))]) is None  # answers after closing: dropped
    assert pipe.scan(["/late"]) == 1 and len(rec.scans) == 2  # and nothing more is asked for


def test_progress_counts_and_messages() -> None:
    pipe, _rec = _pipeline(3)
    assert pipe.progress_counts() == (3, 3)
    study = pipe.studies[1]
    assert findings_message(study, ModelStatus.MISSING, True).startswith("No trained model loaded")
    assert findings_message(study, ModelStatus.READY, True) == "Waiting for the model (queued)..."
    study.findings, study.score = rank_prediction(_prediction([0.9, 0.6, 0.1]))
    study.prediction = _prediction([0.9, 0.6, 0.1])
    assert findings_message(study, ModelStatus.READY, True) == (
        "Triage score 1.80. Above threshold: Atelectasis, Effusion."
    )
    skipped = [FoundFile(Path(f"/d/{i}.txt"), "not an image") for i in range(4)]
    assert scan_summary(1, skipped) == (
        "Added 1 study; skipped 4 file(s) "
        "(0.txt: not an image; 1.txt: not an image; 2.txt: not an image; ...)"
    )


def test_an_image_whose_size_cannot_be_a_radiograph_is_shown_but_not_scored() -> None:
    pipe, rec = _pipeline(2)
    pipe.show(1)
    pipe.pump()
    dot = XrayImage(np.zeros((1, 1), np.float32), Path("dot.png"), "PNG", "L")
    for rid, path in list(rec.decodes):
        pipe.decoded(rid, dot if path.endswith("0.png") else _image(), np.zeros((1, 1), np.uint8))
    study = pipe.studies[1]
    assert study.status is StudyStatus.NOT_SCORED and study.status.finished
    assert study.reason.startswith("image too small to be a radiograph: 1 x 1 px")
    assert rec.shown == [1]  # it is still shown
    assert [image.source.name for _, image in rec.analyses] == ["a.png"]  # only study 2 goes to the model
    assert findings_message(study, ModelStatus.READY, True).startswith("Not scored: image too small")
    pipe.model_ready([1, 2])  # another model: still not scored
    assert study.status is StudyStatus.NOT_SCORED


def test_without_a_model_a_tiny_image_is_viewed_and_a_later_model_does_not_score_it() -> None:
    pipe, rec = _pipeline(1, model=ModelStatus.MISSING)
    pipe.pump()
    dot = XrayImage(np.zeros((1, 1), np.float32), Path("dot.png"), "PNG", "L")
    pipe.decoded(rec.decodes[0][0], dot, np.zeros((1, 1), np.uint8))
    assert pipe.studies[1].status is StudyStatus.VIEWED_NO_MODEL
    pipe.model_ready([1])
    pipe.pump()
    assert pipe.studies[1].status is StudyStatus.NOT_SCORED and not rec.analyses
