"""Detection metrics (notebook 06): IoU, COCO mAP three ways, counts and the confusion matrix.

Every function takes one ``sv.Detections`` per image for the ground truth (``xyxy`` float pixels
and ``class_id``) and one per image for the predictions (with ``confidence``), in the same order.

* :func:`coco_map` implements the COCO metric in numpy, readable: greedy matching by score over
  IoU thresholds 0.50:0.05:0.95, at most 100 detections per image and class, 101-point
  interpolated precision. The tests check that it reproduces pycocotools to 1e-6.
* :func:`pycocotools_map` asks pycocotools' own ``COCOeval`` (the reference the field uses);
  :func:`cocoeval_precision` gives its whole precision array, which
  :func:`tcv_helpers.model.evaluate.evaluate_detections` reads AP per class and the
  precision-recall curves from.
* :func:`ultralytics_map` computes mAP with Ultralytics' own matching and ``ap_per_class``: it
  interpolates the precision-recall curve differently (trapezoids over 101 points instead of
  COCO's steps), so it agrees with COCO to about 0.01, not exactly.
* :func:`counts_at` counts true and false positives and misses at a confidence threshold, the
  ground of precision, recall and F1 (:func:`precision_recall_f1`).
* :func:`iou` with :func:`plot_iou` shows what an IoU is; :func:`confusion_matrix` shows which
  classes are taken for which.
* :func:`check_inputs` and :func:`check_threshold` are the input checks every evaluation
  function shares; their errors name the image and box.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import supervision as sv
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

#: COCO's IoU thresholds, 0.50:0.05:0.95.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
#: COCO's recall points at which precision is sampled, 0:0.01:1.
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
#: COCO's limit of detections per image (and class) for mAP.
MAX_DETECTIONS = 100
#: COCO's box-area ranges in square pixels (``COCOeval.params.areaRng``), bounds inclusive.
AREA_RANGES: dict[str, tuple[float, float]] = {
    "all": (0.0, 1e5**2),
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e5**2),
}

_AREA_INDEX = {name: index for index, name in enumerate(AREA_RANGES)}


# --------------------------------------------------------------------------------------------
# Input checks and IoU
# --------------------------------------------------------------------------------------------


def _check_detections(
    items: Sequence[sv.Detections], what: str, n_classes: int | None, *, scores: bool
) -> None:
    if isinstance(items, sv.Detections):
        raise TypeError(
            f"{what} is a single sv.Detections; give a list with one sv.Detections per image."
        )
    for index, det in enumerate(items):
        where = f"{what}[{index}]"
        if not isinstance(det, sv.Detections):
            raise TypeError(f"{where} is a {type(det).__name__}, expected sv.Detections.")
        if not len(det):
            continue
        if det.class_id is None:
            raise ValueError(f"{where} has no class_id.")
        boxes = np.asarray(det.xyxy, dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(boxes).all(axis=1))
        if len(bad):
            raise ValueError(
                f"{where} box {bad[0]} has a NaN or infinite coordinate: {boxes[bad[0]].tolist()}."
            )
        reversed_ = np.flatnonzero((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
        if len(reversed_):
            raise ValueError(
                f"{where} box {reversed_[0]} is reversed (x2 < x1 or y2 < y1): "
                f"{boxes[reversed_[0]].tolist()}; boxes are x1, y1, x2, y2."
            )
        ids = np.asarray(det.class_id).reshape(-1)
        bad_ids = ids < 0 if n_classes is None else (ids < 0) | (ids >= n_classes)
        out = np.flatnonzero(bad_ids)
        if len(out):
            allowed = (
                "must not be negative"
                if n_classes is None
                else (f"is out of range 0..{n_classes - 1} (class ids index class_names)")
            )
            raise ValueError(
                f"{where} box {out[0]} has class id {int(ids[out[0]])}, which {allowed}."
            )
        if scores:
            if det.confidence is None:
                raise ValueError(
                    f"{where} has no confidence scores: mAP ranks predictions by confidence."
                )
            conf = np.asarray(det.confidence, dtype=np.float64)
            if not np.isfinite(conf).all():
                raise ValueError(f"{where} has a NaN or infinite confidence.")


def check_inputs(
    ground_truth: Sequence[sv.Detections],
    predictions: Sequence[sv.Detections],
    class_names: Sequence[str] | None,
) -> int | None:
    """Checks the inputs every evaluation function shares; errors name the image and box.

    Args:
        ground_truth: One ``sv.Detections`` per image (xyxy pixels, class_id).
        predictions: One ``sv.Detections`` per image, with ``confidence``.
        class_names: Class names by id, or None when class ids need not be bounded.

    Returns:
        The number of classes, or None when no names are given.

    Raises:
        ValueError: On a length mismatch, empty or string ``class_names``, class ids out of
            range (or negative), NaN or reversed boxes, or predictions without (finite)
            confidences.
        TypeError: If a list is a single ``sv.Detections`` or an item is not one.
    """
    if class_names is not None:
        if isinstance(class_names, str) or not len(class_names):
            raise ValueError("class_names must be a non-empty list of names, indexed by class id.")
        n_classes: int | None = len(class_names)
    else:
        n_classes = None
    for items, what in ((ground_truth, "ground_truth"), (predictions, "predictions")):
        if isinstance(items, sv.Detections):
            raise TypeError(
                f"{what} is a single sv.Detections; give a list with one sv.Detections per image."
            )
    if len(ground_truth) != len(predictions):
        raise ValueError(
            f"{len(ground_truth)} ground-truth images but {len(predictions)} prediction lists: "
            "give one sv.Detections per image to both, in the same order."
        )
    _check_detections(ground_truth, "ground_truth", n_classes, scores=False)
    _check_detections(predictions, "predictions", n_classes, scores=True)
    return n_classes


def _check_box(box: Sequence[float], name: str) -> np.ndarray:
    values = np.asarray(box, dtype=np.float64).reshape(-1)
    if values.shape != (4,):
        raise ValueError(f"{name} must be 4 numbers x1, y1, x2, y2, got {list(values)}.")
    if not np.isfinite(values).all():
        raise ValueError(f"{name} has a NaN or infinite coordinate: {values.tolist()}.")
    if values[2] < values[0] or values[3] < values[1]:
        raise ValueError(f"{name} is reversed (x2 < x1 or y2 < y1): {values.tolist()}.")
    return values


def box_iou(a: np.ndarray | Sequence, b: np.ndarray | Sequence) -> np.ndarray:
    """IoU of every box in ``a`` with every box in ``b``, computed as pycocotools computes it.

    The boxes go through COCO's ``x, y, w, h`` form (``x2 = x + w``), so that the values are
    bit-identical to pycocotools' and a box whose IoU is exactly on a threshold is matched the
    same way by both implementations.

    Args:
        a: ``(N, 4)`` boxes ``x1, y1, x2, y2``.
        b: ``(M, 4)`` boxes ``x1, y1, x2, y2``.

    Returns:
        ``(N, M)`` IoU values in ``[0, 1]``.

    Example:
        >>> box_iou([[0, 0, 10, 10]], [[5, 0, 15, 10]]).round(4).tolist()
        [[0.3333]]
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    wa, ha = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    wb, hb = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    w = np.minimum((wa + a[:, 0])[:, None], (wb + b[:, 0])[None, :]) - np.maximum(
        a[:, 0][:, None], b[:, 0][None, :]
    )
    h = np.minimum((ha + a[:, 1])[:, None], (hb + b[:, 1])[None, :]) - np.maximum(
        a[:, 1][:, None], b[:, 1][None, :]
    )
    overlap = (w > 0) & (h > 0)
    inter = np.where(overlap, w * h, 0.0)
    union = (wa * ha)[:, None] + (wb * hb)[None, :] - inter
    return np.where(overlap, inter / np.where(overlap, union, 1.0), 0.0)


