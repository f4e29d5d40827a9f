"""The coded concepts the result SR uses, in one place.

Standard codes where DICOM/SNOMED has one that means exactly what is reported: the report's title
(DCM 126000 "Imaging Measurement Report", TID 1500's default), the procedure (SCT 399208008 "Plain
chest X-ray"), yes/no (SCT 373066001 / 373067005), the unit "no units" (UCUM ``1``).

Everything the model itself defines is coded in a *private* coding scheme, ``99CXRTRIAGE`` (DICOM PS3.16
8.2: designators beginning with ``99`` are private): the 14 ChestX-ray14 labels are the NIH data set's
text-mined labels, not clinical diagnoses, and mapping them onto SNOMED concepts (say "Infiltration" onto
a pulmonary infiltrate) would claim more than the model does. The code value of a finding is its class
name (``Pleural_Thickening``; longer than 16 characters, it goes into LongCodeValue, as highdicom does).
"""

from __future__ import annotations

from highdicom.sr import CodedConcept

__all__ = [
    "FLAGGED",
    "NO",
    "NO_UNITS",
    "PROBABILITY",
    "PROCEDURE",
    "SCHEME",
    "THRESHOLD",
    "TITLE",
    "TRIAGE_SCORE",
    "TRIAGE_TRACKING",
    "YES",
    "finding_code",
]

#: the private coding scheme of the model's concepts
SCHEME = "99CXRTRIAGE"

TITLE = CodedConcept("126000", "DCM", "Imaging Measurement Report")
PROCEDURE = CodedConcept("399208008", "SCT", "Plain chest X-ray")
YES = CodedConcept("373066001", "SCT", "Yes")
NO = CodedConcept("373067005", "SCT", "No")
NO_UNITS = CodedConcept("1", "UCUM", "no units")

PROBABILITY = CodedConcept("PROB", SCHEME, "Model probability of finding")
THRESHOLD = CodedConcept("THRESHOLD", SCHEME, "Operating threshold of finding")
FLAGGED = CodedConcept("FLAGGED", SCHEME, "Probability at or above operating threshold")
TRIAGE_SCORE = CodedConcept("TRIAGESCORE", SCHEME, "Triage score (max probability / threshold)")
TRIAGE_TRACKING = CodedConcept("TRIAGE", SCHEME, "Image triage")


def finding_code(class_name: str) -> CodedConcept:
    """The coded concept of one model class, e.g. ``Effusion`` -> (``Effusion``, 99CXRTRIAGE, "Effusion")."""
    return CodedConcept(class_name, SCHEME, class_name.replace("_", " "))
