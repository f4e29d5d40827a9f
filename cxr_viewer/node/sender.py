"""The C-STORE SCU that sends the results to the destination, with retry and a dead-letter folder.

Each pass takes the results whose next attempt is due (`cxr_viewer.node.journal.Journal.due`), opens
one association to the destination with a presentation context per SOP class, and sends them. A
success or warning status marks a result ``sent``. A failure status, an association that is refused or
cannot be opened, or one that drops, counts as a failed attempt: the next is due after
`NodeConfig.retry_delay` (doubling, capped); after ``send_attempts`` attempts the file is moved to
``dead-letter/`` and marked ``dead``, with a status line. A sent result's file stays in ``results/``.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxr_viewer.node.status import study_tag

if TYPE_CHECKING:
    from collections.abc import Sequence

    from cxr_viewer.node.config import NodeConfig
    from cxr_viewer.node.journal import Journal, OutboxItem
    from cxr_viewer.node.spool import Spool

__all__ = ["Sender"]

log = logging.getLogger("cxr_viewer.node")

#: the transfer syntax of the result files (highdicom writes Explicit VR Little Endian), and a fallback
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_IMPLICIT_LE = "1.2.840.10008.1.2"


def _ok(status: Any) -> bool:
    """Success (0x0000) or a warning (0x0001, 0xB000-0xBFFF): the destination kept the object."""
    code = getattr(status, "Status", None)
    return code is not None and (code == 0x0000 or code == 0x0001 or 0xB000 <= code <= 0xBFFF)


def _read(path: Path) -> Any:
    from pydicom import dcmread

    return dcmread(path)


class Sender:
    """Sends due results (call `run_once` from one thread).

    Args:
        config: the node's configuration (destination, attempts, retry delays, timeouts).
        journal: the state.
        spool: the folders (dead-letter).
    """

    def __init__(self, config: NodeConfig, journal: Journal, spool: Spool) -> None:
        self.config = config
        self.journal = journal
        self.spool = spool

    def run_once(self, now: float | None = None) -> int:
        """Send every due result once; returns how many were sent."""
        items = self.journal.due(now)
        if not items:
            return 0
        sent = 0
        try:
            sent = self._send(items)
        except Exception as exc:  # the association could not be made or broke: every unsent one failed
            self._failed_all(items, f"association failed: {type(exc).__name__}")
        self._report(items)
        return sent

    def _send(self, items: Sequence[OutboxItem]) -> int:
        from pynetdicom import AE, _config

        dest = self.config.destination
        ae = AE(self.config.ae_title)
        for sop_class in sorted({i.sop_class for i in items}):
            ae.add_requested_context(sop_class, [_EXPLICIT_LE])
            ae.add_requested_context(sop_class, [_IMPLICIT_LE])  # decoded and converted, if only this
        for attr in ("acse_timeout", "dimse_timeout", "network_timeout", "connection_timeout"):
            setattr(ae, attr, self.config.network_timeout)
        assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title)
        if not assoc.is_established:
            why = "refused" if assoc.is_rejected else "aborted" if assoc.is_aborted else "not established"
            raise ConnectionError(f"association {why}")
        # a file whose transfer syntax the destination accepted is sent as its bytes, not decoded and
        # encoded again (an SR is a deep tree: that costs more than the sending); pynetdicom's switch is
        # process-wide (the node's SCP side does not read it), so it is put back afterwards
        chunked = _config.STORE_SEND_CHUNKED_DATASET
        _config.STORE_SEND_CHUNKED_DATASET = True
        sent = 0
        handled: set[int] = set()
        as_is = {
            str(cx.abstract_syntax) for cx in assoc.accepted_contexts if cx.transfer_syntax == [_EXPLICIT_LE]
        }
        try:
            for item in items:
                if not assoc.is_established:
                    break
                handled.add(item.id)
                try:
                    status = assoc.send_c_store(
                        Path(item.path) if item.sop_class in as_is else _read(Path(item.path))
                    )
                except Exception as exc:  # a missing or unreadable result file, a broken association
                    self._failed(item, f"cannot send: {type(exc).__name__}")
                    continue
                if _ok(status):
                    self.journal.mark_sent(item.id)
                    sent += 1
                else:
                    code = getattr(status, "Status", None)
                    self._failed(item, "no response" if code is None else f"status 0x{int(code):04X}")
        finally:
            _config.STORE_SEND_CHUNKED_DATASET = chunked
            if assoc.is_established:
                assoc.release()
        rest = [i for i in items if i.id not in handled]
        if rest:
            self._failed_all(rest, "association dropped")
        return sent

    def _failed_all(self, items: Sequence[OutboxItem], reason: str) -> None:
        for item in items:
            self._failed(item, reason)

    def _failed(self, item: OutboxItem, reason: str) -> None:
        attempts = item.attempts + 1
        if attempts >= self.config.send_attempts:
            path = Path(item.path)
            try:
                moved = str(self.spool.move_to(path, self.spool.dead_letter))
            except OSError:
                moved = str(path)
            self.journal.mark_dead(item.id, reason, moved)
            log.error(  # the file name holds a UID: not printed (the journal has it)
                "study %s: %s result dead-lettered after %d attempts (%s), in %s/",
                study_tag(item.study_uid),
                item.kind,
                attempts,
                reason,
                Path(moved).parent.name,
            )
        else:
            delay = self.config.retry_delay(attempts)
            self.journal.mark_failed(item.id, reason, time.time() + delay)
            log.warning(
                "study %s: %s result not sent (%s), attempt %d of %d, next in %.0f s",
                study_tag(item.study_uid),
                item.kind,
                reason,
                attempts,
                self.config.send_attempts,
                delay,
            )

    def _report(self, items: Sequence[OutboxItem]) -> None:
        """A status line for each study whose results are now all sent (or dead)."""
        studies: dict[str, int] = defaultdict(int)
        for item in items:
            studies[item.study_uid] += 1
        for study in studies:
            counts = self.journal.study_outbox(study)
            if counts["pending"] == 0:
                dead = f", {counts['dead']} dead-lettered" if counts["dead"] else ""
                log.info(
                    "study %s: %d results sent to %s%s",
                    study_tag(study),
                    counts["sent"],
                    self.config.destination,
                    dead,
                )
