"""``python -m benchmarks.worklist [--quick]``: GUI-thread cost of the grouped worklist (issue 13).

Builds the real `Worklist` (offscreen) with the NIH 64 px file names of ``../shared/data`` (or synthetic
NIH-style names when absent), then replays what the pipeline tells it per image while a folder is
analysed (analysing, thumbnail, score, done) and prints a table: the time to add every image and draw
the grouping once, and the time per image of the updates. It reports; it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "chestxray14-nih1000-64px" / "images"


def _names(n: int) -> list[Path]:
    files = sorted(DATA.glob("*.png")) if DATA.is_dir() else []
    if not files:  # NIH-style names: 4 follow-ups per patient
        files = [Path(f"/nih/{i // 4:08d}_{i % 4:03d}.png") for i in range(n)]
    return files[:n]


def main(argv: list[str] | None = None) -> int:
    """Print the table; returns 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 images instead of all (690)")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import numpy as np
    from PySide6.QtWidgets import QApplication

    from cxr_viewer.core.pipeline import StudyStatus
    from cxr_viewer.core.studies import facts_for_file
    from cxr_viewer.qt.widgets.worklist import Worklist

    app = QApplication.instance() or QApplication(sys.argv[:1])
    files = _names(100 if args.quick else 690)
    worklist = Worklist()
    worklist.resize(500, 800)
    worklist.show()
    start = time.perf_counter()
    for i, f in enumerate(files, 1):
        worklist.add_study(i, f.name, str(f), facts_for_file(i, f))
    worklist.select_first(lambda _sid: True)
    built = time.perf_counter() - start
    thumb = np.zeros((40, 40), np.uint8)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for i in range(1, len(files) + 1):
        worklist.set_status(i, StudyStatus.ANALYSING)
        worklist.set_thumbnail(i, thumb)
        worklist.set_score(i, float(rng.random() * 2), "Effusion")
        worklist.set_status(i, StudyStatus.DONE)
        if i % 50 == 0:
            app.processEvents()
    updates = time.perf_counter() - start
    rows = [
        ("images", f"{len(files)}"),
        ("patients (top rows)", f"{worklist.top_row_count()}"),
        ("add all + draw the grouping", f"{built * 1000:.0f} ms"),
        ("updates per image (4: analysing, thumbnail, score, done)", f"{updates / len(files) * 1000:.2f} ms"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        sys.stdout.write(f"{key:<{width}}  {value}\n")
    worklist.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
