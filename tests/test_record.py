import numpy as np
import pytest

from tcv_helpers.record import METRICS_MIME, clean_metrics, collect_metrics, record_metrics


def test_record_cleans_numpy_values():
    assert record_metrics(map50=np.float32(0.5)) is None
    out = clean_metrics(map50=np.float32(0.5), n=np.int64(3), ok=True, name="yolo")
    assert out == {"map50": 0.5, "n": 3, "ok": True, "name": "yolo"}
    assert type(out["map50"]) is float and type(out["n"]) is int


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        ([1, 2], TypeError),
        ({"a": 1}, TypeError),
    ],
)
def test_record_rejects_bad_values(value, error):
    with pytest.raises(error, match="bad"):
        record_metrics(bad=value)


def test_record_needs_a_metric():
    with pytest.raises(ValueError):
        record_metrics()


def test_collect_reads_outputs_and_later_values_win():
    nb = {
        "cells": [
            {
                "cell_type": "code",
                "outputs": [
                    {"output_type": "display_data", "data": {METRICS_MIME: {"a": 1, "b": 2}}}
                ],
            },
            {"cell_type": "markdown"},
            {
                "cell_type": "code",
                "outputs": [
                    {"output_type": "stream", "text": "x"},
                    {"output_type": "display_data", "data": {METRICS_MIME: {"a": 5}}},
                ],
            },
        ]
    }
    assert collect_metrics(nb) == {"a": 5, "b": 2}
    assert collect_metrics({"cells": []}) == {}
