"""Evaluation (notebook 06): mAP, precision and recall, slices, errors, a report and a model card.

Every function takes one ``sv.Detections`` per image for the ground truth (``xyxy`` float pixels
and ``class_id``) and one per image for the predictions (with ``confidence``), in the same order.

* :func:`evaluate_detections` is the main entry: COCO mAP50 and mAP50-95 from pycocotools (the
  reference the field uses), AP per class, precision, recall and F1 at a confidence threshold,
  and the precision-recall curve of each class.
* :func:`coco_map` implements the same COCO metric in numpy, readable: greedy matching by score
  over IoU thresholds 0.50:0.05:0.95, at most 100 detections per image and class, 101-point
  interpolated precision. The tests check that it reproduces pycocotools to 1e-6.
* :func:`ultralytics_map` computes mAP with Ultralytics' own matching and ``ap_per_class``: it
  interpolates the precision-recall curve differently (trapezoids over 101 points instead of
  COCO's steps), so it agrees with COCO to about 0.01, not exactly.
* :func:`confusion_matrix`, :func:`evaluate_slices` (per camera, condition and box size),
  :func:`error_cases` with :func:`plot_error_gallery`, and :func:`iou` with :func:`plot_iou`
  explain where a model fails.
* :func:`write_report` and :func:`model_card` write the results down and check them against the
  project's success criteria (``project.yaml``).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import supervision as sv
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from tcv_helpers.io import atomic_write_json, atomic_write_text

if TYPE_CHECKING:
    import pandas as pd
    from PIL import Image

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
#: The kinds of error :func:`error_cases` finds.
ERROR_KINDS: tuple[str, ...] = ("false_positive", "missed", "poor_localisation", "wrong_class")
#: The default limitations a model card lists.
DEFAULT_LIMITATIONS: tuple[str, ...] = (
    "Evaluated on the validation split only; cameras, seasons or countries not in it may do worse.",
    "Small, distant and occluded vehicles are found less often than near ones.",
    "Counts derived from detections inherit their misses and false alarms.",
)
#: The default intended use of a model card.
DEFAULT_INTENDED_USE = (
    "Detecting vehicles in frames of fixed traffic cameras to count traffic per class. "
    "Not for identifying people or vehicles, enforcement, or surveillance of individuals."
)

_AREA_INDEX = {name: index for index, name in enumerate(AREA_RANGES)}
_SIZE_SLICE = "box_size"


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


def _check_inputs(
    ground_truth: Sequence[sv.Detections],
    predictions: Sequence[sv.Detections],
    class_names: Sequence[str] | None,
) -> int | None:
    """Checks both lists and returns the number of classes (None when no names are given)."""
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
    _check_inputs(ground_truth, predictions, None)
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


def _cocoeval_precision(
    ground_truth: Sequence[sv.Detections], predictions: Sequence[sv.Detections], n_classes: int
) -> np.ndarray:
    """pycocotools' ``eval['precision']`` (T, R, K, A, M) for class ids 0..n_classes-1."""
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


def _maps(precision: np.ndarray, area: str = "all") -> tuple[float, float]:
    """mAP50 and mAP50-95 from COCOeval's precision array, as ``COCOeval.summarize``."""
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
    _check_inputs(ground_truth, predictions, None)
    _check_area(area)
    ids = [int(c) for dets in (*ground_truth, *predictions) if len(dets) for c in dets.class_id]
    if not ids:
        return -1.0, -1.0
    return _maps(_cocoeval_precision(ground_truth, predictions, max(ids) + 1), area)


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

    _check_inputs(ground_truth, predictions, class_names)

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
class _Counts:
    """True and false positives and misses per class (for one area range)."""

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    gt: np.ndarray
    per_image: list[tuple[int, int, int, int, int]] = field(default_factory=list)


def _counts_at(
    ground_truth: Sequence[sv.Detections],
    predictions: Sequence[sv.Detections],
    n_classes: int,
    *,
    conf: float,
    iou_threshold: float,
    area: tuple[float, float] = AREA_RANGES["all"],
) -> _Counts:
    """Greedy matching by confidence at one IoU threshold, COCO's rules for the area range."""
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
    return _Counts(tp=tp, fp=fp, fn=fn, gt=n_gt, per_image=per_image)


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision (0 without predictions), recall (NaN without ground truth) and F1."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else math.nan
    if math.isnan(recall):
        return precision, recall, math.nan
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


# --------------------------------------------------------------------------------------------
# evaluate_detections
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassMetrics:
    """The metrics of one class.

    Attributes:
        class_id: The class id.
        name: The class name.
        gt: Ground-truth boxes of the class.
        predictions: Predictions of the class at or above the confidence threshold.
        ap50: AP at IoU 0.5 (pycocotools); NaN when the class has no ground truth.
        ap50_95: AP averaged over IoU 0.50:0.95; NaN when the class has no ground truth.
        precision: Precision at the threshold (0 without predictions).
        recall: Recall at the threshold; NaN without ground truth.
        f1: F1 at the threshold; NaN without ground truth.
        tp: True positives at the threshold.
        fp: False positives at the threshold.
        fn: Missed ground-truth boxes at the threshold.
    """

    class_id: int
    name: str
    gt: int
    predictions: int
    ap50: float
    ap50_95: float
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int


@dataclass(frozen=True, eq=False)
class PRCurve:
    """The interpolated precision-recall curve of one class at IoU 0.5 (COCO's samples).

    Attributes:
        name: The class name.
        recall: The 101 recall points 0, 0.01, ..., 1.
        precision: Interpolated precision at each (0 past the highest recall reached); its mean
            is the class's AP50.
    """

    name: str
    recall: np.ndarray
    precision: np.ndarray


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _safe_key(name: str) -> str:
    return re.sub(r"\W+", "_", name.strip().lower()).strip("_") or "class"


