"""Tests of tcv_helpers.deploy.app: the contract of COURSE.md §5, hostile input, keys, metrics."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from tcv_helpers.deploy.app import create_app
from tcv_helpers.deploy.decode import decode_image
from tests.service_model import png_declaring, tiny_service_model

with warnings.catch_warnings():  # Starlette nudges towards httpx2; the test client still works
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient

KEY = "s3cret-test-key"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_service_model(tmp_path_factory)


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
    # Every pixel decoded, as training read the frame; boxes in the frame's pixels.
    expected = tiny.detector.detect_arrays([decode_image(tiny.jpeg)])[0]
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


def test_a_batch_has_a_pixel_budget_and_counts_each_image_for_admission(tiny):
    app = create_app(tiny.detector, api_key="", max_concurrency=1, max_queue=3)
    with TestClient(app) as client:
        under_each = png_declaring(6000, 5000)  # 30 MP: under the 40 MP of one image
        pair = [("images", ("a.png", under_each)), ("images", ("b.png", under_each))]
        answer = _post(client, pair, path="/v1/detect/batch")
        assert answer.status_code == 413, answer.text
        assert "2 images hold 60,000,000 pixels in all" in answer.json()["error"]
        one = client.post("/v1/detect", files={"image": ("a.png", under_each)})
        assert one.status_code != 413 or "in all" not in one.json()["error"], (
            "one image: its own rule"
        )
    limiter = app.state.service.limiter  # capacity: 1 worker + 3 waiting
    assert limiter.try_enter(4) and not limiter.try_enter(1), "a batch of 4 fills every slot"
    limiter.leave(4)
    assert limiter.try_enter(16), "a batch larger than the capacity still gets in alone"
    limiter.leave(16)
    assert limiter.admitted == 0


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
            "files": {"image": ("bomb.png", png_declaring(30_000, 30_000))}
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


def test_the_key_is_stripped_and_a_weak_or_unsendable_one_is_refused(tiny, monkeypatch):
    monkeypatch.setenv("TCV_API_KEY", f"  {KEY}\n")  # as pasted into a .env file
    with TestClient(create_app(tiny.detector)) as guarded:
        assert guarded.get("/metrics", headers={"X-API-Key": KEY}).status_code == 200
    for bad, words in (
        ("short-key", "has 9 characters; use at least 12"),
        ("clé-très-secrète-42", "printable ASCII"),
        ("two words key 123", "printable ASCII"),
    ):
        with pytest.raises(ValueError, match=words) as caught:
            create_app(tiny.detector, api_key=bad)
        assert bad not in str(caught.value), "the key is never repeated"
        monkeypatch.setenv("TCV_API_KEY", bad)
        with pytest.raises(ValueError, match=r"^TCV_API_KEY: "):
            create_app(tiny.detector)
    assert create_app(tiny.detector, api_key="   ").state.service.settings.api_key == ""


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
