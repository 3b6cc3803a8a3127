"""The COCO layout: ``annotations/instances_<split>.json`` and ``images/<split>/<file>``.

Read here (float64, and errors that name the file and the annotation: supervision's reader is
float32); the annotations written are built by supervision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from supervision.dataset.formats.coco import (
    classes_to_coco_categories,
    detections_to_coco_annotations,
)

from tcv_helpers.data.labelset import (
    LabeledImage,
    LabelSet,
    Placer,
    finite_number,
    load_json,
    make_detections,
    positive_int,
    relative_path,
    split_key,
)
from tcv_helpers.io import atomic_write_json


def _coco_files(src: Path) -> list[tuple[str, Path]]:
    if src.is_file():
        files = [src]
    else:
        folder = src / "annotations"
        files = sorted(folder.glob("instances_*.json")) if folder.is_dir() else []
        if not files and folder.is_dir():  # other names: every JSON file is one split
            files = sorted(folder.glob("*.json"))
        if not files:
            raise FileNotFoundError(
                f"no COCO annotation files in {folder} (annotations/instances_<split>.json)."
            )
    pairs = []
    for file in files:
        stem = file.stem
        split = stem[len("instances_") :] if stem.startswith("instances_") else stem
        pairs.append((split, file))
    return sorted(pairs, key=lambda pair: split_key(pair[0]))


def _coco_image_location(root: Path, split: str, file_name: str) -> Path:
    name = file_name.replace("\\", "/")
    candidates = [root / "images" / split / name, root / split / name, root / "images" / name]
    candidates.append(root / name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return candidates[0]


def read_coco(src: Path) -> LabelSet:
    """Reads ``annotations/instances_<split>.json`` (or one such file) into a label set."""
    root = src
    if src.is_file():
        root = src.parent.parent if src.parent.name == "annotations" else src.parent
    classes: list[str] = []
    images: list[LabeledImage] = []
    for split, file in _coco_files(src):
        data = load_json(file)
        if not isinstance(data, dict):
            raise ValueError(f"{file}: expected a JSON object with images and annotations.")
        categories = data.get("categories") or []
        try:
            cats = sorted((int(c["id"]), str(c["name"])) for c in categories)
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f"{file}: every category needs an integer 'id' and a 'name'."
            ) from None
        names = [name for _, name in cats]
        if not classes:
            classes = names
        elif names and names != classes:
            raise ValueError(
                f"{file}: categories {names} differ from those of the other splits {classes}."
            )
        category_index = {cid: classes.index(name) for cid, name in cats}
        entries: dict[Any, tuple[int, str, int, int]] = {}
        for position, entry in enumerate(data.get("images") or []):
            where = f"{file}: images[{position}]"
            if not isinstance(entry, dict) or "id" not in entry or "file_name" not in entry:
                raise ValueError(f"{where}: needs 'id' and 'file_name'.")
            if entry["id"] in entries:
                raise ValueError(f"{where}: duplicate image id {entry['id']!r}.")
            entries[entry["id"]] = (
                position,
                str(entry["file_name"]),
                positive_int(entry.get("width"), f"{where} width"),
                positive_int(entry.get("height"), f"{where} height"),
            )
        boxes: dict[Any, list[list[float]]] = {key: [] for key in entries}
        ids: dict[Any, list[int]] = {key: [] for key in entries}
        for position, ann in enumerate(data.get("annotations") or []):
            label = (
                f"annotations[{position}] (id {ann.get('id')!r})"
                if isinstance(ann, dict)
                else f"annotations[{position}]"
            )
            where = f"{file}: {label}"
            if not isinstance(ann, dict):
                raise ValueError(f"{where}: expected an object.")
            if ann.get("image_id") not in entries:
                raise ValueError(
                    f"{where} references image id {ann.get('image_id')!r}, which "
                    "is not in 'images'."
                )
            if ann.get("category_id") not in category_index:
                raise ValueError(
                    f"{where} references category id {ann.get('category_id')!r}, "
                    "which is not in 'categories'."
                )
            bbox = ann.get("bbox")
            if not isinstance(bbox, list) or len(bbox) != 4:
                raise ValueError(f"{where}: 'bbox' must be [x, y, width, height].")
            x, y, w, h = (finite_number(v, f"{where} bbox") for v in bbox)
            if w < 0 or h < 0:
                raise ValueError(f"{where}: bbox has a negative width or height.")
            boxes[ann["image_id"]].append([x, y, x + w, y + h])
            ids[ann["image_id"]].append(category_index[ann["category_id"]])
        for key, (_, file_name, width, height) in sorted(entries.items(), key=lambda kv: kv[1][0]):
            location = _coco_image_location(root, split, file_name)
            det = make_detections(boxes[key], ids[key])
            images.append(LabeledImage(relative_path(location, root), width, height, det, split))
    return LabelSet(classes=classes, images=images, root=root)


def write_coco(labelset: LabelSet, root: Path, copy_images: bool) -> None:
    """Writes ``images/<split>/`` and one ``annotations/instances_<split>.json`` per split."""
    placer = Placer(labelset, root, copy_images)
    for split in labelset.splits:
        coco_images, coco_annotations = [], []
        annotation_id = 1
        for image_id, image in enumerate(
            (im for im in labelset.images if im.split == split), start=1
        ):
            placer.image(image, Path("images", split, image.file_name))
            coco_images.append(
                {
                    "id": image_id,
                    "file_name": image.file_name,
                    "width": image.width,
                    "height": image.height,
                }
            )
            made, annotation_id = detections_to_coco_annotations(
                detections=image.detections, image_id=image_id, annotation_id=annotation_id
            )
            for ann in made:  # plain floats (exact repr in JSON), not numpy scalars
                ann["bbox"] = [float(v) for v in ann["bbox"]]
                ann["area"] = float(ann["area"])
            coco_annotations.extend(made)
        document = {
            "info": {"description": f"{split} split, written by tcv_helpers.data.coco"},
            "licenses": [],
            "categories": classes_to_coco_categories(classes=list(labelset.classes)),
            "images": coco_images,
            "annotations": coco_annotations,
        }
        atomic_write_json(root / "annotations" / f"instances_{split}.json", document)