@dataclass(frozen=True)
class EvalResult:
    """The result of :func:`evaluate_detections`.

    Attributes:
        map50: COCO mAP at IoU 0.5 (pycocotools), over classes with ground truth.
        map50_95: COCO mAP averaged over IoU 0.50:0.95.
        per_class: One :class:`ClassMetrics` per class of ``class_names``.
        precision: Precision over all classes at ``conf`` and IoU ``iou``.
        recall: Recall over all classes at ``conf`` and IoU ``iou``.
        f1: The harmonic mean of ``precision`` and ``recall``.
        conf: The confidence threshold of precision, recall and F1.
        iou: The IoU threshold of precision, recall and F1.
        pr_curves: Class name to :class:`PRCurve`, for classes with ground truth.
        class_names: Class names by id.
        image_ids: One identifier per image (file names, or ``"0"``, ``"1"``, ...).
        n_gt: Ground-truth boxes.
        n_predictions: Predictions at any confidence.
        map_by_size: COCO mAP50 and mAP50-95 for ``small``, ``medium`` and ``large`` ground
            truth (NaN where there is no box of that size).
        per_image_counts: Per image: ground truth, predictions at ``conf``, TP, FP, FN.
    """

    map50: float
    map50_95: float
    per_class: tuple[ClassMetrics, ...]
    precision: float
    recall: float
    f1: float
    conf: float
    iou: float
    pr_curves: dict[str, PRCurve]
    class_names: tuple[str, ...]
    image_ids: tuple[str, ...]
    n_gt: int
    n_predictions: int
    map_by_size: dict[str, tuple[float, float]] = field(default_factory=dict)
    per_image_counts: tuple[tuple[int, int, int, int, int], ...] = ()

    @property
    def n_images(self) -> int:
        """Number of images evaluated."""
        return len(self.image_ids)

    def to_pandas(self) -> pd.DataFrame:
        """The per-class metrics as a table, one row per class (index: the class name).

        Returns:
            A DataFrame with the fields of :class:`ClassMetrics` as columns.
        """
        import pandas as pd

        rows = [vars(row).copy() for row in self.per_class]
        return pd.DataFrame(rows).set_index("name")

    def per_image(self) -> pd.DataFrame:
        """Counts per image at the confidence threshold, worst images (most errors) first.

        Returns:
            A DataFrame with columns ``image, gt, predictions, tp, fp, fn``.
        """
        import pandas as pd

        frame = pd.DataFrame(
            self.per_image_counts, columns=["gt", "predictions", "tp", "fp", "fn"]
        ).astype(int)
        frame.insert(0, "image", list(self.image_ids))
        errors = frame["fp"] + frame["fn"]
        return frame.iloc[np.argsort(-errors.to_numpy(), kind="stable")].reset_index(drop=True)

    def key_numbers(self) -> dict[str, float]:
        """The headline numbers as a flat dictionary of floats (for ``record_metrics``).

        Returns:
            ``map50``, ``map50_95``, ``precision``, ``recall``, ``f1``, ``conf`` and
            ``ap50_<class>`` for each class with ground truth; NaN values are left out.
        """
        numbers = {
            "map50": self.map50,
            "map50_95": self.map50_95,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "conf": self.conf,
        }
        for row in self.per_class:
            numbers[f"ap50_{_safe_key(row.name)}"] = row.ap50
        return {k: float(v) for k, v in numbers.items() if math.isfinite(v)}

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: the headline numbers, per class and per size (NaN as None).

        Returns:
            A dictionary of numbers, strings, lists and dictionaries.
        """
        return {
            "map50": self.map50,
            "map50_95": self.map50_95,
            "precision": self.precision,
            "recall": self.recall,
            "f1": _finite_or_none(self.f1),
            "conf": self.conf,
            "iou": self.iou,
            "images": self.n_images,
            "gt_boxes": self.n_gt,
            "predictions": self.n_predictions,
            "class_names": list(self.class_names),
            "per_class": [
                {k: _finite_or_none(v) for k, v in vars(row).items()} for row in self.per_class
            ],
            "map_by_size": {
                size: {"map50": _finite_or_none(a), "map50_95": _finite_or_none(b)}
                for size, (a, b) in self.map_by_size.items()
            },
        }

    def plot_pr(self) -> Figure:
        """Precision-recall curves at IoU 0.5, one per class, with the operating point at ``conf``.

        Returns:
            The figure.
        """
        fig = Figure(figsize=(7, 5))
        ax = fig.subplots()
        rows = {row.name: row for row in self.per_class}
        colours = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6"]
        for index, (name, curve) in enumerate(self.pr_curves.items()):
            colour = colours[index % len(colours)]
            row = rows[name]
            ax.plot(
                curve.recall, curve.precision, color=colour, label=f"{name} AP50 {row.ap50:.3f}"
            )
            if math.isfinite(row.recall):
                ax.plot(row.recall, row.precision, "o", color=colour, markersize=6)
        ax.set_xlim(0, 1.01)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(
            f"Precision-recall at IoU 0.5: mAP50 {self.map50:.3f} (dots: confidence {self.conf:g})"
        )
        if self.pr_curves:
            ax.legend(loc="lower left", fontsize=8)
        else:
            ax.text(0.5, 0.5, "no class has ground truth", ha="center", va="center")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        return fig

    def plot(self) -> Figure:
        """AP50 and AP50-95 per class as bars, with the overall mAP50 as a line.

        Returns:
            The figure.
        """
        rows = [row for row in self.per_class if math.isfinite(row.ap50)]
        fig = Figure(figsize=(max(5.0, 1.1 * len(rows) + 2), 4))
        ax = fig.subplots()
        x = np.arange(len(rows))
        ax.bar(x - 0.2, [r.ap50 for r in rows], width=0.4, color="#4363d8", label="AP50")
        ax.bar(x + 0.2, [r.ap50_95 for r in rows], width=0.4, color="#f58231", label="AP50-95")
        ax.axhline(self.map50, color="#4363d8", ls="--", lw=1, label=f"mAP50 {self.map50:.3f}")
        ax.set_xticks(x, labels=[f"{r.name}\n({r.gt})" for r in rows])
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("average precision")
        ax.set_title(
            f"Per class (ground-truth boxes in brackets); P {self.precision:.2f}, "
            f"R {self.recall:.2f} at confidence {self.conf:g}"
        )
        ax.legend(fontsize=8, loc="upper right")
        fig.tight_layout()
        return fig


def _check_threshold(value: float, name: str) -> float:
    value = float(value)
    if not 0 <= value <= 1:
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}.")
    return value


def evaluate_detections(
    ground_truth: Sequence[sv.Detections],
    predictions: Sequence[sv.Detections],
    class_names: Sequence[str],
    *,
    image_ids: Sequence[str | int | os.PathLike] | None = None,
    conf: float = 0.25,
    iou: float = 0.5,
) -> EvalResult:
    """Evaluates predictions against ground truth: COCO mAP (pycocotools) and more.

    mAP50 and mAP50-95 come from pycocotools' ``COCOeval`` (bbox, its default 100 detections per
    image and class), built in memory; AP per class and the precision-recall curves come from
    its precision array. Precision, recall and F1 count predictions at or above ``conf``,
    matched greedily by confidence to ground truth of the same class at IoU ``iou`` or more.

    Args:
        ground_truth: One ``sv.Detections`` per image (xyxy pixels, class_id).
        predictions: One ``sv.Detections`` per image, with ``confidence``.
        class_names: Class names; class ids index them.
        image_ids: One identifier per image (e.g. file names), for :meth:`EvalResult.per_image`.
        conf: Confidence threshold of precision, recall and F1.
        iou: IoU threshold of precision, recall and F1.

    Returns:
        The metrics.

    Raises:
        ValueError: On a length mismatch (also of ``image_ids``), class ids out of range, NaN
            or reversed boxes, missing confidences, thresholds outside 0..1, or no ground-truth
            box at all (mAP is undefined then).
        TypeError: If an item is not an ``sv.Detections``.

    Example:
        >>> result = evaluate_detections(gt, preds, ["car", "truck"])  # doctest: +SKIP
        >>> result.map50, result.to_pandas()  # doctest: +SKIP
    """
    n_classes = _check_inputs(ground_truth, predictions, class_names)
    assert n_classes is not None
    conf = _check_threshold(conf, "conf")
    iou = _check_threshold(iou, "iou")
    if image_ids is None:
        ids = tuple(str(i) for i in range(len(ground_truth)))
    else:
        ids = tuple(str(i) for i in image_ids)
        if len(ids) != len(ground_truth):
            raise ValueError(f"{len(ids)} image_ids for {len(ground_truth)} images.")
    n_gt = sum(len(g) for g in ground_truth)
    if n_gt == 0:
        raise ValueError("no ground-truth box in any image: mAP and recall are undefined.")
    precision_array = _cocoeval_precision(ground_truth, predictions, n_classes)
    map50, map50_95 = _maps(precision_array)
    counts = _counts_at(ground_truth, predictions, n_classes, conf=conf, iou_threshold=iou)
    per_class, curves = [], {}
    for k, name in enumerate(class_names):
        at_all = precision_array[:, :, k, 0, -1]  # (T, R)
        has_gt = bool((at_all > -1).any())
        ap50 = float(at_all[0].mean()) if has_gt else math.nan
        ap50_95 = float(at_all.mean()) if has_gt else math.nan
        p, r, f = _prf(int(counts.tp[k]), int(counts.fp[k]), int(counts.fn[k]))
        per_class.append(
            ClassMetrics(
                class_id=k,
                name=str(name),
                gt=int(counts.gt[k]),
                predictions=int(counts.tp[k] + counts.fp[k]),
                ap50=ap50,
                ap50_95=ap50_95,
                precision=p,
                recall=r,
                f1=f,
                tp=int(counts.tp[k]),
                fp=int(counts.fp[k]),
                fn=int(counts.fn[k]),
            )
        )
        if has_gt:
            curves[str(name)] = PRCurve(str(name), RECALL_THRESHOLDS.copy(), at_all[0].copy())
    precision, recall, f1 = _prf(int(counts.tp.sum()), int(counts.fp.sum()), int(counts.fn.sum()))
    by_size = {}
    for size in ("small", "medium", "large"):
        a, b = _maps(precision_array, size)
        by_size[size] = (a if a > -1 else math.nan, b if b > -1 else math.nan)
    return EvalResult(
        map50=map50 if map50 > -1 else 0.0,
        map50_95=map50_95 if map50_95 > -1 else 0.0,
        per_class=tuple(per_class),
        precision=precision,
        recall=recall,
        f1=f1,
        conf=conf,
        iou=iou,
        pr_curves=curves,
        class_names=tuple(str(n) for n in class_names),
        image_ids=ids,
        n_gt=n_gt,
        n_predictions=sum(len(p) for p in predictions),
        map_by_size=by_size,
        per_image_counts=tuple(counts.per_image),
    )


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
        ValueError: On the same bad input as :func:`evaluate_detections`.
    """
    _check_inputs(ground_truth, predictions, class_names)
    conf = _check_threshold(conf, "conf")
    iou = _check_threshold(iou, "iou")
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


