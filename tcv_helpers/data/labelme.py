"""The LabelMe layout: ``<split>/<file>`` with ``<split>/<stem>.json`` beside it.

Shapes are written by supervision and read here (supervision's reader is float32 and merges
grouped shapes). The files carry no class list, so ``classes.txt`` is written beside them and
read when present; without it the classes are the names found, sorted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from supervision.dataset.formats.labelme import detections_to_labelme_shapes

from tcv_helpers.data.labelset import (
    LabeledImage,
    LabelSet,
    Placer,
    all_classes,
    finite_number,
    image_beside,
    load_json,
    make_detections,
    per_image_files,
    positive_int,
    read_classes_file,
    relative_path,
    write_classes_file,
)
from tcv_helpers.io import atomic_write_json

#: The LabelMe version written into each file.
LABELME_VERSION = "5.5.0"


def _labelme_box(shape: Any, where: str) -> tuple[str, list[float]]:
    if not isinstance(shape, dict):
        raise ValueError(f"{where}: expected an object.")
    label = shape.get("label")
    if not isinstance(label, str) or not label.strip():
        raise ValueError(f"{where}: missing 'label'.")
    kind = shape.get("shape_type") or "polygon"
    points = shape.get("points")
    needed = 2 if kind == "rectangle" else 3
    if kind not in ("rectangle", "polygon"):
        raise ValueError(
            f"{where}: shape_type {kind!r} holds no box; only 'rectangle' and 'polygon' do."
        )
    if not isinstance(points, list) or len(points) < needed:
        raise ValueError(f"{where}: a {kind} needs at least {needed} points [x, y].")
    xs, ys = [], []
    for point in points:
        if not isinstance(point, list) or len(point) != 2:
            raise ValueError(f"{where}: each point must be [x, y], got {point!r}.")
        xs.append(finite_number(point[0], f"{where} point"))
        ys.append(finite_number(point[1], f"{where} point"))
    return label, [min(xs), min(ys), max(xs), max(ys)]


def read_labelme(src: Path) -> LabelSet:
    """Reads every LabelMe ``.json`` file under ``src`` into a label set."""
    root = src
    parsed = []
    for split, file in per_image_files(root, ".json"):
        data = load_json(file)
        if not isinstance(data, dict) or "shapes" not in data:
            raise ValueError(f"{file}: not a LabelMe file (no 'shapes').")
        width = positive_int(data.get("imageWidth"), f"{file}: imageWidth")
        height = positive_int(data.get("imageHeight"), f"{file}: imageHeight")
        if not isinstance(data["shapes"], list):
            raise ValueError(f"{file}: 'shapes' must be a list.")
        shapes = [
            _labelme_box(shape, f"{file}: shapes[{index}]")
            for index, shape in enumerate(data["shapes"])
        ]
        image_path = data.get("imagePath")
        location = image_beside(file, str(image_path) if image_path else None)
        parsed.append((split, location, width, height, shapes))
    if not parsed:
        raise FileNotFoundError(f"no LabelMe .json files under {root}.")
    classes = all_classes(
        read_classes_file(root), (label for *_, shapes in parsed for label, _ in shapes)
    )
    images = []
    for split, location, width, height, shapes in parsed:
        det = make_detections([box for _, box in shapes], [classes.index(n) for n, _ in shapes])
        images.append(LabeledImage(relative_path(location, root), width, height, det, split))
    return LabelSet(classes=classes, images=images, root=root)


def write_labelme(labelset: LabelSet, root: Path, copy_images: bool) -> None:
    """Writes ``<split>/<file>`` with ``<split>/<stem>.json`` beside it, and ``classes.txt``."""
    placer = Placer(labelset, root, copy_images)
    for image in labelset.images:
        placer.image(image, Path(image.split, image.file_name))
        target = placer.reserve(image, Path(image.split, image.file_name).with_suffix(".json"))
        document = {
            "version": LABELME_VERSION,
            "flags": {},
            "shapes": detections_to_labelme_shapes(image.detections, list(labelset.classes)),
            "imagePath": image.file_name,
            "imageData": None,
            "imageHeight": image.height,
            "imageWidth": image.width,
        }
        atomic_write_json(target, document)
    write_classes_file(root, labelset.classes)
