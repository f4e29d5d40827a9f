"""The node's configuration: one frozen dataclass, one field per ``cxr-triage serve`` flag."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["Destination", "NodeConfig", "parse_destination", "valid_ae_title"]

#: an AE title: 1-16 characters of the DICOM default repertoire, no backslash, not all spaces (PS3.5 6.2)
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")


def valid_ae_title(title: str) -> bool:
    """True for a usable AE title: 1 to 16 printable ASCII characters, no backslash, not blank."""
    return bool(_AE_TITLE.match(title)) and bool(title.strip())


@dataclass(frozen=True)
class Destination:
    """Where the results go by C-STORE: the PACS (or any Storage SCP).

    Attributes:
        ae_title: the called AE title.
        host: host name or IP address.
        port: TCP port.
    """

    ae_title: str
    host: str
    port: int

    def __post_init__(self) -> None:
        if not valid_ae_title(self.ae_title):
            raise ValueError(f"not a valid AE title: {self.ae_title!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port out of range: {self.port}")
        if not self.host:
            raise ValueError("empty destination host")

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def parse_destination(text: str) -> Destination:
    """``AET@HOST:PORT`` -> `Destination` (``PACS@10.0.0.5:104``; IPv6 as ``AET@[::1]:104``).

    Raises:
        ValueError: when the text is not of that form.
    """
    aet, at, rest = text.rpartition("@")
    host, colon, port = rest.rpartition(":")
    if not at or not colon or not port.isdigit():
        raise ValueError(f"destination must be AET@HOST:PORT, got {text!r}")
    return Destination(aet, host.strip("[]"), int(port))


@dataclass(frozen=True)
class NodeConfig:
    """Everything ``cxr-triage serve`` runs with.

    Attributes:
        ae_title: the node's own AE title (called AE title it answers to).
        port: TCP port of the Storage SCP.
        host: address it listens on (``0.0.0.0``: every interface).
        accepted_calling: calling AE titles allowed to associate; every other is refused at association.
            Empty: accept any (only with ``accept_any_calling``).
        accept_any_calling: accept every calling AE title (must be said explicitly).
        spool_dir: the node's folder: received instances, results, dead letters and the journal.
        destination: where the SR and SC go.
        quiet_seconds: a study is triaged once no new instance of it came for this long.
        model: the checkpoint (``cral-train`` safetensors).
        device: ``auto``, ``cpu``, ``cuda``...
        fast: the CPU fast path (see `cxr_viewer.inference.fast_mode`).
        batch_size: images per forward pass.
        workers: decoding threads of the batch path.
        send_attempts: C-STORE attempts per result before it goes to the dead-letter folder.
        retry_seconds: wait after the first failed attempt; it doubles after each further one.
        retry_max_seconds: the longest wait between two attempts.
        poll_seconds: how often the triage and send loops look for work.
        max_associations: concurrent associations the SCP accepts.
        network_timeout: seconds of silence after which an association is dropped (ACSE/DIMSE/network).
    """

    ae_title: str
    port: int
    spool_dir: Path
    destination: Destination
    model: Path
    accepted_calling: tuple[str, ...] = ()
    accept_any_calling: bool = False
    host: str = "0.0.0.0"
    quiet_seconds: float = 5.0
    device: str = "auto"
    fast: str = "auto"
    batch_size: int = 16
    workers: int = 2
    send_attempts: int = 5
    retry_seconds: float = 2.0
    retry_max_seconds: float = 300.0
    poll_seconds: float = 0.2
    max_associations: int = 10
    network_timeout: float = 60.0

    def __post_init__(self) -> None:
        if not valid_ae_title(self.ae_title):
            raise ValueError(f"not a valid AE title: {self.ae_title!r}")
        bad = [t for t in self.accepted_calling if not valid_ae_title(t)]
        if bad:
            raise ValueError(f"not a valid calling AE title: {bad[0]!r}")
        if not self.accepted_calling and not self.accept_any_calling:
            raise ValueError("name the calling AE titles to accept (--accept AET ...) or --accept-any")
        if not 0 <= self.port < 65536:
            raise ValueError(f"port out of range: {self.port}")
        if self.quiet_seconds < 0 or self.poll_seconds <= 0:
            raise ValueError("quiet and poll times must be >= 0 and > 0")
        if self.send_attempts < 1 or self.batch_size < 1 or self.workers < 0 or self.max_associations < 1:
            raise ValueError("send attempts, batch size and associations must be >= 1, workers >= 0")
        if self.retry_seconds < 0 or self.retry_max_seconds < self.retry_seconds:
            raise ValueError("retry times must satisfy 0 <= --retry-seconds <= --retry-max-seconds")

    def retry_delay(self, attempts: int) -> float:
        """Seconds to wait after ``attempts`` failed attempts (>= 1): doubling, capped."""
        return float(min(self.retry_max_seconds, self.retry_seconds * 2 ** max(0, attempts - 1)))
