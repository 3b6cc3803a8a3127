"""Images in the core: safe decoding, perceptual hashes, and the one letterbox of the course.

Shared by scraping (is this response a real, new frame?), label QA (is this file an image, is
it a near-duplicate of another?), preparation (what the model sees), export calibration and the
service: :func:`letterbox` is the only resize-and-pad of the package, so a frame is turned into
the model's input the same way in training previews, INT8 calibration and serving.

Imports numpy and Pillow only (imagehash when a hash is asked for): the service imports this
module and its image has neither OpenCV nor torch.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

if TYPE_CHECKING:
    import imagehash

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
    import imagehash

    return imagehash.phash(image)


def is_near_duplicate(
    a: imagehash.ImageHash, b: imagehash.ImageHash, max_distance: int = NEAR_DUPLICATE_DISTANCE
) -> bool:
    """True when two perceptual hashes are at most ``max_distance`` bits apart."""
    return (a - b) <= max_distance


def is_blank(image: Image.Image, *, min_std: float = 4.0) -> bool:
    """True for a (nearly) uniform image, as "camera offline" placeholders often are."""
    small = np.asarray(image.convert("L").resize((64, 64)), dtype=float)
    return float(small.std()) < min_std


# --------------------------------------------------------------------------------------------
# The letterbox: what a YOLO model sees
# --------------------------------------------------------------------------------------------

#: Grey of the letterbox padding (Ultralytics' value).
PAD_VALUE = 114
#: Fixed-point scale of OpenCV's bilinear weights for 8-bit images (``INTER_RESIZE_COEF_SCALE``).
_COEF_SCALE = 2048


class Letterboxed(NamedTuple):
    """A letterboxed frame (unpacks as ``image, scale, pad``).

    Attributes:
        image: The ``(H', W', 3)`` uint8 array, channels in the order given.
        scale: The factor the frame was resized by (the same on both axes).
        pad: Grey added on the ``(left, top)``, in pixels.
    """

    image: np.ndarray
    scale: float
    pad: tuple[int, int]


def _taps(size_in: int, size_out: int, *, clamp_weights: bool) -> tuple[np.ndarray, ...]:
    """Source indices and fixed-point weights of a bilinear resize along one axis (OpenCV's).

    Sample positions and weights are computed in float32 as OpenCV computes them, then rounded to
    11-bit fixed point. Along x, OpenCV moves a sample outside the image onto the edge pixel with
    weight 1; along y it keeps the weights and repeats the edge row, which rounds differently.
    """
    scale = 1.0 / (size_out / size_in)
    position = ((np.arange(size_out, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    low = np.floor(position).astype(np.int64)
    frac = position - low.astype(np.float32)
    if clamp_weights:
        before, after = low < 0, low >= size_in - 1
        frac[before | after] = 0
        low[before] = 0
        low[after] = size_in - 1
    w0 = np.rint((np.float32(1) - frac) * np.float32(_COEF_SCALE)).astype(np.int32)
    w1 = np.rint(frac * np.float32(_COEF_SCALE)).astype(np.int32)
    return np.clip(low, 0, size_in - 1), np.clip(low + 1, 0, size_in - 1), w0, w1


def resize_linear(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize of a uint8 image, equal bit for bit to ``cv2.resize(..., INTER_LINEAR)``.

    OpenCV is what Ultralytics resizes with when it trains and predicts; this is its arithmetic in
    numpy (11-bit fixed-point weights, its rounding of the vertical pass, and its switch to a 2 x 2
    average for an exact halving), so the service gives its model the pixels training gave, with
    no OpenCV installed.

    Args:
        image: An ``(h, w, c)`` uint8 array.
        width: Output width in pixels.
        height: Output height in pixels.

    Returns:
        The ``(height, width, c)`` uint8 array.

    Raises:
        ValueError: If the image is not a non-empty ``(h, w, c)`` uint8 array or a size is below 1.
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError("resize_linear expects an (h, w, c) uint8 array.")
    if min(image.shape) < 1 or width < 1 or height < 1:
        raise ValueError(
            f"cannot resize an image of shape {image.shape} to {width} x {height} pixels."
        )
    rows_in, cols_in, channels = image.shape
    if (cols_in, rows_in) == (width, height):
        return image.copy()
    if (cols_in, rows_in) == (2 * width, 2 * height):  # OpenCV averages 2 x 2 blocks here
        rows = np.add(image[0::2], image[1::2], dtype=np.uint16)
        total = rows[:, 0::2] + rows[:, 1::2]
        total += 2
        total >>= 2
        return total.astype(np.uint8)
    x0, x1, a0, a1 = _taps(cols_in, width, clamp_weights=True)
    y0, y1, b0, b1 = _taps(rows_in, height, clamp_weights=False)
    lanes = np.arange(channels)
    left = (x0[:, None] * channels + lanes).ravel()
    right = (x1[:, None] * channels + lanes).ravel()
    a0, a1 = np.repeat(a0, channels), np.repeat(a1, channels)
    # Horizontal pass on the source rows the vertical pass reads, as OpenCV does.
    needed, where = np.unique(np.concatenate([y0, y1]), return_inverse=True)
    source = image.reshape(rows_in, cols_in * channels)[needed]
    rows = np.multiply(source[:, left], a0, dtype=np.int32)
    rows += np.multiply(source[:, right], a1, dtype=np.int32)
    rows >>= 4
    rows = rows.astype(np.int16)  # at most 255 * 2048 / 16
    # Vertical pass: ((b0 * (S0 >> 4)) >> 16) + ((b1 * (S1 >> 4)) >> 16) + 2) >> 2.
    out = np.multiply(rows[where[:height]], b0[:, None], dtype=np.int32)
    out >>= 16
    lower = np.multiply(rows[where[height:]], b1[:, None], dtype=np.int32)
    lower >>= 16
    out += lower
    out += 2
    out >>= 2
    return out.astype(np.uint8).reshape(height, width, channels)


def image_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 array from a PIL image (as RGB) or an array.

    Args:
        image: A PIL image, or an ``(H, W, 3)`` or ``(H, W)`` uint8 array (channel order kept;
            a grey array gets three equal channels).

    Returns:
        The ``(H, W, 3)`` uint8 array (the array itself when it already is one).

    Raises:
        TypeError: If ``image`` is neither a PIL image nor an array.
        ValueError: If the array is not uint8, or not ``(H, W, 3)`` or ``(H, W)``.
    """
    if isinstance(image, Image.Image):
        return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a PIL image or a numpy array, got {type(image).__name__}.")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image array, got dtype {image.dtype}.")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise ValueError(f"expected an (H, W, 3) or (H, W) image array, got shape {image.shape}.")
    return image


