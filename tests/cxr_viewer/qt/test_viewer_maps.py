"""Class maps on an absolute scale, the outline style and the map's grid, with a real ImageView."""

from __future__ import annotations

import numpy as np
import pytest

from cral_model.inference import Prediction
from cxr_viewer.core.image import XrayImage
from cxr_viewer.core.overlay import heatmap_for, outline_paths
from cxr_viewer.core.state import SALIENCY, ViewerState

NAMES = ("Effusion", "Mass")


def _image() -> XrayImage:
    from pathlib import Path

    px = np.tile(np.linspace(0, 255, 140, dtype=np.float32), (140, 1))
    return XrayImage(px, Path("x.png"), "PNG", "L", value_range=(0.0, 255.0))


def _prediction(p_mass: float) -> Prediction:
    """Effusion flagged, with its evidence in the lower-left cell; Mass at ``p_mass`` everywhere weak."""
    logit = lambda p: float(np.log(p / (1 - p)))  # noqa: E731
    ev = np.full((2, 7, 7), logit(0.05), np.float32)
    ev[0, 5, 1] = logit(0.95)  # one cell alone well past Effusion's threshold
    ev[1] = logit(p_mass)
    return Prediction(
        class_names=NAMES,
        probabilities=np.array([0.4, p_mass], np.float32),
        attention=np.full((2, 7, 7), 0.5, np.float32),
        saliency=np.linspace(0, 1, 49, dtype=np.float32).reshape(7, 7),
        thresholds=np.array([0.3, 0.2], np.float32),
        evidence=ev,
    )


def test_a_weak_finding_does_not_paint_a_red_quadrant():
    state = ViewerState(image=_image(), prediction=_prediction(0.02), selected_map=1)
    heat = heatmap_for(state)
    assert heat is not None and heat.shape == (140, 140)
    # 2 % against a 20 % threshold: a tenth of the scale everywhere, not stretched to full colour
    np.testing.assert_allclose(heat, 0.1, atol=1e-3)
    strong = heatmap_for(ViewerState(image=_image(), prediction=_prediction(0.02), selected_map=0))
    # the cell that carries Effusion reaches the threshold (bilinear between cell centres: ~0.96)
    assert strong.max() > 0.95 and strong[5 * 20 + 10, 1 * 20 + 10] > 0.95
    assert strong[10, 130] < 0.2
    # the class-agnostic map has no scale of its own: stretched, and said so in the caption
    sal = heatmap_for(ViewerState(image=_image(), prediction=_prediction(0.02), selected_map=SALIENCY))
    assert sal.min() == pytest.approx(0.0) and sal.max() == pytest.approx(1.0)


def test_outline_paths_surround_the_region_at_threshold():
    heat = heatmap_for(ViewerState(image=_image(), prediction=_prediction(0.02), selected_map=0))
    paths = outline_paths(heat)
    assert len(paths) == 1
    xs, ys = paths[0][:, 0], paths[0][:, 1]
    assert 0 < xs.min() < xs.max() < 50 and 90 < ys.min() < ys.max() < 130  # around cell (row 5, col 1)
    assert (
        outline_paths(heatmap_for(ViewerState(image=_image(), prediction=_prediction(0.02), selected_map=1)))
        == []
    )


def test_image_view_caption_grid_and_outline_style(qtbot):
    from cxr_viewer.qt.widgets.image_view import ImageView

    state = ViewerState()
    view = ImageView(state)
    qtbot.addWidget(view)
    state.update(image=_image(), prediction=_prediction(0.02), selected_map=0)
    caption = view.corner_bottom_right.text()
    assert "Map: Effusion 40.0% (threshold 30.0%)" in caption
    assert "7 x 7 map, absolute scale (1 = threshold)" in caption
    assert view.overlay_image() is not None and view.outline_count() == 0
    state.update(map_style="outline")
    assert view.outline_count() == 1 and not view.overlay_item.isVisible()
    assert "outline" in view.corner_bottom_right.text()
    state.update(selected_map=1)  # nothing reaches Mass's threshold: no outline, and it says so
    assert view.outline_count() == 0
    assert "no region reaches the threshold" in view.corner_bottom_right.text()
    with pytest.raises(ValueError, match="map_style"):
        state.update(map_style="dots")
    view.close_view()


def _boxed(box: tuple[float, float, float, float]) -> Prediction:
    import dataclasses

    return dataclasses.replace(_prediction(0.02), crop_box=np.array(box, np.float32))


def test_crop_box_outline_maps_the_box_through_region_and_orientation():
    from pathlib import Path

    from cxr_viewer.core.orientation import Orientation
    from cxr_viewer.core.overlay import crop_box_outline

    image = XrayImage(np.zeros((100, 200), np.float32), Path("x.png"), "PNG", "L", value_range=(0.0, 1.0))
    pred = _boxed((0.25, 0.5, 0.75, 1.0))
    path = crop_box_outline(ViewerState(image=image, prediction=pred))
    # x from 0.25 * 200 to 0.75 * 200, y from 0.5 * 100 to 100; closed
    np.testing.assert_allclose(path, [[50, 50], [150, 50], [150, 100], [50, 100], [50, 50]])
    # the maps cover only the right half of the image: so does the box
    half = crop_box_outline(ViewerState(image=image, prediction=pred, map_region=(0.0, 0.5, 1.0, 1.0)))
    assert (half[:, 0].min(), half[:, 0].max()) == pytest.approx((125, 175))
    # a clockwise quarter turn: display is 100 wide, 200 high; source (x, y) -> (100 - y, x)
    turned = crop_box_outline(ViewerState(image=image, prediction=pred, orientation=Orientation().rotated()))
    np.testing.assert_allclose(turned[[0, 2]], [[50, 50], [0, 150]])
    assert crop_box_outline(ViewerState(image=image, prediction=_prediction(0.02))) is None  # no box
    assert crop_box_outline(ViewerState(image=image, prediction=_boxed((0.5, 0.5, 0.5, 0.9)))) is None


def test_image_view_draws_the_agcnn_crop_box_with_the_map(qtbot):
    from cxr_viewer.core.orientation import Orientation
    from cxr_viewer.qt.widgets.image_view import ImageView

    state = ViewerState()
    view = ImageView(state)
    qtbot.addWidget(view)
    state.update(image=_image(), prediction=_boxed((0.1, 0.2, 0.6, 0.9)), selected_map=0)
    path = view.crop_box_path()
    assert path is not None
    np.testing.assert_allclose(path[:4], [[14, 28], [84, 28], [84, 126], [14, 126]], atol=1e-4)
    assert "Dashed box: region of the local branch (AG-CNN)" in view.corner_bottom_right.text()
    state.update(orientation=Orientation(flip_horizontal=True))  # follows the flip (140 px wide)
    np.testing.assert_allclose(view.crop_box_path()[0], [126, 28], atol=1e-4)
    state.update(overlay_visible=False)  # hidden with the maps
    assert view.crop_box_path() is None
    state.update(overlay_visible=True, prediction=_prediction(0.02))  # a method without a crop
    assert view.crop_box_path() is None and "Dashed box" not in view.corner_bottom_right.text()
