"""Drift detection: flags night, rain and a moved camera; stays quiet on the same conditions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tcv_helpers.monitor import (
    FEATURES,
    compare,
    frame_features,
    profile_frames,
    psi,
    scene_of,
    synthetic_window,
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