# --------------------------------------------------------------------------------------------
# Slices
# --------------------------------------------------------------------------------------------


def _slice_row(
    slice_name: str,
    value: str,
    ground_truth: Sequence[sv.Detections],
    predictions: Sequence[sv.Detections],
    n_classes: int,
    conf: float,
    iou_threshold: float,
) -> dict[str, Any]:
    counts = _counts_at(
        ground_truth, predictions, n_classes, conf=conf, iou_threshold=iou_threshold
    )
    if counts.gt.sum():
        map50, map50_95 = _maps(_cocoeval_precision(ground_truth, predictions, n_classes))
    else:
        map50 = map50_95 = math.nan
    precision, recall, f1 = _prf(int(counts.tp.sum()), int(counts.fp.sum()), int(counts.fn.sum()))
    return {
        "slice": slice_name,
        "value": value,
        "images": len(ground_truth),
        "gt_boxes": int(counts.gt.sum()),
        "predictions": int(counts.tp.sum() + counts.fp.sum()),
        "map50": map50,
        "map50_95": map50_95,
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def evaluate_slices(
    ground_truth: Sequence[sv.Detections],
    predictions: Sequence[sv.Detections],
    class_names: Sequence[str],
    slices: Mapping[str, Sequence[str]],
    *,
    conf: float = 0.25,
    iou: float = 0.5,
    sizes: bool = True,
) -> pd.DataFrame:
    """mAP, precision and recall per value of each slice (camera, condition, ...) and box size.

    The first row is the whole set (``slice`` and ``value`` ``all``). Each slice gives one value
    per image; the images with that value are evaluated on their own. The ``box_size`` rows use
    COCO's area ranges (small under 32² px², medium to 96², large above) on all images: ground
    truth of other sizes, and unmatched predictions of other sizes, are ignored, as in COCO's
    ``APsmall``/``APmedium``/``APlarge``.

    Args:
        ground_truth: One ``sv.Detections`` per image.
        predictions: One ``sv.Detections`` per image, with ``confidence``.
        class_names: Class names by id.
        slices: Slice name to one value per image, e.g. ``{"camera": [...], "condition": [...]}``.
        conf: Confidence threshold of precision and recall.
        iou: IoU threshold of precision and recall.
        sizes: Add the ``box_size`` rows.

    Returns:
        A DataFrame with columns ``slice, value, images, gt_boxes, predictions, map50,
        map50_95, precision, recall, f1``; metrics are NaN where a slice has no ground truth.

    Raises:
        ValueError: On the same bad input as :func:`evaluate_detections`, a slice whose length
            is not the number of images, or a slice named ``box_size`` or ``all``.
    """
    import pandas as pd

    n_classes = _check_inputs(ground_truth, predictions, class_names)
    assert n_classes is not None
    conf = _check_threshold(conf, "conf")
    iou = _check_threshold(iou, "iou")
    n_images = len(ground_truth)
    for name, values in slices.items():
        if name in (_SIZE_SLICE, "all"):
            raise ValueError(f"slice name {name!r} is reserved; call it something else.")
        if isinstance(values, str) or len(values) != n_images:
            count = "a string" if isinstance(values, str) else f"{len(values)} values"
            raise ValueError(f"slice {name!r} has {count}; give one value per image ({n_images}).")
    rows = [_slice_row("all", "all", ground_truth, predictions, n_classes, conf, iou)]
    for name, values in slices.items():
        labels = np.array([str(v) for v in values], dtype=object)
        for value in sorted(set(labels)):
            chosen = np.flatnonzero(labels == value)
            rows.append(
                _slice_row(
                    name,
                    value,
                    [ground_truth[i] for i in chosen],
                    [predictions[i] for i in chosen],
                    n_classes,
                    conf,
                    iou,
                )
            )
    if sizes:
        has_gt = any(len(g) for g in ground_truth)
        array = _cocoeval_precision(ground_truth, predictions, n_classes) if has_gt else None
        for size in ("small", "medium", "large"):
            counts = _counts_at(
                ground_truth,
                predictions,
                n_classes,
                conf=conf,
                iou_threshold=iou,
                area=AREA_RANGES[size],
            )
            map50, map50_95 = _maps(array, size) if array is not None else (-1.0, -1.0)
            precision, recall, f1 = _prf(
                int(counts.tp.sum()), int(counts.fp.sum()), int(counts.fn.sum())
            )
            rows.append(
                {
                    "slice": _SIZE_SLICE,
                    "value": size,
                    "images": n_images,
                    "gt_boxes": int(counts.gt.sum()),
                    "predictions": int(counts.tp.sum() + counts.fp.sum()),
                    "map50": map50 if map50 > -1 else math.nan,
                    "map50_95": map50_95 if map50_95 > -1 else math.nan,
                    "precision": precision,
                    "recall": recall,
                    "f1": f1,
                }
            )
    return pd.DataFrame(rows)


def slices_from_manifest(
    root: str | os.PathLike,
    image_paths: Sequence[str | os.PathLike],
    columns: Sequence[str] = ("camera_id", "condition"),
) -> dict[str, list[str]]:
    """Per-image slice values (camera, condition, ...) from a dataset's ``manifest.csv``.

    Args:
        root: The dataset folder holding ``manifest.csv``.
        image_paths: The images, absolute or relative to ``root`` (as :func:`load_ground_truth`
            gives them).
        columns: Manifest columns to use as slices.

    Returns:
        Column name to one value per image, ready for :func:`evaluate_slices`.

    Raises:
        FileNotFoundError: If ``manifest.csv`` is missing.
        ValueError: If a column is missing or an image is not in the manifest (the message names
            both).
    """
    from tcv_helpers.data.labels import read_manifest

    folder = Path(root)
    file = folder / "manifest.csv"
    if not file.is_file():
        raise FileNotFoundError(f"{file} does not exist.")
    manifest = read_manifest(file)
    missing = [c for c in columns if c not in manifest.columns]
    if missing:
        raise ValueError(f"{file}: no column(s) {', '.join(missing)}.")
    index = {Path(p).as_posix(): i for i, p in enumerate(manifest["image"])}
    base = folder.resolve()
    out: dict[str, list[str]] = {c: [] for c in columns}
    for path in image_paths:
        key = Path(path).as_posix()
        if key not in index:  # a path through the dataset folder, absolute or from here
            with contextlib.suppress(ValueError):
                key = Path(path).resolve().relative_to(base).as_posix()
        row = index.get(key)
        if row is None:
            raise ValueError(f"{file}: image {key!r} is not in the manifest.")
        for column in columns:
            out[column].append(str(manifest[column].iloc[row]))
    return out


# --------------------------------------------------------------------------------------------
# Error cases
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorCase:
    """One error of the model on one image.

    Attributes:
        image: Index of the image in the lists given to :func:`error_cases`.
        kind: One of :data:`ERROR_KINDS`: ``false_positive`` (a prediction on nothing, or a
            duplicate), ``missed`` (a box no prediction found), ``poor_localisation`` (right
            class, IoU below the threshold), ``wrong_class`` (good box, other class).
        gt_box: The ground-truth box ``x1, y1, x2, y2``, or None for a false positive.
        pred_box: The predicted box, or None for a miss.
        gt_class: The ground-truth class id, or None.
        pred_class: The predicted class id, or None.
        confidence: The prediction's confidence, or None.
        iou: IoU of the two boxes; for a false positive the highest IoU with any ground truth,
            for a miss the highest with any prediction above the threshold.
    """

    image: int
    kind: str
    gt_box: tuple[float, float, float, float] | None
    pred_box: tuple[float, float, float, float] | None
    gt_class: int | None
    pred_class: int | None
    confidence: float | None
    iou: float


def _box(values: np.ndarray) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in values)
    return (x1, y1, x2, y2)


