"""Inference without torch, and the service: same boxes as Ultralytics, hostile input, overload."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import resource
import struct
import subprocess
import sys
import warnings
import zlib
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import cv2
import httpx
import numpy as np
import psutil
import pytest
from PIL import Image
from typer.testing import CliRunner

from tcv_helpers.cli import app as cli_app
from tcv_helpers.data.synth import generate_dataset
from tcv_helpers.deploy import serve
from tcv_helpers.deploy.serve import (
    BadImage,
    DetectionResult,
    create_app,
    decode_image,
    decode_upload,
    letterbox,
    load_detector,
    load_test,
    non_max_suppression,
    post_frames,
    serve_in_background,
)
from tcv_helpers.model.predict import quiet_ultralytics
from tests.conftest import ROOT

with warnings.catch_warnings():  # Starlette nudges towards httpx2; the test client still works
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient

CLASSES = ("car", "truck", "bus", "motorcycle", "bicycle", "person")
IMGSZ = 128
KEY = "s3cret-test-key"


def _tiny_model(frames: list[np.ndarray], out: Path) -> Path:
    """A seeded YOLO11n for the course's six classes, made to give varied boxes (a ``.pt``).

    Untrained weights, so it takes two seconds instead of a training run: what is compared is the
    pipeline around the network, not its accuracy (a few epochs of training would not help: they
    leave BatchNorm's running statistics at their start values, and in eval mode the features
    vanish, so every image gets the same boxes). BatchNorm statistics are estimated on a few
    frames, so the output depends on the image; the head is scaled so that scores spread below
    saturation (ties would make the order of equal boxes arbitrary) and boxes are car-sized,
    not clipped to the whole frame.
    """
    import torch
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    with quiet_ultralytics():
        yolo = YOLO("yolo11n.yaml")
        net = DetectionModel("yolo11n.yaml", nc=len(CLASSES), verbose=False)
    net.names = dict(enumerate(CLASSES))
    yolo.model = net
    batch = np.stack([letterbox(f[..., ::-1], (IMGSZ, IMGSZ)) for f in frames])
    tensor = torch.from_numpy(batch.transpose(0, 3, 1, 2).astype(np.float32) / 255)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the calibration batch
    net.train()
    with torch.no_grad():
        net(tensor)
        head = net.model[-1]
        for scores, boxes in zip(head.cv3, head.cv2, strict=True):
            scores[-1].weight *= 0.4
            scores[-1].bias += 6.0
            boxes[-1].weight *= 0.05
            boxes[-1].bias.view(4, head.reg_max)[:, :4] += 6.0  # short distances: small boxes
    net.eval()
    yolo.save(str(out))
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from ultralytics import YOLO

    work = tmp_path_factory.mktemp("serve")
    data = generate_dataset(work / "data", images=30, cameras=3, sequences=0, workers=1)
    paths = sorted((data.root / "images").glob("*/*.jpg"))
    pt = _tiny_model([cv2.imread(str(p)) for p in paths[:16]], work / "tiny.pt")
    with quiet_ultralytics():
        onnx = Path(YOLO(str(pt)).export(format="onnx", imgsz=IMGSZ, dynamic=False))
    detector = load_detector(onnx)
    return SimpleNamespace(
        pt=pt, onnx=onnx, detector=detector, paths=paths[16:], jpeg=paths[20].read_bytes()
    )


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


def test_import_needs_neither_torch_nor_ultralytics():
    code = (
        "import sys, tcv_helpers.deploy.serve; "
        "print([m for m in ('torch', 'ultralytics', 'supervision', 'cv2', 'typer') "
        "if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.parametrize("shape", [(360, 640), (640, 360), (50, 50), (1, 300), (128, 128)])
def test_letterbox_matches_ultralytics(shape, monkeypatch):
    from ultralytics.data.augment import LetterBox

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    image = cv2.GaussianBlur(image, (5, 5), 0)  # smooth, like a photo
    for size in (IMGSZ, 640):
        expected = LetterBox((size, size), auto=False)(image=image)
        np.testing.assert_array_equal(letterbox(image, (size, size)), expected)
        with monkeypatch.context() as without_cv2:  # the numpy resize, for images without OpenCV
            without_cv2.setitem(sys.modules, "cv2", None)
            plain = letterbox(image, (size, size))
        assert np.abs(plain.astype(int) - expected).max() <= 1


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
    ov.save_model(ov.convert_model(str(tiny.onnx)), str(folder / "model.xml"))
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


# ---- decoding hostile bytes ------------------------------------------------------------------


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` RGB pixels (the data is not there)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def test_decoding_refuses_bombs_before_allocating():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for side in (30_000, 7_000):  # over Pillow's own bomb limit, and over only ours
        bomb = _png_declaring(side, side)
        assert len(bomb) < 200
        with pytest.raises(BadImage, match="pixels") as caught:
            decode_image(bomb)
        assert caught.value.status == 413
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) / 1024
    assert grown_mb < 100, f"decoding a bomb header allocated {grown_mb:.0f} MB"
    with pytest.raises(BadImage, match="truncated") as caught:
        decode_image(_png_declaring(64, 64))  # declares more pixels than its data holds
    assert caught.value.status == 422


def test_decoding_damaged_files_raises_only_bad_image(tiny):
    buffer = io.BytesIO()
    Image.fromarray(cv2.imread(str(tiny.paths[0]))[:120, :160]).save(buffer, format="PNG")
    rng = np.random.default_rng(2)
    for good in (tiny.jpeg, buffer.getvalue()):
        assert decode_image(good).ndim == 3
        for trial in range(150):
            data = bytearray(good)
            if trial % 3 == 0:
                data = data[: int(rng.integers(1, len(data)))]
            else:
                for at in rng.integers(0, min(len(data), 600), size=int(rng.integers(1, 8))):
                    data[at] = int(rng.integers(0, 256))
            for fit in (None, (64, 64)):  # full and reduced (draft) decoding alike
                try:
                    decode_image(bytes(data), fit=fit)
                except BadImage as exc:
                    assert exc.status in (413, 415, 422)


def test_reduced_decoding_keeps_what_the_letterbox_needs():
    frame = np.zeros((720, 1280, 3), np.uint8)
    frame[100:300, 200:600] = (250, 30, 30)
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=95)
    data = buffer.getvalue()
    full, size = decode_upload(data)
    assert full.shape == (720, 1280, 3) and size == (1280, 720)
    for fit, shape in (((384, 640), (360, 640)), ((128, 128), (90, 160)), ((720, 1280), None)):
        reduced, size = decode_upload(data, fit=fit)
        assert size == (1280, 720)
        assert reduced.shape[:2] == (shape or (720, 1280))
        # never below the letterbox's own scale of the frame
        assert reduced.shape[1] >= round(1280 * min(fit[0] / 720, fit[1] / 1280))
        scale = 1280 / reduced.shape[1]
        red = reduced[..., 0] > 128
        ys, xs = np.nonzero(red)
        assert abs(xs.min() * scale - 200) <= 2 * scale and abs(ys.max() * scale - 299) <= 2 * scale
    # truncated: an error still, not a grey-filled frame
    with pytest.raises(BadImage, match="truncated"):
        decode_upload(data[: len(data) // 2], fit=(384, 640))
    # EXIF orientation: the full size is the turned one
    image = Image.fromarray(frame)
    exif = image.getexif()
    exif[0x0112] = 6
    turned = io.BytesIO()
    image.save(turned, format="JPEG", exif=exif)
    reduced, size = decode_upload(turned.getvalue(), fit=(384, 640))
    assert size == (720, 1280) and reduced.shape[0] > reduced.shape[1]
    found = DetectionResult(
        xyxy=np.array([[10, 20, 30, 40]], np.float32), confidence=np.array([0.9], np.float32),
        class_id=np.array([0]), names={0: "car"}, width=320, height=180,
    )  # fmt: skip
    big = found.rescaled(1280, 720)
    np.testing.assert_allclose(big.xyxy, [[40, 80, 120, 160]])
    assert (big.width, big.height) == (1280, 720) and found.rescaled(320, 180) is found


# ---- the service: unit cases through the test client ---------------------------------------


@pytest.fixture(scope="module")
def client(tiny):
    with TestClient(create_app(tiny.detector, api_key="", model_name="tiny")) as test_client:
        yield test_client


def _post(client, files, path="/v1/detect", **kwargs):
    return client.post(path, files=files, **kwargs)


def test_detect_answers_as_the_contract_says(tiny, client):
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "model": "tiny", "version": tiny.detector.version}
    answer = _post(client, {"image": ("frame.jpg", tiny.jpeg, "image/jpeg")})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"model", "image", "detections", "latency_ms"}
    assert body["model"] == "tiny" and body["image"] == {"width": 640, "height": 360}
    # The service decodes a JPEG far larger than the model's input at a reduced scale (JPEG's
    # DCT scaling) and reports boxes in the full frame's pixels.
    reduced, size = decode_upload(tiny.jpeg, fit=tiny.detector.imgsz)
    assert size == (640, 360) and reduced.shape[1] < 640
    expected = tiny.detector.detect_arrays([reduced])[0].rescaled(*size)
    assert len(body["detections"]) == len(expected) > 0
    first = body["detections"][0]
    assert set(first) == {"xyxy", "confidence", "class_id", "class_name"}
    np.testing.assert_allclose(first["xyxy"], expected.xyxy[0], atol=0.01)
    assert first["class_name"] == tiny.detector.names[first["class_id"]]
    assert body["latency_ms"] > 0

    batch = _post(client, [("images", ("a.jpg", tiny.jpeg)), ("images", ("b.jpg", tiny.jpeg))])
    assert batch.status_code == 422  # several images go to the batch path
    batch = _post(
        client, [("images", ("a.jpg", tiny.jpeg)), ("images", ("b.jpg", tiny.jpeg))],
        path="/v1/detect/batch",
    )  # fmt: skip
    assert batch.status_code == 200, batch.text
    assert [len(b["detections"]) for b in batch.json()] == [len(expected)] * 2
    many = [("images", (f"{i}.jpg", tiny.jpeg)) for i in range(17)]
    assert _post(client, many, path="/v1/detect/batch").status_code == 413


def _multipart(chunks):
    head = b'--b\r\nContent-Disposition: form-data; name="image"; filename="x.jpg"\r\n\r\n'
    yield head
    yield from chunks
    yield b"\r\n--b--\r\n"


@pytest.mark.parametrize(
    ("case", "status", "words"),
    [
        ("empty body", 415, "multipart/form-data"),
        ("empty multipart", 422, "missing multipart file field 'image'"),
        ("wrong field", 422, "got fields ['file']"),
        ("text instead of a file", 422, "must be a file upload"),
        ("text file", 415, "not an image"),
        ("truncated JPEG", 422, "truncated"),
        ("empty file", 422, "empty"),
        ("30 MB upload", 413, "limit"),
        ("30 MB upload without Content-Length", 413, "limit"),
        ("PNG declaring 30000 x 30000", 413, "pixels"),
        ("two images", 422, "/v1/detect/batch"),
        ("JSON body", 415, "multipart/form-data"),
        ("broken multipart", 400, "multipart"),
    ],
)
def test_bad_input_is_a_4xx_with_a_json_error(tiny, client, case, status, words):
    jpeg = tiny.jpeg
    requests = {
        "empty body": {"content": b""},
        "empty multipart": {
            "content": b"",
            "headers": {"content-type": "multipart/form-data; boundary=b"},
        },
        "wrong field": {"files": {"file": ("a.jpg", jpeg)}},
        "text instead of a file": {"data": {"image": "hello"}, "files": {"x": ("x", b"1")}},
        "text file": {"files": {"image": ("notes.txt", b"just some text\n" * 10)}},
        "truncated JPEG": {"files": {"image": ("cut.jpg", jpeg[: len(jpeg) // 2])}},
        "empty file": {"files": {"image": ("none.jpg", b"")}},
        "30 MB upload": {"files": {"image": ("big.jpg", b"\xff" * (30 * 2**20))}},
        "30 MB upload without Content-Length": {
            "content": _multipart(b"\xff" * 2**20 for _ in range(30)),
            "headers": {"content-type": "multipart/form-data; boundary=b"},
        },
        "PNG declaring 30000 x 30000": {
            "files": {"image": ("bomb.png", _png_declaring(30_000, 30_000))}
        },
        "two images": {"files": [("image", ("a.jpg", jpeg)), ("image", ("b.jpg", jpeg))]},
        "JSON body": {"json": {"image": "aGVsbG8="}},
        "broken multipart": {
            "content": b"--b\r\nnot a header line\r\n\r\n",
            "headers": {"content-type": "multipart/form-data; boundary=b"},
        },
    }
    answer = client.post("/v1/detect", **requests[case])
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert words in answer.json()["error"]


def test_api_key(tiny):
    app = create_app(tiny.detector, api_key=KEY)
    with TestClient(app) as guarded:
        files = {"image": ("a.jpg", tiny.jpeg)}
        assert guarded.get("/healthz").status_code == 200  # open: load balancers probe it
        missing = guarded.post("/v1/detect", files=files)
        assert missing.status_code == 401 and "X-API-Key" in missing.json()["error"]
        wrong = guarded.post("/v1/detect", files=files, headers={"X-API-Key": "guess"})
        assert wrong.status_code == 401 and wrong.json() == {"error": "invalid API key"}
        right = guarded.post("/v1/detect", files=files, headers={"X-API-Key": KEY})
        assert right.status_code == 200
        assert guarded.get("/metrics").status_code == 401
        bearer = guarded.get("/metrics", headers={"Authorization": f"Bearer {KEY}"})
        assert bearer.status_code == 200
        # Refused before the body is read: an unauthenticated 30 MB upload costs nothing.
        big = guarded.post("/v1/detect", files={"image": ("x.jpg", b"0" * (30 * 2**20))})
        assert big.status_code == 401


def test_api_key_from_the_environment(tiny, monkeypatch):
    monkeypatch.setenv("TCV_API_KEY", KEY)
    with TestClient(create_app(tiny.detector)) as guarded:
        assert guarded.get("/metrics").status_code == 401
        assert guarded.get("/metrics", headers={"X-API-Key": KEY}).status_code == 200
    with TestClient(create_app(tiny.detector, api_key="")) as open_client:
        assert open_client.get("/metrics").status_code == 200


def test_metrics_count_requests_errors_and_what_is_seen(tiny, client):
    _post(client, {"image": ("a.jpg", tiny.jpeg)})
    _post(client, {"image": ("a.txt", b"text")})
    text = client.get("/metrics").text
    for name in (
        'tcv_model_info{backend="onnxruntime",model="tiny"',
        'tcv_requests_total{endpoint="/v1/detect",status="200"}',
        'tcv_errors_total{endpoint="/v1/detect",reason="not_an_image"}',
        "tcv_request_seconds_bucket",
        "tcv_inference_seconds_bucket",
        "tcv_detections_total{class_name=",
        "tcv_image_brightness_bucket",
        "tcv_image_megapixels_bucket",
        "tcv_detection_confidence_bucket",
    ):
        assert name in text, name
    assert client.get("/nope").json() == {"error": "Not Found"}
    other = create_app(tiny.detector, api_key="")
    assert other.state.service.metrics.registry is not client.app.state.service.metrics.registry


def test_create_app_checks_its_limits(tiny):
    with pytest.raises(ValueError, match="max_concurrency"):
        create_app(tiny.detector, max_concurrency=0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        create_app(tiny.detector, conf=1.5)


# ---- the service on a real server ------------------------------------------------------------


def test_background_server_and_load_test(tiny):
    with serve_in_background(tiny.detector, api_key=KEY) as server:
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        stats = load_test(server.url, tiny.jpeg, concurrency=4, requests=24, api_key=KEY)
        assert stats["status_counts"] == {"200": 24} and not stats["errors"]
        assert stats["p50_ms"] <= stats["p95_ms"] <= stats["p99_ms"]
        assert stats["ok_per_s"] > 0

        async def inside_a_running_loop():  # as in a notebook
            return load_test(server.url, tiny.jpeg, concurrency=2, requests=4)

        assert asyncio.run(inside_a_running_loop())["status_counts"] == {"401": 4}
        frame = cv2.imread(str(tiny.paths[0]))
        sent = [frame, tiny.jpeg, b"plain text", tiny.jpeg[: len(tiny.jpeg) // 3]]
        assert post_frames(server.url, sent, api_key=KEY) == [200, 200, 415, 422]
        assert post_frames(server.url, [frame]) == [401]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/healthz")


@pytest.mark.slow
def test_500_concurrent_requests_get_answers_and_memory_comes_back(tiny):
    with serve_in_background(tiny.onnx, mode="process", api_key="", max_queue=32) as server:
        process = psutil.Process(server.pid)
        warm = load_test(server.url, tiny.jpeg, concurrency=4, requests=40)
        assert warm["status_counts"] == {"200": 40}
        gc.collect()
        before = process.memory_info().rss

        flood = load_test(server.url, tiny.jpeg, concurrency=500, requests=500, timeout=120)
        assert flood["errors"] == {}, flood
        assert set(flood["status_counts"]) <= {"200", "429", "503"}, flood
        assert flood["status_counts"].get("200", 0) >= 34  # the workers and the queue were used
        assert flood["status_counts"].get("429", 0) > 0  # and the rest was refused at once

        async def burst() -> list[httpx.Response]:
            files = {"image": ("a.jpg", tiny.jpeg)}
            limits = httpx.Limits(max_connections=100)
            async with httpx.AsyncClient(limits=limits, timeout=60) as session:
                calls = [session.post(f"{server.url}/v1/detect", files=files) for _ in range(100)]
                return await asyncio.gather(*calls)

        refused = [a for a in asyncio.run(burst()) if a.status_code == 429]
        assert refused and refused[0].headers["retry-after"] == "1"
        assert "busy" in refused[0].json()["error"]

        assert httpx.get(f"{server.url}/healthz").status_code == 200
        after = process.memory_info().rss
        assert after - before < 100e6, f"RSS grew by {(after - before) / 1e6:.0f} MB"
        still = load_test(server.url, tiny.jpeg, concurrency=2, requests=6)
        assert still["status_counts"] == {"200": 6}


# ---- the command line and the image ------------------------------------------------------------


def test_tcv_serve_help_and_a_missing_model(tmp_path):
    runner = CliRunner()
    usage = runner.invoke(cli_app, ["serve", "--help"])
    assert usage.exit_code == 0 and "--model" in usage.output and "TCV_API_KEY" in usage.output
    missing = runner.invoke(cli_app, ["serve", "--model", str(tmp_path / "gone.onnx")])
    assert missing.exit_code != 0 and "gone.onnx" in missing.output
    assert "Traceback" not in missing.output
    module = subprocess.run(
        [sys.executable, "-m", "tcv_helpers.deploy.serve", "--model", str(tmp_path / "gone.onnx")],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert module.returncode == 2 and "gone.onnx" in module.stderr


def _requirements(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not pinned exactly"
            pins[name.strip().lower()] = version.strip()
    return pins


def test_docker_image_runs_the_service_without_torch():
    pins = _requirements(ROOT / "requirements-serve.txt")
    for name, version in pins.items():
        assert metadata.version(name) == version, f"{name} differs from the installed version"
    needed = {"fastapi", "uvicorn", "onnxruntime", "numpy", "pillow", "prometheus-client"}
    assert needed | {"python-multipart"} <= set(pins)
    assert not {"torch", "torchvision", "ultralytics", "opencv-python"} & set(pins)
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert "pip install --no-cache-dir -r requirements-serve.txt" in dockerfile
    assert "pip install --no-cache-dir --no-deps ." in dockerfile
    assert "EXPOSE 8000" in dockerfile and "HEALTHCHECK" in dockerfile
    users = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert '"tcv_helpers.deploy.serve"' in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignored[0].strip() == "*", "the build context is an allow-list"
    assert "!tcv_helpers/" in ignored and "!requirements-serve.txt" in ignored
    serve_imports = {
        line.split()[1].split(".")[0]
        for line in Path(serve.__file__).read_text().splitlines()
        if line.startswith(("import ", "from ")) and not line.startswith("from __future__")
    }
    import_names = {"PIL": "pillow", "prometheus_client": "prometheus-client"}
    third_party = serve_imports - set(sys.stdlib_module_names) - {"tcv_helpers"}
    assert {import_names.get(m, m) for m in third_party} - {"starlette"} <= set(pins)
