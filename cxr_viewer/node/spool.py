"""The node's folders on disk, and writes that survive a crash.

Layout under the spool folder::

    incoming/<SOP Instance UID>.dcm      every acknowledged instance, as received
    results/<source UID>.<kind>.dcm      SR and SC made by the triage, until sent (kept after)
    dead-letter/<name>                   results the destination refused or never took, after all attempts
    quarantine/<name>                    files found in incoming/ after a crash that cannot be read
    tmp/                                 partial writes (emptied at start)
    journal.sqlite                       the state (`cxr_viewer.node.journal`)

A file is written to ``tmp/``, flushed and fsynced, renamed into place and its folder fsynced, so after a
crash a file in ``incoming/`` or ``results/`` is whole, and one that is not there was never acknowledged.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["Spool", "valid_uid"]

#: a DICOM UID: digits and dots, at most 64 characters, no empty or zero-led component (PS3.5 9.1)
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def valid_uid(uid: str) -> bool:
    """True for a syntactically valid UID (also what makes it safe as a file name)."""
    return 0 < len(uid) <= 64 and bool(_UID.match(uid))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """The node's folders (see the module docstring); created when missing.

    Args:
        root: the spool folder.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.incoming = root / "incoming"
        self.results = root / "results"
        self.dead_letter = root / "dead-letter"
        self.quarantine = root / "quarantine"
        self.tmp = root / "tmp"
        for d in (self.root, self.incoming, self.results, self.dead_letter, self.quarantine, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        self.journal_path = root / "journal.sqlite"

    def clear_tmp(self) -> int:
        """Remove partial writes left by a crash; returns how many."""
        n = 0
        for p in self.tmp.iterdir():
            with contextlib.suppress(OSError):
                p.unlink()
                n += 1
        return n

    def write_atomic(self, dest: Path, data: bytes) -> Path:
        """Write ``data`` to ``dest`` so that it is either whole or absent after a crash (tmp, fsync,
        rename, fsync of the folder).

        Raises:
            OSError: disk full, no permission... (nothing is left behind in ``tmp/``).
        """
        tmp = self.tmp / f"{uuid.uuid4().hex}.part"
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        _fsync_dir(dest.parent)
        return dest

    def instance_path(self, sop_uid: str) -> Path:
        """Where a received instance is kept.

        Raises:
            ValueError: ``sop_uid`` is not a valid UID (so it can never name another path).
        """
        if not valid_uid(sop_uid):
            raise ValueError("invalid SOP Instance UID")
        return self.incoming / f"{sop_uid}.dcm"

    def result_path(self, source_sop_uid: str, kind: str) -> Path:
        """Where a result (``kind`` ``SR`` or ``SC``) of a source instance is kept."""
        if not valid_uid(source_sop_uid) or not kind.isalnum():
            raise ValueError("invalid result name")
        return self.results / f"{source_sop_uid}.{kind}.dcm"

    def move_to(self, path: Path, folder: Path) -> Path:
        """Move a file into ``folder`` (dead-letter or quarantine), keeping its name; returns the new path."""
        dest = folder / path.name
        os.replace(path, dest)
        _fsync_dir(folder)
        return dest
