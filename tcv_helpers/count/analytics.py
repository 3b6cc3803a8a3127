"""Counting traffic (notebook 10): tracking, line and zone counts, congestion, privacy, a video.

The application the course builds towards. For each frame of a fixed camera:

1. a **detector** (any callable ``(frame, index) -> sv.Detections``) finds the vehicles: the
   ground-truth boxes of a synthetic sequence (:func:`ground_truth_detector`, to test the rest
   alone), the course's trained YOLO model (:func:`yolo_detector`), or, without any model,
   background subtraction (:func:`motion_detector`);
2. **privacy**: people (class ``person``) and, on request, the lower part of every vehicle box
   (where plates are) are blurred before anything is drawn or stored (:func:`blur_privacy`);
3. **ByteTrack** (Roboflow's ``trackers`` package, the tracker supervision hands tracking to)
   gives each vehicle an id across frames;
4. **sv.LineZone** counts the tracks that cross a line, per direction, and **sv.PolygonZone**
   tells which vehicles are in a zone; their speed (pixels per second) and the zone's occupancy
   give a **congestion** level (:class:`CongestionRule`);
5. supervision's annotators draw boxes, ids, traces, the line with its counts and the zone, and
   the frames go into a video, written atomically.

Two details make the counts match the truth (tests/test_analytics.py checks within 5%):
ByteTrack names a track only from its second frame, so the runner looks one frame ahead and
gives the first box the new id; and a vehicle hidden for a few frames keeps its last place
(and side of the line) for as long as the tracker remembers it, so a crossing made out of sight
still counts when the vehicle reappears.

Example::

    seq = read_sequence(data_root / "sequences" / "cam-00-0")
    result = count_traffic(seq.frames_dir, ground_truth_detector(seq.tracks), line=seq.line,
                           fps=seq.fps, video=cfg.workspace.reports / "counting.mp4")
    result.counts, result.per_interval(60)
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import supervision as sv
from matplotlib.figure import Figure

from tcv_helpers.data.labels import IMAGE_SUFFIXES
from tcv_helpers.project import PROJECT_CLASSES

#: The two directions of a counting line: "in" is traffic crossing towards ``CountingLine.inward``.
DIRECTIONS = ("in", "out")
#: Classes that are counted and tracked (people are only blurred).
VEHICLE_CLASSES = ("car", "truck", "bus", "motorcycle", "bicycle")
#: Image directions a counting line's "in" traffic can cross towards.
INWARD = {"down": (0.0, 1.0), "up": (0.0, -1.0), "right": (1.0, 0.0), "left": (-1.0, 0.0)}
#: ByteTrack settings used unless the caller overrides them (``trackers.ByteTrackTracker``).
#: ``lost_track_buffer`` is in frames at 30 fps (the tracker rescales it to the real rate).
TRACKER_DEFAULTS: dict[str, Any] = {
    "lost_track_buffer": 30,
    "track_activation_threshold": 0.5,
    "high_conf_det_threshold": 0.5,
    "minimum_consecutive_frames": 2,
    "minimum_iou_threshold": 0.1,
}
#: Columns of a sequence's ``tracks.csv``.
TRACK_COLUMNS = ("frame", "track_id", "class_name", "direction", "x1", "y1", "x2", "y2")
#: Share of a vehicle box's height, from the bottom, blurred to hide a plate.
PLATE_SHARE = 0.4
#: Seconds over which a vehicle's speed is measured.
SPEED_WINDOW_S = 0.5
VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}
LEVELS = ("free", "heavy", "congested")

Detector = Callable[[np.ndarray, int], sv.Detections]


# --------------------------------------------------------------------------------------------
# The counting line and zone
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CountingLine:
    """A counting line in pixels and which way "in" traffic crosses it.

    Attributes:
        start: ``(x, y)`` of one end.
        end: ``(x, y)`` of the other end.
        inward: Image direction of "in" traffic: ``down`` (towards a camera that looks along
            the road), ``up``, ``left`` or ``right``.
    """

    start: tuple[float, float]
    end: tuple[float, float]
    inward: str = "down"

    def __post_init__(self) -> None:
        if self.inward not in INWARD:
            raise ValueError(f"inward must be one of {', '.join(INWARD)}, got {self.inward!r}.")
        points = np.array([self.start, self.end], dtype=float)
        if points.shape != (2, 2) or not np.isfinite(points).all():
            raise ValueError(f"A counting line needs two finite (x, y) points, got {points!r}.")
        if np.hypot(*(points[1] - points[0])) < 1:
            raise ValueError(f"The counting line {self.start} -> {self.end} has no length.")
        dx, dy = points[1] - points[0]
        ix, iy = INWARD[self.inward]
        if abs(dx * iy - dy * ix) < 1e-6 * np.hypot(dx, dy):
            raise ValueError(
                f"A line along the {self.inward} direction cannot be crossed that way."
            )

    def line_zone(self, *, crossing_frames: int = 1) -> sv.LineZone:
        """An ``sv.LineZone`` whose ``in_count`` is this line's "in" traffic.

        Args:
            crossing_frames: Frames a vehicle must be seen on the other side before it counts
                (more than 1 ignores boxes that jitter across the line).

        supervision counts "in" when an anchor moves to the side where the cross product of the
        line vector and the point is negative; the ends are ordered so that side is ``inward``.
        """
        (x1, y1), (x2, y2) = self.start, self.end
        ix, iy = INWARD[self.inward]
        if (x2 - x1) * iy - (y2 - y1) * ix > 0:
            (x1, y1), (x2, y2) = (x2, y2), (x1, y1)
        return sv.LineZone(
            start=sv.Point(x1, y1),
            end=sv.Point(x2, y2),
            triggering_anchors=(sv.Position.BOTTOM_CENTER,),
            minimum_crossing_threshold=crossing_frames,
        )

    def band(self, *, before: float, after: float) -> np.ndarray:
        """A zone around the line: the line moved ``before`` pixels against the "in" traffic
        and ``after`` pixels with it, as an ``(4, 2)`` int polygon for ``sv.PolygonZone``."""
        a, b = np.array(self.start, float), np.array(self.end, float)
        normal = np.array([-(b - a)[1], (b - a)[0]]) / np.hypot(*(b - a))
        if normal @ np.array(INWARD[self.inward]) < 0:
            normal = -normal
        return np.round(
            [a - before * normal, b - before * normal, b + after * normal, a + after * normal]
        ).astype(int)


# --------------------------------------------------------------------------------------------
# Synthetic sequences: frames, ground-truth tracks and counts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticSequence:
    """A synthetic sequence written by :func:`tcv_helpers.data.synth.generate_sequence`.

    Attributes:
        folder: The sequence folder.
        frames_dir: Its frames (``000000.jpg`` ...).
        fps: Frames per second.
        size: ``(width, height)``.
        line: The counting line ("in" = towards the camera, down the image).
        counts: True crossings per direction.
        tracks: The ground-truth boxes (:func:`read_tracks`).
        camera: The camera's name.
    """

    folder: Path
    frames_dir: Path
    fps: float
    size: tuple[int, int]
    line: CountingLine
    counts: dict[str, int]
    tracks: pd.DataFrame
    camera: str


def read_tracks(path: str | os.PathLike) -> pd.DataFrame:
    """Reads a sequence's ``tracks.csv`` (frame, track_id, class_name, direction, x1..y2).

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: Naming the file, line and field, on a missing column, a value that is not a
            number, an unknown class or direction, or a box with no area.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist.")
    rows: list[tuple] = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in TRACK_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: line 1: missing column(s) {', '.join(missing)}.")
        for row in reader:
            where = f"{path}: line {reader.line_num}"
            values = {}
            for name in ("frame", "track_id"):
                try:
                    values[name] = int(row[name])
                except (TypeError, ValueError):
                    raise ValueError(
                        f"{where}: {name} {row[name]!r} is not a whole number."
                    ) from None
                if values[name] < 0:
                    raise ValueError(f"{where}: {name} is negative ({values[name]}).")
            for name in ("x1", "y1", "x2", "y2"):
                try:
                    values[name] = float(row[name])
                except (TypeError, ValueError):
                    raise ValueError(f"{where}: {name} {row[name]!r} is not a number.") from None
                if not math.isfinite(values[name]):
                    raise ValueError(f"{where}: {name} is not finite.")
            if row["class_name"] not in PROJECT_CLASSES:
                raise ValueError(
                    f"{where}: class_name {row['class_name']!r} is not one of "
                    f"{', '.join(PROJECT_CLASSES)}."
                )
            if row["direction"] not in DIRECTIONS:
                raise ValueError(f"{where}: direction {row['direction']!r} is not in or out.")
            if values["x2"] <= values["x1"] or values["y2"] <= values["y1"]:
                raise ValueError(f"{where}: the box x1..x2, y1..y2 has no area.")
            rows.append(
                (
                    values["frame"],
                    values["track_id"],
                    row["class_name"],
                    row["direction"],
                    *(values[k] for k in ("x1", "y1", "x2", "y2")),
                )
            )
    return pd.DataFrame(rows, columns=list(TRACK_COLUMNS))


