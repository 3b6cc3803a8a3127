"""Instance masks: the generator's segmentation labels, mask scores, the segmenter and the three
tasks on one frame (tcv_helpers.model.segment)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import supervision as sv
import torch
from tiny import TINY

from tcv_helpers.data.dataset import Dataset
from tcv_helpers.data.registry import LoadedDataset
from tcv_helpers.data.synth import SEGMENT_DIR, render_frame, segment_lines
from tcv_helpers.model import classify
from tcv_helpers.model.segment import (
    busiest_frame,
    mask_scores,
    match_masks,
    polygon_masks,
    read_segments,
    score_masks,
    segment_yaml,
    segmentation_data,
    segmentation_model,
    three_tasks,
    train_segmenter,
)


def _columns(*spans: tuple[int, int], height: int = 4, width: int = 8) -> np.ndarray:
    """``(N, height, width)`` masks, each filling the columns ``[start, stop)``."""
    masks = np.zeros((len(spans), height, width), dtype=bool)
    for mask, (start, stop) in zip(masks, spans, strict=True):
        mask[:, start:stop] = True
    return masks


# --- scores --------------------------------------------------------------------------------


def test_identical_masks_score_one():
    truth = _columns((0, 3), (4, 8))
    scores = mask_scores([truth], [truth.copy()])
    assert scores.iou == pytest.approx(1.0) and scores.dice == pytest.approx(1.0)
    assert (scores.matched, scores.truths, scores.predictions) == (2, 2, 2)
    assert scores.recall == scores.precision == 1.0


def test_disjoint_masks_match_nothing():
    scores = mask_scores([_columns((0, 3))], [_columns((4, 8))])
    assert scores.matched == 0 and math.isnan(scores.iou) and math.isnan(scores.dice)
    assert scores.recall == 0.0 and "No predicted mask" in scores.message()
    assert scores.summary()["seg_mask_iou"] is None


def test_partial_overlap_has_the_known_iou_and_dice():
    truth, predicted = _columns((0, 4)), _columns((0, 3))  # 3 of 4 columns: IoU 3/4
    scores = mask_scores([truth], [predicted])
    assert scores.iou == pytest.approx(0.75)
    assert scores.dice == pytest.approx(2 * 3 / (4 + 3))  # 2|A∩B| / (|A| + |B|)
    # IoU 1/3 (two shared columns of six) is below the match threshold, and counted with 0
    low = mask_scores([_columns((0, 4))], [_columns((2, 6))], min_iou=0.0)
    assert low.iou == pytest.approx(1 / 3) and low.dice == pytest.approx(0.5)
    assert mask_scores([_columns((0, 4))], [_columns((2, 6))]).matched == 0


def test_matching_is_one_to_one_and_by_the_largest_total_iou():
    truth = _columns((0, 4), (4, 8))
    predicted = _columns((0, 4), (0, 4), (4, 7))  # a duplicate, and a 3/4 outline
    ious = match_masks(truth, predicted)
    assert sorted(np.round(ious, 4)) == [0.75, 1.0]
    scores = mask_scores([truth], [predicted])
    assert (scores.matched, scores.predictions) == (2, 3)
    assert scores.precision == pytest.approx(2 / 3)


def test_empty_images_are_scored():
    empty = np.zeros((0, 4, 8), dtype=bool)
    scores = mask_scores([empty, _columns((0, 4))], [_columns((0, 4)), empty])
    assert (scores.matched, scores.truths, scores.predictions) == (0, 1, 1)


@pytest.mark.parametrize(
    ("truths", "predictions", "message"),
    [
        ([np.zeros((1, 4, 8), bool)], [], "images"),
        ([np.zeros((1, 4, 8), bool)], [np.zeros((1, 4, 9), bool)], "one size"),
        ([np.zeros((4, 8), bool)], [np.zeros((1, 4, 8), bool)], r"\(N, H, W\)"),
    ],
)
def test_bad_masks_are_refused(truths, predictions, message):
    with pytest.raises(ValueError, match=message):
        mask_scores(truths, predictions)


# --- the generator's segmentation labels ---------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_one_segment_per_box_inside_the_frame_around_the_box(seed):
    frame = render_frame(seed=seed, width=320, height=192, vehicles=12)
    w, h = frame.image.size
    assert len(frame.segments) == len(frame.boxes) > 0
    masks = polygon_masks(frame.segments, w, h)
    for segment, box, mask in zip(frame.segments, frame.boxes, masks, strict=True):
        assert segment.shape[1] == 2 and len(segment) >= 3
        assert (segment >= 0).all() and (segment[:, 0] <= w).all() and (segment[:, 1] <= h).all()
        x1, y1 = segment.min(axis=0)
        x2, y2 = segment.max(axis=0)
        assert np.allclose([x1, y1, x2, y2], box, atol=1.5)  # pixel centres: half a pixel in
        ys, xs = np.nonzero(mask)  # the filled polygon is the visible part: inside the box,
        assert xs.min() >= box[0] - 1 and xs.max() < box[2] + 1  # and most of it
        assert ys.min() >= box[1] - 1 and ys.max() < box[3] + 1
        assert mask.sum() > 0.2 * (box[2] - box[0]) * (box[3] - box[1])  # 30 % of a body is seen


def test_a_segment_is_the_visible_part_of_the_outline():
    """A segment lies inside the vehicle's drawn outline (up to its rasterised edge), and an
    unhidden vehicle's segment fills like the outline itself."""
    ious = []
    for seed in range(6):
        frame = render_frame(seed=seed, width=320, height=192, vehicles=12)
        w, h = frame.image.size
        visible = polygon_masks(frame.segments, w, h)
        whole = polygon_masks(frame.polygons, w, h)
        outside = (visible & ~whole).sum(axis=(1, 2))
        assert (outside <= 0.05 * visible.sum(axis=(1, 2)) + 30).all()
        ious += sv.mask_iou_batch(visible, whole).diagonal().tolist()
    assert min(ious) > 0.3  # at least MIN_VISIBLE of every labelled vehicle is seen
    assert np.mean(np.array(ious) > 0.9) > 0.5  # most vehicles are not hidden at all


