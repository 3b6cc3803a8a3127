"""Tests of tcv_helpers.deploy.loadtest: the load-test client and a camera's frames, on a live server."""

from __future__ import annotations

import asyncio

import cv2
import httpx
import pytest

from tcv_helpers.deploy.loadtest import load_test, post_frames
from tcv_helpers.deploy.server import serve_in_background
from tests.service_model import tiny_service_model

KEY = "s3cret-test-key"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_service_model(tmp_path_factory)


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


def test_load_test_checks_its_arguments():
    with pytest.raises(ValueError, match="positive"):
        load_test("http://127.0.0.1:9", b"x", concurrency=0)
    with pytest.raises(ValueError, match="positive"):
        load_test("http://127.0.0.1:9", b"x", requests=0)
