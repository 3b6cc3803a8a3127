"""Tests of tcv_helpers.data.prep: leak-free splits, box mapping, augmentation, imbalance, motion."""

from __future__ import annotations

import io
import itertools
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pandas as pd
import pytest
import supervision as sv
from matplotlib.figure import Figure
from PIL import Image

from tcv_helpers.data import prep
from tcv_helpers.data.synth import generate_sequence, render_frame
from tcv_helpers.imaging import NEAR_DUPLICATE_DISTANCE, ImageError, letterbox, perceptual_hash

CLASSES = ("car", "truck", "bus", "motorcycle")


def _random_dataset(seed: int, n_groups: int) -> tuple[list[str], list[dict[str, int]]]:
    rng = np.random.default_rng(seed)
    groups, counts = [], []
    for g in range(n_groups):
        for _ in range(int(rng.integers(1, 9))):
            groups.append(f"cam-{g:02d}")
            counts.append(
                {
                    c: int(rng.poisson(lam))
                    for c, lam in zip(CLASSES, (4, 0.6, 0.3, 0.4), strict=True)
                }
            )
    order = rng.permutation(len(groups))  # items of a group need not be contiguous
    return [groups[i] for i in order], [counts[i] for i in order]


# --------------------------------------------------------------------------------------------
# group_split, near_duplicate_groups, split_report
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(25))
def test_group_split_never_splits_a_group(seed):
    groups, counts = _random_dataset(seed, n_groups=3 + seed * 2)
    splits = prep.group_split(groups, counts, seed=seed)
    assert len(splits) == len(groups)
    assert set(splits) == set(prep.SPLITS), "every split gets at least one group"
    split_of: dict[str, set[str]] = {}
    for group, split in zip(groups, splits, strict=True):
        split_of.setdefault(group, set()).add(split)
    assert all(len(s) == 1 for s in split_of.values())
    assert prep.group_split(groups, counts, seed=seed) == splits, "deterministic per seed"


def test_group_split_seed_orders_equal_groups():
    groups = [f"g{i}" for i in range(12) for _ in range(3)]
    counts = [{"car": 2}] * len(groups)
    results = {tuple(prep.group_split(groups, counts, seed=s)) for s in range(6)}
    assert len(results) > 1


