"""Tests of tcv_helpers.deploy.batching: dynamic batching, alone and inside the service."""

from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import CancelledError, ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from tcv_helpers.deploy.batching import DynamicBatcher, batch_limit
from tcv_helpers.deploy.decode import decode_image
from tcv_helpers.deploy.inference import load_detector
from tcv_helpers.deploy.server import serve_in_background
from tcv_helpers.model.predict import quiet_ultralytics
from tests.service_model import tiny_service_model


class FakeDetector:
    """Records each call's images; answers each image with its first pixel (its identity)."""

    def __init__(self, batch_size=None, seconds=0.0, fail_on=None):
        self.batch_size = batch_size
        self.seconds = seconds
        self.fail_on = fail_on
        self.calls: list[list[int]] = []
        self.lock = threading.Lock()

    def detect_arrays(self, images, *, conf, iou):
        ids = [int(image[0, 0, 0]) for image in images]
        with self.lock:
            self.calls.append(ids)
        time.sleep(self.seconds)
        if self.fail_on in ids:
            raise RuntimeError(f"the runtime failed on a batch holding image {self.fail_on}")
        return [f"result of {i}" for i in ids]


def image(ident: int) -> np.ndarray:
    return np.full((4, 4, 3), ident, np.uint8)


def test_the_batch_size_is_what_the_model_takes():
    assert batch_limit(FakeDetector(batch_size=None), 8) == 8, "dynamic batch: as asked"
    assert batch_limit(FakeDetector(batch_size=4), 8) == 4, "a fixed batch of 4: at most 4"
    assert batch_limit(FakeDetector(batch_size=1), 8) == 1, "exported for one image: one"
    with pytest.raises(ValueError, match="at least 1"):
        batch_limit(FakeDetector(), 0)
    with pytest.raises(ValueError, match="0 ms or more"):
        DynamicBatcher(FakeDetector(), max_wait_ms=-1)


def test_images_queued_while_the_instance_is_busy_share_one_call():
    detector = FakeDetector(seconds=0.2)
    batcher = DynamicBatcher(detector, max_batch=4, max_wait_ms=0, instances=1)
    try:
        first = batcher.submit(image(0))
        time.sleep(0.05)  # the first call is running: the next six queue behind it
        rest = [batcher.submit(image(i)) for i in range(1, 7)]
        assert first.result(5) == "result of 0"
        assert [f.result(5) for f in rest] == [f"result of {i}" for i in range(1, 7)]
    finally:
        batcher.close()
    assert detector.calls == [[0], [1, 2, 3, 4], [5, 6]], "batches of at most 4, in order"


def test_a_lone_request_never_waits_but_an_announced_one_is_waited_for():
    detector = FakeDetector()
    batcher = DynamicBatcher(detector, max_batch=8, max_wait_ms=2000, instances=1)
    try:
        begin = time.perf_counter()
        assert batcher.submit(image(1)).result(5) == "result of 1"
        assert time.perf_counter() - begin < 0.5, "nothing announced: no wait at all"

        batcher.expect(1)  # a second request is being decoded
        begin = time.perf_counter()
        first = batcher.submit(image(2))
        time.sleep(0.2)
        second = batcher.submit(image(3), expected=True)
        assert (first.result(5), second.result(5)) == ("result of 2", "result of 3")
        assert detector.calls[-1] == [2, 3], "the announced image joined the waiting one"

        batcher.expect(1)  # announced, then its request fails: the wait ends at once
        waiting = batcher.submit(image(4))
        time.sleep(0.1)
        batcher.forget(1)
        assert waiting.result(1) == "result of 4"
        assert time.perf_counter() - begin < 1.9, "forget() ended the wait"
    finally:
        batcher.close()


def test_a_failed_call_fails_its_images_only_and_a_cancelled_image_is_not_run():
    detector = FakeDetector(seconds=0.2, fail_on=2)
    batcher = DynamicBatcher(detector, max_batch=2, max_wait_ms=0, instances=1)
    try:
        busy = batcher.submit(image(0))
        time.sleep(0.05)
        doomed = [batcher.submit(image(1)), batcher.submit(image(2))]
        dropped = batcher.submit(image(9))
        kept = batcher.submit(image(3))
        assert dropped.cancel(), "a future still queued can be cancelled (its client left)"
        assert busy.result(5) == "result of 0"
        for future in doomed:
            with pytest.raises(RuntimeError, match="batch holding image 2"):
                future.result(5)
        assert kept.result(5) == "result of 3", "the batcher goes on after a failed call"
        with pytest.raises(CancelledError):
            dropped.result(0)
    finally:
        batcher.close()
    assert [9] not in detector.calls and all(9 not in call for call in detector.calls)
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit(image(5))


