"""Detectron2's path: the status line everywhere; training and scoring where it is importable."""

from __future__ import annotations

import builtins
import json
import math
import pickle

import numpy as np
import pytest
import supervision as sv

from tcv_helpers.data.synth import generate_dataset
from tcv_helpers.model import detectron
from tcv_helpers.model.evaluate import evaluate_detections, load_ground_truth
from tcv_helpers.trust import UntrustedWeights

STATUS = detectron.detectron2_status()
needs_detectron2 = pytest.mark.skipif(not STATUS.available, reason=STATUS.message)


def test_status_says_how_to_install_when_missing(monkeypatch):
    real_import = builtins.__import__

    def no_detectron2(name, *args, **kwargs):
        if name.startswith("detectron2"):
            raise ImportError("No module named 'detectron2'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_detectron2)
    status = detectron.detectron2_status()
    assert status.available is False and not status
    sentence = status.message
    assert "not importable" in sentence and "setuptools<81" in sentence and "\n" not in sentence
    with pytest.raises(ImportError, match="setuptools<81"):
        detectron.faster_rcnn_config(6, output_dir="unused")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("d2") / "data"
    return generate_dataset(root, images=16, cameras=3, sequences=0, workers=1).root


def test_coco_split_matches_the_yolo_class_ids(tiny):
    json_file, image_root, names = detectron.coco_split(tiny, "train")
    assert json_file.is_file() and image_root.is_dir()
    assert names == load_ground_truth(tiny, "train")[2]


def test_coco_split_errors(tiny, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"instances_nope\.json"):
        detectron.coco_split(tiny, "nope")
    bad = tmp_path / "bad"
    (bad / "annotations").mkdir(parents=True)
    document = {"categories": [{"id": 2, "name": "car"}, {"id": 1, "name": "truck"}]}
    (bad / "annotations" / "instances_train.json").write_text(json.dumps(document))
    with pytest.raises(ValueError, match=r"category ids \[2, 1\] are not listed in increasing"):
        detectron.coco_split(bad, "train")


@needs_detectron2
def test_config_trains_from_scratch_with_groupnorm(tmp_path):
    cfg = detectron.faster_rcnn_config(6, output_dir=tmp_path, imgsz=128, iterations=50)
    assert cfg.MODEL.WEIGHTS == "" and cfg.MODEL.BACKBONE.FREEZE_AT == 0
    assert cfg.MODEL.RESNETS.NORM == cfg.MODEL.FPN.NORM == "GN"
    assert cfg.MODEL.RPN.POST_NMS_TOPK_TEST == 100, "fewer proposals for small frames"
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 6 and cfg.INPUT.MIN_SIZE_TEST == 128
    assert cfg.MODEL.ANCHOR_GENERATOR.SIZES[0] == [5.1] and cfg.SOLVER.MAX_ITER == 50
    zoo = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
    pretrained = detectron.faster_rcnn_config(6, output_dir=tmp_path, weights=zoo)
    assert zoo == pretrained.MODEL.WEIGHTS and pretrained.MODEL.RESNETS.NORM == "FrozenBN"
    stranger = tmp_path / "w.pkl"  # a local pickle the course did not write runs code if loaded
    stranger.write_bytes(pickle.dumps({"model": {}}))
    with pytest.raises(UntrustedWeights):
        detectron.faster_rcnn_config(6, output_dir=tmp_path, weights=stranger)
    with pytest.raises(FileNotFoundError, match=r"missing\.pkl"):
        detectron.faster_rcnn_config(6, output_dir=tmp_path, weights=tmp_path / "missing.pkl")


@needs_detectron2
def test_register_twice_replaces(tiny):
    from detectron2.data import DatasetCatalog

    json_file, image_root, _ = detectron.coco_split(tiny, "val")
    detectron.register_coco("tcv_test_val", json_file, image_root)
    detectron.register_coco("tcv_test_val", json_file, image_root)
    records = DatasetCatalog.get("tcv_test_val")
    assert len(records) == len(load_ground_truth(tiny, "val")[0])
    with pytest.raises(FileNotFoundError, match=r"missing\.json"):
        detectron.register_coco("tcv_test_x", image_root / "missing.json", image_root)


@needs_detectron2
def test_trains_a_few_iterations_and_is_scored_like_yolo(tiny, tmp_path):
    run = detectron.train_detectron2(
        tiny, output_dir=tmp_path / "d2", imgsz=128, iterations=6, batch=2, lr=0.005
    )
    assert run.weights.is_file() and (run.output_dir / "config.yaml").is_file()
    assert len(run.losses) == 6 and all(map(math.isfinite, run.losses)), "GroupNorm: finite"
    assert run.summary()["d2_iterations"] == 6 and "from scratch" in run.note
    paths, truth, names = load_ground_truth(tiny, "val")
    predictions = detectron.predict_detectron2(run.output_dir, paths)
    assert len(predictions) == len(paths)
    assert all(isinstance(p, sv.Detections) and p.confidence is not None for p in predictions)
    class_ids = np.concatenate([p.class_id for p in predictions])
    assert ((class_ids >= 0) & (class_ids < len(names))).all()
    result = evaluate_detections(truth, predictions, names)
    assert 0.0 <= result.map50 <= 1.0 and result.n_images == len(paths)


@needs_detectron2
def test_predict_needs_a_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="train Detectron2 first"):
        detectron.predict_detectron2(tmp_path, [])


def test_the_device_follows_the_profile_and_the_gpu(monkeypatch):
    """Faster R-CNN trains on the GPU when the profile allows one and PyTorch sees it."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert detectron.resolve_device("auto") == "cuda", "workshop and full: the GPU"
    assert detectron.resolve_device("cpu") == "cpu", "smoke: the CPU, GPU or not"
    assert detectron.resolve_device("1") == "cuda:1" and detectron.resolve_device("cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert detectron.resolve_device("auto") == "cpu"
    with pytest.raises(ValueError, match="got 'gpu'"):
        detectron.resolve_device("gpu")
