"""Load and crashes, with the node as a real process and a real Orthanc: 200 instances from 4 concurrent
associations are all triaged once; ``kill -9`` in the middle of a stream, a restart on the same spool
and a resend of everything: every acknowledged instance is triaged exactly once and none is lost."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pydicom
import pytest
from node_helpers import assert_no_patient_data, small_instances, start_node, store

from cxr_viewer.node.handlers import SUCCESS
from cxr_viewer.node.journal import Journal


def wait_triaged(spool, count: int, timeout: float = 1200.0) -> dict[str, int]:
    """Poll the node's journal until ``count`` instances are triaged; returns SOP UID -> triage count."""
    deadline = time.monotonic() + timeout
    journal = Journal(spool / "journal.sqlite")
    try:
        while True:
            c = journal.counts()
            if c["triaged"] >= count and c["pending"] == 0:
                return journal.triage_counts()
            if time.monotonic() > deadline:
                raise AssertionError(f"after {timeout:.0f} s: {c}, wanted {count} triaged and all sent")
            time.sleep(0.5)
    finally:
        journal.close()


def sr_sources(pacs) -> list[str]:
    """The source SOP Instance UID each SR in Orthanc refers to (one entry per SR)."""
    out = []
    for iid in pacs.instances_by_modality().get("SR", []):
        sr = pydicom.dcmread(io.BytesIO(pacs.instance_file(iid)))
        (study,) = sr.CurrentRequestedProcedureEvidenceSequence
        (series,) = study.ReferencedSeriesSequence
        (ref,) = series.ReferencedSOPSequence
        out.append(str(ref.ReferencedSOPInstanceUID))
    return out


@pytest.mark.slow
def test_200_instances_from_4_associations_all_triaged_once(
    make_orthanc, node_checkpoint, shared_data, tmp_path, running_nodes
):
    rg1 = shared_data("dicom", "RG1_UNCR.dcm")
    pacs = make_orthanc()
    node = start_node(tmp_path / "spool", pacs, node_checkpoint, quiet=1.0)
    running_nodes.append(node)
    instances = small_instances(rg1, 200, studies=8)
    chunks = [instances[i::4] for i in range(4)]  # each association sends two studies, interleaved
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda chunk: store(node.port, chunk), chunks))
    statuses = {uid: s for r in results for uid, s in r.items()}
    assert len(statuses) == 200 and set(statuses.values()) == {SUCCESS}

    counts = wait_triaged(node.spool, 200)
    assert sorted(counts) == sorted(d.SOPInstanceUID for d in instances)
    assert set(counts.values()) == {1}  # every instance triaged once
    pacs.wait_for_instances(400, timeout=300)
    sources = sr_sources(pacs)
    assert len(sources) == 200 and set(sources) == set(counts)  # one SR per instance, in the PACS

    assert node.terminate() == 0
    log = node.log_text()
    assert log.count("images triaged in") + log.count("image triaged in") >= 8  # a line per study at least
    assert_no_patient_data(log)


@pytest.mark.slow
def test_kill_9_mid_stream_then_restart_loses_and_repeats_nothing(
    make_orthanc, node_checkpoint, shared_data, tmp_path, running_nodes
):
    rg1 = shared_data("dicom", "RG1_UNCR.dcm")
    pacs = make_orthanc()
    spool = tmp_path / "spool"
    node = start_node(spool, pacs, node_checkpoint, quiet=0.3)
    running_nodes.append(node)
    # three studies one after the other: the first is triaged (and its results sent) while the
    # second streams in; the node is killed in the middle of the second
    instances = [d for s in range(3) for d in small_instances(rg1, 20, studies=1)]
    acked: set[str] = set()
    killed = threading.Event()

    def on_status(uid: str, status: int) -> None:
        if status == SUCCESS:
            acked.add(uid)
        if len(acked) == 20:
            time.sleep(1.5)  # let study 1 be triaged and sent, at least in part
        if len(acked) >= 30 and not killed.is_set():
            node.kill9()
            killed.set()

    first = store(node.port, instances, on_status=on_status)
    assert killed.is_set()
    assert {u for u, s in first.items() if s == SUCCESS} == acked
    assert 30 <= len(acked) < 60  # the rest were not acknowledged (the association broke)

    # restart on the same spool; the modality sends everything again (the acknowledged ones too)
    node2 = start_node(spool, pacs, node_checkpoint, quiet=0.3, log_name="node2.log")
    running_nodes.append(node2)
    second = store(node2.port, instances)
    assert set(second.values()) == {SUCCESS}

    counts = wait_triaged(spool, 60)
    assert acked <= set(counts)  # none acknowledged was lost
    assert sorted(counts) == sorted(d.SOPInstanceUID for d in instances)
    assert set(counts.values()) == {1}  # and none triaged twice, across the crash and the resend
    pacs.wait_for_instances(120, timeout=300)
    sources = sr_sources(pacs)
    assert sorted(sources) == sorted(counts)  # exactly one SR per instance in the PACS

    assert node2.terminate() == 0
    log2 = node2.log_text()
    assert "already acknowledged" in log2
    assert_no_patient_data(node.log_text() + log2)
