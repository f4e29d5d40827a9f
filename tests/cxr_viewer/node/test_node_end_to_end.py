"""End to end with real processes: RG1 sent by C-STORE (dcmtk's storescu) to ``cxr-triage serve``, its SR
and SC arrive in a real Orthanc, and read back from Orthanc the SR's probabilities are those of
``cxr-triage``'s CSV for the same file; the SC opens in the viewer's reader."""

from __future__ import annotations

import csv
import io
import subprocess
import sys

import pydicom
import pytest
from node_helpers import NODE_AET, ROOT, SCU_AET, assert_no_patient_data, need_storescu, node_env, start_node

from cxr_viewer.core.io import load_image


def sr_probabilities(sr: pydicom.Dataset) -> dict[str, float]:
    """Class name -> probability, read from the SR's TID 1501 groups (tracking identifier = class name)."""
    import highdicom as hd

    from cxr_viewer.results import codes

    report = hd.sr.ComprehensiveSR.from_dataset(sr)
    out: dict[str, float] = {}
    for group in report.content.get_image_measurement_groups():
        name = group.tracking_identifier
        for m in group.get_measurements(name=codes.PROBABILITY):
            out[str(name)] = float(m.value)
    return out


def sr_referenced_sop(sr: pydicom.Dataset) -> set[str]:
    """SOP Instance UIDs of the evidence the SR lists."""
    return {
        str(inst.ReferencedSOPInstanceUID)
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for inst in series.ReferencedSOPSequence
    }


def triage_csv(path, checkpoint, out) -> dict[str, float]:
    """``cxr-triage FILE -o out.csv`` as its own process -> class name -> probability."""
    cmd = [
        sys.executable,
        "-m",
        "cxr_viewer.cli.triage",
        str(path),
        "-o",
        str(out),
        "--model",
        str(checkpoint),
    ]
    done = subprocess.run(
        [*cmd, "--no-fast", "--threads", "1", "--no-progress"],
        cwd=ROOT,
        env=node_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (row,) = list(csv.DictReader(io.StringIO(out.read_text())))
    assert row["error"] == ""
    return {k[len("prob_") :]: float(v) for k, v in row.items() if k.startswith("prob_")}


@pytest.mark.slow
def test_rg1_to_the_node_and_its_results_to_orthanc(
    make_orthanc, node_checkpoint, shared_data, tmp_path, running_nodes
):
    rg1 = shared_data("dicom", "RG1_UNCR.dcm")
    storescu = need_storescu()
    pacs = make_orthanc()
    node = start_node(tmp_path / "spool", pacs, node_checkpoint, quiet=0.5)
    running_nodes.append(node)

    sent = subprocess.run(
        [storescu, "-aet", SCU_AET, "-aec", NODE_AET, "127.0.0.1", str(node.port), str(rg1)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert sent.returncode == 0, sent.stderr
    pacs.wait_for_instances(2, timeout=180)
    node.wait_for_log("results sent to", timeout=60)
    by_modality = pacs.instances_by_modality()
    assert sorted(by_modality) == ["OT", "SR"] or sorted(by_modality) == ["SC", "SR"], by_modality
    (sr_id,) = by_modality["SR"]
    (sc_id,) = by_modality.get("OT", []) + by_modality.get("SC", [])

    source = pydicom.dcmread(rg1, stop_before_pixels=True)
    sr = pydicom.dcmread(io.BytesIO(pacs.instance_file(sr_id)))
    sc_bytes = pacs.instance_file(sc_id)
    sc = pydicom.dcmread(io.BytesIO(sc_bytes))
    # same study and patient as the source, new series, the source referenced
    for ds in (sr, sc):
        assert ds.StudyInstanceUID == source.StudyInstanceUID
        assert ds.SeriesInstanceUID != source.SeriesInstanceUID
        assert ds.PatientID == source.PatientID
    assert sr_referenced_sop(sr) == {source.SOPInstanceUID}

    # the SR's probabilities are cxr-triage's CSV's for the same file (6 decimals in the CSV)
    from_csv = triage_csv(rg1, node_checkpoint, tmp_path / "rg1.csv")
    from_sr = sr_probabilities(sr)
    assert sorted(from_sr) == sorted(from_csv)
    for name, p in from_csv.items():
        assert from_sr[name] == pytest.approx(p, abs=5e-7), name

    # the SC opens in the viewer's reader: an RGB picture of the film
    sc_path = tmp_path / "sc.dcm"
    sc_path.write_bytes(sc_bytes)
    shown = load_image(sc_path)
    assert shown.pixels.ndim >= 2 and min(shown.pixels.shape[:2]) > 256
    assert sc.SamplesPerPixel == 3

    assert node.terminate() == 0
    log = node.log_text()
    assert "stopped" in log
    assert_no_patient_data(log, str(source.PatientName), str(source.PatientID), "CompressedSamples")
    # nor UIDs: a study is named by its tag (some sites build UIDs from accession numbers)
    assert source.StudyInstanceUID not in log and source.SOPInstanceUID not in log
    assert "1.2.826.0.1.3680043" not in log  # the results' UID root (pydicom's) either
