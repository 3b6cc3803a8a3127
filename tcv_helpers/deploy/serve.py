"""Deployment (notebook 08): detection without torch, and the FastAPI service ``tcv serve``.

Two halves, usable apart:

* :class:`Detector` runs a YOLO model exported by Ultralytics (``.onnx``, or OpenVINO IR) with
  ONNX Runtime or OpenVINO and numpy only: the same letterbox, the same class-aware
  non-maximum suppression and the same box scaling as Ultralytics' own predictor, so it finds
  the same boxes (to a fraction of a pixel) without torch or Ultralytics installed.
  :func:`load_detector` picks the backend.
* :func:`create_app` wraps a detector in the service of COURSE.md §5 (``GET /healthz``,
  ``GET /metrics``, ``POST /v1/detect``, ``POST /v1/detect/batch``), hardened against hostile
  input and overload; :func:`run_server` serves it, :func:`serve_in_background` starts it for a
  notebook or a test, and :func:`load_test` measures it.

This module imports numpy, Pillow, FastAPI and prometheus_client only; onnxruntime, OpenVINO,
OpenCV, uvicorn, httpx and supervision are imported when used. The Docker image
(``Dockerfile``) has neither torch nor Ultralytics.

Example::

    detector = load_detector(cfg.workspace.models / "best.onnx")
    found = detector.detect(frame_bgr)            # a DetectionResult
    found.to_supervision()                         # the course's one detection type

    with serve_in_background(cfg.workspace.models / "best.onnx") as server:
        stats = load_test(server.url, jpeg_bytes, concurrency=8, requests=200)

The service's rules:

* **API key.** With ``TCV_API_KEY`` set (or ``api_key=`` given), every path except
  ``/healthz`` needs the header ``X-API-Key: <key>``; ``Authorization: Bearer <key>`` is accepted
  too, which is what Prometheus sends for a scrape job with ``authorization: credentials``.
  ``/metrics`` is protected on purpose: it shows traffic and what the cameras see.
* **Bad input** is a 4xx with a JSON body ``{"error": "..."}``: a body that is not
  multipart/form-data (415), a malformed multipart body (400), a missing or wrong field (422),
  not an image (415), an empty, truncated or undecodable image (422), a body over
  ``max_upload_bytes`` (413, refused from ``Content-Length`` before it is read, or as soon as the
  bytes read pass the limit), more than ``max_batch`` images (413) and an image over
  ``max_pixels`` (413, refused from its header, before any pixel is decoded). Uploads over 1 MB
  wait on disk, not in memory (Starlette spools them).
* **Overload.** At most ``max_concurrency`` images are decoded and run at once (a thread pool of
  that size) and at most ``max_queue`` more requests wait; beyond that the answer is 429 with
  ``Retry-After`` at once, before the body is read. Memory stays bounded under any load.
* ``latency_ms`` is the time from the request's arrival to its answer being ready (reading the
  upload, waiting for a worker, decoding, inference); for a batch, up to that image's answer.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import hashlib
import hmac
import io
import logging
import math
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from PIL import Image, ImageOps, UnidentifiedImageError
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

from tcv_helpers.env import stop_process, usable_cores

if TYPE_CHECKING:
    import supervision as sv

LOGGER = logging.getLogger(__name__)

#: Confidence threshold of the service and of :meth:`Detector.detect` (Ultralytics' default).
DEFAULT_CONF = 0.25
#: IoU threshold of non-maximum suppression (Ultralytics' default).
DEFAULT_IOU = 0.7
#: Most detections kept per image (Ultralytics' default).
MAX_DET = 300
#: Most candidate boxes that enter non-maximum suppression (Ultralytics' ``max_nms``).
MAX_NMS = 30_000
#: Offset in pixels that keeps boxes of different classes apart in one NMS pass (Ultralytics).
MAX_WH = 7680
#: Grey of the letterbox padding (Ultralytics' value).
PAD_VALUE = 114
#: Backends :func:`load_detector` knows.
BACKENDS = ("auto", "onnxruntime", "openvino")
#: File written by :func:`tcv_helpers.deploy.optimize.benchmark`; ``backend="auto"`` on its folder
#: serves the fastest variant it recorded.
BENCHMARK_FILE = "benchmark.json"
#: Image formats the service decodes (Pillow names); anything else is 415.
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP")
#: Largest image accepted, in pixels (the course's limit, as in :mod:`tcv_helpers.imaging`).
MAX_PIXELS = 40_000_000
#: Largest request body accepted by the service, in bytes.
MAX_UPLOAD_BYTES = 10 * 2**20
#: Most images in one ``POST /v1/detect/batch``.
MAX_BATCH_IMAGES = 16
#: Requests that may wait for a worker before the service answers 429.
DEFAULT_MAX_QUEUE = 32
#: Seconds a client is asked to wait after a 429.
RETRY_AFTER_SECONDS = 1
#: Open connections beyond which uvicorn itself answers 503 (a flood guard, far above the queue).
CONNECTION_LIMIT = 1000
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
#: Reference profile (training-image brightness) that the service picks up beside the model.
REFERENCE_FILE = "reference.json"

# What Pillow raises on a damaged file, besides UnidentifiedImageError (a subclass of OSError).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)


# --------------------------------------------------------------------------------------------
# Images in
# --------------------------------------------------------------------------------------------


class BadImage(ValueError):
    """Bytes the detector will not run on; ``status`` is the HTTP status the service answers.

    Attributes:
        status: 413 (too many pixels), 415 (not an image) or 422 (empty, truncated, damaged).
        reason: A short label for metrics (``too_many_pixels``, ``not_an_image``, ...).
    """

    def __init__(self, message: str, *, status: int, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


def decode_image(
    data: bytes, *, max_pixels: int = MAX_PIXELS, fit: tuple[int, int] | None = None
) -> np.ndarray:
    """Decodes image bytes to an RGB array, refusing anything damaged or too large.

    The size is read from the header before any pixel is decoded, so a small file that declares
    30,000 x 30,000 pixels is refused without allocating them. The EXIF orientation is applied,
    as OpenCV (and so Ultralytics) applies it.

    Args:
        data: JPEG, PNG, WebP or BMP bytes.
        max_pixels: Largest width x height accepted.
        fit: The model's input ``(height, width)``. Given, a JPEG at least twice as large as
            the letterbox needs is decoded at 1/2, 1/4 or 1/8 scale (JPEG's own DCT scaling,
            Pillow's draft mode): never smaller than the model will see it, three to five times
            less work than decoding every pixel and resizing them away. The array is then
            smaller than the image: :func:`decode_upload` also returns the full size.

    Returns:
        The image as a ``(height, width, 3)`` uint8 RGB array.

    Raises:
        BadImage: With the reason and the HTTP status the service answers.
    """
    return decode_upload(data, max_pixels=max_pixels, fit=fit)[0]


def decode_upload(
    data: bytes, *, max_pixels: int = MAX_PIXELS, fit: tuple[int, int] | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`decode_image`, and the image's full ``(width, height)`` (after EXIF rotation).

    Returns:
        The RGB array (reduced when ``fit`` allows) and the size of the image it stands for:
        detections on the array are scaled to that size (:meth:`DetectionResult.rescaled`).

    Raises:
        BadImage: With the reason and the HTTP status the service answers.
    """
    if not data:
        raise BadImage("the image is empty (0 bytes)", status=422, reason="empty")
    try:
        image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except UnidentifiedImageError:
        kinds = ", ".join(IMAGE_FORMATS[:-1]) + " or " + IMAGE_FORMATS[-1]
        raise BadImage(
            f"not an image (expected {kinds})", status=415, reason="not_an_image"
        ) from None
    except Image.DecompressionBombError as exc:
        raise BadImage(f"too many pixels ({exc})", status=413, reason="too_many_pixels") from None
    except _DECODE_ERRORS as exc:
        raise BadImage(f"damaged image header ({exc})", status=422, reason="undecodable") from None
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise BadImage(
                f"{width} x {height} pixels is more than the {max_pixels:,} allowed",
                status=413,
                reason="too_many_pixels",
            )
        if width < 1 or height < 1:
            raise BadImage(f"{width} x {height} pixels is empty", status=422, reason="empty")
        try:
            if fit is not None and image.format == "JPEG":
                # The larger of the letterbox's scales for the image as stored and as turned
                # by its EXIF orientation: the reduced decode keeps at least that many pixels.
                ratio = max(
                    min(fit[0] / height, fit[1] / width), min(fit[0] / width, fit[1] / height)
                )
                if ratio <= 0.5:
                    image.draft(
                        "RGB", (max(round(width * ratio), 1), max(round(height * ratio), 1))
                    )
            decoded = image.size
            image.load()
            if image.getexif().get(0x0112, 1) != 1:  # EXIF orientation
                image = ImageOps.exif_transpose(image)
            rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
            turned = rgb.shape[1] != decoded[0] or rgb.shape[0] != decoded[1]
            return rgb, (height, width) if turned else (width, height)
        except Image.DecompressionBombError as exc:
            raise BadImage(
                f"too many pixels ({exc})", status=413, reason="too_many_pixels"
            ) from None
        except _DECODE_ERRORS as exc:
            raise BadImage(
                f"truncated or damaged {image.format} image ({exc})",
                status=422,
                reason="undecodable",
            ) from None


def _to_rgb(image: Any, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An RGB uint8 array from a BGR array, a PIL image, encoded bytes or an image file."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(
                f"Image arrays must be uint8 (as OpenCV reads them), got {image.dtype}."
            )
        if image.ndim == 2 and 0 not in image.shape:
            return np.repeat(image[:, :, None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] not in (1, 3, 4) or 0 in image.shape:
            raise ValueError(
                f"Image arrays must be (height, width), or (height, width, 1|3|4) BGR(A); got "
                f"shape {image.shape}."
            )
        if image.shape[2] == 1:
            return np.repeat(image, 3, axis=2)
        return image[:, :, 2::-1]  # BGR(A) -> RGB
    if isinstance(image, Image.Image):
        return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    if isinstance(image, bytes | bytearray | memoryview):
        return decode_image(bytes(image), max_pixels=max_pixels)
    if isinstance(image, str | os.PathLike):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"Image {path} does not exist.")
        try:
            return decode_image(path.read_bytes(), max_pixels=max_pixels)
        except BadImage as exc:
            raise BadImage(f"{path}: {exc}", status=exc.status, reason=exc.reason) from None
    raise TypeError(
        f"Cannot read an image from {type(image).__name__}: give a BGR uint8 array, a PIL image, "
        "encoded bytes or a file path."
    )


def image_brightness(rgb: np.ndarray) -> float:
    """Mean luma (0-255, ITU-R BT.601) of an RGB image, from about 16,000 sampled pixels."""
    step = max(1, math.ceil(math.sqrt(rgb.shape[0] * rgb.shape[1] / 16_384)))
    sample = rgb[::step, ::step].reshape(-1, 3).astype(np.float32)
    return float((sample @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).mean())


# --------------------------------------------------------------------------------------------
# Reference profile: the drift baseline the service exports beside what it sees
# --------------------------------------------------------------------------------------------


def brightness_reference(
    images: Sequence[np.ndarray | Image.Image | bytes | str | os.PathLike],
    *,
    max_pixels: int = MAX_PIXELS,
) -> dict[str, Any]:
    """The reference profile of training images: their brightness as the service measures it.

    Save it as ``reference.json`` beside the model (``tcv_helpers.io.atomic_write_json``) and
    the service exports it as ``tcv_reference_brightness{stat="mean"|"std"}``, which the drift
    alert of ``resources/monitoring/alerts.yml`` compares with ``tcv_image_brightness``.

    Args:
        images: Training images, as :meth:`Detector.detect` takes them (BGR arrays, PIL images,
            encoded bytes or files).
        max_pixels: Largest image accepted, width x height.

    Returns:
        ``{"brightness": {"mean": m, "std": s, "count": n}}`` (mean luma 0-255 per image, as
        :func:`image_brightness` computes it).

    Raises:
        ValueError: If ``images`` is empty or an image is unusable.
    """
    if not images:
        raise ValueError("brightness_reference needs at least one image.")
    values = np.array([image_brightness(_to_rgb(im, max_pixels=max_pixels)) for im in images])
    return {
        "brightness": {
            "mean": round(float(values.mean()), 4),
            "std": round(float(values.std()), 4),
            "count": len(values),
        }
    }


def load_reference(source: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """Reads and checks a reference profile (see :func:`brightness_reference`).

    Args:
        source: A JSON file, or the profile itself as a mapping.

    Returns:
        ``{"brightness": {"mean": m, "std": s}}`` with floats (0 <= m <= 255, s >= 0).

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If it is not JSON or a field is missing or out of range (the message names
            the file and the field).
    """
    import json

    where = "the reference profile"
    if isinstance(source, Mapping):
        profile: Any = source
    else:
        path = Path(source)
        where = str(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"Reference profile {path} does not exist: write one with "
                "tcv_helpers.deploy.serve.brightness_reference(training_images)."
            )
        try:
            profile = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{where} is not valid JSON: {exc}") from None
    brightness = profile.get("brightness") if isinstance(profile, Mapping) else None
    if not isinstance(brightness, Mapping):
        raise ValueError(f'{where}: expected an object with a "brightness" object (mean, std).')
    stats = {}
    for stat, low, high in (("mean", 0.0, 255.0), ("std", 0.0, 255.0)):
        value = brightness.get(stat)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}: brightness.{stat} must be a number, got {value!r}.")
        if not (math.isfinite(value) and low <= value <= high):
            raise ValueError(
                f"{where}: brightness.{stat} must be in {low:g}-{high:g}, got {value}."
            )
        stats[stat] = float(value)
    return {"brightness": stats}


def _reference_beside(model_path: Path) -> Path | None:
    """``reference.json`` in the model's folder, or the folder above (a benchmark's variants)."""
    for folder in (model_path.parent, model_path.parent.parent):
        candidate = folder / REFERENCE_FILE
        if candidate.is_file():
            return candidate
    return None


# --------------------------------------------------------------------------------------------
# Letterbox, NMS, scaling: Ultralytics' predictor in numpy
# --------------------------------------------------------------------------------------------


def _resize_linear(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize like ``cv2.resize(..., INTER_LINEAR)``: OpenCV when installed, else numpy.

    The numpy path samples at the same pixel centres as OpenCV and rounds to the nearest level;
    it differs from OpenCV's fixed-point arithmetic by at most one grey level.
    """
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None:
        return cv2.resize(
            np.ascontiguousarray(image), (width, height), interpolation=cv2.INTER_LINEAR
        )

    def taps(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        position = (np.arange(size_out, dtype=np.float64) + 0.5) * (size_in / size_out) - 0.5
        low = np.floor(position)
        weight = position - low
        low = low.astype(np.int64)
        weight[low < 0] = 0.0
        low[low < 0] = 0
        top = low >= size_in - 1
        weight[top] = 0.0
        low[top] = size_in - 1
        return low, np.minimum(low + 1, size_in - 1), weight.astype(np.float32)

    y0, y1, wy = taps(image.shape[0], height)
    x0, x1, wx = taps(image.shape[1], width)
    rows = image[y0].astype(np.float32) * (1 - wy)[:, None, None]
    rows += image[y1].astype(np.float32) * wy[:, None, None]
    out = rows[:, x0] * (1 - wx)[None, :, None] + rows[:, x1] * wx[None, :, None]
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def letterbox(
    image: np.ndarray, shape: tuple[int, int], *, auto: bool = False, stride: int = 32
) -> np.ndarray:
    """Resizes keeping the aspect ratio and pads with grey, exactly as Ultralytics' ``LetterBox``.

    Args:
        image: An ``(h, w, 3)`` uint8 array (channel order is kept).
        shape: Target ``(height, width)``.
        auto: Pad only to a multiple of ``stride`` (Ultralytics' ``rect`` inference, used for
            models with a dynamic input size); False pads to ``shape`` (fixed-size models).
        stride: The model's largest stride.

    Returns:
        The letterboxed uint8 array.
    """
    h, w = image.shape[:2]
    ratio = min(shape[0] / h, shape[1] / w)
    new_w, new_h = max(round(w * ratio), 1), max(round(h * ratio), 1)
    dw, dh = shape[1] - new_w, shape[0] - new_h
    if auto:
        dw, dh = dw % stride, dh % stride
    dw, dh = dw / 2, dh / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    if (w, h) != (new_w, new_h):
        image = _resize_linear(image, new_w, new_h)
    out = np.full((new_h + top + bottom, new_w + left + right, 3), PAD_VALUE, dtype=np.uint8)
    out[top : top + new_h, left : left + new_w] = image
    return out


def _xywh2xyxy(xywh: np.ndarray) -> np.ndarray:
    out = np.empty_like(xywh)
    half = xywh[:, 2:] / 2
    out[:, :2] = xywh[:, :2] - half
    out[:, 2:] = xywh[:, :2] + half
    return out


def nms(
    boxes: np.ndarray, scores: np.ndarray, iou: float, *, limit: int | None = None
) -> np.ndarray:
    """Greedy non-maximum suppression, as ``torchvision.ops.nms`` computes it.

    Args:
        boxes: ``(n, 4)`` xyxy boxes.
        scores: ``(n,)`` scores.
        iou: Boxes overlapping a kept box by more than this IoU are dropped.
        limit: Stop after keeping this many (the same first boxes, found sooner).

    Returns:
        Indices of the kept boxes, highest score first.
    """
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    keep = []
    with np.errstate(divide="ignore", invalid="ignore"):
        while order.size and (limit is None or len(keep) < limit):
            best, rest = order[0], order[1:]
            keep.append(best)
            width = np.maximum(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0)
            height = np.maximum(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0)
            inter = width * height
            overlap = inter / (areas[best] + areas[rest] - inter)
            order = rest[~(overlap > iou)]  # NaN (two empty boxes) is kept, as in torchvision
    return np.asarray(keep, dtype=np.int64)


def non_max_suppression(
    prediction: np.ndarray,
    *,
    conf: float = DEFAULT_CONF,
    iou: float = DEFAULT_IOU,
    max_det: int = MAX_DET,
    end2end: bool = False,
    agnostic: bool = False,
) -> list[np.ndarray]:
    """Ultralytics' ``non_max_suppression`` (``multi_label=False``) in numpy.

    Args:
        prediction: The model's output: ``(batch, 4 + classes, anchors)`` with xywh boxes and
            per-class scores, or ``(batch, k, 6)`` xyxy-score-class rows of an end-to-end model.
        conf: Keep boxes whose best class scores more than this.
        iou: IoU threshold of the suppression (within one class).
        max_det: Most boxes kept per image.
        end2end: The output is already suppressed (YOLO26-style ``(batch, k, 6)``).
        agnostic: Suppress across classes too.

    Returns:
        Per image, an ``(n, 6)`` float32 array: x1, y1, x2, y2, confidence, class id.
    """
    if not (0 <= conf <= 1 and 0 <= iou <= 1):
        raise ValueError(f"conf and iou must be between 0 and 1, got conf={conf}, iou={iou}.")
    out = []
    if end2end or prediction.shape[-1] == 6:
        for rows in prediction:
            out.append(rows[rows[:, 4] > conf][:max_det].astype(np.float32))
        return out
    for image in prediction:
        rows = image.T  # (anchors, 4 + classes)
        scores = rows[:, 4:]
        best = scores.max(axis=1)
        candidates = best > conf
        if not candidates.any():
            out.append(np.zeros((0, 6), np.float32))
            continue
        classes = scores[candidates].argmax(axis=1).astype(np.float32)
        found = np.concatenate(
            [_xywh2xyxy(rows[candidates, :4]), best[candidates, None], classes[:, None]], axis=1
        ).astype(np.float32, copy=False)
        if len(found) > MAX_NMS:
            found = found[np.argsort(-found[:, 4], kind="stable")[:MAX_NMS]]
        offsets = found[:, 5:6] * (0 if agnostic else MAX_WH)
        keep = nms(found[:, :4] + offsets, found[:, 4], iou, limit=max_det)
        out.append(found[keep])
    return out


def scale_boxes(
    boxes: np.ndarray, input_shape: tuple[int, int], image_shape: tuple[int, int]
) -> np.ndarray:
    """Boxes from letterboxed-input pixels to original-image pixels, clipped (Ultralytics' way).

    Args:
        boxes: ``(n, 4)`` float32 xyxy boxes in the model input; changed in place.
        input_shape: The letterboxed input's ``(height, width)``.
        image_shape: The original image's ``(height, width)``.

    Returns:
        ``boxes``.
    """
    gain = min(input_shape[0] / image_shape[0], input_shape[1] / image_shape[1])
    new_h, new_w = (max(round(side * gain), 1) for side in image_shape[:2])
    gain_y, gain_x = new_h / image_shape[0], new_w / image_shape[1]
    pad_x = round((input_shape[1] - new_w) / 2 - 0.1)
    pad_y = round((input_shape[0] - new_h) / 2 - 0.1)
    boxes[:, [0, 2]] -= pad_x
    boxes[:, [1, 3]] -= pad_y
    boxes[:, [0, 2]] /= gain_x
    boxes[:, [1, 3]] /= gain_y
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, image_shape[1])
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, image_shape[0])
    return boxes


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class DetectionResult:
    """The detections in one image, in original-image pixels.

    A light copy of ``sv.Detections`` for places without supervision (the Docker image has
    neither it nor OpenCV): :meth:`to_supervision` turns it into the course's one detection type.

    Attributes:
        xyxy: ``(n, 4)`` float32 boxes, x1 y1 x2 y2, highest confidence first.
        confidence: ``(n,)`` float32 scores.
        class_id: ``(n,)`` int64 class ids.
        names: The model's class names by id.
        width: Image width in pixels.
        height: Image height in pixels.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    names: Mapping[int, str]
    width: int
    height: int

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        if self.xyxy.shape != (n, 4):
            raise ValueError(f"xyxy must have shape (n, 4), got {self.xyxy.shape}.")
        if self.confidence.shape != (n,) or self.class_id.shape != (n,):
            raise ValueError(
                f"confidence and class_id must have shape ({n},), got {self.confidence.shape} "
                f"and {self.class_id.shape}."
            )

    @classmethod
    def empty(cls, *, names: Mapping[int, str], width: int, height: int) -> DetectionResult:
        """No detections."""
        return cls(
            xyxy=np.zeros((0, 4), np.float32), confidence=np.zeros(0, np.float32),
            class_id=np.zeros(0, np.int64), names=names, width=width, height=height,
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.xyxy)

    @property
    def class_name(self) -> list[str]:
        """The class name of every detection (``str(id)`` for an id the model does not name)."""
        return [self.names.get(int(k), str(int(k))) for k in self.class_id]

    def rescaled(self, width: int, height: int) -> DetectionResult:
        """The same detections in an image of ``width`` x ``height`` (a reduced decode's boxes
        in the full image's pixels)."""
        if (width, height) == (self.width, self.height):
            return self
        gain = np.array([width / self.width, height / self.height] * 2, dtype=np.float32)
        return replace(self, xyxy=self.xyxy * gain, width=width, height=height)

    def to_records(self) -> list[dict[str, Any]]:
        """The detections as the service returns them (``xyxy`` to 0.01 pixel)."""
        return [
            {
                "xyxy": [round(float(v), 2) for v in box],
                "confidence": round(float(score), 5),
                "class_id": int(k),
                "class_name": name,
            }
            for box, score, k, name in zip(
                self.xyxy, self.confidence, self.class_id, self.class_name, strict=True
            )
        ]

    def to_supervision(self) -> sv.Detections:
        """The same detections as ``sv.Detections`` (class names in ``data["class_name"]``)."""
        import supervision as sv

        return sv.Detections(
            xyxy=self.xyxy.astype(np.float32).reshape(-1, 4),
            confidence=self.confidence.astype(np.float32),
            class_id=self.class_id.astype(int),
            data={"class_name": np.array(self.class_name, dtype=str)},
        )


# --------------------------------------------------------------------------------------------
# Runtimes
# --------------------------------------------------------------------------------------------


def _parse_metadata(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Ultralytics' metadata strings (``"{0: 'car'}"``, ``"[640, 640]"``) as Python values."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, str):
            with contextlib.suppress(ValueError, SyntaxError, MemoryError, RecursionError):
                value = ast.literal_eval(value)
        out[str(key)] = value
    return out


def _file_digest(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(2**20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:12]


class _OnnxRuntime:
    """One ONNX Runtime session (thread-safe: concurrent ``run`` calls are allowed)."""

    backend = "onnxruntime"

    def __init__(self, path: Path, *, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime's own error types (InvalidProtobuf, Fail, ...)
            raise ValueError(f"{path} is not a model ONNX Runtime can load: {exc}") from None
        spec = self.session.get_inputs()[0]
        self.input_name = spec.name
        self.input_shape = list(spec.shape)
        self.input_dtype = np.float16 if "float16" in spec.type else np.float32
        self.metadata = _parse_metadata(self.session.get_modelmeta().custom_metadata_map)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        feed = {self.input_name: batch.astype(self.input_dtype, copy=False)}
        return np.asarray(self.session.run(None, feed)[0], dtype=np.float32)


class _OpenVino:
    """An OpenVINO compiled model, with one inference request per calling thread."""

    backend = "openvino"

    def __init__(self, path: Path, *, threads: int, streams: int = 1) -> None:
        import openvino as ov

        core = ov.Core()
        try:
            model = core.read_model(str(path))
        except RuntimeError as exc:
            raise ValueError(f"{path} is not a model OpenVINO can read: {exc}") from None
        self.metadata = self._metadata(model, path)
        shape = model.inputs[0].get_partial_shape()
        self.input_shape = [d.get_length() if d.is_static else None for d in shape]
        self.input_dtype = np.float32
        # f32: OpenVINO would otherwise run bf16 on CPUs that have it, moving boxes by pixels.
        # One stream runs one inference at a time with ``threads`` threads: ``streams`` of them
        # let that many worker threads infer side by side instead of queueing on one.
        config = {
            "PERFORMANCE_HINT": "LATENCY" if streams == 1 else "THROUGHPUT",
            "NUM_STREAMS": streams,
            "INFERENCE_NUM_THREADS": threads * streams,
            "INFERENCE_PRECISION_HINT": "f32",
        }
        self.compiled = core.compile_model(model, "CPU", config)
        self._local = threading.local()

    @staticmethod
    def _metadata(model: Any, path: Path) -> dict[str, Any]:
        for section in ("framework", "model_info"):
            if model.has_rt_info([section, "names"]):
                raw = model.get_rt_info()[section]
                return _parse_metadata(
                    {k: model.get_rt_info([section, k]).astype(str) for k in raw}
                )
        beside = path.parent / "metadata.yaml"
        if beside.is_file():
            import yaml

            return _parse_metadata(yaml.safe_load(beside.read_text(encoding="utf-8")) or {})
        return {}

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        request.infer({0: batch}, share_inputs=True)  # no copy of the input
        return np.array(request.get_output_tensor(0).data, dtype=np.float32)


# --------------------------------------------------------------------------------------------
# The detector
# --------------------------------------------------------------------------------------------


class Detector:
    """A YOLO detector without torch: Ultralytics' pre- and post-processing around a runtime.

    Build it with :func:`load_detector`. It is thread-safe: several threads may call
    :meth:`detect` at once (the service does).

    Attributes:
        path: The model file.
        backend: ``onnxruntime`` or ``openvino``.
        names: Class names by id (from the model's metadata).
        imgsz: The model's input ``(height, width)``.
        stride: The model's largest stride.
        name: A short name for the model (the file name without suffix).
        version: The first 12 hex digits of the model file's SHA-256: which weights answered.
    """

    def __init__(self, runtime: Any, *, path: Path, files: Sequence[Path]) -> None:
        meta = runtime.metadata
        if meta.get("task", "detect") != "detect":
            raise ValueError(
                f"{path} is a {meta['task']} model; the service runs detection models."
            )
        shape = runtime.input_shape
        if len(shape) != 4:
            raise ValueError(f"{path}: expected an image input (batch, 3, h, w), got {shape}.")
        size = meta.get("imgsz") or [shape[2], shape[3]]
        if isinstance(size, int):
            size = [size, size]
        if not all(isinstance(s, int) and s > 0 for s in size):
            raise ValueError(f"{path}: no input size in the metadata nor in the graph ({shape}).")
        names = meta.get("names")
        if not isinstance(names, dict):
            raise ValueError(
                f"{path} has no class names in its metadata: export it with Ultralytics "
                "(YOLO(weights).export(format='onnx'))."
            )
        self._runtime = runtime
        self.path = path
        self.backend: str = runtime.backend
        self.names: dict[int, str] = {int(k): str(v) for k, v in names.items()}
        self.imgsz: tuple[int, int] = (int(size[0]), int(size[1]))
        self.stride = int(meta.get("stride", 32))
        self.end2end = bool(meta.get("end2end", False))
        self.dynamic = not all(isinstance(d, int) for d in shape[2:])
        self.batch_size = shape[0] if isinstance(shape[0], int) else None
        self.name = path.stem if path.suffix else path.name
        self.version = _file_digest(files)

    def __repr__(self) -> str:
        return (
            f"Detector({self.path.name!r}, backend={self.backend!r}, imgsz={self.imgsz}, "
            f"classes={len(self.names)}, version={self.version!r})"
        )

    def preprocess(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """RGB uint8 images to the model's float input (letterbox, CHW, 0-1), as Ultralytics.

        Args:
            images: RGB ``(h, w, 3)`` uint8 arrays.

        Returns:
            A ``(n, 3, h, w)`` float32 batch.
        """
        same = len({im.shape for im in images}) == 1
        auto = self.dynamic and same
        boxed = [letterbox(im, self.imgsz, auto=auto, stride=self.stride) for im in images]
        batch = np.empty((len(boxed), 3, *boxed[0].shape[:2]), dtype=np.float32)
        for out, image in zip(batch, boxed, strict=True):  # HWC uint8 -> CHW float 0-1, one pass
            np.divide(image.transpose(2, 0, 1), np.float32(255), out=out)
        return batch

    def _run(self, batch: np.ndarray) -> np.ndarray:
        size = self.batch_size
        if size is None or size == len(batch):
            return self._runtime(batch)
        outputs = []
        for start in range(0, len(batch), size):
            chunk = batch[start : start + size]
            filled = len(chunk)
            if filled < size:
                chunk = np.concatenate(
                    [chunk, np.zeros((size - filled, *chunk.shape[1:]), chunk.dtype)]
                )
            outputs.append(self._runtime(chunk)[:filled])
        return np.concatenate(outputs)

    def detect_arrays(
        self,
        images: Sequence[np.ndarray],
        *,
        conf: float = DEFAULT_CONF,
        iou: float = DEFAULT_IOU,
        max_det: int = MAX_DET,
    ) -> list[DetectionResult]:
        """Detections for RGB arrays (the service's path; :meth:`detect` takes any image).

        Args:
            images: RGB ``(h, w, 3)`` uint8 arrays.
            conf: Keep detections scoring more than this.
            iou: NMS IoU threshold.
            max_det: Most detections per image.

        Returns:
            One :class:`DetectionResult` per image, in order.
        """
        if not images:
            return []
        batch = self.preprocess(images)
        raw = self._run(batch)
        kept = non_max_suppression(raw, conf=conf, iou=iou, max_det=max_det, end2end=self.end2end)
        results = []
        for rows, image in zip(kept, images, strict=True):
            height, width = image.shape[:2]
            boxes = scale_boxes(rows[:, :4].copy(), batch.shape[2:], (height, width))
            found = DetectionResult(
                xyxy=boxes, confidence=rows[:, 4].copy(), class_id=rows[:, 5].astype(np.int64),
                names=self.names, width=width, height=height,
            )  # fmt: skip
            results.append(found)
        return results

    def detect(
        self,
        image: np.ndarray | Image.Image | bytes | str | os.PathLike,
        *,
        conf: float = DEFAULT_CONF,
        iou: float = DEFAULT_IOU,
        max_det: int = MAX_DET,
    ) -> DetectionResult:
        """Detections in one image.

        Args:
            image: A BGR uint8 array (as OpenCV reads it, and as Ultralytics takes it), a PIL
                image, encoded image bytes, or an image file.
            conf: Keep detections scoring more than this.
            iou: NMS IoU threshold.
            max_det: Most detections kept.

        Returns:
            The detections, in original-image pixels.

        Raises:
            BadImage: If bytes or a file are not a usable image.
            FileNotFoundError: If the image file does not exist.
            ValueError: If an array is not uint8 with 1, 3 or 4 channels.
        """
        return self.detect_batch([image], conf=conf, iou=iou, max_det=max_det)[0]

    def detect_batch(
        self,
        images: Sequence[np.ndarray | Image.Image | bytes | str | os.PathLike],
        *,
        conf: float = DEFAULT_CONF,
        iou: float = DEFAULT_IOU,
        max_det: int = MAX_DET,
    ) -> list[DetectionResult]:
        """Detections in several images (one forward pass per model batch).

        Args:
            images: Images as :meth:`detect` takes them.
            conf: Keep detections scoring more than this.
            iou: NMS IoU threshold.
            max_det: Most detections kept per image.

        Returns:
            One :class:`DetectionResult` per image, in order.
        """
        return self.detect_arrays(
            [_to_rgb(im) for im in images], conf=conf, iou=iou, max_det=max_det
        )


def _benchmark_choice(folder: Path) -> Path | None:
    """The fastest deployable variant recorded by ``tcv_helpers.deploy.optimize.benchmark`` in ``folder``."""
    import json

    record = folder / BENCHMARK_FILE
    if not record.is_file():
        return None
    try:
        fastest = json.loads(record.read_text(encoding="utf-8")).get("fastest") or {}
    except (json.JSONDecodeError, AttributeError) as exc:
        raise ValueError(f"{record} is not a benchmark record: {exc}") from None
    recorded = Path(str(fastest.get("path", "")))
    if not recorded.name or recorded.suffix == ".pt":
        return None
    for candidate in (
        recorded,
        folder / recorded.name,
        folder / recorded.parent.name / recorded.name,
    ):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(
        f"{record} names {recorded} as the fastest variant, but it is not there: run the "
        "benchmark again (notebook 07) or give the model file."
    )


def _resolve_model(path: Path, backend: str) -> tuple[Path, str, list[Path]]:
    """The model file, the backend to run it with, and the files that make up the weights."""
    if not path.exists():
        raise FileNotFoundError(
            f"Model {path} does not exist: export one with tcv_helpers.deploy.optimize.export_onnx "
            "(notebook 07) or YOLO(weights).export(format='onnx')."
        )
    if path.is_dir():
        chosen = _benchmark_choice(path) if backend == "auto" else None
        if chosen is not None:
            return _resolve_model(chosen, "auto")
        xmls = sorted(path.glob("*.xml"))
        if len(xmls) != 1:
            raise ValueError(
                f"{path} is a folder without a {BENCHMARK_FILE} naming a model nor one OpenVINO "
                "model (.xml): give the .onnx or .xml file."
            )
        path = xmls[0]
    if path.suffix == ".pt":
        raise ValueError(
            f"{path} is PyTorch weights; the service runs without torch: export to ONNX first "
            "(tcv_helpers.deploy.optimize.export_onnx)."
        )
    if path.suffix not in (".onnx", ".xml"):
        raise ValueError(
            f"{path}: expected an .onnx file or an OpenVINO .xml, got {path.suffix!r}."
        )
    files = [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]
    if backend == "auto":
        backend = "openvino" if path.suffix == ".xml" else "onnxruntime"
        if backend == "onnxruntime":
            try:
                import onnxruntime  # noqa: F401
            except ImportError:
                backend = "openvino"
    if backend == "onnxruntime" and path.suffix == ".xml":
        raise ValueError(f"{path} is an OpenVINO model: use backend='openvino'.")
    return path, backend, [f for f in files if f.is_file()]


def load_detector(
    path: str | os.PathLike,
    *,
    backend: str = "auto",
    threads: int | None = None,
    parallel: int = 1,
) -> Detector:
    """Loads an exported YOLO model for inference without torch.

    Args:
        path: An ``.onnx`` file exported by Ultralytics, an OpenVINO ``.xml`` (or its
            ``*_openvino_model`` folder), or a folder holding the ``benchmark.json`` of
            :func:`tcv_helpers.deploy.optimize.benchmark` (``auto`` then serves its fastest variant).
        backend: ``auto`` (OpenVINO for ``.xml``, ONNX Runtime for ``.onnx``), ``onnxruntime``
            or ``openvino`` (which also runs ``.onnx`` files).
        threads: CPU threads per inference (default: every core this process may use).
        parallel: Inferences that may run at the same time (the service's workers). ONNX
            Runtime runs concurrent calls side by side anyway; OpenVINO needs one execution
            stream per concurrent inference, or it queues them on one.

    Returns:
        The detector.

    Raises:
        FileNotFoundError: If the model does not exist.
        ValueError: If the backend is unknown or the file is not an exported detection model.
        ImportError: If the backend's runtime is not installed.
    """
    if backend not in BACKENDS:
        raise ValueError(f"Unknown backend {backend!r}; choose from {', '.join(BACKENDS)}.")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}.")
    if parallel < 1:
        raise ValueError(f"parallel must be at least 1, got {parallel}.")
    model, chosen, files = _resolve_model(Path(path), backend)
    try:
        if chosen == "onnxruntime":
            runtime: Any = _OnnxRuntime(model, threads=threads or usable_cores())
        else:
            runtime = _OpenVino(model, threads=threads or usable_cores(), streams=parallel)
    except ImportError as exc:
        package = "onnxruntime" if chosen == "onnxruntime" else "openvino"
        raise ImportError(f"The {chosen} backend needs `pip install {package}` ({exc}).") from None
    return Detector(runtime, path=model, files=files)


def service_threads(max_concurrency: int | None = None) -> int:
    """CPU threads per inference for a service running ``max_concurrency`` images at once.

    The cores shared out: on a small CPU, two one-thread inferences side by side get through
    more frames than one two-thread inference at a time (at 640 pixels on 2 cores: about 36
    against 22 frames/s), and no thread waits for another.

    Args:
        max_concurrency: Images run at once (default: the CPU cores).

    Returns:
        At least 1.
    """
    cores = usable_cores()
    return max(1, cores // (max_concurrency or cores))


def service_detector(
    model: str | os.PathLike | Detector,
    *,
    backend: str = "auto",
    threads: int | None = None,
    max_concurrency: int | None = None,
) -> Detector:
    """The detector for a service running ``max_concurrency`` requests at once.

    The cores are shared out (:func:`service_threads`) and the runtime may run that many
    inferences side by side (``parallel`` of :func:`load_detector`).

    Args:
        model: A model path (see :func:`load_detector`), or a detector (returned as it is).
        backend: ``auto``, ``onnxruntime`` or ``openvino``.
        threads: CPU threads per inference (default: :func:`service_threads`).
        max_concurrency: Requests run at once (default: the CPU cores).

    Returns:
        The detector.
    """
    if isinstance(model, Detector):
        return model
    return load_detector(
        model,
        backend=backend,
        threads=threads or service_threads(max_concurrency),
        parallel=max_concurrency or usable_cores(),
    )


# --------------------------------------------------------------------------------------------
# The service
# --------------------------------------------------------------------------------------------


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
            "tcv_waiting", "Requests admitted and waiting for a worker.", registry=r
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

    def try_enter(self) -> bool:
        if self.admitted >= self.capacity:
            return False
        self.admitted += 1
        return True

    def leave(self) -> None:
        self.admitted -= 1

    @contextlib.asynccontextmanager
    async def worker(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._loop is not loop:
            self._semaphore, self._loop = asyncio.Semaphore(self.max_concurrency), loop
        async with self._semaphore:
            self.running += 1
            try:
                yield
            finally:
                self.running -= 1


def _endpoint(path: str) -> str:
    return path if path in ENDPOINTS else "other"


def _json_bytes(payload: Any) -> bytes:
    import json

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
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()

    @property
    def executor(self) -> ThreadPoolExecutor:
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self.settings.max_concurrency, thread_name_prefix="tcv-detect"
                )
            return self._executor

    def shutdown(self) -> None:
        with self._executor_lock:
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None

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
        """Reads the upload(s), runs them on a worker thread, returns the answers."""
        if not self.limiter.try_enter():
            raise _Rejection(
                429,
                f"busy: {self.limiter.capacity} requests are running or waiting; retry shortly",
                reason="overloaded",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        self._update_gauges()
        form = None
        try:
            form = await self._read_form(request, batch=batch)
            uploads = self._uploads(form, batch=batch)
            async with self.limiter.worker():
                self._update_gauges()
                loop = asyncio.get_running_loop()
                start = request.scope.get("state", {}).get("tcv_start", time.perf_counter())
                return await loop.run_in_executor(self.executor, self._work, uploads, start)
        finally:
            self.limiter.leave()
            self._update_gauges()
            if form is not None:
                await form.close()

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

    def _work(self, uploads: list[tuple[str, Any]], start: float) -> list[dict[str, Any]]:
        """Worker thread: decode, detect, record; one answer per upload."""
        begin = time.perf_counter()
        answers = []
        for label, upload in uploads:
            upload.file.seek(0)
            data = upload.file.read()
            try:
                rgb, (width, height) = decode_upload(
                    data, max_pixels=self.settings.max_pixels, fit=self.detector.imgsz
                )
            except BadImage as exc:
                raise _Rejection(exc.status, f"{label}: {exc}", reason=exc.reason) from None
            found = self.detector.detect_arrays(
                [rgb], conf=self.settings.conf, iou=self.settings.iou
            )[0].rescaled(width, height)
            self.metrics.observe_image(rgb, len(data), found)
            answers.append(
                {
                    "model": self.settings.model_name,
                    "image": {"width": found.width, "height": found.height},
                    "detections": found.to_records(),
                    "latency_ms": round((time.perf_counter() - start) * 1000, 2),
                }
            )
        self.metrics.inference.observe(time.perf_counter() - begin)
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
) -> FastAPI:
    """The detection service (COURSE.md §5) around a detector.

    Routes: ``GET /healthz``, ``GET /metrics`` (Prometheus text), ``POST /v1/detect`` (multipart
    field ``image``) and ``POST /v1/detect/batch`` (up to ``max_batch`` fields ``images``); the
    module docstring states the rules for keys, bad input and overload.

    Args:
        detector: From :func:`load_detector`.
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
        reference: The training images' reference profile (:func:`brightness_reference`), a
            JSON file or a mapping, exported as ``tcv_reference_brightness`` for the drift
            alert; None uses ``reference.json`` in the model's folder (or the one above) when
            there is one.

    Returns:
        The FastAPI app (``app.state.service`` holds its state, for tests).

    Raises:
        ValueError: If a limit is not positive, a threshold is outside 0-1 or the reference
            profile is malformed.
        FileNotFoundError: If a ``reference`` file is given and does not exist.
    """
    concurrency = usable_cores() if max_concurrency is None else max_concurrency
    limits = {
        "max_concurrency": concurrency,
        "max_upload_bytes": max_upload_bytes,
        "max_pixels": max_pixels,
        "max_batch": max_batch,
    }
    for name, value in limits.items():
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}.")
    if max_queue < 0:
        raise ValueError(f"max_queue must be 0 or more, got {max_queue}.")
    if not (0 <= conf <= 1 and 0 <= iou <= 1):
        raise ValueError(f"conf and iou must be between 0 and 1, got conf={conf}, iou={iou}.")
    if reference is None:
        reference = _reference_beside(Path(detector.path))
    settings = _Settings(
        api_key=os.environ.get(API_KEY_ENV, "") if api_key is None else api_key,
        max_concurrency=concurrency, max_queue=max_queue, max_upload_bytes=max_upload_bytes,
        max_pixels=max_pixels, max_batch=max_batch, conf=conf, iou=iou,
        model_name=model_name or detector.name, model_version=model_version or detector.version,
        reference=None if reference is None else load_reference(reference),
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


# --------------------------------------------------------------------------------------------
# Running it
# --------------------------------------------------------------------------------------------


def run_server(
    model: str | os.PathLike | Detector,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    backend: str = "auto",
    threads: int | None = None,
    max_concurrency: int | None = None,
    max_queue: int = DEFAULT_MAX_QUEUE,
    log_level: str = "info",
    reference: str | os.PathLike | Mapping[str, Any] | None = None,
) -> None:
    """Serves the model until interrupted (what ``tcv serve`` and the Docker image run).

    The API key comes from ``TCV_API_KEY`` only (never a command-line flag: flags show in
    ``ps`` and shell history).

    Args:
        model: A model path (see :func:`load_detector`) or a detector.
        host: Interface to listen on (``0.0.0.0`` inside a container).
        port: TCP port.
        backend: ``auto``, ``onnxruntime`` or ``openvino``.
        threads: CPU threads per inference (default: :func:`service_threads`).
        max_concurrency: Requests run at once (default: the CPU cores).
        max_queue: Requests that may wait; more get 429.
        log_level: uvicorn's log level.
        reference: The reference profile (see :func:`create_app`; None: beside the model).
    """
    import uvicorn

    detector = service_detector(
        model, backend=backend, threads=threads, max_concurrency=max_concurrency
    )
    app = create_app(
        detector, max_concurrency=max_concurrency, max_queue=max_queue, reference=reference
    )
    uvicorn.run(
        app, host=host, port=port, log_level=log_level, server_header=False,
        limit_concurrency=CONNECTION_LIMIT, timeout_graceful_shutdown=10,
    )  # fmt: skip


@dataclass
class ServerHandle:
    """A service running in the background (see :func:`serve_in_background`).

    Attributes:
        url: Base URL, e.g. ``http://127.0.0.1:53211``.
        pid: The serving process (this one, for a thread).
        log: The server's log file (process mode, removed by :meth:`stop`), else None.
    """

    url: str
    pid: int
    log: Path | None = None
    _stop: Callable[[], None] = field(default=lambda: None, repr=False)

    def stop(self) -> None:
        """Stops the server and waits for it (idempotent)."""
        self._stop()
        self._stop = lambda: None

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _wait_healthy(url: str, *, timeout: float, alive: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    return False


def serve_in_background(
    model: str | os.PathLike | Detector,
    *,
    mode: str = "thread",
    host: str = "127.0.0.1",
    port: int | None = None,
    backend: str = "auto",
    api_key: str | None = None,
    threads: int | None = None,
    max_concurrency: int | None = None,
    max_queue: int = DEFAULT_MAX_QUEUE,
    log_level: str = "warning",
    startup_timeout: float = 60.0,
    reference: str | os.PathLike | Mapping[str, Any] | None = None,
) -> ServerHandle:
    """Starts the service on loopback and returns once ``/healthz`` answers.

    ``mode="thread"`` runs uvicorn in a thread of this process (a notebook's kernel);
    ``mode="process"`` runs ``python -m tcv_helpers.deploy.serve`` in a child process, as the Docker
    image does, so that a load test in this process does not compete with it for the GIL.

    Args:
        model: A model path, or (thread mode) a detector.
        mode: ``thread`` or ``process``.
        host: Interface (loopback by default).
        port: TCP port (default: a free one).
        backend: ``auto``, ``onnxruntime`` or ``openvino``.
        api_key: The key (None: ``TCV_API_KEY`` from the environment; ``""``: none). A child
            process gets it through its environment, never its command line.
        threads: CPU threads per inference (default: :func:`service_threads`).
        max_concurrency: Requests run at once (default: the CPU cores).
        max_queue: Requests that may wait; more get 429.
        log_level: uvicorn's log level.
        startup_timeout: Seconds to wait for ``/healthz``.
        reference: The reference profile (see :func:`create_app`; None: beside the model); a
            child process needs a file.

    Returns:
        A handle with ``url`` and ``stop()`` (also a context manager).

    Raises:
        RuntimeError: If the server does not come up (the message has its log's end).
        ValueError: If ``mode`` is unknown or a detector is given to a child process.
    """
    if mode not in ("thread", "process"):
        raise ValueError(f"mode must be 'thread' or 'process', got {mode!r}.")
    port = port or _free_port(host)
    url = f"http://{host}:{port}"
    if mode == "thread":
        import uvicorn

        detector = service_detector(
            model, backend=backend, threads=threads, max_concurrency=max_concurrency
        )
        app = create_app(
            detector, api_key=api_key, max_concurrency=max_concurrency, max_queue=max_queue,
            reference=reference,
        )  # fmt: skip
        config = uvicorn.Config(
            app, host=host, port=port, log_level=log_level, access_log=False,
            limit_concurrency=CONNECTION_LIMIT, server_header=False,
            log_config=None,  # leave this process's logging set-up (a notebook's) alone
        )  # fmt: skip
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name=f"tcv-serve-{port}", daemon=True)
        thread.start()
        if not _wait_healthy(url, timeout=startup_timeout, alive=thread.is_alive):
            server.should_exit = True
            thread.join(timeout=10)
            raise RuntimeError(
                f"The service did not start on {url} within {startup_timeout:.0f} s."
            )

        def stop_thread() -> None:
            server.should_exit = True
            thread.join(timeout=30)

        return ServerHandle(url=url, pid=os.getpid(), _stop=stop_thread)

    if isinstance(model, Detector):
        raise ValueError("A child process needs the model's path, not a Detector object.")
    if isinstance(reference, Mapping):
        raise ValueError("A child process needs the reference profile's file, not a mapping.")
    env = dict(os.environ)
    if api_key is not None:
        env[API_KEY_ENV] = api_key
    command = [
        sys.executable, "-m", "tcv_helpers.deploy.serve", "--model", str(model), "--host", host,
        "--port", str(port), "--backend", backend, "--max-queue", str(max_queue),
        "--log-level", log_level,
    ]  # fmt: skip
    if threads:
        command += ["--threads", str(threads)]
    if max_concurrency:
        command += ["--max-concurrency", str(max_concurrency)]
    if reference is not None:
        command += ["--reference", str(reference)]
    log_fd, log_name = tempfile.mkstemp(prefix="tcv-serve-", suffix=".log")
    with os.fdopen(log_fd, "wb") as log:
        child = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    log_path = Path(log_name)

    def stop_child() -> None:
        stop_process(child)
        log_path.unlink(missing_ok=True)

    if not _wait_healthy(url, timeout=startup_timeout, alive=lambda: child.poll() is None):
        tail = log_path.read_text(errors="replace")[-2000:]
        stop_child()
        raise RuntimeError(f"The service did not start on {url}; its log ends:\n{tail}")
    return ServerHandle(url=url, pid=child.pid, log=log_path, _stop=stop_child)


def _percentile(values: Sequence[float], q: float) -> float:
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


#: Connections per httpx client in a load test (httpx's pool slows down with many).
_CONNECTIONS_PER_CLIENT = 32


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
                Image.fromarray(_to_rgb(frame)).save(buffer, format="JPEG", quality=90)
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


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m tcv_helpers.deploy.serve``: the service without Typer or torch (the Docker command)."""
    parser = argparse.ArgumentParser(
        prog="python -m tcv_helpers.deploy.serve",
        description=(
            "Serve a YOLO model exported to ONNX or OpenVINO (COURSE.md §5). The API key is "
            f"read from {API_KEY_ENV}."
        ),
    )
    parser.add_argument("--model", required=True, type=Path, help="The .onnx or .xml model.")
    parser.add_argument("--host", default="127.0.0.1", help="Interface to listen on.")
    parser.add_argument("--port", type=int, default=8000, help="TCP port.")
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help="Inference runtime.")
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads per inference (default: shared out)."
    )
    parser.add_argument("--max-concurrency", type=int, default=None, help="Requests run at once.")
    parser.add_argument(
        "--max-queue", type=int, default=DEFAULT_MAX_QUEUE, help="Requests that may wait."
    )
    parser.add_argument("--log-level", default="info", help="uvicorn log level.")
    parser.add_argument(
        "--reference",
        type=Path,
        default=None,
        help=f"Reference profile JSON for the drift alert (default: {REFERENCE_FILE} beside "
        "the model, if any).",
    )
    args = parser.parse_args(argv)
    try:
        detector = service_detector(
            args.model, backend=args.backend, threads=args.threads,
            max_concurrency=args.max_concurrency,
        )  # fmt: skip
        reference = load_reference(args.reference) if args.reference else None
    except (FileNotFoundError, ValueError, ImportError) as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    run_server(
        detector, host=args.host, port=args.port, max_concurrency=args.max_concurrency,
        max_queue=args.max_queue, log_level=args.log_level, reference=reference,
    )  # fmt: skip


if __name__ == "__main__":
    main()
