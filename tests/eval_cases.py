"""Detections shared by the evaluation tests: a small hand-made set and a synthetic one."""

from __future__ import annotations

import numpy as np
import supervision as sv

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
