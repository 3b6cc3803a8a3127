import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tcv_helpers.data.labels import read_yolo_labels
from tcv_helpers.data.synth import (
    CONDITIONS,
    generate_dataset,
    generate_sequence,
    make_camera,
    render_frame,
    split_cameras,
)  # fmt: skip
from tcv_helpers.project import PROJECT_CLASSES


def test_deterministic_per_seed():
    a, b = render_frame(seed=3), render_frame(seed=3)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert np.array_equal(a.boxes, b.boxes)
    assert not np.array_equal(np.asarray(a.image), np.asarray(render_frame(seed=4).image))


@pytest.mark.parametrize("seed", range(10))
def test_labels_are_valid(seed):
    frame = render_frame(seed=seed, width=320, height=192, vehicles=12)
    w, h = frame.image.size
    assert (w, h) == (320, 192)
    assert len(frame.boxes) == len(frame.class_ids) == len(frame.polygons) == len(frame.track_ids)
    x1, y1, x2, y2 = frame.boxes.T
    assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= w).all() and (y2 <= h).all()
    assert ((x2 - x1) >= 6).all() and ((y2 - y1) >= 6).all()
    assert set(frame.class_names) <= {"car", "truck", "bus", "motorcycle"}
    for poly, box in zip(
        frame.polygons, frame.boxes, strict=True
    ):  # visible part inside the outline
        tol = 2  # the rasterised outline and nearest-pixel resampling of the rolled view
        assert box[0] >= poly[:, 0].min() - tol and box[2] <= poly[:, 0].max() + tol
        assert box[1] >= poly[:, 1].min() - tol and box[3] <= poly[:, 1].max() + tol


def test_a_camera_keeps_its_geometry():
    a, b = make_camera(2, seed=5), make_camera(2, seed=5)
    assert a == b and a != make_camera(3, seed=5)
    f1 = render_frame(seed=10, camera_index=1)
    f2 = render_frame(seed=11, camera_index=1)
    top1, top2 = np.asarray(f1.image)[40:60], np.asarray(f2.image)[40:60]
    assert np.abs(top1.astype(int) - top2.astype(int)).mean() < 10, "same camera, same background"


def test_conditions_change_the_picture():
    means = {
        c: np.asarray(render_frame(seed=5, condition=c).image, dtype=float).mean()
        for c in CONDITIONS
    }
    assert means["night"] < 0.5 * means["day"]
    assert means["fog"] > means["day"]


