"""Label formats: read, write and convert box labels, and map classes into the project taxonomy.

A labelled dataset is held in memory as a :class:`LabelSet`: the class names and one
:class:`LabeledImage` per image, whose boxes are a ``supervision`` :class:`~supervision.Detections`
(``xyxy`` float64 pixels and ``class_id``), the one detection type the course shares between
backends. :func:`read_labels` and :func:`write_labels` move a label set from and to disk in five
layouts (``yolo``, ``coco``, ``voc``, ``labelme``, ``cvat``); :func:`convert` chains them and is
the engine behind ``tcv data convert``. :func:`map_classes` renames classes into
:data:`~tcv_helpers.project.PROJECT_CLASSES` and reports what it did.

On-disk layouts written (and read back):

* ``yolo``: ``data.yaml`` (``train``/``val``/``test`` folders and ``names``, as Ultralytics reads
  it) and ``<split>/images`` with ``<split>/labels`` (the Roboflow layout). Reading also accepts
  Ultralytics' ``images/<split>`` with ``labels/<split>``, Roboflow's ``../train/images`` paths,
  and a folder without split keys in ``data.yaml``.
* ``coco``: ``annotations/instances_<split>.json`` and ``images/<split>/<file>``.
* ``voc``: ``<split>/<file>`` with ``<split>/<stem>.xml`` beside it (LabelImg, Roboflow's export).
* ``labelme``: ``<split>/<file>`` with ``<split>/<stem>.json`` beside it.
* ``cvat``: ``annotations.xml`` (CVAT for images 1.1) and ``images/<split>/<file>``.

``voc`` and ``labelme`` files carry no class list, so ``classes.txt`` (one name a line, in class-id
order) is written beside them and used when present; without it the classes are the names found,
sorted.

Which code does the work: YOLO is written here in full because supervision's reader parses in
float32 and its writer keeps 5 decimals, which breaks exact round trips. COCO is read here (float64,
and errors that name the file and annotation) and its annotations are built by supervision.
Pascal VOC objects are read and written by supervision (integer pixels, its devkit convention is
exact for them). LabelMe shapes are written by supervision and read here (its reader is float32);
CVAT has no supervision support and is written here with ``xml.etree``.

Images are copied (not hard-linked), so editing a converted dataset never reaches the source.
"""

from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import supervision as sv
import yaml
from PIL import Image
from supervision.dataset.formats.coco import (
    classes_to_coco_categories,
    detections_to_coco_annotations,
)
from supervision.dataset.formats.labelme import detections_to_labelme_shapes
from supervision.dataset.formats.pascal_voc import (
    detections_from_xml_obj,
    object_to_pascal_voc,
)

from tcv_helpers.data.labels import IMAGE_SUFFIXES, read_yolo_labels
from tcv_helpers.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from tcv_helpers.project import PROJECT_CLASSES

if TYPE_CHECKING:
    import pandas as pd

#: The label formats :func:`read_labels`, :func:`write_labels` and :func:`convert` know.
FORMATS: tuple[str, ...] = ("yolo", "coco", "voc", "labelme", "cvat")
#: Other spellings accepted for a format name.
FORMAT_ALIASES: dict[str, str] = {
    "ultralytics": "yolo",
    "pascal_voc": "voc",
    "pascal-voc": "voc",
    "labelimg": "voc",
    "cvat_images": "cvat",
    "cvat-images": "cvat",
}
#: Splits come in this order; others follow, sorted by name.
SPLIT_ORDER: tuple[str, ...] = ("train", "valid", "val", "test")
#: Class list written beside formats that have none of their own (``voc``, ``labelme``).
CLASSES_FILE = "classes.txt"
#: Decimals of the normalised numbers in YOLO label files.
YOLO_DECIMALS = 6
#: Decimals of CVAT box corners (CVAT itself writes 2).
CVAT_DECIMALS = 2

#: How the classes of the sample data (``manaus-traffic``) map into the project taxonomy.
MANAUS_TO_PROJECT: dict[str, str | None] = {
    "biker": "motorcycle",
    "car": "car",
    "cyclist": "bicycle",
    "people": "person",
    "truck": "truck",
}

_EXIF_ORIENTATION = 274
_QUARTER_TURNS = (5, 6, 7, 8)


# --------------------------------------------------------------------------------------------
# In-memory representation
# --------------------------------------------------------------------------------------------


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
        return sorted({image.split for image in self.images}, key=_split_key)

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


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def normalize_format(fmt: str) -> str:
    """Checks a format name and returns its canonical spelling.

    Args:
        fmt: A name from :data:`FORMATS` or :data:`FORMAT_ALIASES`, any case.

    Returns:
        The canonical name.

    Raises:
        ValueError: For an unknown name; the message lists the known ones.

    Example:
        >>> normalize_format("Pascal_VOC")
        'voc'
    """
    name = str(fmt).strip().lower()
    name = FORMAT_ALIASES.get(name, name)
    if name not in FORMATS:
        raise ValueError(f"unknown label format {fmt!r}; known formats: {', '.join(FORMATS)}.")
    return name


