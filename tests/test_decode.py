"""Tests of tcv_helpers.deploy.decode: hostile bytes are a BadImage with its status, never more."""

from __future__ import annotations

import io
import resource

import cv2
import numpy as np
import pytest
from PIL import Image

from tcv_helpers.data.synth import render_frame
from tcv_helpers.deploy.decode import BadImage, decode_image, to_rgb
from tests.service_model import png_declaring


def _encoded(image: np.ndarray, kind: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=kind, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return np.asarray(render_frame(seed=5).image)


def test_decoding_refuses_bombs_before_allocating():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for side in (30_000, 7_000):  # over Pillow's own bomb limit, and over only ours
        bomb = png_declaring(side, side)
        assert len(bomb) < 200
        with pytest.raises(BadImage, match="pixels") as caught:
            decode_image(bomb)
        assert caught.value.status == 413
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) / 1024
    assert grown_mb < 100, f"decoding a bomb header allocated {grown_mb:.0f} MB"
    with pytest.raises(BadImage, match="truncated") as caught:
        decode_image(png_declaring(64, 64))  # declares more pixels than its data holds
    assert caught.value.status == 422


def test_decoding_damaged_files_raises_only_bad_image(frame):
    rng = np.random.default_rng(2)
    for good in (_encoded(frame, "JPEG", quality=90), _encoded(frame[:120, :160], "PNG")):
        assert decode_image(good).ndim == 3
        for trial in range(150):
            data = bytearray(good)
            if trial % 3 == 0:
                data = data[: int(rng.integers(1, len(data)))]
            else:
                for at in rng.integers(0, min(len(data), 600), size=int(rng.integers(1, 8))):
                    data[at] = int(rng.integers(0, 256))
            try:
                decode_image(bytes(data))
            except BadImage as exc:
                assert exc.status in (413, 415, 422)


def test_decoding_is_what_opencv_reads(frame, tmp_path):
    """Every pixel, as cv2.imread gives it to Ultralytics (RGB here, BGR there)."""
    for kind in ("JPEG", "PNG"):
        path = tmp_path / f"frame.{kind.lower()}"
        path.write_bytes(_encoded(frame, kind))
        np.testing.assert_array_equal(
            decode_image(path.read_bytes()), cv2.imread(str(path))[..., ::-1]
        )


def test_exif_orientation_and_truncation(frame):
    data = _encoded(frame, "JPEG", quality=95)
    with pytest.raises(BadImage, match="truncated") as caught:
        decode_image(data[: len(data) // 2])  # an error still, not a grey-filled frame
    assert caught.value.status == 422
    image = Image.fromarray(frame)
    exif = image.getexif()
    exif[0x0112] = 6  # turned 90 degrees
    turned = decode_image(_encoded(frame, "JPEG", exif=exif))
    assert turned.shape == (frame.shape[1], frame.shape[0], 3)


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (b"", 422, "empty"),
        (b"hello", 415, "not an image"),
        (b"GIF89a" + b"\x00" * 40, 415, "not an image"),  # a format the service does not take
    ],
)
def test_bad_bytes_have_their_status(data, status, words):
    with pytest.raises(BadImage, match=words) as caught:
        decode_image(data)
    assert caught.value.status == status


def test_to_rgb_takes_what_the_detector_takes(frame, tmp_path):
    bgr = np.ascontiguousarray(frame[..., ::-1])
    np.testing.assert_array_equal(to_rgb(bgr), frame)
    np.testing.assert_array_equal(to_rgb(Image.fromarray(frame)), frame)
    path = tmp_path / "frame.png"
    path.write_bytes(_encoded(frame, "PNG"))
    for source in (path, str(path), path.read_bytes()):
        np.testing.assert_array_equal(to_rgb(source), frame)
    assert to_rgb(frame[..., 0]).shape == frame.shape
    assert to_rgb(np.dstack([bgr, np.full(frame.shape[:2], 255, np.uint8)])).shape == frame.shape
    (tmp_path / "junk.jpg").write_bytes(b"junk")
    with pytest.raises(BadImage, match=r"junk\.jpg"):
        to_rgb(tmp_path / "junk.jpg")
    with pytest.raises(FileNotFoundError, match=r"missing\.jpg"):
        to_rgb(tmp_path / "missing.jpg")
    with pytest.raises(ValueError, match="uint8"):
        to_rgb(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(TypeError, match="Cannot read an image"):
        to_rgb(42)
