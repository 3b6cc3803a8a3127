"""The Pascal VOC layout (LabelImg, Roboflow's export): ``<split>/<file>`` with ``<stem>.xml``.

Objects are read and written by supervision (integer pixels; its devkit convention is exact for
them). The files carry no class list, so ``classes.txt`` is written beside them and read when
present; without it the classes are the names found, sorted.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from supervision.dataset.formats.pascal_voc import (
    detections_from_xml_obj,
    object_to_pascal_voc,
)

from tcv_helpers.data.labelset import (
    LabeledImage,
    LabelSet,
    Placer,
    all_classes,
    image_beside,
    indent_xml,
    make_detections,
    parse_xml,
    per_image_files,
    positive_int,
    read_classes_file,
    relative_path,
    write_classes_file,
)
from tcv_helpers.io import atomic_write_bytes


def read_voc(src: Path) -> LabelSet:
    """Reads every Pascal VOC ``.xml`` file under ``src`` into a label set."""
    root = src
    parsed = []
    for split, file in per_image_files(root, ".xml"):
        element = parse_xml(file)
        if element.tag != "annotation":
            raise ValueError(f"{file}: root element is <{element.tag}>, expected <annotation>.")
        size = element.find("size")
        if size is None:
            raise ValueError(f"{file}: no <size> element (width and height are required).")
        width = positive_int(size.findtext("width"), f"{file}: <size>/<width>")
        height = positive_int(size.findtext("height"), f"{file}: <size>/<height>")
        for position, obj in enumerate(element.findall("object")):
            if not (obj.findtext("name") or "").strip():
                raise ValueError(f"{file}: <object> {position} has no <name>.")
        parsed.append((split, file, element, width, height))
    if not parsed:
        raise FileNotFoundError(f"no Pascal VOC .xml files under {root}.")
    found = [obj.findtext("name", "") for *_, el, _, _ in parsed for obj in el.findall("object")]
    classes = all_classes(read_classes_file(root), found)
    images = []
    for split, file, element, width, height in parsed:
        try:
            det, _ = detections_from_xml_obj(element, classes, (width, height))
        except ValueError as exc:
            raise ValueError(f"{file}: {exc}") from exc
        location = image_beside(file, element.findtext("filename"))
        det = make_detections(det.xyxy, det.class_id)
        images.append(LabeledImage(relative_path(location, root), width, height, det, split))
    return LabelSet(classes=classes, images=images, root=root)


def write_voc(labelset: LabelSet, root: Path, copy_images: bool) -> None:
    """Writes ``<split>/<file>`` with ``<split>/<stem>.xml`` beside it, and ``classes.txt``."""
    placer = Placer(labelset, root, copy_images)
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
        atomic_write_bytes(target, indent_xml(annotation))
    write_classes_file(root, labelset.classes)