@pytest.mark.parametrize("fractions", [(0.7, 0.15, 0.15), (0.6, 0.2, 0.2), (0.8, 0.1, 0.1)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_group_split_approximates_fractions(fractions, seed):
    groups, counts = _random_dataset(seed + 100, n_groups=80)
    splits = prep.group_split(groups, counts, fractions=fractions, seed=seed)
    shares = [splits.count(s) / len(splits) for s in prep.SPLITS]
    assert np.allclose(shares, fractions, atol=0.04), shares


def test_group_split_stratifies_classes():
    rng = np.random.default_rng(5)
    groups, counts = [], []
    for g in range(60):  # buses on only 12 of 60 cameras, all of them small
        bus_camera = g % 5 == 0
        for _ in range(2 if bus_camera else int(rng.integers(2, 8))):
            groups.append(f"cam-{g}")
            counts.append({"car": int(rng.integers(1, 6)), "bus": 2 if bus_camera else 0})
    splits = prep.group_split(groups, counts)
    report = prep.split_report(groups, splits, counts)
    overall = report["bus"].sum() / report["boxes"].sum()
    for split in prep.SPLITS:
        share = report.loc[split, "bus"] / report.loc[split, "boxes"]
        assert 0.6 * overall <= share <= 1.5 * overall, (split, share, overall)
    # Shuffling cameras into splits blindly often gives a split no bus at all; here all have one.
    assert (report["bus"] > 0).all()


@pytest.mark.parametrize("seed", range(5))
def test_group_split_puts_a_single_rare_group_in_train(seed):
    groups, counts = _random_dataset(seed, n_groups=20)
    counts = [{**c, "bus": 0} for c in counts]
    rare = groups[0]
    counts = [{**c, "bus": 1} if g == rare else c for g, c in zip(groups, counts, strict=True)]
    splits = prep.group_split(groups, counts, seed=seed)
    assert {s for g, s in zip(groups, splits, strict=True) if g == rare} == {"train"}


@pytest.mark.parametrize(
    ("groups", "counts", "kwargs", "message"),
    [
        (["a", "b", "c"], [{"car": 1}] * 2, {}, "one entry per item"),
        (["a", "b"], [{"car": 1}] * 2, {}, "at least 3 distinct groups"),
        ([], [], {}, "at least 3 distinct groups"),
        (["a", "b", "c"], [{"car": 1}] * 3, {"fractions": (0.5, 0.5)}, "fractions"),
        (["a", "b", "c"], [{"car": 1}] * 3, {"fractions": (0.5, 0.3, 0.3)}, "fractions"),
        (["a", "b", "c"], [{"car": 1}] * 3, {"fractions": (1.0, 0.0, 0.0)}, "fractions"),
        (["a", "b", "c"], [{"car": 1}] * 3, {"fractions": (np.nan, 0.5, 0.5)}, "fractions"),
        (["a", "b", "c"], [{"car": 1}, {"car": -1}, {"car": 1}], {}, "item 1"),
        (["a", "b", "c"], [{"car": 1}, {"car": 1.5}, {"car": 1}], {}, "whole number"),
    ],
)
def test_group_split_rejects_bad_input(groups, counts, kwargs, message):
    with pytest.raises(ValueError, match=message):
        prep.group_split(groups, counts, **kwargs)


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def test_near_duplicate_groups(tmp_path):
    a = render_frame(seed=1).image
    paths = [tmp_path / "a.png", tmp_path / "a_reencoded.jpg", tmp_path / "b.jpg"]
    a.save(paths[0])
    paths[1].write_bytes(_jpeg(a.resize((630, 354)), 60))  # re-encoded, slightly resized
    render_frame(seed=2).image.save(paths[2])
    render_frame(seed=4).image.save(tmp_path / "c.png")
    paths.append(tmp_path / "c.png")
    groups = prep.near_duplicate_groups(paths)
    assert groups[0] == groups[1]
    assert len({groups[0], groups[2], groups[3]}) == 3
    assert groups[0] == "dup-0000" and groups[2] == "dup-0001"
    strict = prep.near_duplicate_groups(paths, max_distance=0)
    assert len(set(strict)) >= 3
    assert prep.near_duplicate_groups([]) == []


def test_near_duplicate_groups_link_chains(tmp_path):
    base = np.asarray(render_frame(seed=3).image)
    paths = []
    for k in range(8):  # a slow pan: each frame close to the next, the ends far apart
        paths.append(tmp_path / f"{k}.png")
        Image.fromarray(np.roll(base, 8 * k, axis=1)).save(paths[-1])
    render_frame(seed=4).image.save(tmp_path / "other.png")
    hashes = [perceptual_hash(Image.open(p)) for p in paths]
    assert all(a - b <= NEAR_DUPLICATE_DISTANCE for a, b in itertools.pairwise(hashes))
    assert hashes[0] - hashes[-1] > 2 * NEAR_DUPLICATE_DISTANCE
    groups = prep.near_duplicate_groups([*paths, tmp_path / "other.png"])
    assert set(groups[:-1]) == {"dup-0000"} and groups[-1] == "dup-0001"


@pytest.mark.parametrize(
    ("content", "kwargs", "error"),
    [
        (b"not an image", {}, ImageError),
        (None, {"max_distance": -1}, ValueError),
        (None, {"max_distance": 2.5}, ValueError),
    ],
)
def test_near_duplicate_groups_rejects_bad_input(tmp_path, content, kwargs, error):
    path = tmp_path / "x.jpg"
    if content is None:
        render_frame(seed=1).image.save(path)
    else:
        path.write_bytes(content)
    with pytest.raises(error):
        prep.near_duplicate_groups([path], **kwargs)


def test_split_report_counts_and_leaks():
    groups = ["a", "a", "b", "c", "d"]
    counts = [{"car": 2}, {"car": 1, "bus": 1}, {"car": 3}, {"bus": 2}, {"car": 1}]
    report = prep.split_report(groups, ["train", "train", "val", "test", "train"], counts)
    assert list(report.index) == ["train", "val", "test"]
    assert report.loc["train", "images"] == 3 and report.loc["train", "groups"] == 2
    assert report.loc["train", "car"] == 4 and report.loc["train", "bus"] == 1
    assert report["boxes"].sum() == 10
    assert report["image_share"].sum() == pytest.approx(1)
    assert report["leak_free"].all()
    leaking = prep.split_report(groups, ["train", "val", "val", "test", "train"], counts)
    assert not leaking.loc["train", "leak_free"] and not leaking.loc["val", "leak_free"]
    assert leaking.loc["test", "leak_free"]
    with pytest.raises(ValueError, match="one entry per item"):
        prep.split_report(groups, ["train"], counts)


# --------------------------------------------------------------------------------------------
# boxes_to_letterbox, normalize (the letterbox itself: tests/test_imaging.py)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("box", [(100, 60, 260, 200), (0, 0, 40, 30), (500, 300, 640, 360)])
def test_boxes_map_onto_the_letterboxed_object(box):
    image = np.zeros((360, 640, 3), np.uint8)
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = 255
    out, scale, pad = letterbox(image, 416)
    mapped = prep.boxes_to_letterbox(np.array([box], dtype=float), scale, pad)[0]
    ys, xs = np.nonzero(out[..., 0] > 128)
    found = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert np.allclose(found, mapped, atol=1.0), (found, mapped)


def test_boxes_to_letterbox_numbers_and_detections():
    boxes = np.array([[10, 20, 110, 70], [0, 0, 640, 360]], dtype=float)
    mapped = prep.boxes_to_letterbox(boxes, 0.5, (3, 70))
    assert mapped.dtype == np.float32
    assert mapped.tolist() == [[8.0, 80.0, 58.0, 105.0], [3.0, 70.0, 323.0, 250.0]]
    detections = sv.Detections(xyxy=boxes, class_id=np.array([0, 1]))
    assert np.array_equal(prep.boxes_to_letterbox(detections, 0.5, (3, 70)), mapped)
    assert prep.boxes_to_letterbox(np.zeros((0, 4)), 2.0, (0, 0)).shape == (0, 4)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: prep.boxes_to_letterbox(np.zeros((2, 3)), 1.0, (0, 0)), ValueError, r"\(N, 4\)"),
        (lambda: prep.boxes_to_letterbox(np.zeros((1, 4)), 0.0, (0, 0)), ValueError, "scale"),
        (lambda: prep.normalize(np.zeros((4, 4, 3), np.float32)), ValueError, "uint8"),
        (lambda: prep.normalize(np.zeros((4, 4), np.uint8)), ValueError, "shape"),
    ],
)
def test_preprocessing_rejects_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_normalize_is_chw_float_in_unit_range():
    array = np.zeros((2, 3, 3), np.uint8)
    array[0, 1] = (255, 0, 51)
    out = prep.normalize(array)
    assert out.shape == (3, 2, 3) and out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
    assert out.min() >= 0 and out.max() <= 1
    assert out[:, 0, 1].tolist() == pytest.approx([1.0, 0.0, 0.2])


