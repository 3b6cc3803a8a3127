"""The detection service (notebook 08, COURSE.md §5): the FastAPI app around a detector.

:func:`create_app` wraps a :class:`tcv_helpers.deploy.inference.Detector` in the service of
``tcv serve``: ``GET /healthz``, ``GET /metrics`` (Prometheus text), ``POST /v1/detect`` and
``POST /v1/detect/batch``, hardened against hostile input and overload.
:mod:`tcv_helpers.deploy.server` runs it, :mod:`tcv_helpers.deploy.loadtest` measures it.

The service's rules:

* **API key.** With ``TCV_API_KEY`` set (or ``api_key=`` given), every path except
  ``/healthz`` needs the header ``X-API-Key: <key>``; ``Authorization: Bearer <key>`` is accepted
  too, which is what Prometheus sends for a scrape job with ``authorization: credentials``.
  ``/metrics`` is protected on purpose: it shows traffic and what the cameras see. The key is
  stripped of surrounding blanks and must be at least :data:`MIN_API_KEY_LENGTH` printable ASCII
  characters (a header carries it; a shorter or other one is refused at start, not echoed).
* **Bad input** is a 4xx with a JSON body ``{"error": "..."}``: a body that is not
  multipart/form-data (415), a malformed multipart body (400), a missing or wrong field (422),
  not an image (415), an empty, truncated or undecodable image (422), a body over
  ``max_upload_bytes`` (413, refused from ``Content-Length`` before it is read, or as soon as the
  bytes read pass the limit), more than ``max_batch`` images (413), an image over
  ``max_pixels`` or images over ``max_request_pixels`` in all (413, refused from their headers,
  before any pixel is decoded). Uploads over 1 MB
  wait on disk, not in memory (Starlette spools them).
* **Overload.** At most ``max_concurrency`` requests' images are decoded at once (a thread pool
  of that size), and at most ``max_queue`` more requests wait; beyond that the answer is 429 with
  ``Retry-After`` at once. A request is admitted only once its body is in: a client that sends
  slowly holds no slot, and one that takes longer than ``body_timeout`` seconds gets 408. At
  most :data:`READERS_PER_SLOT` times the slots (and at least :data:`MIN_READERS`) receive
  uploads at once; more get 429 before their body is read. Memory stays bounded under any load.
* **Dynamic batching.** Decoded images from requests that arrive close together share one
  inference call (:mod:`tcv_helpers.deploy.batching`): up to ``batch_size`` images, the first
  waiting at most ``batch_wait_ms`` for others already being decoded (a lone request never
  waits); ``max_concurrency`` calls run at once. A model exported for one image at a time runs
  one image per call.
* ``latency_ms`` is the time from the request's arrival to its answer being ready (reading the
  upload, waiting for a worker, decoding, inference); for a batch, up to that image's answer.

Imports numpy, Pillow, FastAPI and prometheus_client (no torch, Ultralytics or OpenCV).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from PIL import Image
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client import Counter as PromCounter
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from tcv_helpers.deploy.batching import DEFAULT_BATCH_SIZE, DEFAULT_BATCH_WAIT_MS, DynamicBatcher
from tcv_helpers.deploy.decode import BadImage, decode_image
from tcv_helpers.deploy.inference import DEFAULT_CONF, DEFAULT_IOU, DetectionResult, Detector
from tcv_helpers.deploy.reference import image_brightness, load_reference, reference_beside
from tcv_helpers.env import usable_cores
from tcv_helpers.imaging import MAX_PIXELS

LOGGER = logging.getLogger(__name__)
#: Shortest API key the service accepts (``secrets.token_urlsafe(24)`` makes 32 characters).
MIN_API_KEY_LENGTH = 12


#: Largest request body accepted by the service, in bytes.
MAX_UPLOAD_BYTES = 10 * 2**20
#: Most images in one ``POST /v1/detect/batch``.
MAX_BATCH_IMAGES = 16
#: Most pixels in one request, all its images together: one image at the per-image limit, or
#: 16 full-HD frames; sixteen 40-megapixel PNGs (which fit in 10 MB) are refused.
MAX_REQUEST_PIXELS = 48_000_000
#: Requests that may wait for a worker before the service answers 429.
DEFAULT_MAX_QUEUE = 32
#: Seconds a client is asked to wait after a 429.
RETRY_AFTER_SECONDS = 1
#: Seconds a client has to send its whole upload; a slower one gets 408 (it held no worker).
BODY_TIMEOUT_SECONDS = 30.0
#: Uploads received at once: this many per admission slot (max_concurrency + max_queue), and
#: at least :data:`MIN_READERS`; beyond, 429 before the body is read.
READERS_PER_SLOT = 4
MIN_READERS = 128
#: Environment variable holding the service's API key.
API_KEY_ENV = "TCV_API_KEY"
#: Header carrying the API key.
API_KEY_HEADER = "X-API-Key"
#: Multipart field of ``POST /v1/detect`` and ``POST /v1/detect/batch``.
IMAGE_FIELD = "image"
BATCH_FIELD = "images"
#: Paths that answer without the API key.
OPEN_PATHS = frozenset({"/healthz"})
#: Endpoint labels of the metrics (anything else is counted as ``other``).
ENDPOINTS = ("/healthz", "/metrics", "/v1/detect", "/v1/detect/batch")


def check_api_key(value: str, *, source: str = API_KEY_ENV) -> str:
    """The API key to require, stripped; ``""`` for none.

    Raises:
        ValueError: For a key shorter than :data:`MIN_API_KEY_LENGTH` or with characters an HTTP
            header cannot carry as sent (non-ASCII, spaces, control characters): such a key could
            never match, or be guessed. The message never repeats the key.
    """
    key = value.strip()
    if not key:
        return ""
    if not (key.isascii() and key.isprintable()) or any(c.isspace() for c in key):
        raise ValueError(
            f"{source}: the API key must be printable ASCII without spaces (an HTTP header "
            "carries it)."
        )
    if len(key) < MIN_API_KEY_LENGTH:
        raise ValueError(
            f"{source}: the API key has {len(key)} characters; use at least "
            f"{MIN_API_KEY_LENGTH}, e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))'."
        )
    return key


class _Rejection(Exception):
    """A request the service refuses: answered as ``{"error": message}`` with ``status``."""

    def __init__(
        self, status: int, message: str, *, reason: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.headers = dict(headers or {})


class _Metrics:
    """The service's Prometheus metrics, in a registry of its own (one per app)."""

    def __init__(
        self, *, model: str, version: str, backend: str, reference: Mapping[str, Any] | None = None
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        Info("tcv_model", "The model this service runs.", registry=r).info(
            {"model": model, "version": version, "backend": backend}
        )
        latency = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
        self.requests = PromCounter(
            "tcv_requests",
            "Requests by endpoint and HTTP status.",
            ["endpoint", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "tcv_request_seconds", "Time from a request's arrival to its answer.", ["endpoint"],
            buckets=latency, registry=r,
        )  # fmt: skip
        self.inference = Histogram(
            "tcv_inference_seconds", "Decoding and inference of one request's images.",
            buckets=latency, registry=r,
        )  # fmt: skip
        self.batch = Histogram(
            "tcv_batch_images", "Images in one inference call (dynamic batching).",
            buckets=(1, 2, 4, 8, 16, 32, 64), registry=r,
        )  # fmt: skip
        self.errors = PromCounter(
            "tcv_errors", "Refused or failed requests by endpoint and reason.",
            ["endpoint", "reason"], registry=r,
        )  # fmt: skip
        self.detections = PromCounter(
            "tcv_detections", "Detections returned, by class.", ["class_name"], registry=r
        )
        self.per_image = Histogram(
            "tcv_detections_per_image", "Detections in one image.",
            buckets=(0, 1, 2, 5, 10, 20, 50, 100, 300), registry=r,
        )  # fmt: skip
        self.confidence = Histogram(
            "tcv_detection_confidence", "Confidence of the detections returned.",
            buckets=(0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0), registry=r,
        )  # fmt: skip
        self.brightness = Histogram(
            "tcv_image_brightness", "Mean luma (0-255) of the input images: night and glare.",
            buckets=(16, 32, 48, 64, 96, 128, 160, 192, 224, 255), registry=r,
        )  # fmt: skip
        self.megapixels = Histogram(
            "tcv_image_megapixels", "Size of the input images in megapixels.",
            buckets=(0.01, 0.1, 0.3, 0.5, 1, 2, 4, 8, 16, 40), registry=r,
        )  # fmt: skip
        self.upload = Histogram(
            "tcv_image_bytes", "Size of the uploaded image files in bytes.",
            buckets=(1e3, 1e4, 5e4, 1e5, 2.5e5, 5e5, 1e6, 2.5e6, 5e6, 1e7), registry=r,
        )  # fmt: skip
        self.in_flight = Gauge("tcv_in_flight", "Requests being decoded or run.", registry=r)
        self.waiting = Gauge(
            "tcv_waiting", "Requests admitted and waiting for a decoding worker.", registry=r
        )
        # The drift baseline: exported only when the service has a reference profile.
        self.reference = Gauge(
            "tcv_reference_brightness",
            "Brightness (mean luma 0-255) of the training images: mean and std per image.",
            ["stat"],
            registry=r,
        )
        for stat, value in ((reference or {}).get("brightness") or {}).items():
            self.reference.labels(stat=stat).set(value)

    def observe_image(self, rgb: np.ndarray, size_bytes: int, found: DetectionResult) -> None:
        self.brightness.observe(image_brightness(rgb))
        self.megapixels.observe(found.width * found.height / 1e6)
        self.upload.observe(size_bytes)
        self.per_image.observe(len(found))
        for name, count in Counter(found.class_name).items():
            self.detections.labels(class_name=name).inc(count)
        for score in found.confidence:
            self.confidence.observe(float(score))


class _Limiter:
    """Admission (running + waiting ≤ capacity) and a semaphore of ``max_concurrency`` workers.

    Lives on the server's event loop; a semaphore is made per loop (a test client may start
    several loops over the app's life).
    """

    def __init__(self, *, max_concurrency: int, max_queue: int) -> None:
        self.max_concurrency = max_concurrency
        self.capacity = max_concurrency + max_queue
        self.admitted = 0
        self.running = 0
        self._semaphore: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def try_enter(self, weight: int = 1) -> bool:
        """Admits ``weight`` requests' worth (a batch counts each image), or refuses."""
        weight = min(max(weight, 1), self.capacity)
        if self.admitted + weight > self.capacity:
            return False
        self.admitted += weight
        return True

    def leave(self, weight: int = 1) -> None:
        self.admitted -= min(max(weight, 1), self.capacity)

    @contextlib.asynccontextmanager
    async def worker(self) -> Any:
        """One of the ``max_concurrency`` worker slots (the caller counts :attr:`running`)."""
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._loop is not loop:
            self._semaphore, self._loop = asyncio.Semaphore(self.max_concurrency), loop
        async with self._semaphore:
            yield


def _endpoint(path: str) -> str:
    return path if path in ENDPOINTS else "other"


def _json_bytes(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@dataclass
class _Settings:
    api_key: str
    max_concurrency: int
    max_queue: int
    max_upload_bytes: int
    max_pixels: int
    max_batch: int
    conf: float
    iou: float
    model_name: str
    model_version: str
    reference: dict[str, Any] | None = None
    body_timeout: float = BODY_TIMEOUT_SECONDS
    max_request_pixels: int = MAX_REQUEST_PIXELS
    batch_size: int = DEFAULT_BATCH_SIZE
    batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS


class _Service:
    """The state behind one app: the detector, the limits, the metrics, the worker threads."""

    def __init__(self, detector: Detector, settings: _Settings) -> None:
        self.detector = detector
        self.settings = settings
        self.metrics = _Metrics(
            model=settings.model_name, version=settings.model_version, backend=detector.backend,
            reference=settings.reference,
        )  # fmt: skip
        self.limiter = _Limiter(
            max_concurrency=settings.max_concurrency, max_queue=settings.max_queue
        )
        self.readers = _Limiter(max_concurrency=1, max_queue=0)
        self.readers.capacity = max(MIN_READERS, READERS_PER_SLOT * self.limiter.capacity)
        self._executor: ThreadPoolExecutor | None = None
        self._batcher: DynamicBatcher | None = None
        self._executor_lock = threading.Lock()

    @property
    def executor(self) -> ThreadPoolExecutor:
        """The decoding threads (made again after :meth:`shutdown`, as a new lifespan needs)."""
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self.settings.max_concurrency, thread_name_prefix="tcv-detect"
                )
            return self._executor

    @property
    def batcher(self) -> DynamicBatcher:
        """The dynamic batcher in front of the detector (made again after :meth:`shutdown`)."""
        with self._executor_lock:
            if self._batcher is None:
                self._batcher = DynamicBatcher(
                    self.detector, max_batch=self.settings.batch_size,
                    max_wait_ms=self.settings.batch_wait_ms,
                    instances=self.settings.max_concurrency, conf=self.settings.conf,
                    iou=self.settings.iou, on_batch=self._observe_batch,
                )  # fmt: skip
            return self._batcher

    def _observe_batch(self, size: int, seconds: float) -> None:
        self.metrics.batch.observe(size)

    def shutdown(self) -> None:
        with self._executor_lock:
            executor, batcher = self._executor, self._batcher
            self._executor = self._batcher = None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        if batcher is not None:
            batcher.close()

    # ---- the gate: API key and body size, before any route runs --------------------------

    def authorized(self, headers: Mapping[str, str]) -> bool:
        key = self.settings.api_key.encode("utf-8")
        given = headers.get("x-api-key", "")
        bearer = headers.get("authorization", "")
        if bearer[:7].lower() == "bearer ":
            given = given or bearer[7:].strip()
        return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), key)

    async def gate(self, app: Any, scope: dict, receive: Callable, send: Callable) -> None:
        """ASGI middleware: counts and times every request; checks the key and the body size."""
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        start = time.perf_counter()
        scope.setdefault("state", {})["tcv_start"] = start
        endpoint = _endpoint(scope["path"])
        status = [500]

        async def counting_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            headers = {
                k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
            }
            refusal = self._refusal(scope, headers)
            if refusal is not None:
                self.metrics.errors.labels(endpoint=endpoint, reason=refusal.reason).inc()
                await _send_json(counting_send, refusal.status, refusal.message, refusal.headers)
                return
            await app(scope, self._limited(receive), counting_send)
        finally:
            self.metrics.requests.labels(endpoint=endpoint, status=str(status[0])).inc()
            self.metrics.latency.labels(endpoint=endpoint).observe(time.perf_counter() - start)

    def _refusal(self, scope: dict, headers: Mapping[str, str]) -> _Rejection | None:
        if (
            self.settings.api_key
            and scope["path"] not in OPEN_PATHS
            and not self.authorized(headers)
        ):
            given = "x-api-key" in headers or "authorization" in headers
            message = "invalid API key" if given else f"missing {API_KEY_HEADER} header"
            return _Rejection(401, message, reason="unauthorized")
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return _Rejection(400, f"invalid Content-Length {length!r}", reason="bad_request")
            if int(length) > self.settings.max_upload_bytes:
                return self._too_large(int(length))
        return None

    def _too_large(self, size: int | None) -> _Rejection:
        limit = self.settings.max_upload_bytes
        body = f"request body of {size:,} bytes" if size is not None else "request body"
        return _Rejection(413, f"{body} is over the {limit:,}-byte limit", reason="too_large")

    def _limited(self, receive: Callable) -> Callable:
        limit, seen = self.settings.max_upload_bytes, [0]

        async def limited_receive() -> dict:
            message = await receive()
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > limit:
                    raise self._too_large(None)
            return message

        return limited_receive

    # ---- the detection endpoints --------------------------------------------------------

    async def detect(self, request: Request, *, batch: bool) -> list[dict[str, Any]]:
        """Receives the upload(s) under a deadline, then takes a slot, decodes them on a worker
        thread, runs them through the batcher and returns the answers."""
        busy = {"reason": "overloaded", "headers": {"Retry-After": str(RETRY_AFTER_SECONDS)}}
        if not self.readers.try_enter():
            raise _Rejection(
                429, f"busy: {self.readers.capacity} uploads are arriving; retry shortly", **busy
            )
        form = None
        try:
            try:
                form = await asyncio.wait_for(
                    self._read_form(request, batch=batch), timeout=self.settings.body_timeout
                )
            except TimeoutError:
                raise _Rejection(
                    408,
                    f"the upload took longer than {self.settings.body_timeout:g} s; send it "
                    "again, faster or smaller",
                    reason="slow_upload",
                    headers={"Connection": "close"},
                ) from None
            finally:
                self.readers.leave()
            uploads = self._uploads(form, batch=batch)
            self._check_pixels(uploads)
            weight = len(uploads)  # a batch of 16 is 16 images' work for the workers
            if not self.limiter.try_enter(weight):
                raise _Rejection(
                    429,
                    f"busy: {self.limiter.capacity} requests are running or waiting; retry shortly",
                    **busy,
                )
            self._update_gauges()
            start = request.scope.get("state", {}).get("tcv_start", time.perf_counter())
            batcher = self.batcher
            batcher.expect(weight)  # a batch being formed may wait for these images
            submitted, begin = 0, None
            try:
                loop = asyncio.get_running_loop()
                async with self.limiter.worker():
                    self.limiter.running += 1  # decoding or inferring from here on
                    self._update_gauges()
                    begin = time.perf_counter()
                    images = await loop.run_in_executor(self.executor, self._decode, uploads)
                futures = []
                for rgb, _ in images:
                    futures.append(asyncio.wrap_future(batcher.submit(rgb, expected=True)))
                    submitted += 1
                found = await asyncio.gather(*futures)
                return await loop.run_in_executor(
                    self.executor, self._answers, images, found, begin, start
                )
            finally:
                batcher.forget(weight - submitted)
                if begin is not None:
                    self.limiter.running -= 1
                self.limiter.leave(weight)
                self._update_gauges()
        finally:
            if form is not None:
                await form.close()

    def _check_pixels(self, uploads: list[tuple[str, Any]]) -> None:
        """Refuses a request whose images hold more than ``max_request_pixels`` in all, from
        their headers, before any pixel is decoded (a damaged header is left to the decoder;
        a single image meets the per-image limit there, with its own message)."""
        if len(uploads) < 2:
            return
        total = 0
        for _, upload in uploads:
            upload.file.seek(0)
            try:
                with Image.open(upload.file) as probe:
                    width, height = probe.size
            except Exception:  # the decoder gives the precise 4xx later
                continue
            finally:
                upload.file.seek(0)
            total += width * height
        if total > self.settings.max_request_pixels:
            raise _Rejection(
                413,
                f"the {len(uploads)} images hold {total:,} pixels in all, over the "
                f"{self.settings.max_request_pixels:,} one request may hold",
                reason="too_many_pixels",
            )

    def _update_gauges(self) -> None:
        self.metrics.in_flight.set(self.limiter.running)
        self.metrics.waiting.set(self.limiter.admitted - self.limiter.running)

    async def _read_form(self, request: Request, *, batch: bool) -> Any:
        kind = request.headers.get("content-type", "")
        field_name = BATCH_FIELD if batch else IMAGE_FIELD
        if not kind.lower().startswith("multipart/form-data"):
            what = f"Content-Type {kind!r}" if kind else "no Content-Type"
            raise _Rejection(
                415,
                f"expected multipart/form-data with a file field {field_name!r}, got {what}",
                reason="not_multipart",
            )
        try:
            return await request.form(max_files=self.settings.max_batch, max_fields=16)
        except HTTPException as exc:  # Starlette's multipart errors
            if "Too many files" in str(exc.detail):
                raise _Rejection(
                    413,
                    f"at most {self.settings.max_batch} images per request",
                    reason="too_many_images",
                ) from None
            raise _Rejection(
                400, f"malformed multipart body: {exc.detail}", reason="bad_multipart"
            ) from None
        except ClientDisconnect:
            raise _Rejection(400, "the client went away", reason="disconnected") from None

    def _uploads(self, form: Any, *, batch: bool) -> list[tuple[str, Any]]:
        field_name = BATCH_FIELD if batch else IMAGE_FIELD
        values = form.getlist(field_name)
        if not values:
            got = sorted(set(form.keys()))
            raise _Rejection(
                422,
                f"missing multipart file field {field_name!r}"
                + (f" (got fields {got})" if got else " (the body has no fields)"),
                reason="missing_field",
            )
        if not batch and len(values) > 1:
            raise _Rejection(
                422,
                f"one {field_name!r} file per request; send several to /v1/detect/batch",
                reason="too_many_images",
            )
        uploads = []
        for index, value in enumerate(values):
            label = f"{field_name}[{index}]" if batch else field_name
            if isinstance(value, str):
                raise _Rejection(
                    422, f"field {label!r} must be a file upload, not text", reason="not_a_file"
                )
            uploads.append((f"{label} ({value.filename!r})" if value.filename else label, value))
        return uploads

    def _decode(self, uploads: list[tuple[str, Any]]) -> list[tuple[np.ndarray, int]]:
        """Worker thread: every upload decoded to RGB, with its size in bytes."""
        images = []
        for label, upload in uploads:
            upload.file.seek(0)
            data = upload.file.read()
            try:
                images.append((decode_image(data, max_pixels=self.settings.max_pixels), len(data)))
            except BadImage as exc:
                raise _Rejection(exc.status, f"{label}: {exc}", reason=exc.reason) from None
        return images

    def _answers(
        self,
        images: list[tuple[np.ndarray, int]],
        found: list[DetectionResult],
        begin: float,
        start: float,
    ) -> list[dict[str, Any]]:
        """Worker thread: one answer per image, recorded in the metrics."""
        done = time.perf_counter()
        answers = []
        for (rgb, size), result in zip(images, found, strict=True):
            self.metrics.observe_image(rgb, size, result)
            answers.append(
                {
                    "model": self.settings.model_name,
                    "image": {"width": result.width, "height": result.height},
                    "detections": result.to_records(),
                    "latency_ms": round((done - start) * 1000, 2),
                }
            )
        self.metrics.inference.observe(done - begin)
        return answers


