"""The localization protocol of Wang et al. 2017 on synthetic maps and boxes with hand-computed answers,
the real BBox_List_2017.csv, and cral-eval --boxes end to end."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

import numpy as np
import pytest

from cral_model.config import PreprocessConfig
from cral_model.localization import (
    BOX_CLASSES,
    WANG2017_IOBB_01,
    Box,
    GroundTruth,
    boxes_from_map,
    iobb,
    iou,
    localization_accuracy,
    map_to_image,
    normalise_map,
    read_bbox_csv,
    write_localization_table,
)

if TYPE_CHECKING:
    from pathlib import Path


def test_iou_and_iobb_hand_computed() -> None:
    truth = Box.from_xywh(0, 0, 10, 10)  # area 100
    half = Box(5, 0, 15, 10)  # area 100, overlap 50
    assert iou(truth, half) == pytest.approx(50 / 150)
    assert iobb(truth, half) == pytest.approx(0.5)
    inner = Box(2, 2, 4, 4)  # inside the truth: IoBB 1, IoU 4/100
    assert iobb(truth, inner) == 1.0
    assert iou(truth, inner) == pytest.approx(0.04)
    assert iou(truth, Box(20, 20, 30, 30)) == 0.0
    assert iobb(truth, Box(3, 3, 3, 9)) == 0.0  # an empty prediction localises nothing


def test_normalise_map_range_and_constant() -> None:
    heat = np.array([[1.0, 3.0], [5.0, 2.0]])
    norm = normalise_map(heat)
    assert norm.min() == 0.0 and norm.max() == 255.0
    assert norm[0, 1] == pytest.approx(127.5)
    assert heat[0, 1] == 3.0  # input unchanged
    assert not normalise_map(np.full((3, 3), 7.0)).any()


def test_boxes_from_map_two_thresholds_hand_computed() -> None:
    heat = np.zeros((10, 10))
    heat[2:4, 1:5] = 255  # rows 2-3, columns 1-4: above 60 and 180
    heat[6:9, 6:9] = 100  # rows 6-8, columns 6-8: above 60 only
    boxes = boxes_from_map(heat)
    assert boxes == [Box(1, 2, 5, 4), Box(6, 6, 9, 9), Box(1, 2, 5, 4)]
    diagonal = np.eye(3) * 255.0  # 8-connected: one region
    assert boxes_from_map(diagonal, thresholds=(60,)) == [Box(0, 0, 3, 3)]
    assert boxes_from_map(np.ones((4, 4))) == []  # constant: no region


def test_accuracy_per_finding_and_threshold_hand_computed() -> None:
    truths = [
        GroundTruth("a.png", "Mass", Box.from_xywh(0, 0, 10, 10)),
        GroundTruth("b.png", "Mass", Box.from_xywh(0, 0, 10, 10)),
        GroundTruth("c.png", "Nodule", Box.from_xywh(0, 0, 4, 4)),
    ]
    predicted = [
        [Box(20, 20, 30, 30), Box(5, 0, 15, 10)],  # best: IoBB 0.5, IoU 1/3
        [],  # nothing predicted
        [Box(0, 0, 4, 4)],  # exact: IoBB = IoU = 1
    ]
    res = localization_accuracy(predicted, truths)
    assert list(res["n_boxes"]) == ["Mass", "Nodule"]  # BOX_CLASSES order
    assert res["n_boxes"] == {"Mass": 2, "Nodule": 1}
    # strictly greater than T: 0.5 > 0.5 is false
    assert res["iobb"]["Mass"] == {"0.1": 0.5, "0.25": 0.5, "0.5": 0.0, "0.75": 0.0, "0.9": 0.0}
    assert res["iou"]["Mass"] == {"0.1": 0.5, "0.25": 0.5, "0.5": 0.0, "0.75": 0.0, "0.9": 0.0}
    assert set(res["iobb"]["Nodule"].values()) == set(res["iou"]["Nodule"].values()) == {1.0}
    table = write_localization_table(res)
    assert "| ours T(IoBB)=0.1 | 0.500 | 1.000 |" in table
    assert "| Wang et al. 2017 T(IoBB)=0.1 | 0.435 | 0.165 |" in table
    with pytest.raises(ValueError, match="one list"):
        localization_accuracy(predicted[:2], truths)


def test_map_to_image_inverts_resize_and_centre_crop() -> None:
    # input 64 is the centre of the image resized to 80: it covers [8, 72) of 80 -> [16, 144) of 160
    pre = PreprocessConfig(input_size=64, resize=80)
    heat = map_to_image(np.ones((2, 2), np.float32), pre, side=160)
    assert heat.shape == (160, 160)
    assert heat[80, 80] == pytest.approx(1.0)
    assert heat[5, 5] == 0.0 and heat[155, 80] == 0.0
    (box,) = boxes_from_map(heat, thresholds=(128,))
    for got, want in zip((box.x0, box.y0, box.x1, box.y1), (16, 16, 144, 144), strict=True):
        assert abs(got - want) <= 1


def test_real_bbox_list(shared_data: Path) -> None:
    rows = read_bbox_csv(shared_data / "chestxray14-labels" / "BBox_List_2017.csv")
    assert len(rows) == 984
    assert len({r.image for r in rows}) == 880
    assert {r.finding for r in rows} == set(BOX_CLASSES) == set(WANG2017_IOBB_01)
    assert sum(r.finding == "Infiltration" for r in rows) == 123  # the file's "Infiltrate"
    assert all(r.box.area > 0 and math.isfinite(r.box.x1) for r in rows)


def test_bad_bbox_row_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "b.csv"
    bad.write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\na.png,Mass,1,2,three,4\n")
    with pytest.raises(ValueError, match="line 2"):
        read_bbox_csv(bad)
    bad.write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\na.png,Mass,1,2,0,4\n")
    with pytest.raises(ValueError, match="invalid box"):
        read_bbox_csv(bad)


def test_cral_eval_boxes_end_to_end(tmp_path: Path) -> None:
    from cral_model import build_model
    from cral_model.checkpoint import save_checkpoint
    from cral_model.cli.evaluate import main as eval_main
    from cral_model.data import make_synthetic_nih

    root = tmp_path / "nih"
    lists = make_synthetic_nih(root, n_patients=6, images_per_patient=1, test_patients=3, size=32, seed=2)
    test_names = sorted(lists["test"])
    ckpt = save_checkpoint(
        build_model("resnet18").eval(),
        tmp_path / "m.safetensors",
        preprocessing=PreprocessConfig(input_size=64, resize=64),
    )
    boxes = tmp_path / "BBox_List_2017.csv"
    boxes.write_text(
        "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
        f"{test_names[0]},Mass,0,0,1024,1024\n"  # the whole frame: every predicted box is inside
        f"{test_names[1]},Nodule,0,0,1,1\n"  # one pixel: no predicted box is mostly inside it
        "00099999_000.png,Mass,0,0,10,10\n"  # not evaluated: left out
    )
    out = tmp_path / "eval"
    argv = [str(ckpt), "--data-root", str(root), "--split", "test", "--output", str(out)]
    argv += ["--boxes", str(boxes), "--bootstrap", "0", "--workers", "0", "--device", "cpu", "--no-progress"]
    assert eval_main(argv) == 0
    loc = json.loads((out / "metrics.json").read_text())["localization"]
    assert loc["n_images"] == 2
    assert loc["n_boxes"] == {"Mass": 1, "Nodule": 1}
    assert set(loc["iobb"]["Mass"].values()) == {1.0}
    assert set(loc["iobb"]["Nodule"].values()) == {0.0}
    assert loc["published"]["iobb_0.1"]["Nodule"] == 0.165
    assert "Localization (Wang et al. 2017 protocol)" in (out / "table.md").read_text()
