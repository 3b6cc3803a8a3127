"""Evaluation: our COCO mAP reproduces pycocotools to 1e-6, Ultralytics agrees within 0.02, and
the slices, errors, plots, report and model card say what the numbers say."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import supervision as sv
import yaml
from matplotlib.figure import Figure
from PIL import Image

from tcv_helpers.model.evaluate import (
    AREA_RANGES,
    ERROR_KINDS,
    RECALL_THRESHOLDS,
    EvalResult,
    box_iou,
    coco_map,
    confusion_matrix,
    error_cases,
    error_table,
    evaluate_detections,
    evaluate_slices,
    iou,
    load_ground_truth,
    model_card,
    plot_error_gallery,
    plot_iou,
    pycocotools_map,
    slices_from_manifest,
    ultralytics_map,
    write_report,
)
from tcv_helpers.project import ProjectDefinition, SuccessCriteria, read_project, write_project
from tcv_helpers.record import clean_metrics

NAMES = ["car", "truck", "bus"]


def det(boxes, classes, scores=None) -> sv.Detections:
    boxes = np.array(boxes, dtype=float).reshape(-1, 4)
    return sv.Detections(
        xyxy=boxes,
        class_id=np.array(classes, dtype=int).reshape(-1),
        confidence=None if scores is None else np.array(scores, dtype=float).reshape(-1),
    )


EMPTY = det([], [], [])
GT = [
    det([[10, 10, 50, 50], [60, 60, 120, 100]], [0, 1]),
    det([[5, 5, 40, 30]], [0]),
    det([], []),
]


def shifted(dx: float) -> list[sv.Detections]:
    return [
        det([[10 + dx, 10, 50 + dx, 50], [60, 60, 120, 100]], [0, 1], [0.9, 0.8]),
        det([[5 + dx, 5, 40 + dx, 30]], [0], [0.7]),
        EMPTY,
    ]


def synthetic(seed: int, *, n_images: int = 40, n_classes: int = 3, size: float = 600.0):
    """Realistic predictions: GT jittered by ~6 % of the box size, 15 % missed, false positives."""
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for _ in range(n_images):
        n = int(rng.integers(0, 12))
        xy = rng.uniform(0, size, (n, 2))
        wh = rng.uniform(10, 150, (n, 2))
        boxes = np.hstack([xy, xy + wh])
        cls = rng.integers(0, n_classes, n)
        gts.append(det(boxes, cls))
        keep = rng.random(n) > 0.15
        found = boxes[keep] + rng.normal(0, 0.06, (int(keep.sum()), 4)) * np.tile(wh[keep], 2)
        conf = rng.beta(5, 2, int(keep.sum()))
        k = int(rng.poisson(2))
        fxy = rng.uniform(0, size, (k, 2))
        fake = np.hstack([fxy, fxy + rng.uniform(10, 120, (k, 2))])
        p_boxes = np.vstack([found, fake])
        p_boxes[:, 2:] = np.maximum(p_boxes[:, 2:], p_boxes[:, :2] + 1)
        p_cls = np.concatenate([cls[keep], rng.integers(0, n_classes, k)])
        p_conf = np.concatenate([conf, rng.beta(2, 5, k)]).astype(np.float32)
        preds.append(det(p_boxes, p_cls, p_conf))
    return gts, preds


# --------------------------------------------------------------------------------------------
# The numpy COCO mAP reproduces pycocotools
# --------------------------------------------------------------------------------------------

SQUARE = [[0, 0, 100, 100]]
CASES = {
    "perfect": (GT, [det(g.xyxy, g.class_id, np.linspace(0.9, 0.5, len(g))) for g in GT]),
    "empty predictions": (GT, [EMPTY, EMPTY, EMPTY]),
    "empty ground truth in some images": (
        [det([], []), det(SQUARE, [0]), det([], [])],
        [det([[1, 1, 90, 99]], [0], [0.4]), det([[2, 0, 100, 98]], [0], [0.6]), EMPTY],
    ),
    "slightly shifted": (GT, shifted(4)),
    "shifted past 0.5": (GT, shifted(14)),
    "IoU exactly 0.5": ([det(SQUARE, [0])], [det([[0, 0, 50, 100]], [0], [0.9])]),
    "IoU just below 0.5": ([det(SQUARE, [0])], [det([[0, 0, 49.999, 100]], [0], [0.9])]),
    "IoU just above 0.75": ([det(SQUARE, [0])], [det([[0, 0, 75.001, 100]], [0], [0.9])]),
    "IoU just below 0.75": ([det(SQUARE, [0])], [det([[0, 0, 74.999, 100]], [0], [0.9])]),
    "wrong class": (
        GT,
        [det([[10, 10, 50, 50]], [1], [0.9]), det([[5, 5, 40, 30]], [0], [0.8]), EMPTY],
    ),
    "duplicates": (
        GT,
        [det([[10, 10, 50, 50], [11, 10, 51, 50]], [0, 0], [0.9, 0.95]), EMPTY, EMPTY],
    ),
    "tied scores": (
        [det([[0, 0, 10, 10], [20, 0, 30, 10]], [0, 0]), det([[0, 0, 10, 10]], [0])],
        [
            det([[0, 0, 10, 10], [40, 0, 50, 10]], [0, 0], [0.5, 0.5]),
            det([[50, 50, 60, 60], [0, 0, 10, 10]], [0, 0], [0.5, 0.5]),
        ],
    ),
    "tied IoU between two boxes": (  # the first prediction has IoU 9/11 with both: COCO
        [det([[0, 0, 10, 10], [2, 0, 12, 10]], [0, 0])],  # takes the later box
        [det([[1, 0, 11, 10], [0, 0, 10, 10]], [0, 0], [0.9, 0.8])],
    ),
    "several classes": (
        [det([[0, 0, 20, 20], [30, 0, 60, 20], [0, 30, 40, 90]], [0, 1, 2])],
        [
            det(
                [[1, 0, 20, 20], [30, 2, 58, 20], [0, 30, 40, 60], [70, 70, 90, 90]],
                [0, 1, 2, 1],
                [0.8, 0.7, 0.6, 0.9],
            )
        ],
    ),
    "prediction of a class without ground truth": (
        [det(SQUARE, [0])],
        [det([[0, 0, 100, 100], [200, 200, 250, 250]], [0, 2], [0.8, 0.9])],
    ),
    "false positive on empty image": (
        GT,
        [det(GT[0].xyxy, GT[0].class_id, [0.6, 0.7]), EMPTY, det([[0, 0, 20, 20]], [0], [0.99])],
    ),
    "more than 100 detections in an image": (
        [det([[i * 12, 0, i * 12 + 10, 10] for i in range(30)], [0] * 30)],
        [
            det(
                [[i * 3, 0, i * 3 + 10, 10] for i in range(120)],
                [0] * 120,
                np.linspace(0.99, 0.01, 120),
            )
        ],
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_reproduces_pycocotools(name):
    gt, pred = CASES[name]
    ours = coco_map(gt, pred)
    reference = pycocotools_map(gt, pred)
    assert ours == pytest.approx(reference, abs=1e-6), (name, ours, reference)


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("area", list(AREA_RANGES))
def test_random_cases_reproduce_pycocotools(seed, area):
    rng = np.random.default_rng(seed)
    gt, pred = [], []
    for _ in range(int(rng.integers(1, 7))):
        n = int(rng.integers(0, 9))
        xy = rng.uniform(0, 300, (n, 2))
        wh = rng.uniform(8, 130, (n, 2))
        boxes = np.hstack([xy, xy + wh])
        classes = rng.integers(0, 3, n)
        gt.append(det(boxes, classes))
        keep = rng.random(n) < 0.8
        jitter = rng.normal(0, 6, (int(keep.sum()), 4))
        noise_n = int(rng.integers(0, 4))
        noise_xy = rng.uniform(0, 300, (noise_n, 2))
        fp = np.hstack([noise_xy, noise_xy + rng.uniform(8, 110, (noise_n, 2))])
        p_boxes = np.vstack([boxes[keep] + jitter, fp])
        p_boxes[:, 2:] = np.maximum(p_boxes[:, 2:], p_boxes[:, :2] + 1)
        flip = rng.random(int(keep.sum())) < 0.1
        p_cls = np.concatenate(
            [
                np.where(flip, rng.integers(0, 3, len(flip)), classes[keep]),
                rng.integers(0, 3, noise_n),
            ]
        )
        scores = np.round(rng.uniform(0.05, 1, len(p_boxes)), 1)  # rounded: ties happen
        pred.append(det(p_boxes, p_cls, scores))
    ours = coco_map(gt, pred, area=area)
    assert ours == pytest.approx(pycocotools_map(gt, pred, area=area), abs=1e-6)


def test_known_values():
    assert coco_map(*CASES["perfect"]) == pytest.approx((1.0, 1.0))
    assert coco_map(*CASES["empty predictions"]) == (0.0, 0.0)
    map50, map_all = coco_map(*CASES["slightly shifted"])
    assert map50 == pytest.approx(1.0) and map_all < 1.0
    assert coco_map(*CASES["shifted past 0.5"])[0] < 1.0
    assert coco_map(*CASES["IoU exactly 0.5"]) == pytest.approx((1.0, 0.1))
    assert coco_map(*CASES["IoU just below 0.5"]) == (0.0, 0.0)
    assert coco_map(*CASES["IoU just above 0.75"]) == pytest.approx((1.0, 0.6))
    assert coco_map(*CASES["IoU just below 0.75"]) == pytest.approx((1.0, 0.5))
    # Tie: the 0.9 prediction takes the second box (IoU 0.818), the 0.8 one the first (IoU 1);
    # above IoU 0.818 the first prediction misses: precision 1/2 up to recall 1/2.
    expected = (7 + 3 * (51 * 0.5 / 101)) / 10
    assert coco_map(*CASES["tied IoU between two boxes"]) == pytest.approx((1.0, expected))
    # The class without ground truth is left out of the mean, as in COCO: still perfect.
    assert coco_map(*CASES["prediction of a class without ground truth"]) == pytest.approx((1, 1))
    assert coco_map([det([], [])], [det([[0, 0, 5, 5]], [0], [0.9])]) == (-1.0, -1.0)
    assert pycocotools_map([det([], [])], [det([[0, 0, 5, 5]], [0], [0.9])]) == (-1.0, -1.0)


def test_box_iou_matches_the_formula():
    values = box_iou([[0, 0, 10, 10]], [[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    assert values[0] == pytest.approx([1, 1 / 3, 0])
    assert box_iou(np.zeros((0, 4)), [[0, 0, 1, 1]]).shape == (0, 1)


# --------------------------------------------------------------------------------------------
# Ultralytics' metrics on the same predictions
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_ultralytics_agrees_within_002(seed):
    gt, pred = synthetic(seed)
    reference = pycocotools_map(gt, pred)
    theirs = ultralytics_map(gt, pred, NAMES)
    assert 0.3 < reference[0] < 0.99  # a realistic, imperfect case
    assert theirs[0] == pytest.approx(reference[0], abs=0.02)
    assert theirs[1] == pytest.approx(reference[1], abs=0.02)


def test_ultralytics_edge_cases():
    # Ultralytics' curve drops to precision 0 at recall 1 and is integrated with trapezoids:
    # perfect predictions score 0.995, not 1 (COCO gives 1).
    assert ultralytics_map(*CASES["perfect"], NAMES) == pytest.approx((0.995, 0.995), abs=1e-9)
    assert pycocotools_map(*CASES["perfect"]) == pytest.approx((1.0, 1.0))
    assert ultralytics_map(*CASES["empty predictions"], NAMES) == (0.0, 0.0)
    assert ultralytics_map([det([], [])], [EMPTY], NAMES) == (0.0, 0.0)


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
# Bad input
# --------------------------------------------------------------------------------------------


def _nan_box() -> sv.Detections:
    bad = det([[0, 0, 10, 10]], [0], [0.9])
    bad.xyxy[0, 2] = np.nan  # supervision refuses NaN at construction, not afterwards
    return bad


BAD = {
    "length mismatch": ([GT[0]], [], ValueError, "one sv.Detections per image"),
    "no confidence": ([GT[0]], [det([[0, 0, 1, 1]], [0])], ValueError, "confidence"),
    "class id out of range": (
        [det([[0, 0, 5, 5]], [3])],
        [EMPTY],
        ValueError,
        r"ground_truth\[0\] box 0 has class id 3, which is out of range 0..2",
    ),
    "predicted class out of range": (
        [det([[0, 0, 5, 5]], [0])],
        [det([[0, 0, 5, 5]], [7], [0.5])],
        ValueError,
        r"predictions\[0\] .* class id 7",
    ),
    "NaN box": ([GT[0]], [_nan_box()], ValueError, r"predictions\[0\] box 0 has a NaN"),
    "reversed box": (
        [det([[10, 0, 0, 10]], [0])],
        [EMPTY],
        ValueError,
        r"ground_truth\[0\] box 0 is reversed",
    ),
    "single Detections": (GT[0], [EMPTY], TypeError, "single sv.Detections"),
    "not Detections": ([[0, 0, 1, 1]], [EMPTY], TypeError, "expected sv.Detections"),
}


@pytest.mark.parametrize("name", BAD)
@pytest.mark.parametrize(
    "fn",
    [
        lambda g, p: evaluate_detections(g, p, NAMES),
        lambda g, p: ultralytics_map(g, p, NAMES),
        lambda g, p: confusion_matrix(g, p, NAMES),
        lambda g, p: evaluate_slices(g, p, NAMES, {}),
    ],
    ids=["evaluate", "ultralytics", "confusion", "slices"],
)
def test_bad_input(fn, name):
    gt, pred, error, message = BAD[name]
    with pytest.raises(error, match=message):
        fn(gt, pred)


@pytest.mark.parametrize("fn", [coco_map, pycocotools_map, error_cases])
def test_bad_input_without_class_names(fn):
    with pytest.raises(ValueError, match=r"one sv\.Detections per image"):
        fn([GT[0]], [])
    with pytest.raises(ValueError, match="must not be negative"):
        fn([det([[0, 0, 5, 5]], [-1])], [EMPTY])
    with pytest.raises(ValueError, match="NaN"):
        fn([GT[0]], [_nan_box()])


def test_other_bad_arguments():
    with pytest.raises(ValueError, match="no ground-truth box"):
        evaluate_detections([det([], [])], [EMPTY], NAMES)
    with pytest.raises(ValueError, match="2 image_ids for 3 images"):
        evaluate_detections(GT, [EMPTY] * 3, NAMES, image_ids=["a", "b"])
    with pytest.raises(ValueError, match="conf must be between 0 and 1"):
        evaluate_detections(GT, [EMPTY] * 3, NAMES, conf=1.5)
    with pytest.raises(ValueError, match="class_names"):
        evaluate_detections(GT, [EMPTY] * 3, [])
    with pytest.raises(ValueError, match="unknown area"):
        coco_map(GT, [EMPTY] * 3, area="tiny")


# --------------------------------------------------------------------------------------------
# Confusion matrix
# --------------------------------------------------------------------------------------------


def test_confusion_matrix_counts_with_background():
    gt = [det([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 60, 60]], [0, 0, 1])]
    pred = [
        det(
            [[0, 0, 10, 10], [50, 50, 70, 70], [41, 40, 60, 60], [80, 80, 90, 90]],
            [1, 0, 1, 2],
            [0.9, 0.8, 0.7, 0.1],
        )
    ]
    matrix, fig = confusion_matrix(gt, pred, NAMES, conf=0.25)
    expected = np.zeros((4, 4), dtype=int)
    expected[0, 1] = 1  # a car predicted as a truck
    expected[0, 3] = 1  # a car missed
    expected[1, 1] = 1  # a truck found
    expected[3, 0] = 1  # a car where there is nothing (the 0.1 bus is below conf)
    assert matrix.tolist() == expected.tolist()
    assert isinstance(fig, Figure)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == [*NAMES, "background"]
    matrix_all, _ = confusion_matrix(gt, pred, NAMES, conf=0.0)
    assert matrix_all[3, 2] == 1


def test_confusion_matrix_agrees_with_counts():
    gt, pred = synthetic(3, n_images=15)
    matrix, _ = confusion_matrix(gt, pred, NAMES, conf=0.25)
    table = evaluate_detections(gt, pred, NAMES, conf=0.25).to_pandas()
    assert matrix.sum(axis=1)[:-1].tolist() == table["gt"].tolist()


# --------------------------------------------------------------------------------------------
# Slices
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Error cases and gallery
# --------------------------------------------------------------------------------------------

ERR_GT = [
    det([[0, 0, 40, 40], [100, 0, 140, 40], [200, 0, 240, 40], [300, 0, 340, 40]], [0, 0, 1, 0]),
    det([], []),
]
ERR_PRED = [
    det(
        [
            [1, 0, 40, 40],  # correct car
            [100, 0, 140, 41],  # good box, wrong class (bus for a car)
            [210, 10, 260, 60],  # truck, poorly localised (IoU ~0.27)
            [400, 100, 440, 140],  # nothing there
            [2, 0, 41, 40],  # duplicate of the correct car
            [300, 0, 340, 40],  # would be correct but below the threshold
        ],
        [0, 2, 1, 0, 0, 0],
        [0.95, 0.9, 0.8, 0.7, 0.6, 0.2],
    ),
    det([[0, 0, 10, 10]], [1], [0.5]),
]


def test_error_cases_kinds():
    cases = error_cases(ERR_GT, ERR_PRED, conf=0.25)
    first = [c for c in cases if c.image == 0]
    assert [c.kind for c in first] == [
        "false_positive",
        "false_positive",
        "missed",
        "poor_localisation",
        "wrong_class",
    ]
    fps = [c for c in first if c.kind == "false_positive"]
    assert [c.confidence for c in fps] == [0.7, 0.6]
    assert fps[0].iou == 0.0 and fps[1].iou > 0.9  # the duplicate overlaps its car
    missed = next(c for c in first if c.kind == "missed")
    assert missed.gt_box == (300.0, 0.0, 340.0, 40.0) and missed.pred_box is None
    poor = next(c for c in first if c.kind == "poor_localisation")
    assert poor.iou == pytest.approx(iou([200, 0, 240, 40], [210, 10, 260, 60]))
    assert 0.1 < poor.iou < 0.5 and (poor.gt_class, poor.pred_class) == (1, 1)
    wrong = next(c for c in first if c.kind == "wrong_class")
    assert (wrong.gt_class, wrong.pred_class, wrong.confidence) == (0, 2, 0.9)
    second = [c for c in cases if c.image == 1]
    assert [c.kind for c in second] == ["false_positive"] and second[0].gt_box is None
    assert {c.kind for c in cases} <= set(ERROR_KINDS)
    # With a lower threshold the fourth car is found: no longer missed.
    assert "missed" not in {c.kind for c in error_cases(ERR_GT, ERR_PRED, conf=0.1)}
    table = error_table(cases, NAMES)
    assert len(table) == len(cases) and table.loc[4, "pred_class"] == "bus"


def test_error_cases_bad_thresholds():
    with pytest.raises(ValueError, match="min_iou"):
        error_cases(ERR_GT, ERR_PRED, iou=0.3, min_iou=0.4)


def test_error_gallery(tmp_path):
    cases = error_cases(ERR_GT, ERR_PRED)
    picture = np.full((120, 480, 3), 90, dtype=np.uint8)
    path = tmp_path / "frame.png"
    Image.fromarray(picture).save(path)
    fig = plot_error_gallery([path, picture], cases, NAMES, max_cases=4)
    assert isinstance(fig, Figure)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 4
    for kind in ERROR_KINDS:  # kinds taken in turn: every kind shows
        assert any(kind.replace("_", " ") in title for title in titles), kind
    none = plot_error_gallery([picture], [], NAMES)
    assert "No errors" in none.axes[0].texts[0].get_text()
    with pytest.raises(ValueError, match="out of range"):
        plot_error_gallery([picture], cases, NAMES)


# --------------------------------------------------------------------------------------------
# IoU explainer
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
        ([0, 0, 10, 10], [5, 0, 15, 10], 1 / 3),
        ([0, 0, 10, 10], [10, 0, 20, 10], 0.0),
        ([0, 0, 10, 10], [2, 2, 8, 8], 0.36),
        ([0, 0, 0, 0], [0, 0, 0, 0], 0.0),
    ],
)
def test_iou(a, b, expected):
    assert iou(a, b) == pytest.approx(expected)
    assert iou(b, a) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("box", "message"),
    [([0, 0, 1], "4 numbers"), ([0, 0, math.nan, 1], "NaN"), ([5, 0, 1, 1], "reversed")],
)
def test_iou_bad_boxes(box, message):
    with pytest.raises(ValueError, match=message):
        iou(box, [0, 0, 1, 1])
    with pytest.raises(ValueError, match=message):
        plot_iou([0, 0, 1, 1], box)


def test_plot_iou():
    fig = plot_iou([10, 10, 60, 50], [30, 20, 90, 70])
    assert isinstance(fig, Figure)
    assert f"IoU = {iou([10, 10, 60, 50], [30, 20, 90, 70]):.3f}" in fig.axes[0].get_title()
    assert len(fig.axes[0].patches) == 3  # two boxes and the shaded intersection
    assert len(plot_iou([0, 0, 1, 1], [5, 5, 6, 6]).axes[0].patches) == 2


# --------------------------------------------------------------------------------------------
# Report and model card
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def evaluated():
    gt, pred = synthetic(5, n_images=20)
    cameras = [f"cam-{i % 2}" for i in range(20)]
    conditions = ["night" if i % 4 == 0 else "day" for i in range(20)]
    result = evaluate_detections(gt, pred, NAMES)
    table = evaluate_slices(gt, pred, NAMES, {"camera": cameras, "condition": conditions})
    return result, table


@pytest.mark.parametrize(
    ("criteria", "verdict"),
    [
        (SuccessCriteria(min_map50=0.5, min_recall=0.5), "PASS"),
        (SuccessCriteria(min_map50=0.99, min_recall=0.5), "FAIL"),
        (ProjectDefinition(criteria=SuccessCriteria(min_map50=0.2, min_recall=0.99)), "FAIL"),
        ({"min_map50": 0.1, "min_recall": 0.1}, "PASS"),
    ],
)
def test_write_report(evaluated, tmp_path, criteria, verdict):
    result, table = evaluated
    out = tmp_path / "eval"
    numbers = write_report(
        result, out, slices_table=table, criteria=criteria, model_name="yolo11n", data_name="val"
    )
    assert sorted(p.name for p in out.iterdir()) == ["evaluation.json", "evaluation.md"]
    assert numbers == clean_metrics(**numbers)
    assert all(isinstance(v, float) for v in numbers.values())
    assert numbers["map50"] == result.map50 and numbers["recall"] == result.recall
    document = json.loads((out / "evaluation.json").read_text(encoding="utf-8"))
    assert document["metrics"] == numbers
    assert document["criteria"]["passed"] is (verdict == "PASS")
    assert len(document["slices"]) == len(table)
    assert len(document["result"]["per_class"]) == len(NAMES)
    text = (out / "evaluation.md").read_text(encoding="utf-8")
    assert f"**Overall: {verdict}**" in text
    assert f"- **mAP50:** {result.map50:.3f}" in text
    assert "## Per slice" in text and "| camera | cam-0 |" in text
    assert "| car |" in text


def test_write_report_with_project_yaml_and_without_criteria(evaluated, tmp_path):
    result, _ = evaluated
    write_project(tmp_path / "project.yaml", ProjectDefinition())
    project = read_project(tmp_path / "project.yaml")
    write_report(result, tmp_path / "a", criteria=project.criteria, model_name="m", data_name="d")
    document = json.loads((tmp_path / "a" / "evaluation.json").read_text(encoding="utf-8"))
    assert document["criteria"]["limits"] == {"min_map50": 0.5, "min_recall": 0.7}
    write_report(result, tmp_path / "b", model_name="m", data_name="d")
    assert "No criteria given." in (tmp_path / "b" / "evaluation.md").read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="min_recall"):
        write_report(
            result, tmp_path / "c", criteria={"min_map50": 0.5}, model_name="m", data_name="d"
        )
    # Rewriting replaces the files whole.
    write_report(result, tmp_path / "b", model_name="other", data_name="d")
    assert "other" in (tmp_path / "b" / "evaluation.md").read_text(encoding="utf-8").splitlines()[0]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "evaluation.json",
        "evaluation.md",
    ]


def test_model_card(evaluated):
    result, table = evaluated
    card = model_card(
        result,
        model_name="yolo11n",
        data_name="synthetic val",
        slices_table=table,
        criteria=SuccessCriteria(min_map50=0.99, min_recall=0.1),
        limitations=["Only synthetic frames."],
    )
    for heading in (
        "# Model card: yolo11n",
        "## Intended use",
        "## Data",
        "## Metrics by slice",
        "## Limitations",
        "## Privacy and bias",
    ):
        assert heading in card, heading
    assert "- Only synthetic frames." in card
    assert "does NOT meet" in card and "synthetic val" in card
    cams = table[table["slice"] == "camera"].set_index("value")["map50"]
    worst = cams.idxmin()
    assert f"Across cameras: mAP50 is lowest for **{worst}**" in card
    assert f"{cams.max() - cams.min():.3f}" in card
    assert "conditions (day/night)" in card
    assert "blur people and plates" in card
    bare = model_card(result, model_name="m", data_name="d", slices_table=None, criteria=None)
    assert "not compared across cameras" in bare and "No slices were evaluated." in bare


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
