"""Which production frames deserve a person's review (notebook 09, the relabel loop's step 1).

A deployed model meets frames it was not trained for (night, rain, a moved camera). A person
can review only a few of them, so :func:`score_frame` picks those worth the time: frames with
uncertain boxes (a confidence between :data:`LOW` and :data:`HIGH`), frames where the model
saw nothing a reference model saw (the PyTorch model behind an INT8 service, or the previous
model version), and frames where the two disagree (``1 - F1`` of :func:`match_boxes`, see
:func:`disagreement`). :class:`Frame` is a production frame as the loop passes it around;
:func:`tcv_helpers.monitor.capture.capture_edge_cases` scores a batch of them and queues the
flagged ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv

#: Why a frame is queued: uncertain boxes; no confident box where the reference has one; the
#: deployed model and the reference disagree.
REASONS: tuple[str, ...] = ("uncertain", "missed", "disagreement", "empty")
#: Boxes below this confidence are ignored; from it up to :data:`HIGH` they are uncertain.
LOW = 0.25
#: Boxes at or above this confidence are confident.
HIGH = 0.6
#: IoU at which a deployed box and a reference box of the same class are the same object.
DISAGREEMENT_IOU = 0.5
#: Disagreement (1 - F1 of the match) at which a frame is queued.
MIN_DISAGREEMENT = 0.25


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


def confidences(detections: sv.Detections) -> np.ndarray:
    """The confidence of each box, 1.0 for detections without any (ground truth as a reference).

    Args:
        detections: Boxes, with or without ``confidence``.

    Returns:
        One float per box.
    """
    if detections.confidence is None:
        return np.ones(len(detections), dtype=float)
    return np.asarray(detections.confidence, dtype=float)


def check_detections(detections: Any, what: str, *, need_confidence: bool) -> sv.Detections:
    """Checks that ``detections`` are boxes the relabel loop can use.

    Args:
        detections: The value to check.
        what: What it is (``predictions[3]``...), for the error.
        need_confidence: Whether boxes need a ``confidence`` (model predictions do).

    Returns:
        The detections, unchanged.

    Raises:
        TypeError: If it is not an ``sv.Detections``.
        ValueError: If boxes lack ``class_id``, or ``confidence`` when it is needed.
    """
    if not isinstance(detections, sv.Detections):
        raise TypeError(f"{what}: expected sv.Detections, got {type(detections).__name__}.")
    if len(detections) and detections.class_id is None:
        raise ValueError(f"{what}: detections need class_id.")
    if need_confidence and len(detections) and detections.confidence is None:
        raise ValueError(f"{what}: detections need confidence (model predictions).")
    return detections


def at_least(detections: sv.Detections, conf: float) -> sv.Detections:
    """The boxes at least ``conf`` confident (boxes without a confidence count as 1.0).

    Args:
        detections: Boxes.
        conf: Least confidence kept.

    Returns:
        The kept boxes.
    """
    return detections[confidences(detections) >= conf] if len(detections) else detections


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
    a, b = at_least(predictions, conf), at_least(reference, conf)
    if not len(a) and not len(b):
        return 0.0
    matched = len(match_boxes(a, b, iou=iou))
    return 1.0 - 2.0 * matched / (len(a) + len(b))


def _entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def check_thresholds(low: float, high: float, disagreement_iou: float, min_dis: float) -> None:
    """Checks the thresholds of :func:`score_frame`.

    Args:
        low: Least confidence of a box that counts.
        high: Confidence from which a box is confident.
        disagreement_iou: IoU of a match between two models.
        min_dis: Disagreement that queues a frame.

    Raises:
        ValueError: Unless ``0 <= low < high <= 1`` and the other two are in (0, 1].
    """
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
    flag_empty: bool = False,
) -> FrameScore:
    """Decides whether one frame needs review, and why.

    * ``uncertain``: a deployed box has a confidence in ``[low, high)``;
    * ``missed``: the deployed model has no box at ``high`` or more, the reference has one;
    * ``disagreement``: ``1 - F1`` of matching the two models' boxes at ``low`` or more (same
      class, IoU at least ``disagreement_iou``) reaches ``min_disagreement``;
    * ``empty`` (with ``flag_empty``, and no reference to compare with): the deployed model has
      no box at ``low`` or more at all. On a traffic camera that is most often vehicles missed
      (a model that has not learned the new condition sees nothing, so it is never
      "uncertain"); a road that really is empty is confirmed at a glance by the reviewer.

    Boxes below ``low`` are noise and take no part.

    Args:
        predictions: The deployed model's boxes for the frame (with ``confidence``).
        reference: A second model's boxes for the same frame, or None.
        low: Least confidence of a box that counts.
        high: Confidence from which a box is confident.
        disagreement_iou: IoU of a match between the two models.
        min_disagreement: Disagreement that queues the frame.
        flag_empty: Queue a frame without any box at ``low`` or more (score 1, as a miss)
            when there is no reference.

    Returns:
        The reasons, the priority score and the counts behind them.

    Raises:
        ValueError: On thresholds out of range, or detections without class ids or confidences.
    """
    check_thresholds(low, high, disagreement_iou, min_disagreement)
    check_detections(predictions, "predictions", need_confidence=True)
    confidence = confidences(predictions)
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
        check_detections(reference, "reference", need_confidence=False)
        ref_conf = confidences(reference)
        n_reference = int((ref_conf >= low).sum())
        if not (confidence >= high).any() and (ref_conf >= high).any():
            reasons.append("missed")
            score = 1.0
        gap = disagreement(predictions, reference, iou=disagreement_iou, conf=low)
        if gap >= min_disagreement:
            reasons.append("disagreement")
        score = max(score, gap)
    elif flag_empty and not counted.any():
        reasons.append("empty")
        score = 1.0
    return FrameScore(
        reasons=tuple(reasons),
        score=round(float(score), 6) if reasons else 0.0,
        uncertainty=round(uncertainty, 6),
        disagreement=None if gap is None else round(gap, 6),
        n_detections=int(counted.sum()),
        n_uncertain=len(uncertain),
        n_reference=n_reference,
    )