def test_segment_labels_round_trip(tmp_path):
    frame = render_frame(seed=5, vehicles=10)
    label = tmp_path / "frame.txt"
    label.write_text(segment_lines(frame))
    polygons, classes = read_segments(label, *frame.image.size)
    assert classes.tolist() == frame.class_ids.tolist()
    for read, made in zip(polygons, frame.segments, strict=True):
        assert np.allclose(read, made, atol=1e-3)  # six decimals of 640 pixels


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("0 0.1 0.1 0.2 0.2", "at least 3"),
        ("0 0.1 0.1 0.2 0.2 0.3", "at least 3"),
        ("0 0.1 0.1 0.2 0.2 0.3 1.4", "0-1"),
        ("car 0.1 0.1 0.2 0.2 0.3 0.3", "class id"),
    ],
)
def test_bad_segment_labels_name_the_file_and_line(tmp_path, line, message):
    label = tmp_path / "bad.txt"
    label.write_text(f"1 0.1 0.1 0.2 0.1 0.2 0.2\n{line}\n")
    with pytest.raises(ValueError, match=message) as error:
        read_segments(label, 64, 64)
    assert f"{label}, line 2" in str(error.value)


def test_a_missing_label_file_means_no_objects(tmp_path):
    polygons, classes = read_segments(tmp_path / "none.txt", 64, 64)
    assert polygons == [] and len(classes) == 0


