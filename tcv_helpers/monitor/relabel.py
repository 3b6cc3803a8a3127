"""The relabel loop (notebook 09): capture edge cases, review them, retrain, compare.

A deployed model meets frames it was not trained for (night, rain, a moved camera). The loop
that fixes it has four steps, one function each:

1. :func:`capture_edge_cases` looks at production frames with the deployed model's boxes (and,
   optionally, a reference model's: the PyTorch model behind an INT8 service, or the previous
   model version) and saves the frames worth a person's time into a **relabel queue**: frames
   with uncertain boxes, frames where the model saw nothing the reference saw, and frames where
   the two models disagree. The queue is a folder: ``images/`` (copies, never the originals),
   ``proposals/`` (the boxes as JSON) and ``manifest.csv`` (one row per frame, with its reasons,
   score and review status).
2. :class:`RelabelQueue` opens the queue: :meth:`~RelabelQueue.proposals` feeds notebook 03's
   :class:`~tcv_helpers.data.widgets.PseudoLabelReviewer`, and :meth:`~RelabelQueue.apply_review`
   turns its decisions into a YOLO folder of reviewed frames and marks the manifest.
3. :func:`retrain_with_queue` fine-tunes the current weights on the original training set plus
   the reviewed frames (a new list-file ``data.yaml``; the original dataset is never edited).
4. :func:`compare_models` scores the model before and after on the held-out sets.

Offline, :func:`condition_set` makes the production frames of a condition with their true boxes
(the embedded synthetic generator), and :func:`review_with_truth` lets that truth stand in for the
person reviewing, so the whole loop runs in CI::

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

What to expect, measured in the smoke profile (the course's smoke model, 120 night production
frames from the training cameras, 60 held-out night frames from the validation cameras 8-9,
budget 60, the defaults of :func:`retrain_with_queue`: 6 epochs, about 30 s on 2 CPU cores):
night mAP50 0.432 before, 0.463-0.485 after (three seeds), while the same fine-tune without
the reviewed frames (``control=True``) gave 0.405-0.451; mAP50 on the base validation split
rose a little (0.526 to about 0.54), so nothing was forgotten. With all 108 flagged frames
(``budget=None``): 0.494.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import supervision as sv
from matplotlib.figure import Figure

from tcv_helpers.data.labels import (
    IMAGE_SUFFIXES,
    MANIFEST_COLUMNS,
    label_path_for,
    read_yolo_labels,
)
from tcv_helpers.io import atomic_write_bytes, atomic_write_text
from tcv_helpers.project import PROJECT_CLASSES

if TYPE_CHECKING:
    import pandas as pd

    from tcv_helpers.config import Profile
    from tcv_helpers.data.widgets import Proposal, PseudoLabelReviewer
    from tcv_helpers.model.train import TrainResult

#: Why a frame is queued: uncertain boxes; no confident box where the reference has one; the
#: deployed model and the reference disagree.
REASONS: tuple[str, ...] = ("uncertain", "missed", "disagreement")
#: Review status of a queued frame.
STATUSES: tuple[str, ...] = ("pending", "accepted", "rejected")
#: Columns of a queue's ``manifest.csv``, in order (extra columns are kept as they are).
QUEUE_COLUMNS: tuple[str, ...] = (
    "id",
    "image",
    "proposals",
    "sha256",
    "reasons",
    "score",
    "n_detections",
    "n_reference",
    "camera",
    "captured_at",
    "status",
)
MANIFEST = "manifest.csv"
#: Boxes below this confidence are ignored; from it up to :data:`HIGH` they are uncertain.
LOW = 0.25
#: Boxes at or above this confidence are confident.
HIGH = 0.6
#: IoU at which a deployed box and a reference box of the same class are the same object.
DISAGREEMENT_IOU = 0.5
#: Disagreement (1 - F1 of the match) at which a frame is queued.
MIN_DISAGREEMENT = 0.25
#: Settings of :func:`retrain_with_queue` on top of the profile's: a fine-tune is a short run
#: from trained weights, so no warm-up (its high starting bias learning rate would undo what
#: the model knows) ...
FINE_TUNE_ARGS: dict[str, Any] = {"warmup_epochs": 0.0}
#: ... and a third of the profile's learning rate. Measured in the smoke profile (night frames,
#: 6 epochs): the full rate made the model worse on the held-out night set than before.
FINE_TUNE_LR_SCALE = 1 / 3
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


# --------------------------------------------------------------------------------------------
# Frames and their scores
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # frames compare by identity: images may be arrays
class Frame:
    """A production frame: an image file or a BGR array, its id and where it came from.

    Attributes:
        id: Unique name of the frame (a queue never holds two frames with one id).
        image: The image file, or a BGR ``uint8`` array as OpenCV reads it.
        camera: Camera id, when known.
        captured_at: When it was captured (ISO 8601 text; a ``datetime`` is converted).
    """

    id: str
    image: Path | np.ndarray
    camera: str = ""
    captured_at: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise ValueError(f"a frame needs a non-empty id, got {self.id!r}.")
        if not isinstance(self.image, np.ndarray):
            object.__setattr__(self, "image", Path(self.image))
        when = self.captured_at
        if isinstance(when, datetime):
            object.__setattr__(self, "captured_at", when.isoformat())
        elif when is None:
            object.__setattr__(self, "captured_at", "")
        object.__setattr__(self, "camera", str(self.camera or ""))


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


@dataclass(frozen=True)
class FrameScore:
    """Why a frame deserves review, and how urgently.

    Attributes:
        reasons: The reasons that hold (see :data:`REASONS`); empty when the frame is fine.
        score: Review priority 0-1, higher first: the largest of the uncertainty, the
            disagreement, and 1 for a miss.
        uncertainty: Binary entropy (bits) of the most uncertain box in ``[low, high)``; 0
            when there is none (it is 1 for a box at 0.5).
        disagreement: ``1 - F1`` of matching the deployed boxes with the reference's; None
            without a reference.
        n_detections: Deployed boxes at or above ``low``.
        n_uncertain: Deployed boxes in ``[low, high)``.
        n_reference: Reference boxes at or above ``low``; None without a reference.
    """

    reasons: tuple[str, ...]
    score: float
    uncertainty: float
    disagreement: float | None
    n_detections: int
    n_uncertain: int
    n_reference: int | None

    @property
    def flagged(self) -> bool:
        """True when the frame goes to the queue."""
        return bool(self.reasons)


def _confidence(detections: sv.Detections) -> np.ndarray:
    """Confidences, 1.0 for detections without any (ground truth used as a reference)."""
    if detections.confidence is None:
        return np.ones(len(detections), dtype=float)
    return np.asarray(detections.confidence, dtype=float)


def _check_detections(detections: Any, what: str, *, need_confidence: bool) -> sv.Detections:
    if not isinstance(detections, sv.Detections):
        raise TypeError(f"{what}: expected sv.Detections, got {type(detections).__name__}.")
    if len(detections) and detections.class_id is None:
        raise ValueError(f"{what}: detections need class_id.")
    if need_confidence and len(detections) and detections.confidence is None:
        raise ValueError(f"{what}: detections need confidence (model predictions).")
    return detections


def _at_least(detections: sv.Detections, conf: float) -> sv.Detections:
    return detections[_confidence(detections) >= conf] if len(detections) else detections


def match_boxes(
    a: sv.Detections, b: sv.Detections, *, iou: float = DISAGREEMENT_IOU
) -> list[tuple[int, int]]:
    """Pairs boxes of ``a`` and ``b`` that show the same object: same class, IoU at least ``iou``.

    Greedy by IoU (the highest-overlap pair first), each box used once; IoU from
    ``sv.box_iou_batch``.

    Args:
        a: Boxes with ``class_id``.
        b: Boxes with ``class_id``.
        iou: Least IoU of a pair (0 < iou <= 1).

    Returns:
        ``(index in a, index in b)`` pairs, highest IoU first.

    Raises:
        ValueError: If ``iou`` is outside (0, 1].
    """
    if not 0 < iou <= 1:
        raise ValueError(f"iou must be in (0, 1], got {iou!r}.")
    if not len(a) or not len(b):
        return []
    overlap = sv.box_iou_batch(np.asarray(a.xyxy, float), np.asarray(b.xyxy, float))
    same = np.asarray(a.class_id)[:, None] == np.asarray(b.class_id)[None, :]
    overlap = np.where(same, overlap, 0.0)
    pairs: list[tuple[int, int]] = []
    used_a: set[int] = set()
    used_b: set[int] = set()
    for flat in np.argsort(-overlap, axis=None, kind="stable"):
        i, j = divmod(int(flat), overlap.shape[1])
        if overlap[i, j] < iou:
            break
        if i not in used_a and j not in used_b:
            pairs.append((i, j))
            used_a.add(i)
            used_b.add(j)
    return pairs


def disagreement(
    predictions: sv.Detections,
    reference: sv.Detections,
    *,
    iou: float = DISAGREEMENT_IOU,
    conf: float = 0.0,
) -> float:
    """How much two sets of boxes disagree: ``1 - F1`` of matching them (:func:`match_boxes`).

    Two empty sets agree (0). One box matched out of one and two gives ``1 - 2/3``.

    Args:
        predictions: One model's boxes (``class_id``; ``confidence`` when ``conf`` is used).
        reference: The other's (without ``confidence`` every box counts).
        iou: Least IoU of a match.
        conf: Only boxes at least this confident take part.

    Returns:
        A number from 0 (the same boxes) to 1 (nothing in common).
    """
    a, b = _at_least(predictions, conf), _at_least(reference, conf)
    if not len(a) and not len(b):
        return 0.0
    matched = len(match_boxes(a, b, iou=iou))
    return 1.0 - 2.0 * matched / (len(a) + len(b))


def _entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def _check_thresholds(low: float, high: float, disagreement_iou: float, min_dis: float) -> None:
    if not 0 <= low < high <= 1:
        raise ValueError(f"need 0 <= low < high <= 1, got low={low!r}, high={high!r}.")
    if not 0 < disagreement_iou <= 1:
        raise ValueError(f"disagreement_iou must be in (0, 1], got {disagreement_iou!r}.")
    if not 0 < min_dis <= 1:
        raise ValueError(f"min_disagreement must be in (0, 1], got {min_dis!r}.")


def score_frame(
    predictions: sv.Detections,
    reference: sv.Detections | None = None,
    *,
    low: float = LOW,
    high: float = HIGH,
    disagreement_iou: float = DISAGREEMENT_IOU,
    min_disagreement: float = MIN_DISAGREEMENT,
) -> FrameScore:
    """Decides whether one frame needs review, and why.

    * ``uncertain``: a deployed box has a confidence in ``[low, high)``;
    * ``missed``: the deployed model has no box at ``high`` or more, the reference has one;
    * ``disagreement``: ``1 - F1`` of matching the two models' boxes at ``low`` or more (same
      class, IoU at least ``disagreement_iou``) reaches ``min_disagreement``.

    Boxes below ``low`` are noise and take no part.

    Args:
        predictions: The deployed model's boxes for the frame (with ``confidence``).
        reference: A second model's boxes for the same frame, or None.
        low: Least confidence of a box that counts.
        high: Confidence from which a box is confident.
        disagreement_iou: IoU of a match between the two models.
        min_disagreement: Disagreement that queues the frame.

    Returns:
        The reasons, the priority score and the counts behind them.

    Raises:
        ValueError: On thresholds out of range, or detections without class ids or confidences.
    """
    _check_thresholds(low, high, disagreement_iou, min_disagreement)
    _check_detections(predictions, "predictions", need_confidence=True)
    confidence = _confidence(predictions)
    counted = confidence >= low
    uncertain = confidence[counted & (confidence < high)]
    reasons: list[str] = []
    uncertainty = float(_entropy(uncertain).max()) if len(uncertain) else 0.0
    if len(uncertain):
        reasons.append("uncertain")
    score = uncertainty
    gap: float | None = None
    n_reference: int | None = None
    if reference is not None:
        _check_detections(reference, "reference", need_confidence=False)
        ref_conf = _confidence(reference)
        n_reference = int((ref_conf >= low).sum())
        if not (confidence >= high).any() and (ref_conf >= high).any():
            reasons.append("missed")
            score = 1.0
        gap = disagreement(predictions, reference, iou=disagreement_iou, conf=low)
        if gap >= min_disagreement:
            reasons.append("disagreement")
        score = max(score, gap)
    return FrameScore(
        reasons=tuple(reasons),
        score=round(float(score), 6) if reasons else 0.0,
        uncertainty=round(uncertainty, 6),
        disagreement=None if gap is None else round(gap, 6),
        n_detections=int(counted.sum()),
        n_uncertain=len(uncertain),
        n_reference=n_reference,
    )


# --------------------------------------------------------------------------------------------
# The queue on disk
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueRecord:
    """One row of a queue's manifest.

    Attributes:
        id: The frame id.
        image: Image path relative to the queue folder.
        proposals: Proposal JSON path relative to the queue folder.
        sha256: Checksum of the stored image file.
        reasons: Why it was queued.
        score: Review priority.
        n_detections: Deployed boxes at or above ``low``.
        n_reference: Reference boxes at or above ``low`` (None without a reference).
        camera: Camera id.
        captured_at: Capture time (ISO 8601).
        status: ``pending``, ``accepted`` or ``rejected``.
        line: Line of the manifest the row is on.
        extra: Columns beyond :data:`QUEUE_COLUMNS`, as written.
    """

    id: str
    image: str
    proposals: str
    sha256: str
    reasons: tuple[str, ...]
    score: float
    n_detections: int
    n_reference: int | None
    camera: str
    captured_at: str
    status: str
    line: int = 0
    extra: dict[str, str] = field(default_factory=dict)

    def row(self) -> dict[str, str]:
        """The record as manifest cells."""
        return {
            "id": self.id,
            "image": self.image,
            "proposals": self.proposals,
            "sha256": self.sha256,
            "reasons": ";".join(self.reasons),
            "score": f"{self.score:.6g}",
            "n_detections": str(self.n_detections),
            "n_reference": "" if self.n_reference is None else str(self.n_reference),
            "camera": self.camera,
            "captured_at": self.captured_at,
            "status": self.status,
            **self.extra,
        }


def _int_cell(value: str, where: str, column: str, *, optional: bool = False) -> int | None:
    text = value.strip()
    if optional and not text:
        return None
    try:
        number = int(text)
    except ValueError:
        raise ValueError(f"{where}: '{column}' must be a whole number, got {value!r}.") from None
    if number < 0:
        raise ValueError(f"{where}: '{column}' must not be negative, got {number}.")
    return number


def _read_records(manifest: Path) -> tuple[list[QueueRecord], list[str]]:
    """Parses and checks a queue manifest; errors name the file and the line."""
    root = manifest.parent
    try:
        handle = manifest.open(encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{manifest} does not exist: is {root} a relabel queue (capture_edge_cases makes one)?"
        ) from None
    with handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        missing = [c for c in QUEUE_COLUMNS if c not in columns]
        if missing:
            raise ValueError(
                f"{manifest}:1: missing column(s) {', '.join(missing)}; a relabel queue needs "
                f"{', '.join(QUEUE_COLUMNS)} (found: {', '.join(columns) or 'no header'})."
            )
        extra_columns = [c for c in columns if c not in QUEUE_COLUMNS]
        records: list[QueueRecord] = []
        seen: dict[str, int] = {}
        for row in reader:
            line = reader.line_num
            where = f"{manifest}:{line}"
            if None in row:
                raise ValueError(f"{where}: more cells than the header has columns.")
            cells = {k: (v or "") for k, v in row.items()}
            frame_id = cells["id"].strip()
            if not frame_id:
                raise ValueError(f"{where}: empty 'id'.")
            if frame_id in seen:
                raise ValueError(f"{where}: id {frame_id!r} is already on line {seen[frame_id]}.")
            seen[frame_id] = line
            for column in ("image", "proposals"):
                relative = cells[column].strip()
                if not relative or Path(relative).is_absolute() or ".." in Path(relative).parts:
                    raise ValueError(
                        f"{where}: '{column}' must be a path inside the queue, got {relative!r}."
                    )
                if not (root / relative).is_file():
                    raise FileNotFoundError(f"{where}: {column} {relative} does not exist.")
            reasons = tuple(r for r in cells["reasons"].split(";") if r.strip())
            unknown = [r for r in reasons if r not in REASONS]
            if unknown:
                raise ValueError(
                    f"{where}: unknown reason(s) {', '.join(unknown)}; reasons are "
                    f"{', '.join(REASONS)}."
                )
            try:
                score = float(cells["score"])
            except ValueError:
                raise ValueError(
                    f"{where}: 'score' must be a number, got {cells['score']!r}."
                ) from None
            if not math.isfinite(score):
                raise ValueError(f"{where}: 'score' must be finite, got {cells['score']!r}.")
            status = cells["status"].strip()
            if status not in STATUSES:
                raise ValueError(f"{where}: status {status!r} is not one of {', '.join(STATUSES)}.")
            n_detections = _int_cell(cells["n_detections"], where, "n_detections")
            records.append(
                QueueRecord(
                    id=frame_id,
                    image=Path(cells["image"].strip()).as_posix(),
                    proposals=Path(cells["proposals"].strip()).as_posix(),
                    sha256=cells["sha256"].strip(),
                    reasons=reasons,
                    score=score,
                    n_detections=n_detections or 0,
                    n_reference=_int_cell(
                        cells["n_reference"], where, "n_reference", optional=True
                    ),
                    camera=cells["camera"],
                    captured_at=cells["captured_at"],
                    status=status,
                    line=line,
                    extra={c: cells[c] for c in extra_columns},
                )
            )
    return records, extra_columns


def _write_records(
    manifest: Path, records: Sequence[QueueRecord], extra_columns: Sequence[str] = ()
) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=[*QUEUE_COLUMNS, *extra_columns], lineterminator="\n"
    )
    writer.writeheader()
    for record in records:
        writer.writerow(record.row())
    return atomic_write_text(manifest, buffer.getvalue())


def _boxes_json(detections: sv.Detections, source: str) -> list[dict[str, Any]]:
    confidence = _confidence(detections)
    return [
        {
            "xyxy": [round(float(v), 2) for v in box],
            "confidence": round(float(c), 4),
            "class_id": int(k),
            "source": source,
        }
        for box, c, k in zip(detections.xyxy, confidence, detections.class_id, strict=True)
    ]


def _detections_from_json(boxes: Any, where: Path, key: str) -> sv.Detections:
    if not isinstance(boxes, list):
        raise ValueError(f"{where}: '{key}' must be a list of boxes.")
    xyxy, confidence, class_id, source = [], [], [], []
    for n, box in enumerate(boxes):
        try:
            coords = [float(v) for v in box["xyxy"]]
            value, cid = float(box["confidence"]), int(box["class_id"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f"{where}: {key}[{n}] needs 'xyxy' (4 numbers), 'confidence' and 'class_id'."
            ) from None
        if len(coords) != 4 or not all(map(math.isfinite, coords)):
            raise ValueError(f"{where}: {key}[{n}]: 'xyxy' must be 4 finite numbers.")
        if coords[2] < coords[0] or coords[3] < coords[1]:
            raise ValueError(f"{where}: {key}[{n}]: box {coords} has x2 < x1 or y2 < y1.")
        xyxy.append(coords)
        confidence.append(value)
        class_id.append(cid)
        source.append(str(box.get("source", "model")))
    if not xyxy:
        return sv.Detections.empty()
    return sv.Detections(
        xyxy=np.array(xyxy, dtype=float).reshape(-1, 4),
        confidence=np.array(confidence, dtype=float),
        class_id=np.array(class_id, dtype=int),
        data={"source": np.array(source)},
    )


@dataclass(frozen=True)
class ReviewedSet:
    """What :meth:`RelabelQueue.apply_review` wrote.

    Attributes:
        root: The reviewed folder: ``images/`` and ``labels/`` (YOLO), ready for training.
        accepted: Ids accepted in this review.
        rejected: Ids rejected in this review.
        boxes: Label boxes written for the accepted frames.
        added: Of those, boxes the reviewer added (not proposed by the model).
    """

    root: Path
    accepted: tuple[str, ...]
    rejected: tuple[str, ...]
    boxes: int
    added: int

    @property
    def images(self) -> list[Path]:
        """Every image in the reviewed folder (this review's and earlier ones')."""
        return _reviewed_images(self.root)


class RelabelQueue:
    """A relabel queue folder: ``manifest.csv``, ``images/`` and ``proposals/``.

    :func:`capture_edge_cases` fills it; this class reads it, hands its frames to the reviewer
    and records the review. The manifest is read (and checked) on every call, so the object
    always shows what is on disk; a malformed manifest raises an error naming its file and line.

    Args:
        root: The queue folder.

    Raises:
        FileNotFoundError: If the folder has no ``manifest.csv``.
        ValueError: If the manifest is malformed.

    Example:
        >>> queue = RelabelQueue("workspace/data/relabel-queue")  # doctest: +SKIP
        >>> reviewer = PseudoLabelReviewer(queue.proposals(), PROJECT_CLASSES)  # doctest: +SKIP
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.manifest = self.root / MANIFEST
        self.records()

    def __repr__(self) -> str:
        return f"RelabelQueue({str(self.root)!r})"

    def __len__(self) -> int:
        return len(self.records())

    def records(self, *, status: str | None = None) -> list[QueueRecord]:
        """The manifest's rows, checked, optionally only those with one status.

        Raises:
            ValueError: If the manifest is malformed (the message names the file and line) or
                ``status`` is unknown.
        """
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}.")
        records, _ = _read_records(self.manifest)
        return [r for r in records if status is None or r.status == status]

    def table(self) -> pd.DataFrame:
        """The manifest as a table indexed by frame id (reasons joined with ``;``)."""
        import pandas as pd

        rows = []
        for record in self.records():
            row: dict[str, Any] = record.row()
            row.update(
                score=record.score, n_detections=record.n_detections,
                n_reference=record.n_reference,
            )  # fmt: skip
            rows.append(row)
        frame = pd.DataFrame(rows, columns=None if rows else list(QUEUE_COLUMNS))
        return frame.set_index("id")

    def detections(self, record: QueueRecord) -> sv.Detections:
        """The proposed boxes of a queued frame (``data["source"]``: ``model`` or ``reference``).

        Raises:
            ValueError: If its proposals file is not valid JSON or misses a field; the message
                names the file.
        """
        path = self.root / record.proposals
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}).") from None
        if not isinstance(content, dict) or "detections" not in content:
            raise ValueError(f"{path}: expected an object with 'detections'.")
        return _detections_from_json(content["detections"], path, "detections")

    def proposals(self, *, status: str | None = "pending") -> list[Proposal]:
        """The queued frames as proposals for notebook 03's reviewer, highest score first.

        Each proposal holds the deployed model's boxes at or above ``low`` plus the reference's
        boxes that the deployed model did not find, so the reviewer can keep a vehicle only
        the reference saw.

        Args:
            status: Only frames with this status (None: all).

        Returns:
            ``Proposal(image, detections)`` per frame, for
            ``PseudoLabelReviewer(queue.proposals(), PROJECT_CLASSES)``.
        """
        from tcv_helpers.data.widgets import Proposal

        records = sorted(self.records(status=status), key=lambda r: (-r.score, r.line))
        return [Proposal(image=self.root / r.image, detections=self.detections(r)) for r in records]

    def record_for(self, image: str | os.PathLike) -> QueueRecord:
        """The manifest row of a queued image file.

        Raises:
            KeyError: If the image is not in this queue.
        """
        target = Path(image).resolve()
        for record in self.records():
            if (self.root / record.image).resolve() == target:
                return record
        raise KeyError(f"{image} is not an image of the relabel queue {self.root}.")

    def apply_review(
        self,
        review: PseudoLabelReviewer | Mapping[str, sv.Detections | None],
        *,
        out_dir: str | os.PathLike,
        added: Mapping[str, sv.Detections] | None = None,
    ) -> ReviewedSet:
        """Writes the reviewed frames as YOLO images and labels, and marks the manifest.

        Accepted frames are copied to ``out_dir/images`` and their labels written to
        ``out_dir/labels`` (an accepted frame without boxes is a background frame); rejected
        frames are removed from ``out_dir`` if an earlier review had put them there; pending
        frames are left alone. Then the manifest's status column is updated. Every file is
        written atomically; the queue's images are only read.

        Args:
            review: A :class:`~tcv_helpers.data.widgets.PseudoLabelReviewer` built from
                :meth:`proposals` (its accepted frames keep their kept boxes with the class
                changes), or a mapping from frame id to the labels of an accepted frame, or
                None for a rejected one.
            out_dir: The reviewed folder (not the queue itself).
            added: Boxes the reviewer drew that no model proposed, by frame id (the widget can
                only keep, drop and re-class boxes; a labelling tool, or the synthetic truth in
                :func:`review_with_truth`, can add them). Only used for accepted frames.

        Returns:
            What was written.

        Raises:
            ValueError: If the reviewer holds an image that is not in this queue, an id is
                unknown, or ``out_dir`` is the queue folder.
        """
        out = Path(out_dir)
        if out.resolve() == self.root.resolve():
            raise ValueError(f"{out} is the queue itself: write the reviewed frames elsewhere.")
        records, extra_columns = _read_records(self.manifest)
        by_id = {r.id: r for r in records}
        decisions = self._decisions(review, by_id)
        extra = dict(added or {})
        unknown = sorted(set(extra) - set(by_id))
        if unknown:
            raise ValueError(f"added boxes for id(s) not in the queue {self.root}: {unknown}.")
        accepted, rejected, boxes, added_boxes = [], [], 0, 0
        for frame_id, labels in decisions.items():
            record = by_id[frame_id]
            source = self.root / record.image
            image_out = out / "images" / Path(record.image).name
            label_out = out / "labels" / f"{Path(record.image).stem}.txt"
            if labels is None:
                image_out.unlink(missing_ok=True)
                label_out.unlink(missing_ok=True)
                rejected.append(frame_id)
                continue
            more = extra.get(frame_id)
            if more is not None and len(more):
                _check_detections(more, f"added[{frame_id!r}]", need_confidence=False)
                added_boxes += len(more)
                labels = sv.Detections(
                    xyxy=np.vstack([labels.xyxy.reshape(-1, 4), more.xyxy.reshape(-1, 4)]),
                    class_id=np.concatenate(
                        [np.asarray(labels.class_id, int).reshape(-1), np.asarray(more.class_id)]
                    ),
                )
            lines = _label_lines(labels, self._size(record))
            boxes += len(lines)
            atomic_write_bytes(image_out, source.read_bytes())
            atomic_write_text(label_out, "".join(f"{line}\n" for line in lines))
            accepted.append(frame_id)
        status = {i: "accepted" for i in accepted} | {i: "rejected" for i in rejected}
        updated = [
            QueueRecord(**{**r.__dict__, "status": status.get(r.id, r.status)}) for r in records
        ]
        _write_records(self.manifest, updated, extra_columns)
        return ReviewedSet(
            root=out, accepted=tuple(accepted), rejected=tuple(rejected), boxes=boxes,
            added=added_boxes,
        )  # fmt: skip

    def _size(self, record: QueueRecord) -> tuple[int, int]:
        path = self.root / record.proposals
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
            return int(content["width"]), int(content["height"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise ValueError(f"{path}: needs the image's 'width' and 'height'.") from None

    def _decisions(
        self,
        review: PseudoLabelReviewer | Mapping[str, sv.Detections | None],
        by_id: Mapping[str, QueueRecord],
    ) -> dict[str, sv.Detections | None]:
        if isinstance(review, Mapping):
            unknown = sorted(set(review) - set(by_id))
            if unknown:
                raise ValueError(f"id(s) not in the relabel queue {self.root}: {unknown}.")
            for frame_id, labels in review.items():
                if labels is not None:
                    _check_detections(labels, f"review[{frame_id!r}]", need_confidence=False)
            return dict(review)
        by_image = {(self.root / r.image).resolve(): r.id for r in by_id.values()}
        decisions: dict[str, sv.Detections | None] = {}
        for index, proposal in enumerate(review.proposals):
            frame_id = by_image.get(Path(proposal.image).resolve())
            if frame_id is None:
                raise ValueError(
                    f"the reviewer's frame {proposal.image} is not an image of the relabel "
                    f"queue {self.root}: build the reviewer from queue.proposals()."
                )
            decision = review.state(index).decision
            if decision in ("accepted", "auto_accepted"):
                decisions[frame_id] = review.kept_detections(index)
            elif decision == "rejected":
                decisions[frame_id] = None
        return decisions


def _label_lines(labels: sv.Detections, size: tuple[int, int]) -> list[str]:
    """YOLO lines of boxes clipped to the image; boxes left without area are dropped."""
    from tcv_helpers.data.formats import LabeledImage, make_detections, yolo_lines

    width, height = size
    if not len(labels):
        return []
    xyxy = np.asarray(labels.xyxy, dtype=float).reshape(-1, 4).copy()
    xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, width)
    xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, height)
    keep = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
    image = LabeledImage(
        Path("frame"), width, height,
        make_detections(xyxy[keep], np.asarray(labels.class_id).reshape(-1)[keep]),
    )  # fmt: skip
    return yolo_lines(image)


