"""The application icon the window and the launcher use is the project's own and loads."""

from __future__ import annotations

from cxr_viewer.__main__ import _icon_path


def test_icon_found_and_renders(qtbot) -> None:
    from PySide6.QtGui import QIcon

    path = _icon_path()
    assert path is not None and path.name.startswith("cxr-triage")
    icon = QIcon(str(path))
    assert not icon.isNull()
    pixmap = icon.pixmap(64, 64)
    assert pixmap.width() == 64
    image = pixmap.toImage()
    colours = {image.pixel(x, y) for x in range(0, 64, 4) for y in range(0, 64, 4)}
    assert len(colours) > 3  # a drawing, not a blank square