def test_plot_letterbox_returns_a_figure():
    frame = render_frame(seed=3)
    fig = prep.plot_letterbox(frame.image, frame.boxes, 320)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert len(fig.axes[1].patches) == len(frame.boxes)
    assert "scale 0.500" in fig.axes[1].get_title()


# --------------------------------------------------------------------------------------------
# augment, plot_augmentations
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def frame():
    synthetic = render_frame(seed=3, vehicles=10)
    detections = sv.Detections(
        xyxy=synthetic.boxes,
        class_id=synthetic.class_ids,
        confidence=np.linspace(0.5, 1.0, len(synthetic.boxes), dtype=np.float32),
    )
    return synthetic.image, detections


@pytest.mark.parametrize("kind", prep.AUGMENTATIONS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_augment_keeps_boxes_inside_and_fields_with_them(frame, kind, seed):
    image, detections = frame
    out, moved = prep.augment(image, detections, kind, seed=seed)
    assert isinstance(out, Image.Image) and out.size == image.size and out.mode == "RGB"
    assert not np.array_equal(np.asarray(out), np.asarray(image)), "the picture changed"
    width, height = image.size
    x1, y1, x2, y2 = moved.xyxy.T
    assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= width).all() and (y2 <= height).all()
    assert (x2 - x1 >= prep.MIN_BOX_SIDE).all() and (y2 - y1 >= prep.MIN_BOX_SIDE).all()
    assert len(moved) <= len(detections)
    pairs = set(zip(detections.class_id.tolist(), detections.confidence.tolist(), strict=True))
    kept = set(zip(moved.class_id.tolist(), moved.confidence.tolist(), strict=True))
    assert kept <= pairs, "class ids and confidences travel with their boxes"
    again, moved_again = prep.augment(image, detections, kind, seed=seed)
    assert np.array_equal(np.asarray(again), np.asarray(out)), "deterministic per seed"
    assert np.array_equal(moved_again.xyxy, moved.xyxy)
    if kind in ("rain", "fog", "night", "colour"):
        assert np.array_equal(moved.xyxy, detections.xyxy), "photometric: boxes unchanged"


