"""Localization benchmark: the protocol of Wang et al. 2017 (ChestX-ray8, CVPR) for any method's maps.

The protocol (``../shared/docs/SEED_METHODS.md``):

1. A class's heat map is normalised to [0, 255] (min-max over the image).
2. It is thresholded at 60 and at 180 (`MAP_THRESHOLDS`); every connected region of either mask gives a
   predicted box (its bounding box).
3. A ground-truth box of ``BBox_List_2017.csv`` (984 boxes on 880 images, 8 findings) is *localised at
   T* when some predicted box of its image and finding has IoBB > T (or IoU > T), with
   ``IoBB = area(truth & predicted) / area(predicted)`` and T in {0.1, 0.25, 0.5, 0.75, 0.9}.
4. The accuracy of a finding at T is the fraction of its ground-truth boxes localised at T.

Our choices, where the paper leaves them open:

- Connected regions are 8-connected (OpenCV ``connectedComponentsWithStats``); a pixel belongs
  to the mask when its normalised value is >= the threshold. A constant map (max == min) normalises to 0
  everywhere and gives no box, so its boxes count as not localised.
- Boxes are half-open pixel rectangles ``[x0, x1) x [y0, y1)``; the CSV's ``(x, y, w, h)`` is
  ``[x, x + w) x [y, y + h)``.
- The map a method gives (``Prediction.attention``, on the network input's grid) is put back into the
  frame of the boxes, the 1024 x 1024 NIH PNG (`BOX_FRAME`), by inverting the evaluation preprocessing:
  bilinear upsampling to the network input, then undoing the centre crop (the part of the image the
  network did not see gets 0) and the square resize (`map_to_image`).
- The published row is the revised ChestX-ray14 version of the paper (`WANG2017_IOBB_01`, T(IoBB) = 0.1).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cral_model.labels import CLASS_NAMES

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from cral_model.config import PreprocessConfig

__all__ = [
    "BOX_CLASSES",
    "BOX_FRAME",
    "MAP_THRESHOLDS",
    "T_VALUES",
    "WANG2017_IOBB_01",
    "Box",
    "GroundTruth",
    "boxes_from_map",
    "iobb",
    "iou",
    "localization_accuracy",
    "localize_checkpoint",
    "map_to_image",
    "normalise_map",
    "read_bbox_csv",
    "write_localization_table",
]

_log = logging.getLogger(__name__)

#: the thresholds of the heat map normalised to [0, 255]
MAP_THRESHOLDS: tuple[int, ...] = (60, 180)
#: the IoBB / IoU thresholds T of the accuracy
T_VALUES: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9)
#: the 8 findings with boxes: the first 8 of CLASS_NAMES (Atelectasis ... Pneumothorax)
BOX_CLASSES: tuple[str, ...] = CLASS_NAMES[:8]
#: side of the NIH PNGs, the frame of ``BBox_List_2017.csv``
BOX_FRAME = 1024
#: Wang et al. 2017 (ChestX-ray14 revision), accuracy at T(IoBB) = 0.1
WANG2017_IOBB_01: dict[str, float] = {
    "Atelectasis": 0.728,
    "Cardiomegaly": 0.993,
    "Effusion": 0.712,
    "Infiltration": 0.789,
    "Mass": 0.435,
    "Nodule": 0.165,
    "Pneumonia": 0.750,
    "Pneumothorax": 0.459,
}


@dataclass(frozen=True)
class Box:
    """A half-open rectangle ``[x0, x1) x [y0, y1)`` in pixels."""

    x0: float
    y0: float
    x1: float
    y1: float

    @classmethod
    def from_xywh(cls, x: float, y: float, w: float, h: float) -> Box:
        return cls(x, y, x + w, y + h)

    @property
    def area(self) -> float:
        return max(self.x1 - self.x0, 0.0) * max(self.y1 - self.y0, 0.0)

    def intersection(self, other: Box) -> float:
        w = min(self.x1, other.x1) - max(self.x0, other.x0)
        h = min(self.y1, other.y1) - max(self.y0, other.y0)
        return max(w, 0.0) * max(h, 0.0)


def iou(a: Box, b: Box) -> float:
    """Intersection over union (0 when both are empty)."""
    inter = a.intersection(b)
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def iobb(truth: Box, predicted: Box) -> float:
    """Intersection over the predicted box's area (Wang et al. 2017); 0 for an empty prediction."""
    area = predicted.area
    return truth.intersection(predicted) / area if area > 0 else 0.0


