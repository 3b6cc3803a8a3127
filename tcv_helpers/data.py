"""Reading labelled frames: YOLO label files and one example frame for the early notebooks."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
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
    from tcv_helpers.synth import render_frame

    synthetic = render_frame(seed=seed, vehicles=10)
    return LabeledFrame(
        image=synthetic.image,
        boxes=synthetic.boxes,
        class_names=synthetic.class_names,
        polygons=synthetic.polygons,
        source=f"synthetic frame (seed {seed})",
        attribution="Synthetic frame drawn by tcv_helpers.synth; free to use.",
    )


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


def data_card(
    root: str | os.PathLike,
    *,
    name: str,
    license: str,
    source: str,
    intended_use: str = "Training and evaluating vehicle detectors for counting traffic on fixed cameras.",
) -> str:
    """A data card (Markdown) for a YOLO dataset with a manifest: what is in it, and its limits.

    Args:
        root: The dataset folder (``data.yaml``, ``manifest.csv``, ``labels/``).
        name: Dataset name.
        license: Its licence.
        source: Where it comes from.
        intended_use: What it is for.

    Returns:
        The card's Markdown text.
    """
    root = Path(root)
    manifest = read_manifest(root / "manifest.csv")
    names = yaml.safe_load((root / "data.yaml").read_text(encoding="utf-8"))["names"]
    names = [names[k] for k in sorted(names)] if isinstance(names, dict) else list(names)
    counts = {n: 0 for n in names}
    for image in manifest["image"]:
        label = label_path_for(root / image)
        if label.is_file():
            for line in label.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    counts[names[int(line.split()[0])]] += 1
    by_split = manifest.groupby("split")["image"].count().to_dict()
    by_condition = manifest.groupby("condition")["image"].count().to_dict()
    cameras = manifest.groupby("split")["camera_id"].nunique().to_dict()
    leaked = manifest.groupby("camera_id")["split"].nunique()
    rare = [n for n, c in counts.items() if 0 < c < max(counts.values()) / 10]
    lines = [
        f"# Data card: {name}",
        "",
        f"- **Source:** {source}",
        f"- **Licence:** {license}",
        f"- **Intended use:** {intended_use}",
        f"- **Images:** {len(manifest)} ({', '.join(f'{k} {v}' for k, v in sorted(by_split.items()))})",
        f"- **Cameras:** {manifest['camera_id'].nunique()} ({', '.join(f'{k} {v}' for k, v in sorted(cameras.items()))} per split)",
        f"- **Conditions:** {', '.join(f'{k} {v}' for k, v in sorted(by_condition.items()))}",
        f"- **Boxes per class:** {', '.join(f'{k} {v}' for k, v in counts.items() if v)}",
        "",
        "## Known limitations",
        "",
        f"- Cameras in more than one split (leakage): {int((leaked > 1).sum())}.",
        f"- Rare classes (under a tenth of the most common): {', '.join(rare) or 'none'}.",
        "- Classes without any box: "
        + (", ".join(n for n, c in counts.items() if c == 0) or "none")
        + ".",
        "- People and licence plates may be visible in real frames: blur them before sharing.",
    ]
    return "\n".join(lines) + "\n"
