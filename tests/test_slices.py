"""Metrics by slice: per camera, per condition and per box size, each as COCO would score it."""

from __future__ import annotations

import math

import pytest

from tcv_helpers.model.evaluate import evaluate_detections
from tcv_helpers.model.metrics import pycocotools_map
from tcv_helpers.model.slices import evaluate_slices
from tests.eval_cases import EMPTY, GT, NAMES, det, synthetic


def test_evaluate_slices():
    gt, pred = synthetic(4, n_images=24)
    gt[5] = det([], [])  # one night image with no vehicle at all
    cameras = [f"cam-{i % 3}" for i in range(24)]
    conditions = ["night" if i == 5 else "day" for i in range(24)]
    table = evaluate_slices(gt, pred, NAMES, {"camera": cameras, "condition": conditions})
    assert list(table.columns) == [
        "slice",
        "value",
        "images",
        "gt_boxes",
        "predictions",
        "map50",
        "map50_95",
        "precision",
        "recall",
        "f1",
    ]
    overall = evaluate_detections(gt, pred, NAMES)
    first = table.iloc[0]
    assert (first["slice"], first["value"]) == ("all", "all")
    assert first["map50"] == pytest.approx(overall.map50)
    assert first["recall"] == pytest.approx(overall.recall)
    cams = table[table["slice"] == "camera"]
    assert cams["value"].tolist() == ["cam-0", "cam-1", "cam-2"]
    assert cams["images"].sum() == 24 and cams["gt_boxes"].sum() == overall.n_gt
    subset = [i for i in range(24) if cameras[i] == "cam-1"]
    expected = pycocotools_map([gt[i] for i in subset], [pred[i] for i in subset])
    assert cams.iloc[1]["map50"] == pytest.approx(expected[0])
    night = table[(table["slice"] == "condition") & (table["value"] == "night")].iloc[0]
    assert night["gt_boxes"] == 0 and math.isnan(night["map50"]) and math.isnan(night["recall"])
    sizes = table[table["slice"] == "box_size"]
    assert sizes["value"].tolist() == ["small", "medium", "large"]
    assert sizes["gt_boxes"].sum() == overall.n_gt
    for _, row in sizes.iterrows():
        reference = pycocotools_map(gt, pred, area=row["value"])
        assert row["map50"] == pytest.approx(reference[0])
        assert row["map50"] == pytest.approx(overall.map_by_size[row["value"]][0])


def test_evaluate_slices_bad_input():
    with pytest.raises(ValueError, match=r"slice 'camera' has 2 values; give one value per image"):
        evaluate_slices(GT, [EMPTY] * 3, NAMES, {"camera": ["a", "b"]})
    with pytest.raises(ValueError, match="reserved"):
        evaluate_slices(GT, [EMPTY] * 3, NAMES, {"box_size": ["a"] * 3})
    no_sizes = evaluate_slices(GT, [EMPTY] * 3, NAMES, {}, sizes=False)
    assert no_sizes["slice"].tolist() == ["all"]