def _reviewed_images(root: Path) -> list[Path]:
    folder = root / "images"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


# --------------------------------------------------------------------------------------------
# Capture
# --------------------------------------------------------------------------------------------


#: What :func:`capture_edge_cases` did with a frame.
OUTCOMES: tuple[str, ...] = ("added", "duplicate", "over budget", "not flagged")


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
    _check_thresholds(low, high, disagreement_iou, min_disagreement)
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
    records, extra_columns = _read_records(manifest) if manifest.is_file() else ([], [])
    known_ids = {r.id for r in records}
    known_sha = {r.sha256 for r in records if r.sha256}
    taken = {Path(r.image).stem for r in records}

    rows: list[dict[str, Any]] = []
    candidates: list[tuple[FrameScore, int]] = []
    for index, item in enumerate(items):
        what = f"predictions[{index}] (frame {item.id!r})"
        prediction = _check_detections(predictions[index], what, need_confidence=True)
        reference = None
        if reference_predictions is not None:
            reference = _check_detections(
                reference_predictions[index], f"reference_predictions[{index}]",
                need_confidence=False,
            )  # fmt: skip
        result = score_frame(
            prediction, reference, low=low, high=high, disagreement_iou=disagreement_iou,
            min_disagreement=min_disagreement,
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
        prediction = _at_least(predictions[index], low)
        boxes = _boxes_json(prediction, "model")
        reference_boxes = None
        if reference_predictions is not None:
            reference = _at_least(reference_predictions[index], low)
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
        _write_records(manifest, [*records, *new_records], extra_columns)
    return CaptureResult(queue=RelabelQueue(root), rows=rows, added=added)


# --------------------------------------------------------------------------------------------
# A simulated reviewer (offline: the synthetic truth stands in for a person)
# --------------------------------------------------------------------------------------------


def review_with_truth(
    queue: RelabelQueue,
    truth: Mapping[str, sv.Detections],
    *,
    class_names: Sequence[str] | Mapping[int, str] = PROJECT_CLASSES,
    iou: float = 0.5,
) -> tuple[PseudoLabelReviewer, dict[str, sv.Detections]]:
    """Reviews the pending frames of a queue with the true boxes, as a careful person would.

    **The synthetic ground truth stands in for the reviewer**: nobody sits at the widget in CI.
    For each pending frame a :class:`~tcv_helpers.data.widgets.PseudoLabelReviewer` is driven
    through its ordinary methods: a proposed box that overlaps a true box (IoU at least ``iou``,
    each true box used once, highest overlap first) is kept and given the true class; the other
    proposals are dropped; every frame is accepted. True boxes no proposal found are returned
    as ``added`` (a person would draw them in a labelling tool: the widget cannot add boxes).
    Kept boxes keep the model's coordinates, as in the widget.

    Args:
        queue: The relabel queue.
        truth: True boxes (``xyxy``, ``class_id``) by frame id, for every pending frame.
        class_names: Class names by id.
        iou: Least IoU for a proposal to count as a true box.

    Returns:
        The reviewer (its decisions made: show it with ``.widget()`` or pass it to
        :meth:`RelabelQueue.apply_review`) and the added boxes by frame id.

    Raises:
        KeyError: If a pending frame has no entry in ``truth``.
    """
    from tcv_helpers.data.widgets import PseudoLabelReviewer

    if not 0 < iou <= 1:
        raise ValueError(f"iou must be in (0, 1], got {iou!r}.")
    proposals = queue.proposals()
    reviewer = PseudoLabelReviewer(proposals, class_names, threshold=0.0)
    by_image = {(queue.root / r.image).resolve(): r for r in queue.records()}
    added: dict[str, sv.Detections] = {}
    for index, proposal in enumerate(proposals):
        record = by_image[proposal.image.resolve()]
        if record.id not in truth:
            raise KeyError(f"no true boxes for the queued frame {record.id!r} in truth.")
        true = _check_detections(truth[record.id], f"truth[{record.id!r}]", need_confidence=False)
        proposed = proposal.detections
        # Class-agnostic match: a box on the right vehicle with the wrong class is re-classed.
        pairs = match_boxes(
            sv.Detections(xyxy=proposed.xyxy, class_id=np.zeros(len(proposed), dtype=int)),
            sv.Detections(xyxy=true.xyxy, class_id=np.zeros(len(true), dtype=int)),
            iou=iou,
        )
        kept = dict(pairs)
        reviewer.set_kept(list(kept), index)
        for box, target in kept.items():
            reviewer.set_class(box, int(true.class_id[target]), index)
        reviewer.accept(index)
        found = set(kept.values())
        missing = np.array([j for j in range(len(true)) if j not in found], dtype=int)
        if len(missing):
            added[record.id] = sv.Detections(
                xyxy=np.asarray(true.xyxy, float)[missing],
                class_id=np.asarray(true.class_id, int)[missing],
            )
    return reviewer, added


# --------------------------------------------------------------------------------------------
# Retraining
# --------------------------------------------------------------------------------------------


def _read_data_yaml(data_yaml: Path) -> tuple[dict[str, Any], Path]:
    import yaml

    if not data_yaml.is_file():
        raise FileNotFoundError(f"{data_yaml} does not exist: is it the dataset's data.yaml?")
    try:
        data = yaml.safe_load(data_yaml.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{data_yaml}: not valid YAML ({exc}).") from None
    if not isinstance(data, dict):
        raise ValueError(f"{data_yaml}: expected a mapping with 'train', 'val' and 'names'.")
    for key in ("train", "val", "names"):
        if not data.get(key):
            raise ValueError(f"{data_yaml}: needs a '{key}' entry.")
    base = Path(str(data.get("path") or "."))
    base = base if base.is_absolute() else data_yaml.parent / base
    return data, base.resolve()


def _split_images(data: Mapping[str, Any], base: Path, data_yaml: Path, key: str) -> list[Path]:
    """The images a data.yaml entry names: folders, ``.txt`` lists, or a list of them."""
    entries = data[key] if isinstance(data[key], list) else [data[key]]
    found: list[Path] = []
    for entry in entries:
        target = Path(str(entry))
        target = target if target.is_absolute() else base / target
        if target.is_dir():
            found += sorted(
                p for p in target.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
        elif target.is_file() and target.suffix == ".txt":
            for line in target.read_text(encoding="utf-8").splitlines():
                text = line.strip()
                if not text:
                    continue
                listed = Path(text[2:]) if text.startswith("./") else Path(text)
                parent = target.parent if text.startswith("./") else base
                found.append(listed if listed.is_absolute() else parent / listed)
        else:
            raise FileNotFoundError(
                f"{data_yaml}: '{key}: {entry}' names {target}, which is missing."
            )
    return found


_LINKED = re.compile(r"^[rb]\d{6}-")


def _link(source: Path, target: Path) -> None:
    """``target`` becomes a symbolic link to ``source`` (a copy where links are impossible)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        target.symlink_to(source.resolve())
    except (OSError, NotImplementedError):
        atomic_write_bytes(target, source.read_bytes())


def _write_list(images: Sequence[Path], target: Path) -> Path:
    """An Ultralytics image list: absolute paths, links not resolved (unlike
    :func:`tcv_helpers.data.prep.write_image_list`, which would point back into the base dataset)."""
    return atomic_write_text(target, "".join(f"{p.absolute().as_posix()}\n" for p in images))


def merged_data_yaml(
    base_data_yaml: str | os.PathLike,
    reviewed_dir: str | os.PathLike,
    *,
    out_dir: str | os.PathLike,
    repeat: int = 1,
    base_images: int | None = None,
    seed: int = 0,
) -> Path:
    """A new ``data.yaml`` that trains on the base training images plus the reviewed frames.

    The training images are linked (symbolic links; copies where the file system has none)
    into ``out_dir/images`` with their labels copied to ``out_dir/labels``, and listed in
    ``out_dir/train.txt``: the reviewed frames first, each ``repeat`` times, then the base
    training images. ``out_dir/data.yaml`` holds the base file's entries with ``path`` made
    absolute and ``train`` replaced by that list, so validation and test are the base's, to
    the letter. The base dataset is only read: the links keep even Ultralytics' label cache of
    the new list (``out_dir/labels.cache``) out of it.

    Args:
        base_data_yaml: The original dataset's ``data.yaml``.
        reviewed_dir: A folder with ``images/`` and ``labels/`` (:meth:`RelabelQueue.apply_review`).
        out_dir: Where the links, the list and the new data.yaml go.
        repeat: How often each reviewed frame is listed (oversampling the few new frames).
        base_images: Use a random sample of this many base training images (None: all of them).
        seed: Seed of that sample.

    Returns:
        The new data.yaml.

    Raises:
        FileNotFoundError: If a file or folder named is missing, or a reviewed image has no
            label file.
        ValueError: If the base data.yaml is malformed, a reviewed label file is malformed (the
            message names file and line), there are no reviewed images, or ``repeat`` is
            below 1.
    """
    import yaml

    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, got {repeat!r}.")
    if base_images is not None and base_images < 0:
        raise ValueError(f"base_images must be None or at least 0, got {base_images!r}.")
    source = Path(base_data_yaml)
    data, base = _read_data_yaml(source)
    reviewed = _reviewed_images(Path(reviewed_dir))
    if not reviewed:
        raise ValueError(f"{reviewed_dir}: no reviewed images in images/ (apply a review first).")
    n_classes = len(data["names"])
    for image in reviewed:
        label = label_path_for(image)
        if not label.is_file():
            raise FileNotFoundError(f"{image} has no label file {label}.")
        read_yolo_labels(label, 1, 1, n_classes=n_classes)  # errors name the file and line
    train = _split_images(data, base, source, "train")
    reviewed_set = {p.resolve() for p in reviewed}
    train = [p for p in train if p.resolve() not in reviewed_set]
    if base_images is not None:
        train = random.Random(seed).sample(train, min(base_images, len(train)))
    out = Path(out_dir)
    for folder in (out / "images", out / "labels"):  # links of an earlier merge
        if folder.is_dir():
            for stale in folder.iterdir():
                if _LINKED.match(stale.name):
                    stale.unlink()
    linked: dict[str, list[Path]] = {"r": [], "b": []}
    for tag, images in (("r", reviewed), ("b", train)):
        for index, image in enumerate(images):
            link = out / "images" / f"{tag}{index:06d}-{image.name}"
            _link(image, link)
            label = label_path_for(image)
            if label.is_file():  # no label file: a background image, as in the base
                atomic_write_bytes(out / "labels" / f"{link.stem}.txt", label.read_bytes())
            linked[tag].append(link)
    listing = _write_list([*linked["r"] * repeat, *linked["b"]], out / "train.txt")
    merged = {k: v for k, v in data.items() if k not in ("path", "train")}
    merged = {"path": str(base), "train": str(listing.resolve()), **merged}
    header = (
        f"# {source.resolve()} with {len(reviewed)} reviewed frame(s) from "
        f"{Path(reviewed_dir).resolve()} (x{repeat}) added to train; val and test unchanged.\n"
    )
    return atomic_write_text(out / "data.yaml", header + yaml.safe_dump(merged, sort_keys=False))


@dataclass
class RetrainResult:
    """What :func:`retrain_with_queue` produced.

    Attributes:
        weights: The fine-tuned weights (``out_dir/<publish_as>``).
        data_yaml: The merged data.yaml it trained on.
        run: The training run (history, settings, timing).
        reviewed_images: Reviewed frames in the training list (each listed ``repeat`` times).
        base_images: Base training images in the list.
        control: The same fine-tune without the reviewed frames, when asked for: it tells
            what the extra epochs alone do.
    """

    weights: Path
    data_yaml: Path
    run: TrainResult
    reviewed_images: int
    base_images: int
    control: TrainResult | None = None

    def summary(self) -> dict[str, Any]:
        """Key numbers for ``record_metrics`` and tables."""
        return {
            "reviewed_images": self.reviewed_images,
            "base_images": self.base_images,
            "epochs": self.run.epochs,
            "retrain_seconds": round(self.run.seconds, 1),
        }


def retrain_with_queue(
    weights: str | os.PathLike,
    base_data_yaml: str | os.PathLike,
    reviewed_dir: str | os.PathLike,
    *,
    out_dir: str | os.PathLike,
    profile: Profile,
    epochs: int = 6,
    repeat: int = 4,
    base_images: int | None = None,
    seed: int = 0,
    name: str = "relabel",
    publish_as: str = "relabelled.pt",
    control: bool = False,
    **overrides: Any,
) -> RetrainResult:
    """Fine-tunes the current weights on the base training set plus the reviewed frames.

    The merged dataset (:func:`merged_data_yaml`) goes to ``out_dir/<name>-data/``; training is
    :func:`tcv_helpers.model.train.train` with the profile's settings, :data:`FINE_TUNE_ARGS`, a
    learning rate of :data:`FINE_TUNE_LR_SCALE` times the profile's, and ``overrides`` on top, from ``weights``, into ``out_dir/<name>/``; the best weights are copied
    to ``out_dir/<publish_as>`` (``out_dir/best.pt`` is left alone).

    Args:
        weights: The deployed model's ``.pt`` (inside ``out_dir``, or one
            :func:`tcv_helpers.model.train.resolve_model` trusts).
        base_data_yaml: The dataset the model was trained on.
        reviewed_dir: The reviewed frames (:meth:`RelabelQueue.apply_review`).
        out_dir: The workspace's models folder.
        profile: Supplies image size, batch and the optimiser settings.
        epochs: Fine-tuning epochs.
        repeat: How often each reviewed frame is listed for training.
        base_images: Train on a random sample of this many base images (None: all).
        seed: Seed of the sample and of training.
        name: Run name inside ``out_dir``.
        publish_as: File name in ``out_dir`` for the fine-tuned weights.
        control: Also run the same fine-tune on the base images alone (``out_dir/<name>-control``,
            with ``data-control.yaml``), to tell the reviewed frames' effect from the extra
            epochs'.
        **overrides: Any Ultralytics training argument (``lr0=...``, ``freeze=10``...).

    Returns:
        The new weights, the merged data.yaml and the run(s).

    Raises:
        FileNotFoundError: If ``weights`` or a dataset file is missing.
        ValueError: See :func:`merged_data_yaml`.
    """
    from tcv_helpers.model.train import train

    start = Path(weights)
    if not start.is_file():
        raise FileNotFoundError(f"{start} does not exist: which weights are deployed?")
    out = Path(out_dir)
    data_dir = out / f"{name}-data"
    data_yaml = merged_data_yaml(
        base_data_yaml, reviewed_dir, out_dir=data_dir, repeat=repeat, base_images=base_images,
        seed=seed,
    )  # fmt: skip
    listed = [ln for ln in (data_dir / "train.txt").read_text(encoding="utf-8").splitlines() if ln]
    n_reviewed = len(_reviewed_images(Path(reviewed_dir)))
    settings = {**FINE_TUNE_ARGS, "lr0": profile.lr0 * FINE_TUNE_LR_SCALE, **overrides}
    common: dict[str, Any] = {"profile": profile, "out_dir": out, "model": start, "epochs": epochs,
                              "seed": seed, **settings}  # fmt: skip
    run = train(data_yaml, name=name, publish_as=publish_as, **common)
    control_run = None
    if control:
        base_only = [Path(line) for line in listed[n_reviewed * repeat :]]
        listing = _write_list(base_only, data_dir / "train-control.txt")
        text = data_yaml.read_text(encoding="utf-8").replace(
            str((data_dir / "train.txt").resolve()), str(listing.resolve())
        )
        control_yaml = atomic_write_text(data_dir / "data-control.yaml", text)
        control_run = train(control_yaml, name=f"{name}-control", publish_as=None, **common)
    return RetrainResult(
        weights=run.best, data_yaml=data_yaml, run=run, reviewed_images=n_reviewed,
        base_images=len(listed) - n_reviewed * repeat, control=control_run,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Before and after
# --------------------------------------------------------------------------------------------


EvalSet = str | os.PathLike | tuple[Sequence[str | os.PathLike], Sequence[sv.Detections]]


@dataclass
class ModelComparison:
    """Models scored on evaluation sets (:func:`compare_models`).

    Attributes:
        rows: One per (set, model): mAP50, mAP50-95, precision, recall, images, boxes.
        models: Model names in order (``before``, ``after``, then any others).
    """

    rows: list[dict[str, Any]]
    models: tuple[str, ...]

    def to_pandas(self) -> pd.DataFrame:
        """Every number, one row per (set, model)."""
        import pandas as pd

        return pd.DataFrame(self.rows).set_index(["set", "model"])

    def table(self, metric: str = "map50") -> pd.DataFrame:
        """One row per evaluation set, one column per model, and the change after - before.

        Raises:
            KeyError: For an unknown metric.
        """
        frame = self.to_pandas()
        if metric not in frame:
            raise KeyError(f"unknown metric {metric!r}; there are {', '.join(frame.columns)}.")
        wide = frame[metric].unstack("model")[list(self.models)]
        wide = wide.loc[list(dict.fromkeys(r["set"] for r in self.rows))]
        wide["change"] = wide[self.models[1]] - wide[self.models[0]]
        wide.columns.name = metric
        return wide

    def change(self, eval_set: str, metric: str = "map50") -> float:
        """After minus before on one set."""
        return float(self.table(metric).loc[eval_set, "change"])

    def plot(self, metric: str = "map50") -> Figure:
        """Grouped bars: the metric of each model on each set, values written on the bars."""
        wide = self.table(metric)
        fig = Figure(figsize=(max(5.0, 2.2 * len(wide)), 3.6))
        ax = fig.subplots()
        width = 0.8 / len(self.models)
        positions = np.arange(len(wide))
        for k, model in enumerate(self.models):
            values = wide[model].to_numpy(dtype=float)
            bars = ax.bar(positions + (k - (len(self.models) - 1) / 2) * width, values, width,
                          label=model)  # fmt: skip
            ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], fontsize=8, padding=2)
        ax.set_xticks(positions, list(wide.index))
        ax.set_ylim(0, 1)
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} before and after the relabel loop")
        ax.legend()
        fig.tight_layout()
        return fig


def _eval_set(
    name: str, spec: Any, split: str
) -> tuple[list[Path], list[sv.Detections], list[str] | None]:
    from tcv_helpers.model.evaluate import load_ground_truth

    if isinstance(spec, str | os.PathLike):
        paths, truth, names = load_ground_truth(spec, split)
        return list(paths), list(truth), list(names)
    if isinstance(spec, tuple) and len(spec) == 2:
        paths, truth = spec
        if len(paths) != len(truth):
            raise ValueError(f"eval set {name!r}: {len(paths)} images but {len(truth)} truths.")
        return [Path(p) for p in paths], list(truth), None
    raise TypeError(
        f"eval set {name!r}: give a data.yaml (or dataset folder) or (image paths, truths)."
    )


def compare_models(
    before: str | os.PathLike | Any,
    after: str | os.PathLike | Any,
    eval_sets: Mapping[str, EvalSet],
    *,
    imgsz: int,
    split: str = "val",
    class_names: Sequence[str] = PROJECT_CLASSES,
    names: tuple[str, str] = ("before", "after"),
    others: Mapping[str, str | os.PathLike | Any] | None = None,
    device: str = "cpu",
) -> ModelComparison:
    """Scores the model before and after retraining on each evaluation set.

    Each model predicts every set's images (:func:`tcv_helpers.model.predict.predict_yolo`) and is
    scored by :func:`tcv_helpers.model.evaluate.evaluate_detections` (COCO mAP via pycocotools).

    Args:
        before: Weights (or a YOLO object) before the loop.
        after: Weights after it.
        eval_sets: Name to a dataset (``data.yaml`` or its folder; its ``split`` is used) or to
            ``(image paths, true sv.Detections)``.
        imgsz: Inference size (the training size).
        split: The split of datasets given as data.yaml.
        class_names: Class names for sets given as paths and truths.
        names: What to call the two models.
        others: More models to score beside them (e.g. ``{"control": ...}``).
        device: Inference device.

    Returns:
        The comparison (:meth:`ModelComparison.table`, :meth:`ModelComparison.plot`).

    Raises:
        ValueError: If there is no evaluation set, names repeat, or a set has no true box.
    """
    from tcv_helpers.model.evaluate import evaluate_detections
    from tcv_helpers.model.predict import load_yolo, predict_yolo

    if not eval_sets:
        raise ValueError("compare_models needs at least one evaluation set.")
    models = {names[0]: before, names[1]: after, **dict(others or {})}
    if len(models) != 2 + len(others or {}):
        raise ValueError(f"model names must differ: {names} and {list(others or {})}.")
    loaded = {label: load_yolo(model) for label, model in models.items()}
    rows = []
    for set_name, spec in eval_sets.items():
        paths, truth, set_classes = _eval_set(set_name, spec, split)
        classes = set_classes or list(class_names)
        for label, model in loaded.items():
            predictions = predict_yolo(model, paths, imgsz=imgsz, device=device)
            result = evaluate_detections(truth, predictions, classes)
            rows.append(
                {
                    "set": set_name, "model": label, "map50": result.map50,
                    "map50_95": result.map50_95, "precision": result.precision,
                    "recall": result.recall, "images": len(paths),
                    "boxes": sum(len(t) for t in truth),
                }
            )  # fmt: skip
    return ModelComparison(rows=rows, models=tuple(models))


# --------------------------------------------------------------------------------------------
# Offline demonstration data
# --------------------------------------------------------------------------------------------


#: File names :func:`condition_set` writes (and replaces on the next call).
_GENERATED = re.compile(r"^cam-\d+_[a-z]+_(production|val)_\d{5}\.(jpg|txt)$")


@dataclass(frozen=True)
class ConditionSet:
    """Synthetic frames of one condition with their true boxes (:func:`condition_set`).

    Attributes:
        root: The folder.
        data_yaml: Its data.yaml: ``val`` is the held-out set; ``train`` names the production
            frames (Ultralytics needs a train entry; the loop trains only on what review accepts).
        manifest: ``manifest.csv`` (image, camera_id, timestamp, source, condition, split, boxes).
        condition: ``day``, ``night``, ``rain`` or ``fog``.
    """

    root: Path
    data_yaml: Path
    manifest: Path
    condition: str

    def frames(self, split: str = "production") -> list[Frame]:
        """The frames of a split as :class:`Frame` objects (id: file stem; camera and time).

        Raises:
            ValueError: If the split is not ``production`` or ``val``.
        """
        if split not in ("production", "val"):
            raise ValueError(f"split must be 'production' or 'val', got {split!r}.")
        with self.manifest.open(encoding="utf-8", newline="") as handle:
            rows = [r for r in csv.DictReader(handle) if r["split"] == split]
        return [
            Frame(id=Path(r["image"]).stem, image=self.root / r["image"], camera=r["camera_id"],
                  captured_at=r["timestamp"])
            for r in rows
        ]  # fmt: skip

    def truth(self, split: str = "production") -> dict[str, sv.Detections]:
        """True boxes by frame id."""
        from tcv_helpers.model.evaluate import load_ground_truth

        paths, truth, _ = load_ground_truth(self.root, split)
        return {Path(p).stem: t for p, t in zip(paths, truth, strict=True)}


def condition_set(
    out_dir: str | os.PathLike,
    *,
    condition: str = "night",
    production: int = 120,
    validation: int = 60,
    cameras: Iterable[int] = range(8),
    val_cameras: Iterable[int] | None = (8, 9),
    seed: int = 1,
    dataset_seed: int = 0,
    width: int = 640,
    height: int = 360,
) -> ConditionSet:
    """Makes the offline story of notebook 09: production frames of a condition, and a held-out set.

    Frames come from the cameras of the course's synthetic dataset (``tcv data synth`` with
    ``dataset_seed``), drawn in ``condition`` with new traffic, and are written in the YOLO
    layout with their true boxes: ``images/production`` (what the cameras send: it goes
    through capture, review and retraining) and ``images/val`` (held out, scored before and
    after). Production frames are spread over ``cameras``, the held-out ones over
    ``val_cameras``; timestamps fall in the condition's hours (night: 21:00-04:59).

    Args:
        out_dir: The folder (created; frames of an earlier call are replaced, not mixed in).
        condition: ``day``, ``night``, ``rain`` or ``fog``.
        production: Production frames.
        validation: Held-out frames.
        cameras: Camera indices of the production frames.
        val_cameras: Camera indices of the held-out frames (None: the same cameras as the
            production frames, other moments). The defaults follow the course's 12-camera
            set: production from its training cameras 0-7, held out on its validation
            cameras 8-9, so an improvement there is about the condition, not about scenes
            the model has seen.
        seed: Seed of the traffic and noise.
        dataset_seed: Seed of the synthetic dataset whose cameras are used.
        width: Frame width.
        height: Frame height.

    Returns:
        The set, with its data.yaml and manifest.

    Raises:
        ValueError: On an unknown condition, a negative count or an empty camera list.
    """
    import yaml

    from tcv_helpers.data.formats import LabeledImage, make_detections, yolo_lines
    from tcv_helpers.data.synth import CONDITIONS, START, draw_frame, make_camera, random_vehicles

    if condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {', '.join(CONDITIONS)}, got {condition!r}.")
    if production < 0 or validation < 0:
        raise ValueError("production and validation must not be negative.")
    production_cams = list(cameras)
    held_out_cams = production_cams if val_cameras is None else list(val_cameras)
    if not production_cams or not held_out_cams:
        raise ValueError("cameras and val_cameras must not be empty.")
    root = Path(out_dir).resolve()
    rows = []
    for split_index, (split, count, cams) in enumerate(
        (("production", production, production_cams), ("val", validation, held_out_cams))
    ):
        for kind in ("images", "labels"):
            folder = root / kind / split
            folder.mkdir(parents=True, exist_ok=True)
            for stale in folder.iterdir():  # frames of an earlier call, which would mix in
                if _GENERATED.match(stale.name):
                    stale.unlink()
        for k in range(count):
            camera = make_camera(cams[k % len(cams)], seed=dataset_seed, width=width, height=height)
            rng = np.random.default_rng([seed, split_index, k, 4099])
            hour = (
                int(rng.integers(21, 29)) % 24 if condition == "night" else int(rng.integers(7, 19))
            )
            day = START + timedelta(days=int(rng.integers(0, 60)))
            when = day.replace(
                hour=hour, minute=int(rng.integers(60)), second=int(rng.integers(60))
            )
            frame = draw_frame(
                camera, random_vehicles(camera, rng, int(rng.integers(3, 13))),
                condition=condition, timestamp=when, noise_seed=int(rng.integers(2**31)),
            )  # fmt: skip
            stem = f"{camera.camera_id}_{condition}_{split}_{k:05d}"
            buffer = io.BytesIO()
            frame.image.save(buffer, format="JPEG", quality=int(rng.integers(55, 92)))
            atomic_write_bytes(root / "images" / split / f"{stem}.jpg", buffer.getvalue())
            labels = LabeledImage(
                Path(f"{stem}.jpg"), width, height, make_detections(frame.boxes, frame.class_ids)
            )
            lines = yolo_lines(labels)
            atomic_write_text(
                root / "labels" / split / f"{stem}.txt", "".join(f"{ln}\n" for ln in lines)
            )
            rows.append([f"images/{split}/{stem}.jpg", camera.camera_id, when.isoformat(),
                         "synthetic", condition, split, len(lines)])  # fmt: skip
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*MANIFEST_COLUMNS, "boxes"])
    writer.writerows(rows)
    manifest = atomic_write_text(root / "manifest.csv", buffer.getvalue())
    data = {
        "path": str(root),
        "train": "images/production",
        "val": "images/val",
        "names": dict(enumerate(PROJECT_CLASSES)),
    }
    header = (
        f"# Synthetic {condition} frames (tcv_helpers.monitor.relabel.condition_set). val: held out;\n"
        "# train: the production frames, whose labels only simulate the reviewer.\n"
    )
    data_yaml = atomic_write_text(
        root / "data.yaml", header + yaml.safe_dump(data, sort_keys=False)
    )
    return ConditionSet(root=root, data_yaml=data_yaml, manifest=manifest, condition=condition)
