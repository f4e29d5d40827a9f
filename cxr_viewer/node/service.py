"""The DICOM node: the Storage SCP, the triage worker and the sender, started and stopped together.

`DicomNode.start` recovers the spool after a crash (`recover`), starts pynetdicom's server (a thread per
association) and two loop threads (triage, send); `DicomNode.stop` stops taking associations, lets
the triage in progress commit and the sender finish its pass, and closes the journal. ``cxr-triage
serve`` (`cxr_viewer.cli.serve`) runs it until SIGTERM or Ctrl-C.

The SCP accepts every Storage SOP class pynetdicom knows, in every transfer syntax it knows (the
readers decode JPEG, JPEG-LS, JPEG 2000 and RLE; a file they cannot decode is triaged as an error), and
Verification (C-ECHO). Associations whose calling AE title is not in ``accepted_calling`` are rejected
(unless ``accept_any_calling``), as are those that call another AE title than the node's.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from cxr_viewer.node.handlers import StoreHandler
from cxr_viewer.node.journal import Journal
from cxr_viewer.node.sender import Sender
from cxr_viewer.node.spool import Spool, valid_uid
from cxr_viewer.node.triage import TriageWorker

if TYPE_CHECKING:
    from pathlib import Path

    from cxr_viewer.inference import BatchPredictor
    from cxr_viewer.node.config import NodeConfig

__all__ = ["DicomNode", "recover"]

log = logging.getLogger("cxr_viewer.node")


def recover(spool: Spool, journal: Journal) -> dict[str, int]:
    """Put the spool and the journal back in agreement after a crash.

    * partial writes in ``tmp/`` are removed;
    * a whole file in ``incoming/`` that the journal does not know (the crash came between its rename
      and its journal commit, so it was never acknowledged) is adopted: recorded and triaged like the
      others; one whose header cannot be read goes to ``quarantine/``;
    * a file in ``results/`` that no queued result names (the crash came before its triage committed)
      is removed; that triage runs again and writes it again.

    Returns:
        ``{"tmp": n, "adopted": n, "quarantined": n, "stale_results": n}``.
    """
    import pydicom

    out = {"tmp": spool.clear_tmp(), "adopted": 0, "quarantined": 0, "stale_results": 0}
    known = journal.spooled_paths()
    for path in sorted(spool.incoming.glob("*.dcm")):
        if str(path) in known:
            continue
        try:
            ds = pydicom.dcmread(
                path,
                stop_before_pixels=True,
                specific_tags=["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID"],
            )
            sop, study, cls = str(ds.SOPInstanceUID), str(ds.StudyInstanceUID), str(ds.SOPClassUID)
            if not (valid_uid(sop) and valid_uid(study) and path.name == f"{sop}.dcm"):
                raise ValueError("bad UIDs")
        except Exception:
            spool.move_to(path, spool.quarantine)
            out["quarantined"] += 1
            continue
        if journal.record_instance(sop, study, cls, str(path), "(recovered)"):
            out["adopted"] += 1
    queued = journal.result_paths()
    for path in spool.results.glob("*.dcm"):
        if str(path) not in queued:
            path.unlink(missing_ok=True)
            out["stale_results"] += 1
    return out


class _Loop(threading.Thread):
    """Calls ``step()`` every ``poll`` seconds until stopped; an exception is logged and the loop goes on."""

    def __init__(self, name: str, step: Any, poll: float, stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self._step = step
        self._poll = poll
        self._stop_event = stop

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                busy = self._step()
            except Exception as exc:
                log.error("%s: %s (goes on)", self.name, type(exc).__name__)
                busy = 0
            if not busy:
                self._stop_event.wait(self._poll)


class DicomNode:
    """A running node (see the module docstring).

    Args:
        config: the configuration.
        predictor: the loaded model (`cxr_viewer.inference.load_predictor`).
    """

    def __init__(self, config: NodeConfig, predictor: BatchPredictor) -> None:
        self.config = config
        self.spool = Spool(config.spool_dir)
        self.journal = Journal(self.spool.journal_path)
        self.triage = TriageWorker(config, self.journal, self.spool, predictor)
        self.sender = Sender(config, self.journal, self.spool)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: Any = None
        self._ae: Any = None
        self.port = config.port

    def start(self) -> None:
        """Recover, start the SCP and the two loops. Returns once the SCP is listening.

        Raises:
            OSError: the port cannot be bound.
        """
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

        fixed = recover(self.spool, self.journal)
        if any(fixed.values()):
            log.info(
                "recovered the spool: %d partial writes removed, %d instances adopted, %d quarantined, "
                "%d unfinished results removed",
                fixed["tmp"],
                fixed["adopted"],
                fixed["quarantined"],
                fixed["stale_results"],
            )
        c = self.journal.counts()
        if c["received"]:
            log.info(
                "journal: %d instances (%d triaged), %d results pending, %d sent, %d dead",
                c["received"],
                c["triaged"],
                c["pending"],
                c["sent"],
                c["dead"],
            )
        ae = AE(self.config.ae_title)
        for cx in StoragePresentationContexts:
            if cx.abstract_syntax is not None:
                ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        if not self.config.accept_any_calling:
            ae.require_calling_aet = list(self.config.accepted_calling)
        ae.require_called_aet = True
        ae.maximum_associations = self.config.max_associations
        for attr in ("acse_timeout", "dimse_timeout", "network_timeout"):
            setattr(ae, attr, self.config.network_timeout)
        handler = StoreHandler(self.spool, self.journal)
        self._ae = ae
        self._server = ae.start_server(
            (self.config.host, self.config.port), block=False, evt_handlers=[(evt.EVT_C_STORE, handler)]
        )
        self.port = int(self._server.server_address[1])
        self._threads = [
            _Loop("triage", self.triage.run_once, self.config.poll_seconds, self._stop),
            _Loop("send", self.sender.run_once, self.config.poll_seconds, self._stop),
        ]
        for t in self._threads:
            t.start()
        log.info(
            "listening as %s on %s:%d; results to %s; a study is triaged %.1f s after its last instance",
            self.config.ae_title,
            self.config.host,
            self.port,
            self.config.destination,
            self.config.quiet_seconds,
        )

    def stop(self, timeout: float = 60.0) -> None:
        """Stop taking associations, finish the work in progress (within ``timeout`` s), close the journal."""
        if self._ae is not None:
            # closes the socket and aborts the open associations: an instance not acknowledged yet is
            # sent again by its sender; one acknowledged is in the journal
            self._ae.shutdown()
            self._ae = self._server = None
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if all(not t.is_alive() for t in self._threads):
            self.journal.close()
        log.info("stopped")

    @property
    def spool_dir(self) -> Path:
        return self.spool.root