def test_flip_mirrors_a_box():
    image = np.zeros((100, 200, 3), np.uint8)
    image[10:40, 10:50] = 255
    detections = sv.Detections(xyxy=np.array([[10.0, 10.0, 50.0, 40.0]]), class_id=np.array([2]))
    out, moved = prep.augment(image, detections, "flip")
    assert moved.xyxy.tolist() == [[150.0, 10.0, 190.0, 40.0]]
    assert moved.class_id.tolist() == [2]
    ys, xs = np.nonzero(np.asarray(out)[..., 0] > 128)
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == (150, 190, 10, 40)


def test_geometric_augmentations_move_boxes_with_the_object():
    image = np.full((180, 320, 3), 60, np.uint8)
    image[70:110, 130:190] = 250
    detections = sv.Detections(xyxy=np.array([[130.0, 70.0, 190.0, 110.0]]), class_id=np.array([0]))
    for kind in ("rotate", "crop"):
        for seed in range(4):
            out, moved = prep.augment(image, detections, kind, seed=seed)
            assert len(moved) == 1, (kind, seed)
            ys, xs = np.nonzero(np.asarray(out)[..., 0] > 200)
            centre = ((xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2)
            x1, y1, x2, y2 = moved.xyxy[0]
            assert np.allclose(centre, ((x1 + x2) / 2, (y1 + y2) / 2), atol=3), (kind, seed)


def test_crop_drops_boxes_that_leave_the_image():
    image = np.asarray(render_frame(seed=1).image)
    corners = np.array([[0, 0, 25, 25], [615, 335, 640, 360]], dtype=np.float32)
    detections = sv.Detections(xyxy=corners, class_id=np.array([0, 1]))
    kept = [len(prep.augment(image, detections, "crop", seed=s)[1]) for s in range(10)]
    assert min(kept) < 2


def test_photometric_effects_look_right(frame):
    image, detections = frame
    day = np.asarray(image, dtype=float)
    night = np.asarray(prep.augment(image, detections, "night")[0], dtype=float)
    fog = np.asarray(prep.augment(image, detections, "fog")[0], dtype=float)
    assert night.mean() < 0.5 * day.mean()
    assert fog.std() < day.std(), "fog lowers contrast"
    assert fog[:40].mean() > day[:40].mean() - 5


@pytest.mark.parametrize(
    ("image", "detections", "kind", "error"),
    [
        (np.zeros((20, 20, 3), np.uint8), sv.Detections.empty(), "snow", ValueError),
        (np.zeros((20, 20, 3), np.uint8), np.zeros((0, 4)), "flip", TypeError),
        (np.zeros((20, 20, 3), np.float64), sv.Detections.empty(), "flip", ValueError),
    ],
)
def test_augment_rejects_bad_input(image, detections, kind, error):
    with pytest.raises(error):
        prep.augment(image, detections, kind)


def test_augment_without_boxes():
    out, moved = prep.augment(np.zeros((32, 48, 3), np.uint8), sv.Detections.empty(), "rotate")
    assert out.size == (48, 32) and len(moved) == 0


def test_plot_augmentations_grid(frame):
    image, detections = frame
    fig = prep.plot_augmentations(image, detections, kinds=("flip", "fog", "night"), columns=2)
    assert isinstance(fig, Figure)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 4 and len(fig.axes) == 4
    assert shown[1].get_title().startswith("flip")
    assert len(shown[0].patches) == len(detections)
    with pytest.raises(ValueError, match="kind"):
        prep.plot_augmentations(image, detections, kinds=("blur",))


# --------------------------------------------------------------------------------------------
# class_counts, oversample, write_image_list, plot_class_balance
# --------------------------------------------------------------------------------------------


def _yolo_dataset(root: Path, per_image: list[list[int]]) -> list[Path]:
    """Writes tiny images and YOLO labels; returns the label files."""
    labels = []
    for k, ids in enumerate(per_image):
        image = root / "images" / "train" / f"{k:03d}.jpg"
        image.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 32), (k * 9 % 255, 80, 120)).save(image)
        label = root / "labels" / "train" / f"{k:03d}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("".join(f"{i} 0.5 0.5 0.2 0.2\n" for i in ids), encoding="utf-8")
        labels.append(label)
    return labels


