"""Shared fixtures for the viewer tests: real-data paths and a synthetic DICOM builder."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
from helpers.dicom import write_dicom
from helpers.orthanc import orthanc_missing, start_orthanc

#: ../shared/data beside the repository (never copied into it); tests skip when it is absent.
DATA_DIR = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data").resolve()
DICOM_DIR = DATA_DIR / "dicom"
FULLRES_DIR = DATA_DIR / "chestxray14-fullres-samples" / "images"


def need_data(*parts: str) -> Path:
    """Path under the shared data folder, or skip the test with the reason."""
    path = DATA_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared test data not available: {path} (clone without ../shared/data)")
    return path


#: the header of the viewer tests' DICOM files (16-bit pixels whatever the array's dtype)
DICOM_HEADER = {"bits_allocated": 16, "study_date": "20240102", "view_position": "PA"}


@pytest.fixture
def make_dicom():
    """``make_dicom(path, pixels, **kwargs)``: `helpers.dicom.write_dicom` with `DICOM_HEADER`."""
    return functools.partial(write_dicom, **DICOM_HEADER)


@pytest.fixture
def shared_data():
    """``shared_data("dicom", "RG1_UNCI.dcm")`` -> path, or skip when ../shared/data is absent."""
    return need_data


@pytest.fixture
def make_orthanc(tmp_path_factory):
    """``make_orthanc(modalities={"NODE": ("NODE", "127.0.0.1", port)})`` -> a running
    `helpers.orthanc.OrthancServer` on free loopback ports (DICOMweb plugin loaded, its own temporary
    configuration and storage), stopped at teardown. Skips when Orthanc is not installed, except in CI
    (``$CI`` set), where ``.ci/run`` installs it and a missing Orthanc is a failure."""
    missing = orthanc_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing}; CI must run the Orthanc tests")
        pytest.skip(missing)
    servers = []

    def make(modalities=None, **kwargs):
        server = start_orthanc(tmp_path_factory.mktemp("orthanc"), modalities=modalities, **kwargs)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def orthanc(make_orthanc):
    """A running test Orthanc with no modalities configured (see `make_orthanc`)."""
    return make_orthanc()