def read_labels(src: str | os.PathLike, fmt: str) -> LabelSet:
    """Reads a labelled dataset from disk.

    Args:
        src: The dataset folder (for ``yolo`` it may be the ``data.yaml`` file, for ``coco`` one
            ``instances_<split>.json`` file, for ``cvat`` the ``annotations.xml`` file).
        fmt: One of :data:`FORMATS`.

    Returns:
        The label set, its ``root`` the dataset folder.

    Raises:
        FileNotFoundError: If ``src`` or a file the layout needs is missing.
        ValueError: On an unknown format or malformed labels; the message names the file and the
            line or element.

    Example:
        >>> labels = read_labels("data/manaus-traffic", "yolo")  # doctest: +SKIP
        >>> labels.classes  # doctest: +SKIP
        ['biker', 'car', 'cyclist', 'people', 'truck']
    """
    name = normalize_format(fmt)
    path = Path(src)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist.")
    readers: dict[str, Callable[[Path], LabelSet]] = {
        "yolo": _read_yolo,
        "coco": _read_coco,
        "voc": _read_voc,
        "labelme": _read_labelme,
        "cvat": _read_cvat,
    }
    return readers[name](path)


def write_labels(
    labelset: LabelSet,
    dst: str | os.PathLike,
    fmt: str,
    *,
    copy_images: bool = True,
) -> Path:
    """Writes a label set to disk in the standard layout of ``fmt`` (see the module docstring).

    Every file is written atomically. Images are copied from ``labelset.root`` unless
    ``copy_images`` is False (then only labels are written, pointing where the images belong).

    Args:
        labelset: The labels.
        dst: The destination folder; created if missing. It must not overlap the source root.
        fmt: One of :data:`FORMATS`.
        copy_images: Copy each image into its place in ``dst``.

    Returns:
        ``dst`` as a Path.

    Raises:
        ValueError: On an unknown format, a destination overlapping the source, a class id out of
            range, a box that is reversed or not finite, or two images that would land on the
            same file; the message names the image.
        FileNotFoundError: If an image to copy is missing.

    Example:
        >>> write_labels(read_labels("src", "yolo"), "out", "coco")  # doctest: +SKIP
        PosixPath('out')
    """
    name = normalize_format(fmt)
    root = Path(dst)
    if labelset.root is not None:
        _check_no_overlap(Path(labelset.root), root)
    _validate(labelset)
    writers: dict[str, Callable[[LabelSet, Path, bool], None]] = {
        "yolo": _write_yolo,
        "coco": _write_coco,
        "voc": _write_voc,
        "labelme": _write_labelme,
        "cvat": _write_cvat,
    }
    root.mkdir(parents=True, exist_ok=True)
    writers[name](labelset, root, copy_images)
    return root


def convert(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    src_format: str,
    dst_format: str,
    copy_images: bool = True,
) -> LabelSet:
    """Converts a labelled dataset from one format to another (``tcv data convert``).

    Args:
        src: The source dataset (see :func:`read_labels`); never modified.
        dst: The destination folder (see :func:`write_labels`).
        src_format: Format of ``src``, one of :data:`FORMATS`.
        dst_format: Format to write, one of :data:`FORMATS`.
        copy_images: Copy the images into ``dst`` too.

    Returns:
        The label set that was written (its ``root`` is still ``src``).

    Raises:
        FileNotFoundError: If ``src`` or one of its files is missing.
        ValueError: On an unknown format, malformed labels, or a destination that overlaps the
            source.

    Example:
        >>> convert("manaus", "manaus-coco", src_format="yolo", dst_format="coco")  # doctest: +SKIP
    """
    src_name, dst_name = normalize_format(src_format), normalize_format(dst_format)
    labelset = read_labels(src, src_name)
    write_labels(labelset, dst, dst_name, copy_images=copy_images)
    return labelset


# --------------------------------------------------------------------------------------------
# Class mapping
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MappingReport:
    """What :func:`map_classes` did.

    Attributes:
        mapping: Source class -> project class (None: dropped on purpose), for mapped and dropped
            classes.
        before: Boxes per source class before mapping.
        after: Boxes per target class after mapping (every target class listed).
        dropped: Boxes per source class dropped on purpose (mapped to None).
        unmapped: Boxes per source class absent from the mapping (kept out).
        unused: Mapping keys that name no source class.
    """

    mapping: dict[str, str | None]
    before: dict[str, int]
    after: dict[str, int]
    dropped: dict[str, int]
    unmapped: dict[str, int]
    unused: list[str]

    def to_pandas(self) -> pd.DataFrame:
        """One row per source class: what happened to it and how many boxes it had.

        Returns:
            Columns ``source_class``, ``action`` (``mapped``, ``dropped`` or ``unmapped``),
            ``target_class`` (None unless mapped), ``boxes`` (before) and ``boxes_kept``.

        Example:
            >>> report.to_pandas()  # doctest: +SKIP
        """
        import pandas as pd

        rows = []
        for name, boxes in self.before.items():
            if name in self.unmapped:
                action, target = "unmapped", None
            elif self.mapping.get(name) is None:
                action, target = "dropped", None
            else:
                action, target = "mapped", self.mapping[name]
            rows.append(
                {
                    "source_class": name,
                    "action": action,
                    "target_class": target,
                    "boxes": boxes,
                    "boxes_kept": boxes if action == "mapped" else 0,
                }
            )
        columns = ["source_class", "action", "target_class", "boxes", "boxes_kept"]
        return pd.DataFrame(rows, columns=columns)


