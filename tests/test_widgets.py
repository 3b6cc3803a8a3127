"""The dataset browser and the pseudo-label reviewer: models and their ipywidgets wiring."""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
import supervision as sv
import yaml
from PIL import Image

from tcv_helpers.data.browser import DatasetBrowser
from tcv_helpers.data.labels import label_path_for, read_yolo_labels
from tcv_helpers.data.reviewer import AUTO_ACCEPT_RISK, Proposal, PseudoLabelReviewer

NAMES = {0: "car", 1: "truck", 2: "bus"}
GREY = (128, 128, 128)
# name, split, camera, condition, labels as (class, cx, cy, w, h)
IMAGES = [
    ("a.png", "train", "cam1", "day", [(0, 0.25, 0.5, 0.2, 0.4), (1, 0.7, 0.5, 0.3, 0.4)]),
    ("b.png", "train", "cam2", "night", [(0, 0.5, 0.5, 0.2, 0.2)]),
    ("c.png", "val", "cam1", "night", [(2, 0.5, 0.5, 0.5, 0.5)]),
    ("d.png", "test", "cam2", "day", []),
]


def _image(path: Path, size: tuple[int, int] = (200, 100)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, GREY).save(path)


def _labels(path: Path, rows: list[tuple[int, float, float, float, float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{c} {x} {y} {w} {h}\n" for c, x, y, w, h in rows))


def _write_manifest(root: Path, rows: list[dict[str, str]], columns: list[str]) -> None:
    with (root / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """Ultralytics layout with a manifest (one extra column)."""
    root = tmp_path / "ds"
    rows = []
    for name, split, camera, condition, labels in IMAGES:
        _image(root / "images" / split / name)
        if labels:
            _labels(root / "labels" / split / name.replace(".png", ".txt"), labels)
        rows.append(
            {
                "image": f"images/{split}/{name}",
                "camera_id": camera,
                "timestamp": "2024-05-01T08:00:00",
                "source": "test",
                "condition": condition,
                "split": split,
                "weather": "dry",
            }
        )
    data = {"train": "images/train", "val": "images/val", "test": "images/test"}
    (root / "data.yaml").write_text(yaml.safe_dump({**data, "names": NAMES}))
    _write_manifest(root, rows, [*rows[0]])
    return root


@pytest.fixture
def roboflow(tmp_path: Path) -> Path:
    """Roboflow layout: {train,valid}/{images,labels}, names as a list, no manifest."""
    root = tmp_path / "rf"
    _image(root / "train" / "images" / "x.jpg")
    _labels(root / "train" / "labels" / "x.txt", [(1, 0.5, 0.5, 0.2, 0.2)])
    _image(root / "valid" / "images" / "y.jpg")
    data = {"train": "train/images", "val": "valid/images", "names": ["car", "truck"]}
    (root / "data.yaml").write_text(yaml.safe_dump(data))
    return root


def _names(records) -> list[str]:
    return [Path(r.image).name for r in records]


# ---------------------------------------------------------------------------------------------
# DatasetBrowser: reading


def test_from_dataset_reads_splits_labels_and_manifest(dataset):
    browser = DatasetBrowser.from_dataset(dataset)
    assert _names(browser.records) == ["a.png", "b.png", "c.png", "d.png"]
    a = browser.records[0]
    assert (a.image, a.split, a.camera_id, a.condition) == (
        "images/train/a.png",
        "train",
        "cam1",
        "day",
    )
    assert a.class_ids == (0, 1)
    assert a.extra == {"weather": "dry"}
    assert a.label_file == dataset.resolve() / "labels" / "train" / "a.txt"
    assert browser.records[3].class_ids == ()
    assert browser.choices("split") == ["train", "val", "test"]
    assert browser.choices("camera") == ["cam1", "cam2"]
    assert browser.choices("class_name") == ["car", "truck", "bus"]
    # the yaml file itself is accepted too
    assert len(DatasetBrowser.from_dataset(dataset / "data.yaml").records) == 4


def test_roboflow_layout_without_manifest(roboflow):
    browser = DatasetBrowser.from_dataset(roboflow)
    assert [(r.split, r.camera_id, r.condition) for r in browser.records] == [
        ("train", "unknown", "unknown"),
        ("val", "unknown", "unknown"),
    ]
    assert browser.records[0].class_ids == (1,)
    assert browser.set_filter(split="valid")[0].image == "valid/images/y.jpg"


def test_label_path_follows_ultralytics():
    assert label_path_for("d/images/train/a.jpg") == Path("d/labels/train/a.txt")
    assert label_path_for("images/x/train/images/a.png") == Path("images/x/train/labels/a.txt")
    assert label_path_for("frames/a.jpg") == Path("frames/a.txt")


def test_missing_data_yaml_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data\.yaml"):
        DatasetBrowser.from_dataset(tmp_path)


def test_manifest_missing_columns_names_file_and_columns(dataset):
    _write_manifest(dataset, [{"image": "images/train/a.png", "camera": "x"}], ["image", "camera"])
    with pytest.raises(ValueError, match=r"manifest\.csv.*camera_id.*condition"):
        DatasetBrowser.from_dataset(dataset)


def test_manifest_listing_a_missing_image_or_wrong_split_fails(dataset):
    columns = ["image", "camera_id", "timestamp", "source", "condition", "split"]
    row = dict.fromkeys(columns, "x")
    _write_manifest(dataset, [{**row, "image": "images/train/zz.png", "split": "train"}], columns)
    with pytest.raises(FileNotFoundError, match=r"manifest\.csv.*zz\.png"):
        DatasetBrowser.from_dataset(dataset)
    _write_manifest(dataset, [{**row, "image": "images/train/a.png", "split": "val"}], columns)
    with pytest.raises(ValueError, match=r"manifest\.csv.*a\.png.*'val'"):
        DatasetBrowser.from_dataset(dataset)


def test_malformed_label_file_is_named(dataset):
    (dataset / "labels" / "train" / "a.txt").write_text("0 0.5 0.5\n")
    with pytest.raises(ValueError, match=r"a\.txt:1"):
        DatasetBrowser.from_dataset(dataset)


# ---------------------------------------------------------------------------------------------
# DatasetBrowser: filters and navigation


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"split": "train"}, ["a.png", "b.png"]),
        ({"split": "val"}, ["c.png"]),
        ({"camera": "cam2"}, ["b.png", "d.png"]),
        ({"condition": "night"}, ["b.png", "c.png"]),
        ({"class_name": "car"}, ["a.png", "b.png"]),
        ({"class_name": "bus"}, ["c.png"]),
        ({"split": "train", "condition": "night"}, ["b.png"]),
        ({"camera": "cam1", "class_name": "truck"}, ["a.png"]),
        ({"camera": "cam1", "condition": "night", "class_name": "bus"}, ["c.png"]),
    ],
)
def test_filters(dataset, filters, expected):
    browser = DatasetBrowser.from_dataset(dataset)
    assert _names(browser.set_filter(**filters)) == expected
    assert _names(browser.matching) == expected
    assert browser.current is not None and Path(browser.current.image).name == expected[0]


