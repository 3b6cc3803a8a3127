"""Detectors for counting: ``(frame, index) -> sv.Detections`` with the project's class ids.

Any callable of that form can feed :func:`tcv_helpers.count.analytics.count_traffic`: the
ground-truth boxes of a synthetic sequence (:func:`ground_truth_detector`, to test tracking and
counting alone), a YOLO model (:func:`yolo_detector`), or, without any model, background
subtraction (:func:`motion_detector`). Every detection carries its class name in
``data["class_name"]``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import supervision as sv

from tcv_helpers.count.frames import iter_frames, source_info
from tcv_helpers.project import PROJECT_CLASSES

#: Classes that are counted and tracked (people are only blurred).
VEHICLE_CLASSES = ("car", "truck", "bus", "motorcycle", "bicycle")

Detector = Callable[[np.ndarray, int], sv.Detections]


def project_detections(
    xyxy: np.ndarray, class_names: Sequence[str], confidence: np.ndarray
) -> sv.Detections:
    """``sv.Detections`` with the project's class ids and names (``data["class_name"]``).

    Raises:
        ValueError: If a name is not one of the project's classes.
    """
    names = np.asarray(class_names, dtype=object).astype(str)
    return sv.Detections(
        xyxy=np.asarray(xyxy, dtype=np.float32).reshape(-1, 4),
        confidence=np.asarray(confidence, dtype=np.float32),
        class_id=np.array([PROJECT_CLASSES.index(n) for n in names], dtype=np.int64),
        data={"class_name": names},
    )


def empty_detections() -> sv.Detections:
    """No detections, in the form :func:`project_detections` gives."""
    return project_detections(np.zeros((0, 4)), [], np.zeros(0))


def detection_class_names(detections: sv.Detections) -> np.ndarray:
    """The class name of each detection: ``data["class_name"]``, else from the project's ids."""
    if "class_name" in detections.data:
        return np.asarray(detections.data["class_name"]).astype(str)
    ids = detections.class_id if detections.class_id is not None else np.zeros(len(detections), int)
    return np.array([PROJECT_CLASSES[i] if 0 <= i < len(PROJECT_CLASSES) else "" for i in ids])


def ground_truth_detector(tracks: pd.DataFrame) -> Detector:
    """A detector that returns a synthetic sequence's true boxes (confidence 1) for each frame.

    It tests tracking and counting alone: with perfect boxes, every counting error is theirs.
    The true track ids are not handed on; ByteTrack has to find them.

    Args:
        tracks: The table from :func:`tcv_helpers.count.sequences.read_tracks`.
    """
    table = {
        int(frame): project_detections(
            rows[["x1", "y1", "x2", "y2"]].to_numpy(),
            rows["class_name"].tolist(),
            np.ones(len(rows)),
        )
        for frame, rows in tracks.groupby("frame")
    }

    def detect(frame: np.ndarray, index: int) -> sv.Detections:
        return table.get(index, empty_detections())

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
        return project_detections(
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
        source: The same folder or video that
            :func:`tcv_helpers.count.analytics.count_traffic` reads.
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
        index: project_detections(d.xyxy, ["car"] * len(d), d.confidence)
        for index, d in zip(indices, found, strict=True)
    }

    def detect(frame: np.ndarray, index: int) -> sv.Detections:
        return table.get(index, empty_detections())

    return detect
