"""The node's parts in-process, without a network peer: configuration, journal (exactly-once commits),
spool, data set checks, crash recovery, the sender's retry and dead-letter, status lines."""

from __future__ import annotations

import io
import logging
import struct
from typing import TYPE_CHECKING

import pytest
from helpers.orthanc import free_port
from node_helpers import PATIENT_ID, PATIENT_NAME, small_instances

from cxr_viewer.node.config import Destination, NodeConfig, parse_destination
from cxr_viewer.node.handlers import CANNOT_UNDERSTAND, DOES_NOT_MATCH, BadDataset, check_dataset
from cxr_viewer.node.journal import Journal, QueuedResult, TriageOutcome
from cxr_viewer.node.sender import Sender
from cxr_viewer.node.service import recover
from cxr_viewer.node.spool import Spool
from cxr_viewer.node.status import study_tag, triaged_line

if TYPE_CHECKING:
    import pydicom

STUDY = "1.2.826.0.1.3680043.8.498.1"


def _config(tmp_path, **kw) -> NodeConfig:
    base = {
        "ae_title": "NODE",
        "port": 0,
        "spool_dir": tmp_path / "spool",
        "destination": Destination("PACS", "127.0.0.1", 104),
        "model": tmp_path / "m.safetensors",
        "accepted_calling": ("MOD1",),
    }
    base.update(kw)
    return NodeConfig(**base)


def test_config_needs_accepted_callers_and_valid_titles(tmp_path):
    with pytest.raises(ValueError, match="--accept"):
        _config(tmp_path, accepted_calling=())
    assert _config(tmp_path, accepted_calling=(), accept_any_calling=True).accept_any_calling
    with pytest.raises(ValueError, match="AE title"):
        _config(tmp_path, ae_title="A" * 17)
    with pytest.raises(ValueError, match="calling AE title"):
        _config(tmp_path, accepted_calling=("BAD\\AE",))
    assert parse_destination("PACS@10.0.0.5:104") == Destination("PACS", "10.0.0.5", 104)
    assert parse_destination("PACS@[::1]:11112") == Destination("PACS", "::1", 11112)
    with pytest.raises(ValueError, match="AET@HOST:PORT"):
        parse_destination("PACS:104")
    cfg = _config(tmp_path, retry_seconds=2.0, retry_max_seconds=10.0)
    assert [cfg.retry_delay(a) for a in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 10.0]


def test_journal_commits_a_triage_once(tmp_path):
    j = Journal(tmp_path / "j.sqlite")
    assert j.record_instance("1.2.3", STUDY, "1.2.840.10008.5.1.4.1.1.1", "/x/1.2.3.dcm", "MOD1", now=100.0)
    assert not j.record_instance(
        "1.2.3", STUDY, "1.2.840.10008.5.1.4.1.1.1", "/x/1.2.3.dcm", "MOD1", now=101.0
    )
    j.record_instance("1.2.4", STUDY, "1.2.840.10008.5.1.4.1.1.1", "/x/1.2.4.dcm", "MOD1", now=105.0)
    # the study is ready only once its newest instance is quiet_seconds old
    assert j.ready_studies(5.0, now=109.0) == []
    assert j.ready_studies(5.0, now=110.0) == [STUDY]
    pending = j.pending_instances(STUDY)
    assert [p.sop_uid for p in pending] == ["1.2.3", "1.2.4"]
    results = [QueuedResult("1.2.3", "SR", "1.2.840.10008.5.1.4.1.1.88.33", "9.1", "/r/sr")]
    outcomes = [TriageOutcome("1.2.3", "", 1.5), TriageOutcome("1.2.4", "not a radiograph")]
    assert j.commit_triage(outcomes, results, STUDY) == 2
    # a second commit of the same instances (a stale triage) changes nothing at all
    assert j.commit_triage(outcomes, results, STUDY) == 0
    assert j.triage_counts() == {"1.2.3": 1, "1.2.4": 1}
    c = j.counts()
    assert (c["received"], c["triaged"], c["errors"], c["pending"], c["max_triage_count"]) == (2, 2, 1, 1, 1)
    assert j.ready_studies(5.0, now=1e12) == []
    j.close()
    # durable: a new connection sees it all
    j2 = Journal(tmp_path / "j.sqlite")
    assert j2.counts() == c
    j2.close()


def test_spool_writes_whole_files_and_refuses_bad_names(tmp_path):
    s = Spool(tmp_path / "spool")
    p = s.write_atomic(s.instance_path("1.2.3"), b"abc")
    assert p.read_bytes() == b"abc" and list(s.tmp.iterdir()) == []
    for bad in ("../1.2", "1..2", "01.2", "", "1.2/3"):
        with pytest.raises(ValueError, match="invalid SOP Instance UID"):
            s.instance_path(bad)


def _encoded(ds: pydicom.Dataset) -> pydicom.Dataset:
    """``ds`` through the wire format and back (what the SCP's handler sees)."""
    from pynetdicom.dsutils import decode, encode

    return decode(io.BytesIO(encode(ds, False, True)), False, True, False)


