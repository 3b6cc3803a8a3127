"""Capturing edge cases into a relabel queue (notebook 09): where the relabel loop starts.

A deployed model meets frames it was not trained for (night, rain, a moved camera). The loop
that fixes it has four steps:

1. :func:`capture_edge_cases` scores production frames with the deployed model's boxes (and,
   optionally, a reference model's; :mod:`tcv_helpers.monitor.edge_cases` says why a frame is
   flagged) and saves the frames worth a person's time into a **relabel queue**.
2. :class:`~tcv_helpers.monitor.review.RelabelQueue` opens the queue for review and writes the
   reviewed frames as a YOLO folder (:mod:`tcv_helpers.monitor.review`).
3. :func:`~tcv_helpers.monitor.retrain.retrain_with_queue` fine-tunes the current weights on the
   original training set plus the reviewed frames (a new list-file ``data.yaml``; the original
   dataset is never edited).
4. :func:`~tcv_helpers.monitor.retrain.compare_models` scores the model before and after on the
   held-out sets.

Offline, :func:`~tcv_helpers.monitor.conditions.condition_set` makes the production frames of a
condition with their true boxes (the embedded synthetic generator), and
:func:`~tcv_helpers.monitor.review.review_with_truth` lets that truth stand in for the person
reviewing, so the whole loop runs in CI::

    night = condition_set(data / "night", condition="night")
    frames = night.frames("production")
    boxes = predict_yolo(weights, [f.image for f in frames], imgsz=cfg.profile.imgsz)
    capture = capture_edge_cases(frames, boxes, out_dir=data / "relabel-queue", budget=60)
    reviewer, added = review_with_truth(capture.queue, night.truth("production"))
    reviewed = capture.queue.apply_review(reviewer, out_dir=data / "reviewed", added=added)
    retrained = retrain_with_queue(weights, base_yaml, reviewed.root, out_dir=models,
                                   profile=cfg.profile)
    compare_models(weights, retrained.weights, {"night": night.data_yaml},
                   imgsz=cfg.profile.imgsz).table()
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import supervision as sv

from tcv_helpers.io import atomic_write_bytes, atomic_write_text
from tcv_helpers.monitor.edge_cases import (
    DISAGREEMENT_IOU,
    HIGH,
    LOW,
    MIN_DISAGREEMENT,
    Frame,
    FrameScore,
    at_least,
    check_detections,
    check_thresholds,
    confidences,
    match_boxes,
    score_frame,
)
from tcv_helpers.monitor.review import (
    MANIFEST,
    QueueRecord,
    RelabelQueue,
    read_queue_records,
    write_queue_records,
)

if TYPE_CHECKING:
    import pandas as pd


#: What :func:`capture_edge_cases` did with a frame.
OUTCOMES: tuple[str, ...] = ("added", "duplicate", "over budget", "not flagged")
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _as_frame(item: Frame | str | os.PathLike | np.ndarray, index: int) -> Frame:
    if isinstance(item, Frame):
        return item
    if isinstance(item, np.ndarray):
        raise ValueError(
            f"frame {index} is an array without an id: pass Frame(id=..., image=array)."
        )
    if isinstance(item, str | os.PathLike):
        path = Path(item)
        return Frame(id=path.stem, image=path)
    raise TypeError(f"frame {index}: expected a Frame, an image path or an array, got {item!r}.")


def _boxes_json(detections: sv.Detections, source: str) -> list[dict[str, Any]]:
    confidence = confidences(detections)
    return [
        {
            "xyxy": [round(float(v), 2) for v in box],
            "confidence": round(float(c), 4),
            "class_id": int(k),
            "source": source,
        }
        for box, c, k in zip(detections.xyxy, confidence, detections.class_id, strict=True)
    ]


@dataclass
class CaptureResult:
    """What :func:`capture_edge_cases` did.

    Attributes:
        queue: The queue (opened after writing).
        rows: One row per frame examined, in the order given: id, reasons, score, counts and
            outcome (see :data:`OUTCOMES`).
        added: Ids added to the queue by this capture, in the order they were added (highest
            score first).
    """

    queue: RelabelQueue
    rows: list[dict[str, Any]] = field(default_factory=list)
    added: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Frames per outcome (every outcome listed)."""
        return {o: sum(r["outcome"] == o for r in self.rows) for o in OUTCOMES}

    def table(self) -> pd.DataFrame:
        """The rows as a table indexed by frame id."""
        import pandas as pd

        columns = ["id", "outcome", "reasons", "score", "uncertainty", "disagreement",
                   "n_detections", "n_uncertain", "n_reference"]  # fmt: skip
        return pd.DataFrame(self.rows, columns=columns).set_index("id")