def test_the_dataset_has_a_segmentation_dataset_beside_it(tiny_dataset):
    root = tiny_dataset.root
    assert tiny_dataset.segment_yaml == segment_yaml(root) == segment_yaml(tiny_dataset.data_yaml)
    seg = Dataset.from_yaml(tiny_dataset.segment_yaml)
    det = Dataset.from_yaml(tiny_dataset.data_yaml)
    assert seg.names == det.names and seg.folder == root / SEGMENT_DIR
    assert (seg.folder / "manifest.csv").read_text() == tiny_dataset.manifest.read_text()
    for split in ("train", "val", "test"):
        images = det.unique_images(split)
        assert [p.name for p in seg.unique_images(split)] == [p.name for p in images]
        for image in images:
            twin = root / SEGMENT_DIR / image.relative_to(root)
            assert twin.read_bytes() == image.read_bytes()
            rows = np.loadtxt(Dataset.label_path(image), ndmin=2)  # class cx cy w h, 0-1
            polygons, classes = read_segments(Dataset.label_path(twin), 640, 360)
            assert classes.tolist() == rows[:, 0].astype(int).tolist()
            for polygon, (_, cx, cy, bw, bh) in zip(polygons, rows, strict=True):
                box = np.array([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2]) * [
                    640,
                    360,
                    640,
                    360,
                ]
                assert np.allclose([*polygon.min(axis=0), *polygon.max(axis=0)], box, atol=1.5)


def test_the_busiest_frame_is_a_day_frame_with_the_most_vehicles(tiny_dataset):
    data = tiny_dataset.segment_yaml
    rows = list(csv.DictReader(tiny_dataset.manifest.open()))
    count = {r["image"]: int(r["boxes"]) for r in rows if r["split"] == "val"}
    day = [r["image"] for r in rows if r["split"] == "val" and r["condition"] == "day"]
    found = busiest_frame(data).relative_to(data.parent).as_posix()
    assert found in day and count[found] == max(count[i] for i in day)
    anything = busiest_frame(data, condition=None).relative_to(data.parent).as_posix()
    assert count[anything] == max(count.values())
    assert busiest_frame(data, condition="snow").name  # no such frames: all of them


def test_a_dataset_without_masks_uses_the_synthetic_set(tmp_path, tiny_dataset):
    boxes_only = LoadedDataset(tmp_path / "manaus-traffic", "a real set", key="manaus-traffic")
    made = segmentation_data(boxes_only, data_dir=tmp_path / "data", profile=TINY, seed=0)
    assert not made.own and "boxes only" in made.message and made.data_yaml.is_file()
    own = LoadedDataset(tiny_dataset.root, "synthetic", key="synthetic")
    found = segmentation_data(own, data_dir=tmp_path / "data", profile=TINY)
    assert found.own and found.data_yaml == tiny_dataset.segment_yaml


def test_a_synthetic_set_from_before_masks_is_named(tmp_path):
    boxes_only = LoadedDataset(tmp_path / "elsewhere", "a real set")
    data = tmp_path / "data"
    segmentation_data(boxes_only, data_dir=data, profile=TINY, seed=0)
    (data / "synthetic-smoke-0" / SEGMENT_DIR / "data.yaml").unlink()
    with pytest.raises(FileNotFoundError, match=r"synthetic-smoke-0.*Delete that folder"):
        segmentation_data(boxes_only, data_dir=data, profile=TINY, seed=0)


@pytest.mark.parametrize(
    ("model", "expected"),
    [("yolo11n.yaml", "yolo11n-seg.yaml"), ("yolo11s.pt", "yolo11s-seg.yaml"),
     ("yolo11n-seg.yaml", "yolo11n-seg.yaml")],
)  # fmt: skip
def test_segmentation_model_is_the_detectors_family(model, expected):
    assert segmentation_model(model) == expected


# --- the crop classifier -------------------------------------------------------------------


def _classifier(path: Path, names=("car", "truck")) -> classify.SmallCNN:
    model = classify.SmallCNN(len(names), width=8, seed=1).eval()
    torch.save({"state_dict": model.state_dict(), "names": list(names), "epoch": 1}, path)
    return model