@pytest.fixture
def imbalanced(tmp_path):
    per_image = [[0, 0, 0]] * 8 + [[0, 2]] * 2 + [[0, 1, 1]] + [[]]
    return _yolo_dataset(tmp_path / "data", per_image)


def test_class_counts(imbalanced, tmp_path):
    counts = prep.class_counts(imbalanced, ["car", "truck", "bus"])
    assert isinstance(counts, pd.Series) and counts.name == "boxes"
    assert counts.to_dict() == {"car": 27, "truck": 2, "bus": 2}
    as_mapping = prep.class_counts(imbalanced, {0: "car", 1: "truck", 2: "bus", 3: "van"})
    assert as_mapping.to_dict() == {"car": 27, "truck": 2, "bus": 2, "van": 0}
    images = [tmp_path / "data" / "images" / "train" / f"{k:03d}.jpg" for k in range(12)]
    assert prep.class_counts(images, ["car", "truck", "bus"]).equals(counts)
    missing = prep.class_counts([tmp_path / "none.txt"], ["car"])
    assert missing.tolist() == [0]


def test_class_counts_rejects_bad_input(imbalanced, tmp_path):
    with pytest.raises(ValueError, match="outside the 2 names"):
        prep.class_counts(imbalanced, ["car", "truck"])
    with pytest.raises(ValueError, match="at least one class"):
        prep.class_counts(imbalanced, [])
    broken = tmp_path / "broken.txt"
    broken.write_text("0 0.5 0.5\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.txt:1"):
        prep.class_counts([broken], ["car"])


def test_oversample_raises_rare_classes(imbalanced):
    names = ["car", "truck", "bus"]
    before = prep.class_counts(imbalanced, names)
    listed = prep.oversample(imbalanced, names)
    after = prep.class_counts(listed, names)
    assert listed[: len(imbalanced)] == [
        Path(str(p).replace("labels", "images")).with_suffix(".jpg") for p in imbalanced
    ]
    assert all(p.is_file() for p in listed)
    goal = before.max()
    for name in ("truck", "bus"):
        assert after[name] > 5 * before[name]
        assert abs(after[name] - goal) <= 2, (name, after[name], goal)
    assert after["car"] >= before["car"]
    assert prep.oversample(imbalanced, names) == listed, "deterministic"
    bus_images = {p for p in listed[len(imbalanced) :] if "008" in p.name or "009" in p.name}
    assert len(bus_images) == 2, "repeats spread over every image of the class"