def _stem(frame_id: str) -> str:
    return _SAFE.sub("_", frame_id).strip("._") or "frame"


def _encode(frame: Frame, quality: int) -> tuple[bytes, str, tuple[int, int]]:
    """The bytes to store, their suffix and the image size (width, height)."""
    if isinstance(frame.image, np.ndarray):
        import cv2

        array = frame.image
        if (
            array.dtype != np.uint8
            or array.ndim not in (2, 3)
            or (array.ndim == 3 and array.shape[2] != 3)
        ):
            raise ValueError(
                f"frame {frame.id!r}: expected a BGR uint8 array (H, W, 3) or a grey one (H, W), "
                f"got {array.dtype} {array.shape}."
            )
        ok, encoded = cv2.imencode(".jpg", array, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise ValueError(f"frame {frame.id!r}: OpenCV could not encode it as JPEG.")
        return encoded.tobytes(), ".jpg", (array.shape[1], array.shape[0])
    from PIL import Image, UnidentifiedImageError

    path = frame.image
    if not path.is_file():
        raise FileNotFoundError(f"frame {frame.id!r}: {path} does not exist.")
    try:
        with Image.open(path) as image:
            size = image.size
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"frame {frame.id!r}: {path} is not a readable image ({exc}).") from None
    return path.read_bytes(), path.suffix.lower() or ".jpg", size