def test_filters_accumulate_and_clear(dataset):
    browser = DatasetBrowser.from_dataset(dataset)
    browser.set_filter(camera="cam1")
    assert _names(browser.set_filter(condition="night")) == ["c.png"]  # camera still applies
    assert _names(browser.set_filter(camera=None)) == ["b.png", "c.png"]
    assert _names(browser.set_filter(condition="all")) == ["a.png", "b.png", "c.png", "d.png"]
    browser.set_filter(split="train", class_name="car")
    assert len(browser.clear_filters()) == 4
    assert browser.filters == dict.fromkeys(["split", "camera", "condition", "class_name"])


def test_empty_result_is_a_message_not_an_exception(dataset):
    browser = DatasetBrowser.from_dataset(dataset)
    assert browser.set_filter(split="test", class_name="car") == []
    assert browser.current is None and browser.index is None
    assert "No images match" in browser.message
    assert "split=test" in browser.message and "class_name=car" in browser.message
    assert browser.next() is None and browser.previous() is None
    image = browser.render()
    assert isinstance(image, Image.Image)
    with pytest.raises(LookupError, match="No images match"):
        browser.detections()


def test_unknown_filter_value_lists_the_choices(dataset):
    browser = DatasetBrowser.from_dataset(dataset)
    with pytest.raises(ValueError, match=r"cam9.*cam1, cam2"):
        browser.set_filter(camera="cam9")
    with pytest.raises(ValueError, match="unknown filter"):
        browser.choices("weather")


