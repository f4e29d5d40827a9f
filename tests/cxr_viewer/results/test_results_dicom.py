"""DICOM results (SR TID 1500 + Secondary Capture): written by ``cxr-triage --dicom-out`` on the real RG1
film with the bundled demo model, read back with pydicom and highdicom, checked against the CSV of the
same run, opened with the viewer's reader, and checked by dciodvfy (dicom3tools) when it is installed."""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

import cxr_viewer
from cxr_viewer.cli.triage import main
from cxr_viewer.core.io import load_image
from cxr_viewer.results import NOTICE, NoSourceStudyError, ResultsError, build_results, read_source
from cxr_viewer.results.dataset import evidence_header
from cxr_viewer.results.render import render_results_image

pytest.importorskip("cral_model")
import cral_model

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"
RG1 = (DATA / "dicom" / "RG1_UNCI.dcm").resolve()
PNG_DIR = (DATA / "chestxray14-fullres-samples" / "images").resolve()


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared test data not available: {path} (clone without ../shared/data)")
    return path


@pytest.fixture(scope="module")
def demo_model() -> Path:
    path = cral_model.default_checkpoint_path()
    if path is None:
        pytest.skip("no bundled demo checkpoint")
    return Path(path)


@pytest.fixture(scope="module")
def triaged(tmp_path_factory, demo_model):
    """One ``cxr-triage --dicom-out`` run on RG1 and a PNG: (csv rows by file, {"SR": ds, "SC": ds}, out)."""
    png = sorted(_need(PNG_DIR).glob("*.png"))[0]
    _need(RG1)
    out = tmp_path_factory.mktemp("dicom_out")
    csv_path = out / "r.csv"
    argv = [str(RG1), str(png), "-o", str(csv_path), "--dicom-out", str(out / "dicom")]
    argv += ["--model", str(demo_model), "--no-fast", "--workers", "0", "--no-progress", "--device", "cpu"]
    assert main(argv) == 0
    with open(csv_path, newline="", encoding="utf-8") as fh:
        rows = {r["file"]: r for r in csv.DictReader(fh)}
    files = sorted((out / "dicom").iterdir())
    by_kind = {f.name[:2]: f for f in files}
    assert sorted(by_kind) == ["SC", "SR"] and len(files) == 2, [f.name for f in files]  # the PNG got none
    return rows, {k: pydicom.dcmread(v) for k, v in by_kind.items()}, by_kind, png


def _groups(sr):
    report = hd.sr.MeasurementReport.from_sequence([sr])
    return report.get_image_measurement_groups()


def _num(group, meaning: str) -> float | None:
    found = [m for m in group.get_measurements() if m.name.meaning == meaning]
    return None if not found else float(found[0].value)


@pytest.mark.slow
def test_sr_values_equal_the_csv_of_the_same_run(triaged, demo_model):
    rows, _, _, _ = triaged
    row = rows[str(RG1)]
    sr = hd.sr.srread(triaged[2]["SR"])  # highdicom parses it back into its own SR class
    assert isinstance(sr, hd.sr.ComprehensiveSR)
    groups = _groups(sr)
    thresholds = cral_model.checkpoint.read_metadata(demo_model)["thresholds"]
    names = cral_model.checkpoint.read_metadata(demo_model)["class_names"]
    by_name = {str(g.tracking_identifier): g for g in groups}
    assert set(names) <= set(by_name) and "Image triage" in by_name
    for name, thr in zip(names, thresholds, strict=True):
        g = by_name[name]
        p = _num(g, "Model probability of finding")
        assert f"{p:.6f}" == row[f"prob_{name}"]
        # the operating point the predictor applies (float32 in the model), to float64 precision
        assert _num(g, "Operating threshold of finding") == float(np.float32(thr))
        flagged = [q for q in g.get_qualitative_evaluations() if q.name.meaning.startswith("Probability at")]
        assert flagged[0].value.meaning == ("Yes" if p >= thr else "No")
        assert (name in row["flags"].split(";")) == (p >= thr)
        assert g.finding_type.value == name
    assert (
        f"{_num(by_name['Image triage'], 'Triage score (max probability / threshold)'):.6f}"
        == row["triage_score"]
    )


