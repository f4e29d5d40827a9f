"""Helpers of the DICOM node tests (importable as ``node_helpers``): the node as a real process, a C-STORE
sender, and cheap real instances (RG1 downscaled, with new UIDs and made-up patient data to look for in
the logs). The fixtures are in this folder's conftest.py."""

from __future__ import annotations

import copy
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from helpers.orthanc import free_port

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from helpers.orthanc import OrthancServer
    from pydicom.dataset import Dataset

#: the calling AE title the tests send as, and the node's own
SCU_AET = "TESTSCU"
NODE_AET = "CXRNODE"
#: patient data put into every test instance: none of it may appear in a log or status line
PATIENT_NAME = "DOE^JANE^PHI"
PATIENT_ID = "PID-4711-SECRET"
#: the repository root (the node runs from it, as `python -m cxr_viewer.cli.triage serve`)
ROOT = Path(__file__).resolve().parents[3]


def need_storescu() -> str:
    """dcmtk's ``storescu``; skips without it, except in CI (``$CI``), where ``.ci/run`` installs it."""
    found = shutil.which("storescu")
    if found is None:
        missing = "dcmtk's storescu is not installed (apt-get install -y dcmtk; .ci/run does it)"
        if os.environ.get("CI"):
            pytest.fail(f"{missing}; CI must run the DICOM tests")
        pytest.skip(missing)
    return found


def node_env() -> dict[str, str]:
    """The environment of the node and cxr-triage processes: one thread each (2 shared cores)."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", CXR_TRIAGE_FAST="off", PYTHONUNBUFFERED="1")
    return env


@dataclass
class NodeProcess:
    """``cxr-triage serve`` running as its own process, its stderr in ``log_path``."""

    process: subprocess.Popen[bytes]
    port: int
    spool: Path
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            if self.process.poll() is not None:
                raise AssertionError(
                    f"node exited ({self.process.returncode}) before {text!r}:\n{self.log_text()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {text!r} in the node's log after {timeout:.0f} s:\n{self.log_text()}"
                )
            time.sleep(0.1)

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill9(self) -> None:
        self.process.kill()  # SIGKILL: no cleanup of any kind
        self.process.wait(30)


def start_node(
    spool: Path,
    destination: OrthancServer,
    checkpoint: Path,
    *,
    accept: Sequence[str] = (SCU_AET,),
    quiet: float = 0.5,
    extra: Sequence[str] = (),
    log_name: str = "node.log",
) -> NodeProcess:
    """Start ``cxr-triage serve`` on a free port and wait until it listens."""
    spool.mkdir(parents=True, exist_ok=True)
    last = ""
    for _ in range(3):  # a port taken between choosing and binding it: try another
        port = free_port()
        log_path = spool.parent / f"{spool.name}-{port}-{log_name}"
        cmd = [
            sys.executable,
            "-m",
            "cxr_viewer.cli.triage",
            "serve",
            "--ae-title",
            NODE_AET,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--accept",
            *accept,
            "--destination",
            f"{destination.aet}@127.0.0.1:{destination.dicom_port}",
            "--spool",
            str(spool),
            "--quiet-seconds",
            str(quiet),
            "--model",
            str(checkpoint),
            "--no-fast",
            "--threads",
            "1",
            "--workers",
            "1",
            "--retry-seconds",
            "0.5",
            "--network-timeout",
            "180",
            *extra,
        ]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                cmd, cwd=ROOT, env=node_env(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        node = NodeProcess(proc, port, spool, log_path)
        try:
            node.wait_for_log("listening as")
            return node
        except AssertionError as exc:
            last = str(exc)
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
    raise AssertionError(last)


def store(
    port: int,
    datasets: Iterable[Dataset | Path],
    *,
    calling: str = SCU_AET,
    called: str = NODE_AET,
    on_status: Any = None,
) -> dict[str, int]:
    """C-STORE ``datasets`` to 127.0.0.1:``port`` on one association -> SOP Instance UID: status
    (-1 when no response came: the association broke). Raises `ConnectionError` when the association
    is not accepted."""
    from pydicom import dcmread
    from pynetdicom import AE

    items = list(datasets)
    ae = AE(calling)
    classes = set()
    for d in items:
        ds = dcmread(d, stop_before_pixels=True) if isinstance(d, Path) else d
        classes.add((str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)))
    for sop_class, ts in sorted(classes):
        ae.add_requested_context(sop_class, [ts])
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 180  # fsync on a busy shared disk can be slow
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    if not assoc.is_established:
        raise ConnectionError("rejected" if assoc.is_rejected else "not established")
    out: dict[str, int] = {}
    try:
        for d in items:
            ds = dcmread(d, stop_before_pixels=True) if isinstance(d, Path) else d
            uid = str(ds.SOPInstanceUID)
            if not assoc.is_established:
                out[uid] = -1
                continue
            try:
                status = assoc.send_c_store(d)
                code = int(status.Status) if "Status" in status else -1
            except Exception:
                code = -1
            out[uid] = code
            if on_status is not None:
                on_status(uid, code)
    finally:
        if assoc.is_established:
            assoc.release()
    return out


def echo(port: int, *, calling: str = SCU_AET, called: str = NODE_AET) -> int:
    """C-ECHO (Verification) to 127.0.0.1:``port``; its status (-1 when there was no answer)."""
    from pynetdicom import AE

    ae = AE(calling)
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    if not assoc.is_established:
        raise ConnectionError("rejected" if assoc.is_rejected else "not established")
    try:
        status = assoc.send_c_echo()
        return int(status.Status) if "Status" in status else -1
    finally:
        assoc.release()


def small_instances(rg1: Path, n: int, studies: int = 1, step: int = 8) -> list[Dataset]:
    """``n`` real CR instances: RG1's header and pixels (every ``step``-th pixel: 245 x 231), each with
    a new SOP Instance UID, spread over ``studies`` new studies (one series each), and the test's
    made-up patient name and ID."""
    import numpy as np
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    src = pydicom.dcmread(rg1)
    px = np.ascontiguousarray(src.pixel_array[::step, ::step]).astype(np.uint16)
    del src.PixelData
    study_uids = [generate_uid() for _ in range(studies)]
    series_uids = [generate_uid() for _ in range(studies)]
    out = []
    for i in range(n):
        ds = copy.deepcopy(src)  # Dataset.copy() shares its elements between the copies
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyInstanceUID = study_uids[i % studies]
        ds.SeriesInstanceUID = series_uids[i % studies]
        ds.InstanceNumber = i + 1
        ds.PatientName = PATIENT_NAME
        ds.PatientID = PATIENT_ID
        ds.Rows, ds.Columns = px.shape
        ds.PixelData = px.tobytes()
        ds["PixelData"].VR = "OW"
        out.append(ds)
    return out


def assert_no_patient_data(text: str, *extra: str) -> None:
    """No patient name or ID of the test instances (or ``extra`` values) anywhere in ``text``."""
    for value in (PATIENT_NAME, PATIENT_ID, "DOE^JANE", "PID-4711", *extra):
        if value:
            assert value not in text, f"patient data {value!r} in the node's output"