def test_the_crop_classifier_loads_as_saved(tmp_path):
    saved = _classifier(tmp_path / "crop_classifier.pt")
    model, names = classify.load_crop_classifier(tmp_path / "crop_classifier.pt")
    assert names == ("car", "truck")
    x = torch.rand(2, 3, classify.CROP, classify.CROP)
    with torch.no_grad():
        assert torch.allclose(model(x), saved(x))


def test_a_file_that_is_no_crop_classifier_is_refused(tmp_path):
    torch.save({"weights": [1, 2]}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"other\.pt is not a crop classifier"):
        classify.load_crop_classifier(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="notebook 04"):
        classify.load_crop_classifier(tmp_path / "missing.pt")


def test_cut_crop_is_the_box_with_context_in_rgb():
    frame = np.zeros((40, 60, 3), dtype=np.uint8)
    frame[10:20, 20:30] = (255, 0, 0)  # blue in BGR
    crop = classify.cut_crop(frame, (20, 10, 30, 20), size=16)
    assert crop.shape == (3, 16, 16) and crop.dtype == np.uint8
    assert crop[2, 8, 8] == 255 and crop[0, 8, 8] == 0  # RGB: blue is the last channel
    edge = classify.cut_crop(frame, (0, 0, 10, 10), size=16)  # beyond the frame: grey
    assert edge[:, 0, 0].tolist() == [114, 114, 114]


# --- a segmenter trained on the tiny set ---------------------------------------------------


@pytest.mark.slow
def test_a_segmenter_trains_scores_and_draws_the_three_tasks(tmp_path, tiny_model):
    data = tiny_model.data.segment_yaml
    run = train_segmenter(
        data, profile=TINY, out_dir=tmp_path / "models", detector=tiny_model.weights, epochs=1
    )
    assert run.weights == tmp_path / "models" / "segmenter.pt" and run.weights.is_file()
    assert "frozen layers" in run.start
    weights = {  # our own files: loading these pickles is safe
        path: torch.load(path, map_location="cpu", weights_only=False)["model"].state_dict()
        for path in (tiny_model.weights, run.weights)
    }
    detector, segmenter = weights[tiny_model.weights], weights[run.weights]
    for frozen in (
        "model.0.conv.weight",
        "model.23.cv2.0.0.conv.weight",
        "model.23.cv3.2.2.weight",
    ):
        assert torch.equal(detector[frozen], segmenter[frozen]), frozen  # the detector's boxes
    assert "model.23.proto.cv1.conv.weight" in segmenter  # and a mask branch of its own
    summary = run.summary()
    assert 0 <= summary["seg_mask_map50"] <= 1 and 0 <= summary["seg_box_map50"] <= 1
    scores = score_masks(run.weights, data, imgsz=TINY.imgsz, conf=0.001)
    assert scores.truths == sum(
        len(read_segments(Dataset.label_path(p), 640, 360)[0])
        for p in Dataset.from_yaml(data).unique_images("val")
    )
    assert scores.predictions > 0
    frame = Dataset.from_yaml(data).unique_images("val")[0]
    missing = three_tasks(
        frame, detector=tiny_model.weights, segmenter=run.weights, classifier=None,
        imgsz=TINY.imgsz, conf=0.001,
    )  # fmt: skip
    assert missing.crops is None and "notebook 04" in missing.note
    assert missing.segments.mask is not None and missing.segments.mask.shape[1:] == (360, 640)
    assert len(missing.plot().axes) == 3
    _classifier(tmp_path / "crop_classifier.pt", names=Dataset.from_yaml(data).names)
    both = three_tasks(
        frame, detector=tiny_model.weights, segmenter=run.weights,
        classifier=tmp_path / "crop_classifier.pt", imgsz=TINY.imgsz, conf=0.001,
    )  # fmt: skip
    assert both.note == "" and len(both.crops) == len(both.detections) > 0
    assert np.array_equal(both.crops.xyxy, both.detections.xyxy)
    assert set(both.crops.data["class_name"]) <= set(Dataset.from_yaml(data).names)