def _take(ious: np.ndarray, free: np.ndarray, allowed: np.ndarray, threshold: float) -> int:
    """The free, allowed ground truth with the highest IoU at or above ``threshold``, or -1."""
    candidates = np.flatnonzero(free & allowed & (ious >= threshold))
    if not len(candidates):
        return -1
    return int(candidates[np.argmax(ious[candidates])])


def error_cases(
    ground_truth: Sequence[sv.Detections],
    predictions: Sequence[sv.Detections],
    *,
    conf: float = 0.25,
    iou: float = 0.5,
    min_iou: float = 0.1,
) -> list[ErrorCase]:
    """The model's errors, one per box, sorted by image.

    Predictions at or above ``conf`` are matched by confidence: first to free ground truth of
    their class with IoU at least ``iou`` (correct, not an error); the rest, in order, to a free
    box of another class with IoU at least ``iou`` (``wrong_class``), to a free box of their class
    with IoU at least ``min_iou`` (``poor_localisation``), or else count as ``false_positive``.
    Ground truth left free is ``missed``.

    Args:
        ground_truth: One ``sv.Detections`` per image.
        predictions: One ``sv.Detections`` per image, with ``confidence``.
        conf: Confidence threshold.
        iou: IoU a correct prediction needs.
        min_iou: Lowest IoU of a poorly localised prediction with its box.

    Returns:
        The errors, by image, then in the order of :data:`ERROR_KINDS`, then by confidence.

    Raises:
        ValueError: On the same bad input as :func:`evaluate_detections`, or ``min_iou`` above
            ``iou``.
    """
    _check_inputs(ground_truth, predictions, None)
    conf = _check_threshold(conf, "conf")
    iou = _check_threshold(iou, "iou")
    min_iou = _check_threshold(min_iou, "min_iou")
    if min_iou > iou:
        raise ValueError(f"min_iou ({min_iou}) must not be above iou ({iou}).")
    cases: list[ErrorCase] = []
    rank = {kind: i for i, kind in enumerate(ERROR_KINDS)}
    for index, (gt, pred) in enumerate(zip(ground_truth, predictions, strict=True)):
        g_boxes = np.asarray(gt.xyxy, np.float64).reshape(-1, 4)
        g_cls = np.asarray(gt.class_id if len(gt) else [], dtype=np.int64)
        if len(pred):
            keep = np.asarray(pred.confidence, np.float64) >= conf
            scores = np.asarray(pred.confidence, np.float64)[keep]
            order = np.argsort(-scores, kind="mergesort")
            d_boxes = np.asarray(pred.xyxy, np.float64)[keep][order]
            d_cls = np.asarray(pred.class_id, np.int64)[keep][order]
            scores = scores[order]
        else:
            d_boxes, d_cls, scores = np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0)
        ious = box_iou(d_boxes, g_boxes)  # (D, G)
        free_gt = np.ones(len(g_boxes), dtype=bool)
        done = np.zeros(len(d_boxes), dtype=bool)
        found: list[ErrorCase] = []

        for d in range(len(d_boxes)):  # correct predictions first
            g = _take(ious[d], free_gt, g_cls == d_cls[d], iou)
            if g >= 0:
                free_gt[g], done[d] = False, True
        for kind, same, threshold in (
            ("wrong_class", False, iou),
            ("poor_localisation", True, min_iou),
        ):
            for d in np.flatnonzero(~done):
                g = _take(
                    ious[d],
                    free_gt,
                    (g_cls == d_cls[d]) if same else (g_cls != d_cls[d]),
                    threshold,
                )
                if g < 0:
                    continue
                free_gt[g], done[d] = False, True
                found.append(
                    ErrorCase(
                        index,
                        kind,
                        _box(g_boxes[g]),
                        _box(d_boxes[d]),
                        int(g_cls[g]),
                        int(d_cls[d]),
                        float(scores[d]),
                        float(ious[d, g]),
                    )
                )
        for d in np.flatnonzero(~done):
            best = float(ious[d].max()) if len(g_boxes) else 0.0
            found.append(
                ErrorCase(
                    index,
                    "false_positive",
                    None,
                    _box(d_boxes[d]),
                    None,
                    int(d_cls[d]),
                    float(scores[d]),
                    best,
                )
            )
        for g in np.flatnonzero(free_gt):
            best = float(ious[:, g].max()) if len(d_boxes) else 0.0
            found.append(
                ErrorCase(index, "missed", _box(g_boxes[g]), None, int(g_cls[g]), None, None, best)
            )
        found.sort(key=lambda c: (rank[c.kind], -(c.confidence or 0.0)))
        cases.extend(found)
    return cases