def test_oversample_with_a_number_target(imbalanced):
    names = ["car", "truck", "bus"]
    listed = prep.oversample(imbalanced, names, target=10, seed=3)
    after = prep.class_counts(listed, names)
    assert 9 <= after["truck"] <= 11 and 9 <= after["bus"] <= 11
    assert prep.oversample(imbalanced, names, target=2) == prep.oversample(
        imbalanced, names, target=1
    ), "nothing to add when every class is at the target"
    assert len(prep.oversample(imbalanced, names, target=2)) == len(imbalanced)


@pytest.mark.parametrize("target", ["min", 0, -3, 2.5, True])
def test_oversample_rejects_bad_target(imbalanced, target):
    with pytest.raises(ValueError, match="target"):
        prep.oversample(imbalanced, ["car", "truck", "bus"], target=target)


def test_oversample_needs_the_images(tmp_path):
    label = tmp_path / "labels" / "train" / "x.txt"
    label.parent.mkdir(parents=True)
    label.write_text("0 0.5 0.5 0.1 0.1\n", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="no image found"):
        prep.oversample([label], ["car"])


def test_write_image_list_is_read_by_ultralytics(imbalanced, tmp_path):
    from ultralytics.data.base import BaseDataset

    names = ["car", "truck", "bus"]
    listed = prep.oversample(imbalanced, names)
    path = prep.write_image_list(listed, tmp_path / "lists" / "train.txt")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(listed) and all(Path(line).is_absolute() for line in lines)
    assert not list(path.parent.glob(".*.tmp")), "written atomically"
    files = BaseDataset.get_img_files(SimpleNamespace(prefix="", fraction=1.0), str(path))
    assert sorted(files) == sorted(Path(p).resolve().as_posix() for p in listed), "repeats kept"
    with pytest.raises(ValueError, match="empty"):
        prep.write_image_list([], tmp_path / "empty.txt")
    with pytest.raises(ValueError, match=r"\.txt"):
        prep.write_image_list(listed, tmp_path / "train.csv")


def test_plot_class_balance(imbalanced):
    names = ["car", "truck", "bus"]
    before = prep.class_counts(imbalanced, names)
    after = prep.class_counts(prep.oversample(imbalanced, names), names)
    fig = prep.plot_class_balance(before, after)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights == [*before.tolist(), *after.tolist()]


# --------------------------------------------------------------------------------------------
# propose_by_motion
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=[0, 2])
def sequence(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"seq{request.param}")
    folder = generate_sequence(root, frames=40, camera_index=request.param)
    return folder


def test_motion_proposals_find_moving_vehicles(sequence):
    frames = sorted((sequence / "frames").glob("*.jpg"))
    warmup = 10
    proposals = prep.propose_by_motion(frames, warmup=warmup)
    assert len(proposals) == len(frames)
    assert all(len(p) == 0 for p in proposals[:warmup])
    tracks = pd.read_csv(sequence / "tracks.csv")
    matched = total = 0
    for index in range(warmup, len(frames)):
        truth = tracks.loc[tracks["frame"] == index, ["x1", "y1", "x2", "y2"]].to_numpy(float)
        big = truth[(truth[:, 2] - truth[:, 0] >= 20) & (truth[:, 3] - truth[:, 1] >= 20)]
        if not len(big):
            continue
        total += len(big)
        boxes = proposals[index].xyxy
        if len(boxes):
            matched += int((sv.box_iou_batch(big, boxes).max(axis=1) >= 0.3).sum())
    assert total >= 50, "the sequence has enough vehicles to judge"
    assert matched / total >= 0.5, (matched, total)
    found = [p for p in proposals[warmup:] if len(p)]
    assert found
    for p in found:
        assert (p.class_id == 0).all()
        assert ((p.confidence > 0) & (p.confidence <= 1)).all()
        assert (p.area >= 80).all()