def iou(box_a: Sequence[float], box_b: Sequence[float]) -> float:
    """Intersection over union of two boxes.

    Args:
        box_a: ``x1, y1, x2, y2`` in pixels.
        box_b: ``x1, y1, x2, y2`` in pixels.

    Returns:
        Area of the intersection divided by the area of the union, between 0 and 1.

    Raises:
        ValueError: If a box is not 4 finite numbers or is reversed.

    Example:
        >>> iou([0, 0, 10, 10], [5, 0, 15, 10])
        0.3333333333333333
    """
    a, b = _check_box(box_a, "box_a"), _check_box(box_b, "box_b")
    return float(box_iou(a, b)[0, 0])


def plot_iou(box_a: Sequence[float], box_b: Sequence[float]) -> Figure:
    """Two boxes with their intersection shaded and the IoU in the title (notebook 06's widget).

    Args:
        box_a: ``x1, y1, x2, y2`` (drawn blue, as the ground truth).
        box_b: ``x1, y1, x2, y2`` (drawn orange, as the prediction).

    Returns:
        The figure; the y axis points down, as in images.

    Raises:
        ValueError: If a box is not 4 finite numbers or is reversed.

    Example:
        >>> fig = plot_iou([10, 10, 60, 50], [30, 20, 90, 70])  # doctest: +SKIP
    """
    a, b = _check_box(box_a, "box_a"), _check_box(box_b, "box_b")
    value = float(box_iou(a, b)[0, 0])
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    ix1, iy1 = max(a[0], b[0]), max(a[1], b[1])
    ix2, iy2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(ix2 - ix1, 0.0) * max(iy2 - iy1, 0.0)
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.subplots()
    ax.add_patch(Rectangle((a[0], a[1]), a[2] - a[0], a[3] - a[1], fill=False, ec="#4363d8", lw=2))
    ax.add_patch(Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False, ec="#f58231", lw=2))
    if inter > 0:
        ax.add_patch(Rectangle((ix1, iy1), ix2 - ix1, iy2 - iy1, fc="#911eb4", alpha=0.35, lw=0))
    lo = np.minimum(a[:2], b[:2])
    hi = np.maximum(a[2:], b[2:])
    margin = max(float((hi - lo).max()) * 0.1, 1.0)
    ax.set_xlim(lo[0] - margin, hi[0] + margin)
    ax.set_ylim(hi[1] + margin, lo[1] - margin)
    ax.set_aspect("equal")
    ax.plot([], [], color="#4363d8", label="box A (ground truth)")
    ax.plot([], [], color="#f58231", label="box B (prediction)")
    ax.legend(loc="upper right", fontsize=8)
    union = area_a + area_b - inter
    ax.set_title(f"IoU = {value:.3f}  (intersection {inter:,.0f} / union {union:,.0f} px²)")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Matching: COCOeval's greedy loop, shared by the numpy mAP and the counts at a threshold