def test_close_runs_what_is_queued():
    detector = FakeDetector(seconds=0.05)
    batcher = DynamicBatcher(detector, max_batch=2, max_wait_ms=0, instances=2)
    futures = [batcher.submit(image(i)) for i in range(6)]
    batcher.close()
    assert [f.result(0) for f in futures] == [f"result of {i}" for i in range(6)]


# ---- inside the service: a model that takes a batch ----------------------------------------


@pytest.fixture(scope="module")
def dynamic_model(tmp_path_factory):
    """The tiny model exported with a dynamic batch (and size), and frames to send."""
    from ultralytics import YOLO

    tiny = tiny_service_model(tmp_path_factory)
    folder = tmp_path_factory.mktemp("dynamic")
    pt = folder / "tiny-dynamic.pt"  # exported beside a copy: the shared tiny.onnx stays as it is
    shutil.copyfile(tiny.pt, pt)
    with quiet_ultralytics():
        model = Path(YOLO(str(pt)).export(format="onnx", imgsz=128, dynamic=True))
    assert tiny.onnx.is_file() and model.parent == folder
    return model, tiny.paths[:8]


def _batch_sizes(metrics: str) -> dict[str, float]:
    rows = {}
    for line in metrics.splitlines():
        if line.startswith("tcv_batch_images_bucket"):
            bound = line.split('le="')[1].split('"')[0]
            rows[bound] = float(line.rsplit(" ", 1)[1])
    return rows


def test_the_service_batches_concurrent_requests_and_answers_each_as_alone(dynamic_model):
    model, paths = dynamic_model
    detector = load_detector(model)
    assert detector.batch_size is None, "the export takes any batch"
    alone = [detector.detect_arrays([decode_image(p.read_bytes())])[0] for p in paths]
    with serve_in_background(
        model, api_key="", max_concurrency=1, batch_size=8, batch_wait_ms=500
    ) as server:

        def post(path: Path) -> dict:
            answer = httpx.post(
                f"{server.url}/v1/detect", files={"image": (path.name, path.read_bytes())},
                timeout=30,
            )  # fmt: skip
            assert answer.status_code == 200, answer.text
            return answer.json()

        with ThreadPoolExecutor(len(paths)) as pool:
            answers = list(pool.map(post, paths))
        sizes = _batch_sizes(httpx.get(f"{server.url}/metrics", timeout=10).text)
    assert sizes["1.0"] < sizes["+Inf"], f"no call held more than one image: {sizes}"
    assert sizes["+Inf"] < len(paths), "fewer calls than requests"
    for answer, expected in zip(answers, alone, strict=True):
        got = answer["detections"]
        assert len(got) == len(expected), "a batch answers each image as it would alone"
        if got:
            boxes = np.array([d["xyxy"] for d in got])
            assert np.allclose(boxes, expected.xyxy, atol=0.5)
            assert [d["class_id"] for d in got] == expected.class_id.tolist()


def test_a_model_exported_for_one_image_runs_one_image_per_call(tmp_path_factory):
    tiny = tiny_service_model(tmp_path_factory)
    assert tiny.detector.batch_size == 1
    with serve_in_background(
        tiny.detector, api_key="", max_concurrency=1, batch_size=8, batch_wait_ms=200
    ) as server:

        def post(path: Path) -> int:
            files = {"image": (path.name, path.read_bytes())}
            return httpx.post(f"{server.url}/v1/detect", files=files, timeout=30).status_code

        with ThreadPoolExecutor(6) as pool:
            assert list(pool.map(post, tiny.paths[:6])) == [200] * 6
        sizes = _batch_sizes(httpx.get(f"{server.url}/metrics", timeout=10).text)
    assert sizes["1.0"] == sizes["+Inf"] == 6, f"every call one image: {sizes}"
