"""A real PACS for the tests: Orthanc (Debian packages ``orthanc`` + ``orthanc-dicomweb``) on loopback.

`start_orthanc` writes a temporary JSON configuration and storage folder, starts ``Orthanc`` on free
ports (DICOM and HTTP, 127.0.0.1 only) with the DICOMweb plugin loaded and the given modalities known,
waits until its REST API answers, and returns an `OrthancServer`; ``server.stop()`` (or the fixture that
wraps it, in ``tests/cxr_viewer/conftest.py``) stops it. The Debian service of the package, if it runs
at all, does not matter: every server here has its own ports, folder and configuration.

HTTP goes through `urllib` (no extra test dependency); authentication is off and the server listens on
loopback only. `orthanc_missing` says why the tests cannot run here (no binary, no plugin); in CI
(``$CI`` set) such a test must fail, not skip, because ``.ci/run`` installs the packages.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

__all__ = [
    "ORTHANC_AET",
    "OrthancServer",
    "dicomweb_plugin",
    "free_port",
    "orthanc_binary",
    "orthanc_missing",
    "start_orthanc",
]

#: the AE title every test Orthanc answers to
ORTHANC_AET = "ORTHANC"

#: where Debian's orthanc-dicomweb puts its plugin (the first is the link Orthanc's own config uses)
_PLUGIN_GLOBS = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "/usr/lib/orthanc/libOrthancDicomWeb.so*",
    "/usr/lib/*/orthanc/libOrthancDicomWeb.so*",
    "/usr/local/share/orthanc/plugins/libOrthancDicomWeb.so*",
)


def orthanc_binary() -> str | None:
    """The ``Orthanc`` executable on PATH (Debian installs it in /usr/sbin), or None."""
    return shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin:/usr/local/sbin")


def dicomweb_plugin() -> str | None:
    """Path of the DICOMweb plugin's shared library: from ``dpkg -L orthanc-dicomweb`` when dpkg knows
    the package, else the usual install places; None when there is none."""
    dpkg = shutil.which("dpkg")
    if dpkg is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            listed = subprocess.run(
                [dpkg, "-L", "orthanc-dicomweb"], capture_output=True, text=True, timeout=30, check=False
            ).stdout.split()
            libs = sorted(p for p in listed if "libOrthancDicomWeb.so" in p and os.path.isfile(p))
            if libs:
                return libs[0]
    for pattern in _PLUGIN_GLOBS:
        found = sorted(p for p in glob.glob(pattern) if os.path.isfile(p))
        if found:
            return found[0]
    return None


def orthanc_missing() -> str:
    """Why a test Orthanc cannot start on this machine ("" when it can)."""
    if orthanc_binary() is None:
        return "Orthanc is not installed (apt-get install -y orthanc orthanc-dicomweb dcmtk; .ci/run does it)"
    if dicomweb_plugin() is None:
        return "the Orthanc DICOMweb plugin is not installed (apt-get install -y orthanc-dicomweb)"
    return ""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel's choice; another process may take it later,
    which `start_orthanc` survives by trying again)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class OrthancServer:
    """A running test Orthanc.

    Attributes:
        aet: its AE title (`ORTHANC_AET`).
        dicom_port: its DICOM port on 127.0.0.1.
        http_port: its REST / DICOMweb port on 127.0.0.1.
        workdir: folder of its configuration, storage and log.
        process: the ``Orthanc`` process.
    """

    aet: str
    dicom_port: int
    http_port: int
    workdir: Path
    process: subprocess.Popen[bytes]
    _log: IO[bytes] | None = field(default=None, repr=False)

    host = "127.0.0.1"

    @property
    def url(self) -> str:
        """Root of the REST API, e.g. ``http://127.0.0.1:8042``."""
        return f"http://{self.host}:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        """Root of DICOMweb (QIDO-RS, WADO-RS, STOW-RS), e.g. ``http://127.0.0.1:8042/dicom-web``."""
        return f"{self.url}/dicom-web"

    @property
    def log_path(self) -> Path:
        return self.workdir / "orthanc.log"

    def log_text(self) -> str:
        """Everything Orthanc has written to its log so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # -- REST ------------------------------------------------------------------------------------------

    def get_bytes(self, path: str, timeout: float = 30.0) -> bytes:
        """GET ``path`` (e.g. ``/instances``) and return the body.

        Raises:
            urllib.error.URLError: the server did not answer or answered with an error.
        """
        with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
            return bytes(resp.read())

    def get_json(self, path: str, timeout: float = 30.0) -> Any:
        """GET ``path`` and parse it as JSON."""
        return json.loads(self.get_bytes(path, timeout))

    def post_json(self, path: str, body: Any, timeout: float = 60.0) -> Any:
        """POST ``body`` as JSON to ``path`` and parse the answer as JSON."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method="POST")
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def upload(self, dicom: bytes | os.PathLike[str] | str) -> dict[str, Any]:
        """Store a DICOM file through the REST API (``POST /instances``); returns Orthanc's answer."""
        data = dicom if isinstance(dicom, bytes) else Path(dicom).read_bytes()
        answer: dict[str, Any] = self.post_json("/instances", data)
        return answer

    def instances(self) -> list[str]:
        """Orthanc ids of every stored instance."""
        ids: list[str] = self.get_json("/instances")
        return ids

    def instance_tags(self, orthanc_id: str) -> dict[str, Any]:
        """``/instances/{id}/simplified-tags``: keyword -> value (sequences as lists of dicts)."""
        tags: dict[str, Any] = self.get_json(f"/instances/{orthanc_id}/simplified-tags")
        return tags

    def instance_file(self, orthanc_id: str) -> bytes:
        """The stored DICOM file of an instance, byte for byte."""
        return self.get_bytes(f"/instances/{orthanc_id}/file")

    def instances_by_modality(self) -> dict[str, list[str]]:
        """Stored instance ids grouped by the Modality of their series (``SR``, ``OT``, ``CR``...)."""
        out: dict[str, list[str]] = {}
        for sid in self.get_json("/series"):
            series = self.get_json(f"/series/{sid}")
            modality = str(series.get("MainDicomTags", {}).get("Modality", ""))
            out.setdefault(modality, []).extend(series.get("Instances", []))
        return out

    def wait_for_instances(self, count: int, timeout: float = 60.0, poll: float = 0.2) -> list[str]:
        """Poll until at least ``count`` instances are stored; returns their ids.

        Raises:
            TimeoutError: fewer after ``timeout`` seconds (the message says how many).
        """
        deadline = time.monotonic() + timeout
        ids = self.instances()
        while len(ids) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"Orthanc holds {len(ids)} instances after {timeout:.0f} s, wanted {count}"
                )
            time.sleep(poll)
            ids = self.instances()
        return ids

    # -- life ------------------------------------------------------------------------------------------

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; idempotent."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None


