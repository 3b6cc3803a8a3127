"""Label formats: read, write and convert box labels, and map classes into the project taxonomy.

A labelled dataset is held in memory as a :class:`~tcv_helpers.data.labelset.LabelSet`.
:func:`read_labels` and :func:`write_labels` move a label set from and to disk in five layouts,
one module each: ``yolo`` (:mod:`~tcv_helpers.data.yolo`), ``coco``
(:mod:`~tcv_helpers.data.coco`), ``voc`` (:mod:`~tcv_helpers.data.voc`), ``labelme``
(:mod:`~tcv_helpers.data.labelme`) and ``cvat`` (:mod:`~tcv_helpers.data.cvat`); their module
docstrings say what each layout looks like on disk. :func:`convert` chains them and is the
engine behind ``tcv data convert``. :func:`map_classes` renames classes into
:data:`~tcv_helpers.project.PROJECT_CLASSES` and reports what it did.

Images are copied (not hard-linked), so editing a converted dataset never reaches the source.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tcv_helpers.data import coco, cvat, labelme, voc, yolo
from tcv_helpers.data.labelset import LabeledImage, LabelSet, make_detections
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


#: How the classes of the sample data (``manaus-traffic``) map into the project taxonomy.
MANAUS_TO_PROJECT: dict[str, str | None] = {
    "biker": "motorcycle",
    "car": "car",
    "cyclist": "bicycle",
    "people": "person",
    "truck": "truck",
}


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
        "yolo": yolo.read_yolo,
        "coco": coco.read_coco,
        "voc": voc.read_voc,
        "labelme": labelme.read_labelme,
        "cvat": cvat.read_cvat,
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
        "yolo": yolo.write_yolo,
        "coco": coco.write_coco,
        "voc": voc.write_voc,
        "labelme": labelme.write_labelme,
        "cvat": cvat.write_cvat,
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