class _Gate:
    """Pure ASGI middleware (no body buffering) in front of every route: :meth:`_Service.gate`."""

    def __init__(self, app: Any, *, service: _Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        await self.service.gate(self.app, scope, receive, send)


async def _send_json(
    send: Callable, status: int, message: str, headers: Mapping[str, str] | None = None
) -> None:
    body = _json_bytes({"error": message})
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    if status in (401,):
        raw.append((b"www-authenticate", API_KEY_HEADER.encode("latin-1")))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _multipart_body(field: str, schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI ``requestBody`` for a multipart upload with one required field."""
    form = {"type": "object", "required": [field], "properties": {field: schema}}
    return {
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": form}},
        }
    }


_BINARY = {"type": "string", "format": "binary"}
_IMAGE_BODY = _multipart_body(IMAGE_FIELD, _BINARY)
_BATCH_BODY = _multipart_body(
    BATCH_FIELD, {"type": "array", "items": _BINARY, "maxItems": MAX_BATCH_IMAGES}
)


def _reference_profile(
    reference: str | os.PathLike | Mapping[str, Any] | None, model_path: str | os.PathLike
) -> dict[str, Any] | None:
    """The reference profile to export, or None (with a warning) when it cannot be had.

    A file the service only found beside the model (``reference.json``) never stops it: one it
    cannot read (a private file in a read-only mount) or parse costs the drift baseline, said
    in a warning. A file given on purpose must exist and be well-formed.
    """
    given = reference is not None
    found = reference if given else reference_beside(model_path)
    if found is None:
        return None
    try:
        return load_reference(found)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        if given and isinstance(exc, ValueError):
            raise
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        LOGGER.warning(
            "Reference profile %s not used (%s): the service runs without the drift baseline "
            "(tcv_reference_brightness).",
            found,
            why,
        )
        return None


def create_app(
    detector: Detector,
    *,
    api_key: str | None = None,
    max_concurrency: int | None = None,
    max_queue: int = DEFAULT_MAX_QUEUE,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    max_pixels: int = MAX_PIXELS,
    max_batch: int = MAX_BATCH_IMAGES,
    conf: float = DEFAULT_CONF,
    iou: float = DEFAULT_IOU,
    model_name: str | None = None,
    model_version: str | None = None,
    reference: str | os.PathLike | Mapping[str, Any] | None = None,
    body_timeout: float = BODY_TIMEOUT_SECONDS,
    max_request_pixels: int = MAX_REQUEST_PIXELS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS,
) -> FastAPI:
    """The detection service (COURSE.md §5) around a detector.

    Routes: ``GET /healthz``, ``GET /metrics`` (Prometheus text), ``POST /v1/detect`` (multipart
    field ``image``) and ``POST /v1/detect/batch`` (up to ``max_batch`` fields ``images``); the
    module docstring states the rules for keys, bad input and overload.

    Args:
        detector: From :func:`tcv_helpers.deploy.inference.load_detector`.
        api_key: The key clients must send as ``X-API-Key``; None reads ``TCV_API_KEY`` from
            the environment, ``""`` switches the check off.
        max_concurrency: Requests decoded and run at once (default: the CPU cores).
        max_queue: Requests that may wait for a worker; more get 429 at once.
        max_upload_bytes: Largest request body (all images and the multipart framing).
        max_pixels: Largest image, width x height.
        max_batch: Most images in one batch request.
        conf: Confidence threshold of the answers.
        iou: NMS IoU threshold.
        model_name: Shown by ``/healthz``, the answers and the metrics (default: the detector's).
        model_version: Shown likewise (default: the first 12 hex digits of the file's SHA-256).
        reference: The training images' reference profile (see
            :func:`tcv_helpers.deploy.reference.brightness_reference`), a
            JSON file or a mapping, exported as ``tcv_reference_brightness`` for the drift
            alert; None uses ``reference.json`` in the model's folder (or the one above) when
            there is one.
        body_timeout: Seconds a client has to send its whole upload (a slower one gets 408).
        max_request_pixels: Most pixels in one request, all its images together (413 beyond).
        batch_size: Most images in one inference call (dynamic batching; cut to what the model
            takes: 1 for a model exported for one image at a time).
        batch_wait_ms: Most milliseconds the first image of a batch waits for others that are
            being decoded (a lone request never waits).

    Returns:
        The FastAPI app (``app.state.service`` holds its state, for tests).

    Raises:
        ValueError: If a limit is not positive, a threshold is outside 0-1, the API key is too
            short or not printable ASCII (:func:`check_api_key`), or a ``reference``
            given on purpose is malformed (one found beside the model, malformed or unreadable,
            gives a warning and no drift baseline).
        FileNotFoundError: If a ``reference`` file is given and does not exist.
    """
    concurrency = usable_cores() if max_concurrency is None else max_concurrency
    limits = {
        "max_concurrency": concurrency,
        "max_upload_bytes": max_upload_bytes,
        "max_pixels": max_pixels,
        "max_batch": max_batch,
        "max_request_pixels": max_request_pixels,
        "batch_size": batch_size,
    }
    for name, value in limits.items():
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}.")
    if not body_timeout > 0:
        raise ValueError(f"body_timeout must be more than 0 seconds, got {body_timeout}.")
    if max_queue < 0:
        raise ValueError(f"max_queue must be 0 or more, got {max_queue}.")
    if not batch_wait_ms >= 0:
        raise ValueError(f"batch_wait_ms must be 0 or more, got {batch_wait_ms}.")
    if not (0 <= conf <= 1 and 0 <= iou <= 1):
        raise ValueError(f"conf and iou must be between 0 and 1, got conf={conf}, iou={iou}.")
    profile = _reference_profile(reference, detector.path)
    settings = _Settings(
        api_key=check_api_key(os.environ.get(API_KEY_ENV, ""))
        if api_key is None
        else check_api_key(api_key, source="api_key"),
        max_concurrency=concurrency, max_queue=max_queue, max_upload_bytes=max_upload_bytes,
        max_pixels=max_pixels, max_batch=max_batch, conf=conf, iou=iou,
        model_name=model_name or detector.name, model_version=model_version or detector.version,
        reference=profile, body_timeout=float(body_timeout),
        max_request_pixels=max_request_pixels,
        batch_size=batch_size, batch_wait_ms=float(batch_wait_ms),
    )  # fmt: skip
    service = _Service(detector, settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        yield
        service.shutdown()

    app = FastAPI(
        title="traffic-cams-cv detection service",
        version=settings.model_version,
        description=(
            f"Vehicle detection with {settings.model_name} ({detector.backend}). "
            f"Send the key as {API_KEY_HEADER} when the service has one."
        ),
        lifespan=lifespan,
    )
    app.state.service = service

    def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=dict(headers or {}))

    @app.exception_handler(_Rejection)
    async def rejected(request: Request, exc: _Rejection) -> JSONResponse:
        endpoint = _endpoint(request.url.path)
        service.metrics.errors.labels(endpoint=endpoint, reason=exc.reason).inc()
        return error(exc.status, exc.message, exc.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(
            422, "; ".join(str(e.get("msg", e)) for e in exc.errors()) or "invalid request"
        )

    @app.exception_handler(Exception)
    async def defect(request: Request, exc: Exception) -> JSONResponse:
        LOGGER.exception("unexpected error on %s", request.url.path)
        service.metrics.errors.labels(endpoint=_endpoint(request.url.path), reason="internal").inc()
        return error(500, f"internal error ({type(exc).__name__}); this is a bug in the service")

    app.add_middleware(_Gate, service=service)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: 200 with the model's name and version (open without the key)."""
        return {"status": "ok", "model": settings.model_name, "version": settings.model_version}

    @app.get("/metrics")
    async def metrics() -> Response:
        """Prometheus metrics of this service (needs the key when one is set)."""
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/detect", openapi_extra=_IMAGE_BODY)
    async def detect(request: Request) -> JSONResponse:
        """Detections in one image: multipart file field ``image``."""
        return JSONResponse((await service.detect(request, batch=False))[0])

    @app.post("/v1/detect/batch", openapi_extra=_BATCH_BODY)
    async def detect_batch(request: Request) -> JSONResponse:
        """Detections in several images: repeated multipart file field ``images``."""
        return JSONResponse(await service.detect(request, batch=True))

    return app
