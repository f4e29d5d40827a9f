"""Shared fixtures for the viewer tests: real-data paths and a synthetic DICOM builder."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from helpers.dicom import write_dicom

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
