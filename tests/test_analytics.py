"""Counting traffic: tracking and line counts against ground truth, privacy, the video, bad input."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest
import supervision as sv

from tcv_helpers.count import analytics as A
from tcv_helpers.count import detectors, lines, privacy
from tcv_helpers.count.frames import read_video
from tcv_helpers.count.sequences import TRACK_COLUMNS, ensure_sequence, read_sequence, read_tracks
from tcv_helpers.data.synth import generate_sequence
from tcv_helpers.project import PROJECT_CLASSES

#: (camera index, dataset seed) of the sequences the counts are checked on: several cameras
#: (2 to 6 lanes, rolled views) and seeds.
SEQUENCES = [(0, 1), (3, 2), (7, 3), (11, 4)]
FRAMES = 150  # 15 s at 10 fps each


@pytest.fixture(scope="module")
def sequences(tmp_path_factory):
    root = tmp_path_factory.mktemp("sequences")
    return [
        read_sequence(
            generate_sequence(
                root / f"s{seed}", camera_index=cam, seed=seed, index=cam, frames=FRAMES
            )
        )
        for cam, seed in SEQUENCES
    ]


@pytest.fixture(scope="module")
def gt_runs(sequences):
    return [
        A.count_traffic(
            s.frames_dir, detectors.ground_truth_detector(s.tracks), line=s.line, fps=s.fps,
            zone=s.line.band(before=40, after=40), samples=0,
        )
        for s in sequences
    ]  # fmt: skip


def _noise_frames(folder, count=12, size=(160, 120)):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        cv2.imwrite(
            str(folder / f"{k:06d}.png"), rng.integers(0, 256, (size[1], size[0], 3), np.uint8)
        )
    return folder


def _moving_box_detector(path, *, person=None):
    """A car moving along ``path`` (one (x, y) bottom-centre per frame), plus a still person box."""

    def detect(frame, index):
        boxes, names = [], []
        if index < len(path):
            x, y = path[index]
            boxes.append((x - 10, y - 16, x + 10, y))
            names.append("car")
        if person is not None:
            boxes.append(person)
            names.append("person")
        return detectors.project_detections(
            np.array(boxes).reshape(-1, 4), names, np.ones(len(boxes))
        )

    return detect


# --------------------------------------------------------------------------------------------
# Counting against the ground truth
# --------------------------------------------------------------------------------------------


def test_counts_with_true_boxes_are_within_5_percent_per_direction(sequences, gt_runs):
    for direction in lines.DIRECTIONS:
        truth = sum(s.counts[direction] for s in sequences)
        counted = sum(r.counts[direction] for r in gt_runs)
        assert truth >= 40, f"too few {direction} crossings ({truth}) to judge 5%"
        assert abs(counted - truth) <= 0.05 * truth, (direction, counted, truth)
        # and not by errors that cancel out (a swapped direction would): per sequence too
        off = sum(
            abs(r.counts[direction] - s.counts[direction])
            for s, r in zip(sequences, gt_runs, strict=True)
        )
        assert off <= 0.1 * truth, (direction, off, truth)


def test_crossings_table_matches_the_counts(gt_runs):
    for run in gt_runs:
        assert (
            run.crossings["direction"]
            .value_counts()
            .reindex(lines.DIRECTIONS, fill_value=0)
            .to_dict()
            == run.counts
        )
        assert run.crossings["class_name"].isin(detectors.VEHICLE_CLASSES).all()
        assert (run.crossings["time_s"].diff().dropna() >= 0).all()
        assert run.frames == FRAMES and run.seconds == pytest.approx(FRAMES / 10)


@pytest.mark.parametrize("seconds", [60, 5, 2.5])
def test_per_interval_sums_equal_totals(gt_runs, seconds):
    for run in gt_runs:
        table = run.per_interval(seconds)
        assert len(table) == int(np.ceil(run.seconds / seconds))
        assert table["in"].sum() == run.counts["in"] and table["out"].sum() == run.counts["out"]
        assert (table["total"] == table["in"] + table["out"]).all()
        assert np.allclose(table["per_minute"], table["total"] * 60 / seconds)
    with pytest.raises(ValueError, match="positive"):
        gt_runs[0].per_interval(0)


@pytest.mark.parametrize(
    ("inward", "start", "end", "path", "expected"),
    [
        ("down", (0, 50), (100, 50), [(50, y) for y in range(20, 90, 5)], {"in": 1, "out": 0}),
        ("down", (100, 50), (0, 50), [(50, y) for y in range(20, 90, 5)], {"in": 1, "out": 0}),
        ("down", (0, 50), (100, 50), [(50, y) for y in range(90, 20, -5)], {"in": 0, "out": 1}),
        ("up", (0, 50), (100, 50), [(50, y) for y in range(90, 20, -5)], {"in": 1, "out": 0}),
        ("right", (60, 0), (60, 100), [(x, 60) for x in range(20, 110, 6)], {"in": 1, "out": 0}),
        ("left", (60, 0), (60, 100), [(x, 60) for x in range(20, 110, 6)], {"in": 0, "out": 1}),
    ],
)
def test_line_direction_semantics(tmp_path, inward, start, end, path, expected):
    frames = _noise_frames(tmp_path / "f", count=len(path) + 2)
    line = lines.CountingLine(start, end, inward=inward)
    result = A.count_traffic(frames, _moving_box_detector(path), line=line, fps=10, samples=0)
    assert result.counts == expected


def test_a_vehicle_hidden_while_it_crosses_still_counts(tmp_path):
    path = [(50, y) for y in range(10, 100, 6)]
    visible = [p if not 35 < p[1] < 70 else None for p in path]  # gone for 5 frames at the line

    def detect(frame, index):
        if index < len(visible) and visible[index] is not None:
            x, y = visible[index]
            return detectors.project_detections(
                np.array([[x - 10, y - 16, x + 10, y]]), ["car"], np.ones(1)
            )
        return detectors.empty_detections()

    frames = _noise_frames(tmp_path / "f", count=len(path))
    line = lines.CountingLine((0, 50), (100, 50))
    assert A.count_traffic(frames, detect, line=line, fps=10, samples=0).counts == {
        "in": 1,
        "out": 0,
    }


def test_count_error():
    errors = A.count_error({"in": 9, "out": 22}, {"in": 10, "out": 20})
    assert errors["count_error_in"] == -1 and errors["count_error_out"] == 2
    assert errors["count_ape_in"] == pytest.approx(10) and errors["count_ape_out"] == pytest.approx(
        10
    )
    assert errors["count_mape"] == pytest.approx(10)
    with pytest.raises(ValueError, match="positive"):
        A.count_error({"in": 1, "out": 1}, {"in": 0, "out": 1})
    with pytest.raises(ValueError, match="direction"):
        A.count_error({"in": 1}, {"in": 1, "out": 1})


# --------------------------------------------------------------------------------------------
# Zone, congestion
# --------------------------------------------------------------------------------------------


def test_zone_occupancy_and_congestion(sequences, gt_runs):
    run = gt_runs[0]
    assert run.timeline["occupancy"].between(0, 1).all()
    assert (run.timeline["in_zone"] <= run.timeline["vehicles"]).all()
    assert run.timeline["in_zone"].max() > 0 and np.isfinite(run.timeline["speed"]).any()
    table = run.congestion(A.CongestionRule(window_s=5))
    assert len(table) == 3 and set(table["level"]) <= set(A.LEVELS)
    assert table.attrs["free_flow_speed"] > 0
    everything_heavy = run.congestion(
        A.CongestionRule(heavy_occupancy=1e-6, congested_occupancy=1.0)
    )
    assert set(everything_heavy["level"]) <= {"heavy", "congested"}
    seq = sequences[0]
    no_zone = A.count_traffic(
        seq.frames_dir, detectors.ground_truth_detector(seq.tracks), line=seq.line, fps=seq.fps,
        samples=0, max_frames=3,
    )  # fmt: skip
    assert no_zone.frames == 3 and (no_zone.timeline["in_zone"] == 0).all()
    with pytest.raises(ValueError, match="zone"):
        no_zone.congestion()


@pytest.mark.parametrize(
    ("occupancy", "speed", "level"),
    [(0.05, 100.0, "free"), (0.05, np.nan, "free"), (0.2, 100.0, "heavy"), (0.05, 10.0, "heavy"),
     (0.4, 100.0, "heavy"), (0.4, 10.0, "congested")],
)  # fmt: skip
def test_congestion_rule_levels(occupancy, speed, level):
    assert A.CongestionRule().level(occupancy, speed, free_flow=100.0) == level


def test_congestion_rule_checks_its_thresholds():
    with pytest.raises(ValueError):
        A.CongestionRule(heavy_occupancy=0.5, congested_occupancy=0.2)
    with pytest.raises(ValueError):
        A.CongestionRule(slow_share=1.5)


# --------------------------------------------------------------------------------------------
# Privacy
# --------------------------------------------------------------------------------------------


def _textured(shape=(120, 160, 3)):
    return np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)


def test_blur_changes_person_pixels_and_leaves_the_rest():
    frame = _textured()
    detections = detectors.project_detections(
        np.array([[20, 10, 60, 100], [90, 40, 150, 90]]), ["person", "car"], np.ones(2)
    )
    out = privacy.blur_privacy(frame, detections)
    person = (slice(10, 100), slice(20, 60))
    assert np.abs(out[person].astype(int) - frame[person]).mean() > 30, "the person is not blurred"
    assert out[person].std() < frame[person].std() / 3
    rest = np.ones(frame.shape[:2], bool)
    rest[person] = False
    assert np.array_equal(out[rest], frame[rest]), "pixels outside the person box changed"
    assert np.array_equal(frame, _textured()), "the input frame was changed"
    plates = privacy.blur_privacy(frame, detections, people=False, plates=True)
    assert np.array_equal(plates[person], frame[person])
    lower, upper = (slice(70, 90), slice(90, 150)), (slice(40, 66), slice(90, 150))
    assert np.abs(plates[lower].astype(int) - frame[lower]).mean() > 30
    assert np.array_equal(plates[upper], frame[upper])


def test_runner_blurs_people_before_anything_is_stored(tmp_path):
    frames = _noise_frames(tmp_path / "f", count=10, size=(200, 160))
    person = (120.0, 20.0, 160.0, 100.0)
    path = [(40, 20 + 8 * k) for k in range(10)]
    video = tmp_path / "out" / "people.avi"
    result = A.count_traffic(
        frames, _moving_box_detector(path, person=person), line=lines.CountingLine((0, 60), (90, 60)),
        fps=10, video=video, samples=3,
    )  # fmt: skip
    source = cv2.imread(str(sorted(frames.iterdir())[0]))
    region = (slice(24, 96), slice(124, 156))
    count, written = read_video(video, count=3)
    assert count == 10
    for _, image in [*written, *result.samples]:
        assert image[region].std() < source[region].std() / 3, "a stored frame shows the person"


# --------------------------------------------------------------------------------------------
# The annotated video
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_video_is_written_whole_and_readable(sequences, tmp_path, suffix):
    seq = sequences[0]
    video = tmp_path / "videos" / f"counting{suffix}"
    result = A.count_traffic(
        seq.frames_dir, detectors.ground_truth_detector(seq.tracks), line=seq.line, fps=seq.fps,
        video=video, plates=True, max_frames=40, samples=2,
    )  # fmt: skip
    assert result.video == video and video.is_file()
    count, frames = read_video(video, count=2)
    assert count == result.frames == 40
    assert frames[0][1].shape == (seq.size[1], seq.size[0], 3)
    assert len(result.samples) == 2
    assert sorted(p.name for p in video.parent.iterdir()) == [video.name], "temporary files left"


def test_a_failed_run_leaves_no_video(sequences, tmp_path):
    seq = sequences[0]

    def broken(frame, index):
        if index == 5:
            raise RuntimeError("detector failed")
        return detectors.empty_detections()

    video = tmp_path / "v" / "counting.mp4"
    with pytest.raises(RuntimeError, match="detector failed"):
        A.count_traffic(seq.frames_dir, broken, line=seq.line, fps=seq.fps, video=video)
    assert not video.exists() and list(video.parent.iterdir()) == []
    with pytest.raises(ValueError, match=r"\.mp4, \.avi"):
        A.count_traffic(
            seq.frames_dir, broken, line=seq.line, fps=seq.fps, video=tmp_path / "v.gif"
        )


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


def test_bad_sources_give_clear_errors(tmp_path):
    line = lines.CountingLine((0, 10), (10, 10))
    detector = detectors.ground_truth_detector(pd.DataFrame(columns=TRACK_COLUMNS))
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        A.count_traffic(missing, detector, line=line, fps=10)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        A.count_traffic(tmp_path / "empty", detector, line=line, fps=10)
    empty_video = tmp_path / "empty.mp4"
    empty_video.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.mp4 is not a readable video"):
        A.count_traffic(empty_video, detector, line=line)
    writer = cv2.VideoWriter(
        str(tmp_path / "none.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 32)
    )
    writer.release()  # a video file without a single frame
    with pytest.raises(ValueError, match="no frames"):
        A.count_traffic(tmp_path / "none.avi", detector, line=line)
    frames = _noise_frames(tmp_path / "frames", count=2)
    with pytest.raises(ValueError, match="fps"):
        A.count_traffic(frames, detector, line=line)
    with pytest.raises(ValueError, match="Unknown tracker setting"):
        A.count_traffic(frames, detector, line=line, fps=10, tracker={"speed": 1})
    with pytest.raises(TypeError, match=r"must return sv\.Detections"):
        A.count_traffic(frames, lambda frame, index: [], line=line, fps=10)
    (frames / "000001.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"000001\.png is not a readable image"):
        A.count_traffic(frames, detector, line=line, fps=10)


@pytest.mark.parametrize(
    ("inward", "start", "end", "message"),
    [("sideways", (0, 0), (10, 0), "inward"), ("down", (5, 5), (5, 5), "no length"),
     ("down", (0, 0), (0, 10), "cannot be crossed")],
)  # fmt: skip
def test_bad_lines(inward, start, end, message):
    with pytest.raises(ValueError, match=message):
        lines.CountingLine(start, end, inward=inward)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("3,1,car,in,1,2,x,4", r"line 3: x2 'x' is not a number"),
        ("3,1.5,car,in,1,2,3,4", r"line 3: track_id '1\.5' is not a whole number"),
        ("3,1,plane,in,1,2,3,4", r"line 3: class_name 'plane'"),
        ("3,1,car,north,1,2,3,4", r"line 3: direction 'north'"),
        ("3,1,car,in,5,2,3,4", r"line 3: the box .* has no area"),
        ("-3,1,car,in,1,2,3,4", r"line 3: frame is negative"),
    ],
)
def test_malformed_tracks_name_the_line(tmp_path, line, message):
    path = tmp_path / "tracks.csv"
    path.write_text(",".join(TRACK_COLUMNS) + "\n0,1,car,in,1,2,3,4\n" + line + "\n")
    with pytest.raises(ValueError, match=message) as info:
        read_tracks(path)
    assert "tracks.csv" in str(info.value)


def test_tracks_without_a_column_and_bad_sequence_files(tmp_path, sequences):
    path = tmp_path / "tracks.csv"
    path.write_text("frame,track_id,class_name,x1,y1,x2,y2\n")
    with pytest.raises(ValueError, match=r"line 1: missing column.*direction"):
        read_tracks(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_sequence(tmp_path / "nothing")
    copy = tmp_path / "seq"
    shutil.copytree(sequences[0].folder, copy)
    meta = json.loads((copy / "sequence.json").read_text())
    del meta["line"]
    (copy / "sequence.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"sequence\.json: missing field 'line'"):
        read_sequence(copy)
    (copy / "sequence.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"sequence\.json: line 1: not valid JSON"):
        read_sequence(copy)


def test_ensure_sequence_generates_once(tmp_path):
    made = ensure_sequence(tmp_path, camera_index=2, seed=5, seconds=2, fps=5)
    first = made.sequence
    assert made.message.startswith("Generated") and first.fps == 5
    assert len(list(first.frames_dir.glob("*.jpg"))) == 10
    again = ensure_sequence(tmp_path, camera_index=2, seed=5, seconds=2, fps=5)
    assert again.message.startswith("Using") and again.sequence.folder == first.folder
    longer = ensure_sequence(tmp_path, camera_index=2, seed=5, seconds=3, fps=5).sequence
    assert len(list(longer.frames_dir.glob("*.jpg"))) == 15


# --------------------------------------------------------------------------------------------
# Detectors
# --------------------------------------------------------------------------------------------


def test_yolo_detector_maps_classes_by_name(sequences):
    from ultralytics import YOLO

    coco_like = [f"thing{k}" for k in range(80)]
    coco_like[0], coco_like[2], coco_like[5], coco_like[7] = "person", "car", "bus", "truck"
    model = YOLO("yolo11n.yaml")  # random weights: many boxes at a low threshold
    model.model.names = dict(enumerate(coco_like))
    frame = cv2.imread(str(sorted(sequences[0].frames_dir.iterdir())[60]))
    found = detectors.yolo_detector(model, imgsz=64, conf=0.0)(frame, 0)
    assert len(found) > 0
    names = found.data["class_name"]
    assert set(names) <= {"person", "car", "bus", "truck"}
    assert all(PROJECT_CLASSES[i] == n for i, n in zip(found.class_id, names, strict=True))
    model.model.names = {k: f"thing{k}" for k in range(80)}
    with pytest.raises(ValueError, match="include none of"):
        detectors.yolo_detector(model, imgsz=64)


def test_motion_detector_finds_moving_vehicles(sequences):
    seq = sequences[1]
    detect = detectors.motion_detector(seq.frames_dir, min_area=100, warmup=5, history=50)
    frame_60 = detect(np.zeros(1), 60)
    assert len(frame_60) > 0 and set(frame_60.data["class_name"]) == {"car"}
    truth = seq.tracks[seq.tracks["frame"] == 60][["x1", "y1", "x2", "y2"]].to_numpy()
    assert sv.box_iou_batch(frame_60.xyxy, truth).max(axis=1).mean() > 0.3
    assert len(detect(np.zeros(1), 0)) == 0, "the warm-up frames have no boxes"
    nowhere = np.zeros((seq.size[1], seq.size[0]), bool)
    assert (
        len(detectors.motion_detector(seq.frames_dir, roi=nowhere, warmup=5)(np.zeros(1), 60)) == 0
    )


# --------------------------------------------------------------------------------------------
# The real highway video
# --------------------------------------------------------------------------------------------


def test_real_highway_video_gives_a_plausible_count(sample_data, tmp_path):
    video = sample_data / "videos" / "highway-cctv-b.avi"
    if not video.is_file():
        pytest.skip(f"{video} is absent from the sample data")
    scene = lines.SAMPLE_SCENES[video.name]
    detect = detectors.motion_detector(video, roi=scene.roi, stride=scene.stride)
    out = tmp_path / "highway.mp4"
    result = A.count_traffic(
        video, detect, line=scene.line, zone=scene.zone, stride=scene.stride, video=out,
        crossing_frames=scene.crossing_frames, tracker=scene.tracker,
    )  # fmt: skip
    # Counted by eye on the frames: about 27 vehicles cross the line in the 28 s, all towards
    # the camera; the motion detector merges vehicles that touch, so allow a margin.
    assert 22 <= result.counts["in"] <= 32, result.counts
    assert result.counts["out"] <= 2, result.counts
    count, _ = read_video(out, count=1)
    assert count == result.frames == 850
    assert result.fps == pytest.approx(60, abs=0.1) and result.seconds == pytest.approx(
        28.3, abs=0.1
    )