def normalise_map(heat: np.ndarray) -> np.ndarray:
    """Min-max to [0, 255], float64, same shape; a constant map gives zeros. The input is not changed."""
    h = np.asarray(heat, dtype=np.float64)
    lo, hi = float(h.min()), float(h.max())
    if not hi > lo:
        return np.zeros_like(h)
    return (h - lo) * (255.0 / (hi - lo))


def boxes_from_map(heat: np.ndarray, thresholds: Sequence[float] = MAP_THRESHOLDS) -> list[Box]:
    """Bounding boxes of the 8-connected regions of ``normalise_map(heat) >= t`` for each threshold.

    Args:
        heat: (H, W) map, any range.
        thresholds: on the [0, 255] scale.

    Returns:
        Boxes in pixels of ``heat``, the regions of the first threshold first.
    """
    import cv2

    norm = normalise_map(heat)
    if not norm.any():
        return []
    out: list[Box] = []
    for t in thresholds:
        mask = (norm >= t).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        for x, y, w, h, _area in stats[1:n]:  # label 0 is the background
            out.append(Box(float(x), float(y), float(x + w), float(y + h)))
    return out


def map_to_image(attention: np.ndarray, pre: PreprocessConfig, side: int = BOX_FRAME) -> np.ndarray:
    """A map on the network input's grid -> the same map in the frame of the original square image.

    Inverts the evaluation preprocessing (`cral_model.preprocessing.preprocess`): the map covers the
    centre ``input_size`` crop of the image resized to ``resize`` x ``resize``. Bilinear upsampling.

    Args:
        attention: (h, w) map.
        pre: the checkpoint's preprocessing.
        side: side of the image frame (the NIH PNGs: 1024).

    Returns:
        (side, side) float32; 0 where the network did not see the image.
    """
    import torch
    import torch.nn.functional as F

    m = torch.as_tensor(np.asarray(attention, dtype=np.float32))[None, None]
    s, r = pre.input_size, pre.resize
    up = F.interpolate(m, size=(s, s), mode="bilinear", align_corners=False)
    canvas = torch.zeros(1, 1, r, r)
    off = (r - s) // 2
    canvas[..., off : off + s, off : off + s] = up
    full = F.interpolate(canvas, size=(side, side), mode="bilinear", align_corners=False)
    out: np.ndarray = full[0, 0].numpy()
    return out


@dataclass(frozen=True)
class GroundTruth:
    """One row of ``BBox_List_2017.csv``."""

    image: str
    finding: str
    box: Box


def read_bbox_csv(path: str | Path) -> list[GroundTruth]:
    """Read ``BBox_List_2017.csv``: ``Image Index, Finding Label, x, y, w, h`` (header ``Bbox [x,y,w,h]``).

    Raises:
        ValueError: a row without a name, finding and four finite numbers with w, h > 0.
    """
    rows: list[GroundTruth] = []
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        next(reader, None)  # header
        for i, row in enumerate(reader, start=2):
            if not row or not any(cell.strip() for cell in row):
                continue
            try:
                name, finding = row[0].strip(), row[1].strip()
                x, y, w, h = (float(v) for v in row[2:6])
            except (IndexError, ValueError) as exc:
                raise ValueError(f"{Path(path).name} line {i}: expected name, finding, x, y, w, h") from exc
            if not name or not finding or not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
                raise ValueError(f"{Path(path).name} line {i}: invalid box {row[:6]}")
            rows.append(
                GroundTruth(
                    name, "Infiltration" if finding == "Infiltrate" else finding, Box.from_xywh(x, y, w, h)
                )
            )
    return rows


def localization_accuracy(
    predicted: Sequence[Sequence[Box]],
    truths: Sequence[GroundTruth],
    t_values: Sequence[float] = T_VALUES,
) -> dict[str, Any]:
    """Accuracy per finding at each T, by IoBB and by IoU.

    Args:
        predicted: for each ground truth, the boxes predicted for its image and finding.
        truths: the ground-truth boxes (same length as ``predicted``).

    Returns:
        ``{"iobb": {finding: {T: acc}}, "iou": {...}, "n_boxes": {finding: n}}`` (T as ``"0.1"`` etc.),
        findings in `BOX_CLASSES` order, then any others; a finding without boxes is left out.
    """
    if len(predicted) != len(truths):
        raise ValueError("one list of predicted boxes per ground truth is needed")
    findings = [f for f in BOX_CLASSES if any(t.finding == f for t in truths)]
    findings += sorted({t.finding for t in truths} - set(findings))
    result: dict[str, Any] = {"iobb": {}, "iou": {}, "n_boxes": {}}
    for f in findings:
        idx = [i for i, t in enumerate(truths) if t.finding == f]
        best_iobb = [max((iobb(truths[i].box, p) for p in predicted[i]), default=0.0) for i in idx]
        best_iou = [max((iou(truths[i].box, p) for p in predicted[i]), default=0.0) for i in idx]
        result["n_boxes"][f] = len(idx)
        result["iobb"][f] = {str(t): float(np.mean([v > t for v in best_iobb])) for t in t_values}
        result["iou"][f] = {str(t): float(np.mean([v > t for v in best_iou])) for t in t_values}
    return result


