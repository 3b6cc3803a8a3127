"""Metrics by slice (notebook 06): per camera, per condition (day, night, ...) and per box size.

A single mAP hides where a detector fails. :func:`evaluate_slices` evaluates the images of each
value of a slice on their own (and the boxes of each COCO size range), so a camera or a
condition that does worse stands out; :func:`slices_from_manifest` reads the slice values of
each image from a dataset's ``manifest.csv``.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import supervision as sv

from tcv_helpers.model.metrics import (
    AREA_RANGES,
    check_inputs,
    check_threshold,
    cocoeval_precision,
    counts_at,
    maps_from_precision,
    precision_recall_f1,
)

if TYPE_CHECKING:
    import pandas as pd

#: The ``slice`` of the rows by COCO box size (``small``, ``medium``, ``large``).
SIZE_SLICE = "box_size"


def _slice_row(
    slice_name: str,
    value: str,
    ground_truth: Sequence[sv.Detections],
    predictions: Sequence[sv.Detections],
    n_classes: int,
    conf: float,
    iou_threshold: float,
) -> dict[str, Any]:
    counts = counts_at(ground_truth, predictions, n_classes, conf=conf, iou_threshold=iou_threshold)
    if counts.gt.sum():
        map50, map50_95 = maps_from_precision(
            cocoeval_precision(ground_truth, predictions, n_classes)
        )
    else:
        map50 = map50_95 = math.nan
    precision, recall, f1 = precision_recall_f1(
        int(counts.tp.sum()), int(counts.fp.sum()), int(counts.fn.sum())
    )
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
        ValueError: On the same bad input as
            :func:`~tcv_helpers.model.evaluate.evaluate_detections`, a slice whose length is not
            the number of images, or a slice named ``box_size`` or ``all``.
    """
    import pandas as pd

    n_classes = check_inputs(ground_truth, predictions, class_names)
    assert n_classes is not None
    conf = check_threshold(conf, "conf")
    iou = check_threshold(iou, "iou")
    n_images = len(ground_truth)
    for name, values in slices.items():
        if name in (SIZE_SLICE, "all"):
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
        array = cocoeval_precision(ground_truth, predictions, n_classes) if has_gt else None
        for size in ("small", "medium", "large"):
            counts = counts_at(
                ground_truth,
                predictions,
                n_classes,
                conf=conf,
                iou_threshold=iou,
                area=AREA_RANGES[size],
            )
            map50, map50_95 = (
                maps_from_precision(array, size) if array is not None else (-1.0, -1.0)
            )
            precision, recall, f1 = precision_recall_f1(
                int(counts.tp.sum()), int(counts.fp.sum()), int(counts.fn.sum())
            )
            rows.append(
                {
                    "slice": SIZE_SLICE,
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
        image_paths: The images, absolute or relative to ``root`` (as
            :func:`~tcv_helpers.model.evaluate.load_ground_truth` gives them).
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