def test_navigation_wraps_around(dataset):
    browser = DatasetBrowser.from_dataset(dataset)
    browser.set_filter(split="train")
    assert browser.current.image.endswith("a.png")
    assert browser.next().image.endswith("b.png")
    assert browser.next().image.endswith("a.png")  # wrapped to the first
    assert browser.previous().image.endswith("b.png")  # wrapped to the last
    assert browser.go_to(-1).image.endswith("b.png")
    with pytest.raises(IndexError):
        browser.go_to(2)


def test_current_image_survives_a_filter_it_passes(dataset):
    browser = DatasetBrowser.from_dataset(dataset)
    browser.go_to(2)  # c.png: val, cam1, night
    browser.set_filter(condition="night")
    assert browser.current.image.endswith("c.png") and browser.index == 1
    browser.set_filter(split="train")  # c.png no longer matches: first match
    assert browser.current.image.endswith("b.png")


def test_message_describes_the_current_image(dataset):
    browser = DatasetBrowser.from_dataset(dataset)
    message = browser.message
    assert message.startswith("1/4 | images/train/a.png | camera cam1 | day | train | 2 boxes")
    assert "car 1" in message and "truck 1" in message
    browser.go_to(3)
    assert "0 boxes" in browser.message


def test_detections_and_render_draw_the_boxes(dataset):
    browser = DatasetBrowser.from_dataset(dataset)
    detections = browser.detections()
    np.testing.assert_allclose(detections.xyxy[0], [30, 30, 70, 70], atol=1e-4)
    assert detections.class_id.tolist() == [0, 1]
    assert detections.confidence.tolist() == [1.0, 1.0]
    rendered = np.asarray(browser.render())
    original = np.asarray(Image.open(browser.current.path).convert("RGB"))
    assert rendered.shape == original.shape
    assert not np.array_equal(rendered[50, 30], original[50, 30])  # left edge of the car box
    assert np.array_equal(rendered[95, 5], original[95, 5])  # far from any box
    empty = browser.render(browser.records[3])
    assert np.array_equal(np.asarray(empty), np.asarray(Image.open(browser.records[3].path)))


# ---------------------------------------------------------------------------------------------
# DatasetBrowser: widget


def test_browser_widget_dropdown_updates_model_and_image(dataset):
    browser = DatasetBrowser.from_dataset(dataset)
    box = browser.widget()
    controls = browser.controls
    assert controls is not None and controls.container is box
    first = bytes(controls.image.value)
    assert first.startswith(b"\x89PNG")
    controls.class_name.value = "bus"
    assert browser.filters["class_name"] == "bus"
    assert _names(browser.matching) == ["c.png"]
    assert bytes(controls.image.value) != first
    assert bytes(controls.image.value) == _png_bytes(browser.render())
    assert "c.png" in controls.info.value
    assert controls.slider.disabled


def test_browser_widget_slider_buttons_and_empty_state(dataset):
    browser = DatasetBrowser.from_dataset(dataset)
    browser.widget()
    controls = browser.controls
    assert controls.slider.max == 3
    controls.slider.value = 2
    assert browser.current.image.endswith("c.png")
    controls.next.click()
    assert browser.index == 3 and controls.slider.value == 3
    controls.next.click()
    assert browser.index == 0 and controls.slider.value == 0  # wrapped
    controls.previous.click()
    assert browser.index == 3
    controls.split.value = "test"
    controls.class_name.value = "car"
    assert browser.matching == []
    assert "No images match" in controls.info.value
    assert controls.slider.disabled and controls.next.disabled
    # model calls from code update the displayed widget too
    browser.clear_filters()
    assert controls.split.value is None and controls.class_name.value is None
    assert controls.slider.max == 3 and "1/4" in controls.info.value


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# PseudoLabelReviewer


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _det(xyxy, class_id, confidence) -> sv.Detections:
    return sv.Detections(
        xyxy=np.array(xyxy, dtype=float).reshape(-1, 4),
        class_id=np.array(class_id, dtype=int),
        confidence=np.array(confidence, dtype=float),
    )


