"""Metrics: our COCO mAP reproduces pycocotools to 1e-6, Ultralytics agrees within 0.02,
every evaluation function rejects bad input alike, and the confusion matrix and IoU
explainer count what they should."""

from __future__ import annotations

import math

import numpy as np
import pytest
import supervision as sv
from matplotlib.figure import Figure

from tcv_helpers.model.errors import error_cases
from tcv_helpers.model.evaluate import evaluate_detections
from tcv_helpers.model.metrics import (
    AREA_RANGES,
    box_iou,
    coco_map,
    confusion_matrix,
    iou,
    plot_iou,
    pycocotools_map,
    ultralytics_map,
)
from tcv_helpers.model.slices import evaluate_slices
from tests.eval_cases import EMPTY, GT, NAMES, det, synthetic


def shifted(dx: float) -> list[sv.Detections]:
    return [
        det([[10 + dx, 10, 50 + dx, 50], [60, 60, 120, 100]], [0, 1], [0.9, 0.8]),
        det([[5 + dx, 5, 40 + dx, 30]], [0], [0.7]),
        EMPTY,
    ]


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
