"""The YOLO layout: ``data.yaml`` and one label file per image (``class cx cy w h``, normalised).

Read through :class:`~tcv_helpers.data.dataset.Dataset`, so the images are the ones Ultralytics
trains on (Roboflow's ``../train/images``, ``.txt`` lists, a ``path:`` key), each split named by
its folder (``<split>/images`` or ``images/<split>``; a list by its key). A folder whose
``data.yaml`` has no split keys, or that has only a ``classes.txt``, is searched in the standard
layouts. Written as ``<split>/images`` and ``<split>/labels`` (the Roboflow layout) with a
``data.yaml`` without ``path:``.

Written here in full because supervision's reader parses in float32 and its writer keeps 5
decimals, which breaks exact round trips.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import supervision as sv

from tcv_helpers.data.dataset import (
    SPLIT_KEYS,
    Dataset,
    DatasetError,
    SplitSource,
    image_size,
    write_data_yaml,
    yaml_path,
)
from tcv_helpers.data.labels import IMAGE_SUFFIXES, label_path_for, read_yolo_labels
from tcv_helpers.data.labelset import (
    CLASSES_FILE,
    LabeledImage,
    LabelSet,
    Placer,
    make_detections,
    read_classes_file,
    relative_path,
    split_key,
)
from tcv_helpers.io import atomic_write_text

#: Decimals of the normalised numbers in YOLO label files.
YOLO_DECIMALS = 6


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


def _split_name(source: SplitSource, root: Path, key: str) -> str:
    """The split a folder's images belong to: its folder name in the two standard layouts."""
    if source.is_list:
        return key
    folder = source.path
    if folder.name == "images" and folder.parent != root.resolve():
        return folder.parent.name  # Roboflow: <split>/images
    if folder.parent.name == "images":
        return folder.name  # Ultralytics: images/<split>
    return key


def _standard_layouts(root: Path) -> list[tuple[str, Path]]:
    """``(split, image)`` pairs of a folder without split keys: ``<split>/images`` or
    ``images/<split>`` (or ``images/`` itself, as ``train``)."""
    candidates = [(d.name, d / "images") for d in sorted(root.iterdir()) if d.is_dir()]
    if (root / "images").is_dir():
        candidates += [(d.name, d) for d in sorted((root / "images").iterdir()) if d.is_dir()]
        candidates.append(("train", root / "images"))
    found: list[tuple[str, Path]] = []
    for split, folder in candidates:
        if folder.is_dir():
            found += [
                (split, p)
                for p in sorted(folder.iterdir())
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            ]
    return found


def read_yolo(src: Path) -> LabelSet:
    """Reads a YOLO dataset (see the module docstring).

    Args:
        src: The dataset folder or its yaml file.

    Returns:
        The label set, its ``root`` the yaml file's folder; splits in
        :data:`~tcv_helpers.data.labelset.SPLIT_ORDER`, files sorted by path within a split.

    Raises:
        FileNotFoundError: If there is neither a yaml file nor a ``classes.txt``.
        DatasetError: If the yaml file is unusable or names a path that does not exist.
        ValueError: On a malformed label file or an unreadable image (named in the message).
    """
    yaml_file = yaml_path(src)
    root = yaml_file.parent
    found: list[tuple[str, Path]] = []
    if yaml_file.is_file():
        dataset, problems = Dataset.read(yaml_file, required=())
        if dataset is None or problems:
            raise DatasetError(yaml_file, problems)
        classes = list(dataset.names)
        for key, sources in dataset.sources.items():
            found += [
                (_split_name(source, dataset.root, key), image)
                for source in sources
                for image in source.images
            ]
        if not dataset.sources:
            found = _standard_layouts(dataset.root)
    elif (root / CLASSES_FILE).is_file():
        classes = read_classes_file(root)
        found = _standard_layouts(root)
    else:
        raise FileNotFoundError(f"{yaml_file} is missing (and no {CLASSES_FILE} beside it).")
    images = []
    seen: set[Path] = set()
    for split, image_path in found:  # each file once, under the first split naming it
        if image_path in seen:
            continue
        seen.add(image_path)
        width, height = image_size(image_path)
        det = parse_yolo_file(label_path_for(image_path), width, height, len(classes))
        images.append(LabeledImage(relative_path(image_path, root), width, height, det, split))
    images.sort(key=lambda im: split_key(im.split))  # stable: file order within a split
    return LabelSet(classes=classes, images=images, root=root)


def write_yolo(labelset: LabelSet, root: Path, copy_images: bool) -> None:
    """Writes ``<split>/images``, ``<split>/labels`` and a ``data.yaml`` without ``path:``.

    Args:
        labelset: The labels (validated by the caller).
        root: The destination folder.
        copy_images: Copy each image into its place.
    """
    placer = Placer(labelset, root, copy_images)
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
    write_data_yaml(
        root / "data.yaml",
        names=labelset.classes,
        splits={k: dirs for k, dirs in split_dirs.items() if k in SPLIT_KEYS},
        extra={
            k: dirs[0] if len(dirs) == 1 else dirs
            for k, dirs in split_dirs.items()
            if k not in SPLIT_KEYS
        },
        header="# Ultralytics dataset file written by tcv_helpers.data.yolo. No `path:` key: split\n"
        "# folders are relative to this file's folder.",
    )