def map_classes(
    labelset: LabelSet,
    mapping: Mapping[str, str | None],
    *,
    allow_unmapped: bool = False,
    target_classes: Iterable[str] = PROJECT_CLASSES,
) -> tuple[LabelSet, MappingReport]:
    """Maps source class names into the project taxonomy.

    Boxes of a class mapped to None are dropped on purpose; classes absent from the mapping are
    unmapped: an error unless ``allow_unmapped``, then their boxes are kept out and reported.
    Images whose boxes are all removed stay in the set, with no boxes. The input is not changed.

    Args:
        labelset: The labels to map.
        mapping: Source class name -> target class name, or None to drop that class.
        allow_unmapped: Keep out (and report) classes missing from ``mapping`` instead of raising.
        target_classes: The taxonomy; the result's class list, in this order.

    Returns:
        The mapped label set (classes = ``target_classes``) and the report.

    Raises:
        ValueError: If a target is not in ``target_classes``, or (without ``allow_unmapped``)
            if a source class is not in ``mapping``; the message names the classes and their
            box counts.

    Example:
        >>> mapped, report = map_classes(labels, MANAUS_TO_PROJECT)  # doctest: +SKIP
        >>> report.after["motorcycle"]  # doctest: +SKIP
        200
    """
    targets = list(target_classes)
    bad = {src: dst for src, dst in mapping.items() if dst is not None and dst not in targets}
    if bad:
        raise ValueError(f"mapping targets {bad} are not in the taxonomy {targets}.")
    before = labelset.box_counts()
    unmapped = {name: count for name, count in before.items() if name not in mapping}
    if unmapped and not allow_unmapped:
        described = ", ".join(f"{name!r} ({count} boxes)" for name, count in unmapped.items())
        raise ValueError(
            f"classes not in the mapping: {described}. Map each to a class of {targets}, "
            "to None to drop it, or pass allow_unmapped=True to keep them out."
        )
    lookup = np.full(len(labelset.classes), -1, dtype=np.int64)
    for index, name in enumerate(labelset.classes):
        target = mapping.get(name)
        if target is not None:
            lookup[index] = targets.index(target)
    images = []
    for image in labelset.images:
        det = image.detections
        new_ids = lookup[det.class_id] if len(det) else np.empty(0, dtype=np.int64)
        keep = new_ids >= 0
        images.append(
            LabeledImage(
                image=image.image,
                width=image.width,
                height=image.height,
                detections=make_detections(det.xyxy[keep], new_ids[keep]),
                split=image.split,
            )
        )
    mapped = LabelSet(classes=targets, images=images, root=labelset.root)
    report = MappingReport(
        mapping={name: mapping[name] for name in labelset.classes if name in mapping},
        before=before,
        after=mapped.box_counts(),
        dropped={
            name: c for name, c in before.items() if name in mapping and mapping[name] is None
        },
        unmapped=unmapped,
        unused=[name for name in mapping if name not in labelset.classes],
    )
    return mapped, report


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


def remap_dataset(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    mapping: Mapping[str, str | None],
    *,
    fmt: str = "yolo",
    allow_unmapped: bool = False,
) -> tuple[Path, MappingReport]:
    """Writes a copy of a dataset with its classes mapped into the project taxonomy (YOLO layout).

    The source is never changed. The copy has the project's class list, so a model trained on
    one dataset can be fine-tuned on the other with the same class ids.

    Args:
        src: The dataset folder (any format :func:`read_labels` reads).
        dst: Folder for the mapped copy (a new ``data.yaml``, images and labels).
        mapping: Source class name -> project class name, or None to drop that class.
        fmt: Format of ``src``.
        allow_unmapped: See :func:`map_classes`.

    Returns:
        ``(dst/data.yaml, report)``.

    Raises:
        ValueError: For an incomplete mapping, or ``dst`` overlapping ``src``.
    """
    labels = read_labels(src, fmt)
    mapped, report = map_classes(labels, mapping, allow_unmapped=allow_unmapped)
    root = write_labels(mapped, dst, "yolo", copy_images=True)
    return Path(root) / "data.yaml", report