def capture_edge_cases(
    frames: Sequence[Frame | str | os.PathLike | np.ndarray],
    predictions: Sequence[sv.Detections],
    *,
    out_dir: str | os.PathLike,
    reference_predictions: Sequence[sv.Detections] | None = None,
    low: float = LOW,
    high: float = HIGH,
    disagreement_iou: float = DISAGREEMENT_IOU,
    min_disagreement: float = MIN_DISAGREEMENT,
    flag_empty: bool = False,
    budget: int | None = None,
    jpeg_quality: int = 95,
) -> CaptureResult:
    """Saves the production frames that need a person's review into a relabel queue.

    Each frame is scored with :func:`score_frame` (uncertain boxes, a miss, a disagreement
    with the reference). Flagged frames not yet in the queue (same id, or same image bytes) are
    added, the highest score first, up to ``budget``. For each: the image is copied into
    ``images/`` (arrays are encoded as JPEG; the originals are only read), its proposals go to
    ``proposals/<name>.json`` (the deployed boxes at or above ``low``, the reference's boxes
    that match none of them, the image size) and a row with status ``pending`` to
    ``manifest.csv``. Capturing into an existing queue appends; the manifest is rewritten
    atomically after the files it names.

    Args:
        frames: :class:`Frame` objects, or image paths (their stem is the id).
        predictions: The deployed model's boxes, one ``sv.Detections`` per frame.
        out_dir: The queue folder (created when missing).
        reference_predictions: A second model's boxes per frame (e.g. the PyTorch model behind
            an INT8 service, or the previous model version), or None.
        low: Least confidence of a box that counts; uncertain from here.
        high: Confidence from which a box is confident.
        disagreement_iou: IoU at which boxes of the two models match.
        min_disagreement: ``1 - F1`` that queues a frame.
        flag_empty: Also queue frames where the deployed model finds nothing at all (and there
            is no reference): see :func:`tcv_helpers.monitor.edge_cases.score_frame`.
        budget: Most frames this capture adds (None: no limit); the most uncertain go first.
        jpeg_quality: JPEG quality for frames given as arrays.

    Returns:
        The queue and what happened to every frame.

    Raises:
        ValueError: If the lists differ in length, a threshold is out of range, an id is used
            twice in ``frames``, an image is unreadable, or the existing manifest is malformed.
        FileNotFoundError: If an image path does not exist.
        TypeError: If a prediction is not an ``sv.Detections``.
    """
    check_thresholds(low, high, disagreement_iou, min_disagreement)
    if budget is not None and budget < 0:
        raise ValueError(f"budget must be None or at least 0, got {budget!r}.")
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be 1-100, got {jpeg_quality!r}.")
    items = [_as_frame(f, i) for i, f in enumerate(frames)]
    if len(predictions) != len(items):
        raise ValueError(f"{len(predictions)} predictions for {len(items)} frames.")
    if reference_predictions is not None and len(reference_predictions) != len(items):
        raise ValueError(
            f"{len(reference_predictions)} reference predictions for {len(items)} frames."
        )
    ids: dict[str, int] = {}
    for index, item in enumerate(items):
        if item.id in ids:
            raise ValueError(
                f"frames {ids[item.id]} and {index} share the id {item.id!r}: give each a "
                "unique Frame(id=...)."
            )
        ids[item.id] = index

    root = Path(out_dir)
    manifest = root / MANIFEST
    records, extra_columns = read_queue_records(manifest) if manifest.is_file() else ([], [])
    known_ids = {r.id for r in records}
    known_sha = {r.sha256 for r in records if r.sha256}
    taken = {Path(r.image).stem for r in records}

    rows: list[dict[str, Any]] = []
    candidates: list[tuple[FrameScore, int]] = []
    for index, item in enumerate(items):
        what = f"predictions[{index}] (frame {item.id!r})"
        prediction = check_detections(predictions[index], what, need_confidence=True)
        reference = None
        if reference_predictions is not None:
            reference = check_detections(
                reference_predictions[index], f"reference_predictions[{index}]",
                need_confidence=False,
            )  # fmt: skip
        result = score_frame(
            prediction, reference, low=low, high=high, disagreement_iou=disagreement_iou,
            min_disagreement=min_disagreement, flag_empty=flag_empty,
        )  # fmt: skip
        rows.append(
            {
                "id": item.id, "outcome": "not flagged", "reasons": ";".join(result.reasons),
                "score": result.score, "uncertainty": result.uncertainty,
                "disagreement": result.disagreement, "n_detections": result.n_detections,
                "n_uncertain": result.n_uncertain, "n_reference": result.n_reference,
            }
        )  # fmt: skip
        if result.flagged:
            candidates.append((result, index))
    candidates.sort(key=lambda c: (-c[0].score, -c[0].n_uncertain, c[1]))

    added: list[str] = []
    new_records: list[QueueRecord] = []
    for result, index in candidates:
        item = items[index]
        if item.id in known_ids:
            rows[index]["outcome"] = "duplicate"
            continue
        data, suffix, (width, height) = _encode(item, jpeg_quality)
        digest = hashlib.sha256(data).hexdigest()
        if digest in known_sha:
            rows[index]["outcome"] = "duplicate"
            continue
        if budget is not None and len(added) >= budget:
            rows[index]["outcome"] = "over budget"
            continue
        stem = _stem(item.id)
        if stem in taken:
            stem = f"{stem}-{digest[:10]}"
        taken.add(stem)
        image_rel, proposals_rel = f"images/{stem}{suffix}", f"proposals/{stem}.json"
        atomic_write_bytes(root / image_rel, data)
        prediction = at_least(predictions[index], low)
        boxes = _boxes_json(prediction, "model")
        reference_boxes = None
        if reference_predictions is not None:
            reference = at_least(reference_predictions[index], low)
            matched = {j for _, j in match_boxes(prediction, reference, iou=disagreement_iou)}
            unmatched = [j for j in range(len(reference)) if j not in matched]
            boxes += _boxes_json(reference[np.array(unmatched, dtype=int)], "reference")
            reference_boxes = _boxes_json(reference, "reference")
        content = {
            "id": item.id, "image": image_rel, "width": width, "height": height,
            "camera": item.camera, "captured_at": item.captured_at,
            "reasons": list(result.reasons), "score": result.score,
            "detections": boxes, "reference": reference_boxes,
        }  # fmt: skip
        atomic_write_text(root / proposals_rel, json.dumps(content, indent=1) + "\n")
        new_records.append(
            QueueRecord(
                id=item.id, image=image_rel, proposals=proposals_rel, sha256=digest,
                reasons=result.reasons, score=result.score, n_detections=result.n_detections,
                n_reference=result.n_reference, camera=item.camera,
                captured_at=item.captured_at, status="pending",
                extra=dict.fromkeys(extra_columns, ""),
            )
        )  # fmt: skip
        known_ids.add(item.id)
        known_sha.add(digest)
        rows[index]["outcome"] = "added"
        added.append(item.id)
    if new_records or not manifest.is_file():
        write_queue_records(manifest, [*records, *new_records], extra_columns)
    return CaptureResult(queue=RelabelQueue(root), rows=rows, added=added)
