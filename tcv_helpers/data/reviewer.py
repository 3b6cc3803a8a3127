"""The pseudo-label reviewer widget: accept, reject and edit boxes a model proposed.

The accepted frames are written as a YOLO dataset with an audit trail (``review.csv``). See
:mod:`tcv_helpers.data.widgets` for how the widgets are built.
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np
import supervision as sv
from PIL import Image

from tcv_helpers.data.widgets import Listeners, annotate, class_map, message_image, png_bytes
from tcv_helpers.io import atomic_write_bytes, atomic_write_text

#: Decisions a reviewed image can carry.
DECISIONS: tuple[str, ...] = ("pending", "accepted", "auto_accepted", "rejected")


#: Why auto-accepting is a shortcut with a cost; the reviewer widget shows it beside the button.
AUTO_ACCEPT_RISK = (
    "Auto-accept trusts the model where it is confident, but confident mistakes (a wrong class, "
    "a box around a shadow) go straight into the training data, and vehicles the model missed "
    "have no box and no confidence at all, so no threshold can catch them. Training on these "
    "labels teaches the model its own errors. Spot-check a sample of auto-accepted frames."
)


REVIEW_COLUMNS: tuple[str, ...] = (
    "image",
    "decision",
    "boxes_proposed",
    "boxes_kept",
    "reviewer_changes",
)


_DROPPED_COLOUR = sv.Color.from_hex("#9e9e9e")


@dataclass(frozen=True)
class Proposal:
    """A frame and the boxes a model proposed for it.

    Attributes:
        image: The image file (never modified).
        detections: Proposed boxes with ``class_id`` and ``confidence``.
    """

    image: Path
    detections: sv.Detections


@dataclass
class ReviewState:
    """What the reviewer decided about one frame.

    Attributes:
        decision: ``pending``, ``accepted``, ``auto_accepted`` or ``rejected``.
        dropped: Indices of boxes the reviewer removed.
        class_changes: New class id by box index.
        threshold: The confidence threshold frozen when the frame was decided (None while
            pending: pending frames follow the reviewer's current threshold).
    """

    decision: str = "pending"
    dropped: set[int] = field(default_factory=set)
    class_changes: dict[int, int] = field(default_factory=dict)
    threshold: float | None = None


@dataclass(frozen=True)
class ReviewProgress:
    """How far the review is.

    Attributes:
        reviewed: Frames with a decision.
        total: All frames.
        accepted: Frames accepted, by hand or automatically.
        rejected: Frames rejected.
    """

    reviewed: int
    total: int
    accepted: int
    rejected: int

    @property
    def pending(self) -> int:
        """Frames still without a decision."""
        return self.total - self.reviewed

    def __str__(self) -> str:
        return (
            f"{self.reviewed}/{self.total} reviewed: {self.accepted} accepted, "
            f"{self.rejected} rejected, {self.pending} pending"
        )


def _as_proposal(item: Proposal | tuple[Any, sv.Detections]) -> Proposal:
    if isinstance(item, Proposal):
        return item
    if isinstance(item, tuple) and len(item) == 2:
        return Proposal(image=Path(item[0]), detections=item[1])
    raise TypeError(f"expected a Proposal or an (image path, sv.Detections) pair, got {item!r}.")


class PseudoLabelReviewer:
    """Reviews model-proposed boxes ("pseudo-labels") frame by frame before they become labels.

    For each frame the reviewer can accept its boxes, reject the frame, drop single boxes,
    change a box's class, and set a confidence threshold below which boxes are not shown and
    not kept. Boxes keep the number they were proposed with, so "#3" means the same box
    whatever is dropped or filtered.

    The threshold applies to pending frames; deciding a frame freezes the threshold in effect
    then, so what is saved is what the reviewer saw. :meth:`reset` makes a frame pending again.
    Navigation **stops at the ends** (``next()`` on the last frame stays there).

    Args:
        proposals: ``Proposal`` objects or ``(image path, sv.Detections)`` pairs; detections need
            ``class_id`` and ``confidence``.
        class_names: Class names by id (a mapping, or a list indexed by id).
        threshold: Initial confidence threshold (0-1).

    Raises:
        FileNotFoundError: If an image is missing.
        ValueError: If detections lack class ids or confidences, use an unknown class id, or two
            frames share a file name (the output folder is flat).

    Example:
        >>> reviewer = PseudoLabelReviewer(proposals, ["car", "truck"])  # doctest: +SKIP
        >>> reviewer.widget(out_dir="data/pseudo")  # doctest: +SKIP
    """

    def __init__(
        self,
        proposals: Iterable[Proposal | tuple[Any, sv.Detections]],
        class_names: Mapping[int, str] | Sequence[str],
        *,
        threshold: float = 0.0,
    ) -> None:
        self.proposals: tuple[Proposal, ...] = tuple(_as_proposal(p) for p in proposals)
        self.class_names: dict[int, str] = class_map(class_names)
        by_name: dict[str, Path] = {}
        self._sizes: list[tuple[int, int]] = []
        self._confidence: list[np.ndarray] = []
        self._class_id: list[np.ndarray] = []
        for proposal in self.proposals:
            path, det = proposal.image, proposal.detections
            if not path.is_file():
                raise FileNotFoundError(f"{path} does not exist.")
            if path.name in by_name:
                raise ValueError(
                    f"{path} and {by_name[path.name]} share the file name {path.name}: "
                    "rename one, the output folder is flat."
                )
            by_name[path.name] = path
            if det.class_id is None or det.confidence is None:
                raise ValueError(f"{path}: detections need class_id and confidence.")
            unknown = sorted({int(i) for i in det.class_id} - set(self.class_names))
            if unknown:
                raise ValueError(
                    f"{path}: class id(s) {unknown} not in the class names {self.class_names}."
                )
            with Image.open(path) as image:
                self._sizes.append(image.size)
            self._confidence.append(np.asarray(det.confidence, dtype=float))
            self._class_id.append(np.asarray(det.class_id, dtype=int))
        self._states = [ReviewState() for _ in self.proposals]
        self._threshold = self._check_threshold(threshold)
        self._index = 0
        self._listeners = Listeners()
        self.controls: ReviewerControls | None = None

    # -- state ---------------------------------------------------------------------------------

    @staticmethod
    def _check_threshold(value: float) -> float:
        value = float(value)
        if not 0 <= value <= 1:
            raise ValueError(f"threshold must be between 0 and 1, got {value!r}.")
        return value

    @property
    def threshold(self) -> float:
        """The confidence threshold for pending frames (boxes below it are not kept)."""
        return self._threshold

    def set_threshold(self, value: float) -> None:
        """Sets the confidence threshold that pre-filters the boxes of pending frames.

        Raises:
            ValueError: If ``value`` is outside 0-1.
        """
        self._threshold = self._check_threshold(value)
        self._listeners.notify()

    @property
    def index(self) -> int:
        """Position of the frame under review."""
        return self._index

    @property
    def current(self) -> Proposal:
        """The frame under review.

        Raises:
            LookupError: If there are no proposals.
        """
        if not self.proposals:
            raise LookupError("There are no proposals to review.")
        return self.proposals[self._index]

    def _resolve(self, index: int | None) -> int:
        if not self.proposals:
            raise LookupError("There are no proposals to review.")
        if index is None:
            return self._index
        if not -len(self.proposals) <= index < len(self.proposals):
            raise IndexError(f"frame {index} is outside the {len(self.proposals)} proposals.")
        return index % len(self.proposals)

    def state(self, index: int | None = None) -> ReviewState:
        """The review state of a frame (the current one when ``index`` is None)."""
        return self._states[self._resolve(index)]

    @property
    def progress(self) -> ReviewProgress:
        """Reviewed / total, accepted and rejected counts."""
        decisions = Counter(s.decision for s in self._states)
        accepted = decisions["accepted"] + decisions["auto_accepted"]
        return ReviewProgress(
            reviewed=accepted + decisions["rejected"],
            total=len(self._states),
            accepted=accepted,
            rejected=decisions["rejected"],
        )

    # -- navigation ----------------------------------------------------------------------------

    def go_to(self, index: int) -> Proposal:
        """Makes frame ``index`` current (negative indices count from the end).

        Raises:
            IndexError: If the index is outside the proposals.
        """
        self._index = self._resolve(index)
        self._listeners.notify()
        return self.current

    def next(self) -> bool:
        """Moves to the next frame; returns False (and stays) on the last one."""
        if self._index + 1 >= len(self.proposals):
            return False
        self._index += 1
        self._listeners.notify()
        return True

    def previous(self) -> bool:
        """Moves to the previous frame; returns False (and stays) on the first one."""
        if self._index == 0:
            return False
        self._index -= 1
        self._listeners.notify()
        return True

    # -- boxes ---------------------------------------------------------------------------------

    def _threshold_of(self, index: int) -> float:
        frozen = self._states[index].threshold
        return self._threshold if frozen is None else frozen

    def visible_boxes(self, index: int | None = None) -> list[int]:
        """Indices of the boxes at or above the frame's threshold (dropped ones included)."""
        i = self._resolve(index)
        confidence = self._confidence[i]
        threshold = self._threshold_of(i)
        return [b for b, c in enumerate(confidence) if c >= threshold]

    def kept_boxes(self, index: int | None = None) -> list[int]:
        """Indices of the boxes that would be saved: visible and not dropped."""
        i = self._resolve(index)
        return [b for b in self.visible_boxes(i) if b not in self._states[i].dropped]

    def class_of(self, box: int, index: int | None = None) -> int:
        """The class id of a box, after the reviewer's changes."""
        i = self._resolve(index)
        self._check_box(i, box)
        class_id = self._class_id[i]
        return self._states[i].class_changes.get(box, int(class_id[box]))

    def kept_detections(self, index: int | None = None) -> sv.Detections:
        """The kept boxes of a frame with the reviewer's class changes applied."""
        i = self._resolve(index)
        kept = self.kept_boxes(i)
        detections = self.proposals[i].detections[np.array(kept, dtype=int)]
        detections.class_id = np.array([self.class_of(b, i) for b in kept], dtype=int)
        return detections

    def _check_box(self, index: int, box: int) -> None:
        count = len(self.proposals[index].detections)
        if not 0 <= box < count:
            raise IndexError(f"box #{box} does not exist: frame {index} has {count} box(es).")

    def drop_box(self, box: int, index: int | None = None) -> None:
        """Removes box ``box`` (its proposal number) from a frame's labels.

        Raises:
            IndexError: If the frame has no such box.
        """
        i = self._resolve(index)
        self._check_box(i, box)
        self._states[i].dropped.add(box)
        self._listeners.notify()

    def restore_box(self, box: int, index: int | None = None) -> None:
        """Undoes :meth:`drop_box`.

        Raises:
            IndexError: If the frame has no such box.
        """
        i = self._resolve(index)
        self._check_box(i, box)
        self._states[i].dropped.discard(box)
        self._listeners.notify()

    def set_kept(self, boxes: Iterable[int], index: int | None = None) -> None:
        """Keeps exactly ``boxes`` among the visible boxes and drops the other visible ones.

        Args:
            boxes: Proposal numbers of the boxes to keep.
            index: The frame; the current one when None.

        Raises:
            IndexError: If the frame has no such box.
        """
        i = self._resolve(index)
        keep = {int(b) for b in boxes}
        for box in keep:
            self._check_box(i, box)
        state = self._states[i]
        for box in self.visible_boxes(i):
            if box in keep:
                state.dropped.discard(box)
            else:
                state.dropped.add(box)
        self._listeners.notify()

    def set_class(self, box: int, class_name: str | int, index: int | None = None) -> None:
        """Changes the class of box ``box``; setting the proposed class undoes the change.

        Args:
            box: The box's proposal number.
            class_name: The new class, by name or id.
            index: The frame; the current one when None.

        Raises:
            IndexError: If the frame has no such box.
            ValueError: For an unknown class.
        """
        i = self._resolve(index)
        self._check_box(i, box)
        if isinstance(class_name, str):
            ids = [k for k, v in self.class_names.items() if v == class_name]
            if not ids:
                raise ValueError(
                    f"unknown class {class_name!r}; classes: {', '.join(self.class_names.values())}."
                )
            new = ids[0]
        else:
            new = int(class_name)
            if new not in self.class_names:
                raise ValueError(f"unknown class id {new}; ids: {sorted(self.class_names)}.")
        class_id = self._class_id[i]
        if new == int(class_id[box]):
            self._states[i].class_changes.pop(box, None)
        else:
            self._states[i].class_changes[box] = new
        self._listeners.notify()

    # -- decisions -----------------------------------------------------------------------------

    def _decide(self, index: int | None, decision: str) -> None:
        i = self._resolve(index)
        state = self._states[i]
        state.threshold = self._threshold_of(i) if decision != "pending" else None
        state.decision = decision
        self._listeners.notify()

    def accept(self, index: int | None = None) -> None:
        """Accepts a frame's kept boxes as labels (the current frame when ``index`` is None)."""
        self._decide(index, "accepted")

    def reject(self, index: int | None = None) -> None:
        """Rejects a frame: it is not saved and gets no labels."""
        self._decide(index, "rejected")

    def reset(self, index: int | None = None) -> None:
        """Makes a frame pending again (its drops and class changes stay)."""
        self._decide(index, "pending")

    def auto_accept(self, min_confidence: float, *, include_empty: bool = False) -> list[int]:
        """Accepts every pending frame whose kept boxes all have at least ``min_confidence``.

        A shortcut with a risk (see :data:`AUTO_ACCEPT_RISK`): confident mistakes are accepted
        unseen, and vehicles the model missed cannot be caught by any threshold. Frames
        decided by hand are left alone; accepted frames are marked ``auto_accepted``.

        Args:
            min_confidence: Lowest confidence every kept box must reach (0-1).
            include_empty: Also accept frames with no kept box as empty (background) frames.
                Off by default: an empty frame is more often a miss than an empty road.

        Returns:
            The indices of the frames accepted now.

        Raises:
            ValueError: If ``min_confidence`` is outside 0-1.
        """
        floor = self._check_threshold(min_confidence)
        accepted = []
        for i, state in enumerate(self._states):
            if state.decision != "pending":
                continue
            kept = self.kept_boxes(i)
            if not kept and not include_empty:
                continue
            confidence = self._confidence[i]
            if all(confidence[b] >= floor for b in kept):
                state.threshold = self._threshold
                state.decision = "auto_accepted"
                accepted.append(i)
        self._listeners.notify()
        return accepted

    def changes(self, index: int | None = None) -> str:
        """The reviewer's changes to a frame in words, e.g. ``dropped #2; #0 car->truck``."""
        i = self._resolve(index)
        state = self._states[i]
        parts = []
        visible = set(self.visible_boxes(i))
        hidden = [b for b in range(len(self.proposals[i].detections)) if b not in visible]
        if hidden:
            listed = ",".join(f"#{b}" for b in hidden)
            parts.append(f"below {self._threshold_of(i):.2f}: {listed}")
        dropped = sorted(b for b in state.dropped if b in visible)
        if dropped:
            parts.append("dropped " + ",".join(f"#{b}" for b in dropped))
        class_id = self._class_id[i]
        for box, new in sorted(state.class_changes.items()):
            if box in visible and box not in state.dropped:
                old = self.class_names[int(class_id[box])]
                parts.append(f"#{box} {old}->{self.class_names[new]}")
        if state.decision == "auto_accepted":
            parts.append("auto-accepted")
        return "; ".join(parts)

    # -- what is shown -------------------------------------------------------------------------

    def render(self, index: int | None = None) -> Image.Image:
        """The frame with its boxes numbered: kept boxes in class colours, dropped ones grey.

        Boxes below the threshold are not drawn. Labels read ``#3 car 0.87``.

        Args:
            index: The frame; the current one when None.

        Returns:
            An RGB image (a grey message image when there are no proposals).
        """
        if not self.proposals:
            return message_image("There are no proposals to review.")
        i = self._resolve(index)
        with Image.open(self.proposals[i].image) as opened:
            image = opened.convert("RGB")
        detections = self.proposals[i].detections
        confidence = self._confidence[i]
        dropped = [b for b in self.visible_boxes(i) if b in self._states[i].dropped]
        if dropped:
            image = annotate(
                image,
                detections[np.array(dropped, dtype=int)],
                [f"#{b} dropped" for b in dropped],
                colour=_DROPPED_COLOUR,
            )
        kept = self.kept_boxes(i)
        labels = [f"#{b} {self.class_names[self.class_of(b, i)]} {confidence[b]:.2f}" for b in kept]
        return annotate(image, self.kept_detections(i), labels)

    def describe(self, index: int | None = None) -> str:
        """One line about a frame: position, file, decision and box counts."""
        if not self.proposals:
            return "There are no proposals to review."
        i = self._resolve(index)
        state = self._states[i]
        text = (
            f"{i + 1}/{len(self.proposals)} | {self.proposals[i].image.name} | {state.decision}"
            f" | {len(self.proposals[i].detections)} proposed, {len(self.kept_boxes(i))} kept"
        )
        if state.threshold is not None:
            text += f" (threshold {state.threshold:.2f} when decided)"
        return text

    # -- saving --------------------------------------------------------------------------------

    def label_lines(self, index: int | None = None) -> list[str]:
        """YOLO label lines (``class cx cy w h``, normalised, 6 decimals) for a frame's kept boxes.

        Boxes are clipped to the image first.
        """
        i = self._resolve(index)
        width, height = self._sizes[i]
        detections = self.kept_detections(i)
        lines = []
        for (x1, y1, x2, y2), class_id in zip(detections.xyxy, detections.class_id, strict=True):
            x1, x2 = (float(np.clip(v, 0, width)) for v in (x1, x2))
            y1, y2 = (float(np.clip(v, 0, height)) for v in (y1, y2))
            cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
            w, h = (x2 - x1) / width, (y2 - y1) / height
            lines.append(f"{int(class_id)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
        return lines

    def review_table(self) -> list[dict[str, str | int]]:
        """One row per frame with the columns of ``review.csv`` (see :data:`REVIEW_COLUMNS`).

        ``boxes_kept`` counts the boxes written, so it is 0 for frames not accepted.
        """
        rows: list[dict[str, str | int]] = []
        for i, proposal in enumerate(self.proposals):
            decision = self._states[i].decision
            saved = decision in ("accepted", "auto_accepted")
            rows.append(
                {
                    "image": proposal.image.as_posix(),
                    "decision": decision,
                    "boxes_proposed": len(proposal.detections),
                    "boxes_kept": len(self.kept_boxes(i)) if saved else 0,
                    "reviewer_changes": self.changes(i),
                }
            )
        return rows

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Writes the accepted frames as a YOLO dataset, plus ``review.csv`` for every frame.

        Accepted frames are copied byte for byte to ``out_dir/images`` and their kept boxes go
        to ``out_dir/labels/<stem>.txt`` (an accepted frame with no kept box gets an empty
        file: a background frame). Frames not accepted are not written, and their files from
        an earlier save into the same folder are removed, so the folder always matches the
        decisions. Every file is written atomically; source images are only read.

        Args:
            out_dir: The output folder (created if missing).

        Returns:
            The path of ``review.csv``.

        Raises:
            ValueError: If an output image would overwrite its own source.
        """
        out = Path(out_dir)
        images, labels = out / "images", out / "labels"
        for proposal in self.proposals:
            target = images / proposal.image.name
            if target.resolve() == proposal.image.resolve():
                raise ValueError(
                    f"{out} would overwrite the source image {proposal.image}: "
                    "choose another output folder."
                )
        for i, proposal in enumerate(self.proposals):
            image_out = images / proposal.image.name
            label_out = labels / f"{proposal.image.stem}.txt"
            if self._states[i].decision in ("accepted", "auto_accepted"):
                atomic_write_bytes(image_out, proposal.image.read_bytes())
                lines = self.label_lines(i)
                atomic_write_text(label_out, "".join(f"{line}\n" for line in lines))
            else:
                image_out.unlink(missing_ok=True)
                label_out.unlink(missing_ok=True)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=REVIEW_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.review_table())
        return atomic_write_text(out / "review.csv", buffer.getvalue())

    # -- widget --------------------------------------------------------------------------------

    def widget(
        self, *, out_dir: str | os.PathLike | None = None, max_side: int | None = 960
    ) -> widgets.VBox:
        """Builds the notebook UI wired to this reviewer.

        Accept and reject decide the current frame and move to the next one. The box list
        holds the boxes above the threshold: unselect a box to drop it. Pick a box, then a
        class, to change its class. The controls are also kept in :attr:`controls` (see
        :class:`ReviewerControls`).

        Args:
            out_dir: When given, a save button writes the review there (see :meth:`save`).
            max_side: Longest side of the displayed image in pixels (None: full size).

        Returns:
            The widget; make it a cell's last expression to display it.
        """
        class_options = [(name, cid) for cid, name in sorted(self.class_names.items())]
        controls = ReviewerControls(
            image=widgets.Image(format="png"),
            info=widgets.Label(),
            progress=widgets.Label(),
            previous=widgets.Button(description="back", icon="arrow-left"),
            next=widgets.Button(description="next", icon="arrow-right"),
            accept=widgets.Button(description="accept", button_style="success", icon="check"),
            reject=widgets.Button(description="reject", button_style="danger", icon="times"),
            boxes=widgets.SelectMultiple(description="keep", rows=6),
            box=widgets.Dropdown(description="box"),
            class_name=widgets.Dropdown(description="class", options=class_options),
            threshold=widgets.FloatSlider(
                description="threshold",
                min=0.0,
                max=1.0,
                step=0.05,
                value=self._threshold,
                continuous_update=False,
            ),
            auto_confidence=widgets.FloatSlider(
                description="auto min",
                min=0.0,
                max=1.0,
                step=0.05,
                value=0.9,
                continuous_update=False,
            ),
            auto_accept=widgets.Button(description="auto-accept pending", icon="bolt"),
            risk=widgets.HTML(f"<small>Risk: {AUTO_ACCEPT_RISK}</small>"),
            status=widgets.Label(),
        )
        syncing = [False]

        def box_label(i: int, box: int) -> str:
            confidence = self._confidence[i]
            return f"#{box} {self.class_names[self.class_of(box, i)]} {confidence[box]:.2f}"

        def refresh() -> None:
            syncing[0] = True
            try:
                controls.progress.value = str(self.progress)
                if not self.proposals:
                    controls.image.value = png_bytes(self.render(), max_side)
                    controls.info.value = self.describe()
                    return
                i = self._index
                controls.image.value = png_bytes(self.render(), max_side)
                controls.info.value = self.describe()
                controls.threshold.value = self._threshold
                visible = self.visible_boxes(i)
                controls.boxes.options = [(box_label(i, b), b) for b in visible]
                controls.boxes.value = tuple(self.kept_boxes(i))
                kept = self.kept_boxes(i)
                picked = controls.box.value
                controls.box.options = [(box_label(i, b), b) for b in kept]
                controls.box.value = picked if picked in kept else (kept[0] if kept else None)
                controls.box.disabled = controls.class_name.disabled = not kept
                if controls.box.value is not None:
                    controls.class_name.value = self.class_of(controls.box.value, i)
                controls.previous.disabled = i == 0
                controls.next.disabled = i + 1 >= len(self.proposals)
            finally:
                syncing[0] = False

        def on_boxes(change: dict[str, Any]) -> None:
            if not syncing[0]:
                self.set_kept(change["new"])

        def on_box(change: dict[str, Any]) -> None:
            if not syncing[0]:
                refresh()

        def on_class(change: dict[str, Any]) -> None:
            if not syncing[0] and controls.box.value is not None:
                self.set_class(controls.box.value, change["new"])

        def on_threshold(change: dict[str, Any]) -> None:
            if not syncing[0]:
                self.set_threshold(change["new"])

        def decide(action: Callable[[], None]) -> Callable[[widgets.Button], None]:
            def handler(_button: widgets.Button) -> None:
                action()
                self.next()

            return handler

        def on_auto(_button: widgets.Button) -> None:
            done = self.auto_accept(controls.auto_confidence.value)
            controls.status.value = (
                f"auto-accepted {len(done)} frame(s) at >= {controls.auto_confidence.value:.2f}"
            )

        controls.boxes.observe(on_boxes, names="value")
        controls.box.observe(on_box, names="value")
        controls.class_name.observe(on_class, names="value")
        controls.threshold.observe(on_threshold, names="value")
        controls.accept.on_click(decide(self.accept))
        controls.reject.on_click(decide(self.reject))
        controls.previous.on_click(lambda _button: self.previous())
        controls.next.on_click(lambda _button: self.next())
        controls.auto_accept.on_click(on_auto)
        rows: list[widgets.Widget] = [
            widgets.HBox([controls.previous, controls.accept, controls.reject, controls.next]),
            controls.image,
            controls.info,
            widgets.HBox([controls.boxes, widgets.VBox([controls.box, controls.class_name])]),
            controls.threshold,
            widgets.HBox([controls.auto_confidence, controls.auto_accept]),
            controls.risk,
        ]
        if out_dir is not None:
            controls.save = widgets.Button(description="save", icon="save")

            def on_save(_button: widgets.Button) -> None:
                try:
                    written = self.save(out_dir)
                except (OSError, ValueError) as exc:
                    controls.status.value = f"not saved: {exc}"
                else:
                    controls.status.value = f"saved {self.progress.accepted} frame(s); {written}"

            controls.save.on_click(on_save)
            rows.append(controls.save)
        rows += [controls.progress, controls.status]
        controls.container = widgets.VBox(rows)
        self.controls = controls
        self._listeners.add(refresh)
        refresh()
        return controls.container


@dataclass
class ReviewerControls:
    """The ipywidgets of a :class:`PseudoLabelReviewer`, for tests and for custom layouts.

    Attributes:
        image: The drawn frame (PNG bytes in ``.value``).
        info: The frame's line (:meth:`PseudoLabelReviewer.describe`).
        progress: The review's progress.
        previous: Button to the previous frame.
        next: Button to the next frame.
        accept: Accepts the frame and moves on.
        reject: Rejects the frame and moves on.
        boxes: Boxes above the threshold; the selected ones are kept.
        box: The box whose class ``class_name`` shows and changes.
        class_name: Class of the picked box (value: class id).
        threshold: Confidence threshold.
        auto_confidence: Minimum confidence for auto-accept.
        auto_accept: Auto-accepts pending frames.
        risk: The risk of auto-accepting, in words.
        status: Result of the last auto-accept or save.
        save: Save button (only when ``widget(out_dir=...)``).
        container: The whole UI.
    """

    image: widgets.Image
    info: widgets.Label
    progress: widgets.Label
    previous: widgets.Button
    next: widgets.Button
    accept: widgets.Button
    reject: widgets.Button
    boxes: widgets.SelectMultiple
    box: widgets.Dropdown
    class_name: widgets.Dropdown
    threshold: widgets.FloatSlider
    auto_confidence: widgets.FloatSlider
    auto_accept: widgets.Button
    risk: widgets.HTML
    status: widgets.Label
    save: widgets.Button | None = None
    container: widgets.VBox | None = None