def letterbox_geometry(
    height: int, width: int, shape: tuple[int, int], *, auto: bool = False, stride: int = 32
) -> tuple[float, tuple[int, int], tuple[int, int, int, int]]:
    """Where a ``height`` x ``width`` frame lands in the letterbox (Ultralytics' ``LetterBox``).

    Args:
        height: Frame height in pixels.
        width: Frame width in pixels.
        shape: Target ``(height, width)``.
        auto: Pad only to a multiple of ``stride``.
        stride: The model's largest stride.

    Returns:
        ``(scale, (new_width, new_height), (top, bottom, left, right))``: the resize factor, the
        resized frame's size and the grey added on each side.
    """
    scale = min(shape[0] / height, shape[1] / width)
    new_w, new_h = max(round(width * scale), 1), max(round(height * scale), 1)
    dw, dh = shape[1] - new_w, shape[0] - new_h
    if auto:
        dw, dh = dw % stride, dh % stride
    dw, dh = dw / 2, dh / 2
    padding = (round(dh - 0.1), round(dh + 0.1), round(dw - 0.1), round(dw + 0.1))
    return scale, (new_w, new_h), padding


def letterbox(
    image: Image.Image | np.ndarray,
    size: int | tuple[int, int],
    *,
    auto: bool = False,
    stride: int = 32,
) -> Letterboxed:
    """Resizes keeping the aspect ratio and pads with grey, exactly as Ultralytics does.

    The one letterbox of the package: preparation shows it, export calibration and the service
    feed it to models. Pixel for pixel what ``ultralytics.data.augment.LetterBox`` (and so
    Ultralytics' predictor) makes of the frame: the same size, padding and bilinear resize
    (:func:`resize_linear`), without OpenCV. With ``auto=False`` (training, validation, a model
    exported at a fixed size) the result is ``size``; with ``auto=True`` (Ultralytics' ``rect``
    inference, models with a dynamic input) the padding only makes each side a multiple of
    ``stride``.

    Args:
        image: An RGB PIL image, or an ``(H, W, 3)`` or ``(H, W)`` uint8 array (an array's channel
            order is kept: BGR in, BGR out).
        size: The model's input: a square side, or ``(height, width)``; multiples of ``stride``.
        auto: Pad to the smallest multiple of ``stride`` instead of ``size``.
        stride: The model's largest stride.

    Returns:
        ``(image, scale, (left, top))`` (:class:`Letterboxed`): the letterboxed uint8 array, the
        factor the frame was resized by, and the grey added on the left and at the top.

    Raises:
        ValueError: If a side or ``stride`` is not a positive whole number, a side is not a
            multiple of ``stride``, or the array is not an ``(H, W, 3)`` uint8 image.
        TypeError: If ``image`` is neither a PIL image nor an array.

    Example:
        >>> boxed, scale, pad = letterbox(np.zeros((360, 640, 3), np.uint8), 320)
        >>> boxed.shape, scale, pad
        ((320, 320, 3), 0.5, (0, 70))
    """
    shape = (size, size) if isinstance(size, int) and not isinstance(size, bool) else size
    if not isinstance(shape, tuple | list) or len(shape) != 2:
        raise ValueError(f"size must be a whole number or (height, width), got {size!r}.")
    for name, value in (("size", shape[0]), ("size", shape[1]), ("stride", stride)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive whole number, got {value!r}.")
    if shape[0] % stride or shape[1] % stride:
        raise ValueError(f"size must be a multiple of stride {stride}, got {size!r}.")
    array = image_array(image)
    height, width = array.shape[:2]
    scale, (new_w, new_h), (top, bottom, left, right) = letterbox_geometry(
        height, width, (int(shape[0]), int(shape[1])), auto=auto, stride=stride
    )
    if (width, height) != (new_w, new_h):
        array = resize_linear(array, new_w, new_h)
    out = np.full((new_h + top + bottom, new_w + left + right, 3), PAD_VALUE, dtype=np.uint8)
    out[top : top + new_h, left : left + new_w] = array
    return Letterboxed(out, float(scale), (left, top))
