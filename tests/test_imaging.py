"""Tests of tcv_helpers.imaging's letterbox: pixel for pixel OpenCV's resize and Ultralytics' pad."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from tcv_helpers.data.synth import render_frame
from tcv_helpers.imaging import (
    PAD_VALUE,
    Letterboxed,
    image_array,
    letterbox,
    letterbox_geometry,
    resize_linear,
)
from tests.conftest import ROOT


def _photo(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Random pixels smoothed like a photo (and left sharp for odd sizes: both must match)."""
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return cv2.GaussianBlur(image, (5, 5), 0) if min(height, width) >= 5 else image


def test_resize_linear_is_opencvs_inter_linear_bit_for_bit():
    rng = np.random.default_rng(0)
    sizes = [
        ((720, 1280), (640, 360)),  # an exact halving: OpenCV averages 2 x 2 blocks
        ((1080, 1920), (640, 360)),
        ((360, 640), (128, 72)),
        ((50, 50), (640, 640)),  # upscaling: the edge rows round as OpenCV rounds them
        ((203, 97), (61, 128)),
        ((1, 300), (128, 1)),
        ((300, 1), (1, 128)),
        ((2, 2), (1, 1)),
    ]
    sizes += [
        (
            tuple(int(v) for v in rng.integers(1, 700, 2)),
            tuple(int(v) for v in rng.integers(1, 700, 2)),
        )
        for _ in range(60)
    ]
    for (height, width), (out_w, out_h) in sizes:
        image = _photo(rng, height, width)
        expected = cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(resize_linear(image, out_w, out_h), expected)
    grey = rng.integers(0, 256, (90, 160, 1), dtype=np.uint8)
    np.testing.assert_array_equal(resize_linear(grey, 64, 36)[..., 0], cv2.resize(grey, (64, 36)))


@pytest.mark.parametrize(
    "shape", [(360, 640), (640, 360), (50, 50), (1, 300), (128, 128), (721, 1283)]
)
@pytest.mark.parametrize("size", [128, 640, (384, 640)])
@pytest.mark.parametrize("auto", [False, True])
def test_letterbox_is_ultralytics_letterbox(shape, size, auto):
    from ultralytics.data.augment import LetterBox

    image = _photo(np.random.default_rng(1), *shape)
    target = (size, size) if isinstance(size, int) else size
    expected = LetterBox(target, auto=auto, stride=32)(image=image)
    boxed = letterbox(image, size, auto=auto)
    np.testing.assert_array_equal(boxed.image, expected)
    params = LetterBox(target, auto=auto, stride=32).get_params({"img": image})
    assert boxed.scale == pytest.approx(params["ratio"][0])
    assert boxed.pad == (params["left"], params["top"])


def test_letterbox_needs_neither_opencv_nor_torch():
    code = (
        "import sys; sys.modules['cv2'] = None; import numpy as np; "
        "from tcv_helpers.imaging import letterbox; "
        "print(letterbox(np.zeros((360, 640, 3), np.uint8), 320).image.shape, "
        "[m for m in ('torch', 'ultralytics', 'imagehash') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "(320, 320, 3) []", out.stdout + out.stderr


@pytest.mark.parametrize(
    ("height", "width", "size", "auto", "shape", "scale", "pad"),
    [
        (360, 640, 320, False, (320, 320, 3), 0.5, (0, 70)),
        (640, 360, 320, False, (320, 320, 3), 0.5, (70, 0)),
        (100, 100, 64, False, (64, 64, 3), 0.64, (0, 0)),
        (50, 100, 128, False, (128, 128, 3), 1.28, (0, 32)),
        (360, 640, 640, True, (384, 640, 3), 1.0, (0, 12)),
        (240, 320, 640, True, (480, 640, 3), 2.0, (0, 0)),
        (720, 1280, (384, 640), False, (384, 640, 3), 0.5, (0, 12)),
    ],
)
def test_letterbox_shapes_scale_and_padding(height, width, size, auto, shape, scale, pad):
    image = np.full((height, width, 3), 200, np.uint8)
    out, got_scale, got_pad = letterbox(image, size, auto=auto)
    assert out.shape == shape and out.dtype == np.uint8
    assert got_scale == pytest.approx(scale) and got_pad == pad
    left, top = pad
    assert (out[:top] == PAD_VALUE).all() and (out[:, :left] == PAD_VALUE).all(), "grey padding"
    assert (out[top + 2 : shape[0] - top - 2, left + 2 : shape[1] - left - 2] == 200).all()
    assert letterbox_geometry(height, width, shape[:2])[0] == pytest.approx(scale)


def test_letterbox_accepts_pil_and_grey():
    frame = render_frame(seed=2, width=320, height=192).image
    from_pil = letterbox(frame, 256)
    from_array = letterbox(np.asarray(frame), 256)
    assert isinstance(from_pil, Letterboxed)
    assert np.array_equal(from_pil.image, from_array.image) and from_pil[1:] == from_array[1:]
    grey = letterbox(np.zeros((50, 80), np.uint8), 64).image
    assert grey.shape == (64, 64, 3)
    assert image_array(np.zeros((5, 4), np.uint8)).shape == (5, 4, 3)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: letterbox(np.zeros((10, 10, 3), np.uint8), 100), ValueError, "multiple"),
        (lambda: letterbox(np.zeros((10, 10, 3), np.uint8), (64, 100)), ValueError, "multiple"),
        (lambda: letterbox(np.zeros((10, 10, 3), np.uint8), 0), ValueError, "size"),
        (lambda: letterbox(np.zeros((10, 10, 3), np.uint8), (64,)), ValueError, "height, width"),
        (lambda: letterbox(np.zeros((10, 10, 3), np.uint8), 64, stride=0), ValueError, "stride"),
        (lambda: letterbox(np.zeros((10, 10, 3), np.float32), 64), ValueError, "uint8"),
        (lambda: letterbox(np.zeros((10, 10, 4), np.uint8), 64), ValueError, "shape"),
        (lambda: letterbox(np.zeros((0, 10, 3), np.uint8), 64), ValueError, "shape"),
        (lambda: letterbox("frame.jpg", 64), TypeError, "PIL image"),
        (lambda: resize_linear(np.zeros((4, 4), np.uint8), 2, 2), ValueError, "uint8 array"),
        (lambda: resize_linear(np.zeros((4, 4, 3), np.uint8), 0, 2), ValueError, "0 x 2"),
    ],
)
def test_letterbox_rejects_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()