@pytest.mark.slow
def test_sr_names_the_algorithm_and_the_source_image(triaged, demo_model):
    _, ds, _, _ = triaged
    sr = ds["SR"]
    src = pydicom.dcmread(RG1, stop_before_pixels=True)
    digest = hashlib.sha256(demo_model.read_bytes()).hexdigest()
    group = _groups(hd.sr.srread(triaged[2]["SR"]))[0]
    from pydicom.sr.codedict import codes

    def texts(name):  # TID 4019 items of the group (its own and its measurements')
        return [i.TextValue for i in hd.sr.utils.find_content_items(group[0], name=name, recursive=True)]

    assert set(texts(codes.DCM.AlgorithmName)) == {"CRAL efficientnet_lite0 att1"}
    assert set(texts(codes.DCM.AlgorithmVersion)) == {cxr_viewer.__version__}
    params = texts(codes.DCM.AlgorithmParameters)
    assert f"checkpoint_sha256={digest}" in params
    assert f"checkpoint={demo_model.name}" in params
    refs = group.source_images
    assert refs and refs[0].referenced_sop_instance_uid == src.SOPInstanceUID
    assert refs[0].referenced_sop_class_uid == src.SOPClassUID
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID


@pytest.mark.slow
def test_patient_and_study_copied_new_series(triaged):
    _, ds, _, _ = triaged
    src = pydicom.dcmread(RG1, stop_before_pixels=True)
    for obj in ds.values():
        for kw in (
            "PatientName",
            "PatientID",
            "PatientBirthDate",
            "PatientSex",
            "StudyInstanceUID",
            "StudyDate",
            "StudyTime",
            "AccessionNumber",
            "StudyID",
            "ReferringPhysicianName",
        ):
            assert obj.get(kw) == src.get(kw), kw
        assert obj.SeriesInstanceUID != src.SeriesInstanceUID
        assert obj.SOPInstanceUID != src.SOPInstanceUID
        assert obj.SOPInstanceUID.startswith(pydicom.uid.PYDICOM_ROOT_UID)
    assert ds["SR"].SeriesInstanceUID != ds["SC"].SeriesInstanceUID
    assert ds["SR"].Modality == "SR" and ds["SC"].Modality == "OT"
    assert ds["SC"].SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
    assert ds["SC"].SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    assert ds["SC"].PatientOrientation == src.get("PatientOrientation", "")  # copied, or empty: not guessed


@pytest.mark.slow
def test_secondary_capture_opens_in_the_viewer_with_the_notice_burned_in(triaged):
    _, ds, files, _ = triaged
    sc = ds["SC"]
    image = load_image(files["SC"])
    assert image.format == "DICOM" and image.shape == (sc.Rows, sc.Columns) == (1955, 1841)
    rgb = sc.pixel_array
    assert rgb.shape == (1955, 1841, 3) and rgb.dtype == np.uint8
    band = rgb[-8:, :, :]  # the red band of the notice across the bottom
    assert (band == (200, 0, 0)).all(axis=2).mean() > 0.9
    text_rows = rgb[-80:-8, :, :]
    assert ((text_rows > 240).all(axis=2)).sum() > 500  # white capitals of the notice on the band
    assert NOTICE in sc.ImageComments and "NOT FOR DIAGNOSIS" in sc.SeriesDescription.upper()
    # the picture is the film, not a blank: its grey part varies like a radiograph
    assert rgb[400:1500, 300:1500].std() > 20


@pytest.mark.slow
def test_dciodvfy_finds_no_errors(triaged):
    tool = shutil.which("dciodvfy")
    if tool is None:
        if os.environ.get("CI"):  # .ci/run installs it: in CI the check must run
            pytest.fail("dciodvfy (Debian package dicom3tools) is not installed; .ci/run installs it")
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    for path in triaged[2].values():
        out = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=120)
        errors = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]
        assert errors == [], errors


@pytest.mark.slow
def test_same_image_same_model_same_uids(triaged, demo_model, tmp_path):
    """Derived UIDs: a second run replaces the objects in a PACS instead of duplicating them."""
    _, ds, _, _ = triaged
    out = tmp_path / "again"
    argv = [str(RG1), "-o", str(tmp_path / "r.csv"), "--dicom-out", str(out), "--model", str(demo_model)]
    assert main([*argv, "--no-fast", "--workers", "0", "--no-progress", "--device", "cpu"]) == 0
    again = {f.name[:2]: pydicom.dcmread(f) for f in out.iterdir()}
    for kind in ("SR", "SC"):
        assert again[kind].SOPInstanceUID == ds[kind].SOPInstanceUID
        assert again[kind].SeriesInstanceUID == ds[kind].SeriesInstanceUID


