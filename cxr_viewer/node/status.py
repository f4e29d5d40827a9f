"""The node's status lines: one per study and event, with no patient data.

A study is named by a short tag derived from its Study Instance UID (``S-`` and the first 10 hex digits
of its SHA-256), never by PatientName, PatientID, accession number or any other header value; the UID
itself is not printed either, since some sites build UIDs from accession numbers. Counts, scores,
finding names (the model's class names), times, AE titles and result kinds are all that appear.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["study_tag", "triaged_line"]


def study_tag(study_uid: str) -> str:
    """``S-`` + the first 10 hex digits of SHA-256(Study Instance UID): stable, short, not reversible."""
    return "S-" + hashlib.sha256(study_uid.encode("ascii", "replace")).hexdigest()[:10]


def triaged_line(
    study_uid: str,
    analysed: int,
    errors: Sequence[str],
    seconds: float,
    best_score: float | None,
    flagged: Sequence[str],
    queued: int,
    destination: str,
) -> str:
    """``study S-1a2b3c4d5e: 2 images triaged in 0.8 s, score 1.42, flagged Effusion, Mass; 1 not analysed
    (reason); 4 results queued for PACS@host:104``."""
    n = analysed + len(errors)
    parts = [f"study {study_tag(study_uid)}: {n} image{'s' if n != 1 else ''} triaged in {seconds:.1f} s"]
    if analysed:
        parts.append(f", score {best_score:.2f}" if best_score is not None else "")
        parts.append(f", flagged {', '.join(flagged)}" if flagged else ", nothing flagged")
    if errors:
        first = errors[0]
        parts.append(f"; {len(errors)} not analysed ({first})")
    parts.append(f"; {queued} results queued for {destination}")
    return "".join(parts)
