import numpy as np
import pytest

from tcv_helpers.project import PROJECT_CLASSES
from tcv_helpers.synth import CONDITIONS, render_frame


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
    assert len(frame.boxes) == len(frame.class_ids) == len(frame.polygons) >= 1
    x1, y1, x2, y2 = frame.boxes.T
    assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= w).all() and (y2 <= h).all()
    assert ((x2 - x1) > 1).all() and ((y2 - y1) > 1).all()
    assert set(frame.class_names) <= {"car", "truck", "bus", "motorcycle"}
    assert (frame.class_ids < len(PROJECT_CLASSES)).all()
    for poly, box in zip(frame.polygons, frame.boxes, strict=True):
        assert poly[:, 0].min() >= box[0] - 1 and poly[:, 0].max() <= box[2] + 1


def test_near_vehicles_are_larger():
    frame = render_frame(seed=11, vehicles=12)
    bottoms = frame.boxes[:, 3]
    heights = frame.boxes[:, 3] - frame.boxes[:, 1]
    cars = np.array(frame.class_names) == "car"
    if cars.sum() >= 2:
        assert np.corrcoef(bottoms[cars], heights[cars])[0, 1] > 0.5


def test_conditions_change_the_picture():
    means = {
        c: np.asarray(render_frame(seed=5, condition=c).image, dtype=float).mean()
        for c in CONDITIONS
    }
    assert means["night"] < 0.5 * means["day"]
    assert means["fog"] > means["day"]


@pytest.mark.parametrize(
    "kwargs", [{"condition": "snow"}, {"width": 10}, {"lanes": 0}, {"vehicles": -1}]
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        render_frame(seed=0, **kwargs)
