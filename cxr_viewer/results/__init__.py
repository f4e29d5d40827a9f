"""Results a hospital can file: a DICOM SR (TID 1500) and a Secondary Capture per analysed image (no Qt).

Qt-free and torch-free; never imports ``cral_model`` (the model's facts come through
`cxr_viewer.inference`). highdicom builds both objects; see `cxr_viewer.results.sr` and
`cxr_viewer.results.secondary_capture` for what they hold, `cxr_viewer.results.uids` for the UID root
and why the UIDs are derived, `cxr_viewer.results.dataset` for what happens with sources that are not
DICOM (refused with `NoSourceStudyError`; the CSV and summary are still written for them).

Usage (what ``cxr-triage --dicom-out``, the viewer's export and the DICOM node do)::

    from cxr_viewer.core.io import load_image
    from cxr_viewer.inference import load_predictor, model_input, model_provenance
    from cxr_viewer.results import build_results, read_source, write_results

    predictor = load_predictor("model.safetensors")
    image = load_image("RG1_UNCI.dcm")
    prediction = predictor.predict(model_input(image))
    sr, sc = build_results(read_source(image.source, image.format), image, prediction, None,
                           model_provenance(predictor))
    paths = write_results((sr, sc), "out/")   # [out/SR_<uid>.dcm, out/SC_<uid>.dcm]
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from cxr_viewer.core.overlay import heatmap_for
from cxr_viewer.core.state import ViewerState
from cxr_viewer.inference import rank_findings, triage_score
from cxr_viewer.results.dataset import NoSourceStudyError, ResultsError, evidence_header, read_source
from cxr_viewer.results.render import NOTICE, render_results_image
from cxr_viewer.results.secondary_capture import build_secondary_capture
from cxr_viewer.results.sr import build_sr
from cxr_viewer.results.uids import UID_ROOT

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np
    from pydicom.dataset import Dataset

    from cxr_viewer.core.findings import Finding
    from cxr_viewer.core.image import XrayImage
    from cxr_viewer.core.prediction import PredictionLike
    from cxr_viewer.inference import ModelProvenance

__all__ = [
    "NOTICE",
    "UID_ROOT",
    "NoSourceStudyError",
    "ResultsError",
    "build_results",
    "read_source",
    "render_result",
    "result_file_name",
    "write_results",
]


def _ranked(prediction: PredictionLike) -> tuple[list[Finding], float]:
    """Every class in triage order, and the triage score (the one rule, `cral_model.triage`)."""
    probs, thr = prediction.probabilities, prediction.thresholds
    return rank_findings(probs, prediction.class_names, thr, top_k=None), triage_score(probs, thr)


def render_result(
    image: XrayImage,
    prediction: PredictionLike,
    findings: Sequence[Finding] | None = None,
    *,
    algorithm: ModelProvenance | None = None,
    map_region: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0),
) -> np.ndarray:
    """The burned-in picture of one result, uint8 (h, w, 3) RGB (see `cxr_viewer.results.render`).

    Args:
        image: the analysed image.
        prediction: the model's answer for it.
        findings: findings in triage order (None: ranked here from ``prediction``).
        algorithm: written small on the picture when given.
        map_region: the part of the image the model's maps cover (`cxr_viewer.inference.attention_region`).
    """
    ranked, score = _ranked(prediction)
    shown = list(findings) if findings is not None else ranked
    heat = None
    if shown:
        state = ViewerState(
            image=image, prediction=prediction, selected_map=shown[0].index, map_region=map_region
        )
        heat = heatmap_for(state)
    return render_results_image(
        image, shown, heat, triage_score=score, model_name=algorithm.name if algorithm else ""
    )


def build_results(
    source: Dataset,
    image: XrayImage,
    prediction: PredictionLike,
    findings: Sequence[Finding] | None,
    algorithm: ModelProvenance,
    *,
    map_region: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0),
    root: str = UID_ROOT,
) -> tuple[Dataset, Dataset]:
    """The SR and the Secondary Capture of one analysed DICOM image.

    Args:
        source: the source image's data set (`read_source`; the header is enough, it is not modified).
        image: the image as the viewer read it (`cxr_viewer.core.io.load_image`), what the SC shows.
        prediction: the model's answer for ``image``.
        findings: findings in triage order for the picture (its top ones are listed, the first one's map
            drawn); None ranks them here. The SR always reports every class of ``prediction``, ranked
            by the same rule, with the triage score.
        algorithm: the model's provenance (`cxr_viewer.inference.model_provenance`).
        map_region: the part of the image the model's maps cover (`cxr_viewer.inference.attention_region`).
        root: UID root for the new objects (`cxr_viewer.results.uids`).

    Returns:
        ``(sr, sc)``: a ``highdicom.sr.ComprehensiveSR`` and a ``highdicom.sc.SCImage``, both in the
        source's study, each in its own new series, with UIDs derived from the source's and the model's.

    Raises:
        ResultsError: when the source has no Study/SOP UIDs (the message has no patient data).
        ValueError: for a malformed prediction (lengths that do not match).
    """
    header = evidence_header(source, image.name)
    ranked, score = _ranked(prediction)
    rgb = render_result(image, prediction, findings, algorithm=algorithm, map_region=map_region)
    sr = build_sr(header, ranked, score, algorithm, root=root)
    sc = build_secondary_capture(header, rgb, algorithm, root=root)
    return sr, sc


def result_file_name(ds: Dataset) -> str:
    """``SR_<SOPInstanceUID>.dcm`` / ``SC_<SOPInstanceUID>.dcm``: UIDs only, no patient data."""
    kind = "SR" if str(ds.get("Modality", "")) == "SR" else "SC"
    return f"{kind}_{ds.SOPInstanceUID}.dcm"


def write_results(datasets: Sequence[Dataset], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write result objects as DICOM files (Part 10, with file meta) into ``out_dir``.

    Each file is written beside its final name and renamed over it when complete, so a crash leaves
    the old file or the new one, never half of one. Writing the same result again replaces its file
    (the UIDs are derived, `cxr_viewer.results.uids`).

    Args:
        datasets: e.g. the ``(sr, sc)`` of `build_results`.
        out_dir: the folder (created when missing).

    Returns:
        The files written, in the order given.

    Raises:
        OSError: when the folder or a file cannot be written (no ``.part`` file is left behind).
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    for ds in datasets:
        dest = folder / result_file_name(ds)
        # a unique name beside it, opened exclusively (mode 0666 & ~umask, as any file the user writes)
        tmp = folder / f"{dest.name}.{secrets.token_hex(6)}.part"
        try:
            with open(tmp, "xb") as fh:
                ds.save_as(fh, enforce_file_format=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        out.append(dest)
    return out
