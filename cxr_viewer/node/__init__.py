"""The DICOM node behind ``cxr-triage serve`` (Qt-free; pynetdicom; the model through `cxr_viewer.batch`).

Modules, in the order an instance meets them:

* `cxr_viewer.node.config`: `NodeConfig` and `Destination` (one frozen dataclass, one field per flag);
* `cxr_viewer.node.handlers`: the C-STORE handler (check, spool, journal, then acknowledge);
* `cxr_viewer.node.spool`: the folders and crash-safe writes;
* `cxr_viewer.node.journal`: the durable state (SQLite): instances, their triage, the outbox;
* `cxr_viewer.node.triage`: the study grouper and triage worker (`cxr_viewer.batch` + `cxr_viewer.results`);
* `cxr_viewer.node.sender`: the C-STORE SCU to the destination, retry and dead-letter folder;
* `cxr_viewer.node.status`: status lines without patient data;
* `cxr_viewer.node.service`: `DicomNode`, which runs them together, and `recover`.

See docs/NODE.md for how it behaves and what a PACS administrator configures.
"""

from __future__ import annotations

from cxr_viewer.node.config import Destination, NodeConfig, parse_destination
from cxr_viewer.node.journal import Journal
from cxr_viewer.node.service import DicomNode, recover
from cxr_viewer.node.status import study_tag

__all__ = ["Destination", "DicomNode", "Journal", "NodeConfig", "parse_destination", "recover", "study_tag"]