def test_motion_proposals_ignore_a_static_scene_and_respect_the_roi(sequence):
    still = np.asarray(Image.open(sequence / "frames" / "000000.jpg"))
    assert all(len(p) == 0 for p in prep.propose_by_motion([still] * 25))
    frames = [np.asarray(Image.open(p)) for p in sorted((sequence / "frames").glob("*.jpg"))]
    nothing = np.zeros(frames[0].shape[:2], dtype=bool)
    assert all(len(p) == 0 for p in prep.propose_by_motion(frames, roi=nothing))
    left = nothing.copy()
    left[:, : frames[0].shape[1] // 2] = True
    for p in prep.propose_by_motion(frames, roi=left):
        assert (p.xyxy[:, 0] < frames[0].shape[1] // 2).all()


@pytest.mark.parametrize(
    ("kwargs", "frames", "message"),
    [
        ({"history": 0}, [np.zeros((32, 32, 3), np.uint8)], "history"),
        ({"min_area": 0}, [np.zeros((32, 32, 3), np.uint8)], "min_area"),
        ({"warmup": -1}, [np.zeros((32, 32, 3), np.uint8)], "warmup"),
        ({}, [np.zeros((32, 32, 3), np.uint8), np.zeros((32, 40, 3), np.uint8)], "frame 1"),
        ({"roi": np.ones((8, 8), bool)}, [np.zeros((32, 32, 3), np.uint8)], "roi"),
        ({}, [np.zeros((32, 32, 3), np.float32)], "uint8"),
    ],
)
def test_motion_proposals_reject_bad_input(kwargs, frames, message):
    with pytest.raises(ValueError, match=message):
        prep.propose_by_motion(frames, **kwargs)


def test_motion_proposals_on_real_highway_video(sample_data):
    video = sample_data / "videos" / "highway-cctv-b.avi"
    if not video.is_file():
        pytest.skip(f"{video} is absent from the sample data")
    capture = cv2.VideoCapture(str(video))
    frames = []
    while len(frames) < 300:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    assert len(frames) >= 100, "the video could be read"
    warmup = 10
    proposals = prep.propose_by_motion(frames, warmup=warmup)
    busy = np.mean([len(p) > 0 for p in proposals[warmup:]])
    assert busy >= 0.6, f"proposals on only {busy:.0%} of frames with moving traffic"
    height, width = frames[0].shape[:2]
    for p in proposals[warmup:]:
        assert (p.xyxy[:, 2] <= width).all() and (p.xyxy[:, 3] <= height).all()
        assert (p.area < 0.5 * width * height).all(), "no box swallows the whole scene"


def test_propose_by_model_maps_classes(tmp_path):
    """An (untrained) YOLO model runs offline; its class names are mapped into the taxonomy."""
    from ultralytics import YOLO

    from tcv_helpers.data.prep import propose_by_model
    from tcv_helpers.data.synth import render_frame
    from tcv_helpers.project import PROJECT_CLASSES

    frame = tmp_path / "f.jpg"
    render_frame(seed=1).image.save(frame)
    model = YOLO("yolo11n.yaml")  # built from its YAML: no download
    model.model.names = {0: "car", 1: "dog", 2: "bus"}
    proposals = propose_by_model(model, [frame], conf=0.0, imgsz=160)
    assert len(proposals) == 1
    ids = set(proposals[0].class_id.tolist()) if len(proposals[0]) else set()
    assert ids <= {PROJECT_CLASSES.index("car"), PROJECT_CLASSES.index("bus")}
    with pytest.raises(ValueError, match="conf"):
        propose_by_model(model, [frame], conf=2)
