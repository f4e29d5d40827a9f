"""The burned-in picture of a result: the radiograph with its top findings, map and notice (pure, no Qt).

:func:`render_results_image` turns one image, its ranked findings and the top finding's map into an
RGB uint8 array, the pixels of the Secondary Capture (`cxr_viewer.results.secondary_capture`) and of
the one-page summary (`cxr_viewer.results.summary`):

- the image through its default display mapping (:func:`display_grey`: the DICOM VOI LUT when there
  is one, else its window, else a 0.5-99.5 percentile window), in display orientation (MONOCHROME1
  already inverted by the reader), scaled down so that its longer side is at most ``max_side``;
- when the top finding is flagged (at or above its threshold), its class map (absolute scale, 1 = the
  class's threshold; see `cxr_viewer.core.overlay.class_map`) blended in as the viewer draws it
  (``jet``, levels 0..1, the viewer's alpha ramp and default opacity) and its outline where the map
  reaches the threshold (`cxr_viewer.core.overlay.outline_paths`); with no flagged finding no map is
  burned in (the panel says so): a map for a finding the model does not report would mark a region
  for nothing;
- a panel with the top findings (probability, threshold, flagged or not) and the triage score;
- a band across the bottom with ``RESEARCH USE ONLY - NOT FOR DIAGNOSIS``, on the pixels themselves,
  so that no viewer that drops overlays or headers can lose it.

Text is drawn with OpenCV's Hershey font (ASCII only; class names are ASCII). Nothing here reads or
writes patient data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cxr_viewer.core.overlay import colormap_lut, outline_paths
from cxr_viewer.core.windowing import apply_window, auto_window, voi_lut_display

if TYPE_CHECKING:
    from collections.abc import Sequence

    from cxr_viewer.core.findings import Finding
    from cxr_viewer.core.image import XrayImage

__all__ = ["NOTICE", "TOP_FINDINGS", "display_grey", "render_results_image"]

#: burned into every rendered result
NOTICE = "RESEARCH USE ONLY - NOT FOR DIAGNOSIS"
#: findings listed on the picture
TOP_FINDINGS = 3
#: longest side of the rendered picture, in pixels (a 1955 x 1841 film stays as it is)
MAX_SIDE = 2048
#: overlay opacity where the colour map is fully opaque (the viewer's default)
_OPACITY = 0.45

_WHITE = (255, 255, 255)
_YELLOW = (255, 230, 0)
_RED = (200, 0, 0)
_GREY = (200, 200, 200)


def display_grey(image: XrayImage) -> np.ndarray:
    """The image as it is first shown: float32 (H, W) in [0, 1], higher = brighter.

    The VOI LUT when the file has one, else the file's window, else an automatic window (0.5-99.5
    percentiles). ``image`` is not modified.
    """
    lut = voi_lut_display(image)
    if lut is not None:
        return lut
    center, width = image.window if image.window is not None else auto_window(image.pixels)
    return apply_window(image.pixels, center, width)


def _resize(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    import cv2

    if arr.shape[:2] == (height, width):
        return arr
    return np.asarray(cv2.resize(arr, (width, height), interpolation=cv2.INTER_AREA))


def _text(
    canvas: np.ndarray,
    text: str,
    org: tuple[int, int],
    scale: float,
    color: tuple[int, int, int],
    thickness: int,
) -> None:
    import cv2

    ascii_text = text.encode("ascii", "replace").decode("ascii")
    # a dark outline first, so the text reads on bright and dark parts of the film alike: the same text
    # shifted by a pixel or two around it (a thicker stroke would change OpenCV's letter advances and
    # drift away from the text it outlines)
    d = max(1, thickness)
    for dx, dy in ((-d, 0), (d, 0), (0, -d), (0, d), (-d, -d), (d, d), (-d, d), (d, -d)):
        cv2.putText(
            canvas,
            ascii_text,
            (org[0] + dx, org[1] + dy),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (0, 0, 0),
            thickness,
            cv2.LINE_AA,
        )
    cv2.putText(canvas, ascii_text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, thickness, cv2.LINE_AA)


def _text_size(text: str, scale: float, thickness: int) -> tuple[int, int]:
    import cv2

    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    return int(w), int(h + base)


def _finding_line(rank: int, f: Finding) -> str:
    thr = "no threshold" if f.threshold is None else f"threshold {f.threshold:.3f}"
    flag = "  FLAGGED" if f.above_threshold else ""
    return f"{rank}. {f.display_name}  {f.probability:.3f}  ({thr}){flag}"


def render_results_image(
    image: XrayImage,
    findings: Sequence[Finding],
    heat: np.ndarray | None,
    *,
    triage_score: float | None,
    model_name: str = "",
    top_n: int = TOP_FINDINGS,
    max_side: int = MAX_SIDE,
) -> np.ndarray:
    """The burned-in result picture of one image.

    Args:
        image: the analysed image (display orientation); not modified.
        findings: findings in triage order (`cxr_viewer.inference.rank_findings`); the first ``top_n``
            are listed, the first one's map is ``heat``.
        heat: the first finding's map on the image grid, float (H, W), 1 = its threshold (values are
            clipped to [0, 1] for colour), or None for no map.
        triage_score: the study's triage score, or None to leave it out.
        model_name: the algorithm's name, written small in the panel ("" leaves it out).
        top_n: findings listed (at least 1 when there are findings).
        max_side: the longer side of the result is at most this (>= 64); the image is never enlarged.

    Returns:
        uint8 (h, w, 3) RGB, ``(h, w)`` the image's shape scaled by ``min(1, max_side / max(H, W))``.

    Raises:
        ValueError: when ``heat`` does not have the image's shape.
    """
    import cv2

    h0, w0 = image.shape
    if heat is not None and np.shape(heat) != (h0, w0):
        raise ValueError(f"heat map has shape {np.shape(heat)}, the image {(h0, w0)}")
    scale = min(1.0, max(int(max_side), 64) / max(h0, w0))
    h, w = max(1, round(h0 * scale)), max(1, round(w0 * scale))

    grey = _resize(display_grey(image), h, w)
    rgb = np.repeat((np.clip(grey, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)[:, :, None], 3, axis=2)

    shown = list(findings)[: max(int(top_n), 1)] if findings else []
    # a map only for a flagged finding: burned into an image that goes to the PACS, the map of a finding
    # below its threshold (its evidence at the threshold's scale can still fill the lungs) would mark
    # a region for a finding the model does not report
    draw_map = heat is not None and bool(shown) and shown[0].above_threshold
    if draw_map and heat is not None:
        hm = np.clip(np.nan_to_num(_resize(np.asarray(heat, dtype=np.float32), h, w), nan=0.0), 0.0, 1.0)
        lut = colormap_lut("jet")
        idx = np.round(hm * 255.0).astype(np.intp)
        colour = lut[idx, :3].astype(np.float32)
        alpha = (lut[idx, 3].astype(np.float32) / 255.0 * _OPACITY)[:, :, None]
        rgb = (rgb.astype(np.float32) * (1.0 - alpha) + colour * alpha + 0.5).astype(np.uint8)
        line = max(1, round(max(h, w) / 500))
        for path in outline_paths(hm):
            pts = np.round(path - 0.5).astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(rgb, [pts], isClosed=True, color=_WHITE, thickness=line, lineType=cv2.LINE_AA)

    # font scale: about 1/60 of the width per text line
    fs = max(w, 200) / 1400.0
    th = max(1, round(fs * 2))
    pad = max(4, round(12 * fs))
    lines: list[tuple[str, tuple[int, int, int]]] = []
    if shown:
        lines.append(("Top findings (triage order):", _WHITE))
        lines += [
            (_finding_line(i, f), _YELLOW if f.above_threshold else _WHITE) for i, f in enumerate(shown, 1)
        ]
        if draw_map:
            lines.append((f"Map: {shown[0].display_name} (outline = its threshold)", _GREY))
        elif heat is not None:
            lines.append(("No finding at or above its threshold: no map drawn", _GREY))
    else:
        lines.append(("No findings computed", _WHITE))
    if triage_score is not None:
        lines.append((f"Triage score {triage_score:.2f}", _WHITE))
    if model_name:
        lines.append((model_name, _GREY))
    line_h = _text_size("Ag", fs, th)[1] + pad // 2
    panel_w = min(w, max(_text_size(t, fs, th)[0] for t, _ in lines) + 2 * pad + 2 * th)
    panel_h = min(h, line_h * len(lines) + pad)
    # darken the panel's background so the text is legible whatever is under it
    rgb[:panel_h, :panel_w] = (rgb[:panel_h, :panel_w].astype(np.float32) * 0.35).astype(np.uint8)
    y = pad + line_h - pad // 2
    for text, text_colour in lines:
        _text(rgb, text, (pad, y), fs, text_colour, th)
        y += line_h

    # the notice: a red band across the whole width at the bottom, large white capitals
    ns = fs * 1.3
    nth = max(1, round(ns * 2))
    tw, tht = _text_size(NOTICE, ns, nth)
    if tw > w - 2 * pad:  # narrow images: shrink the notice until it fits
        ns *= (w - 2 * pad) / tw
        nth = max(1, round(ns * 2))
        tw, tht = _text_size(NOTICE, ns, nth)
    band = min(h, tht + 2 * pad)
    above = int(cv2.getTextSize(NOTICE, cv2.FONT_HERSHEY_SIMPLEX, ns, nth)[0][1])  # above the baseline
    rgb[h - band :, :] = _RED
    _text(rgb, NOTICE, (max(0, (w - tw) // 2), h - band + pad + above), ns, _WHITE, nth)
    return np.ascontiguousarray(rgb)