@pytest.mark.parametrize("kwargs", [{"condition": "snow"}, {"width": 10}, {"vehicles": -1}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        render_frame(seed=0, **kwargs)


@pytest.mark.parametrize(("cameras", "expected"), [(3, [1, 1, 1]), (6, [4, 1, 1]), (12, [8, 2, 2])])
def test_split_by_camera(cameras, expected):
    splits = list(split_cameras(cameras).values())
    assert [splits.count(s) for s in ("train", "val", "test")] == expected


@pytest.mark.parametrize(
    ("args", "message"), [((2,), "at least 3"), ((6, (0.5, 0.5, 0)), "fractions")]
)
def test_split_errors(args, message):
    with pytest.raises(ValueError, match=message):
        split_cameras(*args)


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "data.yaml"
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return generate_dataset(
        tmp_path_factory.mktemp("synth"),
        images=36,
        cameras=4,
        seed=3,
        sequences=1,
        sequence_frames=40,
        workers=2,
    )


def test_dataset_layout(dataset):
    root = dataset.root
    data = yaml.safe_load(dataset.data_yaml.read_text())
    assert data["path"] == str(root) and data["names"] == dict(enumerate(PROJECT_CLASSES))
    rows = list(csv.DictReader(dataset.manifest.open()))
    assert len(rows) == 36 == sum(dataset.images.values())
    assert list(rows[0])[:6] == ["image", "camera_id", "timestamp", "source", "condition", "split"]
    splits_of = {}
    for row in rows:
        image = root / row["image"]
        assert image.is_file() and row["image"].startswith(f"images/{row['split']}/")
        splits_of.setdefault(row["camera_id"], set()).add(row["split"])
        label = root / row["image"].replace("images/", "labels/", 1).replace(".jpg", ".txt")
        boxes, ids = read_yolo_labels(label, 640, 360)
        assert len(boxes) == int(row["boxes"])
        assert ((boxes >= -0.01) & (boxes <= 640.01)).all() and (ids < len(PROJECT_CLASSES)).all()
    assert all(len(s) == 1 for s in splits_of.values()), "a camera appears in two splits"
    assert {s for v in splits_of.values() for s in v} == {"train", "val", "test"}
    assert sum(dataset.boxes.values()) > 36
    coco = [
        json.loads((root / "annotations" / f"instances_{s}.json").read_text())
        for s in ("train", "val", "test")
    ]
    assert sum(len(c["images"]) for c in coco) == 36
    assert sum(len(c["annotations"]) for c in coco) == sum(int(r["boxes"]) for r in rows)
    assert [c["name"] for c in coco[0]["categories"]] == list(PROJECT_CLASSES)


def test_dataset_is_deterministic(dataset, tmp_path):
    again = generate_dataset(
        tmp_path / "again", images=36, cameras=4, seed=3, sequences=1, sequence_frames=40, workers=1
    )
    assert _digest(again.root) == _digest(dataset.root)


def test_sequence_ground_truth(dataset):
    folder = dataset.sequences[0]
    meta = json.loads((folder / "sequence.json").read_text())
    frames = sorted((folder / "frames").glob("*.jpg"))
    assert len(frames) == meta["frames"] == 40
    tracks = list(csv.DictReader((folder / "tracks.csv").open()))
    assert {r["direction"] for r in tracks} <= {"in", "out"}
    assert sum(meta["counts"].values()) >= 1
    line_y = meta["line"][0][1]
    by_track = {}
    for r in tracks:
        by_track.setdefault((r["track_id"], r["direction"]), []).append(
            (int(r["frame"]), float(r["y2"]))
        )
    for (track, direction), points in by_track.items():  # "in" moves down the image, "out" up
        points = sorted(
            p for p in points if p[1] < 359
        )  # bottoms cut by the frame edge say nothing
        if len(points) >= 3:
            trend = points[-1][1] - points[0][1]
            assert (trend > 0) if direction == "in" else (trend < 0), (track, direction, points)
    assert 0 < line_y < 360


def test_a_sequence_does_not_depend_on_how_many_processes_draw_it(tmp_path):
    """The traffic is simulated in order and only the drawing is shared out, so one process and
    two write the same frames and the same tracks."""
    one = generate_sequence(tmp_path / "one", frames=36, camera_index=2, index=1, workers=1)
    two = generate_sequence(tmp_path / "two", frames=36, camera_index=2, index=1, workers=2)
    assert _digest(one) == _digest(two)
    assert len(list((two / "frames").glob("*.jpg"))) == 36


def test_sequence_arguments(tmp_path):
    with pytest.raises(ValueError):
        generate_sequence(tmp_path, frames=0)


@pytest.mark.slow
def test_plain_yolo_train_accepts_the_dataset(dataset, tmp_path):
    """`tcv data synth` output trains with Ultralytics' own `yolo train`, offline."""
    yolo = shutil.which("yolo", path=str(Path(sys.executable).parent)) or shutil.which("yolo")
    if yolo is None:
        pytest.fail("the `yolo` command (ultralytics) is not installed")
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    result = subprocess.run(
        [yolo, "train", f"data={dataset.data_yaml}", "model=yolo11n.yaml", "epochs=1", "imgsz=96",
         "batch=8", "workers=0", "plots=False", "device=cpu", f"project={tmp_path}", "name=run",
         "exist_ok=True", "val=True"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "run" / "weights" / "last.pt").is_file()
    assert (tmp_path / "run" / "results.csv").is_file()
