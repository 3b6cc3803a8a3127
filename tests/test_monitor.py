"""Drift detection: flags night, rain and a moved camera; stays quiet on the same conditions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import supervision as sv
from matplotlib.figure import Figure

from tcv_helpers.monitor.drift import (
    FEATURES,
    MODEL_FEATURES,
    EmbeddingSpace,
    compare,
    detection_features,
    frame_features,
    profile_frames,
    profile_with_model,
    psi,
    scene_of,
    synthetic_window,
    timeline,
)

CAMERA = 3


@pytest.fixture(scope="module")
def reference():
    frames = synthetic_window(camera_index=CAMERA, frames=100, condition="day", seed=0)
    scene = scene_of(frames)
    return profile_frames(frames, scene=scene), scene


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_held_out_window_of_the_same_conditions_does_not_drift(reference, seed):
    profile, scene = reference
    window = synthetic_window(camera_index=CAMERA, frames=30, condition="day", seed=seed)
    report = compare(profile, profile_frames(window, scene=scene))
    assert not report.drifted, report.table()
    assert report.window_size == 30 and list(report.table().index) == list(FEATURES)


@pytest.mark.parametrize(
    ("condition", "moved", "expected"),
    [
        ("night", False, "brightness"),
        ("rain", False, "sharpness"),
        ("day", True, "scene_distance"),
    ],
    ids=["night", "rain", "moved camera"],
)
def test_night_rain_and_a_moved_camera_drift(reference, condition, moved, expected):
    profile, scene = reference
    window = synthetic_window(
        camera_index=CAMERA, frames=30, condition=condition, moved=moved, seed=9
    )
    report = compare(profile, profile_frames(window, scene=scene))
    assert report.drifted and expected in report.drifted_features, report.table()


def test_psi_is_zero_for_the_same_sample_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    values = rng.normal(100, 10, 2000)
    assert psi(values, values) == pytest.approx(0.0, abs=1e-9)
    assert psi(values, rng.normal(100, 10, 2000)) < 0.05
    assert psi(values, rng.normal(130, 10, 2000)) > 1.0
    with pytest.raises(ValueError, match="both the reference and the window"):
        psi(values, np.array([np.nan]))


def test_frame_features_follow_the_image():
    dark = np.full((90, 160, 3), 20, np.uint8)
    bright = np.full((90, 160, 3), 200, np.uint8)
    assert frame_features(dark)["brightness"] < frame_features(bright)["brightness"]
    assert np.isnan(frame_features(dark)["scene_distance"]), "no scene given"
    edges = bright.copy()
    edges[:, ::2] = 0
    assert frame_features(edges)["sharpness"] > frame_features(bright)["sharpness"]


def test_compare_errors(reference):
    profile, _ = reference
    with pytest.raises(ValueError, match="no frames"):
        compare(profile, profile.iloc[:0])
    with pytest.raises(ValueError, match="missing: brightness"):
        compare(profile, pd.DataFrame({"contrast": [1.0]}), features=["brightness"])
    with pytest.raises(ValueError, match="at least one frame"):
        scene_of([])


def test_detection_features_count_size_and_confidence():
    two = sv.Detections(
        xyxy=np.array([[0, 0, 10, 10], [0, 0, 20, 20]], float), confidence=np.array([0.4, 0.8])
    )
    none = sv.Detections.empty()
    table = detection_features([two, none], [(100, 100), (100, 100)])
    assert table["box_count"].tolist() == [2.0, 0.0]
    assert table.loc[0, "box_area"] == pytest.approx((0.01 + 0.04) / 2)
    assert table.loc[0, "confidence"] == pytest.approx(0.6)
    assert np.isnan(table.loc[1, "box_area"]) and np.isnan(table.loc[1, "confidence"])
    with pytest.raises(ValueError, match="2 detections for 1 frame sizes"):
        detection_features([two, none], [(100, 100)])


def test_embedding_space_measures_new_frames_like_the_reference():
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(8, 64))
    reference = rng.normal(size=(120, 8)) @ basis
    space = EmbeddingSpace.fit(reference, dims=8)
    own = space.reference_distance(reference)
    same = space.distance(rng.normal(size=(60, 8)) @ basis)
    shifted = space.distance(rng.normal(2.0, 1.0, size=(60, 8)) @ basis)
    # cross-fitted distances are those of new frames of the same kind, not smaller
    assert 0.8 < np.median(same) / np.median(own) < 1.25
    assert np.median(shifted) > 2 * np.median(same)
    assert np.median(space.distance(reference)) < np.median(own)  # in-sample is optimistic
    with pytest.raises(ValueError, match="do not match the reference's width 64"):
        space.distance(np.zeros((2, 32)))
    with pytest.raises(ValueError, match="at least 3 reference frames"):
        EmbeddingSpace.fit(np.zeros((2, 64)))


@pytest.fixture(scope="module")
def model_reference():
    """An untrained YOLO11n: even random backbone features see night and a new view."""
    import torch
    from ultralytics import YOLO

    torch.manual_seed(0)
    model = YOLO("yolo11n.yaml")
    frames = synthetic_window(camera_index=CAMERA, frames=60, condition="day", seed=0)
    scene = scene_of(frames)
    profile, space = profile_with_model(frames, model=model, imgsz=96, scene=scene)
    return model, scene, profile, space


@pytest.mark.parametrize(
    ("condition", "moved", "drifts"),
    [("day", False, False), ("night", False, True), ("day", True, True)],
    ids=["held-out day", "night", "moved camera"],
)
def test_embedding_distance_drifts_for_night_and_a_moved_camera_only(
    model_reference, condition, moved, drifts
):
    model, scene, profile, space = model_reference
    assert list(profile.columns) == [*FEATURES, *MODEL_FEATURES]
    window = synthetic_window(
        camera_index=CAMERA, frames=30, condition=condition, moved=moved, seed=11
    )
    seen, _ = profile_with_model(window, model=model, imgsz=96, scene=scene, space=space)
    report = compare(profile, seen, features=[*FEATURES, *MODEL_FEATURES])
    assert ("embedding_distance" in report.drifted_features) is drifts, report.table()
    assert report.drifted is drifts


def test_timeline_flags_the_windows_after_the_change(reference):
    profile, scene = reference
    day = profile_frames(
        synthetic_window(camera_index=CAMERA, frames=40, condition="day", seed=5), scene=scene
    )
    night = profile_frames(
        synthetic_window(camera_index=CAMERA, frames=40, condition="night", seed=6), scene=scene
    )
    stream = pd.concat([day.assign(label="day"), night.assign(label="night")], ignore_index=True)
    line = timeline(profile, stream, window=20, step=10)
    windows = line.windows
    assert list(windows["start"]) == [0, 10, 20, 30, 40, 50, 60]
    assert not windows.loc[windows["end"] < 40, "drifted"].any()
    assert windows.loc[windows["start"] >= 40, "drifted"].all()
    assert windows.loc[windows["start"] >= 40, "brightness_drifted"].all()
    alarm = line.first_alarm()
    assert alarm is not None and 20 <= alarm["start"] <= 40 and alarm["label"] == "night"
    figure = line.plot(["brightness", "sharpness"])
    assert isinstance(figure, Figure) and len(figure.axes) == 2
    with pytest.raises(ValueError, match="fewer than one window"):
        timeline(profile, stream.iloc[:5], window=20)
