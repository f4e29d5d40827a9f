"""Scope check from the DICOM header: real NEMA CR files (chest, hip, extremity) and edge cases."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cxr_viewer.core import HeaderSummary, load_image, scope_warning


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("RG1_UNCI.dcm", ""),  # CHEST, PA, CR
        ("RG1_J2KR.dcm", ""),
        ("RG2_JPLL.dcm", "body part HIP"),
        ("RG3_UNCR.dcm", "body part EXTREMITY"),
    ],
)
def test_real_cr_files(shared_data, name: str, expected: str) -> None:
    image = load_image(shared_data("dicom", name))
    warning = scope_warning(image.header)
    if expected:
        assert warning.startswith(expected) and "chest" in warning
    else:
        assert warning == ""


def test_files_without_a_header_are_taken_as_chest(shared_data) -> None:
    png = sorted(shared_data("chestxray14-fullres-samples", "images").glob("*.png"))[0]
    assert scope_warning(load_image(png).header) == ""
    assert scope_warning(None) == ""
    assert scope_warning(HeaderSummary()) == ""


def test_codes_and_spellings() -> None:
    chest = HeaderSummary(modality="DX", body_part="CHEST", view="PA")
    assert scope_warning(chest) == ""
    for part in ("chest", "THORAX", "Port Chest", "LUNG", "TORAX"):
        assert scope_warning(replace(chest, body_part=part)) == "", part
    for view in ("AP", "PA", ""):
        assert scope_warning(replace(chest, view=view)) == "", view
    assert scope_warning(replace(chest, view="LL")).startswith("LL view")
    assert scope_warning(replace(chest, view="rl")).startswith("RL view")
    assert scope_warning(replace(chest, modality="CT")).startswith("modality CT")
    assert scope_warning(replace(chest, modality="MG", body_part="BREAST")).startswith("modality MG")
    for modality in ("CR", "DX", "SC", "OT", ""):
        assert scope_warning(replace(chest, modality=modality)) == "", modality
    assert scope_warning(replace(chest, body_part="SKULL")).startswith("body part SKULL")


def test_the_reason_never_quotes_patient_data() -> None:
    header = HeaderSummary(
        patient_name="Doe^Jane", patient_id="SECRET-1", birth_date="19010101", body_part="KNEE", view="LL"
    )
    warning = scope_warning(header)
    assert warning and "Doe" not in warning and "SECRET" not in warning and "1901" not in warning
