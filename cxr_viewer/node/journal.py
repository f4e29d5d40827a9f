"""The node's durable state: one SQLite database (WAL, ``synchronous=FULL``) beside the spool.

Three facts are kept, each changed only inside one transaction:

* ``instances``: every acknowledged instance (SOP Instance UID, its study, the spooled file), with its
  state ``received`` -> ``triaged``. An instance is recorded after its file is on disk and before the
  C-STORE response is sent, so a crash at any moment loses nothing that was acknowledged.
* ``outbox``: every result object to send (SR or SC), ``pending`` -> ``sent`` or ``dead``, with its
  attempts and the time of the next one.
* ``triage_count`` on each instance: how many times a triage was committed for it. The triage of a batch
  marks its instances ``triaged`` and queues their results in the same transaction, and only instances
  still ``received`` are taken; so after any crash and restart the count is 1 for every triaged
  instance, never 2 (the tests assert it).

Sending is at least once: a crash after the PACS acknowledged a result but before ``sent`` was written
sends it again after the restart. The results' UIDs are derived from the source (`cxr_viewer.results`),
so the PACS replaces the object instead of filing a second one.

The database holds UIDs, file names and AE titles only, no patient data. All methods are thread-safe
(one connection behind a lock: the SCP's association threads, the triage worker and the sender share it).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

__all__ = ["Journal", "OutboxItem", "PendingInstance", "QueuedResult", "TriageOutcome"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    sop_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL,
    sop_class TEXT NOT NULL,
    path TEXT NOT NULL,
    calling_ae TEXT NOT NULL,
    received_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'received' CHECK (state IN ('received', 'triaged')),
    triage_count INTEGER NOT NULL DEFAULT 0,
    triaged_at REAL,
    error TEXT NOT NULL DEFAULT '',
    triage_score REAL
);
CREATE INDEX IF NOT EXISTS instances_by_state ON instances (state, study_uid);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    study_uid TEXT NOT NULL,
    source_sop_uid TEXT NOT NULL,
    kind TEXT NOT NULL,
    sop_class TEXT NOT NULL,
    sop_uid TEXT NOT NULL,
    path TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    queued_at REAL NOT NULL,
    done_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_at);
"""


@dataclass(frozen=True)
class PendingInstance:
    """An acknowledged instance not triaged yet."""

    sop_uid: str
    study_uid: str
    path: str


@dataclass(frozen=True)
class QueuedResult:
    """A result object written to the spool, to be queued for sending."""

    source_sop_uid: str
    kind: str  # "SR" or "SC"
    sop_class: str
    sop_uid: str
    path: str


@dataclass(frozen=True)
class TriageOutcome:
    """What the triage of one instance gave: an error ("" when analysed) and its triage score."""

    sop_uid: str
    error: str = ""
    triage_score: float | None = None


@dataclass(frozen=True)
class OutboxItem:
    """A result waiting to be sent."""

    id: int
    study_uid: str
    kind: str
    sop_class: str
    sop_uid: str
    path: str
    attempts: int


