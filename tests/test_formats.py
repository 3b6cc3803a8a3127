"""Tests for the label formats (tcv_helpers.data.formats and its format modules): conversions
and class mapping."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from tcv_helpers.data.formats import (
    FORMATS,
    MANAUS_TO_PROJECT,
    convert,
    map_classes,
    normalize_format,
    read_labels,
    write_labels,
)
from tcv_helpers.data.labelset import CLASSES_FILE, LabeledImage, LabelSet, make_detections
from tcv_helpers.data.yolo import format_yolo_number
from tcv_helpers.project import PROJECT_CLASSES

#: How far boxes may move through each format: YOLO and COCO keep float64 (up to 6-decimal YOLO
#: text), LabelMe keeps float64, CVAT writes 2 decimals, VOC integer pixels.
TOLERANCE_PX = {
    "yolo": 1e-3,
    "coco": 1e-9,
    "labelme": 1e-9,
    "cvat": 0.005 + 1e-9,
    "voc": 0.5 + 1e-9,
}


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def _manaus(sample_data: Path) -> Path:
    return sample_data / "manaus-traffic"


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.suffix in (".txt", ".yaml")
    }


def _image_key(image: LabeledImage) -> tuple[str, str]:
    return image.split, image.file_name


def _assert_same_labels(expected: LabelSet, actual: LabelSet, tolerance: float) -> None:
    """Same images in the same order, same sizes and class names, boxes within ``tolerance``."""
    assert [_image_key(im) for im in actual.images] == [_image_key(im) for im in expected.images]
    for want, got in zip(expected.images, actual.images, strict=True):
        assert (got.width, got.height) == (want.width, want.height), want.image
        want_names = [expected.classes[i] for i in want.detections.class_id]
        got_names = [actual.classes[i] for i in got.detections.class_id]
        assert got_names == want_names, want.image
        if len(want.detections):
            error = np.abs(got.detections.xyxy - want.detections.xyxy).max()
            assert error <= tolerance, f"{want.image}: boxes moved by {error} px"


def _subset(labelset: LabelSet, per_split: int) -> LabelSet:
    """The first ``per_split`` images of each split that have boxes, and one without if any."""
    chosen: list[LabeledImage] = []
    for split in labelset.splits:
        images = [im for im in labelset.images if im.split == split]
        chosen += [im for im in images if len(im.detections)][:per_split]
    return LabelSet(classes=list(labelset.classes), images=chosen, root=labelset.root)


def _write_image(path: Path, size: tuple[int, int], color: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


@pytest.fixture
def synthetic(tmp_path: Path) -> LabelSet:
    """Three small PIL images: one empty, one with boxes touching the border, one with many
    classes; 32 classes, some without any box."""
    src = tmp_path / "synthetic-src"
    classes = [f"class_{index:02d}" for index in range(32)]
    _write_image(src / "empty.png", (64, 48), (10, 10, 10))
    _write_image(src / "border.png", (64, 48), (200, 30, 30))
    _write_image(src / "many.jpg", (100, 80), (30, 200, 30))
    many = [[3 * i + 0.25, 2 * i + 0.5, 3 * i + 20.75, 2 * i + 17.125] for i in range(24)]
    images = [
        LabeledImage(
            Path("border.png"),
            64,
            48,
            make_detections(
                [[0, 0, 64, 48], [0, 10.5, 7.25, 30], [60.25, 0, 64, 12.5]], [0, 5, 31]
            ),
            "train",
        ),
        LabeledImage(Path("empty.png"), 64, 48, make_detections([], []), "train"),
        LabeledImage(Path("many.jpg"), 100, 80, make_detections(many, list(range(24))), "valid"),
    ]
    return LabelSet(classes=classes, images=images, root=src)


# ------------------------------------------------------------------------------------------
# real sample
# ------------------------------------------------------------------------------------------


def test_sample_reads_with_readme_counts(sample_data: Path) -> None:
    labels = read_labels(_manaus(sample_data), "yolo")
    assert labels.classes == ["biker", "car", "cyclist", "people", "truck"]
    assert labels.splits == ["train", "valid", "test"]
    assert len(labels) == 324
    assert labels.box_counts() == {
        "biker": 149 + 27 + 24,
        "car": 1173 + 522 + 297,
        "cyclist": 121 + 29 + 16,
        "people": 302 + 176 + 67,
        "truck": 84 + 24 + 32,
    }
    first = labels.images[0]
    assert first.image.parts[:2] == ("train", "images")
    assert first.detections.xyxy.dtype == np.float64


def test_sample_yolo_coco_yolo_is_identical(sample_data: Path, tmp_path: Path) -> None:
    source = _manaus(sample_data)
    before = _digest(source)
    labels = read_labels(source, "yolo")
    write_labels(labels, tmp_path / "direct", "yolo", copy_images=False)
    write_labels(labels, tmp_path / "coco", "coco", copy_images=False)
    via_coco = read_labels(tmp_path / "coco", "coco")
    write_labels(via_coco, tmp_path / "back", "yolo", copy_images=False)

    direct = sorted(
        p.relative_to(tmp_path / "direct") for p in (tmp_path / "direct").rglob("*.txt")
    )
    back = sorted(p.relative_to(tmp_path / "back") for p in (tmp_path / "back").rglob("*.txt"))
    assert direct == back
    assert len(direct) == 324
    for relative in direct:
        written = (tmp_path / "back" / relative).read_text(encoding="utf-8")
        assert written == (tmp_path / "direct" / relative).read_text(encoding="utf-8"), relative
        original = (source / relative).read_text(encoding="utf-8").split("\n")
        original_rows = [line.split() for line in original if line.strip()]
        written_rows = [line.split() for line in written.splitlines()]
        assert len(written_rows) == len(original_rows), relative
        for want, got in zip(original_rows, written_rows, strict=True):
            assert got[0] == want[0]
            np.testing.assert_allclose(
                [float(v) for v in got[1:]], [float(v) for v in want[1:]], rtol=0, atol=1e-6
            )
            assert got[1:] == [format_yolo_number(float(v)) for v in want[1:]], relative
    names = yaml.safe_load((tmp_path / "back" / "data.yaml").read_text(encoding="utf-8"))["names"]
    assert names == dict(enumerate(labels.classes))
    assert _digest(source) == before, "the source must never be modified"


@pytest.mark.parametrize("fmt", ["voc", "labelme", "cvat"])
def test_sample_round_trip_within_one_pixel(sample_data: Path, tmp_path: Path, fmt: str) -> None:
    labels = read_labels(_manaus(sample_data), "yolo")
    write_labels(labels, tmp_path / fmt, fmt, copy_images=False)
    back = read_labels(tmp_path / fmt, fmt)
    assert back.classes == labels.classes
    _assert_same_labels(labels, back, tolerance=1.0)
    _assert_same_labels(labels, back, tolerance=TOLERANCE_PX[fmt])


def test_sample_all_formats_convert_to_each_other(sample_data: Path, tmp_path: Path) -> None:
    labels = _subset(read_labels(_manaus(sample_data), "yolo"), per_split=2)
    assert len(labels) == 6
    for src_fmt in FORMATS:
        src = write_labels(labels, tmp_path / f"src-{src_fmt}", src_fmt)
        for dst_fmt in FORMATS:
            dst = tmp_path / f"{src_fmt}-to-{dst_fmt}"
            written = convert(src, dst, src_format=src_fmt, dst_format=dst_fmt)
            assert written.root is not None
            result = read_labels(dst, dst_fmt)
            assert result.classes == labels.classes
            tolerance = TOLERANCE_PX[src_fmt] + TOLERANCE_PX[dst_fmt]
            _assert_same_labels(labels, result, tolerance=min(tolerance, 1.0))
            for want, got in zip(labels.images, result.images, strict=True):
                copied = result.image_path(got)
                assert copied.read_bytes() == labels.image_path(want).read_bytes()
                assert dst in copied.parents


def test_sample_class_mapping(sample_data: Path) -> None:
    labels = read_labels(_manaus(sample_data), "yolo")
    test = LabelSet(labels.classes, [im for im in labels.images if im.split == "test"], labels.root)
    mapped, report = map_classes(test, MANAUS_TO_PROJECT)
    assert mapped.classes == list(PROJECT_CLASSES)
    assert report.before == {"biker": 24, "car": 297, "cyclist": 16, "people": 67, "truck": 32}
    assert report.after == {
        "car": 297,
        "truck": 32,
        "bus": 0,
        "motorcycle": 24,
        "bicycle": 16,
        "person": 67,
    }
    assert report.unmapped == {} and report.dropped == {}
    table = report.to_pandas()
    assert table.set_index("source_class").loc["biker", "target_class"] == "motorcycle"
    assert int(table["boxes_kept"].sum()) == 436
    assert len(mapped) == 44


# ------------------------------------------------------------------------------------------
# synthetic datasets
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_synthetic_round_trip(synthetic: LabelSet, tmp_path: Path, fmt: str) -> None:
    write_labels(synthetic, tmp_path / "out", fmt)
    back = read_labels(tmp_path / "out", fmt)
    assert back.classes == synthetic.classes  # 32 classes, zero-box ones included
    _assert_same_labels(synthetic, back, tolerance=TOLERANCE_PX[fmt])
    empty = next(im for im in back.images if im.file_name == "empty.png")
    assert len(empty.detections) == 0
    border = next(im for im in back.images if im.file_name == "border.png")
    # YOLO rounds centre and size to 6 decimals each, so an edge on the border may cross it by
    # less than 1e-6 of the image size; the other formats keep it exactly on the border.
    slack = 1e-6 * 64 if fmt == "yolo" else 0.0
    assert border.detections.xyxy.min() >= -slack
    assert border.detections.xyxy[:, [0, 2]].max() <= 64 + slack
    assert border.detections.xyxy[:, [1, 3]].max() <= 48 + slack
    assert border.detections.xyxy[0].tolist() == [0, 0, 64, 48]
    many = next(im for im in back.images if im.file_name == "many.jpg")
    assert len(set(many.detections.class_id.tolist())) == 24
    for image in back.images:
        assert back.image_path(image).is_file()


def test_synthetic_yolo_coco_yolo_text(synthetic: LabelSet, tmp_path: Path) -> None:
    write_labels(synthetic, tmp_path / "yolo", "yolo")
    convert(tmp_path / "yolo", tmp_path / "coco", src_format="yolo", dst_format="coco")
    convert(tmp_path / "coco", tmp_path / "back", src_format="coco", dst_format="ultralytics")
    for name in ("train/labels/empty.txt", "train/labels/border.txt", "valid/labels/many.txt"):
        assert (tmp_path / "back" / name).read_text() == (tmp_path / "yolo" / name).read_text()
    assert (tmp_path / "yolo" / "train/labels/empty.txt").read_text() == ""
    assert (tmp_path / "yolo" / "train/labels/border.txt").read_text().splitlines()[0] == (
        "0 0.5 0.5 1 1"
    )
    data = yaml.safe_load((tmp_path / "yolo" / "data.yaml").read_text())
    assert data["train"] == "train/images" and data["val"] == "valid/images"
    coco = json.loads((tmp_path / "coco" / "annotations" / "instances_train.json").read_text())
    assert [c["id"] for c in coco["categories"]] == list(range(1, 33))
    assert coco["annotations"][0]["bbox"] == [0.0, 0.0, 64.0, 48.0]


def test_yolo_layouts(tmp_path: Path) -> None:
    """Ultralytics' images/<split> layout, Roboflow's ../ paths, and no split keys at all."""
    lines = "1 0.5 0.5 0.25 0.5\n"
    for layout in ("ultralytics", "list-file", "roboflow", "bare"):
        root = tmp_path / layout
        if layout == "list-file":
            _write_image(root / "images/a.jpg", (40, 20), (0, 0, 0))
            (root / "labels").mkdir(parents=True)
            (root / "labels/a.txt").write_text(lines)
            (root / "train.txt").write_text("./images/a.jpg\n")
            data = {"train": "train.txt", "names": {0: "x", 1: "y"}}
        elif layout == "ultralytics":
            _write_image(root / "images/train/a.jpg", (40, 20), (0, 0, 0))
            (root / "labels/train").mkdir(parents=True)
            (root / "labels/train/a.txt").write_text(lines)
            data = {"path": str(root), "train": "images/train", "names": ["x", "y"]}
        else:
            _write_image(root / "valid/images/a.jpg", (40, 20), (0, 0, 0))
            (root / "valid/labels").mkdir(parents=True)
            (root / "valid/labels/a.txt").write_text(lines)
            data = {"names": ["x", "y"]}
            if layout == "roboflow":
                data["val"] = "../valid/images"
        (root / "data.yaml").write_text(yaml.safe_dump(data))
        labels = read_labels(root / "data.yaml", "yolo")
        assert labels.classes == ["x", "y"]
        assert [im.split for im in labels.images] == [
            "valid" if layout in ("roboflow", "bare") else "train"
        ]
        np.testing.assert_allclose(labels.images[0].detections.xyxy, [[15, 5, 25, 15]])


# ------------------------------------------------------------------------------------------
# class mapping
# ------------------------------------------------------------------------------------------


def _vehicles() -> LabelSet:
    classes = ["auto", "lorry", "van", "pedestrian", "tree"]
    boxes = [[0, 0, 5, 5]] * 6
    images = [
        LabeledImage(Path("a.jpg"), 10, 10, make_detections(boxes, [0, 1, 2, 3, 4, 0])),
        LabeledImage(Path("b.jpg"), 10, 10, make_detections([[1, 1, 2, 2]], [4]), "test"),
    ]
    return LabelSet(classes=classes, images=images)


def test_map_classes_maps_merges_and_drops() -> None:
    labels = _vehicles()
    mapping = {"auto": "car", "van": "car", "lorry": "truck", "pedestrian": "person", "tree": None}
    mapped, report = map_classes(labels, mapping)
    assert mapped.classes == list(PROJECT_CLASSES)
    assert report.before == {"auto": 2, "lorry": 1, "van": 1, "pedestrian": 1, "tree": 2}
    assert report.after == {
        "car": 3,
        "truck": 1,
        "bus": 0,
        "motorcycle": 0,
        "bicycle": 0,
        "person": 1,
    }
    assert report.dropped == {"tree": 2}
    assert report.unmapped == {}
    assert [PROJECT_CLASSES[i] for i in mapped.images[0].detections.class_id] == [
        "car",
        "truck",
        "car",
        "person",
        "car",
    ]
    assert len(mapped.images[1].detections) == 0, "an image whose boxes are all dropped stays"
    assert len(labels.images[0].detections) == 6, "the input is not changed"
    table = report.to_pandas().set_index("source_class")
    assert table.loc["tree", "action"] == "dropped"
    assert table.loc["van", "target_class"] == "car"
    assert table.loc["tree", "boxes_kept"] == 0


def test_map_classes_unmapped_raises_naming_them() -> None:
    with pytest.raises(ValueError, match=r"'pedestrian' \(1 boxes\).*'tree' \(2 boxes\)"):
        map_classes(_vehicles(), {"auto": "car", "lorry": "truck", "van": "car"})


def test_map_classes_allow_unmapped_keeps_them_out_and_reports() -> None:
    mapped, report = map_classes(
        _vehicles(),
        {"auto": "car", "lorry": "truck", "van": "car", "x": "bus"},
        allow_unmapped=True,
    )
    assert report.unmapped == {"pedestrian": 1, "tree": 2}
    assert report.unused == ["x"]
    assert sum(report.after.values()) == 4
    assert sum(len(im.detections) for im in mapped.images) == 4
    table = report.to_pandas().set_index("source_class")
    assert table.loc["tree", "action"] == "unmapped" and table.loc["tree", "boxes"] == 2


def test_map_classes_rejects_target_outside_taxonomy() -> None:
    with pytest.raises(ValueError, match="'lorry': 'lorry'"):
        map_classes(_vehicles(), {"auto": "car", "lorry": "lorry"}, allow_unmapped=True)


# ------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------


def _yolo_with_label(root: Path, text: str) -> Path:
    _write_image(root / "train/images/frame.jpg", (32, 32), (0, 0, 0))
    (root / "train/labels").mkdir(parents=True)
    (root / "train/labels/frame.txt").write_text(text)
    (root / "data.yaml").write_text(yaml.safe_dump({"train": "train/images", "names": ["a"]}))
    return root / "train/labels/frame.txt"


def _coco_with(root: Path, **change: object) -> Path:
    document = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],
        "categories": [{"id": 1, "name": "car"}],
        "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]}],
    }
    document["annotations"][0].update(change)
    file = root / "annotations" / "instances_train.json"
    file.parent.mkdir(parents=True)
    file.write_text(json.dumps(document))
    return file


def _voc_without_size(root: Path) -> Path:
    file = root / "train" / "frame.xml"
    file.parent.mkdir(parents=True)
    file.write_text(
        "<annotation><filename>frame.jpg</filename><object><name>car</name><bndbox>"
        "<xmin>1</xmin><ymin>1</ymin><xmax>4</xmax><ymax>4</ymax></bndbox></object></annotation>"
    )
    return file


def _voc_without_xmax(root: Path) -> Path:
    file = root / "train" / "frame.xml"
    file.parent.mkdir(parents=True)
    file.write_text(
        "<annotation><size><width>9</width><height>9</height></size><object><name>car</name>"
        "<bndbox><xmin>1</xmin><ymin>1</ymin><ymax>4</ymax></bndbox></object></annotation>"
    )
    return file


def _labelme_with(root: Path, **change: object) -> Path:
    document: dict[str, object] = {
        "shapes": [{"label": "car", "points": [[1, 1], [4, 4]], "shape_type": "rectangle"}],
        "imagePath": "frame.jpg",
        "imageWidth": 10,
        "imageHeight": 10,
    }
    document.update(change)
    file = root / "frame.json"
    root.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(document))
    return file


def _cvat_box(root: Path, box: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    file = root / "annotations.xml"
    file.write_text(
        '<annotations><version>1.1</version><image id="0" name="a.jpg" width="10" height="10">'
        f"{box}</image></annotations>"
    )
    return file


BAD_INPUTS: dict[str, tuple[str, Callable[[Path], Path], str]] = {
    "yolo-four-values": (
        "yolo",
        lambda r: _yolo_with_label(r, "0 0.5 0.5 0.1 0.1\n0 0.5 0.5 0.1\n"),
        r":2: expected 5 values",
    ),
    "yolo-not-a-number": (
        "yolo",
        lambda r: _yolo_with_label(r, "0 0.5 abc 0.1 0.1\n"),
        r":1: non-numeric",
    ),
    "yolo-class-out-of-range": (
        "yolo",
        lambda r: _yolo_with_label(r, "3 0.5 0.5 0.1 0.1\n"),
        r":1: class id 3",
    ),
    "yolo-negative-size": (
        "yolo",
        lambda r: _yolo_with_label(r, "0 0.5 0.5 -0.1 0.1\n"),
        r":1: negative",
    ),
    "coco-missing-image": (
        "coco",
        lambda r: _coco_with(r, image_id=99),
        r"\(id 7\) references image id 99",
    ),
    "coco-missing-category": (
        "coco",
        lambda r: _coco_with(r, category_id=5),
        r"\(id 7\) references category id 5",
    ),
    "coco-negative-bbox": ("coco", lambda r: _coco_with(r, bbox=[1, 1, -2, 2]), r"negative width"),
    "voc-without-size": ("voc", _voc_without_size, r"no <size> element"),
    "voc-without-xmax": ("voc", _voc_without_xmax, r"xmax"),
    "labelme-without-width": (
        "labelme",
        lambda r: _labelme_with(r, imageWidth=None),
        r"imageWidth",
    ),
    "labelme-circle": (
        "labelme",
        lambda r: _labelme_with(
            r, shapes=[{"label": "c", "points": [[1, 1], [2, 2]], "shape_type": "circle"}]
        ),
        r"shapes\[0\]: shape_type 'circle'",
    ),
    "cvat-box-without-xtl": (
        "cvat",
        lambda r: _cvat_box(r, '<box label="car" ytl="1" xbr="3" ybr="3"/>'),
        r"<box> 0 xtl",
    ),
    "cvat-not-xml": ("cvat", lambda r: _cvat_box(r, "<box"), r"not valid XML"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_names_the_file(tmp_path: Path, case: str) -> None:
    fmt, build, fragment = BAD_INPUTS[case]
    bad_file = build(tmp_path / "data")
    with pytest.raises(ValueError, match=re.escape(str(bad_file)) + r".*" + fragment):
        read_labels(tmp_path / "data", fmt)


@pytest.mark.parametrize("call", ["read", "write", "convert"])
def test_unknown_format_lists_the_known_ones(tmp_path: Path, call: str) -> None:
    known = re.escape(", ".join(FORMATS))
    with pytest.raises(ValueError, match=rf"'darknet'.*{known}"):
        if call == "read":
            read_labels(tmp_path, "darknet")
        elif call == "write":
            write_labels(LabelSet(["a"], []), tmp_path / "out", "darknet")
        else:
            convert(tmp_path, tmp_path / "out", src_format="yolo", dst_format="darknet")
    assert normalize_format("Pascal_VOC") == "voc"


def test_write_refuses_to_touch_the_source(synthetic: LabelSet) -> None:
    assert synthetic.root is not None
    with pytest.raises(ValueError, match="overlaps the source"):
        write_labels(synthetic, synthetic.root, "voc")
    with pytest.raises(ValueError, match="overlaps the source"):
        write_labels(synthetic, synthetic.root / "inside", "coco")
    assert sorted(p.name for p in synthetic.root.iterdir()) == [
        "border.png",
        "empty.png",
        "many.jpg",
    ]


def test_write_refuses_colliding_names_and_bad_boxes(synthetic: LabelSet, tmp_path: Path) -> None:
    twin = LabeledImage(Path("other/empty.png"), 64, 48, make_detections([], []), "train")
    clash = LabelSet(synthetic.classes, [*synthetic.images, twin], synthetic.root)
    with pytest.raises(ValueError, match="both be written"):
        write_labels(clash, tmp_path / "clash", "yolo", copy_images=False)
    reversed_box = LabeledImage(Path("r.png"), 10, 10, make_detections([[5, 5, 1, 1]], [0]))
    with pytest.raises(ValueError, match=r"r\.png: a box has x2 < x1"):
        write_labels(LabelSet(["a"], [reversed_box]), tmp_path / "rev", "coco")
    out_of_range = LabeledImage(Path("o.png"), 10, 10, make_detections([[1, 1, 5, 5]], [3]))
    with pytest.raises(ValueError, match=r"o\.png: class id out of range"):
        write_labels(LabelSet(["a"], [out_of_range]), tmp_path / "oor", "cvat")


def test_missing_image_to_copy_is_named(tmp_path: Path) -> None:
    image = LabeledImage(Path("gone.jpg"), 10, 10, make_detections([[1, 1, 5, 5]], [0]))
    with pytest.raises(FileNotFoundError, match=r"gone\.jpg"):
        write_labels(LabelSet(["a"], [image], tmp_path / "src"), tmp_path / "out", "labelme")


def test_classes_file_keeps_class_order(synthetic: LabelSet, tmp_path: Path) -> None:
    write_labels(synthetic, tmp_path / "voc", "voc", copy_images=False)
    assert (tmp_path / "voc" / CLASSES_FILE).read_text().split() == synthetic.classes
    (tmp_path / "voc" / CLASSES_FILE).unlink()
    back = read_labels(tmp_path / "voc", "voc")
    assert back.classes == sorted(
        {"class_00", "class_05", "class_31"} | {f"class_{i:02d}" for i in range(24)}
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.5559895833333334, "0.55599"),
        (0.38375, "0.38375"),
        (1.0, "1"),
        (0.0, "0"),
        (-0.0, "0"),
        (0.1234565, "0.123457"),
        (0.0000004, "0"),
    ],
)
def test_format_yolo_number(value: float, text: str) -> None:
    assert format_yolo_number(value) == text


def test_remap_dataset_writes_a_mapped_copy_and_leaves_the_source(tmp_path: Path) -> None:
    from tcv_helpers.data.formats import remap_dataset
    from tcv_helpers.data.synth import generate_dataset

    src = generate_dataset(tmp_path / "src", images=24, cameras=3, sequences=0, workers=1).root
    before = {p: p.read_bytes() for p in sorted(src.rglob("*")) if p.is_file()}
    original = read_labels(src, "yolo")
    counts = {c: 0 for c in original.classes}
    for image in original.images:
        for class_id in image.detections.class_id:
            counts[original.classes[class_id]] += 1
    mapping = {c: c for c in original.classes} | {"bus": "truck", "person": None}
    data_yaml, report = remap_dataset(src, tmp_path / "mapped", mapping)
    assert data_yaml == tmp_path / "mapped" / "data.yaml"
    assert yaml.safe_load(data_yaml.read_text())["names"] == dict(enumerate(PROJECT_CLASSES))
    mapped = read_labels(tmp_path / "mapped", "yolo")
    assert len(mapped.images) == len(original.images)
    after = {c: 0 for c in mapped.classes}
    for image in mapped.images:
        for class_id in image.detections.class_id:
            after[mapped.classes[class_id]] += 1
    assert after["truck"] == counts["truck"] + counts["bus"] and after["bus"] == 0
    assert after["person"] == 0 and report.dropped.get("person", 0) == counts["person"]
    assert {p: p.read_bytes() for p in sorted(src.rglob("*")) if p.is_file()} == before
    with pytest.raises(ValueError, match="car"):
        remap_dataset(src, tmp_path / "partial", {"truck": "truck"})
