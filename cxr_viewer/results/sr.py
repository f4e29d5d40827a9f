"""The structured result of one image: a DICOM Comprehensive SR, TID 1500 Measurement Report (highdicom).

Content (``MeasurementReport``, title DCM 126000, procedure SCT 399208008 "Plain chest X-ray"):

- observation context: the device observer (TID 1004) is the algorithm, UID derived from its checkpoint;
- one measurement group (TID 1501) per model class, in triage order, its tracking identifier the class
  name and its finding type the class (private scheme ``99CXRTRIAGE``, see `cxr_viewer.results.codes`):
  a NUM *probability* (UCUM ``1``), a NUM *operating threshold* when the class has one, and a CODE
  *flagged* Yes/No (probability at or above the threshold: the triage rule of `cral_model.triage`);
- one more group, ``Image triage``, with the NUM *triage score* (``max_k p_k / t_k``);
- every group names the algorithm (TID 4019: name, version, and as parameters the checkpoint's file name,
  its SHA-256 and its weights' SHA-256) and the source image (its SOP Class and Instance UIDs);
- the source image is listed as evidence (Current Requested Procedure Evidence Sequence).

The SR is in the source's study (patient and study attributes copied from the source by highdicom,
nothing invented; attributes the source lacks stay empty) and in a new series. Values are written as
float64, so the probabilities read back are those of the CSV to its six decimals and beyond.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import highdicom as hd

from cxr_viewer.results import codes
from cxr_viewer.results.dataset import person_name_warnings_quiet
from cxr_viewer.results.uids import UID_ROOT, derived_uid

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pydicom.dataset import Dataset

    from cxr_viewer.core.findings import Finding
    from cxr_viewer.inference import ModelProvenance

__all__ = ["SR_SERIES_DESCRIPTION", "SR_SERIES_NUMBER", "algorithm_identification", "build_sr"]

#: the SR series' number and description (a series number need not be unique; this one is easy to spot)
SR_SERIES_NUMBER = 9901
SR_SERIES_DESCRIPTION = "CXR triage SR - research use only, not for diagnosis"
#: manufacturer of the objects we make (the software, not the source's modality)
MANUFACTURER = "cxr-triage (research software)"


def algorithm_identification(algorithm: ModelProvenance) -> hd.sr.AlgorithmIdentification:
    """TID 4019 for the model: name, version, and checkpoint, its SHA-256 and its weights' SHA-256."""
    params = [
        f"checkpoint={algorithm.checkpoint or '(none)'}",
        f"checkpoint_sha256={algorithm.checkpoint_sha256 or '(unknown)'}",
        f"weights_sha256={algorithm.weights_sha256 or '(unknown)'}",
    ]
    return hd.sr.AlgorithmIdentification(name=algorithm.name, version=algorithm.version, parameters=params)


def algorithm_key(algorithm: ModelProvenance) -> str:
    """What identifies a model for the derived UIDs: its checkpoint's digest (else name and version)."""
    return algorithm.checkpoint_sha256 or algorithm.weights_sha256 or f"{algorithm.name}|{algorithm.version}"


def build_sr(
    source: Dataset,
    findings: Sequence[Finding],
    triage_score: float,
    algorithm: ModelProvenance,
    *,
    root: str = UID_ROOT,
) -> hd.sr.ComprehensiveSR:
    """The SR of one analysed image.

    Args:
        source: the source image's data set (header is enough; `cxr_viewer.results.dataset.evidence_header`
            has made sure its Type 2 patient/study attributes exist, empty when the file has none).
        findings: every class of the prediction, in triage order (`cxr_viewer.inference.rank_findings`
            with ``top_k=None``).
        triage_score: the image's triage score.
        algorithm: the model's provenance (`cxr_viewer.inference.model_provenance`).
        root: UID root (`cxr_viewer.results.uids`).

    Returns:
        A ``highdicom.sr.ComprehensiveSR`` (a pydicom Dataset), SOP Instance UID derived from the source's
        and the checkpoint's, in the study's SR series.
    """
    key = algorithm_key(algorithm)
    sop = str(source.SOPInstanceUID)
    algo = algorithm_identification(algorithm)
    image_ref = hd.sr.SourceImageForMeasurementGroup.from_source_image(source)

    groups: list[hd.sr.MeasurementsAndQualitativeEvaluations] = []
    for f in findings:
        measurements = [
            hd.sr.Measurement(
                name=codes.PROBABILITY, value=float(f.probability), unit=codes.NO_UNITS, algorithm_id=algo
            )
        ]
        if f.threshold is not None:
            measurements.append(
                hd.sr.Measurement(
                    name=codes.THRESHOLD, value=float(f.threshold), unit=codes.NO_UNITS, algorithm_id=algo
                )
            )
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=derived_uid("sr-tracking", sop, key, f.name, root=root), identifier=f.name
                ),
                finding_type=codes.finding_code(f.name),
                algorithm_id=algo,
                measurements=measurements,
                qualitative_evaluations=[
                    hd.sr.QualitativeEvaluation(codes.FLAGGED, codes.YES if f.above_threshold else codes.NO)
                ],
                source_images=[image_ref],
            )
        )
    groups.append(
        hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=derived_uid("sr-tracking", sop, key, "triage", root=root), identifier="Image triage"
            ),
            finding_type=codes.TRIAGE_TRACKING,
            algorithm_id=algo,
            measurements=[
                hd.sr.Measurement(
                    name=codes.TRIAGE_SCORE, value=float(triage_score), unit=codes.NO_UNITS, algorithm_id=algo
                )
            ],
            source_images=[image_ref],
        )
    )
    observer = hd.sr.ObserverContext(
        observer_type=hd.sr.CodedConcept("121007", "DCM", "Device"),
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=derived_uid("device", key, root=root),
            name="cxr-triage",
            manufacturer_name=MANUFACTURER,
            model_name=algorithm.name,
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.PROCEDURE,
        imaging_measurements=groups,
        title=codes.TITLE,
    )
    with person_name_warnings_quiet():
        return _comprehensive_sr(source, report, algorithm, key, root)


def _comprehensive_sr(
    source: Dataset, report: hd.sr.MeasurementReport, algorithm: ModelProvenance, key: str, root: str
) -> hd.sr.ComprehensiveSR:
    study, sop = str(source.StudyInstanceUID), str(source.SOPInstanceUID)
    return hd.sr.ComprehensiveSR(
        evidence=[source],
        content=report[0],
        series_instance_uid=derived_uid("sr-series", study, key, root=root),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=derived_uid("sr-instance", sop, key, root=root),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,
        is_verified=False,
        series_description=SR_SERIES_DESCRIPTION,
    )
