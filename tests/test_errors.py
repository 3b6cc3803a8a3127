"""Error analysis: every mistake sorted into its kind, listed and shown."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from tcv_helpers.model.errors import ERROR_KINDS, error_cases, error_table, plot_error_gallery
from tcv_helpers.model.metrics import iou
from tests.eval_cases import NAMES, det

ERR_GT = [
    det([[0, 0, 40, 40], [100, 0, 140, 40], [200, 0, 240, 40], [300, 0, 340, 40]], [0, 0, 1, 0]),
    det([], []),
]
ERR_PRED = [
    det(
        [
            [1, 0, 40, 40],  # correct car
            [100, 0, 140, 41],  # good box, wrong class (bus for a car)
            [210, 10, 260, 60],  # truck, poorly localised (IoU ~0.27)
            [400, 100, 440, 140],  # nothing there
            [2, 0, 41, 40],  # duplicate of the correct car
            [300, 0, 340, 40],  # would be correct but below the threshold
        ],
        [0, 2, 1, 0, 0, 0],
        [0.95, 0.9, 0.8, 0.7, 0.6, 0.2],
    ),
    det([[0, 0, 10, 10]], [1], [0.5]),
]


def test_error_cases_kinds():
    cases = error_cases(ERR_GT, ERR_PRED, conf=0.25)
    first = [c for c in cases if c.image == 0]
    assert [c.kind for c in first] == [
        "false_positive",
        "false_positive",
        "missed",
        "poor_localisation",
        "wrong_class",
    ]
    fps = [c for c in first if c.kind == "false_positive"]
    assert [c.confidence for c in fps] == [0.7, 0.6]
    assert fps[0].iou == 0.0 and fps[1].iou > 0.9  # the duplicate overlaps its car
    missed = next(c for c in first if c.kind == "missed")
    assert missed.gt_box == (300.0, 0.0, 340.0, 40.0) and missed.pred_box is None
    poor = next(c for c in first if c.kind == "poor_localisation")
    assert poor.iou == pytest.approx(iou([200, 0, 240, 40], [210, 10, 260, 60]))
    assert 0.1 < poor.iou < 0.5 and (poor.gt_class, poor.pred_class) == (1, 1)
    wrong = next(c for c in first if c.kind == "wrong_class")
    assert (wrong.gt_class, wrong.pred_class, wrong.confidence) == (0, 2, 0.9)
    second = [c for c in cases if c.image == 1]
    assert [c.kind for c in second] == ["false_positive"] and second[0].gt_box is None
    assert {c.kind for c in cases} <= set(ERROR_KINDS)
    # With a lower threshold the fourth car is found: no longer missed.
    assert "missed" not in {c.kind for c in error_cases(ERR_GT, ERR_PRED, conf=0.1)}
    table = error_table(cases, NAMES)
    assert len(table) == len(cases) and table.loc[4, "pred_class"] == "bus"


def test_error_cases_bad_thresholds():
    with pytest.raises(ValueError, match="min_iou"):
        error_cases(ERR_GT, ERR_PRED, iou=0.3, min_iou=0.4)


def test_error_gallery(tmp_path):
    cases = error_cases(ERR_GT, ERR_PRED)
    picture = np.full((120, 480, 3), 90, dtype=np.uint8)
    path = tmp_path / "frame.png"
    Image.fromarray(picture).save(path)
    fig = plot_error_gallery([path, picture], cases, NAMES, max_cases=4)
    assert isinstance(fig, Figure)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 4
    for kind in ERROR_KINDS:  # kinds taken in turn: every kind shows
        assert any(kind.replace("_", " ") in title for title in titles), kind
    none = plot_error_gallery([picture], [], NAMES)
    assert "No errors" in none.axes[0].texts[0].get_text()
    with pytest.raises(ValueError, match="out of range"):
        plot_error_gallery([picture], cases, NAMES)