def write_localization_table(result: Mapping[str, Any]) -> str:
    """Markdown: accuracy per finding at each T(IoBB) and T(IoU), and the published T(IoBB)=0.1 row."""
    findings = list(result["n_boxes"])
    lines = ["", "## Localization (Wang et al. 2017 protocol)", ""]
    if not findings:
        lines.append("No evaluated image has a box in the list: nothing to localise.")
        return "\n".join(lines) + "\n"
    head = ["", *findings]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines.append("| boxes | " + " | ".join(str(result["n_boxes"][f]) for f in findings) + " |")
    for kind, label in (("iobb", "IoBB"), ("iou", "IoU")):
        for t in T_VALUES:
            cells = [f"{result[kind][f][str(t)]:.3f}" for f in findings]
            lines.append(f"| ours T({label})={t} | " + " | ".join(cells) + " |")
        if kind == "iobb":
            ref = [f"{WANG2017_IOBB_01[f]:.3f}" if f in WANG2017_IOBB_01 else "" for f in findings]
            lines.append("| Wang et al. 2017 T(IoBB)=0.1 | " + " | ".join(ref) + " |")
    return "\n".join(lines) + "\n"


def localize_checkpoint(
    checkpoint: str | Path,
    images: Any,
    boxes_csv: str | Path,
    output: str | Path,
    *,
    device: str = "cpu",
    batch_size: int = 16,
) -> dict[str, Any]:
    """Run the protocol for ``checkpoint`` on the images of ``images`` that have boxes.

    ``images`` is a `LabeledImages` (``names``, ``paths``). The result goes into ``OUTPUT/metrics.json``
    (key ``localization``, the file created or updated) and is appended to ``OUTPUT/table.md``.

    Returns:
        The ``localization`` dict: `localization_accuracy` plus ``n_images`` and ``published``.
    """
    from PIL import Image

    from cral_model.inference import Predictor

    truths_all = read_bbox_csv(boxes_csv)
    path_of = dict(zip(images.names, images.paths, strict=True))
    truths = [t for t in truths_all if t.image in path_of]
    if not truths:
        _log.warning(
            "none of the %d boxed images of %s is among the %d evaluated images (the boxes are all in "
            "the official test list)",
            len({t.image for t in truths_all}),
            Path(boxes_csv).name,
            len(path_of),
        )
    predictor = Predictor.from_checkpoint(checkpoint, device=device)
    index = {n: i for i, n in enumerate(predictor.class_names)}
    names = sorted({t.image for t in truths})
    maps: dict[str, np.ndarray] = {}
    for start in range(0, len(names), batch_size):
        chunk = names[start : start + batch_size]
        pixels = []
        for n in chunk:
            with Image.open(path_of[n]) as im:
                pixels.append(np.asarray(im.convert("L")))
        for n, pred in zip(chunk, predictor.predict_batch(pixels, batch_size=batch_size), strict=True):
            maps[n] = pred.attention
    predicted: list[list[Box]] = []
    kept: list[GroundTruth] = []
    for t in truths:
        if t.finding not in index:
            _log.warning("finding %r of %s is not a class of the model: skipped", t.finding, t.image)
            continue
        heat = map_to_image(maps[t.image][index[t.finding]], predictor.preprocessing)
        predicted.append(boxes_from_map(heat))
        kept.append(t)
    result = localization_accuracy(predicted, kept)
    result["n_images"] = len(names)
    result["published"] = {"source": "Wang et al. 2017 (ChestX-ray14 revision)", "iobb_0.1": WANG2017_IOBB_01}
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / "metrics.json"
    metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else {}
    metrics["localization"] = result
    metrics_path.write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    with open(out / "table.md", "a", encoding="utf-8") as fh:
        fh.write(write_localization_table(result))
    return result