@pytest.fixture
def frames(tmp_path: Path) -> list[tuple[Path, sv.Detections]]:
    src = tmp_path / "src"
    paths = [src / f"f{i}.png" for i in range(3)]
    for path in paths:
        _image(path, (200, 100))
    return [
        (
            paths[0],
            _det(
                [[13.3, 7.7, 61.9, 44.1], [100, 20, 160, 80], [5, 60, 25, 90]],
                [0, 0, 1],
                [0.95, 0.6, 0.3],
            ),
        ),
        (paths[1], _det([[20, 20, 60, 60]], [2], [0.97])),
        (paths[2], _det([[40, 10, 120, 90], [150, 50, 190, 95]], [1, 0], [0.92, 0.99])),
    ]


def _read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_save_writes_exactly_the_decisions(frames, tmp_path):
    sources = {p: _sha(p) for p, _ in frames}
    reviewer = PseudoLabelReviewer(frames, ["car", "truck", "bus"])
    reviewer.drop_box(1)
    reviewer.set_class(0, "truck")
    reviewer.accept()
    reviewer.reject(1)
    out = tmp_path / "out"
    csv_path = reviewer.save(out)

    assert csv_path == out / "review.csv"
    assert sorted(p.name for p in (out / "images").iterdir()) == ["f0.png"]
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["f0.txt"]
    assert (out / "images" / "f0.png").read_bytes() == frames[0][0].read_bytes()
    lines = (out / "labels" / "f0.txt").read_text().splitlines()
    assert lines == [
        f"1 {37.6 / 200:.6f} {25.9 / 100:.6f} {48.6 / 200:.6f} {36.4 / 100:.6f}",
        f"1 {15 / 200:.6f} {75 / 100:.6f} {20 / 200:.6f} {30 / 100:.6f}",
    ]
    xyxy, ids = read_yolo_labels(out / "labels" / "f0.txt", 200, 100)
    assert ids.tolist() == [1, 1]
    np.testing.assert_allclose(xyxy, frames[0][1].xyxy[[0, 2]], atol=2e-4)
    rows = _read_rows(csv_path)
    assert [(r["image"], r["decision"], r["boxes_proposed"], r["boxes_kept"]) for r in rows] == [
        (frames[0][0].as_posix(), "accepted", "3", "2"),
        (frames[1][0].as_posix(), "rejected", "1", "0"),
        (frames[2][0].as_posix(), "pending", "2", "0"),
    ]
    assert rows[0]["reviewer_changes"] == "dropped #1; #0 car->truck"
    assert {p: _sha(p) for p, _ in frames} == sources
    assert not list(out.rglob("*.tmp"))


def test_threshold_prefilters_and_is_frozen_at_decision(frames, tmp_path):
    reviewer = PseudoLabelReviewer(frames, ["car", "truck", "bus"], threshold=0.5)
    assert reviewer.visible_boxes() == [0, 1] and reviewer.kept_boxes() == [0, 1]
    reviewer.accept()
    reviewer.set_threshold(0.9)
    assert reviewer.kept_boxes(0) == [0, 1]  # frozen at 0.5 when accepted
    assert reviewer.kept_boxes(2) == [0, 1]
    reviewer.set_threshold(0.95)
    assert reviewer.kept_boxes(2) == [1]  # pending frames follow the threshold
    reviewer.accept(2)
    reviewer.save(tmp_path / "out")
    assert len((tmp_path / "out" / "labels" / "f0.txt").read_text().splitlines()) == 2
    assert (tmp_path / "out" / "labels" / "f2.txt").read_text().startswith("0 0.850000 0.725000")
    rows = _read_rows(tmp_path / "out" / "review.csv")
    assert rows[0]["reviewer_changes"] == "below 0.50: #2"
    assert rows[2]["reviewer_changes"] == "below 0.95: #0"
    reviewer.reset(0)
    assert reviewer.state(0).decision == "pending" and reviewer.kept_boxes(0) == [0]
    with pytest.raises(ValueError, match="between 0 and 1"):
        reviewer.set_threshold(1.5)