class Journal:
    """The node's state database (see the module docstring).

    Args:
        path: the SQLite file (created with its tables when missing).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a committed row survives a power cut
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _tx(self) -> _Transaction:
        return _Transaction(self._db, self._lock)

    # -- receiving --------------------------------------------------------------------------------------

    def known(self, sop_uid: str) -> bool:
        """True when this SOP Instance UID was already acknowledged."""
        with self._lock:
            row = self._db.execute("SELECT 1 FROM instances WHERE sop_uid = ?", (sop_uid,)).fetchone()
        return row is not None

    def record_instance(
        self,
        sop_uid: str,
        study_uid: str,
        sop_class: str,
        path: str,
        calling_ae: str,
        now: float | None = None,
    ) -> bool:
        """Record a spooled instance (committed before this returns). False when it was known already."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO instances"
                " (sop_uid, study_uid, sop_class, path, calling_ae, received_at) VALUES (?, ?, ?, ?, ?, ?)",
                (sop_uid, study_uid, sop_class, path, calling_ae, time.time() if now is None else now),
            )
            new = cur.rowcount == 1
        return new

    def spooled_paths(self) -> set[str]:
        """Paths of every recorded instance file."""
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT path FROM instances")}

    # -- triage -----------------------------------------------------------------------------------------

    def ready_studies(self, quiet_seconds: float, now: float | None = None) -> list[str]:
        """Studies with untriaged instances and none received in the last ``quiet_seconds``, oldest first."""
        now = time.time() if now is None else now
        with self._lock:
            rows = self._db.execute(
                "SELECT study_uid, MAX(received_at) AS last FROM instances WHERE state = 'received'"
                " GROUP BY study_uid HAVING last <= ? ORDER BY last",
                (now - quiet_seconds,),
            ).fetchall()
        return [r[0] for r in rows]

    def pending_instances(self, study_uid: str) -> list[PendingInstance]:
        """The study's instances still to triage, in the order they came."""
        with self._lock:
            rows = self._db.execute(
                "SELECT sop_uid, study_uid, path FROM instances WHERE study_uid = ? AND state = 'received'"
                " ORDER BY received_at, sop_uid",
                (study_uid,),
            ).fetchall()
        return [PendingInstance(*r) for r in rows]

    def commit_triage(
        self, outcomes: Sequence[TriageOutcome], results: Sequence[QueuedResult], study_uid: str
    ) -> int:
        """Mark instances triaged and queue their results, in one transaction.

        Only instances still ``received`` are changed; if any of ``outcomes`` is not (another triage
        committed it), nothing is written and 0 is returned.

        Returns:
            The number of instances marked triaged.
        """
        now = time.time()
        with self._tx() as db:
            for o in outcomes:
                cur = db.execute(
                    "UPDATE instances SET state = 'triaged', triage_count = triage_count + 1, triaged_at = ?,"
                    " error = ?, triage_score = ? WHERE sop_uid = ? AND state = 'received'",
                    (now, o.error, o.triage_score, o.sop_uid),
                )
                if cur.rowcount != 1:
                    raise _Rollback
            db.executemany(
                "INSERT INTO outbox (study_uid, source_sop_uid, kind, sop_class, sop_uid, path, next_at,"
                " queued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (study_uid, r.source_sop_uid, r.kind, r.sop_class, r.sop_uid, r.path, now, now)
                    for r in results
                ],
            )
            return len(outcomes)
        return 0  # rolled back: an instance was no longer 'received'

    # -- sending ----------------------------------------------------------------------------------------

    def due(self, now: float | None = None, limit: int = 64) -> list[OutboxItem]:
        """Pending results whose next attempt is due, oldest first."""
        now = time.time() if now is None else now
        with self._lock:
            rows = self._db.execute(
                "SELECT id, study_uid, kind, sop_class, sop_uid, path, attempts FROM outbox"
                " WHERE state = 'pending' AND next_at <= ? ORDER BY next_at, id LIMIT ?",
                (now, limit),
            ).fetchall()
        return [OutboxItem(*r) for r in rows]

    def mark_sent(self, item_id: int) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE outbox SET state = 'sent', attempts = attempts + 1, done_at = ?, last_error = ''"
                " WHERE id = ?",
                (time.time(), item_id),
            )

    def mark_failed(self, item_id: int, error: str, next_at: float) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_at = ? WHERE id = ?",
                (error, next_at, item_id),
            )

    def mark_dead(self, item_id: int, error: str, path: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = ?, path = ?,"
                " done_at = ? WHERE id = ?",
                (error, path, time.time(), item_id),
            )

    def study_outbox(self, study_uid: str) -> dict[str, int]:
        """``{"pending": n, "sent": n, "dead": n}`` for one study's results."""
        with self._lock:
            rows = self._db.execute(
                "SELECT state, COUNT(*) FROM outbox WHERE study_uid = ? GROUP BY state", (study_uid,)
            ).fetchall()
        out = {"pending": 0, "sent": 0, "dead": 0}
        out.update({str(s): int(n) for s, n in rows})
        return out

    def result_paths(self) -> set[str]:
        """Paths of every queued result (pending, sent or dead)."""
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT path FROM outbox")}

    # -- reporting --------------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Totals: ``received`` (all acknowledged), ``triaged``, ``errors``, ``pending``, ``sent``, ``dead``,
        ``max_triage_count`` (1 when no instance was triaged twice; 0 before any triage)."""
        with self._lock:
            n, t, e, m = self._db.execute(
                "SELECT COUNT(*), SUM(state = 'triaged'), SUM(error != ''), MAX(triage_count) FROM instances"
            ).fetchone()
            states = dict(self._db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall())
        return {
            "received": int(n or 0),
            "triaged": int(t or 0),
            "errors": int(e or 0),
            "max_triage_count": int(m or 0),
            "pending": int(states.get("pending", 0)),
            "sent": int(states.get("sent", 0)),
            "dead": int(states.get("dead", 0)),
        }

    def triage_counts(self) -> dict[str, int]:
        """SOP Instance UID -> how many triages were committed for it."""
        with self._lock:
            return dict(self._db.execute("SELECT sop_uid, triage_count FROM instances").fetchall())


class _Rollback(Exception):
    """Raised inside a transaction to undo it quietly."""


class _Transaction:
    """``with journal._tx() as db``: BEGIN IMMEDIATE ... COMMIT under the journal's lock; ROLLBACK on any
    exception (a `_Rollback` is swallowed and the block's value is lost)."""

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock) -> None:
        self._db = db
        self._lock = lock

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        return self._db

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool:
        try:
            if exc_type is None:
                self._db.execute("COMMIT")
                return False
            self._db.execute("ROLLBACK")
            return exc_type is _Rollback
        finally:
            self._lock.release()