def test_dataset_checks_give_the_failure_statuses(shared_data):
    rg1 = shared_data("dicom", "RG1_UNCR.dcm")
    (good,) = small_instances(rg1, 1)
    cls, uid = str(good.SOPClassUID), str(good.SOPInstanceUID)
    assert check_dataset(_encoded(good), cls, uid, False).study_uid == good.StudyInstanceUID

    def status(ds, sop_class=cls, sop_uid=uid) -> int:
        with pytest.raises(BadDataset) as err:
            check_dataset(ds, sop_class, sop_uid, False)
        assert PATIENT_NAME not in str(err.value) and PATIENT_ID not in str(err.value)
        return err.value.status

    assert status(_encoded(good), sop_class="1.2.840.10008.5.1.4.1.1.7") == DOES_NOT_MATCH
    assert status(_encoded(good), sop_uid="1.2.3") == DOES_NOT_MATCH
    no_study = _encoded(good)
    del no_study.StudyInstanceUID
    assert status(no_study) == CANNOT_UNDERSTAND
    short = _encoded(good)
    short.PixelData = short.PixelData[:1000]
    assert status(short) == DOES_NOT_MATCH
    from pynetdicom.dsutils import decode, encode

    raw = encode(good, False, True) + struct.pack("<HH2sHI", 0x0009, 0x1010, b"OB", 0, 1 << 20) + b"abc"
    assert status(decode(io.BytesIO(raw), False, True, False)) == CANNOT_UNDERSTAND


def test_recover_adopts_whole_files_quarantines_garbage_and_drops_unfinished_results(tmp_path, shared_data):
    (ds,) = small_instances(shared_data("dicom", "RG1_UNCR.dcm"), 1)
    s = Spool(tmp_path / "spool")
    j = Journal(s.journal_path)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    s.write_atomic(s.instance_path(ds.SOPInstanceUID), buf.getvalue())  # crashed before the journal
    (s.incoming / "1.2.9.dcm").write_bytes(b"not dicom")
    (s.tmp / "x.part").write_bytes(b"half")
    s.write_atomic(s.result_path("1.2.9", "SR"), b"uncommitted")
    assert recover(s, j) == {"tmp": 1, "adopted": 1, "quarantined": 1, "stale_results": 1}
    assert [p.sop_uid for p in j.pending_instances(str(ds.StudyInstanceUID))] == [ds.SOPInstanceUID]
    assert (s.quarantine / "1.2.9.dcm").exists() and not list(s.results.iterdir())
    assert recover(s, j) == {"tmp": 0, "adopted": 0, "quarantined": 0, "stale_results": 0}  # idempotent
    j.close()


def test_sender_retries_then_dead_letters_when_the_destination_is_down(tmp_path, caplog):
    port = free_port()  # nothing listens there
    cfg = _config(
        tmp_path, destination=Destination("PACS", "127.0.0.1", port), send_attempts=2, retry_seconds=0.0,
        retry_max_seconds=0.0, network_timeout=5.0,
    )  # fmt: skip
    s = Spool(cfg.spool_dir)
    j = Journal(s.journal_path)
    j.record_instance("1.2.3", STUDY, "1.2.840.10008.5.1.4.1.1.1", "/x", "MOD1")
    path = s.write_atomic(s.result_path("1.2.3", "SR"), b"an SR")
    j.commit_triage(
        [TriageOutcome("1.2.3", "", 1.0)],
        [QueuedResult("1.2.3", "SR", "1.2.840.10008.5.1.4.1.1.88.33", "9.9", str(path))],
        STUDY,
    )
    sender = Sender(cfg, j, s)
    with caplog.at_level(logging.INFO, logger="cxr_viewer.node"):
        assert sender.run_once() == 0
        assert j.counts()["pending"] == 1  # first failure: retried
        assert sender.run_once() == 0
    c = j.counts()
    assert (c["pending"], c["sent"], c["dead"]) == (0, 0, 1)
    assert (s.dead_letter / path.name).read_bytes() == b"an SR" and not path.exists()
    text = caplog.text
    assert "attempt 1 of 2" in text and "dead-lettered after 2 attempts" in text
    assert "in dead-letter/" in text and study_tag(STUDY) in text
    assert STUDY not in text and "1.2.3" not in text  # no UID of the study or the source
    j.close()


def test_status_lines_name_the_study_by_a_tag_only():
    tag = study_tag(STUDY)
    assert tag == study_tag(STUDY) and tag.startswith("S-") and len(tag) == 12 and STUDY not in tag
    line = triaged_line(STUDY, 2, ["not a radiograph"], 0.84, 1.42, ["Effusion"], 4, "PACS@h:104")
    assert line == (
        f"study {tag}: 3 images triaged in 0.8 s, score 1.42, flagged Effusion; 1 not analysed "
        "(not a radiograph); 4 results queued for PACS@h:104"
    )


def test_importing_the_node_loads_no_qt_torch_or_model():
    import subprocess
    import sys

    code = (
        "import sys, cxr_viewer.node, cxr_viewer.cli.serve; "
        "print(sorted(m for m in ('PySide6', 'pyqtgraph', 'torch', 'cral_model') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"


def test_serve_command_line_refuses_bad_arguments_before_loading_a_model(tmp_path, capsys):
    from cxr_viewer.cli.triage import main

    base = ["serve", "--spool", str(tmp_path / "s"), "--model", str(tmp_path / "missing.safetensors")]
    with pytest.raises(SystemExit) as err:
        main([*base, "--destination", "PACS@h:104"])  # no --accept
    assert err.value.code == 2 and "--accept" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        main([*base, "--accept", "MOD1", "--destination", "PACS-h-104"])
    assert err.value.code == 2 and "AET@HOST:PORT" in capsys.readouterr().err
    # a model that does not load: one line, exit 1, nothing listening
    assert main([*base, "--accept", "MOD1", "--destination", "PACS@h:104"]) == 1
    assert "cannot load model missing.safetensors" in capsys.readouterr().err
