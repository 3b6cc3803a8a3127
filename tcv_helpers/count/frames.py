"""Frames in and out: a folder of images or a video read frame by frame, videos written whole.

:func:`source_info` checks a source and describes it; :func:`iter_frames` yields its frames;
:class:`VideoOut` writes an annotated video that appears only when complete; :func:`read_video`
reads one back; :func:`plot_frames` shows frames in a grid.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import supervision as sv
from matplotlib.figure import Figure

from tcv_helpers.data.labels import IMAGE_SUFFIXES
from tcv_helpers.io import replace_into_place

#: Video container -> the OpenCV codec (FourCC) written into it.
VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}


@dataclass(frozen=True)
class SourceInfo:
    """What a frame source holds.

    Attributes:
        path: The folder or video file.
        kind: ``folder`` or ``video``.
        frames: Number of frames (for a video: as its container reports it).
        fps: Frames per second of a video (None for a folder of images).
        size: ``(width, height)`` of the first frame.
    """

    path: Path
    kind: str
    frames: int
    fps: float | None
    size: tuple[int, int]


def folder_images(folder: Path) -> list[Path]:
    """The images of a folder (by suffix), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def source_info(source: str | os.PathLike) -> SourceInfo:
    """Checks a frame source (a folder of images or a video file) and describes it.

    Raises:
        FileNotFoundError: If the folder or file does not exist.
        ValueError: If the folder holds no images, or the file is not a readable video or has
            no frames.
    """
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"Frame source {path} does not exist.")
    if path.is_dir():
        images = folder_images(path)
        if not images:
            raise ValueError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
        first = cv2.imread(str(images[0]))
        if first is None:
            raise ValueError(f"{images[0]} is not a readable image.")
        return SourceInfo(path, "folder", len(images), None, (first.shape[1], first.shape[0]))
    capture = cv2.VideoCapture(str(path))
    try:
        ok, first = capture.read() if capture.isOpened() else (False, None)
        if not ok or first is None:
            raise ValueError(f"{path} is not a readable video, or it has no frames.")
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    return SourceInfo(
        path, "video", max(count, 1), fps if fps > 0 else None, (first.shape[1], first.shape[0])
    )


def iter_frames(
    source: str | os.PathLike, *, stride: int = 1, max_frames: int | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Yields ``(frame index, BGR frame)`` from a folder of images or a video file.

    Args:
        source: A folder of images (sorted by name) or a video file.
        stride: Use every ``stride``-th frame.
        max_frames: Stop after this many frames (None: all).

    Raises:
        FileNotFoundError: If the source does not exist.
        ValueError: If it holds no frames, an image is unreadable, or ``stride`` is below 1.
    """
    if stride < 1 or (max_frames is not None and max_frames < 1):
        raise ValueError(f"stride and max_frames must be at least 1, got {stride}, {max_frames}.")
    info = source_info(source)
    limit = math.inf if max_frames is None else max_frames
    if info.kind == "folder":
        for n, path in enumerate(folder_images(info.path)[::stride]):
            if n >= limit:
                return
            frame = cv2.imread(str(path))
            if frame is None:
                raise ValueError(f"{path} is not a readable image.")
            yield n * stride, frame
        return
    frames = sv.get_video_frames_generator(str(info.path), stride=stride)
    for n, frame in enumerate(frames):
        if n >= limit:
            return
        yield n * stride, frame


class VideoOut:
    """An OpenCV video written to a temporary file and renamed into place when complete.

    Args:
        path: The video to write: ``.mp4`` (mp4v) or ``.avi`` (MJPG).
        fps: Frames per second.
        size: ``(width, height)`` of every frame.

    Raises:
        ValueError: For another suffix.
        RuntimeError: If OpenCV cannot write that codec here.
    """

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        suffix = path.suffix.lower()
        if suffix not in VIDEO_CODECS:
            raise ValueError(f"Video {path}: use one of {', '.join(VIDEO_CODECS)}.")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
        os.close(fd)
        self.path, self.tmp = path, Path(tmp)
        fourcc = cv2.VideoWriter_fourcc(*VIDEO_CODECS[suffix])
        self.writer = cv2.VideoWriter(str(self.tmp), fourcc, fps, size)
        if not self.writer.isOpened():
            self.tmp.unlink(missing_ok=True)
            raise RuntimeError(f"OpenCV cannot write {suffix} video ({VIDEO_CODECS[suffix]}).")

    def write(self, frame: np.ndarray) -> None:
        """Appends a BGR frame of the video's size."""
        self.writer.write(frame)

    def close(self, keep: bool) -> None:
        """Finishes the file and moves it into place (``keep``), or deletes it."""
        self.writer.release()
        if keep:
            replace_into_place(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def read_video(
    path: str | os.PathLike, *, count: int = 4
) -> tuple[int, list[tuple[int, np.ndarray]]]:
    """Reads a video back: how many frames it has, and ``count`` of them (RGB), evenly spread.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If it is not a readable video.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist.")
    capture = cv2.VideoCapture(str(path))
    frames: list[np.ndarray] = []
    try:
        while capture.isOpened():
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        capture.release()
    if not frames:
        raise ValueError(f"{path} is not a readable video, or it has no frames.")
    picks = np.unique(np.linspace(0, len(frames) - 1, num=max(count, 1), dtype=int))
    return len(frames), [(int(i), cv2.cvtColor(frames[i], cv2.COLOR_BGR2RGB)) for i in picks]


def plot_frames(
    images: Sequence[np.ndarray],
    *,
    titles: Sequence[str] | None = None,
    cols: int = 2,
    width: float = 12.0,
) -> Figure:
    """RGB images in a grid.

    Raises:
        ValueError: If no image is given.
    """
    if not images:
        raise ValueError("plot_frames needs at least one image.")
    rows = -(-len(images) // cols)
    height, w = images[0].shape[:2]
    fig = Figure(figsize=(width, width / cols * height / w * rows + 0.4 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for k, ax in enumerate(axes):
        ax.set_axis_off()
        if k < len(images):
            ax.imshow(images[k])
            if titles:
                ax.set_title(titles[k], fontsize=9)
    fig.tight_layout()
    return fig
