"""The worklist's study pipeline, without Qt: what to decode and analyse next, and which answers count.

Road of one study: scan (the dropped paths are walked) -> decode (file -> `XrayImage` + thumbnail) ->
analyse (the model) -> done or error. The pipeline decides and remembers; it does no work itself. It
asks for work through :class:`PipelineHooks` (the main window connects those to its loader and
inference threads) and is told the answers through plain calls (``scanned``, ``decoded``, ``result``...).

- At most ``max_in_flight`` studies are between decode and result at any time, so a drop of a thousand
  files does not hold a thousand decoded images.
- Every request has an id; the pipeline keeps the ids it still wants (:class:`Request`, with the model
  generation it was made for). An answer with any other id (cancelled, cleared, closed, or computed by a
  model that has since been replaced) is dropped.
- Decoded images are kept in a small LRU cache (the shown study is never the one evicted).
- The study on screen gets its own ``DISPLAY`` decode request, which survives a cancel (so does the
  ``PRIOR`` decode of the image shown beside it for comparison).
- One entry (``Study``) is one *file*: `cxr_viewer.core.studies` groups them into DICOM studies and
  patients (``Study.facts``, from the name at the scan and from the header once read). The same file
  dropped twice is not added again, and a file whose ``SOPInstanceUID`` is already in the worklist is
  dropped once read, before it is analysed (``hooks.duplicate``).
"""

from __future__ import annotations

import os
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, NamedTuple

from cxr_viewer.core.findings import Finding
from cxr_viewer.core.prediction import PredictionLike
from cxr_viewer.core.scope import not_a_radiograph, scope_warning
from cxr_viewer.core.studies import ImageFacts, facts_for_file, facts_for_header

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

    from cxr_viewer.core.image import XrayImage
    from cxr_viewer.core.io import FoundFile

__all__ = [
    "ModelStatus",
    "PipelineHooks",
    "Request",
    "RequestKind",
    "Study",
    "StudyPipeline",
    "StudyStatus",
    "findings_message",
    "scan_summary",
]


class _TextEnum(str, Enum):
    """An enum whose members are their text (they compare equal to it and print as it)."""

    def __str__(self) -> str:
        return str(self.value)


class StudyStatus(_TextEnum):
    """Where a study is; the value is the text the worklist shows (and compares equal to it)."""

    QUEUED = "queued"
    ANALYSING = "analysing"
    DONE = "done"
    VIEWED_NO_MODEL = "viewed (no model)"
    CANCELLED = "cancelled"
    NOT_SCORED = "not scored"  # shown, but its size cannot be a radiograph's (core.scope.not_a_radiograph)
    ERROR = "error"

    @property
    def finished(self) -> bool:
        """Nothing more will happen to the study unless the user asks (or another model is loaded)."""
        return self in _FINISHED


_FINISHED = frozenset(
    {
        StudyStatus.DONE,
        StudyStatus.VIEWED_NO_MODEL,
        StudyStatus.CANCELLED,
        StudyStatus.NOT_SCORED,
        StudyStatus.ERROR,
    }
)
#: statuses of studies still waiting for the model (what the progress bar counts)
_WAITING = frozenset({StudyStatus.QUEUED, StudyStatus.ANALYSING})


class ModelStatus(_TextEnum):
    """The model's state: loading, ready, or none (missing: no checkpoint; failed: it did not load)."""

    LOADING = "loading"
    READY = "ready"
    MISSING = "missing"
    FAILED = "failed"

    @property
    def unavailable(self) -> bool:
        """No model and none coming: studies are viewed without findings."""
        return self in (ModelStatus.MISSING, ModelStatus.FAILED)


class RequestKind(_TextEnum):
    """What a request asked a worker for."""

    SCAN = "scan"  # walk dropped paths
    DECODE = "decode"  # read a study for the pipeline (thumbnail, then analysis)
    DISPLAY = "display"  # read the study the user wants to see
    PRIOR = "prior"  # read the image shown beside it (current and prior side by side)
    ANALYSE = "analyse"  # run the model