def read_sequence(folder: str | os.PathLike) -> SyntheticSequence:
    """Reads a synthetic sequence folder: ``sequence.json``, ``tracks.csv`` and ``frames/``.

    Raises:
        FileNotFoundError: If the folder, its frames or one of its files is missing.
        ValueError: Naming the file and field when ``sequence.json`` or ``tracks.csv`` is malformed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Sequence folder {folder} does not exist.")
    meta_path = folder / "sequence.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} does not exist: is {folder} a sequence folder?")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{meta_path}: line {exc.lineno}: not valid JSON ({exc.msg}).") from None
    try:
        fps = float(meta["fps"])
        width, height = (int(v) for v in meta["size"])
        start, end = ((float(x), float(y)) for x, y in meta["line"])
        counts = {d: int(meta["counts"][d]) for d in DIRECTIONS}
    except KeyError as exc:
        raise ValueError(f"{meta_path}: missing field {exc.args[0]!r}.") from None
    except (TypeError, ValueError):
        raise ValueError(
            f"{meta_path}: fps, size, line or counts has the wrong form "
            "(fps: number, size: [w, h], line: [[x, y], [x, y]], counts: {in: n, out: n})."
        ) from None
    if fps <= 0:
        raise ValueError(f"{meta_path}: fps must be positive, got {fps}.")
    frames_dir = folder / "frames"
    if not frames_dir.is_dir():
        raise FileNotFoundError(f"{frames_dir} does not exist.")
    return SyntheticSequence(
        folder=folder,
        frames_dir=frames_dir,
        fps=fps,
        size=(width, height),
        line=CountingLine(start, end, inward="down"),
        counts=counts,
        tracks=read_tracks(folder / "tracks.csv"),
        camera=str(meta.get("camera_name", folder.name)),
    )


def ensure_sequence(
    parent: str | os.PathLike,
    *,
    camera_index: int,
    seed: int = 0,
    seconds: float = 60.0,
    fps: float = 10.0,
    index: int = 0,
) -> tuple[SyntheticSequence, str]:
    """A synthetic sequence of one fixed camera, generated once (``generate_sequence``).

    Args:
        parent: Where sequences live (``cfg.workspace.data / "sequences"``).
        camera_index: Which camera of the synthetic dataset ``seed``.
        seed: The dataset's seed.
        seconds: Length of the sequence.
        fps: Frames per second.
        index: Sequence number (varies the traffic).

    Returns:
        The sequence and one sentence saying whether it was made now or earlier.

    Raises:
        ValueError: If ``seconds`` or ``fps`` is not positive.
    """
    from tcv_helpers.data.synth import generate_sequence, make_camera

    if seconds <= 0 or fps <= 0:
        raise ValueError(f"seconds and fps must be positive, got {seconds}, {fps}.")
    frames = max(1, round(seconds * fps))
    root = Path(parent) / f"seed-{seed}"
    folder = root / f"{make_camera(camera_index, seed=seed).camera_id}-{index}"
    try:
        sequence = read_sequence(folder)
        if len(_folder_images(sequence.frames_dir)) == frames and sequence.fps == fps:
            return sequence, f"Using the sequence generated earlier: {folder}."
    except (FileNotFoundError, ValueError):
        pass  # missing or unreadable: generated below
    if folder.exists():  # generated earlier with other settings: frames would be left over
        shutil.rmtree(folder)
    started = time.perf_counter()
    generate_sequence(
        root, camera_index=camera_index, seed=seed, index=index, frames=frames, fps=fps
    )
    sequence = read_sequence(folder)
    return sequence, (
        f"Generated a {seconds:g} s sequence of {sequence.camera} ({frames} frames at {fps:g} fps, "
        f"{time.perf_counter() - started:.0f} s): {folder}."
    )


@dataclass(frozen=True)
class Scene:
    """Where to count on a real camera: its line, zone and where the road is.

    Attributes:
        line: The counting line.
        zone: The occupancy zone.
        roi: The road (for the motion detector: trees in the wind are not traffic).
        stride: Frames to step (a 60 fps video needs no more than 30).
        crossing_frames: Frames beyond the line before a crossing counts.
        tracker: ByteTrack settings for this camera's detections (see :data:`TRACKER_DEFAULTS`).
        note: What the camera shows.
    """

    line: CountingLine
    zone: np.ndarray
    roi: np.ndarray
    stride: int = 1
    crossing_frames: int = 2
    tracker: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""


#: Counting set-ups of the real sample videos (``$TCV_SAMPLE_DATA/videos``), in their pixels.
SAMPLE_SCENES: dict[str, Scene] = {
    "highway-cctv-b.avi": Scene(
        line=CountingLine((60, 130), (268, 130), inward="down"),
        zone=np.array([(60, 80), (268, 80), (268, 180), (60, 180)]),
        roi=np.array([(180, 0), (276, 0), (262, 240), (0, 240), (0, 200)]),
        stride=2,
        crossing_frames=2,
        # motion blobs have a low confidence (their solidity): let them start tracks
        tracker={"track_activation_threshold": 0.3, "high_conf_det_threshold": 0.3},
        note="a fixed camera above one carriageway; all traffic drives towards it (in)",
    ),
}


# --------------------------------------------------------------------------------------------
# Frame sources
# --------------------------------------------------------------------------------------------


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


def _folder_images(folder: Path) -> list[Path]:
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
        images = _folder_images(path)
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
        for n, path in enumerate(_folder_images(info.path)[::stride]):
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


# --------------------------------------------------------------------------------------------
# Detectors: (frame, index) -> sv.Detections with class_id in PROJECT_CLASSES
# --------------------------------------------------------------------------------------------


def _detections(
    xyxy: np.ndarray, class_names: Sequence[str], confidence: np.ndarray
) -> sv.Detections:
    names = np.asarray(class_names, dtype=object).astype(str)
    return sv.Detections(
        xyxy=np.asarray(xyxy, dtype=np.float32).reshape(-1, 4),
        confidence=np.asarray(confidence, dtype=np.float32),
        class_id=np.array([PROJECT_CLASSES.index(n) for n in names], dtype=np.int64),
        data={"class_name": names},
    )


def _empty() -> sv.Detections:
    return _detections(np.zeros((0, 4)), [], np.zeros(0))


def ground_truth_detector(tracks: pd.DataFrame) -> Detector:
    """A detector that returns a synthetic sequence's true boxes (confidence 1) for each frame.

    It tests tracking and counting alone: with perfect boxes, every counting error is theirs.
    The true track ids are not handed on; ByteTrack has to find them.

    Args:
        tracks: The table from :func:`read_tracks`.
    """
    table = {
        int(frame): _detections(
            rows[["x1", "y1", "x2", "y2"]].to_numpy(),
            rows["class_name"].tolist(),
            np.ones(len(rows)),
        )
        for frame, rows in tracks.groupby("frame")
    }

    def detect(frame: np.ndarray, index: int) -> sv.Detections:
        return table.get(index, _empty())

    return detect


def yolo_detector(
    model: str | os.PathLike | Any,
    *,
    imgsz: int,
    conf: float = 0.25,
    iou: float = 0.5,
    device: str | None = "cpu",
) -> Detector:
    """A detector from a YOLO model: the course's trained one, or a COCO one such as ``yolo11n.pt``.

    Class names are matched to the project's taxonomy by name (COCO's ``car``, ``truck``,
    ``bus``, ``motorcycle``, ``bicycle`` and ``person`` are the project's); other classes are
    dropped.

    Args:
        model: ``.pt`` weights or an ``ultralytics.YOLO`` object.
        imgsz: Inference size (the size the model was trained at).
        conf: Keep detections at least this confident.
        iou: NMS IoU threshold.
        device: ``"cpu"``, ``"0"`` ... or None (Ultralytics' choice: a GPU when there is one).

    Raises:
        FileNotFoundError: If the weights do not exist.
        ValueError: If the model knows none of the project's classes.
    """
    from tcv_helpers.model.predict import load_yolo, predict_yolo

    yolo = load_yolo(model)
    names = {int(k): str(v) for k, v in dict(yolo.names).items()}
    keep = {k: v for k, v in names.items() if v in PROJECT_CLASSES}
    if not keep:
        raise ValueError(
            f"The model's classes ({', '.join(names.values())}) include none of "
            f"{', '.join(PROJECT_CLASSES)}."
        )

    def detect(frame: np.ndarray, index: int) -> sv.Detections:
        found = predict_yolo(yolo, [frame], imgsz=imgsz, conf=conf, iou=iou, device=device)[0]
        ids = found.class_id if found.class_id is not None else np.zeros(len(found), int)
        mask = np.isin(ids, list(keep))
        return _detections(
            found.xyxy[mask], [keep[int(i)] for i in ids[mask]], found.confidence[mask]
        )

    return detect


def motion_detector(
    source: str | os.PathLike,
    *,
    roi: np.ndarray | None = None,
    stride: int = 1,
    max_frames: int | None = None,
    history: int = 200,
    min_area: float = 150,
    warmup: int = 10,
) -> Detector:
    """A detector without a model: background subtraction (MOG2) on a fixed camera.

    It reads the source once ahead (:func:`tcv_helpers.data.prep.propose_by_motion`: MOG2, an
    opening and a closing, contours of blobs of at least ``min_area`` pixels) and returns the
    blobs of the frame asked for, all as class ``car``. It sees only what moves, merges vehicles
    that touch, and cannot tell a car from a person: the offline fallback for real video, where
    a pretrained COCO model (``yolo11n.pt``) is what you would use with internet.

    Args:
        source: The same folder or video that :func:`count_traffic` reads.
        roi: Where to look: an ``(N, 2)`` polygon in pixels or an ``(H, W)`` boolean mask.
        stride: As in :func:`count_traffic` (the background model sees the same frames).
        max_frames: As in :func:`count_traffic`.
        history: Frames the background model remembers.
        min_area: Smallest blob in pixels.
        warmup: First frames used only to learn the background.

    Raises:
        FileNotFoundError: If the source does not exist.
        ValueError: On an empty source or bad settings (see ``propose_by_motion``).
    """
    from tcv_helpers.data.prep import propose_by_motion

    info = source_info(source)
    mask = None
    if roi is not None:
        roi = np.asarray(roi)
        if roi.ndim == 2 and roi.shape[1] == 2 and roi.dtype != bool:
            mask = sv.polygon_to_mask(roi.astype(int), info.size).astype(bool)
        else:
            mask = roi.astype(bool)
    indices: list[int] = []

    def frames() -> Iterator[np.ndarray]:
        for index, frame in iter_frames(source, stride=stride, max_frames=max_frames):
            indices.append(index)
            yield frame

    found = propose_by_motion(frames(), history=history, min_area=min_area, warmup=warmup, roi=mask)
    table = {
        index: _detections(d.xyxy, ["car"] * len(d), d.confidence)
        for index, d in zip(indices, found, strict=True)
    }

    def detect(frame: np.ndarray, index: int) -> sv.Detections:
        return table.get(index, _empty())

    return detect


# --------------------------------------------------------------------------------------------
# Privacy
# --------------------------------------------------------------------------------------------


def _class_names(detections: sv.Detections) -> np.ndarray:
    if "class_name" in detections.data:
        return np.asarray(detections.data["class_name"]).astype(str)
    ids = detections.class_id if detections.class_id is not None else np.zeros(len(detections), int)
    return np.array([PROJECT_CLASSES[i] if 0 <= i < len(PROJECT_CLASSES) else "" for i in ids])


def blur_privacy(
    frame: np.ndarray, detections: sv.Detections, *, people: bool = True, plates: bool = False
) -> np.ndarray:
    """Blurs people and, on request, where vehicles' plates are, in a copy of the frame.

    People are the boxes of class ``person``. Plates need a plate detector (a model the course
    does not ship), so ``plates=True`` blurs the lower :data:`PLATE_SHARE` of every vehicle box,
    where front and rear plates sit on a camera that looks along the road: a cover-all, not a
    plate finder. The blur kernel grows with each box so that a large face is not left legible.

    Args:
        frame: A BGR (or RGB) frame.
        detections: All detections of the frame (not only the tracked ones).
        people: Blur boxes of class ``person``.
        plates: Blur the lower part of vehicle boxes.

    Returns:
        The blurred copy (the input is not changed).
    """
    out = frame.copy()
    names = _class_names(detections)
    boxes = []
    for box, name in zip(detections.xyxy, names, strict=True):
        x1, y1, x2, y2 = (float(v) for v in box)
        if people and name == "person":
            boxes.append((x1, y1, x2, y2))
        elif plates and name in VEHICLE_CLASSES:
            boxes.append((x1, y2 - PLATE_SHARE * (y2 - y1), x2, y2))
    for x1, y1, x2, y2 in boxes:
        region = sv.Detections(xyxy=np.array([[x1, y1, x2, y2]], dtype=np.float32))
        kernel = max(9, int(max(x2 - x1, y2 - y1) / 3))
        out = sv.BlurAnnotator(kernel_size=kernel).annotate(out, region)
    return out


# --------------------------------------------------------------------------------------------
# Congestion
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CongestionRule:
    """How zone occupancy and speed become a level: free, heavy or congested.

    Per time window: *occupancy* is the mean share of the zone's area covered by vehicle boxes;
    *speed* the mean speed (pixels per second) of the tracked vehicles in the zone. A window is

    - **congested** when occupancy is at least ``congested_occupancy`` and the speed is below
      ``slow_share`` of the free-flow speed (a full, slow zone: a queue);
    - **heavy** when occupancy is at least ``heavy_occupancy``, or vehicles are present and slow;
    - **free** otherwise.

    Pixels per second depend on the camera, so the free-flow speed is measured: the 85th
    percentile of the per-frame speeds of the whole run (the traffic engineer's free-flow
    speed), unless ``free_flow_speed`` is given.

    Attributes:
        heavy_occupancy: Share of the zone covered from which traffic is heavy.
        congested_occupancy: Share from which a slow zone is congested.
        slow_share: Slower than this share of the free-flow speed is slow.
        free_flow_speed: Free-flow speed in pixels per second (None: measured).
        window_s: Seconds per window.
    """

    heavy_occupancy: float = 0.15
    congested_occupancy: float = 0.3
    slow_share: float = 0.5
    free_flow_speed: float | None = None
    window_s: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.heavy_occupancy <= self.congested_occupancy <= 1:
            raise ValueError("need 0 < heavy_occupancy <= congested_occupancy <= 1.")
        if not 0 < self.slow_share < 1 or self.window_s <= 0:
            raise ValueError("slow_share must be in (0, 1) and window_s positive.")
        if self.free_flow_speed is not None and self.free_flow_speed <= 0:
            raise ValueError("free_flow_speed must be positive.")

    def level(self, occupancy: float, speed: float, free_flow: float) -> str:
        """The level of one window (``speed`` is NaN when no vehicle was in the zone)."""
        slow = bool(np.isfinite(speed) and speed < self.slow_share * free_flow)
        if occupancy >= self.congested_occupancy and slow:
            return "congested"
        if occupancy >= self.heavy_occupancy or slow:
            return "heavy"
        return "free"


# --------------------------------------------------------------------------------------------
# The result
# --------------------------------------------------------------------------------------------


@dataclass
class CountResult:
    """What :func:`count_traffic` measured.

    Attributes:
        counts: Crossings per direction (``{"in": n, "out": m}``).
        crossings: One row per crossing: frame, time_s, track_id, class_name, direction.
        timeline: One row per processed frame: frame, time_s, vehicles (tracked), in_zone,
            occupancy (share of the zone covered), speed (mean px/s of the vehicles in the zone).
        fps: Frames per second of the source.
        frames: Frames processed.
        seconds: Time covered by the source (frames read x stride / fps).
        size: ``(width, height)``.
        line: The counting line.
        zone: The zone polygon (None: no zone).
        video: The annotated video (None: none written).
        samples: A few annotated frames (RGB), privacy blur applied: ``(frame index, image)``.
        elapsed_s: Processing time in seconds.
    """

    counts: dict[str, int]
    crossings: pd.DataFrame
    timeline: pd.DataFrame
    fps: float
    frames: int
    seconds: float
    size: tuple[int, int]
    line: CountingLine
    zone: np.ndarray | None = None
    video: Path | None = None
    samples: list[tuple[int, np.ndarray]] = field(default_factory=list)
    elapsed_s: float = 0.0

    def per_interval(self, seconds: float = 60.0) -> pd.DataFrame:
        """Crossings per time interval and direction (every interval, empty ones too).

        Args:
            seconds: Interval length (60: counts per minute).

        Returns:
            A frame indexed by the interval's start in seconds, with columns ``in``, ``out``,
            ``total`` and ``per_minute`` (the total as a rate per minute).
        """
        if seconds <= 0:
            raise ValueError(f"seconds must be positive, got {seconds}.")
        bins = max(1, math.ceil(self.seconds / seconds - 1e-9))
        index = pd.Index([round(b * seconds, 3) for b in range(bins)], name="start_s")
        which = np.minimum((self.crossings["time_s"].to_numpy() // seconds).astype(int), bins - 1)
        table = pd.DataFrame(0, index=index, columns=list(DIRECTIONS))
        for direction in DIRECTIONS:
            picked = which[self.crossings["direction"].to_numpy() == direction]
            table[direction] = np.bincount(picked, minlength=bins)[:bins]
        table["total"] = table["in"] + table["out"]
        table["per_minute"] = table["total"] * 60.0 / seconds
        return table

    def congestion(self, rule: CongestionRule | None = None) -> pd.DataFrame:
        """Occupancy, speed and congestion level per window of ``rule.window_s`` seconds.

        Raises:
            ValueError: If the run had no zone.
        """
        rule = rule or CongestionRule()
        if self.zone is None:
            raise ValueError("Congestion needs a zone: pass zone= to count_traffic.")
        frame = self.timeline.assign(window=(self.timeline["time_s"] // rule.window_s))
        speeds = self.timeline["speed"].to_numpy(dtype=float)
        free = rule.free_flow_speed or (
            float(np.nanpercentile(speeds, 85)) if np.isfinite(speeds).any() else math.inf
        )
        table = frame.groupby("window").agg(
            vehicles=("in_zone", "mean"), occupancy=("occupancy", "mean"), speed=("speed", "mean")
        )
        table.index = pd.Index((table.index * rule.window_s).round(3), name="start_s")
        table["level"] = [
            rule.level(o, s, free) for o, s in zip(table["occupancy"], table["speed"], strict=True)
        ]
        table.attrs["free_flow_speed"] = free
        return table

    def plot_counts(self, seconds: float = 60.0) -> Figure:
        """Bars of crossings per interval and direction (see :func:`plot_counts`)."""
        return plot_counts(self.per_interval(seconds), seconds=seconds)

    def plot_congestion(self, rule: CongestionRule | None = None) -> Figure:
        """Occupancy and speed over time with the levels (see :func:`plot_congestion`)."""
        rule = rule or CongestionRule()
        return plot_congestion(self.congestion(rule), rule)

    def plot_samples(self, cols: int = 2) -> Figure:
        """The annotated sample frames in a grid."""
        return plot_frames(
            [img for _, img in self.samples],
            titles=[f"frame {i}" for i, _ in self.samples],
            cols=cols,
        )


def count_error(counted: Mapping[str, int], truth: Mapping[str, int]) -> dict[str, float]:
    """Counting error per direction: signed error, absolute percentage error, and their mean.

    Returns:
        ``count_error_in``, ``count_error_out`` (counted - true), ``count_ape_in``,
        ``count_ape_out`` (|error| / true, in %) and ``count_mape`` (their mean, in %).

    Raises:
        ValueError: If a direction is missing or a true count is not positive.
    """
    out: dict[str, float] = {}
    for d in DIRECTIONS:
        if d not in counted or d not in truth:
            raise ValueError(f"Both counts need the direction {d!r}.")
        if truth[d] <= 0:
            raise ValueError(f"The true {d} count must be positive to give a percentage.")
        out[f"count_error_{d}"] = int(counted[d]) - int(truth[d])
        out[f"count_ape_{d}"] = 100.0 * abs(int(counted[d]) - int(truth[d])) / int(truth[d])
    out["count_mape"] = float(np.mean([out[f"count_ape_{d}"] for d in DIRECTIONS]))
    return out


# --------------------------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------------------------


class _VideoOut:
    """An OpenCV video written to a temporary file and renamed into place when complete."""

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
        self.writer.write(frame)

    def close(self, keep: bool) -> None:
        self.writer.release()
        if keep:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


class _Annotator:
    """supervision's annotators for one run: boxes, ids, traces, the line, the zone, a banner."""

    def __init__(self, fps: float, size: tuple[int, int]) -> None:
        scale, by_track = max(max(size) / 640, 0.6), sv.ColorLookup.TRACK
        self.box = sv.BoxAnnotator(thickness=max(1, round(2 * scale)), color_lookup=by_track)
        self.label = sv.LabelAnnotator(
            text_scale=0.4 * scale, text_padding=2, color_lookup=by_track
        )
        self.trace = sv.TraceAnnotator(
            trace_length=max(2, int(fps * 2)),
            color_lookup=by_track,
            position=sv.Position.BOTTOM_CENTER,
        )
        self.line = sv.LineZoneAnnotator(
            thickness=max(1, round(2 * scale)),
            text_scale=0.45 * scale,
            text_thickness=1,
            text_padding=3,
        )
        self.scale, self.size = scale, size

    def __call__(
        self,
        frame: np.ndarray,
        tracked: sv.Detections,
        line_zone: sv.LineZone,
        zone: np.ndarray | None,
        level: str,
    ) -> np.ndarray:
        out = frame.copy()
        if zone is not None:
            out = sv.draw_polygon(out, zone, color=sv.Color.YELLOW, thickness=1)
        if len(tracked):
            names = _class_names(tracked)
            labels = [f"#{t} {n}" for t, n in zip(tracked.tracker_id, names, strict=True)]
            out = self.trace.annotate(out, tracked)
            out = self.box.annotate(out, tracked)
            out = self.label.annotate(out, tracked, labels=labels)
        out = self.line.annotate(out, line_counter=line_zone)
        text = f"in {line_zone.in_count}  out {line_zone.out_count}  traffic: {level}"
        anchor = sv.Point(self.size[0] // 2, int(self.size[1] - 14 * self.scale))
        return sv.draw_text(
            out,
            text,
            anchor,
            text_color=sv.Color.WHITE,
            text_scale=0.5 * self.scale,
            background_color=sv.Color.BLACK,
            text_padding=4,
        )


def _merge(parts: list[sv.Detections]) -> sv.Detections:
    parts = [p for p in parts if len(p)]
    return sv.Detections.merge(parts) if parts else _with_ids(_empty(), np.zeros(0, int))


def _with_ids(detections: sv.Detections, ids: np.ndarray) -> sv.Detections:
    detections.tracker_id = np.asarray(ids, dtype=int)
    return detections


def count_traffic(
    source: str | os.PathLike,
    detector: Detector,
    *,
    line: CountingLine,
    zone: np.ndarray | None = None,
    fps: float | None = None,
    video: str | os.PathLike | None = None,
    people: bool = True,
    plates: bool = False,
    stride: int = 1,
    max_frames: int | None = None,
    tracker: Mapping[str, Any] | None = None,
    rule: CongestionRule | None = None,
    samples: int = 4,
    crossing_frames: int = 1,
) -> CountResult:
    """Detects, tracks and counts the vehicles of a fixed camera, and writes an annotated video.

    Args:
        source: A folder of frames or a video file.
        detector: ``(BGR frame, frame index) -> sv.Detections`` with project class ids
            (:func:`ground_truth_detector`, :func:`yolo_detector`, :func:`motion_detector`).
        line: The counting line.
        zone: A polygon (``(N, 2)`` pixels) for occupancy and congestion (None: none).
        fps: Frames per second (required for a folder; a video's own rate otherwise).
        video: Where to write the annotated video (``.mp4`` with mp4v or ``.avi`` with MJPG);
            None writes none. The file appears only when complete.
        people: Blur people before anything is drawn or stored.
        plates: Also blur the lower part of vehicle boxes (see :func:`blur_privacy`).
        stride: Use every ``stride``-th frame.
        max_frames: Stop after this many frames.
        tracker: ByteTrack settings that replace :data:`TRACKER_DEFAULTS`.
        rule: The congestion rule of the video's banner, which shows each frame's level against
            the free-flow speed seen so far (default :class:`CongestionRule`).
        samples: Annotated frames to keep in memory for display (evenly spread).
        crossing_frames: Frames a vehicle must be seen beyond the line before it counts.

    Returns:
        The counts, crossings, a timeline of occupancy and speed, and the video's path.

    Raises:
        FileNotFoundError: If the source does not exist.
        ValueError: On an empty or unreadable source, a missing or non-positive fps, an unknown
            tracker setting, or a video name that is not ``.mp4`` or ``.avi``.
        TypeError: If the detector returns something other than ``sv.Detections``.
    """
    from trackers import ByteTrackTracker

    info = source_info(source)
    fps = fps if fps is not None else info.fps
    if fps is None or not fps > 0:
        raise ValueError(f"{info.path}: give fps= (frames per second): a folder does not say.")
    settings = {**TRACKER_DEFAULTS, **(tracker or {})}
    unknown = sorted(set(settings) - set(TRACKER_DEFAULTS))
    if unknown:
        raise ValueError(
            f"Unknown tracker setting(s): {', '.join(unknown)}; "
            f"known: {', '.join(TRACKER_DEFAULTS)}."
        )
    rule = rule or CongestionRule()
    step_fps = fps / stride
    byte_track = ByteTrackTracker(frame_rate=step_fps, **settings)
    line_zone = line.line_zone(crossing_frames=crossing_frames)
    polygon = None if zone is None else np.asarray(zone, dtype=int).reshape(-1, 2)
    zone_counter = (
        None
        if polygon is None
        else sv.PolygonZone(polygon, triggering_anchors=(sv.Position.BOTTOM_CENTER,))
    )
    zone_mask = None if polygon is None else sv.polygon_to_mask(polygon, info.size).astype(bool)
    hold = max(1, round(settings["lost_track_buffer"] / 30 * step_fps))
    expected = (
        -(-info.frames // stride)
        if max_frames is None
        else min(max_frames, -(-info.frames // stride))
    )
    keep = set(np.linspace(0, max(expected - 1, 0), num=max(samples, 0), dtype=int).tolist())
    annotate = _Annotator(step_fps, info.size) if (video or samples) else None
    out = _VideoOut(Path(video), step_fps, info.size) if video else None

    last: dict[int, tuple[int, np.ndarray, str]] = {}  # track id -> (step, box, class) last seen
    trail: dict[int, deque] = {}  # track id -> recent (time, x, y) of its anchor
    known: set[int] = set()
    crossings: list[tuple] = []
    timeline: list[tuple] = []
    kept: list[tuple[int, np.ndarray]] = []
    final: list[tuple[int, int, np.ndarray]] = []  # the last annotated frame (step, index, RGB)
    speed_free = rule.free_flow_speed or math.inf
    speeds_seen: list[float] = []
    started = time.perf_counter()

    def process(
        step: int, index: int, frame: np.ndarray, raw: sv.Detections, tracked: sv.Detections
    ) -> None:
        t = index / fps
        names = _class_names(tracked)
        for box, tid, name in zip(tracked.xyxy, tracked.tracker_id, names, strict=True):
            last[int(tid)] = (step, box, str(name))
        # Tracks the tracker still remembers but did not see keep their last box, so that
        # their side of the line is not forgotten while they are hidden.
        for tid in [tid for tid, (s, _, _) in last.items() if step - s > hold]:
            del last[tid]  # forgotten by the tracker too
            trail.pop(tid, None)
        held = [(tid, box, name) for tid, (s, box, name) in last.items() if s < step]
        everyone = _merge(
            [
                _with_ids(
                    _detections(tracked.xyxy, names, np.ones(len(tracked))), tracked.tracker_id
                ),
                _with_ids(
                    _detections(
                        np.array([h[1] for h in held]), [h[2] for h in held], np.ones(len(held))
                    ),
                    [h[0] for h in held],
                ),
            ]
        )
        went_in, went_out = line_zone.trigger(everyone)
        everyone_names = _class_names(everyone)
        for k in np.flatnonzero(went_in | went_out):
            crossings.append(
                (
                    index,
                    t,
                    int(everyone.tracker_id[k]),
                    everyone_names[k],
                    "in" if went_in[k] else "out",
                )
            )
        anchors = tracked.get_anchors_coordinates(sv.Position.BOTTOM_CENTER)
        speed = np.full(len(tracked), np.nan)
        for k, (tid, (x, y)) in enumerate(zip(tracked.tracker_id, anchors, strict=True)):
            path = trail.setdefault(int(tid), deque())
            path.append((t, float(x), float(y)))
            while path and t - path[0][0] > SPEED_WINDOW_S:
                path.popleft()
            if len(path) > 1 and path[-1][0] > path[0][0]:
                speed[k] = math.dist(path[-1][1:], path[0][1:]) / (path[-1][0] - path[0][0])
        in_zone, occupancy, zone_speed = 0, 0.0, math.nan
        if zone_counter is not None and len(tracked):
            inside = zone_counter.trigger(tracked)
            in_zone = int(inside.sum())
            covered = np.zeros(info.size[::-1], dtype=bool)
            for x1, y1, x2, y2 in tracked.xyxy[inside].astype(int):
                covered[max(y1, 0) : max(y2, 0), max(x1, 0) : max(x2, 0)] = True
            occupancy = float((covered & zone_mask).sum() / max(zone_mask.sum(), 1))
            if np.isfinite(speed[inside]).any():
                zone_speed = float(np.nanmean(speed[inside]))
                speeds_seen.append(zone_speed)
        timeline.append((index, t, len(tracked), in_zone, occupancy, zone_speed))
        if annotate is None or (out is None and step not in keep):
            return
        free = (
            speed_free
            if math.isfinite(speed_free) or not speeds_seen
            else float(np.percentile(speeds_seen, 85))
        )
        level = rule.level(occupancy, zone_speed, free)
        picture = annotate(
            blur_privacy(frame, raw, people=people, plates=plates),
            tracked,
            line_zone,
            polygon,
            level,
        )
        if out is not None:
            out.write(picture)
        if step in keep:
            kept.append((index, cv2.cvtColor(picture, cv2.COLOR_BGR2RGB)))
        else:
            final[:] = [(step, index, picture)]

    pending = None
    step = -1
    try:
        for step, (index, frame) in enumerate(
            iter_frames(source, stride=stride, max_frames=max_frames)
        ):
            if (frame.shape[1], frame.shape[0]) != info.size:
                raise ValueError(
                    f"{info.path}: frame {index} is {frame.shape[1]}x{frame.shape[0]}, "
                    f"the first was {info.size[0]}x{info.size[1]}."
                )
            raw = detector(frame, index)
            if not isinstance(raw, sv.Detections):
                raise TypeError(
                    f"The detector returned {type(raw).__name__} for frame {index} of "
                    f"{info.path}; it must return sv.Detections."
                )
            names = _class_names(raw)
            vehicles = raw[np.isin(names, VEHICLE_CLASSES)] if len(raw) else raw
            tracked = byte_track.update(vehicles)
            ids = tracked.tracker_id if tracked.tracker_id is not None else np.zeros(0, int)
            confirmed, unconfirmed = tracked[ids >= 0], tracked[ids < 0]
            if pending is not None:
                # A new id's first box is in the frame before: ByteTrack names a track only
                # from its second frame, so give that first box the id (one frame of delay).
                p_step, p_index, p_frame, p_raw, p_confirmed, p_unconfirmed = pending
                births = []
                for k, tid in enumerate(confirmed.tracker_id):
                    if int(tid) in known or not len(p_unconfirmed):
                        continue
                    overlap = sv.box_iou_batch(confirmed.xyxy[k : k + 1], p_unconfirmed.xyxy)[0]
                    if overlap.max() > 0:
                        births.append(
                            _with_ids(
                                p_unconfirmed[int(overlap.argmax()) : int(overlap.argmax()) + 1],
                                [tid],
                            )
                        )
                process(p_step, p_index, p_frame, p_raw, _merge([p_confirmed, *births]))
            known.update(int(t) for t in confirmed.tracker_id)
            pending = (step, index, frame, raw, confirmed, unconfirmed)
        if pending is not None:
            process(*pending[:4], pending[4])
    except BaseException:
        if out is not None:
            out.close(keep=False)
        raise
    if out is not None:
        out.close(keep=True)
    if final and len(kept) < len(keep) and final[0][0] == step:
        # the video held fewer frames than its container said: show its last frame instead
        kept.append((final[0][1], cv2.cvtColor(final[0][2], cv2.COLOR_BGR2RGB)))
    frames = step + 1
    crossing_table = pd.DataFrame(
        crossings, columns=["frame", "time_s", "track_id", "class_name", "direction"]
    )
    return CountResult(
        counts={"in": line_zone.in_count, "out": line_zone.out_count},
        crossings=crossing_table,
        timeline=pd.DataFrame(
            timeline, columns=["frame", "time_s", "vehicles", "in_zone", "occupancy", "speed"]
        ),
        fps=fps,
        frames=frames,
        seconds=frames * stride / fps,
        size=info.size,
        line=line,
        zone=polygon,
        video=Path(video) if video else None,
        samples=kept,
        elapsed_s=time.perf_counter() - started,
    )


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


# --------------------------------------------------------------------------------------------
# Plots (each returns a matplotlib Figure)
# --------------------------------------------------------------------------------------------


def draw_layout(
    frame: np.ndarray, line: CountingLine, zone: np.ndarray | None = None
) -> np.ndarray:
    """A copy of a BGR frame with the counting line (arrow: "in" side) and the zone drawn."""
    out = frame.copy()
    if zone is not None:
        out = sv.draw_polygon(out, np.asarray(zone, dtype=int), color=sv.Color.YELLOW, thickness=2)
    start, end = (tuple(round(v) for v in p) for p in (line.start, line.end))
    out = sv.draw_line(out, sv.Point(*start), sv.Point(*end), color=sv.Color.RED, thickness=2)
    middle = np.mean([start, end], axis=0)
    tip = middle + 30 * np.array(INWARD[line.inward])
    cv2.arrowedLine(
        out,
        tuple(int(v) for v in middle),
        tuple(int(v) for v in tip),
        (0, 0, 255),
        2,
        tipLength=0.35,
    )
    cv2.putText(
        out, "in", tuple(int(v) + 6 for v in tip), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 255), 2
    )
    return out


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


def plot_counts(table: pd.DataFrame, *, seconds: float = 60.0) -> Figure:
    """Stacked bars of "in" and "out" crossings per interval (a :meth:`CountResult.per_interval` table)."""
    fig = Figure(figsize=(9, 3.5))
    ax = fig.subplots()
    starts = table.index.to_numpy(dtype=float)
    width = seconds * 0.8
    ax.bar(starts, table["in"], width=width, align="edge", label="in (towards)", color="#4363d8")
    ax.bar(
        starts,
        table["out"],
        width=width,
        align="edge",
        bottom=table["in"],
        label="out (away)",
        color="#f58231",
    )
    ax.set_xlabel("time (s)")
    ax.set_ylabel(f"vehicles per {seconds:g} s")
    ax.set_title(
        f"Vehicles crossing the line per {seconds:g} s ({int(table['total'].sum())} in all)"
    )
    ax.legend()
    fig.tight_layout()
    return fig


def plot_congestion(table: pd.DataFrame, rule: CongestionRule) -> Figure:
    """Zone occupancy and speed per window, thresholds dashed, background coloured by level."""
    fig = Figure(figsize=(9, 4.5))
    occ_ax, speed_ax = fig.subplots(2, 1, sharex=True)
    starts = table.index.to_numpy(dtype=float)
    colours = {"free": "#d9f2d9", "heavy": "#fff2b3", "congested": "#f7c6c6"}
    for ax in (occ_ax, speed_ax):
        for start, level in zip(starts, table["level"], strict=True):
            ax.axvspan(start, start + rule.window_s, color=colours[level], lw=0)
    edges = np.append(starts, starts[-1] + rule.window_s) if len(starts) else starts

    def steps(values: pd.Series) -> np.ndarray:  # the last window drawn to its end
        return np.append(values.to_numpy(dtype=float), values.to_numpy(dtype=float)[-1:])

    occ_ax.step(edges, steps(table["occupancy"]), where="post", color="black")
    top = table["occupancy"].max() if len(table) else 0.0
    occ_ax.set_ylim(0, 1.15 * max(rule.congested_occupancy, top))
    occ_ax.axhline(rule.heavy_occupancy, ls="--", color="#b59b00", label="heavy")
    occ_ax.axhline(rule.congested_occupancy, ls="--", color="#c0392b", label="congested")
    occ_ax.set_ylabel("zone occupancy")
    occ_ax.legend(loc="upper right", fontsize=8)
    speed_ax.step(edges, steps(table["speed"]), where="post", color="black")
    speed_ax.set_ylim(bottom=0)
    free = table.attrs.get("free_flow_speed", math.nan)
    if math.isfinite(free):
        speed_ax.axhline(rule.slow_share * free, ls="--", color="#c0392b", label="slow")
        speed_ax.legend(loc="upper right", fontsize=8)
    speed_ax.set_ylabel("speed (px/s)")
    speed_ax.set_xlabel("time (s)")
    counts = table["level"].value_counts()
    occ_ax.set_title(
        "Congestion per window: " + ", ".join(f"{level} {counts.get(level, 0)}" for level in LEVELS)
    )
    fig.tight_layout()
    return fig
