"""A labelled dataset in memory, in any format: :class:`LabelSet` of :class:`LabeledImage`.

Each image's boxes are a ``supervision`` :class:`~supervision.Detections` (``xyxy`` float64 pixels
and ``class_id``), the one detection type the course shares between backends. The format modules
(:mod:`~tcv_helpers.data.yolo`, :mod:`~tcv_helpers.data.coco`, :mod:`~tcv_helpers.data.voc`,
:mod:`~tcv_helpers.data.labelme`, :mod:`~tcv_helpers.data.cvat`) read a layout into a label set
and write one back; the helpers they share (placing files, parsing XML and JSON with errors that
name the file, the ``classes.txt`` beside formats without a class list) live here too.
"""

from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv

from tcv_helpers.data.labels import IMAGE_SUFFIXES
from tcv_helpers.io import atomic_write_bytes, atomic_write_text

#: Splits come in this order; others follow, sorted by name.
SPLIT_ORDER: tuple[str, ...] = ("train", "valid", "val", "test")


#: Class list written beside formats that have none of their own (``voc``, ``labelme``).
CLASSES_FILE = "classes.txt"


def make_detections(
    xyxy: Iterable[Iterable[float]] | np.ndarray, class_id: Iterable[int] | np.ndarray
) -> sv.Detections:
    """Builds the detections of one labelled image: float64 pixel boxes and integer class ids.

    Args:
        xyxy: ``(N, 4)`` boxes ``x1, y1, x2, y2`` in pixels (an empty sequence for none).
        class_id: ``(N,)`` class ids, indexes into :attr:`LabelSet.classes`.

    Returns:
        The detections, ``xyxy`` as float64 and ``class_id`` as int64.

    Raises:
        ValueError: If the shapes disagree.

    Example:
        >>> make_detections([[0, 0, 10, 5]], [2]).xyxy.tolist()
        [[0.0, 0.0, 10.0, 5.0]]
    """
    boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    ids = np.asarray(class_id, dtype=np.int64).reshape(-1)
    if len(boxes) != len(ids):
        raise ValueError(f"{len(boxes)} boxes but {len(ids)} class ids.")
    return sv.Detections(xyxy=boxes, class_id=ids)


@dataclass
class LabeledImage:
    """One image and its boxes.

    Attributes:
        image: Path of the image file relative to the dataset root (:attr:`LabelSet.root`);
            absolute when the labels point outside the root.
        width: Image width in pixels.
        height: Image height in pixels.
        detections: The boxes: ``xyxy`` float pixels and ``class_id``.
        split: The split the image belongs to (``train``, ``valid``, ``test``, ...).
    """

    image: Path
    width: int
    height: int
    detections: sv.Detections = field(default_factory=lambda: make_detections([], []))
    split: str = "train"

    def __post_init__(self) -> None:
        self.image = Path(self.image)
        if self.width <= 0 or self.height <= 0:
            raise ValueError(
                f"{self.image}: image size must be positive, got {self.width}x{self.height}."
            )
        if self.detections.class_id is None:
            raise ValueError(f"{self.image}: detections need a class_id.")

    @property
    def file_name(self) -> str:
        """The image's file name, without folders."""
        return self.image.name


@dataclass
class LabelSet:
    """A labelled dataset in memory.

    Attributes:
        classes: Class names; a detection's ``class_id`` indexes this list.
        images: The images, in order. :func:`read_labels` gives splits in :data:`SPLIT_ORDER`;
            within a split, per-image formats (YOLO, VOC, LabelMe) sort by file name and COCO and
            CVAT keep their file's order, so writing and reading back keeps the order.
        root: The folder image paths are relative to, or None for a set built in memory whose
            image paths are absolute or relative to the working folder.
    """

    classes: list[str]
    images: list[LabeledImage]
    root: Path | None = None

    def __post_init__(self) -> None:
        self.classes = [str(name) for name in self.classes]
        self.images = list(self.images)
        if self.root is not None:
            self.root = Path(self.root)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def splits(self) -> list[str]:
        """The splits present, in :data:`SPLIT_ORDER`."""
        return sorted({image.split for image in self.images}, key=split_key)

    def box_counts(self) -> dict[str, int]:
        """Boxes per class name, every class listed (zero when it has no box).

        Returns:
            ``{class name: number of boxes}`` in class-id order.

        Example:
            >>> LabelSet(["car", "bus"], []).box_counts()
            {'car': 0, 'bus': 0}
        """
        counts = Counter(int(cid) for image in self.images for cid in image.detections.class_id)
        return {name: counts.get(index, 0) for index, name in enumerate(self.classes)}

    def image_path(self, image: LabeledImage) -> Path:
        """Where an image's file is: the root joined with its relative path.

        Args:
            image: One of :attr:`images`.

        Returns:
            The path of the image file.
        """
        return image.image if self.root is None else self.root / image.image


def image_class_counts(labelset: LabelSet) -> list[Counter[str]]:
    """Boxes per class name of every image, in :attr:`LabelSet.images` order (for splitting)."""
    return [
        Counter(labelset.classes[int(c)] for c in image.detections.class_id)
        for image in labelset.images
    ]


