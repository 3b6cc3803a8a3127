"""How a dataset lies on disk: image suffixes, YOLO label files and the manifest (COURSE.md 6)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
MANAUS = "manaus-traffic"
#: Columns every ``manifest.csv`` has (COURSE.md section 6); sources may add more after them.
MANIFEST_COLUMNS = ("image", "camera_id", "timestamp", "source", "condition", "split")
MANAUS_ATTRIBUTION = 'Frame from "Manaus_traffic" v5 by tamaturgo on Roboflow Universe, CC BY 4.0.'


@dataclass(frozen=True)
class LabeledFrame:
    """An image with its objects.

    Attributes:
        image: The RGB image.
        boxes: ``(N, 4)`` float array, ``x1, y1, x2, y2`` in pixels.
        class_names: Class name of each object.
        polygons: Object outlines when known (synthetic frames), else None.
        source: Where the frame comes from.
        attribution: Licence and credit to show with it.
    """

    image: Image.Image
    boxes: np.ndarray
    class_names: list[str]
    polygons: list[np.ndarray] | None
    source: str
    attribution: str


def label_path_for(image: str | os.PathLike) -> Path:
    """The label file Ultralytics reads for an image.

    The last ``images`` folder in the path becomes ``labels`` and the suffix becomes ``.txt``;
    an image outside any ``images`` folder has its label file beside it.

    Args:
        image: The image path.

    Returns:
        The label path.

    Example:
        >>> label_path_for("data/images/train/a.jpg").as_posix()
        'data/labels/train/a.txt'
    """
    path = Path(image)
    parts = list(path.parts)
    folders = [i for i, part in enumerate(parts[:-1]) if part == "images"]
    if folders:
        parts[folders[-1]] = "labels"
    return Path(*parts).with_suffix(".txt")


def read_yolo_labels(
    label_file: str | os.PathLike, width: int, height: int, *, n_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Reads a YOLO label file (``class cx cy w h``, normalised) into pixel boxes.

    The one YOLO label parser of the course: datasets, formats, plots and widgets all read
    labels through it.

    Args:
        label_file: The ``.txt`` file; a missing file means no objects.
        width: Image width in pixels.
        height: Image height in pixels.
        n_classes: Number of classes, to check the ids; None skips the check.

    Returns:
        ``(boxes, class_ids)``: ``(N, 4)`` float64 ``x1, y1, x2, y2`` and ``(N,)`` int64, in file
        order.

    Raises:
        ValueError: On a line that is not ``class cx cy w h`` with finite numbers, a negative
            size or a class id out of range; the message names the file and the line number.
    """
    path = Path(label_file)
    boxes, ids = [], []
    if path.is_file():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            where, text = f"{path}:{number}", line.strip()
            if len(parts) != 5:
                raise ValueError(
                    f"{where}: expected 5 values 'class cx cy w h', got {len(parts)} in {text!r}."
                )
            try:
                cls = int(parts[0])
                cx, cy, w, h = (float(p) for p in parts[1:])
            except ValueError:
                raise ValueError(f"{where}: non-numeric value in {text!r}.") from None
            if not all(math.isfinite(v) for v in (cx, cy, w, h)):
                raise ValueError(f"{where}: NaN or infinite value in {text!r}.")
            if w < 0 or h < 0:
                raise ValueError(f"{where}: negative width or height in {text!r}.")
            if cls < 0 or (n_classes is not None and cls >= n_classes):
                raise ValueError(
                    f"{where}: class id {cls} is out of range 0..{(n_classes or 0) - 1}."
                )
            boxes.append(
                [
                    (cx - w / 2) * width,
                    (cy - h / 2) * height,
                    (cx + w / 2) * width,
                    (cy + h / 2) * height,
                ]
            )
            ids.append(cls)
    return np.array(boxes, dtype=np.float64).reshape(-1, 4), np.array(ids, dtype=np.int64)


def read_manifest(path: str | os.PathLike):
    """Reads a ``manifest.csv`` (COURSE.md section 6) into a pandas DataFrame, checking its columns.

    Raises:
        ValueError: If a required column is missing (the message names the file and the columns).
    """
    import pandas as pd

    file = Path(path)
    frame = pd.read_csv(file, dtype=str, keep_default_na=False)
    missing = [c for c in MANIFEST_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{file}: missing column(s) {', '.join(missing)}; expected {', '.join(MANIFEST_COLUMNS)}."
        )
    return frame