def _split_key(split: str) -> tuple[int, str]:
    return (SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER), split)


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _image_size(path: Path) -> tuple[int, int]:
    """Width and height as decoders show the image (EXIF quarter turns swap them)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(_EXIF_ORIENTATION)
    except OSError as exc:
        raise ValueError(f"{path}: not a readable image ({exc}).") from exc
    return (height, width) if orientation in _QUARTER_TURNS else (width, height)


def _relative(path: Path, root: Path) -> Path:
    """``path`` relative to ``root`` (normalised, no symlinks followed), absolute if outside."""
    normal = Path(os.path.normpath(path))
    try:
        return normal.relative_to(os.path.normpath(root))
    except ValueError:
        return Path(os.path.abspath(normal))


def _split_of(relative_dir: Path, skip: Iterable[str] = ()) -> str:
    """The split named by the first folder of a relative location, else ``train``."""
    parts = [p for p in relative_dir.parts if p not in (".", "")]
    if parts and parts[0] not in skip and not Path(parts[0]).is_absolute():
        return parts[0]
    return "train"


def _check_no_overlap(src: Path, dst: Path) -> None:
    source, target = src.resolve(), dst.resolve()
    if source.is_file():
        source = source.parent
    if source == target or source in target.parents or target in source.parents:
        raise ValueError(
            f"destination {dst} overlaps the source {src}: write to a separate folder so the "
            "source is never modified."
        )


def _validate(labelset: LabelSet) -> None:
    n_classes = len(labelset.classes)
    if len(set(labelset.classes)) != n_classes:
        raise ValueError(f"class names must be unique, got {labelset.classes}.")
    for image in labelset.images:
        det = image.detections
        if len(det) == 0:
            continue
        ids = det.class_id
        if ids.min() < 0 or ids.max() >= n_classes:
            raise ValueError(
                f"{image.image}: class id out of range 0..{n_classes - 1}: {sorted(set(ids))}."
            )
        xyxy = det.xyxy
        if not np.isfinite(xyxy).all():
            raise ValueError(f"{image.image}: a box has a NaN or infinite coordinate.")
        if (xyxy[:, 2] < xyxy[:, 0]).any() or (xyxy[:, 3] < xyxy[:, 1]).any():
            raise ValueError(f"{image.image}: a box has x2 < x1 or y2 < y1.")


def _read_classes_file(root: Path) -> list[str]:
    file = root / CLASSES_FILE
    if not file.is_file():
        return []
    return [ln.strip() for ln in file.read_text(encoding="utf-8").splitlines() if ln.strip()]


def _write_classes_file(root: Path, classes: list[str]) -> None:
    atomic_write_text(root / CLASSES_FILE, "".join(f"{name}\n" for name in classes))


def _all_classes(known: list[str], found: Iterable[str]) -> list[str]:
    """``known`` classes in their order, then classes only found in labels, sorted."""
    return known + sorted(set(found) - set(known))


class _Placer:
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


def _indent_xml(element: ET.Element) -> bytes:
    ET.indent(element, space="  ")
    return ET.tostring(element, encoding="utf-8", xml_declaration=True) + b"\n"


def _parse_xml(path: Path) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ValueError(f"{path}: not valid XML ({exc}).") from exc


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}).") from exc


def _positive_int(value: Any, where: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected a positive integer, got {value!r}.") from None
    if not number.is_integer() or number <= 0:
        raise ValueError(f"{where}: expected a positive integer, got {value!r}.")
    return int(number)


def _finite(value: Any, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected a number, got {value!r}.") from None
    if not math.isfinite(number):
        raise ValueError(f"{where}: expected a finite number, got {value!r}.")
    return number


# --------------------------------------------------------------------------------------------
# YOLO (hand-written: supervision parses in float32 and writes 5 decimals, which breaks exact
# round trips)
# --------------------------------------------------------------------------------------------


def format_yolo_number(value: float) -> str:
    """Formats a normalised YOLO number: 6 decimals, trailing zeros removed.

    The value is first rounded to 10 decimals, so float noise from a round trip through pixels
    (about 1e-16) can never tip a value that sits on a rounding boundary one way or the other:
    equal numbers give equal text. That decimal is then rounded half up (``0.1234565`` gives
    ``0.123457``, whatever its binary approximation).

    Args:
        value: A normalised coordinate.

    Returns:
        The text, such as ``"0.38375"`` or ``"0.555990"`` trimmed to ``"0.55599"``.

    Example:
        >>> format_yolo_number(0.5559895833333334), format_yolo_number(0.25)
        ('0.55599', '0.25')
    """
    exact = Decimal(repr(round(float(value), 10)))
    rounded = exact.quantize(Decimal(1).scaleb(-YOLO_DECIMALS), rounding=ROUND_HALF_UP)
    text = format(rounded, "f").rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def yolo_lines(image: LabeledImage) -> list[str]:
    """The YOLO label lines (``class cx cy w h``, normalised) of one image.

    Args:
        image: The image with its boxes.

    Returns:
        One line per box, in order, numbers as :func:`format_yolo_number` writes them. Centre
        and size are rounded separately, so an edge on the image border may cross it by less
        than 1e-6 of the image size when read back.

    Example:
        >>> yolo_lines(LabeledImage("a.jpg", 100, 50, make_detections([[0, 0, 50, 50]], [1])))
        ['1 0.25 0.5 0.5 1']
    """
    lines = []
    w, h = image.width, image.height
    for (x1, y1, x2, y2), cid in zip(image.detections.xyxy, image.detections.class_id, strict=True):
        values = ((x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h)
        lines.append(" ".join([str(int(cid)), *(format_yolo_number(v) for v in values)]))
    return lines


def parse_yolo_file(
    path: Path, width: int, height: int, n_classes: int | None = None
) -> sv.Detections:
    """Reads one YOLO label file into float64 pixel boxes.

    Args:
        path: The ``.txt`` file; a missing file means no boxes.
        width: Image width in pixels.
        height: Image height in pixels.
        n_classes: Number of classes, to check the ids; None skips the check.

    Returns:
        The detections, in file order.

    Raises:
        ValueError: On a line that is not ``class cx cy w h`` with finite numbers, a negative
            size, or a class id out of range; the message names the file and the line number.

    Example:
        >>> parse_yolo_file(Path("a.txt"), 100, 50).xyxy.shape  # doctest: +SKIP
        (0, 4)
    """
    boxes, ids = read_yolo_labels(path, width, height, n_classes=n_classes)
    return make_detections(boxes, ids)


def _yolo_names(yaml_file: Path, data: dict[str, Any]) -> list[str]:
    names = data.get("names")
    if isinstance(names, dict):
        try:
            keys = sorted(names, key=int)
        except (TypeError, ValueError):
            raise ValueError(f"{yaml_file}: 'names' keys must be class ids 0..n-1.") from None
        if [int(k) for k in keys] != list(range(len(keys))):
            raise ValueError(f"{yaml_file}: 'names' keys must be 0..{len(keys) - 1}, got {keys}.")
        return [str(names[k]) for k in keys]
    if isinstance(names, list):
        return [str(n) for n in names]
    raise ValueError(f"{yaml_file}: 'names' must be a list or a mapping of class ids to names.")


def _yolo_split_name(images_dir: Path, root: Path, key: str) -> str:
    if images_dir.name == "images" and images_dir.parent != root:
        return images_dir.parent.name  # Roboflow: <split>/images
    if images_dir.parent.name == "images":
        return images_dir.name  # Ultralytics: images/<split>
    return key


def _resolve_yolo_dir(base: Path, value: str, yaml_file: Path, key: str) -> Path:
    candidate = base / value
    if candidate.exists():
        return candidate
    stripped = value
    while stripped.startswith("../"):  # Roboflow writes ../train/images
        stripped = stripped[3:]
        if (base / stripped).exists():
            return base / stripped
    raise FileNotFoundError(f"{yaml_file}: '{key}: {value}' names {candidate}, which is missing.")


def _yolo_sources(yaml_file: Path, data: dict[str, Any], base: Path) -> list[tuple[str, Path]]:
    """``(split, image file)`` pairs named by data.yaml, or found in the standard layouts."""
    found: list[tuple[str, Path]] = []
    seen: set[Path] = set()
    for key in ("train", "val", "test"):
        values = data.get(key)
        if values is None:
            continue
        for value in values if isinstance(values, list) else [values]:
            location = _resolve_yolo_dir(base, str(value), yaml_file, key)
            if location.is_file():  # a .txt list of images, as Ultralytics reads it
                listed = [
                    location.parent / ln[2:] if ln.startswith("./") else base / ln
                    for ln in (x.strip() for x in location.read_text(encoding="utf-8").splitlines())
                    if ln
                ]
                files = [(key, p) for p in listed]
            else:
                split = _yolo_split_name(location, base, key)
                files = [(split, p) for p in sorted(location.rglob("*")) if _is_image(p)]
            for split, path in files:
                if path not in seen:
                    seen.add(path)
                    found.append((split, path))
    if found or any(data.get(k) for k in ("train", "val", "test")):
        return found
    candidates = [(d.name, d / "images") for d in sorted(base.iterdir()) if d.is_dir()]
    if (base / "images").is_dir():
        candidates += [(d.name, d) for d in sorted((base / "images").iterdir()) if d.is_dir()]
        candidates.append(("train", base / "images"))
    for split, folder in candidates:
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                if _is_image(path) and path not in seen:
                    seen.add(path)
                    found.append((split, path))
    return found


def _yolo_label_path(image_path: Path) -> Path:
    """Ultralytics' rule: the last ``images`` folder becomes ``labels``, suffix ``.txt``."""
    parts = list(image_path.parts)
    for index in range(len(parts) - 2, -1, -1):
        if parts[index] == "images":
            parts[index] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _read_yolo(src: Path) -> LabelSet:
    yaml_file = src if src.is_file() else src / "data.yaml"
    root = yaml_file.parent
    if yaml_file.is_file():
        try:
            data = yaml.safe_load(yaml_file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{yaml_file}: not valid YAML ({exc}).") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{yaml_file}: expected a mapping with 'names'.")
        classes = _yolo_names(yaml_file, data)
    elif (root / CLASSES_FILE).is_file():
        data, classes = {}, _read_classes_file(root)
    else:
        raise FileNotFoundError(f"{yaml_file} is missing (and no {CLASSES_FILE} beside it).")
    base = root
    if data.get("path"):
        given = Path(str(data["path"]))
        base = given if given.is_absolute() else root / given
        if not base.is_dir():
            base = root
    images = []
    for split, image_path in _yolo_sources(yaml_file, data, base):
        width, height = _image_size(image_path)
        det = parse_yolo_file(_yolo_label_path(image_path), width, height, len(classes))
        images.append(LabeledImage(_relative(image_path, root), width, height, det, split))
    images.sort(key=lambda im: _split_key(im.split))  # stable: file order within a split
    return LabelSet(classes=classes, images=images, root=root)


