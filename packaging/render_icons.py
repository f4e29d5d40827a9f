"""Render ``resources/icons/cxr-triage.svg`` into the PNG sizes the desktop and the bundle use.

Usage::

    QT_QPA_PLATFORM=offscreen python packaging/render_icons.py [--svg SVG] [--out DIR]

Writes ``cxr-triage-{N}.png`` for N in 16, 32, 48, 64, 128, 256, 512 (the hicolor theme sizes) and,
when Pillow is installed, a multi-size ``cxr-triage.ico`` for Windows builds. macOS ``.icns`` files are
made on a Mac with ``iconutil`` (see docs/PACKAGING.md). Uses Qt's own SVG renderer (QtSvg ships in
PySide6-Essentials), so no extra tool is needed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

SIZES = (16, 32, 48, 64, 128, 256, 512)
ROOT = Path(__file__).resolve().parents[1]
ICON_DIR = ROOT / "resources" / "icons"


def render(svg: Path, out_dir: Path, sizes: tuple[int, ...] = SIZES) -> list[Path]:
    """Render ``svg`` to square RGBA PNGs, one per size. Returns the written paths."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QRectF, Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    renderer = QSvgRenderer(os.fspath(svg))
    if not renderer.isValid():
        raise SystemExit(f"not a valid SVG: {svg}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for size in sizes:
        image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        renderer.render(painter, QRectF(0, 0, size, size))
        painter.end()
        path = out_dir / f"{svg.stem}-{size}.png"
        if not image.save(os.fspath(path), "PNG"):
            raise SystemExit(f"could not write {path}")
        written.append(path)
    return written


def write_ico(pngs: list[Path], out: Path) -> Path | None:
    """A Windows .ico holding the sizes up to 256 px (Pillow), or None without Pillow."""
    try:
        from PIL import Image
    except ImportError:
        return None
    biggest = max(pngs, key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    sizes = [(s, s) for s in SIZES if s <= 256]
    with Image.open(biggest) as im:
        im.save(out, format="ICO", sizes=sizes)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--svg", type=Path, default=ICON_DIR / "cxr-triage.svg")
    parser.add_argument("--out", type=Path, default=ICON_DIR)
    args = parser.parse_args(argv)
    pngs = render(args.svg, args.out)
    ico = write_ico(pngs, args.out / f"{args.svg.stem}.ico")
    for path in [*pngs, *([ico] if ico else [])]:
        sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
