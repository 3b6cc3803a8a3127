"""Predictions as sv.Detections from YOLO, and Ultralytics' validation with its boxes."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import supervision as sv

from tcv_helpers.model.evaluate import evaluate_detections, load_ground_truth
from tcv_helpers.model.predict import predict_yolo, quiet_ultralytics, validate_yolo


@pytest.fixture(scope="module")
def tiny(tiny_model):
    return tiny_model.data.root, tiny_model.weights


def test_predict_returns_one_detections_per_image(tiny):
    root, weights = tiny
    paths, _, names = load_ground_truth(root, "val")
    from_paths = predict_yolo(weights, paths, imgsz=64, batch=2)
    assert len(from_paths) == len(paths)
    assert all(isinstance(d, sv.Detections) and d.confidence is not None for d in from_paths)
    import cv2

    arrays = predict_yolo(weights, [cv2.imread(str(p)) for p in paths], imgsz=64)
    for a, b in zip(from_paths, arrays, strict=True):
        assert len(a) == len(b) and np.allclose(a.xyxy, b.xyxy, atol=1e-3)
    ids = np.concatenate([d.class_id for d in from_paths] + [np.zeros(0, int)])
    assert ((ids >= 0) & (ids < len(names))).all()
    high = predict_yolo(weights, paths, imgsz=64, conf=0.9)
    assert sum(map(len, high)) <= sum(map(len, from_paths))


def test_predict_errors(tiny, tmp_path):
    _, weights = tiny
    with pytest.raises(FileNotFoundError, match="train a model first"):
        predict_yolo(tmp_path / "none.pt", [], imgsz=64)
    with pytest.raises(FileNotFoundError, match=r"missing\.jpg"):
        predict_yolo(weights, [tmp_path / "missing.jpg"], imgsz=64)
    with pytest.raises(ValueError, match="imgsz and batch must be positive"):
        predict_yolo(weights, [], imgsz=0)


def test_validation_returns_the_boxes_it_scored(tiny):
    root, weights = tiny
    paths, truth, names = load_ground_truth(root, "val")
    ultra = validate_yolo(weights, root / "data.yaml", imgsz=64, image_paths=paths)
    assert len(ultra.predictions) == len(paths)
    assert set(ultra.numbers()) == {"map50", "map50_95", "precision", "recall"}
    ours = evaluate_detections(truth, ultra.predictions, names)
    assert ours.map50 == pytest.approx(ultra.map50, abs=0.02)
    reordered = validate_yolo(weights, root / "data.yaml", imgsz=64, image_paths=paths[::-1])
    assert [len(d) for d in reordered.predictions] == [len(d) for d in ultra.predictions][::-1]


def test_quiet_ultralytics_restores_the_level():
    from ultralytics.utils import LOGGER

    before = LOGGER.level
    with quiet_ultralytics():
        assert LOGGER.level == logging.WARNING
    assert LOGGER.level == before
    with quiet_ultralytics(verbose=True):
        assert LOGGER.level == before


def test_pytorch_keeps_every_core_after_ultralytics_predicts_and_validates(tiny):
    """Ultralytics sets PyTorch to CPU count - 1 threads at every CPU predict/val: one thread on
    2 cores, for its inference and for everything after it (Detectron2, the benchmark)."""
    import torch

    from tcv_helpers.env import usable_cores

    root, weights = tiny
    paths, _, _ = load_ground_truth(root, "val")
    cores = usable_cores()
    torch.set_num_threads(cores)
    seen = []
    predict_yolo(weights, paths[:1], imgsz=64)
    seen.append(torch.get_num_threads())
    validate_yolo(weights, root / "data.yaml", imgsz=64, image_paths=paths)
    seen.append(torch.get_num_threads())
    assert seen == [cores, cores]
