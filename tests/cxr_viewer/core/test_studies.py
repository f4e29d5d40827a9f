"""Studies, not files (issue 13): patient/study keys, study score = best frontal image, laterals,
priors by date; and the pipeline recognising a file or an image (SOP Instance UID) opened twice."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cxr_viewer.core.image import HeaderSummary, XrayImage
from cxr_viewer.core.io import FoundFile, load_image
from cxr_viewer.core.pipeline import PipelineHooks, RequestKind, StudyPipeline, StudyStatus
from cxr_viewer.core.studies import (
    ImageFacts,
    facts_for_file,
    facts_for_header,
    group_worklist,
    is_lateral,
    nih_name_keys,
    study_score,
)
from cxr_viewer.inference import rank_prediction


def _facts(
    image_id: int, study: str, patient: str = "p", order: tuple[str, int] = ("", 0), **kw
) -> ImageFacts:
    return ImageFacts(image_id, f"{image_id}.dcm", patient, study, study, order, **kw)


def test_nih_names_give_patient_and_follow_up() -> None:
    assert nih_name_keys("00000013_005.png") == ("00000013", 5)
    assert nih_name_keys("00000013_005.PNG") == ("00000013", 5)
    assert nih_name_keys("img_0.png") is None
    assert nih_name_keys("0000013_005.png") is None  # seven digits: not an NIH name
    a, b = facts_for_file(1, Path("/x/00000013_000.png")), facts_for_file(2, Path("/y/00000013_004.png"))
    assert a.patient == b.patient and a.study != b.study
    assert (a.label, b.label) == ("follow-up 0", "follow-up 4")
    other = facts_for_file(3, Path("/x/img_0.png"))
    assert other.patient == other.study != facts_for_file(4, Path("/y/img_0.png")).study  # by path


@pytest.mark.parametrize(
    ("view", "lateral"),
    [("LL", True), ("rl", True), (" LAT ", True), ("LATERAL", True), ("PA", False), ("AP", False),
     ("LLD", False), ("", False)],
)  # fmt: skip
def test_lateral_views(view: str, lateral: bool) -> None:
    assert is_lateral(view) is lateral


def test_study_score_is_the_best_frontal_image_and_laterals_do_not_count() -> None:
    images = [_facts(1, "s"), _facts(2, "s", lateral=True), _facts(3, "s"), _facts(4, "s")]
    score, order = study_score(images, {1: 0.4, 2: 9.0, 3: 1.2})
    assert score == pytest.approx(1.2)  # the lateral's 9.0 is ignored
    assert order == (3, 1, 4, 2)  # scored frontal by score, unscored frontal, then the lateral
    assert study_score(images, {}) == (None, (1, 3, 4, 2))
    assert study_score([_facts(5, "s", lateral=True)], {5: 2.0}) == (None, (5,))


def test_priors_are_ordered_by_date_newest_study_is_current() -> None:
    images = [
        _facts(1, "b", order=("20200301", 0)),
        _facts(2, "a", order=("20190101", 0)),
        _facts(3, "c", order=("20210615", 0)),
        _facts(4, "b", order=("20200301", 0)),
        _facts(5, "x", patient="q"),
    ]
    patients = group_worklist(images, {1: 0.2, 4: 0.9, 3: 0.1})
    assert [p.patient for p in patients] == ["p", "q"]  # patients in arrival order
    p = patients[0]
    assert p.current.key == "c"
    assert [s.key for s in p.priors] == ["b", "a"]  # newest first
    b = p.priors[0]
    assert b.image_ids == (4, 1) and b.best_image == 4 and b.score == pytest.approx(0.9)
    assert p.priors[1].score is None
    assert patients[1].priors == ()


def test_nih_follow_ups_are_studies_of_one_patient(shared_data) -> None:
    folder = shared_data("chestxray14-nih1000-64px", "images")
    files = sorted(folder.glob("00000061_*.png"))
    if len(files) < 3:
        pytest.skip("need several follow-ups of NIH patient 00000061")
    facts = [facts_for_file(i, f) for i, f in enumerate(files)]
    (patient,) = group_worklist(facts, {})
    numbers = sorted(nih_name_keys(f.name)[1] for f in files)  # type: ignore[index]
    assert patient.current.label == f"follow-up {numbers[-1]}"
    assert [s.label for s in patient.priors] == [f"follow-up {n}" for n in reversed(numbers[:-1])]


def test_the_rg1_files_are_one_study_and_two_share_an_image(shared_data) -> None:
    dicom = shared_data("dicom")
    names = ("RG1_UNCI.dcm", "RG1_UNCR.dcm", "RG1_J2KR.dcm", "RG1_J2KI.dcm", "RG1_JLSN.dcm")
    facts = [facts_for_header(i, dicom / n, load_image(dicom / n).header) for i, n in enumerate(names)]
    assert len({f.study for f in facts}) == 1 and len({f.patient for f in facts}) == 1
    assert facts[0].label == "2004-08-26 CHEST"
    assert facts[0].sop_uid == facts[3].sop_uid  # J2KI is the lossy copy of the UNCI image
    assert len({f.sop_uid for f in facts}) == 4
    assert not any(f.lateral for f in facts)
    rg2 = facts_for_header(9, dicom / "RG2_JLSL.dcm", load_image(dicom / "RG2_JLSL.dcm").header)
    assert rg2.patient != facts[0].patient
    assert "PatientID" not in repr(facts[0]) and facts[0].patient not in repr(facts[0])  # redacted


def test_a_header_without_study_uid_keeps_the_name_keys() -> None:
    header = HeaderSummary(view="LL", sop_uid="1.2.3")
    facts = facts_for_header(1, Path("/d/00000001_002.png"), header)
    assert (facts.patient, facts.label, facts.lateral, facts.sop_uid) == (
        "nih:00000001",
        "follow-up 2",
        True,
        "1.2.3",
    )
    no_id = facts_for_header(2, Path("/d/a.dcm"), HeaderSummary(study_uid="9.9"))
    assert no_id.patient == no_id.study == "uid:9.9"  # no PatientID: the study is its own patient


# ------------------------------------------------------------------------------ the pipeline
def _pipeline(paths: list[Path]) -> tuple[StudyPipeline, dict[str, list]]:
    seen: dict[str, list] = {"decodes": [], "analyses": [], "duplicates": [], "regrouped": []}
    hooks = PipelineHooks(
        decode=lambda rid, path: seen["decodes"].append((rid, path)),
        analyse=lambda rid, image: seen["analyses"].append((rid, image)),
        duplicate=lambda s, original: seen["duplicates"].append((s.id, original)),
        regrouped=lambda s: seen["regrouped"].append(s.id),
    )
    pipe = StudyPipeline(hooks, rank_prediction, max_in_flight=8)
    pipe.model_ready([])
    pipe.scanned(pipe._request(-1, RequestKind.SCAN), [FoundFile(p) for p in paths])
    return pipe, seen


def _dicom_image(path: Path, **header: str) -> XrayImage:
    base = HeaderSummary(patient_id="P1", study_uid="1.2.840.1", study_date="20240102", view="PA")
    return XrayImage(
        np.zeros((64, 64), np.float32), path, "DICOM", "MONOCHROME2", header=replace(base, **header)
    )


def test_the_same_file_dropped_twice_is_not_added_again(tmp_path: Path) -> None:
    a, b = tmp_path / "a.dcm", tmp_path / "b.dcm"
    for p in (a, b):
        p.write_bytes(b"x")
    pipe, _seen = _pipeline([a, b])
    again = pipe.scanned(
        pipe._request(-1, RequestKind.SCAN), [FoundFile(a), FoundFile(tmp_path / "." / "b.dcm")]
    )
    assert again == []
    assert pipe.already_open == [a, tmp_path / "." / "b.dcm"]
    assert len(pipe.studies) == 2
    pipe.remove([1])
    assert [s.path for s in pipe.scanned(pipe._request(-1, RequestKind.SCAN), [FoundFile(a)])] == [a]


def test_an_image_with_a_known_sop_uid_is_dropped_before_it_is_analysed(tmp_path: Path) -> None:
    pipe, seen = _pipeline([tmp_path / "a.dcm", tmp_path / "copy.dcm", tmp_path / "lat.dcm"])
    pipe.pump()
    (r1, _), (r2, _), (r3, _) = seen["decodes"]
    pipe.decoded(r1, _dicom_image(tmp_path / "a.dcm", sop_uid="1.1"), np.zeros((4, 4), np.uint8))
    assert len(seen["analyses"]) == 1
    pipe.decoded(r2, _dicom_image(tmp_path / "copy.dcm", sop_uid="1.1"), np.zeros((4, 4), np.uint8))
    assert seen["duplicates"] == [(2, 1)]
    assert 2 not in pipe.studies
    assert len(seen["analyses"]) == 1  # not analysed again
    assert pipe.studies[1].facts.study == "uid:1.2.840.1" and 1 in seen["regrouped"]
    # a lateral view of the same study: shown, not scored
    pipe.decoded(r3, _dicom_image(tmp_path / "lat.dcm", sop_uid="1.3", view="LL"), np.zeros((4, 4), np.uint8))
    lateral = pipe.studies[3]
    assert lateral.status is StudyStatus.NOT_SCORED
    assert lateral.reason.startswith("lateral view (LL)")
    assert len(seen["analyses"]) == 1
    assert lateral.facts.study == pipe.studies[1].facts.study


def test_removed_images_drop_their_answers(tmp_path: Path) -> None:
    pipe, seen = _pipeline([tmp_path / "a.png", tmp_path / "b.png"])
    pipe.pump()
    (r1, _), (r2, _) = seen["decodes"]
    assert pipe.remove([1, 99]) == [1]
    pipe.decoded(r1, _dicom_image(tmp_path / "a.png"), np.zeros((4, 4), np.uint8))
    assert 1 not in pipe.studies and pipe.cached_image(1) is None
    pipe.decoded(
        r2,
        XrayImage(np.zeros((64, 64), np.float32), tmp_path / "b.png", "PNG", "L"),
        np.zeros((4, 4), np.uint8),
    )
    assert len(seen["analyses"]) == 1


def test_prior_decode_is_its_own_request_and_survives_a_cancel(tmp_path: Path) -> None:
    shown: list[int] = []
    pipe, seen = _pipeline([tmp_path / "00000001_000.png", tmp_path / "00000001_001.png"])
    pipe.hooks.show_prior = lambda s, _image: shown.append(s.id)
    assert pipe.show_prior(1) is None
    rid, path = seen["decodes"][-1]
    assert path.endswith("00000001_000.png") and pipe.in_flight()[rid].kind is RequestKind.PRIOR
    pipe.cancel()
    assert rid in pipe.in_flight()
    pipe.decoded(
        rid, XrayImage(np.zeros((64, 64), np.float32), Path(path), "PNG", "L"), np.zeros((4, 4), np.uint8)
    )
    assert shown == [1]
    assert pipe.show_prior(1) is not None  # cached now
