"""A load-test client for the service (notebook 08): many requests at once, and a camera's frames.

:func:`load_test` sends one image from many clients at once (httpx, asyncio) and reports
throughput, latency percentiles and the statuses it got; :func:`post_frames` sends frames one by
one, as a camera gateway would. Both talk HTTP only, to any running service (``tcv serve``, the
Docker image, :func:`tcv_helpers.deploy.server.serve_in_background`). httpx is imported when used.

Example::

    with serve_in_background(cfg.workspace.models / "best.onnx") as server:
        stats = load_test(server.url, jpeg_bytes, concurrency=8, requests=200)
        stats["ok_per_s"], stats["p95_ms"]
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import math
import statistics
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from tcv_helpers.deploy.app import API_KEY_HEADER, IMAGE_FIELD
from tcv_helpers.deploy.decode import to_rgb

#: Connections per httpx client in a load test (httpx's pool slows down with many).
_CONNECTIONS_PER_CLIENT = 32


def _percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile of ``values``, NaN for none."""
    return float(np.percentile(values, q)) if values else math.nan


def _multipart(field_name: str, filename: str, data: bytes) -> tuple[bytes, str]:
    """A one-file multipart/form-data body and its Content-Type (encoded once, sent many times)."""
    boundary = f"tcv-{hashlib.sha256(data[:4096]).hexdigest()[:24]}"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field_name}"; '
        f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    )
    body = head.encode("utf-8") + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


async def _load(
    url: str,
    body: bytes,
    *,
    concurrency: int,
    requests: int,
    seconds: float | None,
    headers: Mapping[str, str],
    timeout: float,
) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    issued = 0
    start = time.perf_counter()
    deadline = start + seconds if seconds else math.inf

    def more() -> bool:
        return time.perf_counter() < deadline if seconds else issued < requests

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal issued
        while more():
            issued += 1
            began = time.perf_counter()
            try:
                answer = await client.post(url, content=body)
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] += 1
                continue
            statuses[str(answer.status_code)] += 1
            if answer.status_code == 200:
                latencies.append((time.perf_counter() - began) * 1000)

    async with contextlib.AsyncExitStack() as stack:
        tasks = []
        for first in range(0, concurrency, _CONNECTIONS_PER_CLIENT):
            size = min(_CONNECTIONS_PER_CLIENT, concurrency - first)
            limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
            client = await stack.enter_async_context(
                httpx.AsyncClient(limits=limits, timeout=timeout, headers=dict(headers))
            )
            tasks += [worker(client) for _ in range(size)]
        await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    answered = sum(statuses.values())
    return {
        "requests": answered + sum(errors.values()),
        "seconds": round(elapsed, 3),
        "concurrency": concurrency,
        "requests_per_s": answered / elapsed if elapsed else math.nan,
        "ok_per_s": statuses.get("200", 0) / elapsed if elapsed else math.nan,
        "p50_ms": _percentile(latencies, 50),
        "p95_ms": _percentile(latencies, 95),
        "p99_ms": _percentile(latencies, 99),
        "mean_ms": statistics.fmean(latencies) if latencies else math.nan,
        "status_counts": dict(sorted(statuses.items())),
        "errors": dict(errors),
    }


def post_frames(
    url: str,
    frames: Sequence[np.ndarray | bytes],
    *,
    api_key: str | None = None,
    timeout: float = 30.0,
) -> list[int]:
    """Posts frames to the service one by one, as a camera gateway would; returns the statuses.

    Args:
        url: The service's base URL.
        frames: BGR uint8 arrays (sent as JPEG; encoded with Pillow) or encoded image bytes.
        api_key: Sent as ``X-API-Key`` when given.
        timeout: Seconds per request.

    Returns:
        The HTTP status of every answer, in order.
    """
    import httpx

    headers = {API_KEY_HEADER: api_key} if api_key else {}
    statuses = []
    with httpx.Client(timeout=timeout, headers=headers) as client:
        for frame in frames:
            if isinstance(frame, np.ndarray):
                buffer = io.BytesIO()
                Image.fromarray(to_rgb(frame)).save(buffer, format="JPEG", quality=90)
                frame = buffer.getvalue()
            answer = client.post(
                url.rstrip("/") + "/v1/detect", files={IMAGE_FIELD: ("frame.jpg", frame)}
            )
            statuses.append(answer.status_code)
    return statuses


def load_test(
    url: str,
    image_bytes: bytes,
    *,
    concurrency: int = 8,
    requests: int = 200,
    seconds: float | None = None,
    api_key: str | None = None,
    path: str = "/v1/detect",
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Sends the same image to the service from ``concurrency`` clients at once and measures it.

    Args:
        url: The service's base URL (``handle.url``) or the full endpoint URL.
        image_bytes: The image to send (JPEG or PNG bytes).
        concurrency: Requests in flight at once (one connection each).
        requests: Requests in all (ignored when ``seconds`` is given).
        seconds: Send for this long instead of a fixed number of requests.
        api_key: Sent as ``X-API-Key`` when given.
        path: Endpoint added to a base URL.
        timeout: Seconds one request may take before it counts as an error.

    Returns:
        ``requests``, ``seconds``, ``requests_per_s`` (all answers), ``ok_per_s`` (200 answers),
        ``p50_ms``, ``p95_ms``, ``p99_ms``, ``mean_ms`` (client-side latency of the 200 answers),
        ``status_counts`` (status -> count) and ``errors`` (exception name -> count: connections
        refused, reset or timed out).

    Raises:
        ValueError: If ``concurrency`` or ``requests`` is not positive.
    """
    if concurrency < 1 or (seconds is None and requests < 1):
        raise ValueError(
            f"concurrency and requests must be positive, got {concurrency} and {requests}."
        )
    target = url.rstrip("/") + path if "/v1/" not in url else url
    body, content_type = _multipart(IMAGE_FIELD, "image.jpg", image_bytes)
    headers = {"Content-Type": content_type}
    if api_key:
        headers[API_KEY_HEADER] = api_key
    job = _load(
        target, body, concurrency=concurrency, requests=requests, seconds=seconds,
        headers=headers, timeout=timeout,
    )  # fmt: skip
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(job)
    # Inside a running loop (a notebook): run the test on a loop of its own in a thread.
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = asyncio.run(job)
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=run, name="tcv-load-test")
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]
    return box["result"]
