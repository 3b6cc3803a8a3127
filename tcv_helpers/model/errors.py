"""Error analysis (notebook 06): which boxes a detector gets wrong, and how.

:func:`error_cases` sorts every mistake on every image into one of :data:`ERROR_KINDS` (a false
alarm, a miss, a box in the right place with the wrong class, or the right class too far off);
:func:`error_table` lists them and :func:`plot_error_gallery` shows them as crops.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import supervision as sv
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from tcv_helpers.model.metrics import box_iou, check_inputs, check_threshold

if TYPE_CHECKING:
    import pandas as pd
    from PIL import Image

#: The kinds of error :func:`error_cases` finds.
ERROR_KINDS: tuple[str, ...] = ("false_positive", "missed", "poor_localisation", "wrong_class")


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
        ValueError: On the same bad input as
            :func:`~tcv_helpers.model.evaluate.evaluate_detections`, or ``min_iou`` above ``iou``.
    """
    check_inputs(ground_truth, predictions, None)
    conf = check_threshold(conf, "conf")
    iou = check_threshold(iou, "iou")
    min_iou = check_threshold(min_iou, "min_iou")
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
