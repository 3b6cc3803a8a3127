"""Evaluating a detector (notebook 06): :func:`evaluate_detections` and its :class:`EvalResult`.

:func:`load_ground_truth` reads the images, true boxes and class names of a dataset's split;
:func:`evaluate_detections` scores one ``sv.Detections`` of predictions per image against them:
COCO mAP50 and mAP50-95 from pycocotools (the reference the field uses), AP per class,
precision, recall and F1 at a confidence threshold, and the precision-recall curve of each class.
The result is a table (:meth:`EvalResult.to_pandas`), plain data (:meth:`EvalResult.to_dict`)
and figures you ask for (:meth:`EvalResult.plot`, :meth:`EvalResult.plot_pr`).

The metrics themselves are in :mod:`tcv_helpers.model.metrics`, the same numbers per camera,
condition and box size in :mod:`tcv_helpers.model.slices`, the errors behind them in
:mod:`tcv_helpers.model.errors`, and the written report and model card in
:mod:`tcv_helpers.model.report`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import supervision as sv
from matplotlib.figure import Figure

from tcv_helpers.model.metrics import (
    RECALL_THRESHOLDS,
    check_inputs,
    check_threshold,
    cocoeval_precision,
    counts_at,
    maps_from_precision,
    precision_recall_f1,
)

if TYPE_CHECKING:
    import pandas as pd


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


def finite_or_none(value: Any) -> Any:
    """``value``, or None for a NaN or infinite float (JSON has neither).

    Args:
        value: Any value.

    Returns:
        The value, or None.
    """
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
            "f1": finite_or_none(self.f1),
            "conf": self.conf,
            "iou": self.iou,
            "images": self.n_images,
            "gt_boxes": self.n_gt,
            "predictions": self.n_predictions,
            "class_names": list(self.class_names),
            "per_class": [
                {k: finite_or_none(v) for k, v in vars(row).items()} for row in self.per_class
            ],
            "map_by_size": {
                size: {"map50": finite_or_none(a), "map50_95": finite_or_none(b)}
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
    n_classes = check_inputs(ground_truth, predictions, class_names)
    assert n_classes is not None
    conf = check_threshold(conf, "conf")
    iou = check_threshold(iou, "iou")
    if image_ids is None:
        ids = tuple(str(i) for i in range(len(ground_truth)))
    else:
        ids = tuple(str(i) for i in image_ids)
        if len(ids) != len(ground_truth):
            raise ValueError(f"{len(ids)} image_ids for {len(ground_truth)} images.")
    n_gt = sum(len(g) for g in ground_truth)
    if n_gt == 0:
        raise ValueError("no ground-truth box in any image: mAP and recall are undefined.")
    precision_array = cocoeval_precision(ground_truth, predictions, n_classes)
    map50, map50_95 = maps_from_precision(precision_array)
    counts = counts_at(ground_truth, predictions, n_classes, conf=conf, iou_threshold=iou)
    per_class, curves = [], {}
    for k, name in enumerate(class_names):
        at_all = precision_array[:, :, k, 0, -1]  # (T, R)
        has_gt = bool((at_all > -1).any())
        ap50 = float(at_all[0].mean()) if has_gt else math.nan
        ap50_95 = float(at_all.mean()) if has_gt else math.nan
        p, r, f = precision_recall_f1(int(counts.tp[k]), int(counts.fp[k]), int(counts.fn[k]))
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
    precision, recall, f1 = precision_recall_f1(
        int(counts.tp.sum()), int(counts.fp.sum()), int(counts.fn.sum())
    )
    by_size = {}
    for size in ("small", "medium", "large"):
        a, b = maps_from_precision(precision_array, size)
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
# Ground truth from a dataset
# --------------------------------------------------------------------------------------------


def load_ground_truth(
    root: str | os.PathLike, split: str = "val"
) -> tuple[list[Path], list[sv.Detections], list[str]]:
    """The images, boxes and class names of one split of a YOLO dataset.

    The dataset is read by :class:`~tcv_helpers.data.dataset.Dataset`, so the images are the
    ones Ultralytics validates on (``.txt`` lists and Roboflow's ``../valid/images`` included).

    Args:
        root: The dataset folder (with ``data.yaml``) or the ``data.yaml`` file.
        split: The split; ``val`` and ``valid`` (Roboflow's name) stand for each other.

    Returns:
        ``(image_paths, ground_truth, class_names)``: absolute image paths in Ultralytics'
        order (sorted by path), one ``sv.Detections`` per image, and the class names.

    Raises:
        FileNotFoundError: If ``root`` or ``data.yaml`` is missing.
        ValueError: If data.yaml is unusable or names a split that does not exist
            (:class:`~tcv_helpers.data.dataset.DatasetError`), if the dataset has no such
            split (the message lists the splits there are), or on malformed labels.

    Example:
        >>> paths, gt, names = load_ground_truth(cfg.data_dir / "synth")  # doctest: +SKIP
    """
    from tcv_helpers.data.dataset import Dataset

    dataset = Dataset.from_yaml(root)
    paths, truth = dataset.ground_truth(split)
    return paths, truth, list(dataset.names)