class Request(NamedTuple):
    """A request the pipeline still wants answered."""

    study_id: int  # -1 for a scan
    kind: RequestKind
    generation: int  # the model generation it was made under


@dataclass(eq=False)
class Study:
    """One image (file) of the worklist (no pixels: decoded images live in the pipeline's small cache).

    ``facts`` says which DICOM study and patient it belongs to (`cxr_viewer.core.studies`).
    """

    id: int
    path: Path
    status: StudyStatus = StudyStatus.QUEUED
    reason: str = ""  # why it failed (log-safe, no patient data)
    thumbnail: np.ndarray | None = None
    prediction: PredictionLike | None = None
    findings: list[Finding] = field(default_factory=list)
    score: float | None = None
    model_generation: int = -1  # which loaded model produced ``prediction``
    notes: tuple[str, ...] = ()
    out_of_scope: str = ""  # why the header says this is not a frontal chest radiograph (core.scope)
    not_film: str = ""  # why its size cannot be a radiograph's (core.scope.not_a_radiograph): never scored
    facts: ImageFacts | None = None  # its study and patient (core.studies); set when it is added

    @property
    def name(self) -> str:
        """File name."""
        return self.path.name

    @property
    def flagged(self) -> list[str]:
        """Display names of the findings at or above their threshold, in triage order."""
        return [f.display_name for f in self.findings if f.above_threshold]


def findings_message(study: Study, model: ModelStatus, thresholds_known: bool) -> str:
    """The line above a study's findings: its triage score and flags, or why there are none yet."""
    if study.status is StudyStatus.NOT_SCORED:
        return f"Not scored: {study.reason}."
    if study.prediction is None or study.score is None:
        if model.unavailable:
            return "No trained model loaded: findings are not available."
        if study.status is StudyStatus.CANCELLED:
            return "Analysis cancelled (Analysis > Analyse remaining)."
        return f"Waiting for the model ({study.status})..."
    above = study.flagged
    text = f"Triage score {study.score:.2f}. " + (
        f"Above threshold: {', '.join(above)}." if above else "No finding above its threshold."
    )
    if not thresholds_known:
        text = f"Triage score {study.score:.2f} (model has no thresholds)."
    if study.out_of_scope:
        text = (
            f"\u26a0 Out of scope ({study.out_of_scope}): these scores mean nothing for this study, "
            f"which is listed after the chest studies. {text}"
        )
    return text


def scan_summary(added: int, skipped: Sequence[FoundFile], already: int = 0) -> str:
    """``"Added 3 studies; skipped 1 file(s) (notes.txt: not an image)"`` (three examples at most;
    "studies" counts files, as the worklist did before it grouped them); ``already``: files that were
    already in the worklist (not added again)."""
    text = f"Added {added} stud{'y' if added == 1 else 'ies'}"
    if already:
        text += f"; {already} already in the worklist (not added again)"
    if skipped:
        examples = "; ".join(f"{f.path.name}: {f.skip_reason}" for f in skipped[:3])
        text += f"; skipped {len(skipped)} file(s) ({examples}{'; ...' if len(skipped) > 3 else ''})"
    return text


def _ignore(*_args: object) -> None:
    return None