def error_table(cases: Sequence[ErrorCase], class_names: Sequence[str]) -> pd.DataFrame:
    """The error cases as a table, with class names.

    Args:
        cases: From :func:`error_cases`.
        class_names: Class names by id.

    Returns:
        A DataFrame with columns ``image, kind, gt_class, pred_class, confidence, iou, gt_box,
        pred_box``.
    """
    import pandas as pd

    def name(cid: int | None) -> str | None:
        return None if cid is None else str(class_names[cid])

    return pd.DataFrame(
        [
            {
                "image": c.image,
                "kind": c.kind,
                "gt_class": name(c.gt_class),
                "pred_class": name(c.pred_class),
                "confidence": c.confidence,
                "iou": c.iou,
                "gt_box": c.gt_box,
                "pred_box": c.pred_box,
            }
            for c in cases
        ],
        columns=[
            "image",
            "kind",
            "gt_class",
            "pred_class",
            "confidence",
            "iou",
            "gt_box",
            "pred_box",
        ],
    )


def _pick_cases(cases: Sequence[ErrorCase], max_cases: int) -> list[ErrorCase]:
    """Up to ``max_cases``, taking each kind in turn (most confident first) so all kinds show."""
    queues = {
        kind: sorted(
            (c for c in cases if c.kind == kind),
            key=lambda c: (-(c.confidence or 0.0), c.image),
        )
        for kind in ERROR_KINDS
    }
    picked: list[ErrorCase] = []
    while len(picked) < max_cases and any(queues.values()):
        for kind in ERROR_KINDS:
            if queues[kind] and len(picked) < max_cases:
                picked.append(queues[kind].pop(0))
    return picked


