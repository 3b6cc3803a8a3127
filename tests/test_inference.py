"""Tests of tcv_helpers.deploy.inference: Ultralytics' boxes without torch, and training's input.

The model is the tiny one of ``tests/service_model.py``; what is compared is the pipeline around
the network: the input it is given (the same tensor as in training), NMS and box scaling.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tcv_helpers.data.synth import generate_dataset
from tcv_helpers.deploy.decode import BadImage, decode_image
from tcv_helpers.deploy.inference import (
    DetectionResult,
    load_detector,
    model_input,
    non_max_suppression,
    scale_boxes,
)
from tcv_helpers.imaging import letterbox_geometry
from tcv_helpers.model.predict import quiet_ultralytics
from tests.service_model import IMGSZ, tiny_service_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_service_model(tmp_path_factory)


def _frames(tiny) -> list[np.ndarray]:
    """BGR frames of several shapes: wide, tall, square, small and odd."""
    frames = []
    for path in tiny.paths[:6]:
        frame = cv2.imread(str(path))
        frames += [frame, np.ascontiguousarray(frame.transpose(1, 0, 2))]
    frames += [cv2.resize(frames[0], (256, 256)), cv2.resize(frames[2], (97, 203))]
    return frames


def _rows(xyxy, confidence, class_id) -> np.ndarray:
    """Detections as rows (class, box, confidence) in a canonical order: equal scores may swap."""
    rows = np.column_stack([class_id, np.round(xyxy, 1), confidence]).astype(np.float64)
    return rows[np.lexsort(rows[:, ::-1].T)]


def _assert_same(ours: DetectionResult, theirs, *, atol: float) -> None:
    boxes = theirs.boxes
    expected = _rows(boxes.xyxy.numpy(), boxes.conf.numpy(), boxes.cls.numpy())
    _assert_rows(_rows(ours.xyxy, ours.confidence, ours.class_id), expected, atol=atol)


def _assert_rows(
    ours: np.ndarray, expected: np.ndarray, *, atol: float, conf_atol: float = 1e-4
) -> None:
    assert ours.shape == expected.shape
    np.testing.assert_array_equal(ours[:, 0], expected[:, 0])  # classes
    np.testing.assert_allclose(ours[:, 1:5], expected[:, 1:5], atol=atol)  # boxes
    np.testing.assert_allclose(ours[:, 5], expected[:, 5], atol=conf_atol)  # confidences


# ---- the detector --------------------------------------------------------------------------


def test_nms_matches_ultralytics():
    import torch
    from ultralytics.utils.nms import non_max_suppression as ultralytics_nms

    rng = np.random.default_rng(1)
    for _ in range(10):
        n, classes = int(rng.integers(5, 2000)), int(rng.integers(1, 7))
        xy, wh = rng.uniform(0, 640, (1, 2, n)), rng.uniform(2, 200, (1, 2, n))
        scores = rng.uniform(0, 1, (1, classes, n)) ** 3
        raw = np.concatenate([xy, wh, scores], axis=1).astype(np.float32)
        for conf, iou in ((0.25, 0.7), (0.001, 0.5)):
            expected = ultralytics_nms(torch.from_numpy(raw), conf, iou, max_det=300)[0].numpy()
            ours = non_max_suppression(raw, conf=conf, iou=iou)[0]
            np.testing.assert_allclose(ours, expected, atol=1e-4)
    end2end = np.array([[[1, 2, 3, 4, 0.9, 2], [5, 6, 7, 8, 0.1, 1]]], np.float32)
    np.testing.assert_allclose(non_max_suppression(end2end, conf=0.25)[0], end2end[0, :1])
    with pytest.raises(ValueError, match="between 0 and 1"):
        non_max_suppression(raw, conf=2)


@pytest.mark.parametrize(
    ("height", "width", "shape"),
    [(360, 640, (128, 128)), (720, 1280, (384, 640)), (203, 97, (128, 128))],
)
def test_scale_boxes_undoes_the_letterbox(height, width, shape):
    _, (new_w, new_h), (top, _, left, _) = letterbox_geometry(height, width, shape)
    original = np.array([[10, 20, 50, 60], [0, 0, width, height]], np.float32)
    gain = np.array([new_w / width, new_h / height] * 2, np.float32)
    in_input = original * gain + np.array([left, top, left, top], np.float32)
    np.testing.assert_allclose(scale_boxes(in_input, shape, (height, width)), original, atol=1e-3)
    outside = np.array([[-5, -5, shape[1] + 5, shape[0] + 5]], np.float32)
    assert scale_boxes(outside, shape, (height, width)).tolist() == [[0, 0, width, height]]


def test_same_detections_as_ultralytics_on_the_onnx_model(tiny):
    from ultralytics import YOLO

    yolo = YOLO(str(tiny.onnx), task="detect")
    frames = _frames(tiny)
    found = 0
    for frame in frames:
        theirs = yolo.predict(frame, imgsz=IMGSZ, conf=0.25, iou=0.7, verbose=False)[0]
        ours = tiny.detector.detect(frame)
        _assert_same(ours, theirs, atol=1e-3)
        assert (ours.width, ours.height) == (frame.shape[1], frame.shape[0])
        found += len(ours)
    assert found > 20 and len({len(tiny.detector.detect(f)) for f in frames}) > 1
    # From the file: Pillow decodes the JPEG as OpenCV does.
    for path in tiny.paths[:3]:
        theirs = yolo.predict(str(path), imgsz=IMGSZ, conf=0.25, verbose=False)[0]
        _assert_same(tiny.detector.detect(path), theirs, atol=1e-3)


def test_same_detections_as_ultralytics_on_the_pytorch_model(tiny):
    from ultralytics import YOLO

    yolo = YOLO(str(tiny.pt))
    found = 0
    for path in tiny.paths[:6]:
        square = cv2.resize(cv2.imread(str(path)), (256, 256))  # no padding either way
        theirs = yolo.predict(square, imgsz=IMGSZ, conf=0.25, iou=0.7, verbose=False)[0]
        ours = tiny.detector.detect(square)
        _assert_same(ours, theirs, atol=1.0)
        found += len(ours)
    assert found > 10


def test_inputs_batches_and_supervision(tiny):
    detector = tiny.detector
    frame = cv2.imread(str(tiny.paths[0]))
    reference = detector.detect(frame)
    rgb = Image.fromarray(frame[..., ::-1])
    for same in (rgb, tiny.paths[0], tiny.paths[0].read_bytes(), str(tiny.paths[0])):
        np.testing.assert_allclose(detector.detect(same).xyxy, reference.xyxy, atol=1e-3)
    batch = detector.detect_batch([frame, frame[:200, :300], tiny.paths[1]])
    assert len(batch) == 3
    np.testing.assert_allclose(batch[0].xyxy, reference.xyxy, atol=1e-3)
    gray = detector.detect(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    bgra = detector.detect(cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA))
    np.testing.assert_allclose(bgra.xyxy, reference.xyxy, atol=1e-3)
    assert isinstance(gray, DetectionResult)

    detections = reference.to_supervision()
    assert len(detections) == len(reference)
    assert list(detections.data["class_name"]) == reference.class_name
    assert set(reference.class_name) <= set(detector.names.values())
    record = reference.to_records()[0]
    assert set(record) == {"xyxy", "confidence", "class_id", "class_name"}
    assert len(detector.detect(frame, conf=0.99)) <= len(reference)
    empty = DetectionResult.empty(names=detector.names, width=4, height=3)
    assert len(empty) == 0 and len(empty.to_supervision()) == 0


def test_detector_errors(tiny, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.onnx"):
        load_detector(tmp_path / "nope.onnx")
    with pytest.raises(ValueError, match="Unknown backend"):
        load_detector(tiny.onnx, backend="tensorflow")
    with pytest.raises(ValueError, match="export to ONNX first"):
        load_detector(tiny.pt)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match=r"junk\.onnx"):
        load_detector(junk)
    with pytest.raises(ValueError, match="uint8"):
        tiny.detector.detect(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(FileNotFoundError, match=r"missing\.jpg"):
        tiny.detector.detect(tmp_path / "missing.jpg")
    with pytest.raises(BadImage, match="not an image"):
        tiny.detector.detect(b"hello")
    with pytest.raises(TypeError, match="Cannot read an image"):
        tiny.detector.detect(42)


def test_openvino_backend_finds_the_same_boxes(tiny, tmp_path):
    import openvino as ov

    folder = tmp_path / "tiny_openvino_model"
    # FP32 weights, as the ONNX file has them (save_model would halve them by default).
    ov.save_model(
        ov.convert_model(str(tiny.onnx)), str(folder / "model.xml"), compress_to_fp16=False
    )
    frames = _frames(tiny)[:4]
    expected = tiny.detector.detect_batch(frames)
    for detector in (
        load_detector(tiny.onnx, backend="openvino", threads=1),
        load_detector(folder),
    ):
        assert detector.backend == "openvino" and detector.names == tiny.detector.names
        for ours, reference in zip(detector.detect_batch(frames), expected, strict=True):
            _assert_rows(
                _rows(ours.xyxy, ours.confidence, ours.class_id),
                _rows(reference.xyxy, reference.confidence, reference.class_id),
                atol=0.5,
                conf_atol=1e-3,  # another runtime's float kernels
            )
    with pytest.raises(ValueError, match="OpenVINO model"):
        load_detector(folder / "model.xml", backend="onnxruntime")


def test_benchmark_folder_serves_its_fastest_variant(tiny, tmp_path):
    variants = tmp_path / "variants"
    variants.mkdir()
    (variants / "fast.onnx").write_bytes(tiny.onnx.read_bytes())
    record = {"fastest": {"variant": "onnxruntime-fp32", "path": "elsewhere/fast.onnx"}}
    (variants / "benchmark.json").write_text(json.dumps(record))
    detector = load_detector(variants)
    assert detector.path == variants / "fast.onnx" and detector.version == tiny.detector.version


# ---- the model's input: the same tensor in training and in the service -----------------------


def _training_inputs(images: Path, imgsz: int) -> dict[str, np.ndarray]:
    """Ultralytics' own loader without augmentation, as training validates: file -> model input.

    ``rect=False``: every frame letterboxed to the square a fixed-size export takes (training's
    validation pads 16:9 frames less, to a batch rectangle; the pixels inside are the same).
    The tensor is what the trainer and the validator give the model: the loader's uint8 CHW RGB
    image, ``.float() / 255``.
    """
    from ultralytics.cfg import get_cfg
    from ultralytics.data.build import build_yolo_dataset

    cfg = get_cfg(overrides={"imgsz": imgsz, "rect": False, "cache": False})
    data = {"names": {k: str(k) for k in range(80)}, "nc": 80, "channels": 3}  # any label ids
    with quiet_ultralytics():
        dataset = build_yolo_dataset(cfg, str(images), batch=1, data=data, mode="val")
    return {
        Path(item["im_file"]).name: (item["img"].float() / 255).numpy()
        for item in (dataset[i] for i in range(len(dataset)))
    }


def _assert_service_input_is_training_input(images: Path, imgsz: int) -> int:
    """Each frame's bytes, decoded and letterboxed as the service does, against training's."""
    expected = _training_inputs(images, imgsz)
    assert sorted(expected) == sorted(p.name for p in images.glob("*.jpg")), "every frame"
    for name, tensor in expected.items():
        served = model_input([decode_image((images / name).read_bytes())], imgsz)[0]
        assert served.dtype == tensor.dtype and served.shape == tensor.shape, name
        np.testing.assert_array_equal(served, tensor, err_msg=f"{name} at {imgsz}")
    return len(expected)


@pytest.mark.parametrize(
    ("width", "height", "sizes"), [(640, 360, (128, 320)), (1280, 720, (640, 416))]
)
def test_the_service_gives_the_model_what_training_gave_it(tmp_path, width, height, sizes):
    """Frames of the embedded set: down by 5 and 2 (640 x 360), by exactly 2 and by 3.08."""
    data = generate_dataset(
        tmp_path / "data", images=12, cameras=3, sequences=0, workers=1, width=width, height=height
    )
    for imgsz in sizes:
        assert _assert_service_input_is_training_input(data.root / "images" / "val", imgsz) > 0


def test_the_service_gives_the_model_what_training_gave_it_on_real_frames(sample_data, tmp_path):
    """Real camera frames of several shapes (800 x 800, 800 x 450, 450 x 800, 576 x 320).

    The split is linked into ``tmp_path``: Ultralytics writes a labels cache beside the labels,
    and the shared data stays untouched.
    """
    split = tmp_path / "valid"
    split.mkdir()
    for part in ("images", "labels"):
        (split / part).symlink_to(sample_data / "manaus-traffic" / "valid" / part)
    for imgsz in (128, 320, 640):
        assert _assert_service_input_is_training_input(split / "images", imgsz) > 50