def camera_groups(labelset: LabelSet) -> list[str]:
    """The camera of every image, in :attr:`LabelSet.images` order (to split by camera).

    Frames of one camera look alike, so a split must keep each camera on one side. The camera is
    the ``camera_id`` of the dataset's ``manifest.csv`` (COURSE.md section 6; the course writes
    one for every dataset it prepares); without a manifest, or for an image the manifest does not
    list, it is the file name's part before the first ``_`` (``cam-03_000123.jpg`` -> ``cam-03``).

    Args:
        labelset: The labels, read from a dataset folder (:attr:`LabelSet.root` set).

    Returns:
        One camera id per image.
    """
    from tcv_helpers.data.labels import read_manifest

    cameras: dict[str, str] = {}
    manifest = labelset.root / "manifest.csv" if labelset.root is not None else None
    if manifest is not None and manifest.is_file():
        table = read_manifest(manifest)
        cameras = {
            Path(image).name: camera
            for image, camera in zip(table["image"], table["camera_id"], strict=True)
            if camera
        }
    return [cameras.get(im.file_name) or im.file_name.split("_")[0] for im in labelset.images]


def split_key(split: str) -> tuple[int, str]:
    """Sort key of a split name: :data:`SPLIT_ORDER` first, then others by name."""
    return (SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER), split)


def relative_path(path: Path, root: Path) -> Path:
    """``path`` relative to ``root`` (normalised, no symlinks followed), absolute if outside."""
    normal = Path(os.path.normpath(path))
    try:
        return normal.relative_to(os.path.normpath(root))
    except ValueError:
        return Path(os.path.abspath(normal))


def split_of(relative_dir: Path, skip: Iterable[str] = ()) -> str:
    """The split named by the first folder of a relative location, else ``train``."""
    parts = [p for p in relative_dir.parts if p not in (".", "")]
    if parts and parts[0] not in skip and not Path(parts[0]).is_absolute():
        return parts[0]
    return "train"


def read_classes_file(root: Path) -> list[str]:
    """The class names of ``root/classes.txt`` (one a line), or ``[]`` without one."""
    file = root / CLASSES_FILE
    if not file.is_file():
        return []
    return [ln.strip() for ln in file.read_text(encoding="utf-8").splitlines() if ln.strip()]


def write_classes_file(root: Path, classes: list[str]) -> None:
    """Writes ``root/classes.txt``: one class name a line, in class-id order."""
    atomic_write_text(root / CLASSES_FILE, "".join(f"{name}\n" for name in classes))


def all_classes(known: list[str], found: Iterable[str]) -> list[str]:
    """``known`` classes in their order, then classes only found in labels, sorted."""
    return known + sorted(set(found) - set(known))


class Placer:
    """Places files at their destination, refusing two images on one file."""

    def __init__(self, labelset: LabelSet, root: Path, copy_images: bool) -> None:
        self.labelset, self.root, self.copy_images = labelset, root, copy_images
        self.used: dict[Path, Path] = {}

    def reserve(self, image: LabeledImage, relative: Path) -> Path:
        """Reserves ``root / relative`` for a file of ``image`` and returns the path."""
        target = self.root / relative
        if target in self.used:
            raise ValueError(
                f"{image.image} and {self.used[target]} would both be written to {target}: "
                "file names (and stems) must be unique within a split."
            )
        self.used[target] = image.image
        return target

    def image(self, image: LabeledImage, relative: Path) -> Path:
        """Reserves the image's destination, copies it there when asked, returns the path."""
        target = self.reserve(image, relative)
        if self.copy_images:
            source = self.labelset.image_path(image)
            if not source.is_file():
                raise FileNotFoundError(f"image {source} does not exist; cannot copy it.")
            atomic_write_bytes(target, source.read_bytes())
        return target


def indent_xml(element: ET.Element) -> bytes:
    """An XML element as indented UTF-8 bytes with a declaration."""
    ET.indent(element, space="  ")
    return ET.tostring(element, encoding="utf-8", xml_declaration=True) + b"\n"


def parse_xml(path: Path) -> ET.Element:
    """The root element of an XML file; ``ValueError`` naming the file when it is not XML."""
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ValueError(f"{path}: not valid XML ({exc}).") from exc


def load_json(path: Path) -> Any:
    """The content of a JSON file; ``ValueError`` naming the file when it is not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}).") from exc


def positive_int(value: Any, where: str) -> int:
    """``value`` as a positive integer; ``ValueError`` naming ``where`` otherwise."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected a positive integer, got {value!r}.") from None
    if not number.is_integer() or number <= 0:
        raise ValueError(f"{where}: expected a positive integer, got {value!r}.")
    return int(number)


def finite_number(value: Any, where: str) -> float:
    """``value`` as a finite float; ``ValueError`` naming ``where`` otherwise."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected a number, got {value!r}.") from None
    if not math.isfinite(number):
        raise ValueError(f"{where}: expected a finite number, got {value!r}.")
    return number


def per_image_files(root: Path, suffix: str) -> list[tuple[str, Path]]:
    """``(split, file)`` for every ``*suffix`` file under ``root`` (one label file per image),
    the split being the first folder below ``root``; sorted by split, then path."""
    files = [p for p in root.rglob(f"*{suffix}") if p.is_file()]
    pairs = [(split_of(p.parent.relative_to(root), skip=("Annotations",)), p) for p in files]
    return sorted(pairs, key=lambda pair: (split_key(pair[0]), pair[1].relative_to(root)))


def image_beside(label_file: Path, file_name: str | None) -> Path:
    """The image a per-image label file names, else the image with the same stem beside it."""
    folder = label_file.parent
    if file_name:
        named = Path(os.path.normpath(folder / file_name.replace("\\", "/")))
        if named.is_file():
            return named
        if folder.name == "Annotations" and (folder.parent / "JPEGImages" / file_name).is_file():
            return folder.parent / "JPEGImages" / file_name
    for suffix in IMAGE_SUFFIXES:
        for candidate in (label_file.with_suffix(suffix), label_file.with_suffix(suffix.upper())):
            if candidate.is_file():
                return candidate
    return folder / file_name if file_name else label_file.with_suffix(".jpg")