def _as_array(image: Any) -> np.ndarray:
    if isinstance(image, np.ndarray):
        return image
    from PIL import Image as PILImage

    if isinstance(image, PILImage.Image):
        return np.asarray(image.convert("RGB"))
    with PILImage.open(Path(image)) as opened:
        return np.asarray(opened.convert("RGB"))


def plot_error_gallery(
    images: Sequence[str | os.PathLike | Image.Image | np.ndarray],
    cases: Sequence[ErrorCase],
    class_names: Sequence[str],
    *,
    max_cases: int = 8,
    cols: int = 4,
) -> Figure:
    """A grid of error crops: ground truth green, prediction red (dashed), kind and IoU above.

    Cases are taken kind by kind in turn (most confident first) so every kind shows.

    Args:
        images: The images, indexed as ``ErrorCase.image``: paths, PIL images or arrays (RGB).
        cases: From :func:`error_cases`.
        class_names: Class names by id.
        max_cases: Most crops to show.
        cols: Crops per row.

    Returns:
        The figure (a single message panel when there is no error).

    Raises:
        ValueError: If a case's image index is out of range of ``images``, or ``max_cases`` or
            ``cols`` is below 1.
    """
    if max_cases < 1 or cols < 1:
        raise ValueError("max_cases and cols must be at least 1.")
    picked = _pick_cases(cases, max_cases)
    if not picked:
        fig = Figure(figsize=(5, 2))
        ax = fig.subplots()
        ax.set_axis_off()
        ax.text(0.5, 0.5, "No errors at this threshold.", ha="center", va="center")
        return fig
    for case in picked:
        if not 0 <= case.image < len(images):
            raise ValueError(f"case image index {case.image} is out of range 0..{len(images) - 1}.")
    cols = min(cols, len(picked))
    rows = -(-len(picked) // cols)
    fig = Figure(figsize=(3.6 * cols, 3.4 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    cache: dict[int, np.ndarray] = {}
    for ax, case in zip(axes, picked, strict=False):
        if case.image not in cache:
            cache[case.image] = _as_array(images[case.image])
        picture = cache[case.image]
        height, width = picture.shape[:2]
        boxes = np.array([b for b in (case.gt_box, case.pred_box) if b is not None])
        lo, hi = boxes[:, :2].min(axis=0), boxes[:, 2:].max(axis=0)
        margin = np.maximum((hi - lo) * 0.5, 16)
        x1, y1 = (int(max(v, 0)) for v in lo - margin)
        x2 = int(min(math.ceil(hi[0] + margin[0]), width))
        y2 = int(min(math.ceil(hi[1] + margin[1]), height))
        x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
        ax.imshow(picture[y1:y2, x1:x2], extent=(x1, x2, y2, y1))
        for box, colour, style in ((case.gt_box, "#3cb44b", "-"), (case.pred_box, "#e6194b", "--")):
            if box is not None:
                ax.add_patch(
                    Rectangle(
                        (box[0], box[1]),
                        box[2] - box[0],
                        box[3] - box[1],
                        fill=False,
                        ec=colour,
                        ls=style,
                        lw=2,
                    )
                )
        gt_name = class_names[case.gt_class] if case.gt_class is not None else "nothing"
        pred_name = class_names[case.pred_class] if case.pred_class is not None else "nothing"
        score = f", conf {case.confidence:.2f}" if case.confidence is not None else ""
        ax.set_title(
            f"{case.kind.replace('_', ' ')} (image {case.image})\n"
            f"true {gt_name}, predicted {pred_name}\nIoU {case.iou:.2f}{score}",
            fontsize=8,
        )
        ax.set_axis_off()
    for ax in axes[len(picked) :]:
        ax.set_axis_off()
    fig.suptitle("Errors: ground truth green, prediction red (dashed)", fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Report and model card
# --------------------------------------------------------------------------------------------


def _criteria_values(criteria: Any) -> dict[str, float] | None:
    """``min_map50`` and ``min_recall`` from SuccessCriteria, a ProjectDefinition or a mapping."""
    if criteria is None:
        return None
    source = getattr(criteria, "criteria", criteria)
    out = {}
    for key in ("min_map50", "min_recall"):
        value = source.get(key) if isinstance(source, Mapping) else getattr(source, key, None)
        if value is None:
            raise ValueError(f"criteria has no {key!r} (give project.criteria from project.yaml).")
        out[key] = float(value)
    return out


def _checks(result: EvalResult, criteria: Mapping[str, float] | None) -> list[dict[str, Any]]:
    if criteria is None:
        return []
    return [
        {
            "metric": "map50",
            "value": result.map50,
            "required": criteria["min_map50"],
            "passed": bool(result.map50 >= criteria["min_map50"]),
        },
        {
            "metric": "recall",
            "value": result.recall,
            "required": criteria["min_recall"],
            "passed": bool(result.recall >= criteria["min_recall"]),
        },
    ]


def _cell(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return "–" if not math.isfinite(float(value)) else f"{float(value):.3f}"
    if isinstance(value, (np.integer,)):
        return str(int(value))
    return str(value).replace("|", "\\|")


def _md_table(frame: pd.DataFrame) -> list[str]:
    columns = list(frame.columns)
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return lines


def _class_frame(result: EvalResult) -> pd.DataFrame:
    frame = result.to_pandas().reset_index()
    return frame[["name", "gt", "predictions", "ap50", "ap50_95", "precision", "recall", "f1"]]


def _records(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
    if frame is None:
        return []
    return [
        {k: _finite_or_none(v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]


def write_report(
    result: EvalResult,
    out_dir: str | os.PathLike,
    *,
    slices_table: pd.DataFrame | None = None,
    criteria: Any = None,
    model_name: str,
    data_name: str,
) -> dict[str, float]:
    """Writes ``evaluation.json`` and ``evaluation.md`` (atomically) and returns the key numbers.

    Args:
        result: From :func:`evaluate_detections`.
        out_dir: Folder to write into (created if missing).
        slices_table: From :func:`evaluate_slices`, or None.
        criteria: The success criteria (``project.criteria`` from ``read_project``, a
            ``ProjectDefinition``, or a mapping with ``min_map50`` and ``min_recall``), or None
            to skip the pass/fail check.
        model_name: The model evaluated (e.g. ``yolo11n fine-tuned``).
        data_name: The data it was evaluated on (e.g. ``synthetic val``).

    Returns:
        The key numbers, a flat dictionary of floats for ``record_metrics(**numbers)`` (see
        :meth:`EvalResult.key_numbers`).

    Raises:
        ValueError: If ``criteria`` lacks ``min_map50`` or ``min_recall``.

    Example:
        >>> numbers = write_report(result, cfg.workspace.root / "eval",  # doctest: +SKIP
        ...                        criteria=project.criteria, model_name="yolo11n",
        ...                        data_name="synthetic val")
        >>> record_metrics(**numbers)  # doctest: +SKIP
    """
    folder = Path(out_dir)
    limits = _criteria_values(criteria)
    checks = _checks(result, limits)
    passed = all(c["passed"] for c in checks) if checks else None
    numbers = result.key_numbers()
    document = {
        "model": model_name,
        "data": data_name,
        "metrics": numbers,
        "result": result.to_dict(),
        "slices": _records(slices_table),
        "criteria": {"limits": limits, "checks": checks, "passed": passed},
    }
    atomic_write_json(folder / "evaluation.json", document)
    lines = [
        f"# Evaluation: {model_name} on {data_name}",
        "",
        f"- **mAP50:** {result.map50:.3f}",
        f"- **mAP50-95:** {result.map50_95:.3f}",
        f"- **Precision / recall / F1** at confidence {result.conf:g}, IoU {result.iou:g}: "
        f"{result.precision:.3f} / {_cell(result.recall)} / {_cell(result.f1)}",
        f"- **Images:** {result.n_images}, ground-truth boxes {result.n_gt}, "
        f"predictions {result.n_predictions}",
        "",
        "## Success criteria",
        "",
    ]
    if checks:
        for check in checks:
            verdict = "PASS" if check["passed"] else "FAIL"
            lines.append(
                f"- {verdict}: {check['metric']} {check['value']:.3f} "
                f"(required at least {check['required']:.3f})"
            )
        lines += ["", f"**Overall: {'PASS' if passed else 'FAIL'}**"]
    else:
        lines.append("No criteria given.")
    lines += ["", "## Per class", "", *_md_table(_class_frame(result))]
    if slices_table is not None and len(slices_table):
        lines += ["", "## Per slice", "", *_md_table(slices_table)]
    atomic_write_text(folder / "evaluation.md", "\n".join(lines) + "\n")
    return numbers


def _gap(slices_table: pd.DataFrame, name: str) -> tuple[str, str, float] | None:
    """The worst and best value of one slice by mAP50, and the gap between them."""
    rows = slices_table[(slices_table["slice"] == name) & slices_table["map50"].notna()]
    if len(rows) < 2:
        return None
    worst = rows.loc[rows["map50"].idxmin()]
    best = rows.loc[rows["map50"].idxmax()]
    return str(worst["value"]), str(best["value"]), float(best["map50"] - worst["map50"])


def model_card(
    result: EvalResult,
    *,
    model_name: str,
    data_name: str,
    slices_table: pd.DataFrame | None,
    criteria: Any,
    intended_use: str = DEFAULT_INTENDED_USE,
    limitations: Sequence[str] = DEFAULT_LIMITATIONS,
) -> str:
    """A model card (Markdown): intended use, data, metrics overall and by slice, limitations.

    It also states how accuracy varies across cameras and conditions (day, night, ...) when the
    slices table has them, since a detector that fails at night or on one camera biases every
    count taken there, and how people in the frames are protected.

    Args:
        result: From :func:`evaluate_detections`.
        model_name: The model.
        data_name: The evaluation data.
        slices_table: From :func:`evaluate_slices`, or None.
        criteria: The success criteria (as for :func:`write_report`), or None.
        intended_use: What the model is for (and not for).
        limitations: Known limitations, one sentence each.

    Returns:
        The card's Markdown text.

    Raises:
        ValueError: If ``criteria`` lacks ``min_map50`` or ``min_recall``.
    """
    limits = _criteria_values(criteria)
    checks = _checks(result, limits)
    lines = [
        f"# Model card: {model_name}",
        "",
        "## Intended use",
        "",
        intended_use,
        "",
        "## Data",
        "",
        f"Evaluated on **{data_name}**: {result.n_images} images, {result.n_gt} ground-truth "
        f"boxes of {len(result.class_names)} classes ({', '.join(result.class_names)}).",
        "",
        "## Metrics",
        "",
        f"- mAP50 {result.map50:.3f}, mAP50-95 {result.map50_95:.3f} (COCO, pycocotools)",
        f"- At confidence {result.conf:g}: precision {result.precision:.3f}, "
        f"recall {_cell(result.recall)}, F1 {_cell(result.f1)}",
    ]
    for check in checks:
        verdict = "meets" if check["passed"] else "does NOT meet"
        lines.append(
            f"- {check['metric']} {check['value']:.3f} {verdict} the project's minimum "
            f"{check['required']:.3f}"
        )
    lines += ["", "### Per class", "", *_md_table(_class_frame(result))]
    lines += ["", "## Metrics by slice", ""]
    if slices_table is not None and len(slices_table):
        lines += _md_table(slices_table)
    else:
        lines.append("No slices were evaluated.")
    lines += ["", "## Limitations", ""]
    lines += [f"- {item}" for item in limitations]
    lines += ["", "## Privacy and bias", ""]
    lines.append(
        "- Frames can show people and licence plates. The model counts vehicles only; blur "
        "people and plates before frames are stored or shared, and keep counts, not images."
    )
    named = {"camera": "cameras", "camera_id": "cameras", "condition": "conditions (day/night)"}
    found_any = False
    if slices_table is not None and len(slices_table):
        for key in slices_table["slice"].unique():
            if key in ("all", _SIZE_SLICE):
                continue
            gap = _gap(slices_table, key)
            if gap is None:
                continue
            found_any = True
            worst, best, size = gap
            lines.append(
                f"- Across {named.get(key, key)}: mAP50 is lowest for **{worst}** and highest for "
                f"**{best}**, a gap of {size:.3f}. Counts from the weakest {key} are biased low; "
                "report them with that caveat or collect more data there."
            )
    if not found_any:
        lines.append(
            "- Accuracy was not compared across cameras or day and night: evaluate by slice "
            "before trusting counts from every camera equally."
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Ground truth from a dataset
# --------------------------------------------------------------------------------------------

_SPLIT_ALIASES = {"val": ("val", "valid"), "valid": ("valid", "val")}


def load_ground_truth(
    root: str | os.PathLike, split: str = "val"
) -> tuple[list[Path], list[sv.Detections], list[str]]:
    """The images, boxes and class names of one split of a YOLO dataset.

    Args:
        root: The dataset folder (with ``data.yaml``) or the ``data.yaml`` file.
        split: The split; ``val`` and ``valid`` (Roboflow's name) stand for each other.

    Returns:
        ``(image_paths, ground_truth, class_names)``: paths joined to the dataset root, one
        ``sv.Detections`` per image (sorted by file name within the split), and the class names.

    Raises:
        FileNotFoundError: If ``root`` or ``data.yaml`` is missing.
        ValueError: If the split has no images (the message lists the splits there are), or on
            malformed labels.

    Example:
        >>> paths, gt, names = load_ground_truth(cfg.data_dir / "synth")  # doctest: +SKIP
    """
    from tcv_helpers.data.formats import read_labels

    labels = read_labels(root, "yolo")
    wanted = _SPLIT_ALIASES.get(split, (split,))
    chosen = next((s for s in wanted if s in labels.splits), None)
    if chosen is None:
        raise ValueError(
            f"{root}: no images in split {split!r}; splits present: "
            f"{', '.join(labels.splits) or 'none'}."
        )
    images = [image for image in labels.images if image.split == chosen]
    return (
        [labels.image_path(image) for image in images],
        [image.detections for image in images],
        list(labels.classes),
    )