def _write_yolo(labelset: LabelSet, root: Path, copy_images: bool) -> None:
    placer = _Placer(labelset, root, copy_images)
    split_dirs: dict[str, list[str]] = {}
    for image in labelset.images:
        placer.image(image, Path(image.split, "images", image.file_name))
        label = placer.reserve(
            image, Path(image.split, "labels", image.file_name).with_suffix(".txt")
        )
        atomic_write_text(label, "".join(f"{line}\n" for line in yolo_lines(image)))
    for split in labelset.splits:
        key = "val" if split in ("val", "valid") else split
        split_dirs.setdefault(key, []).append(f"{split}/images")
    data: dict[str, Any] = {
        key: dirs[0] if len(dirs) == 1 else dirs for key, dirs in split_dirs.items()
    }
    data["names"] = dict(enumerate(labelset.classes))
    header = (
        "# Ultralytics dataset file written by tcv_helpers.data.formats. No `path:` key: split folders\n"
        "# are relative to this file's folder.\n"
    )
    atomic_write_text(root / "data.yaml", header + yaml.safe_dump(data, sort_keys=False))


# --------------------------------------------------------------------------------------------
# COCO (read here: supervision's reader is float32; annotations built by supervision)
# --------------------------------------------------------------------------------------------


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
    return sorted(pairs, key=lambda pair: _split_key(pair[0]))


