"""The CVAT for images 1.1 layout: ``annotations.xml`` and ``images/<split>/<file>``.

Written here with ``xml.etree``: supervision has no CVAT support.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from tcv_helpers.data.labelset import (
    LabeledImage,
    LabelSet,
    Placer,
    all_classes,
    finite_number,
    indent_xml,
    make_detections,
    parse_xml,
    positive_int,
    relative_path,
    split_of,
)
from tcv_helpers.io import atomic_write_bytes

#: The annotation file of the CVAT layout.
CVAT_FILE = "annotations.xml"


#: Decimals of CVAT box corners (CVAT itself writes 2).
CVAT_DECIMALS = 2


_CVAT_NON_BOX = ("polygon", "polyline", "points", "ellipse", "mask", "cuboid", "skeleton")


def read_cvat(src: Path) -> LabelSet:
    """Reads a CVAT for images 1.1 ``annotations.xml`` (or the folder holding it)."""
    file = src if src.is_file() else src / CVAT_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{file} is missing (CVAT for images 1.1 layout).")
    root = file.parent
    element = parse_xml(file)
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
        width = positive_int(image.get("width"), f"{where} width")
        height = positive_int(image.get("height"), f"{where} height")
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
            if finite_number(child.get("rotation", "0"), f"{box_where} rotation") != 0:
                raise ValueError(f"{box_where}: rotated boxes are not supported.")
            x1, y1, x2, y2 = (
                finite_number(child.get(key), f"{box_where} {key}")
                for key in ("xtl", "ytl", "xbr", "ybr")
            )
            boxes.append((label, [min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)]))
        relative = Path(name.replace("\\", "/"))
        split = image.get("subset") or split_of(relative.parent)
        location = next(
            (c for c in (root / "images" / relative, root / relative) if c.is_file()),
            root / "images" / relative,
        )
        parsed.append((split, location, width, height, boxes))
    classes = all_classes(known, (label for *_, boxes in parsed for label, _ in boxes))
    images = []
    for split, location, width, height, boxes in parsed:
        det = make_detections([box for _, box in boxes], [classes.index(n) for n, _ in boxes])
        images.append(LabeledImage(relative_path(location, root), width, height, det, split))
    return LabelSet(classes=classes, images=images, root=root)


def write_cvat(labelset: LabelSet, root: Path, copy_images: bool) -> None:
    """Writes ``images/<split>/<file>`` and one ``annotations.xml`` for all of them."""
    placer = Placer(labelset, root, copy_images)
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
    atomic_write_bytes(root / CVAT_FILE, indent_xml(annotations))
