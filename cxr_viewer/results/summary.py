"""The one-page summary of an export, as PNG or PDF (matplotlib's object API, Agg; no pyplot, no Qt).

One page: the title and the research notice; for the first study (the one with the highest triage
score, or the only one) its burned-in picture (`cxr_viewer.results.render`); and a table of every
study exported, in triage order: file name, triage score, flagged findings, or why it has no result.
A worklist longer than the page holds (:data:`MAX_ROWS`) ends with a line saying how many are not
listed (the CSV has them all). File names only; no patient attributes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cxr_viewer.results.render import NOTICE

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence

    import numpy as np

__all__ = ["MAX_ROWS", "SummaryRow", "write_summary"]

#: studies listed on the page
MAX_ROWS = 30


@dataclass(frozen=True)
class SummaryRow:
    """One study on the page.

    Attributes:
        name: the file name.
        triage_score: None when it has no result.
        flags: flagged findings in triage order.
        top: the top finding and its probability, e.g. ``"Effusion 0.73"`` ("" without a result).
        reason: why it has no result ("" when it has one).
    """

    name: str
    triage_score: float | None = None
    flags: tuple[str, ...] = ()
    top: str = ""
    reason: str = ""


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def write_summary(
    path: str | os.PathLike[str],
    rows: Sequence[SummaryRow],
    picture: np.ndarray | None,
    *,
    model: str = "",
    picture_name: str = "",
) -> None:
    """Write the page to ``path``; its suffix (``.png`` or ``.pdf``) picks the format.

    Args:
        path: the file to write (replaced).
        rows: the studies in the order to list them.
        picture: uint8 (h, w, 3) burned-in picture of one study, or None.
        model: the algorithm's name and version, for the page's header.
        picture_name: the file name of the pictured study.

    Raises:
        ValueError: for a suffix other than .png/.pdf.
        OSError: when the file cannot be written.
    """
    from pathlib import Path

    from matplotlib.figure import Figure

    dest = Path(path)
    fmt = dest.suffix.lower().lstrip(".")
    if fmt not in ("png", "pdf"):
        raise ValueError(f"summary must be .png or .pdf, not {dest.suffix or '(no suffix)'}")
    fig = Figure(figsize=(8.27, 11.69), dpi=110)  # A4 portrait
    fig.text(0.5, 0.975, "Chest X-ray triage results", ha="center", va="top", fontsize=16, weight="bold")
    fig.text(
        0.5,
        0.95,
        NOTICE,
        ha="center",
        va="top",
        fontsize=11,
        color="white",
        weight="bold",
        bbox={"facecolor": "#c80000", "edgecolor": "none", "pad": 4},
    )
    if model:
        fig.text(0.5, 0.925, _clip(model, 110), ha="center", va="top", fontsize=8, color="#444444")
    top = 0.91
    if picture is not None:
        ax = fig.add_axes((0.1, 0.47, 0.8, 0.43))
        ax.imshow(picture)
        ax.set_axis_off()
        if picture_name:
            ax.set_title(_clip(picture_name, 80), fontsize=9)
        top = 0.45
    table = fig.add_axes((0.05, 0.03, 0.9, top - 0.03))
    table.set_axis_off()
    shown = list(rows)[:MAX_ROWS]
    cells = [
        [
            _clip(r.name, 44),
            "" if r.triage_score is None else f"{r.triage_score:.2f}",
            _clip(", ".join(f.replace("_", " ") for f in r.flags), 40) if r.reason == "" else "",
            r.top if not r.reason else _clip(r.reason, 40),
        ]
        for r in shown
    ]
    if cells:
        t = table.table(
            cellText=cells,
            colLabels=["File", "Triage score", "Flagged", "Top finding / reason"],
            colWidths=[0.38, 0.12, 0.27, 0.23],
            loc="upper center",
            cellLoc="left",
        )
        t.auto_set_font_size(False)
        t.set_fontsize(7)
        t.scale(1.0, 1.2)
    else:
        table.text(0.5, 0.9, "No studies", ha="center", fontsize=10)
    rest = len(rows) - len(shown)
    if rest > 0:
        fig.text(
            0.5,
            0.015,
            f"... and {rest} more studies, not listed (the CSV has every one)",
            ha="center",
            fontsize=8,
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(dest, format=fmt)
