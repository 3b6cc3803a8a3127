"""The relabel queue on disk and its review (notebook 09, the relabel loop's step 2).

A relabel queue is a folder: ``images/`` (copies of the frames, never the originals),
``proposals/`` (the models' boxes as JSON) and ``manifest.csv`` (one row per frame, with its
reasons, score and review status; :data:`QUEUE_COLUMNS`).
:func:`tcv_helpers.monitor.capture.capture_edge_cases` fills it; :class:`RelabelQueue` opens
it: :meth:`~RelabelQueue.proposals` feeds notebook 03's
:class:`~tcv_helpers.data.reviewer.PseudoLabelReviewer`, and :meth:`~RelabelQueue.apply_review`
turns its decisions into a YOLO folder of reviewed frames and marks the manifest.

Offline, :func:`review_with_truth` lets the synthetic truth stand in for the person reviewing
(:func:`tcv_helpers.monitor.conditions.condition_set` makes frames with their true boxes), so
the whole loop runs in CI.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import supervision as sv

from tcv_helpers.data.labels import IMAGE_SUFFIXES
from tcv_helpers.io import atomic_write_bytes, atomic_write_text
from tcv_helpers.monitor.edge_cases import REASONS, check_detections, match_boxes
from tcv_helpers.project import PROJECT_CLASSES

if TYPE_CHECKING:
    import pandas as pd

    from tcv_helpers.data.reviewer import Proposal, PseudoLabelReviewer

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


def read_queue_records(manifest: Path) -> tuple[list[QueueRecord], list[str]]:
    """Parses and checks a queue's ``manifest.csv``; errors name the file and the line.

    Args:
        manifest: The manifest file.

    Returns:
        ``(records, extra_columns)``: the rows in file order, and the columns beyond
        :data:`QUEUE_COLUMNS` (kept as they are when the manifest is rewritten).

    Raises:
        FileNotFoundError: If the manifest, or an image or proposal file it names, is missing.
        ValueError: On a missing column, a repeated or empty id, a path outside the queue, an
            unknown reason or status, or a cell that is not a valid number.
    """
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


def write_queue_records(
    manifest: Path, records: Sequence[QueueRecord], extra_columns: Sequence[str] = ()
) -> Path:
    """Writes a queue's ``manifest.csv`` (atomically) from its records.

    Args:
        manifest: The manifest file.
        records: The rows, in order.
        extra_columns: Columns beyond :data:`QUEUE_COLUMNS`, after them.

    Returns:
        The manifest path.
    """
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=[*QUEUE_COLUMNS, *extra_columns], lineterminator="\n"
    )
    writer.writeheader()
    for record in records:
        writer.writerow(record.row())
    return atomic_write_text(manifest, buffer.getvalue())


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
        return reviewed_images(self.root)


class RelabelQueue:
    """A relabel queue folder: ``manifest.csv``, ``images/`` and ``proposals/``.

    :func:`~tcv_helpers.monitor.capture.capture_edge_cases` fills it; this class reads it, hands
    its frames to the reviewer and records the review. The manifest is read (and checked) on
    every call, so the object always shows what is on disk; a malformed manifest raises an error
    naming its file and line.

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
        records, _ = read_queue_records(self.manifest)
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
        from tcv_helpers.data.reviewer import Proposal

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
            review: A :class:`~tcv_helpers.data.reviewer.PseudoLabelReviewer` built from
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
        records, extra_columns = read_queue_records(self.manifest)
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
                check_detections(more, f"added[{frame_id!r}]", need_confidence=False)
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
        write_queue_records(self.manifest, updated, extra_columns)
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
                    check_detections(labels, f"review[{frame_id!r}]", need_confidence=False)
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
    from tcv_helpers.data.labelset import LabeledImage, make_detections
    from tcv_helpers.data.yolo import yolo_lines

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


def reviewed_images(root: Path) -> list[Path]:
    """The images of a reviewed folder (:meth:`RelabelQueue.apply_review`), sorted.

    Args:
        root: The reviewed folder.

    Returns:
        The image files in ``root/images``; none when the folder is missing.
    """
    folder = root / "images"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


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
    For each pending frame a :class:`~tcv_helpers.data.reviewer.PseudoLabelReviewer` is driven
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
    from tcv_helpers.data.reviewer import PseudoLabelReviewer

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
        true = check_detections(truth[record.id], f"truth[{record.id!r}]", need_confidence=False)
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