def _config(
    workdir: Path,
    aet: str,
    dicom_port: int,
    http_port: int,
    plugin: str,
    modalities: dict[str, tuple[str, str, int]],
) -> dict[str, Any]:
    return {
        "Name": "cxr-test-orthanc",
        "StorageDirectory": str(workdir / "storage"),
        "IndexDirectory": str(workdir / "storage"),
        "StorageCompression": False,
        "Plugins": [plugin],
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "SslEnabled": False,
        "HttpDescribeErrors": True,
        "HttpThreadsCount": 8,
        "DicomServerEnabled": True,
        "DicomAet": aet,
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,  # any calling AE may store (the node's AE need not be listed)
        "DicomCheckModalityHost": False,
        "UnknownSopClassAccepted": True,
        "DicomScpTimeout": 30,
        "DicomModalities": {name: [ae, host, port] for name, (ae, host, port) in modalities.items()},
        "DeidentifyLogs": True,
        "SaveJobs": False,
        "StableAge": 2,
        "DicomWeb": {
            "Enable": True,
            "Root": "/dicom-web/",
            "EnableWado": True,
            "WadoRoot": "/wado",
            "Host": "127.0.0.1",
            "Ssl": False,
        },
    }


def start_orthanc(
    workdir: Path,
    *,
    aet: str = ORTHANC_AET,
    modalities: dict[str, tuple[str, str, int]] | None = None,
    timeout: float = 60.0,
    attempts: int = 3,
) -> OrthancServer:
    """Start Orthanc on free loopback ports with a configuration and storage under ``workdir``.

    Args:
        workdir: an empty (or new) folder; holds ``orthanc.json``, ``storage/`` and ``orthanc.log``.
        aet: Orthanc's AE title.
        modalities: DICOM peers Orthanc knows, ``name -> (AE title, host, port)`` (for C-MOVE / C-STORE
            from Orthanc, e.g. to the node).
        timeout: seconds to wait for the REST API to answer.
        attempts: tries with new ports when one was taken between choosing and binding it.

    Returns:
        The running server.

    Raises:
        RuntimeError: Orthanc or its DICOMweb plugin is missing, or the server did not come up (the
            message holds the end of its log).
    """
    missing = orthanc_missing()
    if missing:
        raise RuntimeError(missing)
    binary, plugin = orthanc_binary(), dicomweb_plugin()
    assert binary is not None and plugin is not None
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "storage").mkdir(exist_ok=True)
    last = ""
    for _ in range(max(1, attempts)):
        dicom_port, http_port = free_port(), free_port()
        while http_port == dicom_port:
            http_port = free_port()
        conf = workdir / "orthanc.json"
        conf.write_text(json.dumps(_config(workdir, aet, dicom_port, http_port, plugin, modalities or {})))
        log = open(workdir / "orthanc.log", "ab")  # noqa: SIM115 (closed by OrthancServer.stop)
        proc = subprocess.Popen(
            [binary, str(conf)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
            start_new_session=True,  # a Ctrl-C in the test run does not reach it; stop() does
        )
        server = OrthancServer(aet, dicom_port, http_port, workdir, proc, log)
        if _wait_until_up(server, timeout):
            return server
        last = server.log_text()[-3000:]
        server.stop()
    raise RuntimeError(f"Orthanc did not start in {timeout:.0f} s; end of its log:\n{last}")


def _wait_until_up(server: OrthancServer, timeout: float) -> bool:
    """True once ``/system`` answers and the DICOM port accepts connections; False if the process ends
    or ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            return False
        try:
            info = server.get_json("/system", timeout=2.0)
            if int(info.get("DicomPort", -1)) == server.dicom_port:
                with socket.create_connection((server.host, server.dicom_port), timeout=2.0):
                    return True
        except (OSError, ValueError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    return False