def _coco_image_location(root: Path, split: str, file_name: str) -> Path:
    name = file_name.replace("\\", "/")
    candidates = [root / "images" / split / name, root / split / name, root / "images" / name]
    candidates.append(root / name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return candidates[0]


def _read_coco(src: Path) -> LabelSet:
    root = src
    if src.is_file():
        root = src.parent.parent if src.parent.name == "annotations" else src.parent
    classes: list[str] = []
    images: list[LabeledImage] = []
    for split, file in _coco_files(src):
        data = _load_json(file)
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
                _positive_int(entry.get("width"), f"{where} width"),
                _positive_int(entry.get("height"), f"{where} height"),
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
            x, y, w, h = (_finite(v, f"{where} bbox") for v in bbox)
            if w < 0 or h < 0:
                raise ValueError(f"{where}: bbox has a negative width or height.")
            boxes[ann["image_id"]].append([x, y, x + w, y + h])
            ids[ann["image_id"]].append(category_index[ann["category_id"]])
        for key, (_, file_name, width, height) in sorted(entries.items(), key=lambda kv: kv[1][0]):
            location = _coco_image_location(root, split, file_name)
            det = make_detections(boxes[key], ids[key])
            images.append(LabeledImage(_relative(location, root), width, height, det, split))
    return LabelSet(classes=classes, images=images, root=root)


def _write_coco(labelset: LabelSet, root: Path, copy_images: bool) -> None:
    placer = _Placer(labelset, root, copy_images)
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
            "info": {"description": f"{split} split, written by tcv_helpers.data.formats"},
            "licenses": [],
            "categories": classes_to_coco_categories(classes=list(labelset.classes)),
            "images": coco_images,
            "annotations": coco_annotations,
        }
        atomic_write_json(root / "annotations" / f"instances_{split}.json", document)


# --------------------------------------------------------------------------------------------
# Pascal VOC / LabelImg (objects read and written by supervision: integer pixels, exact)
# --------------------------------------------------------------------------------------------


def _per_image_files(root: Path, suffix: str) -> list[tuple[str, Path]]:
    files = [p for p in root.rglob(f"*{suffix}") if p.is_file()]
    pairs = [(_split_of(p.parent.relative_to(root), skip=("Annotations",)), p) for p in files]
    return sorted(pairs, key=lambda pair: (_split_key(pair[0]), pair[1].relative_to(root)))


def _image_beside(label_file: Path, file_name: str | None) -> Path:
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