def _study(path: Path) -> Path:
    """Give a synthetic DICOM file (helpers.dicom) the study and series UIDs a modality writes."""
    ds = pydicom.dcmread(path)
    ds.StudyInstanceUID = pydicom.uid.generate_uid()
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(path)
    return path


def test_png_source_is_refused_with_a_clear_message(tmp_path):
    from PIL import Image

    png = tmp_path / "chest.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(png)
    with pytest.raises(NoSourceStudyError, match=r"chest\.png is a PNG file, not DICOM: it has no study"):
        read_source(png)
    with pytest.raises(NoSourceStudyError, match="not DICOM"):
        read_source(png, "PNG")


def test_missing_patient_attributes_stay_empty_and_uids_are_required(make_dicom, tmp_path):
    path = _study(make_dicom(tmp_path / "a.dcm", np.full((64, 64), 100, np.uint16)))
    src = pydicom.dcmread(path)
    del src.PatientID
    del src.PatientName
    header = evidence_header(src)
    assert header.PatientID in (None, "") and header.PatientName in (None, "")  # present, empty: unknown
    assert "PixelData" not in header and "PixelData" in src  # a copy, without the pixels
    del src.StudyInstanceUID
    with pytest.raises(ResultsError, match="has no StudyInstanceUID"):
        evidence_header(src, "a.dcm")


def test_build_results_with_a_synthetic_study_and_a_real_forward_pass(make_dicom, tmp_path, caplog):
    from helpers.checkpoints import write_tiny_checkpoint

    from cxr_viewer.inference import load_predictor, model_input, model_provenance, rank_prediction

    ckpt = write_tiny_checkpoint(tmp_path / "m.safetensors", warm_up_batch=4)
    predictor = load_predictor(ckpt, device="cpu", fast="off")
    ramp = np.tile(np.linspace(200, 3800, 96, dtype=np.float32), (80, 1)).astype(np.uint16)
    path = _study(make_dicom(tmp_path / "study.dcm", ramp))
    image = load_image(path)
    prediction = predictor.predict(model_input(image))
    findings, score = rank_prediction(prediction)
    algorithm = model_provenance(predictor)
    assert algorithm.checkpoint_sha256 == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    with caplog.at_level("DEBUG"):
        sr, sc = build_results(read_source(path, image.format), image, prediction, findings, algorithm)
    assert "Doe" not in caplog.text and "SECRET-ID-123" not in caplog.text
    groups = _groups(sr)
    assert len(groups) == 15  # 14 classes + the image triage group
    first = groups[0]
    assert str(first.tracking_identifier) == findings[0].name  # triage order, as the findings panel
    assert _num(groups[-1], "Triage score (max probability / threshold)") == score
    assert sc.pixel_array.shape == (80, 96, 3)
    assert sr.PatientID == "SECRET-ID-123"  # copied into the objects (never into logs)


def test_render_is_pure_and_scales_down():
    from cxr_viewer.core.findings import Finding
    from cxr_viewer.core.image import XrayImage

    px = np.tile(np.linspace(0, 255, 300, dtype=np.float32), (200, 1))
    image = XrayImage(px, Path("x.png"), "PNG", "L", window=(127.5, 255.0))
    before = px.copy()
    heat = np.zeros((200, 300), np.float32)
    heat[50:150, 100:200] = 1.5
    f = Finding(2, "Effusion", 0.8, 0.4, 2.0, True)
    out = render_results_image(image, [f], heat, triage_score=2.0, max_side=150)
    assert out.shape == (100, 150, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(image.pixels, before)
    big = render_results_image(image, [f], heat, triage_score=2.0)
    assert big.shape == (200, 300, 3)
    # the map's region is coloured (red-ish, not grey) and the outline is drawn around it
    centre = big[100, 150].astype(int)
    assert centre[0] - centre[2] > 40
    # a finding below its threshold gets no map burned in: the same pixel stays grey
    below = Finding(2, "Effusion", 0.3, 0.4, 0.75, False)
    plain = render_results_image(image, [below], heat, triage_score=0.75)
    r, g, b = plain[100, 150].astype(int)
    assert abs(r - g) <= 1 and abs(g - b) <= 1
    with pytest.raises(ValueError, match="heat map has shape"):
        render_results_image(image, [f], heat[:10], triage_score=None)
