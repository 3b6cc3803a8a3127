"""The course's own COCO mAP reproduces pycocotools to 1e-6 on hand-built and random cases."""

import numpy as np
import pytest
import supervision as sv

from tcv_helpers.evaluate import box_iou, coco_map, pycocotools_map


def det(boxes, classes, scores=None):
    boxes = np.array(boxes, dtype=float).reshape(-1, 4)
    return sv.Detections(
        xyxy=boxes,
        class_id=np.array(classes, dtype=int),
        confidence=None if scores is None else np.array(scores, dtype=float),
    )


GT = [det([[10, 10, 50, 50], [60, 60, 120, 100]], [0, 1]), det([[5, 5, 40, 30]], [0]), det([], [])]
EMPTY = det([], [], [])


def shifted(dx):
    return [
        det([[10 + dx, 10, 50 + dx, 50], [60, 60, 120, 100]], [0, 1], [0.9, 0.8]),
        det([[5 + dx, 5, 40 + dx, 30]], [0], [0.7]),
        EMPTY,
    ]


CASES = {
    "perfect": (GT, [det(g.xyxy, g.class_id, np.linspace(0.9, 0.5, len(g))) for g in GT]),
    "empty predictions": (GT, [EMPTY, EMPTY, EMPTY]),
    "slightly shifted": (GT, shifted(4)),
    "shifted past 0.5": (GT, shifted(14)),
    "wrong class": (
        GT,
        [det([[10, 10, 50, 50]], [1], [0.9]), det([[5, 5, 40, 30]], [0], [0.8]), EMPTY],
    ),
    "duplicates": (
        GT,
        [det([[10, 10, 50, 50], [11, 10, 51, 50]], [0, 0], [0.9, 0.95]), EMPTY, EMPTY],
    ),
    "false positive on empty image": (
        GT,
        [det(GT[0].xyxy, GT[0].class_id, [0.6, 0.7]), EMPTY, det([[0, 0, 20, 20]], [0], [0.99])],
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_reproduces_pycocotools(name):
    gt, pred = CASES[name]
    ours = coco_map(gt, pred)
    reference = pycocotools_map(gt, pred)
    assert ours == pytest.approx(reference, abs=1e-6), (name, ours, reference)


def test_known_values():
    assert coco_map(*CASES["perfect"]) == pytest.approx((1.0, 1.0))
    assert coco_map(*CASES["empty predictions"]) == (0.0, 0.0)
    map50, map_all = coco_map(*CASES["slightly shifted"])
    assert map50 == pytest.approx(1.0) and map_all < 1.0
    assert coco_map(*CASES["shifted past 0.5"])[0] < 1.0


@pytest.mark.parametrize("seed", range(12))
def test_random_cases(seed):
    rng = np.random.default_rng(seed)
    gt, pred = [], []
    for _ in range(int(rng.integers(1, 6))):
        n = int(rng.integers(0, 8))
        xy = rng.uniform(0, 300, (n, 2))
        wh = rng.uniform(8, 80, (n, 2))
        boxes = np.hstack([xy, xy + wh])
        classes = rng.integers(0, 3, n)
        gt.append(det(boxes, classes))
        keep = rng.random(n) < 0.8
        jitter = rng.normal(0, 6, (int(keep.sum()), 4))
        noise_n = int(rng.integers(0, 4))
        noise_xy = rng.uniform(0, 300, (noise_n, 2))
        fp = np.hstack([noise_xy, noise_xy + rng.uniform(8, 60, (noise_n, 2))])
        p_boxes = np.vstack([boxes[keep] + jitter, fp]) if n or noise_n else np.zeros((0, 4))
        p_boxes[:, 2:] = np.maximum(p_boxes[:, 2:], p_boxes[:, :2] + 1)
        p_cls = np.concatenate(
            [
                np.where(
                    rng.random(int(keep.sum())) < 0.9,
                    classes[keep],
                    rng.integers(0, 3, int(keep.sum())),
                ),
                rng.integers(0, 3, noise_n),
            ]
        )
        pred.append(det(p_boxes, p_cls.astype(int), rng.uniform(0.05, 1, len(p_boxes))))
    assert coco_map(gt, pred) == pytest.approx(pycocotools_map(gt, pred), abs=1e-6)


def test_iou():
    assert box_iou([[0, 0, 10, 10]], [[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])[
        0
    ] == pytest.approx([1, 1 / 3, 0])


@pytest.mark.parametrize(
    ("gt", "pred", "message"),
    [
        ([GT[0]], [], "one sv.Detections per image"),
        ([GT[0]], [det([[0, 0, 1, 1]], [0])], "confidence"),
    ],
)
def test_bad_input(gt, pred, message):
    for fn in (coco_map, pycocotools_map):
        with pytest.raises(ValueError, match=message):
            fn(gt, pred)