def _read_voc(src: Path) -> LabelSet:
    root = src
    parsed = []
    for split, file in _per_image_files(root, ".xml"):
        element = _parse_xml(file)
        if element.tag != "annotation":
            raise ValueError(f"{file}: root element is <{element.tag}>, expected <annotation>.")
        size = element.find("size")
        if size is None:
            raise ValueError(f"{file}: no <size> element (width and height are required).")
        width = _positive_int(size.findtext("width"), f"{file}: <size>/<width>")
        height = _positive_int(size.findtext("height"), f"{file}: <size>/<height>")
        for position, obj in enumerate(element.findall("object")):
            if not (obj.findtext("name") or "").strip():
                raise ValueError(f"{file}: <object> {position} has no <name>.")
        parsed.append((split, file, element, width, height))
    if not parsed:
        raise FileNotFoundError(f"no Pascal VOC .xml files under {root}.")
    found = [obj.findtext("name", "") for *_, el, _, _ in parsed for obj in el.findall("object")]
    classes = _all_classes(_read_classes_file(root), found)
    images = []
    for split, file, element, width, height in parsed:
        try:
            det, _ = detections_from_xml_obj(element, classes, (width, height))
        except ValueError as exc:
            raise ValueError(f"{file}: {exc}") from exc
        location = _image_beside(file, element.findtext("filename"))
        det = make_detections(det.xyxy, det.class_id)
        images.append(LabeledImage(_relative(location, root), width, height, det, split))
    return LabelSet(classes=classes, images=images, root=root)


def _write_voc(labelset: LabelSet, root: Path, copy_images: bool) -> None:
    placer = _Placer(labelset, root, copy_images)
    for image in labelset.images:
        placer.image(image, Path(image.split, image.file_name))
        target = placer.reserve(image, Path(image.split, image.file_name).with_suffix(".xml"))
        annotation = ET.Element("annotation")
        ET.SubElement(annotation, "folder").text = image.split
        ET.SubElement(annotation, "filename").text = image.file_name
        ET.SubElement(ET.SubElement(annotation, "source"), "database").text = "Unknown"
        size = ET.SubElement(annotation, "size")
        ET.SubElement(size, "width").text = str(image.width)
        ET.SubElement(size, "height").text = str(image.height)
        ET.SubElement(size, "depth").text = "3"
        ET.SubElement(annotation, "segmented").text = "0"
        for xyxy, cid in zip(image.detections.xyxy, image.detections.class_id, strict=True):
            obj = object_to_pascal_voc(xyxy=xyxy, name=labelset.classes[int(cid)])
            for tag, text in (("pose", "Unspecified"), ("truncated", "0"), ("difficult", "0")):
                ET.SubElement(obj, tag).text = text
            annotation.append(obj)
        atomic_write_bytes(target, _indent_xml(annotation))
    _write_classes_file(root, labelset.classes)


# --------------------------------------------------------------------------------------------
# LabelMe (shapes written by supervision; read here: supervision's reader is float32 and merges
# grouped shapes)
# --------------------------------------------------------------------------------------------

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
        xs.append(_finite(point[0], f"{where} point"))
        ys.append(_finite(point[1], f"{where} point"))
    return label, [min(xs), min(ys), max(xs), max(ys)]


def _read_labelme(src: Path) -> LabelSet:
    root = src
    parsed = []
    for split, file in _per_image_files(root, ".json"):
        data = _load_json(file)
        if not isinstance(data, dict) or "shapes" not in data:
            raise ValueError(f"{file}: not a LabelMe file (no 'shapes').")
        width = _positive_int(data.get("imageWidth"), f"{file}: imageWidth")
        height = _positive_int(data.get("imageHeight"), f"{file}: imageHeight")
        if not isinstance(data["shapes"], list):
            raise ValueError(f"{file}: 'shapes' must be a list.")
        shapes = [
            _labelme_box(shape, f"{file}: shapes[{index}]")
            for index, shape in enumerate(data["shapes"])
        ]
        image_path = data.get("imagePath")
        location = _image_beside(file, str(image_path) if image_path else None)
        parsed.append((split, location, width, height, shapes))
    if not parsed:
        raise FileNotFoundError(f"no LabelMe .json files under {root}.")
    classes = _all_classes(
        _read_classes_file(root), (label for *_, shapes in parsed for label, _ in shapes)
    )
    images = []
    for split, location, width, height, shapes in parsed:
        det = make_detections([box for _, box in shapes], [classes.index(n) for n, _ in shapes])
        images.append(LabeledImage(_relative(location, root), width, height, det, split))
    return LabelSet(classes=classes, images=images, root=root)


def _write_labelme(labelset: LabelSet, root: Path, copy_images: bool) -> None:
    placer = _Placer(labelset, root, copy_images)
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
    _write_classes_file(root, labelset.classes)


# --------------------------------------------------------------------------------------------
# CVAT for images 1.1 (hand-written: supervision has no CVAT support)
# --------------------------------------------------------------------------------------------

#: The annotation file of the CVAT layout.
CVAT_FILE = "annotations.xml"
_CVAT_NON_BOX = ("polygon", "polyline", "points", "ellipse", "mask", "cuboid", "skeleton")