# --------------------------------------------------------------------------------------------


def _greedy_match(ious: np.ndarray, gt_ignore: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """The ground truth each detection matches, per IoU threshold, as ``COCOeval.evaluateImg``.

    Detections (rows of ``ious``) must be sorted by descending score. Each detection takes the
    free ground-truth box with the highest IoU at or above the threshold (ties: the later box);
    boxes to ignore are taken only when no regular box qualifies.

    Returns:
        ``(T, D)`` ground-truth indexes, -1 for no match.
    """
    n_det, n_gt = ious.shape
    matches = np.full((len(thresholds), n_det), -1, dtype=np.int64)
    if n_det == 0 or n_gt == 0:
        return matches
    groups = [np.flatnonzero(~gt_ignore), np.flatnonzero(gt_ignore)]
    for t, threshold in enumerate(thresholds):
        limit = min(float(threshold), 1 - 1e-10)
        free = np.ones(n_gt, dtype=bool)
        for d in range(n_det):
            for group in groups:
                candidates = group[free[group] & (ious[d, group] >= limit)]
                if len(candidates):
                    values = ious[d, candidates]
                    best = candidates[len(values) - 1 - int(np.argmax(values[::-1]))]
                    matches[t, d] = best
                    free[best] = False
                    break
    return matches


@dataclass
class _ClassImage:
    """One image's boxes of one class: detections sorted by score and truncated."""

    gt: np.ndarray
    dt: np.ndarray
    scores: np.ndarray


def _split_by_class(
    ground_truth: Sequence[sv.Detections],
    predictions: Sequence[sv.Detections],
    cls: int,
    max_dets: int | None,
) -> list[_ClassImage]:
    out = []
    for gt, pred in zip(ground_truth, predictions, strict=True):
        g = np.asarray(gt.xyxy, dtype=np.float64).reshape(-1, 4)
        g = g[np.asarray(gt.class_id).reshape(-1) == cls] if len(gt) else g[:0]
        if len(pred):
            keep = np.asarray(pred.class_id).reshape(-1) == cls
            boxes = np.asarray(pred.xyxy, dtype=np.float64)[keep]
            scores = np.asarray(pred.confidence, dtype=np.float64)[keep]
            order = np.argsort(-scores, kind="mergesort")[:max_dets]
            boxes, scores = boxes[order], scores[order]
        else:
            boxes, scores = np.zeros((0, 4)), np.zeros(0)
        out.append(_ClassImage(g, boxes, scores))
    return out


def _areas(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _class_precision(images: list[_ClassImage], area: tuple[float, float]) -> np.ndarray:
    """COCO's interpolated precision (T, R) of one class in one area range; -1 without GT."""
    lo, hi = area
    n_thr = len(IOU_THRESHOLDS)
    n_gt, matched, ignored, scores = 0, [], [], []
    for image in images:
        gt_area = _areas(image.gt)
        gt_ignore = (gt_area < lo) | (gt_area > hi)
        n_gt += int((~gt_ignore).sum())
        hits = _greedy_match(box_iou(image.dt, image.gt), gt_ignore, IOU_THRESHOLDS)
        dt_ignore = np.zeros(hits.shape, dtype=bool)
        dt_ignore[hits >= 0] = gt_ignore[hits[hits >= 0]]
        dt_area = _areas(image.dt)
        dt_ignore |= (hits < 0) & ((dt_area < lo) | (dt_area > hi))[None, :]
        matched.append(hits >= 0)
        ignored.append(dt_ignore)
        scores.append(image.scores)
    if n_gt == 0:
        return -np.ones((n_thr, len(RECALL_THRESHOLDS)))
    order = np.argsort(-np.concatenate(scores), kind="mergesort")
    hit = np.concatenate(matched, axis=1)[:, order]
    skip = np.concatenate(ignored, axis=1)[:, order]
    tps = np.cumsum(hit & ~skip, axis=1).astype(np.float64)
    fps = np.cumsum(~hit & ~skip, axis=1).astype(np.float64)
    precision = np.zeros((n_thr, len(RECALL_THRESHOLDS)))
    for t in range(n_thr):
        recall = tps[t] / n_gt
        prec = tps[t] / (fps[t] + tps[t] + np.spacing(1))
        if not len(prec):
            continue
        prec = np.maximum.accumulate(prec[::-1])[::-1]  # the precision envelope
        index = np.searchsorted(recall, RECALL_THRESHOLDS, side="left")
        valid = index < len(prec)
        precision[t, valid] = prec[index[valid]]
    return precision


def _check_area(area: str) -> None:
    if area not in AREA_RANGES:
        raise ValueError(f"unknown area {area!r}; known: {', '.join(AREA_RANGES)}.")


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else -1.0


def coco_map(
    ground_truth: Sequence[sv.Detections],
    predictions: Sequence[sv.Detections],
    *,
    area: str = "all",
) -> tuple[float, float]:
    """COCO box mAP50 and mAP50-95, implemented here in numpy (the metric, made readable).

    For each class and image, detections are sorted by score (stable) and cut at 100; each takes
    the free ground-truth box of its class with the highest IoU at or above the threshold. Over
    all images the detections are ranked by score, precision and recall accumulate, precision is
    made non-increasing (its envelope) and sampled at 101 recall points; AP is the mean of those
    samples, mAP the mean over classes that have ground truth (and over the 10 IoU thresholds for
    mAP50-95). Classes without ground truth are left out, as in COCO.

    Args:
        ground_truth: One ``sv.Detections`` per image (xyxy pixels, class_id).
        predictions: One ``sv.Detections`` per image, with ``confidence``.
        area: A key of :data:`AREA_RANGES`: ``all``, or ``small``, ``medium``, ``large`` for
            COCO's APsmall etc. (ground truth of other sizes, and unmatched predictions of other
            sizes, are ignored).

    Returns:
        ``(map50, map50_95)``; ``(-1, -1)`` when there is no ground-truth box (of that size) at
        all, as COCO.

    Raises:
        ValueError: On a length mismatch, predictions without confidence, negative class ids,
            NaN or reversed boxes, or an unknown area.
        TypeError: If an item is not an ``sv.Detections``.

    Example:
        >>> gt = [sv.Detections(xyxy=np.array([[0.0, 0, 10, 10]]), class_id=np.array([0]))]
        >>> pred = [sv.Detections(xyxy=np.array([[1.0, 0, 10, 10]]), class_id=np.array([0]),
        ...                       confidence=np.array([0.9]))]
        >>> [round(v, 6) for v in coco_map(gt, pred)]  # IoU 0.9: matched at 9 of 10 thresholds
        [1.0, 0.9]
    """
    check_inputs(ground_truth, predictions, None)
    _check_area(area)
    classes = sorted(
        {int(c) for g in ground_truth if len(g) for c in g.class_id}
        | {int(c) for p in predictions if len(p) for c in p.class_id}
    )
    if not classes:
        return -1.0, -1.0
    stacked = np.stack(
        [
            _class_precision(
                _split_by_class(ground_truth, predictions, c, MAX_DETECTIONS), AREA_RANGES[area]
            )
            for c in classes
        ]
    )  # (K, T, R)
    return _mean_valid(stacked[:, 0, :]), _mean_valid(stacked)


# --------------------------------------------------------------------------------------------
# pycocotools
# --------------------------------------------------------------------------------------------


def _xywh(box: np.ndarray) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def cocoeval_precision(
    ground_truth: Sequence[sv.Detections], predictions: Sequence[sv.Detections], n_classes: int
) -> np.ndarray:
    """pycocotools' ``eval['precision']`` for class ids ``0..n_classes-1``, built in memory.

    Args:
        ground_truth: One ``sv.Detections`` per image (checked by :func:`check_inputs`).
        predictions: One ``sv.Detections`` per image, with ``confidence``.
        n_classes: Number of classes.

    Returns:
        The ``(T, R, K, A, M)`` array: IoU thresholds, recall points, classes, the area ranges
        of :data:`AREA_RANGES` and the detection limits 1, 10, 100; -1 where a class has no
        ground truth.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, results = [], [], []
    for image_id, (gt, pred) in enumerate(zip(ground_truth, predictions, strict=True), start=1):
        images.append({"id": image_id, "width": 1, "height": 1, "file_name": f"{image_id}.jpg"})
        if len(gt):
            for box, cls in zip(np.asarray(gt.xyxy, np.float64), gt.class_id, strict=True):
                bbox = _xywh(box)
                annotations.append(
                    {
                        "id": len(annotations) + 1,  # ids start at 1: COCOeval reads 0 as no match
                        "image_id": image_id,
                        "category_id": int(cls) + 1,
                        "bbox": bbox,
                        "area": bbox[2] * bbox[3],
                        "iscrowd": 0,
                    }
                )
        if len(pred):
            for box, cls, score in zip(
                np.asarray(pred.xyxy, np.float64), pred.class_id, pred.confidence, strict=True
            ):
                results.append(
                    {
                        "image_id": image_id,
                        "category_id": int(cls) + 1,
                        "bbox": _xywh(box),
                        "score": float(score),
                    }
                )
    if not results:  # loadRes fails on an empty list; COCOeval would give 0 where there is GT
        precision = np.zeros((len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), n_classes, 4, 3))
        for k in range(n_classes):
            areas = np.array([a["area"] for a in annotations if a["category_id"] == k + 1])
            for a, (lo, hi) in enumerate(AREA_RANGES.values()):
                if not ((areas >= lo) & (areas <= hi)).any():
                    precision[:, :, k, a, :] = -1
        return precision
    truth = COCO()
    truth.dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": str(k)} for k in range(n_classes)],
    }
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        truth.createIndex()
        detected = truth.loadRes(results)
        evaluator = COCOeval(truth, detected, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
    return np.asarray(evaluator.eval["precision"], dtype=np.float64)


def maps_from_precision(precision: np.ndarray, area: str = "all") -> tuple[float, float]:
    """mAP50 and mAP50-95 from COCOeval's precision array, as ``COCOeval.summarize``.

    Args:
        precision: From :func:`cocoeval_precision`.
        area: A key of :data:`AREA_RANGES`.

    Returns:
        ``(map50, map50_95)`` over classes with ground truth (at 100 detections); ``-1`` where
        no class has any.
    """
    chosen = precision[:, :, :, _AREA_INDEX[area], -1]
    return _mean_valid(chosen[0]), _mean_valid(chosen)


def pycocotools_map(
    ground_truth: Sequence[sv.Detections],
    predictions: Sequence[sv.Detections],
    *,
    area: str = "all",
) -> tuple[float, float]:
    """COCO box mAP50 and mAP50-95 from pycocotools' own ``COCOeval`` (the reference).

    Args:
        ground_truth: One ``sv.Detections`` per image.
        predictions: One ``sv.Detections`` per image, with ``confidence``.
        area: A key of :data:`AREA_RANGES` (``small``: ``COCOeval.stats[3]`` for mAP50-95).

    Returns:
        ``(map50, map50_95)``: ``COCOeval.stats[1]`` and ``stats[0]`` for ``all``; 0 when there
        are no predictions, ``(-1, -1)`` when there is no ground-truth box (of that size), as
        COCO.

    Raises:
        ValueError: On a length mismatch, predictions without confidence, negative class ids,
            NaN or reversed boxes, or an unknown area.
        TypeError: If an item is not an ``sv.Detections``.
    """
    check_inputs(ground_truth, predictions, None)
    _check_area(area)
    ids = [int(c) for dets in (*ground_truth, *predictions) if len(dets) for c in dets.class_id]
    if not ids:
        return -1.0, -1.0
    return maps_from_precision(cocoeval_precision(ground_truth, predictions, max(ids) + 1), area)


# --------------------------------------------------------------------------------------------
# Ultralytics
# --------------------------------------------------------------------------------------------


def ultralytics_map(
    ground_truth: Sequence[sv.Detections],
    predictions: Sequence[sv.Detections],
    class_names: Sequence[str],
) -> tuple[float, float]:
    """mAP50 and mAP50-95 as Ultralytics' validator computes them, from its own functions.

    Per image, predictions are sorted by confidence (as after NMS), matched to the ground truth
    by ``BaseValidator.match_predictions`` on ``ultralytics.utils.metrics.box_iou`` (what
    ``DetectionValidator._process_batch`` does), and the stacked results go through
    ``ultralytics.utils.metrics.ap_per_class``. Ultralytics integrates the interpolated
    precision-recall curve with trapezoids, where COCO averages 101 step samples, and its curve
    falls to precision 0 at recall 1 (so perfect predictions score 0.995, not 1): expect
    differences of about 0.01. Ultralytics also keeps up to 300 detections per image in all
    classes, COCO 100 per image and class; this function keeps them all.

    Args:
        ground_truth: One ``sv.Detections`` per image.
        predictions: One ``sv.Detections`` per image, with ``confidence``.
        class_names: Class names by id.

    Returns:
        ``(map50, map50_95)``: the mean over classes with ground truth; 0 when there is none.

    Raises:
        ValueError: On a length mismatch, class ids out of range, missing confidences, or NaN or
            reversed boxes.
    """
    import torch
    from ultralytics.engine.validator import BaseValidator
    from ultralytics.models.yolo.detect.val import DetectionValidator
    from ultralytics.utils.metrics import ap_per_class

    check_inputs(ground_truth, predictions, class_names)

    class _Matcher:
        """Just what ``_process_batch`` reads from its validator (building one writes folders)."""

        iouv = torch.linspace(0.5, 0.95, 10)
        niou = 10

        def match_predictions(self, pred_classes, true_classes, iou_matrix):
            return BaseValidator.match_predictions(self, pred_classes, true_classes, iou_matrix)

    matcher = _Matcher()
    tps, confs, pred_cls, target_cls = [], [], [], []
    for gt, pred in zip(ground_truth, predictions, strict=True):
        g_boxes = np.asarray(gt.xyxy, np.float64).reshape(-1, 4)
        g_cls = np.asarray(gt.class_id if len(gt) else [], dtype=np.float64)
        if len(pred):
            order = np.argsort(-np.asarray(pred.confidence, np.float64), kind="stable")
            p_boxes = np.asarray(pred.xyxy, np.float64)[order]
            p_cls = np.asarray(pred.class_id, np.float64)[order]
            p_conf = np.asarray(pred.confidence, np.float64)[order]
        else:
            p_boxes, p_cls, p_conf = np.zeros((0, 4)), np.zeros(0), np.zeros(0)
        result = DetectionValidator._process_batch(
            matcher,
            {"bboxes": _torch_boxes(p_boxes), "cls": torch.from_numpy(p_cls)},
            {"bboxes": _torch_boxes(g_boxes), "cls": torch.from_numpy(g_cls)},
        )
        tps.append(np.asarray(result["tp"], dtype=bool).reshape(-1, 10))
        confs.append(p_conf)
        pred_cls.append(p_cls)
        target_cls.append(g_cls)
    target = np.concatenate(target_cls)
    if not len(target):
        return 0.0, 0.0
    ap = ap_per_class(
        np.concatenate(tps).astype(np.float64),
        np.concatenate(confs),
        np.concatenate(pred_cls),
        target,
        names=dict(enumerate(class_names)),
    )[5]
    return float(ap[:, 0].mean()), float(ap.mean())


def _torch_boxes(boxes: np.ndarray) -> Any:
    """Boxes as the float32 ``(N, 4)`` xyxy ``torch.Tensor`` Ultralytics' validator holds."""
    import torch

    return torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))


