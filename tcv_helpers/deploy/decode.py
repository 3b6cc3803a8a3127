"""Images into the service (notebook 08): uploads decoded safely, any image made an RGB array.

:func:`decode_image` turns the bytes of an upload into the RGB array the detector letterboxes,
refusing anything damaged or too large with a :class:`BadImage` that carries the HTTP status the
service answers. It decodes every pixel, as OpenCV does when Ultralytics trains, so the service's
model sees what the trained model saw (``tests/test_inference.py`` checks it tensor for tensor).
:func:`to_rgb` accepts whatever :meth:`tcv_helpers.deploy.inference.Detector.detect` takes.

Imports numpy and Pillow only.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tcv_helpers.imaging import MAX_PIXELS

#: Image formats the service decodes (Pillow names); anything else is 415.
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP")
#: The EXIF tag holding a camera's orientation.
_ORIENTATION = 0x0112

# What Pillow raises on a damaged file, besides UnidentifiedImageError (a subclass of OSError).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)


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


def decode_image(data: bytes, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decodes image bytes to an RGB array, refusing anything damaged or too large.

    The size is read from the header before any pixel is decoded, so a small file that declares
    30,000 x 30,000 pixels is refused without allocating them. The EXIF orientation is applied,
    as OpenCV (and so Ultralytics) applies it.

    Args:
        data: JPEG, PNG, WebP or BMP bytes.
        max_pixels: Largest width x height accepted.

    Returns:
        The image as a ``(height, width, 3)`` uint8 RGB array.

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
            image.load()
            if image.getexif().get(_ORIENTATION, 1) != 1:
                image = ImageOps.exif_transpose(image)
            return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
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


def to_rgb(image: Any, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An RGB uint8 array from a BGR array, a PIL image, encoded bytes or an image file.

    Args:
        image: A BGR(A) or grey uint8 array (as OpenCV reads it, and as Ultralytics takes it), a
            PIL image, encoded image bytes, or an image file's path.
        max_pixels: Largest width x height accepted for bytes and files.

    Returns:
        A ``(height, width, 3)`` uint8 RGB array.

    Raises:
        BadImage: If bytes or a file are not a usable image (a file's message names it).
        FileNotFoundError: If the image file does not exist.
        ValueError: If an array is not uint8 with 1, 3 or 4 channels.
        TypeError: If ``image`` is none of these.
    """
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
