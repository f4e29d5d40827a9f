"""The test PACS itself: the `orthanc` fixture starts a real Orthanc that stores over DICOM (dcmtk's
``storescu``) and answers over REST and DICOMweb (QIDO-RS), on its own ports and folder."""

from __future__ import annotations

import io
import json
import subprocess

import pydicom
from node_helpers import need_storescu


def test_orthanc_stores_over_dicom_and_answers_dicomweb(orthanc, shared_data):
    rg1 = shared_data("dicom", "RG1_UNCR.dcm")
    storescu = need_storescu()
    done = subprocess.run(
        [storescu, "-aet", "TESTSCU", "-aec", orthanc.aet, orthanc.host, str(orthanc.dicom_port), str(rg1)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (iid,) = orthanc.wait_for_instances(1)
    sent = pydicom.dcmread(rg1, stop_before_pixels=True)
    stored = pydicom.dcmread(io.BytesIO(orthanc.instance_file(iid)))
    assert stored.SOPInstanceUID == sent.SOPInstanceUID
    assert stored.pixel_array.shape == (sent.Rows, sent.Columns)
    tags = orthanc.instance_tags(iid)
    assert tags["Modality"] == "CR"

    # DICOMweb plugin: QIDO-RS finds the study, by its UID
    studies = json.loads(orthanc.get_bytes("/dicom-web/studies"))
    assert [s["0020000D"]["Value"][0] for s in studies] == [tags["StudyInstanceUID"]]
    assert orthanc.instances_by_modality() == {"CR": [iid]}


def test_each_orthanc_has_its_own_ports_and_storage(make_orthanc):
    a, b = make_orthanc(), make_orthanc(modalities={"NODE": ("NODE", "127.0.0.1", 11112)})
    assert {a.dicom_port, a.http_port}.isdisjoint({b.dicom_port, b.http_port})
    assert a.workdir != b.workdir
    assert b.get_json("/modalities") == ["NODE"]
    assert a.instances() == b.instances() == []
    a.stop()
    assert not a.alive() and b.alive()