def test_drop_restore_and_class_change(frames):
    reviewer = PseudoLabelReviewer(frames, {0: "car", 1: "truck", 2: "bus"})
    reviewer.drop_box(2)
    reviewer.drop_box(0)
    reviewer.restore_box(0)
    assert reviewer.kept_boxes() == [0, 1]
    reviewer.set_class(1, 2)
    assert reviewer.kept_detections().class_id.tolist() == [0, 2]
    reviewer.set_class(1, "car")  # back to the proposed class: no change recorded
    assert reviewer.state().class_changes == {}
    reviewer.set_kept([1])
    assert reviewer.kept_boxes() == [1] and reviewer.state().dropped == {0, 2}
    with pytest.raises(IndexError, match="#7"):
        reviewer.drop_box(7)
    with pytest.raises(ValueError, match="unknown class 'van'"):
        reviewer.set_class(0, "van")


def test_progress_and_navigation_stop_at_the_ends(frames):
    reviewer = PseudoLabelReviewer(frames, ["car", "truck", "bus"])
    assert str(reviewer.progress) == "0/3 reviewed: 0 accepted, 0 rejected, 3 pending"
    assert reviewer.previous() is False and reviewer.index == 0
    reviewer.accept()
    assert reviewer.next() is True
    reviewer.reject()
    assert reviewer.next() is True and reviewer.next() is False and reviewer.index == 2
    progress = reviewer.progress
    assert (progress.reviewed, progress.total, progress.accepted, progress.rejected) == (2, 3, 1, 1)
    assert progress.pending == 1


def test_auto_accept_only_confident_pending_frames(frames, tmp_path):
    reviewer = PseudoLabelReviewer(frames, ["car", "truck", "bus"])
    reviewer.reject(1)  # a manual decision is never overridden
    assert reviewer.auto_accept(0.9) == [2]  # frame 0 has boxes at 0.6 and 0.3
    assert reviewer.state(1).decision == "rejected"
    reviewer.set_threshold(0.9)  # frame 0 now keeps only its 0.95 box
    assert reviewer.auto_accept(0.9) == [0]
    reviewer.save(tmp_path / "out")
    rows = _read_rows(tmp_path / "out" / "review.csv")
    assert [r["decision"] for r in rows] == ["auto_accepted", "rejected", "auto_accepted"]
    assert rows[0]["reviewer_changes"] == "below 0.90: #1,#2; auto-accepted"
    assert len((tmp_path / "out" / "labels" / "f0.txt").read_text().splitlines()) == 1
    assert "confident mistakes" in AUTO_ACCEPT_RISK


def test_auto_accept_skips_empty_frames_unless_asked(frames):
    reviewer = PseudoLabelReviewer(frames[1:2], ["car", "truck", "bus"], threshold=0.99)
    assert reviewer.kept_boxes() == []
    assert reviewer.auto_accept(0.5) == []
    assert reviewer.auto_accept(0.5, include_empty=True) == [0]


def test_resave_removes_frames_no_longer_accepted(frames, tmp_path):
    reviewer = PseudoLabelReviewer(frames, ["car", "truck", "bus"])
    reviewer.accept(0)
    reviewer.accept(1)
    out = tmp_path / "out"
    reviewer.save(out)
    assert (out / "images" / "f1.png").is_file()
    reviewer.reject(1)
    reviewer.save(out)
    assert not (out / "images" / "f1.png").exists()
    assert not (out / "labels" / "f1.txt").exists()
    assert (out / "labels" / "f0.txt").is_file()


def test_save_refuses_to_overwrite_sources(tmp_path):
    source = tmp_path / "ds" / "images" / "f.png"
    _image(source)
    before = _sha(source)
    reviewer = PseudoLabelReviewer([(source, _det([[1, 1, 9, 9]], [0], [0.9]))], ["car"])
    reviewer.accept()
    with pytest.raises(ValueError, match="overwrite the source image"):
        reviewer.save(tmp_path / "ds")  # ds/images/f.png is the source itself
    reviewer.reject()
    with pytest.raises(ValueError, match="overwrite the source image"):
        reviewer.save(tmp_path / "ds")  # nor would a rejected source be removed
    assert source.is_file() and _sha(source) == before
    assert not (tmp_path / "ds" / "review.csv").exists()


