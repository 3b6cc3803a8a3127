"""Image bytes in, checked images out: type sniffing, safe decoding, perceptual hashes.

Shared by scraping (is this response a real, new frame?) and label QA (is this file an image,
is it a near-duplicate of another?).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import imagehash
from PIL import Image, UnidentifiedImageError

#: Largest image accepted, in pixels (a camera frame is at most a few megapixels; more is a bomb).
MAX_PIXELS = 40_000_000
#: Hamming distance between 64-bit perceptual hashes at or below which two frames are the same.
NEAR_DUPLICATE_DISTANCE = 6

_SIGNATURES = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
)
SUFFIX_TYPES = {
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".png": "png",
    ".gif": "gif",
    ".bmp": "bmp",
    ".webp": "webp",
}


class ImageError(ValueError):
    """Bytes that are not a usable image; the message says why."""


def sniff_type(data: bytes) -> str | None:
    """The image type from the first bytes (``jpeg``, ``png``, ``gif``, ``bmp``, ``webp``), or None."""
    for signature, kind in _SIGNATURES:
        if data.startswith(signature):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def decode_image(data: bytes, *, max_pixels: int = MAX_PIXELS, min_side: int = 16) -> Image.Image:
    """Decodes image bytes fully, refusing anything broken, truncated, tiny or huge.

    The size is checked from the header before any pixel is decoded, so a small file that
    declares 30,000 x 30,000 pixels is refused without allocating them.

    Args:
        data: The raw bytes.
        max_pixels: Largest width x height accepted.
        min_side: Smallest width or height accepted.

    Returns:
        The decoded RGB image.

    Raises:
        ImageError: With the reason: empty, not an image, too large, too small, truncated.
    """
    if not data:
        raise ImageError("empty (0 bytes)")
    kind = sniff_type(data)
    if kind is None:
        start = data[:15].decode("latin-1", "replace").strip().lower()
        hint = (
            " (looks like HTML)" if start.startswith(("<!doctype", "<html", "<?xml", "<")) else ""
        )
        raise ImageError(f"not an image{hint}")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
            if width * height > max_pixels:
                raise ImageError(f"{width}x{height} pixels is more than the {max_pixels:,} allowed")
            if min(width, height) < min_side:
                raise ImageError(f"{width}x{height} pixels is too small")
            probe.load()
            return probe.convert("RGB")
    except ImageError:
        raise
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
    ) as exc:
        raise ImageError(f"cannot be decoded as {kind} ({exc})") from None


def read_image(path: str | os.PathLike, **limits: int) -> Image.Image:
    """Reads and fully decodes an image file (see :func:`decode_image`); errors name the file."""
    file = Path(path)
    try:
        return decode_image(file.read_bytes(), **limits)
    except ImageError as exc:
        raise ImageError(f"{file}: {exc}") from None


def perceptual_hash(image: Image.Image) -> imagehash.ImageHash:
    """A 64-bit perceptual hash (pHash): near-identical frames get hashes a few bits apart."""
    return imagehash.phash(image)


def is_near_duplicate(
    a: imagehash.ImageHash, b: imagehash.ImageHash, max_distance: int = NEAR_DUPLICATE_DISTANCE
) -> bool:
    """True when two perceptual hashes are at most ``max_distance`` bits apart."""
    return (a - b) <= max_distance


def is_blank(image: Image.Image, *, min_std: float = 4.0) -> bool:
    """True for a (nearly) uniform image, as "camera offline" placeholders often are."""
    import numpy as np

    small = np.asarray(image.convert("L").resize((64, 64)), dtype=float)
    return float(small.std()) < min_std