# --------------------------------------------------------------------------------------------
# Counts at a confidence threshold
# --------------------------------------------------------------------------------------------


@dataclass
class Counts:
    """True and false positives and misses per class (for one area range): :func:`counts_at`.

    Attributes:
        tp: True positives per class.
        fp: False positives per class.
        fn: Missed ground-truth boxes per class.
        gt: Ground-truth boxes per class (of the area range).
        per_image: Per image: ground truth, predictions, TP, FP, FN.
    """

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    gt: np.ndarray
    per_image: list[tuple[int, int, int, int, int]] = field(default_factory=list)


def counts_at(
    ground_truth: Sequence[sv.Detections],
    predictions: Sequence[sv.Detections],
    n_classes: int,
    *,
    conf: float,
    iou_threshold: float,
    area: tuple[float, float] = AREA_RANGES["all"],
) -> Counts:
    """Counts at one confidence and IoU threshold: greedy matching by confidence, per class.

    Each prediction at or above ``conf`` takes the free ground-truth box of its class with the
    highest IoU at or above ``iou_threshold`` (COCOeval's matching). Ground truth outside the
    area range, and unmatched predictions outside it, are ignored, as in COCO.

    Args:
        ground_truth: One ``sv.Detections`` per image (checked by :func:`check_inputs`).
        predictions: One ``sv.Detections`` per image, with ``confidence``.
        n_classes: Number of classes.
        conf: Confidence threshold.
        iou_threshold: IoU a true positive needs.
        area: Box-area range in square pixels (a value of :data:`AREA_RANGES`).

    Returns:
        The counts per class and per image.
    """
    lo, hi = area
    tp, fp, fn, n_gt = (np.zeros(n_classes, dtype=np.int64) for _ in range(4))
    per_image = []
    thresholds = np.array([iou_threshold])
    for gt, pred in zip(ground_truth, predictions, strict=True):
        row = np.zeros(4, dtype=np.int64)
        n_pred = 0
        for cls in range(n_classes):
            g = np.asarray(gt.xyxy, np.float64)[gt.class_id == cls] if len(gt) else np.zeros((0, 4))
            if len(pred):
                keep = (pred.class_id == cls) & (np.asarray(pred.confidence) >= conf)
                d = np.asarray(pred.xyxy, np.float64)[keep]
                s = np.asarray(pred.confidence, np.float64)[keep]
                order = np.argsort(-s, kind="mergesort")
                d = d[order]
            else:
                d = np.zeros((0, 4))
            g_area = _areas(g)
            g_ignore = (g_area < lo) | (g_area > hi)
            hits = _greedy_match(box_iou(d, g), g_ignore, thresholds)[0]
            matched_ignored = np.zeros(len(d), dtype=bool)
            matched_ignored[hits >= 0] = g_ignore[hits[hits >= 0]]
            d_area = _areas(d)
            d_ignore = matched_ignored | ((hits < 0) & ((d_area < lo) | (d_area > hi)))
            true_pos = int(((hits >= 0) & ~d_ignore).sum())
            false_pos = int(((hits < 0) & ~d_ignore).sum())
            regular = int((~g_ignore).sum())
            tp[cls] += true_pos
            fp[cls] += false_pos
            fn[cls] += regular - true_pos
            n_gt[cls] += regular
            row += (regular, true_pos, false_pos, regular - true_pos)
            n_pred += true_pos + false_pos
        per_image.append((int(row[0]), n_pred, int(row[1]), int(row[2]), int(row[3])))
    return Counts(tp=tp, fp=fp, fn=fn, gt=n_gt, per_image=per_image)


