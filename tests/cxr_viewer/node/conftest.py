"""Fixtures of the DICOM node tests: a tiny checkpoint and the node processes to clean up
(the helpers they use are in `node_helpers`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from helpers.checkpoints import write_tiny_checkpoint

if TYPE_CHECKING:
    from pathlib import Path

    from node_helpers import NodeProcess


@pytest.fixture(scope="session")
def node_checkpoint(tmp_path_factory) -> Path:
    """A tiny random CRAL checkpoint (64 px input) with thresholds: fast to load and run."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("node-model") / "tiny.safetensors", warm_up_batch=8)


@pytest.fixture
def running_nodes():
    """Collects `start_node` processes and kills what is left of them at teardown."""
    nodes: list[NodeProcess] = []
    yield nodes
    for n in nodes:
        if n.process.poll() is None:
            n.process.kill()
            n.process.wait(30)