def _read_cvat(src: Path) -> LabelSet:
    file = src if src.is_file() else src / CVAT_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{file} is missing (CVAT for images 1.1 layout).")
    root = file.parent
    element = _parse_xml(file)
    if element.tag != "annotations":
        raise ValueError(f"{file}: root element is <{element.tag}>, expected <annotations>.")
    known = [
        (label.findtext("name") or "").strip() for label in element.iterfind("meta/*/labels/label")
    ]
    known = [name for name in dict.fromkeys(known) if name]
    parsed = []
    for position, image in enumerate(element.iter("image")):
        name = image.get("name")
        where = f"{file}: <image> {position} (name {name!r})"
        if not name:
            raise ValueError(f"{where}: missing the 'name' attribute.")
        width = _positive_int(image.get("width"), f"{where} width")
        height = _positive_int(image.get("height"), f"{where} height")
        boxes: list[tuple[str, list[float]]] = []
        for child in image:
            if child.tag in _CVAT_NON_BOX:
                raise ValueError(f"{where}: <{child.tag}> holds no box; only <box> is supported.")
            if child.tag != "box":
                continue  # <tag> elements label the whole image, not an object
            box_where = f"{where} <box> {len(boxes)}"
            label = child.get("label")
            if not label:
                raise ValueError(f"{box_where}: missing the 'label' attribute.")
            if _finite(child.get("rotation", "0"), f"{box_where} rotation") != 0:
                raise ValueError(f"{box_where}: rotated boxes are not supported.")
            x1, y1, x2, y2 = (
                _finite(child.get(key), f"{box_where} {key}")
                for key in ("xtl", "ytl", "xbr", "ybr")
            )
            boxes.append((label, [min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)]))
        relative = Path(name.replace("\\", "/"))
        split = image.get("subset") or _split_of(relative.parent)
        location = next(
            (c for c in (root / "images" / relative, root / relative) if c.is_file()),
            root / "images" / relative,
        )
        parsed.append((split, location, width, height, boxes))
    classes = _all_classes(known, (label for *_, boxes in parsed for label, _ in boxes))
    images = []
    for split, location, width, height, boxes in parsed:
        det = make_detections([box for _, box in boxes], [classes.index(n) for n, _ in boxes])
        images.append(LabeledImage(_relative(location, root), width, height, det, split))
    return LabelSet(classes=classes, images=images, root=root)


def _write_cvat(labelset: LabelSet, root: Path, copy_images: bool) -> None:
    placer = _Placer(labelset, root, copy_images)
    annotations = ET.Element("annotations")
    ET.SubElement(annotations, "version").text = "1.1"
    task = ET.SubElement(ET.SubElement(annotations, "meta"), "task")
    ET.SubElement(task, "name").text = root.name or "dataset"
    ET.SubElement(task, "size").text = str(len(labelset.images))
    ET.SubElement(task, "mode").text = "annotation"
    labels = ET.SubElement(task, "labels")
    for name in labelset.classes:
        label = ET.SubElement(labels, "label")
        ET.SubElement(label, "name").text = name
        ET.SubElement(label, "type").text = "rectangle"
        ET.SubElement(label, "attributes")
    for index, image in enumerate(labelset.images):
        relative = Path(image.split, image.file_name)
        placer.image(image, "images" / relative)
        node = ET.SubElement(
            annotations,
            "image",
            {
                "id": str(index),
                "name": relative.as_posix(),
                "subset": image.split,
                "width": str(image.width),
                "height": str(image.height),
            },
        )
        for (x1, y1, x2, y2), cid in zip(
            image.detections.xyxy, image.detections.class_id, strict=True
        ):
            corners = {
                key: f"{value:.{CVAT_DECIMALS}f}"
                for key, value in zip(("xtl", "ytl", "xbr", "ybr"), (x1, y1, x2, y2), strict=True)
            }
            attributes = {
                "label": labelset.classes[int(cid)],
                "source": "manual",
                "occluded": "0",
                **corners,
                "z_order": "0",
            }
            ET.SubElement(node, "box", attributes)
    atomic_write_bytes(root / CVAT_FILE, _indent_xml(annotations))


def image_class_counts(labelset: LabelSet) -> list[Counter[str]]:
    """Boxes per class name of every image, in :attr:`LabelSet.images` order (for splitting)."""
    return [
        Counter(labelset.classes[int(c)] for c in image.detections.class_id)
        for image in labelset.images
    ]


def round_trip(src: str | os.PathLike, dst: str | os.PathLike, fmt: str) -> dict[str, object]:
    """Converts a YOLO dataset to ``fmt`` (labels only) and reads it back, measuring the loss.

    Args:
        src: A YOLO dataset.
        dst: Where to write the converted labels (replaced if it exists).
        fmt: Target format.

    Returns:
        ``format``, ``files`` written and ``max_box_error_px``: the largest difference of any box
        coordinate after the round trip.
    """
    import shutil

    target = Path(dst)
    if target.exists():
        shutil.rmtree(target)
    original = read_labels(src, "yolo")
    convert(src, target, src_format="yolo", dst_format=fmt, copy_images=False)
    back = {image.file_name: image for image in read_labels(target, fmt).images}
    worst = 0.0
    for image in original.images:
        other = back[image.file_name]
        if len(image.detections):
            worst = max(worst, float(np.abs(image.detections.xyxy - other.detections.xyxy).max()))
    files = sum(1 for p in target.rglob("*") if p.is_file())
    return {"format": normalize_format(fmt), "files": files, "max_box_error_px": round(worst, 4)}