def test_invalid_proposals_are_refused(frames, tmp_path):
    names = ["car", "truck", "bus"]
    no_conf = sv.Detections(xyxy=np.zeros((1, 4)), class_id=np.array([0]))
    with pytest.raises(ValueError, match="confidence"):
        PseudoLabelReviewer([(frames[0][0], no_conf)], names)
    with pytest.raises(ValueError, match=r"class id\(s\) \[5\]"):
        PseudoLabelReviewer([(frames[0][0], _det([[0, 0, 5, 5]], [5], [0.9]))], names)
    other = tmp_path / "other" / "f0.png"
    _image(other)
    with pytest.raises(ValueError, match=r"share the file name f0\.png"):
        PseudoLabelReviewer([frames[0], (other, frames[0][1])], names)
    with pytest.raises(FileNotFoundError, match=r"missing\.png"):
        PseudoLabelReviewer([(tmp_path / "missing.png", frames[0][1])], names)
    with pytest.raises(TypeError, match="Proposal"):
        PseudoLabelReviewer(["not a proposal"], names)
    reviewer = PseudoLabelReviewer([Proposal(frames[1][0], frames[1][1])], names)
    assert reviewer.current.image == frames[1][0]


def test_render_numbers_kept_boxes_and_greys_dropped_ones(frames):
    reviewer = PseudoLabelReviewer(frames, ["car", "truck", "bus"], threshold=0.5)
    original = np.asarray(Image.open(frames[0][0]).convert("RGB"))
    rendered = np.asarray(reviewer.render())
    assert not np.array_equal(rendered[60, 100], original[60, 100])  # box #1 left edge
    assert np.array_equal(rendered[75, 5], original[75, 5])  # box #2 is below the threshold
    reviewer.drop_box(1)
    dropped = np.asarray(reviewer.render())
    assert tuple(dropped[60, 100]) == (158, 158, 158)  # grey outline
    assert not np.array_equal(dropped[60, 100], rendered[60, 100])


# ---------------------------------------------------------------------------------------------
# PseudoLabelReviewer: widget


def test_reviewer_widget_buttons_drive_the_model(frames, tmp_path):
    reviewer = PseudoLabelReviewer(frames, ["car", "truck", "bus"])
    reviewer.widget(out_dir=tmp_path / "out")
    controls = reviewer.controls
    assert controls.previous.disabled and not controls.next.disabled
    controls.accept.click()
    assert reviewer.state(0).decision == "accepted" and reviewer.index == 1
    controls.reject.click()
    assert reviewer.state(1).decision == "rejected" and reviewer.index == 2
    controls.previous.click()
    assert reviewer.index == 1
    controls.next.click()
    assert reviewer.index == 2 and controls.next.disabled
    assert controls.progress.value == "2/3 reviewed: 1 accepted, 1 rejected, 1 pending"
    controls.auto_confidence.value = 0.9
    controls.auto_accept.click()
    assert reviewer.state(2).decision == "auto_accepted"
    assert "auto-accepted 1 frame(s)" in controls.status.value
    controls.save.click()
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == ["f0.png", "f2.png"]
    assert "saved 2 frame(s)" in controls.status.value


def test_reviewer_widget_box_list_class_and_threshold(frames):
    reviewer = PseudoLabelReviewer(frames, ["car", "truck", "bus"])
    reviewer.widget()
    controls = reviewer.controls
    assert [value for _label, value in controls.boxes.options] == [0, 1, 2]
    assert controls.boxes.value == (0, 1, 2)
    before = bytes(controls.image.value)
    controls.boxes.value = (0, 2)  # unselect box #1: dropped
    assert reviewer.state().dropped == {1} and reviewer.kept_boxes() == [0, 2]
    assert bytes(controls.image.value) != before
    assert [value for _label, value in controls.box.options] == [0, 2]
    controls.box.value = 2
    assert controls.class_name.value == 1  # box #2 is a truck
    controls.class_name.value = 2
    assert reviewer.class_of(2) == 2 and reviewer.class_of(0) == 0
    assert controls.box.value == 2  # the picked box stays picked after the redraw
    controls.threshold.value = 0.5
    assert reviewer.threshold == 0.5
    assert [value for _label, value in controls.boxes.options] == [0, 1]
    assert controls.boxes.value == (0,)
    # model calls from code redraw the widget
    reviewer.restore_box(1)
    assert controls.boxes.value == (0, 1)
    assert "2 kept" in controls.info.value
