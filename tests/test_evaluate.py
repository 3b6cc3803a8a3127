"""evaluate_detections: counts, mAP, curves and serialisation; ground truth from a dataset."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from matplotlib.figure import Figure
from PIL import Image

from tcv_helpers.model.evaluate import EvalResult, evaluate_detections, load_ground_truth
from tcv_helpers.model.metrics import RECALL_THRESHOLDS, coco_map, pycocotools_map
from tcv_helpers.model.slices import slices_from_manifest
from tcv_helpers.record import clean_metrics
from tests.eval_cases import EMPTY, NAMES, det

# --------------------------------------------------------------------------------------------
# evaluate_detections
# --------------------------------------------------------------------------------------------

# Image 0: a car found (0.9), a truck missed, a false car (0.8) and a weak car (0.1, below 0.25).
# Image 1: a car found (0.7). Buses: none in the ground truth.
SMALL_GT = [det([[0, 0, 40, 40], [100, 100, 160, 140]], [0, 1]), det([[10, 10, 50, 50]], [0])]
SMALL_PRED = [
    det([[1, 1, 40, 40], [200, 200, 240, 240], [300, 0, 340, 40]], [0, 0, 0], [0.9, 0.8, 0.1]),
    det([[10, 10, 50, 52]], [0], [0.7]),
]


def test_evaluate_detections_counts_and_maps():
    result = evaluate_detections(SMALL_GT, SMALL_PRED, NAMES, image_ids=["a.jpg", "b.jpg"])
    assert isinstance(result, EvalResult)
    assert (result.map50, result.map50_95) == pytest.approx(pycocotools_map(SMALL_GT, SMALL_PRED))
    assert (result.map50, result.map50_95) == pytest.approx(coco_map(SMALL_GT, SMALL_PRED))
    assert result.precision == pytest.approx(2 / 3)
    assert result.recall == pytest.approx(2 / 3)
    assert result.f1 == pytest.approx(2 / 3)
    table = result.to_pandas()
    assert list(table.index) == NAMES
    assert table.loc["car", ["gt", "tp", "fp", "fn", "predictions"]].tolist() == [2, 2, 1, 0, 3]
    assert table.loc["truck", ["gt", "tp", "fn"]].tolist() == [1, 0, 1]
    assert table.loc["truck", "ap50"] == 0.0
    assert math.isnan(table.loc["bus", "ap50"]) and math.isnan(table.loc["bus", "recall"])
    # car: the 0.8 false positive ranks between the two hits -> AP50 = mean over 101 points.
    assert table.loc["car", "ap50"] == pytest.approx((51 * 1 + 50 * 2 / 3) / 101, abs=1e-6)
    assert result.map50 == pytest.approx(table.loc["car", "ap50"] / 2)
    assert set(result.pr_curves) == {"car", "truck"}
    curve = result.pr_curves["car"]
    assert curve.recall.tolist() == RECALL_THRESHOLDS.tolist()
    assert curve.precision.mean() == pytest.approx(table.loc["car", "ap50"])
    worst = result.per_image()
    assert worst.loc[0, "image"] == "a.jpg" and worst.loc[0, ["fp", "fn"]].tolist() == [1, 1]
    assert (result.n_images, result.n_gt, result.n_predictions) == (2, 3, 4)


def test_confidence_threshold_changes_precision_not_map():
    low = evaluate_detections(SMALL_GT, SMALL_PRED, NAMES, conf=0.05)
    high = evaluate_detections(SMALL_GT, SMALL_PRED, NAMES, conf=0.85)
    assert low.map50 == high.map50
    assert low.precision == pytest.approx(2 / 4)
    assert (high.precision, high.recall) == pytest.approx((1.0, 1 / 3))


def test_no_predictions_gives_zero():
    result = evaluate_detections(SMALL_GT, [EMPTY, det([], [], [])], NAMES)
    assert (result.map50, result.map50_95, result.precision, result.recall) == (0, 0, 0, 0)
    assert result.f1 == 0.0
    assert result.pr_curves["car"].precision.max() == 0.0


def test_serialisation_and_plots():
    result = evaluate_detections(SMALL_GT, SMALL_PRED, NAMES)
    text = json.dumps(result.to_dict(), allow_nan=False)
    assert json.loads(text)["per_class"][2]["ap50"] is None
    numbers = result.key_numbers()
    assert numbers["map50"] == result.map50 and "ap50_bus" not in numbers
    assert clean_metrics(**numbers) == numbers
    for fig in (result.plot_pr(), result.plot()):
        assert isinstance(fig, Figure) and fig.axes
    assert "mAP50" in result.plot_pr().axes[0].get_title()


# --------------------------------------------------------------------------------------------
# Ground truth from a dataset
# --------------------------------------------------------------------------------------------


def _dataset(root: Path, val_name: str = "val") -> Path:
    for split, stems in (("train", ["t0"]), (val_name, ["b", "a"])):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for stem in stems:
            Image.new("RGB", (100, 50)).save(root / "images" / split / f"{stem}.png")
        (root / "labels" / split / f"{stems[0]}.txt").write_text("1 0.5 0.5 0.2 0.4\n")
    (root / "labels" / val_name / "a.txt").write_text("0 0.1 0.1 0.2 0.2\n0 0.5 0.5 1 1\n")
    data = {"train": "images/train", "val": f"images/{val_name}", "names": {0: "car", 1: "bus"}}
    (root / "data.yaml").write_text(yaml.safe_dump(data))
    rows = ["image,camera_id,timestamp,source,condition,split"]
    rows += [f"images/{val_name}/{s}.png,cam-{s},2024,synthetic,night,{val_name}" for s in "ab"]
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.mark.parametrize("val_name", ["val", "valid"])
def test_load_ground_truth(tmp_path, monkeypatch, val_name):
    root = _dataset(tmp_path / "ds", val_name)
    paths, gt, names = load_ground_truth(root, "val")
    assert names == ["car", "bus"]
    assert [p.name for p in paths] == ["a.png", "b.png"] and all(p.is_file() for p in paths)
    np.testing.assert_allclose(gt[0].xyxy, [[0, 0, 20, 10], [0, 0, 100, 50]])
    assert gt[0].class_id.tolist() == [0, 0] and gt[1].class_id.tolist() == [1]
    slices = slices_from_manifest(root, paths)
    assert slices == {"camera_id": ["cam-a", "cam-b"], "condition": ["night", "night"]}
    monkeypatch.chdir(tmp_path)  # paths relative to the working folder, and to the dataset
    relative = load_ground_truth("ds", "val")[0]
    assert slices_from_manifest("ds", relative, ["camera_id"]) == {"camera_id": ["cam-a", "cam-b"]}
    inside = [f"images/{val_name}/b.png"]
    assert slices_from_manifest(root, inside, ["condition"]) == {"condition": ["night"]}
    with pytest.raises(ValueError, match=r"no images in split 'test'; splits present: train"):
        load_ground_truth(root, "test")
    with pytest.raises(ValueError, match="not in the manifest"):
        slices_from_manifest(root, [root / "images" / "train" / "t0.png"])
