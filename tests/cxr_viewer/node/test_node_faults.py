"""Faults, with the node as a real process and a real Orthanc: an unknown calling AE is refused at
association, malformed data sets are answered with a failure status while the node keeps serving the
same association and the next ones, and no patient name or ID reaches its log."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from node_helpers import (
    PATIENT_ID,
    PATIENT_NAME,
    assert_no_patient_data,
    echo,
    small_instances,
    start_node,
    store,
)

from cxr_viewer.node.handlers import CANNOT_UNDERSTAND, DOES_NOT_MATCH, SUCCESS

if TYPE_CHECKING:
    import pydicom


def _truncated_file(ds: pydicom.Dataset, path) -> None:
    """``ds`` as a file whose last element claims 1 MB and holds 3 bytes (a cut-off transfer)."""
    ds.save_as(path, enforce_file_format=True)
    with open(path, "ab") as fh:
        # (0009,1010) OB, explicit VR little endian: tag, 'OB', 2 reserved bytes, 4-byte length
        fh.write(b"\x09\x00\x10\x10OB\x00\x00" + (1 << 20).to_bytes(4, "little") + b"abc")


@pytest.mark.slow
def test_unknown_ae_refused_bad_datasets_failed_and_the_node_goes_on(
    make_orthanc, node_checkpoint, shared_data, tmp_path, running_nodes, monkeypatch
):
    rg1 = shared_data("dicom", "RG1_UNCR.dcm")
    pacs = make_orthanc()
    node = start_node(tmp_path / "spool", pacs, node_checkpoint, quiet=0.5)
    running_nodes.append(node)
    good1, good2, truncated, no_study, short_pixels = small_instances(rg1, 5)

    # Verification from an accepted AE answers; an unknown calling AE title is refused at association
    assert echo(node.port) == SUCCESS
    with pytest.raises(ConnectionError, match="rejected"):
        echo(node.port, calling="STRANGER")
    with pytest.raises(ConnectionError, match="rejected"):
        store(node.port, [good1], calling="STRANGER")
    # as is a known one calling another AE title than the node's
    with pytest.raises(ConnectionError, match="rejected"):
        store(node.port, [good1], called="SOMEONEELSE")

    # malformed data sets among good ones, on one association: each bad one fails, the next succeeds
    bad_file = tmp_path / "truncated.dcm"
    _truncated_file(truncated, bad_file)
    del no_study.StudyInstanceUID
    short_pixels.PixelData = short_pixels.PixelData[: len(short_pixels.PixelData) // 2]
    from pynetdicom import _config

    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)  # the file's bytes as they are
    statuses = store(node.port, [good1, bad_file, no_study, short_pixels])
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", False)
    assert statuses == {
        good1.SOPInstanceUID: SUCCESS,
        truncated.SOPInstanceUID: CANNOT_UNDERSTAND,
        no_study.SOPInstanceUID: CANNOT_UNDERSTAND,
        short_pixels.SOPInstanceUID: DOES_NOT_MATCH,
    }, node.log_text()
    # the node still serves: a new association, a good instance
    assert store(node.port, [good2]) == {good2.SOPInstanceUID: SUCCESS}

    # only the two good instances were spooled and triaged; their SR + SC reach the PACS
    pacs.wait_for_instances(4, timeout=180)
    node.wait_for_log("results sent to", timeout=60)
    spooled = sorted(p.name for p in (node.spool / "incoming").iterdir())
    assert spooled == sorted(f"{d.SOPInstanceUID}.dcm" for d in (good1, good2))
    modalities = pacs.instances_by_modality()
    assert len(modalities["SR"]) == 2

    assert node.terminate() == 0
    log = node.log_text()
    assert log.count("refused an instance") == 3
    assert "element (0009,1010) truncated" in log and "no valid StudyInstanceUID" in log
    assert "stopped" in log
    # no patient data in any line, and the study is named by its tag only
    assert_no_patient_data(log, PATIENT_NAME, PATIENT_ID, str(good1.StudyInstanceUID))
