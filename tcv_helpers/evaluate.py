"""Evaluation: COCO-style mAP, computed by pycocotools and, independently, by this module.

:func:`pycocotools_map` is the reference the field uses. :func:`coco_map` implements the same
metric in a few lines of numpy — 101-point interpolated precision over IoU thresholds 0.50:0.95,
greedy matching by score, at most 100 detections per image — so that the course can show what
the number means, and the tests can check that the two agree to 1e-6.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np
import supervision as sv

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
MAX_DETECTIONS = 100


def _check(ground_truth: Sequence[sv.Detections], predictions: Sequence[sv.Detections]) -> None:
    if len(ground_truth) != len(predictions):
        raise ValueError(
            f"{len(ground_truth)} ground-truth images but {len(predictions)} prediction lists: "
            "give one sv.Detections per image to both."
        )
    for i, det in enumerate(predictions):
        if len(det) and det.confidence is None:
            raise ValueError(f"predictions[{i}] has no confidence scores: mAP ranks by confidence.")


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4), ``x1, y1, x2, y2``."""
    a, b = (
        np.asarray(a, dtype=np.float64).reshape(-1, 4),
        np.asarray(b, dtype=np.float64).reshape(-1, 4),
    )
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _class_ap(gts: list[np.ndarray], dets: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Interpolated precision (T, R) of one class, as COCOeval accumulates it; -1 without GT."""
    n_gt = sum(len(g) for g in gts)
    if n_gt == 0:
        return -np.ones((len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS)))
    scores, matched = [], []
    for gt, (boxes, conf) in zip(gts, dets, strict=True):
        order = np.argsort(-conf, kind="mergesort")[:MAX_DETECTIONS]
        boxes, conf = boxes[order], conf[order]
        ious = box_iou(boxes, gt)
        hits = np.zeros((len(IOU_THRESHOLDS), len(boxes)), dtype=bool)
        for t, threshold in enumerate(IOU_THRESHOLDS):
            taken = np.zeros(len(gt), dtype=bool)
            for d in range(len(boxes)):
                best, best_iou = -1, min(threshold, 1 - 1e-10)
                for g in range(len(gt)):
                    if taken[g] or ious[d, g] < best_iou:
                        continue
                    best, best_iou = g, ious[d, g]
                if best >= 0:
                    taken[best] = hits[t, d] = True
        scores.append(conf)
        matched.append(hits)
    all_scores = np.concatenate(scores) if scores else np.zeros(0)
    order = np.argsort(-all_scores, kind="mergesort")
    tp = (
        np.concatenate(matched, axis=1)[:, order]
        if matched
        else np.zeros((len(IOU_THRESHOLDS), 0), bool)
    )
    precision = np.zeros((len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS)))
    for t in range(len(IOU_THRESHOLDS)):
        tps = np.cumsum(tp[t]).astype(float)
        fps = np.cumsum(~tp[t]).astype(float)
        recall = tps / n_gt
        prec = tps / (tps + fps + np.spacing(1))
        prec = np.maximum.accumulate(prec[::-1])[::-1] if len(prec) else prec  # precision envelope
        idx = np.searchsorted(recall, RECALL_THRESHOLDS, side="left")
        valid = idx < len(prec)
        precision[t, valid] = prec[idx[valid]]
    return precision


def coco_map(
    ground_truth: Sequence[sv.Detections], predictions: Sequence[sv.Detections]
) -> tuple[float, float]:
    """COCO box mAP50 and mAP50-95, implemented here in numpy (the metric, made readable).

    Args:
        ground_truth: One ``sv.Detections`` per image (xyxy pixels, class_id).
        predictions: One ``sv.Detections`` per image, with ``confidence``.

    Returns:
        ``(map50, map50_95)``; -1 for both when there is no ground truth at all (as COCO).

    Raises:
        ValueError: On a length mismatch or predictions without confidence (supervision itself
            refuses NaN boxes).
    """
    _check(ground_truth, predictions)
    classes = sorted(
        {int(c) for g in ground_truth for c in g.class_id}
        | {int(c) for p in predictions for c in p.class_id}
    )
    per_class = []
    for cls in classes:
        gts = [g.xyxy[g.class_id == cls] for g in ground_truth]
        dets = [
            (p.xyxy[p.class_id == cls], p.confidence[p.class_id == cls])
            if len(p)
            else (np.zeros((0, 4)), np.zeros(0))
            for p in predictions
        ]
        per_class.append(_class_ap(gts, dets))
    if not per_class:
        return -1.0, -1.0
    stacked = np.stack(per_class)  # (K, T, R)
    at50 = stacked[:, 0, :]
    map50 = float(at50[at50 > -1].mean()) if (at50 > -1).any() else -1.0
    map_all = float(stacked[stacked > -1].mean()) if (stacked > -1).any() else -1.0
    return map50, map_all


def pycocotools_map(
    ground_truth: Sequence[sv.Detections], predictions: Sequence[sv.Detections]
) -> tuple[float, float]:
    """COCO box mAP50 and mAP50-95 from pycocotools' own COCOeval (the reference).

    Raises:
        ValueError: On a length mismatch or predictions without confidence (supervision itself
            refuses NaN boxes).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    _check(ground_truth, predictions)
    classes = sorted(
        {int(c) for g in ground_truth for c in g.class_id}
        | {int(c) for p in predictions for c in p.class_id}
    )
    images, annotations, results = [], [], []
    for image_id, (gt, pred) in enumerate(zip(ground_truth, predictions, strict=True), start=1):
        images.append({"id": image_id, "width": 10_000, "height": 10_000})
        for box, cls in zip(gt.xyxy, gt.class_id, strict=True):
            x1, y1, x2, y2 = (float(v) for v in box)
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": int(cls) + 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0,
            })  # fmt: skip
        for box, cls, score in zip(
            pred.xyxy, pred.class_id, pred.confidence if len(pred) else [], strict=True
        ):
            x1, y1, x2, y2 = (float(v) for v in box)
            results.append(
                {
                    "image_id": image_id,
                    "category_id": int(cls) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": float(score),
                }
            )
    if not annotations:
        return -1.0, -1.0
    if not results:
        return 0.0, 0.0
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        truth = COCO()
        truth.dataset = {"images": images, "annotations": annotations,
                         "categories": [{"id": c + 1, "name": str(c)} for c in classes]}  # fmt: skip
        truth.createIndex()
        detected = truth.loadRes(results)
        evaluator = COCOeval(truth, detected, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return float(evaluator.stats[1]), float(evaluator.stats[0])