def _path_key(path: Path) -> Path:
    """The same file reached by two spellings (relative, through a link) has one key."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a link loop, a path that vanished
        return path.absolute()


@dataclass
class PipelineHooks:
    """How the pipeline asks for work and tells what changed (all plain callables).

    Work (connected to worker threads by the window): ``scan(request_id, paths)``, ``decode(request_id,
    path)``, ``analyse(request_id, image)``, ``cancel_decodes(through_id)``,
    ``cancel_analyses(through_id)`` (skip queued requests with ids up to that one).

    News (for widgets): ``study_added(study)``, ``status_changed(study)`` (status or reason),
    ``thumbnail_ready(study)``, ``analysed(study)`` (findings and score set), ``show_image(study, image)``
    (the shown study's pixels are here), ``show_findings(study)`` (the shown study's findings changed),
    ``show_error(study)`` (the shown study failed), ``finished(study)`` (its pipeline ended: analysed,
    failed, or decoded without a model), ``progress()`` (counts changed; read :meth:`progress_counts`),
    ``regrouped(study)`` (its header moved it to another study or patient: ``study.facts``),
    ``duplicate(study, original_id)`` (it is the same image as ``original_id``, by SOP Instance UID; it
    has been removed), ``show_prior(study, image)`` (the pixels asked for by :meth:`show_prior`).
    """

    scan: Callable[[int, list[str]], None] = _ignore
    decode: Callable[[int, str], None] = _ignore
    analyse: Callable[[int, XrayImage], None] = _ignore
    cancel_decodes: Callable[[int], None] = _ignore
    cancel_analyses: Callable[[int], None] = _ignore
    study_added: Callable[[Study], None] = _ignore
    status_changed: Callable[[Study], None] = _ignore
    thumbnail_ready: Callable[[Study], None] = _ignore
    analysed: Callable[[Study], None] = _ignore
    show_image: Callable[[Study, XrayImage], None] = _ignore
    show_findings: Callable[[Study], None] = _ignore
    show_error: Callable[[Study], None] = _ignore
    finished: Callable[[Study], None] = _ignore
    progress: Callable[[], None] = _ignore
    regrouped: Callable[[Study], None] = _ignore
    duplicate: Callable[[Study, int], None] = _ignore
    show_prior: Callable[[Study, XrayImage], None] = _ignore


#: ranks a prediction into (findings, triage score); raises AttributeError/ValueError on malformed output
Ranker = Callable[[PredictionLike], tuple[list[Finding], float]]


class StudyPipeline:
    """Queue, in-flight requests, decoded-image cache, cancellation and model generations of a worklist.

    Args:
        hooks: where work requests and news go.
        rank: ``rank(prediction) -> (findings, triage score)`` (`cxr_viewer.inference.rank_prediction`).
        max_in_flight: studies decoded/analysed concurrently (bounds memory).
        cache_size: decoded images kept for fast switching between studies.
        model_status: the model's state at the start.
    """

    def __init__(
        self,
        hooks: PipelineHooks,
        rank: Ranker,
        *,
        max_in_flight: int = 2,
        cache_size: int = 4,
        model_status: ModelStatus = ModelStatus.LOADING,
    ) -> None:
        self.hooks = hooks
        self._rank = rank
        self.studies: dict[int, Study] = {}
        self.skipped: list[FoundFile] = []
        self.model_status = model_status
        self.generation = 0
        self._max_in_flight = max(1, int(max_in_flight))
        self._cache: OrderedDict[int, XrayImage] = OrderedDict()
        self._cache_size = max(1, int(cache_size))
        self._pending: deque[int] = deque()
        self._inflight: dict[int, Request] = {}
        self._next_id = 0
        self._next_study = 0
        self._display_request = -1
        self._prior_request = -1
        self._paths: dict[Path, int] = {}  # resolved path -> study id (the same file is not added twice)
        self._sop_uids: dict[str, int] = {}  # SOPInstanceUID -> study id (the same image is dropped)
        self.already_open: list[Path] = []  # files of the last scan that were already in the worklist
        self.shown = -1  # the study on screen (-1: none)
        self._displayed = -1  # the study whose pixels were last handed to ``show_image``
        self.closed = False

    # ------------------------------------------------------------------------------ queries
    def is_idle(self) -> bool:
        """True when nothing is queued or running (scans included; a display decode does not count)."""
        return not self._pending and all(r.kind is RequestKind.DISPLAY for r in self._inflight.values())

    def progress_counts(self) -> tuple[int, int]:
        """(studies still waiting for the model, all studies)."""
        waiting = sum(1 for s in self.studies.values() if s.status in _WAITING)
        return waiting, len(self.studies)

    def cached_image(self, study_id: int) -> XrayImage | None:
        """The decoded image of a study, when it is in the cache."""
        return self._cache.get(study_id)

    def in_flight(self) -> dict[int, Request]:
        """A copy of the requests still wanted, by id."""
        return dict(self._inflight)

    def pending(self) -> list[int]:
        """Study ids waiting for a slot, in order."""
        return list(self._pending)

    # ------------------------------------------------------------------------------ opening
    def scan(self, paths: Iterable[str | os.PathLike[str]]) -> int:
        """Ask for ``paths`` (files and folders) to be walked; returns the number of paths (0: nothing)."""
        plain = [os.fspath(p) for p in paths]
        if plain and not self.closed:
            self.hooks.scan(self._request(-1, RequestKind.SCAN), plain)
        return len(plain)

    def scanned(self, request_id: int, found: Sequence[FoundFile]) -> list[Study] | None:
        """A scan's answer: adds a study per readable candidate (queued). None when the scan is stale.

        The caller may select a study and then calls :meth:`pump` (so that the shown study's decode is
        asked for before the queue's).
        """
        if self._inflight.pop(request_id, None) is None or self.closed:
            return None
        added: list[Study] = []
        self.already_open = []
        for f in found:
            if f.skipped:
                self.skipped.append(f)
                continue
            key = _path_key(f.path)
            if key in self._paths:
                self.already_open.append(f.path)
                continue
            self._next_study += 1
            study = Study(self._next_study, f.path, facts=facts_for_file(self._next_study, f.path))
            self._paths[key] = study.id
            self.studies[study.id] = study
            self._pending.append(study.id)
            self.hooks.study_added(study)
            added.append(study)
        self.hooks.progress()
        return added

    def clear(self) -> None:
        """Forget every study (answers still on their way are dropped)."""
        self.cancel()
        self.studies.clear()
        self._paths.clear()
        self._sop_uids.clear()
        self._cache.clear()
        self.shown = self._displayed = -1
        self.hooks.progress()

    def remove(self, study_ids: Iterable[int]) -> list[int]:
        """Take images off the worklist (answers about them are dropped); returns the ids removed."""
        gone = [sid for sid in dict.fromkeys(study_ids) if sid in self.studies]
        drop = set(gone)
        for sid in gone:
            study = self.studies.pop(sid)
            self._cache.pop(sid, None)
            self._paths = {k: v for k, v in self._paths.items() if v != sid}
            if study.facts is not None and self._sop_uids.get(study.facts.sop_uid) == sid:
                del self._sop_uids[study.facts.sop_uid]
        self._pending = deque(sid for sid in self._pending if sid not in drop)
        self._inflight = {k: r for k, r in self._inflight.items() if r.study_id not in drop}
        if self.shown in drop:
            self.shown = self._displayed = -1
        self.pump()
        return gone

    def close(self) -> None:
        """Stop for good: nothing more is asked for and every answer is dropped."""
        self.closed = True
        self._pending.clear()
        self._inflight.clear()

    # ------------------------------------------------------------------------------ showing
    def show(self, study_id: int) -> XrayImage | None:
        """Make ``study_id`` the shown study (-1 or an unknown id: none).

        Returns its decoded image when it is cached; otherwise (and unless the study failed) asks for a
        display decode, whose image arrives through ``hooks.show_image``.
        """
        study = self.studies.get(study_id)
        self.shown = study_id if study is not None else -1
        self._displayed = -1
        if study is None or study.status is StudyStatus.ERROR:
            return None
        image = self._cache.get(study_id)
        if image is not None:
            self._cache.move_to_end(study_id)
            self._displayed = study_id
            return image
        self._display_request = self._request(study_id, RequestKind.DISPLAY)
        self.hooks.decode(self._display_request, os.fspath(study.path))
        return None

    def show_prior(self, study_id: int) -> XrayImage | None:
        """The image to show beside the shown one: cached, or asked for (``hooks.show_prior``)."""
        study = self.studies.get(study_id)
        if study is None or study.status is StudyStatus.ERROR or self.closed:
            self._prior_request = -1
            return None
        image = self._cache.get(study_id)
        if image is not None:
            self._cache.move_to_end(study_id)
            self._prior_request = -1
            return image
        self._prior_request = self._request(study_id, RequestKind.PRIOR)
        self.hooks.decode(self._prior_request, os.fspath(study.path))
        return None

    # ------------------------------------------------------------------------------ the queue
    def pump(self) -> None:
        """Start work for pending studies while fewer than ``max_in_flight`` are in progress."""
        if self.closed:
            return
        while self._pending and self._busy_slots() < self._max_in_flight:
            study = self.studies.get(self._pending.popleft())
            if study is None or study.status in (
                StudyStatus.ERROR,
                StudyStatus.CANCELLED,
                StudyStatus.NOT_SCORED,
            ):
                continue
            if study.not_film:
                self._not_scored(study)
            elif study.thumbnail is None:
                self._set_status(study, StudyStatus.QUEUED)
                self.hooks.decode(self._request(study.id, RequestKind.DECODE), os.fspath(study.path))
            elif self._needs_analysis(study):
                image = self._cache.get(study.id)
                if image is None:
                    self.hooks.decode(self._request(study.id, RequestKind.DECODE), os.fspath(study.path))
                else:
                    self._submit_analysis(study, image)
            elif self.model_status.unavailable and study.status is StudyStatus.QUEUED:
                # decoded for display before its turn (the selected study): viewed, no model to run
                self._set_status(study, StudyStatus.VIEWED_NO_MODEL)
                self.hooks.finished(study)
        self.hooks.progress()

    def cancel(self) -> int:
        """Queued and running studies become cancelled; returns how many. The shown study's display
        decode, if any, still completes."""
        cancelled = 0
        waiting = [
            *self._pending,
            *(r.study_id for r in self._inflight.values() if r.kind is not RequestKind.SCAN),
        ]
        for sid in waiting:
            study = self.studies.get(sid)
            if study is not None and study.status in _WAITING:
                self._set_status(study, StudyStatus.CANCELLED)
                cancelled += 1
        self._pending.clear()
        shown = {
            k: r._replace(generation=self.generation)
            for k in (self._display_request, self._prior_request)
            if (r := self._inflight.get(k)) is not None
        }
        self._inflight = {k: r for k, r in self._inflight.items() if r.kind is RequestKind.SCAN}
        self.hooks.cancel_analyses(self._next_id)
        if shown:  # the images the user is looking at still have to appear
            self._inflight.update(shown)
        else:
            self.hooks.cancel_decodes(self._next_id)
        self.hooks.progress()
        return cancelled

    def requeue(self, order: Iterable[int]) -> None:
        """Queue cancelled and not-yet-analysed studies again, in ``order`` (the worklist's), and pump."""
        for sid in order:
            study = self.studies.get(sid)
            if study is None:
                continue
            if study.status is StudyStatus.CANCELLED:
                self._set_status(study, StudyStatus.QUEUED)
            if study.status is StudyStatus.QUEUED and sid not in self._pending:
                self._pending.append(sid)
        self.pump()

    # ------------------------------------------------------------------------------ the model
    def model_loading(self) -> None:
        """A model is being loaded (studies keep their results until it is ready)."""
        self.model_status = ModelStatus.LOADING

    def model_ready(self, order: Iterable[int]) -> None:
        """A (new) model is loaded: answers of the previous one are dropped and every study that is not
        failed or cancelled is queued again, in ``order``. The caller then calls :meth:`pump`."""
        self.generation += 1
        self._inflight = {k: r for k, r in self._inflight.items() if r.kind is not RequestKind.ANALYSE}
        self.hooks.cancel_analyses(self._next_id)
        self.model_status = ModelStatus.READY
        again = (StudyStatus.VIEWED_NO_MODEL, StudyStatus.DONE, StudyStatus.ANALYSING, StudyStatus.QUEUED)
        for sid in order:
            study = self.studies.get(sid)
            if study is not None and study.status in again:
                self._set_status(study, StudyStatus.QUEUED)
                if sid not in self._pending:
                    self._pending.append(sid)

    def model_ready_again(self, order: Iterable[int]) -> None:
        """Loading another model failed and the previous one stays: studies that arrived meanwhile (and
        wait, queued, with no request) are queued again, in ``order``, and the queue is pumped."""
        self.model_status = ModelStatus.READY
        asked = {r.study_id for r in self._inflight.values()}
        for sid in order:
            study = self.studies.get(sid)
            if (
                study is not None
                and study.status is StudyStatus.QUEUED
                and sid not in self._pending
                and sid not in asked
            ):
                self._pending.append(sid)
        self.pump()

    def model_unavailable(self, status: ModelStatus) -> None:
        """There is no model (``MISSING`` or ``FAILED``): decoded studies become viewed without one."""
        if not status.unavailable:
            raise ValueError(f"{status} is not a state without a model")
        self.model_status = status
        for study in self.studies.values():
            if study.status is StudyStatus.QUEUED and study.thumbnail is not None:
                self._set_status(study, StudyStatus.VIEWED_NO_MODEL)
                self.hooks.finished(study)

    # ------------------------------------------------------------------------------ answers
    def decoded(self, request_id: int, image: XrayImage, thumbnail: np.ndarray) -> None:
        """A decode's answer (display or pipeline)."""
        request = self._inflight.pop(request_id, None)
        if request is None or self.closed:
            return  # stale: cancelled or cleared
        study = self.studies.get(request.study_id)
        if study is None:
            return
        if self._is_duplicate(study, image):
            self.pump()
            return
        self._cache_put(study.id, image)
        study.notes = image.notes
        study.out_of_scope = scope_warning(image.header)
        study.not_film = not_a_radiograph(image)
        if study.facts is not None and study.facts.lateral and not study.not_film:
            view = "".join(image.header.view.split()).upper()
            study.not_film = (
                f"lateral view ({view[:8]}): shown, not scored (its study is scored by its frontal images)"
            )
        if study.not_film and not self.model_status.unavailable:
            self._not_scored(study)
        if study.thumbnail is None:
            study.thumbnail = thumbnail
            self.hooks.thumbnail_ready(study)
        if study.id == self.shown and (request.kind is RequestKind.DISPLAY or self._displayed != study.id):
            self._displayed = study.id
            self.hooks.show_image(study, image)
        if request.kind is RequestKind.PRIOR and request_id == self._prior_request:
            self._prior_request = -1
            self.hooks.show_prior(study, image)
        if request.kind is RequestKind.DECODE:
            if self._needs_analysis(study):
                self._submit_analysis(study, image)
            elif self.model_status.unavailable and study.status is StudyStatus.QUEUED:
                self._set_status(study, StudyStatus.VIEWED_NO_MODEL)
                self.hooks.finished(study)
        self.pump()

    def decode_failed(self, request_id: int, reason: str) -> None:
        """A decode's failure (``reason`` is log-safe)."""
        request = self._inflight.pop(request_id, None)
        if request is None or self.closed:
            return
        study = self.studies.get(request.study_id)
        if study is not None:
            self._fail(study, reason)
        self.pump()

    def analysis_started(self, request_id: int) -> None:
        """The model began on a request."""
        request = self._inflight.get(request_id)
        if request is not None and (study := self.studies.get(request.study_id)) is not None:
            self._set_status(study, StudyStatus.ANALYSING)

    def result(self, request_id: int, prediction: PredictionLike) -> None:
        """The model's answer; dropped when stale (cancelled, cleared, or from a replaced model)."""
        request = self._inflight.pop(request_id, None)
        if request is None or self.closed or request.generation != self.generation:
            self.pump()
            return
        study = self.studies.get(request.study_id)
        if study is None:
            return
        try:
            study.findings, study.score = self._rank(prediction)
        except (AttributeError, ValueError) as exc:
            self._fail(study, f"malformed model output: {exc}")
            self.pump()
            return
        study.prediction = prediction
        study.model_generation = request.generation
        self._set_status(study, StudyStatus.DONE)
        self.hooks.analysed(study)
        if study.id == self.shown:
            self.hooks.show_findings(study)
        self.hooks.finished(study)
        self.pump()

    def analysis_failed(self, request_id: int, reason: str) -> None:
        """The model failed on a request (``reason`` is log-safe)."""
        request = self._inflight.pop(request_id, None)
        if request is None or self.closed:
            self.pump()
            return
        study = self.studies.get(request.study_id)
        if study is not None:
            self._fail(study, reason)
        self.pump()

    # ------------------------------------------------------------------------------ internals
    def _is_duplicate(self, study: Study, image: XrayImage) -> bool:
        """Update the study's facts from the header; True (and the study removed) when its SOP Instance
        UID is another study's."""
        facts = facts_for_header(study.id, study.path, image.header)
        if facts != study.facts:
            study.facts = facts
            self.hooks.regrouped(study)
        uid = facts.sop_uid
        if not uid:
            return False
        original = self._sop_uids.setdefault(uid, study.id)
        if original == study.id or original not in self.studies:
            self._sop_uids[uid] = study.id
            return False
        self.remove([study.id])
        self._paths[_path_key(study.path)] = original  # dropped again: already in the worklist
        self.hooks.duplicate(study, original)
        self.hooks.progress()
        return True

    def _request(self, study_id: int, kind: RequestKind) -> int:
        self._next_id += 1
        self._inflight[self._next_id] = Request(study_id, kind, self.generation)
        return self._next_id

    def _busy_slots(self) -> int:
        return sum(1 for r in self._inflight.values() if r.kind in (RequestKind.DECODE, RequestKind.ANALYSE))

    def _needs_analysis(self, study: Study) -> bool:
        return (
            self.model_status is ModelStatus.READY
            and study.status not in (StudyStatus.ERROR, StudyStatus.CANCELLED, StudyStatus.NOT_SCORED)
            and not study.not_film
            and study.model_generation != self.generation
        )

    def _submit_analysis(self, study: Study, image: XrayImage) -> None:
        self._set_status(study, StudyStatus.QUEUED)
        self.hooks.analyse(self._request(study.id, RequestKind.ANALYSE), image)

    def _cache_put(self, study_id: int, image: XrayImage) -> None:
        self._cache[study_id] = image
        self._cache.move_to_end(study_id)
        while len(self._cache) > self._cache_size:
            oldest = next(iter(self._cache))
            if oldest == self.shown and len(self._cache) > 1:
                self._cache.move_to_end(oldest)
                oldest = next(iter(self._cache))
            self._cache.pop(oldest)

    def _set_status(self, study: Study, status: StudyStatus, reason: str = "") -> None:
        study.status = status
        if reason:
            study.reason = reason
        self.hooks.status_changed(study)

    def _not_scored(self, study: Study) -> None:
        """Shown, never scored: its size cannot be a radiograph's (``study.not_film`` says why)."""
        if study.status is StudyStatus.QUEUED:
            self._set_status(study, StudyStatus.NOT_SCORED, study.not_film)
            self.hooks.finished(study)

    def _fail(self, study: Study, reason: str) -> None:
        self._set_status(study, StudyStatus.ERROR, reason)
        if study.id == self.shown:
            self._displayed = -1
            self.hooks.show_error(study)
        self.hooks.finished(study)