def precision_recall_f1(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision (0 without predictions), recall (NaN without ground truth) and F1.

    Args:
        tp: True positives.
        fp: False positives.
        fn: Missed ground-truth boxes.

    Returns:
        ``(precision, recall, f1)``; F1 is NaN when recall is.
    """
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else math.nan
    if math.isnan(recall):
        return precision, recall, math.nan
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def check_threshold(value: float, name: str) -> float:
    """A confidence or IoU threshold as a float, checked to lie in ``[0, 1]``.

    Args:
        value: The threshold.
        name: Its argument name, for the error.

    Returns:
        The threshold.

    Raises:
        ValueError: If it is outside ``[0, 1]``.
    """
    value = float(value)
    if not 0 <= value <= 1:
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}.")
    return value


# --------------------------------------------------------------------------------------------
# Confusion matrix
# --------------------------------------------------------------------------------------------


def confusion_matrix(
    ground_truth: Sequence[sv.Detections],
    predictions: Sequence[sv.Detections],
    class_names: Sequence[str],
    *,
    conf: float = 0.25,
    iou: float = 0.5,
) -> tuple[np.ndarray, Figure]:
    """The detection confusion matrix (supervision's), with a background row and column.

    Rows are the true classes, columns the predicted ones; the last row and column are
    *background*: ``[k, -1]`` counts boxes of class ``k`` that no prediction found, ``[-1, k]``
    predictions of class ``k`` where there is nothing. supervision matches pairs with IoU
    strictly above ``iou``, same-class pairs first, then by decreasing IoU.

    Args:
        ground_truth: One ``sv.Detections`` per image.
        predictions: One ``sv.Detections`` per image, with ``confidence``.
        class_names: Class names by id.
        conf: Predictions below this confidence are dropped.
        iou: IoU a prediction needs (strictly more) to match a box.

    Returns:
        ``(matrix, figure)``: the ``(K + 1, K + 1)`` integer counts and their heat map.

    Raises:
        ValueError: On the bad input :func:`check_inputs` rejects, or thresholds outside 0..1.
    """
    check_inputs(ground_truth, predictions, class_names)
    conf = check_threshold(conf, "conf")
    iou = check_threshold(iou, "iou")
    names = [str(n) for n in class_names]
    empty = sv.Detections(xyxy=np.zeros((0, 4)), class_id=np.zeros(0, dtype=int))
    scored_empty = sv.Detections(
        xyxy=np.zeros((0, 4)), class_id=np.zeros(0, dtype=int), confidence=np.zeros(0)
    )
    matrix = sv.ConfusionMatrix.from_detections(
        predictions=[p if len(p) else scored_empty for p in predictions],
        targets=[g if len(g) else empty for g in ground_truth],
        classes=names,
        conf_threshold=conf,
        iou_threshold=iou,
    ).matrix.astype(np.int64)
    labels = [*names, "background"]
    size = 1.6 + 0.75 * len(labels)
    fig = Figure(figsize=(size + 1.5, size))
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(len(labels)), labels=labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels=labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = matrix.max() if matrix.size else 0
    for (row, col), value in np.ndenumerate(matrix):
        if value:
            colour = "white" if value > top / 2 else "black"
            ax.text(col, row, str(value), ha="center", va="center", color=colour, fontsize=9)
    ax.set_title(f"Confusion matrix (confidence ≥ {conf:g}, IoU > {iou:g})")
    fig.tight_layout()
    return matrix, fig
