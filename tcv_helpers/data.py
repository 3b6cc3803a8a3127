"""Reading labelled frames: YOLO label files and one example frame for the early notebooks."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from tcv_helpers.synth import render_frame

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
MANAUS = "manaus-traffic"
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


def read_yolo_labels(
    label_file: str | os.PathLike, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """Reads a YOLO label file (``class cx cy w h``, normalised) into pixel boxes.

    Args:
        label_file: The ``.txt`` file; a missing file means no objects.
        width: Image width in pixels.
        height: Image height in pixels.

    Returns:
        ``(boxes, class_ids)``: ``(N, 4)`` ``x1, y1, x2, y2`` floats and ``(N,)`` ints.

    Raises:
        ValueError: On a malformed line, naming the file and the line number.
    """
    path = Path(label_file)
    boxes, ids = [], []
    if path.is_file():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 5:
                raise ValueError(
                    f"{path}:{number}: expected 5 values 'class cx cy w h', got {len(parts)}."
                )
            try:
                cls = int(parts[0])
                cx, cy, w, h = (float(p) for p in parts[1:])
            except ValueError:
                raise ValueError(
                    f"{path}:{number}: non-numeric value in {line.strip()!r}."
                ) from None
            if not all(math.isfinite(v) for v in (cx, cy, w, h)):
                raise ValueError(f"{path}:{number}: NaN or infinite value in {line.strip()!r}.")
            boxes.append(
                [
                    (cx - w / 2) * width,
                    (cy - h / 2) * height,
                    (cx + w / 2) * width,
                    (cy + h / 2) * height,
                ]
            )
            ids.append(cls)
    return np.array(boxes, dtype=np.float32).reshape(-1, 4), np.array(ids, dtype=np.int64)


def _sample_example(sample_data: Path) -> LabeledFrame | None:
    root = sample_data / MANAUS
    if not (root / "data.yaml").is_file():
        return None
    names = yaml.safe_load((root / "data.yaml").read_text(encoding="utf-8"))["names"]
    names = [names[k] for k in sorted(names)] if isinstance(names, dict) else list(names)
    images = sorted(
        p for p in (root / "test" / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
    )
    best: tuple[int, int, Path] | None = None
    for image_path in images:  # the test frame showing the most classes, then the most objects
        label = root / "test" / "labels" / f"{image_path.stem}.txt"
        if label.is_file():
            ids = [
                ln.split()[0] for ln in label.read_text(encoding="utf-8").splitlines() if ln.strip()
            ]
            key = (len(set(ids)), len(ids), image_path)
            if best is None or key[:2] > best[:2]:
                best = key
    if best is None:
        return None
    image = Image.open(best[2]).convert("RGB")
    boxes, ids = read_yolo_labels(root / "test" / "labels" / f"{best[2].stem}.txt", *image.size)
    return LabeledFrame(
        image=image,
        boxes=boxes,
        class_names=[names[i] for i in ids],
        polygons=None,
        source=f"sample data: {MANAUS}/test/images/{best[2].name}",
        attribution=MANAUS_ATTRIBUTION,
    )


def example_frame(sample_data: Path | None = None, *, seed: int = 7) -> LabeledFrame:
    """One labelled traffic-camera frame to look at.

    A real frame from the sample data when ``sample_data`` points at it, else a synthetic frame
    (which also knows the exact outline of every vehicle).

    Args:
        sample_data: The folder ``TCV_SAMPLE_DATA`` names (``cfg.sample_data``), or None.
        seed: Seed of the synthetic frame.

    Returns:
        The frame and its labels.
    """
    if sample_data is not None:
        frame = _sample_example(Path(sample_data))
        if frame is not None:
            return frame
    synthetic = render_frame(seed=seed, vehicles=10)
    return LabeledFrame(
        image=synthetic.image,
        boxes=synthetic.boxes,
        class_names=synthetic.class_names,
        polygons=synthetic.polygons,
        source=f"synthetic frame (seed {seed})",
        attribution="Synthetic frame drawn by tcv_helpers.synth; free to use.",
    )
