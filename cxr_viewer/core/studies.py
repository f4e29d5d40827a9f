"""Studies, not files: which images belong together, how a study is scored, and which studies are priors.

The pipeline (`cxr_viewer.core.pipeline`) keeps one entry per *file*: its ``Study`` class is, strictly,
one image of the worklist. This module groups those images into studies and patients, without Qt:

- a DICOM file with a ``StudyInstanceUID``: the patient is its ``PatientID`` (an empty one: the study
  is its own patient), the study is the UID, ordered by ``StudyDate`` + ``StudyTime``;
- an NIH ChestX-ray14 file name ``PPPPPPPP_FFF.png``: the patient is ``PPPPPPPP``, the study is the
  follow-up number ``FFF`` (one study per follow-up), ordered by that number;
- anything else: the file is its own study and its own patient.

A study's score is its highest-scoring *frontal* image's; a lateral view (``ViewPosition`` LL, RL, LAT,
LATERAL) is shown, not scored. The newest study of a patient is the one the worklist lists; the older
ones are its priors, newest first.

The keys can hold a PatientID: they are for the screen only, never for logs (the reprs here redact them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from pathlib import Path

    from cxr_viewer.core.image import HeaderSummary

__all__ = [
    "LATERAL_VIEWS",
    "ImageFacts",
    "PatientGroup",
    "StudyGroup",
    "facts_for_file",
    "facts_for_header",
    "group_worklist",
    "is_lateral",
    "nih_name_keys",
    "study_score",
]

#: ``ViewPosition`` codes of lateral views (PS3.3 C.8.11.5 defines LL and RL; LAT/LATERAL are common
#: vendor spellings). Decubitus and oblique views are not laterals: `core.scope` marks them out of scope.
LATERAL_VIEWS = frozenset({"LL", "RL", "LAT", "LATERAL"})

_NIH_NAME = re.compile(r"^(\d{8})_(\d{3})\.(png|jpe?g|tiff?|dcm)$", re.IGNORECASE)


def is_lateral(view: str) -> bool:
    """True when a ``ViewPosition`` value names a lateral view (case and blanks ignored)."""
    return "".join(view.split()).upper() in LATERAL_VIEWS


def nih_name_keys(name: str) -> tuple[str, int] | None:
    """``("00000013", 5)`` for an NIH ChestX-ray14 name ``00000013_005.png``; None for other names."""
    match = _NIH_NAME.match(name)
    return None if match is None else (match.group(1), int(match.group(2)))


@dataclass(frozen=True)
class ImageFacts:
    """What grouping needs to know about one image of the worklist.

    Attributes:
        image_id: the pipeline's id of the image (``Study.id``).
        name: the file name.
        patient: the patient key (a PatientID, an NIH patient number, or the file's path).
        study: the study key (unique over patients).
        label: how the study is named on screen (``"follow-up 5"``, ``"2004-08-26 CHEST"``, a file name).
        order: sorts a patient's studies from oldest to newest (date and time, then follow-up number).
        lateral: a lateral view: shown, not scored.
        sop_uid: the DICOM ``SOPInstanceUID`` ("" when unknown): the same image opened twice has the same.
    """

    image_id: int
    name: str
    patient: str
    study: str
    label: str
    order: tuple[str, int] = ("", 0)
    lateral: bool = False
    sop_uid: str = ""

    def __repr__(self) -> str:  # the keys can hold a PatientID: keep it out of logs and tracebacks
        return f"ImageFacts(image_id={self.image_id}, lateral={self.lateral}, <keys redacted>)"


def facts_for_file(image_id: int, path: Path) -> ImageFacts:
    """Facts known from the path alone (before the file is read): NIH names give patient and follow-up."""
    nih = nih_name_keys(path.name)
    if nih is not None:
        patient, follow_up = nih
        return ImageFacts(
            image_id, path.name, f"nih:{patient}", f"nih:{patient}:{follow_up}", f"follow-up {follow_up}",
            ("", follow_up),
        )  # fmt: skip
    key = f"file:{path}"
    return ImageFacts(image_id, path.name, key, key, path.name)


def facts_for_header(image_id: int, path: Path, header: HeaderSummary) -> ImageFacts:
    """Facts from a read file's header; a file without a ``StudyInstanceUID`` keeps its path's facts."""
    by_name = facts_for_file(image_id, path)
    lateral = is_lateral(header.view)
    if not header.study_uid:
        return ImageFacts(
            image_id, path.name, by_name.patient, by_name.study, by_name.label, by_name.order, lateral,
            header.sop_uid,
        )  # fmt: skip
    study = f"uid:{header.study_uid}"
    patient = f"id:{header.patient_id}" if header.patient_id else study
    date = header.study_date
    label = f"{date[:4]}-{date[4:6]}-{date[6:8]}" if len(date) == 8 and date.isdigit() else (date or "study")
    if header.body_part:
        label += f" {header.body_part}"
    return ImageFacts(
        image_id, path.name, patient, study, label, (date + header.study_time, 0), lateral, header.sop_uid
    )


@dataclass(frozen=True)
class StudyGroup:
    """One study: its images (best frontal first, laterals last) and its score.

    Attributes:
        key: the study key.
        patient: the patient key.
        label: the study's name on screen.
        order: its place among the patient's studies (oldest first).
        image_ids: its images: frontal ones by score (highest first, unscored after, in arrival order),
            then the laterals.
        best_image: the image that stands for the study (its highest-scoring frontal image; the first
            image while none is scored).
        score: the best frontal image's score; None while no frontal image has one.
    """

    key: str
    patient: str
    label: str
    order: tuple[str, int]
    image_ids: tuple[int, ...]
    best_image: int
    score: float | None

    def __repr__(self) -> str:
        return f"StudyGroup(images={self.image_ids}, score={self.score}, <keys redacted>)"


@dataclass(frozen=True)
class PatientGroup:
    """A patient's studies: the newest (``current``) and the older ones (``priors``, newest first)."""

    patient: str
    current: StudyGroup
    priors: tuple[StudyGroup, ...]

    @property
    def studies(self) -> tuple[StudyGroup, ...]:
        """The current study, then the priors."""
        return (self.current, *self.priors)

    def __repr__(self) -> str:
        return f"PatientGroup(current={self.current!r}, priors={len(self.priors)})"


def study_score(
    images: Iterable[ImageFacts], scores: Mapping[int, float | None]
) -> tuple[float | None, tuple[int, ...]]:
    """A study's score and its images in display order.

    Args:
        images: the study's images, in arrival order.
        scores: triage score by image id (missing or None: not scored yet).

    Returns:
        ``(score, image_ids)``: the highest score over the frontal images (None when none is scored;
        laterals never count), and the ids with the scored frontal images first (highest first), then
        the unscored frontal ones, then the laterals, each in arrival order on ties.
    """
    ordered = list(images)
    frontal = [f for f in ordered if not f.lateral]
    scored = sorted(
        (f for f in frontal if scores.get(f.image_id) is not None),
        key=lambda f: -float(scores[f.image_id]),  # type: ignore[arg-type]  # not None: filtered above
    )
    unscored = [f for f in frontal if scores.get(f.image_id) is None]
    lateral = [f for f in ordered if f.lateral]
    best = scores[scored[0].image_id] if scored else None
    return best, tuple(f.image_id for f in (*scored, *unscored, *lateral))


def group_worklist(images: Iterable[ImageFacts], scores: Mapping[int, float | None]) -> list[PatientGroup]:
    """Group images into studies and patients.

    Args:
        images: every image of the worklist, in arrival order.
        scores: triage score by image id (see :func:`study_score`).

    Returns:
        One :class:`PatientGroup` per patient, in the order each patient first arrived. Its current
        study is the newest by ``order`` (arrival breaks ties: the later study is the newer).
    """
    by_study: dict[str, list[ImageFacts]] = {}
    for facts in images:
        by_study.setdefault(facts.study, []).append(facts)
    by_patient: dict[str, list[StudyGroup]] = {}
    for key, members in by_study.items():
        score, ids = study_score(members, scores)
        first = members[0]
        group = StudyGroup(key, first.patient, first.label, first.order, ids, ids[0], score)
        by_patient.setdefault(first.patient, []).append(group)
    patients = []
    for patient, studies in by_patient.items():
        arrival = {s.key: i for i, s in enumerate(studies)}
        newest_first = sorted(studies, key=lambda s: (s.order, arrival[s.key]), reverse=True)
        patients.append(PatientGroup(patient, newest_first[0], tuple(newest_first[1:])))
    return patients
