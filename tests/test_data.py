import numpy as np
import pytest

from tcv_helpers.data.card import example_frame
from tcv_helpers.data.labels import read_yolo_labels
from tcv_helpers.viz import plot_estimates, plot_task_types


def test_read_yolo_labels(tmp_path):
    label = tmp_path / "a.txt"
    label.write_text("1 0.5 0.5 0.2 0.4\n\n0 0.1 0.1 0.2 0.2\n")
    boxes, ids = read_yolo_labels(label, 100, 50)
    assert ids.tolist() == [1, 0]
    assert np.allclose(boxes[0], [40, 15, 60, 35])
    assert np.allclose(boxes[1], [0, 0, 20, 10])
    empty, none = read_yolo_labels(tmp_path / "missing.txt", 10, 10)
    assert empty.shape == (0, 4) and none.shape == (0,)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1 0.5 0.5 0.2", "expected 5 values"),
        ("car 0.5 0.5 0.2 0.2", "non-numeric"),
        ("1 nan 0.5 0.2 0.2", "NaN"),
    ],
)
def test_bad_label_line_names_file_and_line(tmp_path, line, message):
    label = tmp_path / "frame_0007.txt"
    label.write_text("0 0.5 0.5 0.1 0.1\n" + line + "\n")
    with pytest.raises(ValueError, match=message) as err:
        read_yolo_labels(label, 10, 10)
    assert f"{label}:2" in str(err.value)


def test_synthetic_example_has_outlines():
    frame = example_frame(None)
    assert frame.polygons is not None and len(frame.polygons) == len(frame.class_names) > 0
    assert frame.source.startswith("synthetic")


def test_real_example_from_sample_data(sample_data):
    frame = example_frame(sample_data)
    assert frame.source.startswith("sample data: manaus-traffic/test/images/")
    assert frame.polygons is None and "CC BY 4.0" in frame.attribution
    assert len(set(frame.class_names)) >= 3
    w, h = frame.image.size
    assert (frame.boxes[:, 2] <= w + 1).all() and (frame.boxes[:, 3] <= h + 1).all()


def test_plots_return_figures():
    from tcv_helpers.compute import estimate, estimates_table
    from tcv_helpers.config import PROFILES

    fig = plot_task_types(example_frame(None))
    assert len(fig.axes) == 3 and len(fig.axes[1].patches) == len(example_frame(None).class_names)
    fig2 = plot_estimates(estimates_table(estimate(PROFILES["smoke"])))
    assert len(fig2.axes[0].patches) == 6
