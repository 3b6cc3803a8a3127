"""Notebook widgets: a dataset browser and a reviewer for model-proposed labels.

Each widget is a plain Python model that holds all the state and logic (filters, navigation,
decisions, saving) and is tested without a browser, plus a ``widget()`` method that builds the
ipywidgets controls and wires them to the model. The controls only call model methods; the
model tells the controls to redraw whenever its state changes, so calling model methods from
code (``browser.next()``) also updates a displayed widget.

* :class:`DatasetBrowser` looks through a YOLO dataset (Ultralytics or Roboflow layout) with
  filters for split, camera, condition and class.
* :class:`PseudoLabelReviewer` accepts, rejects and edits boxes that a model proposed for new
  frames, then writes the accepted frames as a YOLO dataset with an audit trail.

Boxes are always ``sv.Detections`` (``xyxy`` float pixels, ``class_id``, ``confidence``).
"""

from __future__ import annotations

import csv
import io
import os
import textwrap
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import EllipsisType
from typing import Any

import ipywidgets as widgets
import numpy as np
import supervision as sv
import yaml
from PIL import Image, ImageDraw

from tcv_helpers.data.labels import (
    IMAGE_SUFFIXES,
    MANIFEST_COLUMNS,
    label_path_for,
    read_yolo_labels,
)
from tcv_helpers.io import atomic_write_bytes, atomic_write_text

#: Split names as data.yaml keys them; Roboflow's folder and manifest spellings map onto them.
SPLITS: tuple[str, ...] = ("train", "val", "test")
_SPLIT_ALIASES = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}
UNKNOWN = "unknown"
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


# --------------------------------------------------------------------------------------------
# Shared drawing helpers


def _class_map(class_names: Mapping[int, str] | Sequence[str]) -> dict[int, str]:
    if isinstance(class_names, Mapping):
        return {int(k): str(v) for k, v in class_names.items()}
    return {i: str(name) for i, name in enumerate(class_names)}


def _annotate(
    image: Image.Image,
    detections: sv.Detections,
    labels: list[str],
    *,
    colour: sv.Color | None = None,
) -> Image.Image:
    """Draws boxes and labels on a copy of ``image`` (class colours unless ``colour`` is set)."""
    if len(detections) == 0:
        return image.copy()
    resolution = image.size
    thickness = sv.calculate_optimal_line_thickness(resolution)
    scale = sv.calculate_optimal_text_scale(resolution)
    palette: Any = colour if colour is not None else sv.ColorPalette.DEFAULT
    boxes = sv.BoxAnnotator(color=palette, thickness=thickness)
    texts = sv.LabelAnnotator(color=palette, text_scale=scale, text_padding=max(2, thickness * 2))
    annotated = boxes.annotate(image.copy(), detections)
    return texts.annotate(annotated, detections, labels=labels)


def _message_image(message: str, size: tuple[int, int] = (640, 360)) -> Image.Image:
    """A grey image with ``message`` written on it, shown when there is nothing to draw."""
    image = Image.new("RGB", size, (60, 60, 60))
    draw = ImageDraw.Draw(image)
    text = "\n".join(textwrap.wrap(message, width=70)) or " "
    draw.multiline_text((16, 16), text, fill=(255, 255, 255), spacing=6)
    return image


def _png(image: Image.Image, max_side: int | None) -> bytes:
    """PNG bytes of ``image``, scaled down so its longer side is at most ``max_side``."""
    if max_side is not None and max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class _Listeners:
    """Callbacks the model runs after each change of state (the widget's redraw)."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[], None]] = []

    def add(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def notify(self) -> None:
        for callback in list(self._callbacks):
            callback()


# --------------------------------------------------------------------------------------------
# Dataset browser


@dataclass(frozen=True)
class ImageRecord:
    """One image of a dataset with what the browser knows about it.

    Attributes:
        path: The image file (absolute).
        image: The image path relative to the dataset root, with ``/`` separators.
        label_file: Its YOLO label file (may be missing: no objects).
        split: ``train``, ``val`` or ``test``.
        camera_id: Camera from the manifest, or ``unknown``.
        condition: Condition from the manifest (e.g. ``day``, ``night``, ``rain``) or ``unknown``.
        timestamp: Timestamp from the manifest as written there, or empty.
        source: Source from the manifest, or empty.
        class_ids: Class id of each labelled object, in label-file order.
        extra: The manifest's extra columns for this image.
    """

    path: Path
    image: str
    label_file: Path
    split: str
    camera_id: str = UNKNOWN
    condition: str = UNKNOWN
    timestamp: str = ""
    source: str = ""
    class_ids: tuple[int, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)


def _split_images(entry: Any, base: Path, yaml_file: Path, key: str) -> list[Path]:
    """Image files one data.yaml split entry names (a folder, a .txt list, or a list of them)."""
    entries = entry if isinstance(entry, list) else [entry]
    found: list[Path] = []
    for item in entries:
        if not isinstance(item, str):
            raise ValueError(f"{yaml_file}: '{key}' must be a path or a list of paths.")
        target = Path(item) if Path(item).is_absolute() else base / item
        if target.is_dir():
            found.extend(
                p for p in target.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
        elif target.is_file() and target.suffix == ".txt":
            for line in target.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    listed = Path(line.strip())
                    found.append(listed if listed.is_absolute() else target.parent / listed)
        else:
            raise FileNotFoundError(f"{yaml_file}: '{key}' points at {target}, which is missing.")
    return sorted(found)


def _read_manifest(file: Path) -> dict[str, dict[str, str]]:
    """The manifest's rows keyed by image path (relative to the root, ``/`` separators)."""
    with file.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        missing = [c for c in MANIFEST_COLUMNS if c not in columns]
        if missing:
            raise ValueError(
                f"{file}: missing column(s) {', '.join(missing)}; a manifest needs "
                f"{', '.join(MANIFEST_COLUMNS)} (found: {', '.join(columns) or 'no header'})."
            )
        rows: dict[str, dict[str, str]] = {}
        for number, row in enumerate(reader, start=2):
            key = Path((row["image"] or "").strip()).as_posix()
            if key in ("", "."):
                raise ValueError(f"{file}:{number}: empty 'image' value.")
            if key in rows:
                raise ValueError(f"{file}:{number}: image {key} is listed twice.")
            rows[key] = {k: (v or "").strip() for k, v in row.items() if k is not None}
    return rows


class DatasetBrowser:
    """Browses the images of a labelled dataset, with filters, and draws their boxes.

    Filters narrow :attr:`matching`; navigation moves through it and **wraps around**
    (``next()`` on the last image goes to the first). When no image matches, :attr:`current`
    is None, :attr:`message` says which filters to change, and :meth:`render` returns an image
    showing that message: an empty result is a normal state, not an error.

    Args:
        records: The images.
        class_names: Class names by id (a mapping, or a list indexed by id).
        root: The dataset root (the folder holding data.yaml), kept as :attr:`root`.

    Example:
        >>> browser = DatasetBrowser.from_dataset("data/traffic")  # doctest: +SKIP
        >>> browser.set_filter(camera="cam-02", class_name="bus")  # doctest: +SKIP
        >>> browser.widget()  # doctest: +SKIP
    """

    FILTERS: tuple[str, ...] = ("split", "camera", "condition", "class_name")

    def __init__(
        self,
        records: Iterable[ImageRecord],
        class_names: Mapping[int, str] | Sequence[str],
        *,
        root: str | os.PathLike | None = None,
    ) -> None:
        self.records: tuple[ImageRecord, ...] = tuple(records)
        self.class_names: dict[int, str] = _class_map(class_names)
        self.root = Path(root) if root is not None else None
        self._filters: dict[str, str | None] = dict.fromkeys(self.FILTERS)
        self._matching: list[ImageRecord] = list(self.records)
        self._index = 0
        self._listeners = _Listeners()
        self.controls: BrowserControls | None = None

    @classmethod
    def from_dataset(cls, root: str | os.PathLike) -> DatasetBrowser:
        """Reads a dataset: ``data.yaml``, the images of its splits, labels and the manifest.

        Split entries are resolved against data.yaml's ``path`` (relative to the data.yaml
        folder; that folder when ``path`` is absent). The split of an image is the data.yaml key
        whose folder holds it; an image listed under two splits is shown under the first.
        A ``manifest.csv``
        beside data.yaml adds camera, condition, timestamp and source (images it does not list
        get ``unknown``); without one (the Roboflow layout) those are ``unknown``.

        Args:
            root: The dataset folder (holding ``data.yaml``), or the ``data.yaml`` file itself.

        Returns:
            The browser, with no filter set.

        Raises:
            FileNotFoundError: If data.yaml, a split folder, or an image the manifest lists is
                missing; the message names the file.
            ValueError: If data.yaml lacks ``names`` or splits, a label file is malformed, or
                the manifest lacks a column, repeats an image or disagrees about a split.
        """
        given = Path(root)
        yaml_file = given if given.suffix in (".yaml", ".yml") else given / "data.yaml"
        if not yaml_file.is_file():
            raise FileNotFoundError(f"{yaml_file} does not exist: is {given} a YOLO dataset?")
        folder = yaml_file.parent
        try:
            config = yaml.safe_load(yaml_file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{yaml_file}: not valid YAML ({exc}).") from exc
        if not isinstance(config, dict) or "names" not in config:
            raise ValueError(f"{yaml_file}: needs a 'names' entry with the class names.")
        names = config["names"]
        if not isinstance(names, (dict, list)):
            raise ValueError(f"{yaml_file}: 'names' must be a mapping {{id: name}} or a list.")
        base = Path(config.get("path") or ".")
        base = base if base.is_absolute() else folder / base
        splits = [key for key in SPLITS if config.get(key)]
        if not splits:
            raise ValueError(f"{yaml_file}: lists no split ({', '.join(SPLITS)}).")

        manifest_file = folder / "manifest.csv"
        manifest = _read_manifest(manifest_file) if manifest_file.is_file() else {}
        records: list[ImageRecord] = []
        seen: set[str] = set()
        for split in splits:
            for path in _split_images(config[split], base, yaml_file, split):
                absolute = path.resolve()
                try:
                    relative = absolute.relative_to(folder.resolve()).as_posix()
                except ValueError:
                    relative = absolute.as_posix()
                if relative in seen:
                    continue
                seen.add(relative)
                label_file = label_path_for(absolute)
                ids = tuple(int(i) for i in read_yolo_labels(label_file, 1, 1)[1])
                row = manifest.get(relative, {})
                listed = row.get("split", "")
                if listed and _SPLIT_ALIASES.get(listed.lower()) != split:
                    raise ValueError(
                        f"{manifest_file}: {relative} has split {listed!r} but data.yaml puts "
                        f"it in {split!r}."
                    )
                records.append(
                    ImageRecord(
                        path=absolute,
                        image=relative,
                        label_file=label_file,
                        split=split,
                        camera_id=row.get("camera_id") or UNKNOWN,
                        condition=row.get("condition") or UNKNOWN,
                        timestamp=row.get("timestamp", ""),
                        source=row.get("source", ""),
                        class_ids=ids,
                        extra={k: v for k, v in row.items() if k not in MANIFEST_COLUMNS},
                    )
                )
        absent = sorted(set(manifest) - seen)
        if absent:
            shown = ", ".join(absent[:5]) + (
                f" and {len(absent) - 5} more" if len(absent) > 5 else ""
            )
            raise FileNotFoundError(
                f"{manifest_file}: lists {len(absent)} image(s) that are not in any data.yaml "
                f"split: {shown}."
            )
        return cls(records, names, root=folder)

    # -- filters -------------------------------------------------------------------------------

    @property
    def filters(self) -> dict[str, str | None]:
        """The filters in effect; None means "any"."""
        return dict(self._filters)

    @property
    def matching(self) -> list[ImageRecord]:
        """The images that pass every filter, in dataset order."""
        return list(self._matching)

    def choices(self, name: str) -> list[str]:
        """The values a filter can take (present in the dataset, sorted; classes by id).

        Args:
            name: ``split``, ``camera``, ``condition`` or ``class_name``.

        Returns:
            The values.

        Raises:
            ValueError: For an unknown filter name.
        """
        if name == "split":
            present = {r.split for r in self.records}
            return [s for s in SPLITS if s in present]
        if name == "camera":
            return sorted({r.camera_id for r in self.records})
        if name == "condition":
            return sorted({r.condition for r in self.records})
        if name == "class_name":
            return [self.class_names[i] for i in sorted(self.class_names)]
        raise ValueError(f"unknown filter {name!r}; filters: {', '.join(self.FILTERS)}.")

    def set_filter(
        self,
        *,
        split: str | EllipsisType | None = ...,
        camera: str | EllipsisType | None = ...,
        condition: str | EllipsisType | None = ...,
        class_name: str | EllipsisType | None = ...,
    ) -> list[ImageRecord]:
        """Sets some filters, leaving the others as they are.

        A filter left out (``...``) stays as it is; ``None`` or ``"all"`` clears it. The
        current image stays current when it still matches; otherwise the first matching image
        becomes current.

        Args:
            split: ``train``, ``val`` (``valid`` is accepted) or ``test``.
            camera: A camera id.
            condition: A condition such as ``night``.
            class_name: Keep only images with at least one object of this class.

        Returns:
            The matching images (possibly empty: see :attr:`message`).

        Raises:
            ValueError: For a value the dataset does not have, listing the ones it has.
        """
        changes = {
            "split": split,
            "camera": camera,
            "condition": condition,
            "class_name": class_name,
        }
        current = self.current
        for name, value in changes.items():
            if value is ...:
                continue
            if value is None or value == "all":
                self._filters[name] = None
                continue
            if name == "split":
                value = _SPLIT_ALIASES.get(str(value).lower(), str(value))
            allowed = self.choices(name)
            if value not in allowed:
                raise ValueError(
                    f"{name} {value!r} is not in this dataset; choose from "
                    f"{', '.join(allowed) or 'nothing'} (or None for all)."
                )
            self._filters[name] = str(value)
        self._apply(keep=current)
        return self.matching

    def clear_filters(self) -> list[ImageRecord]:
        """Clears every filter and returns all images."""
        return self.set_filter(split=None, camera=None, condition=None, class_name=None)

    def _passes(self, record: ImageRecord) -> bool:
        f = self._filters
        if f["split"] is not None and record.split != f["split"]:
            return False
        if f["camera"] is not None and record.camera_id != f["camera"]:
            return False
        if f["condition"] is not None and record.condition != f["condition"]:
            return False
        if f["class_name"] is not None:
            ids = {i for i, n in self.class_names.items() if n == f["class_name"]}
            if not ids.intersection(record.class_ids):
                return False
        return True

    def _apply(self, keep: ImageRecord | None) -> None:
        self._matching = [r for r in self.records if self._passes(r)]
        self._index = 0
        if keep is not None:
            for i, record in enumerate(self._matching):
                if record is keep:
                    self._index = i
                    break
        self._listeners.notify()

    # -- navigation ----------------------------------------------------------------------------

    @property
    def index(self) -> int | None:
        """Position of the current image in :attr:`matching`, or None when nothing matches."""
        return self._index if self._matching else None

    @property
    def current(self) -> ImageRecord | None:
        """The image shown now, or None when nothing matches."""
        return self._matching[self._index] if self._matching else None

    def go_to(self, index: int) -> ImageRecord | None:
        """Makes ``matching[index]`` current (negative indices count from the end).

        Raises:
            IndexError: If the index is outside the matching images.
        """
        count = len(self._matching)
        if not -count <= index < count:
            raise IndexError(f"image {index} is outside the {count} matching image(s).")
        self._index = index % count
        self._listeners.notify()
        return self.current

    def next(self) -> ImageRecord | None:
        """Moves to the next matching image, wrapping from the last to the first."""
        if self._matching:
            self._index = (self._index + 1) % len(self._matching)
            self._listeners.notify()
        return self.current

    def previous(self) -> ImageRecord | None:
        """Moves to the previous matching image, wrapping from the first to the last."""
        if self._matching:
            self._index = (self._index - 1) % len(self._matching)
            self._listeners.notify()
        return self.current

    # -- what is shown -------------------------------------------------------------------------

    def _filter_text(self) -> str:
        active = [f"{k}={v}" for k, v in self._filters.items() if v is not None]
        return ", ".join(active) or "no filter"

    @property
    def message(self) -> str:
        """One line about the current image, or why there is none.

        Example: ``2/14 | images/train/a.jpg | camera cam-01 | night | train | 3 boxes: car 2,
        bus 1``.
        """
        record = self.current
        if record is None:
            if not self.records:
                return "This dataset has no images."
            return (
                f"No images match {self._filter_text()} (0 of {len(self.records)} images): "
                "change or clear a filter."
            )
        counts = Counter(self.class_names.get(i, f"class {i}") for i in record.class_ids)
        boxes = ", ".join(f"{name} {n}" for name, n in counts.most_common())
        total = len(record.class_ids)
        return (
            f"{self._index + 1}/{len(self._matching)} | {record.image} | camera {record.camera_id}"
            f" | {record.condition} | {record.split} | {total} box{'es' if total != 1 else ''}"
            + (f": {boxes}" if boxes else "")
        )

    def detections(self, record: ImageRecord | None = None) -> sv.Detections:
        """The labelled objects of an image as detections (confidence 1).

        Args:
            record: The image; the current one when None.

        Returns:
            ``sv.Detections`` with pixel ``xyxy``, ``class_id`` and ``confidence``.

        Raises:
            LookupError: If no image matches the filters and no record is given.
        """
        record = record if record is not None else self._require_current()
        with Image.open(record.path) as image:
            width, height = image.size
        xyxy, ids = read_yolo_labels(record.label_file, width, height)
        return sv.Detections(
            xyxy=xyxy.astype(np.float32),
            class_id=ids.astype(int),
            confidence=np.ones(len(ids), dtype=np.float32),
        )

    def _require_current(self) -> ImageRecord:
        record = self.current
        if record is None:
            raise LookupError(self.message)
        return record

    def render(self, record: ImageRecord | None = None) -> Image.Image:
        """The image with its boxes and class names drawn on it.

        Args:
            record: The image; the current one when None.

        Returns:
            An RGB image; when nothing matches, a grey image showing :attr:`message`.
        """
        if record is None and self.current is None:
            return _message_image(self.message)
        record = record if record is not None else self._require_current()
        detections = self.detections(record)
        with Image.open(record.path) as opened:
            image = opened.convert("RGB")
        labels = [self.class_names.get(int(i), f"class {i}") for i in detections.class_id]
        return _annotate(image, detections, labels)

    # -- widget --------------------------------------------------------------------------------

    def widget(self, *, max_side: int | None = 960) -> widgets.VBox:
        """Builds the notebook UI: filter dropdowns, slider, buttons, image and text line.

        The controls are also kept in :attr:`controls` (see :class:`BrowserControls`).

        Args:
            max_side: Longest side of the displayed image in pixels (None: full size).

        Returns:
            The widget; make it a cell's last expression to display it.
        """

        def options(name: str) -> list[tuple[str, str | None]]:
            return [("all", None), *((v, v) for v in self.choices(name))]

        dropdowns = {
            name: widgets.Dropdown(
                description=name.replace("_name", ""),
                options=options(name),
                value=self._filters[name],
            )
            for name in self.FILTERS
        }
        controls = BrowserControls(
            split=dropdowns["split"],
            camera=dropdowns["camera"],
            condition=dropdowns["condition"],
            class_name=dropdowns["class_name"],
            slider=widgets.IntSlider(description="image", min=0, continuous_update=False),
            previous=widgets.Button(description="previous", icon="arrow-left"),
            next=widgets.Button(description="next", icon="arrow-right"),
            image=widgets.Image(format="png"),
            info=widgets.Label(),
        )
        syncing = [False]

        def refresh() -> None:
            syncing[0] = True
            try:
                for name, dropdown in dropdowns.items():
                    dropdown.value = self._filters[name]
                count = len(self._matching)
                controls.slider.max = max(count - 1, 0)
                controls.slider.value = self._index if count else 0
                controls.slider.disabled = count <= 1
                controls.previous.disabled = controls.next.disabled = count <= 1
                controls.image.value = _png(self.render(), max_side)
                controls.info.value = self.message
            finally:
                syncing[0] = False

        def on_filter(name: str) -> Callable[[dict[str, Any]], None]:
            def handler(change: dict[str, Any]) -> None:
                if not syncing[0]:
                    self.set_filter(**{name: change["new"]})

            return handler

        for name, dropdown in dropdowns.items():
            dropdown.observe(on_filter(name), names="value")

        def on_slider(change: dict[str, Any]) -> None:
            if not syncing[0] and self._matching:
                self.go_to(change["new"])

        controls.slider.observe(on_slider, names="value")
        controls.previous.on_click(lambda _button: self.previous())
        controls.next.on_click(lambda _button: self.next())
        controls.container = widgets.VBox(
            [
                widgets.HBox([controls.split, controls.camera]),
                widgets.HBox([controls.condition, controls.class_name]),
                widgets.HBox([controls.previous, controls.slider, controls.next]),
                controls.image,
                controls.info,
            ]
        )
        self.controls = controls
        self._listeners.add(refresh)
        refresh()
        return controls.container


@dataclass
class BrowserControls:
    """The ipywidgets of a :class:`DatasetBrowser`, for tests and for custom layouts.

    Attributes:
        split: Split filter (value None: all).
        camera: Camera filter.
        condition: Condition filter.
        class_name: Class filter.
        slider: Position in the matching images.
        previous: Button to the previous image.
        next: Button to the next image.
        image: The drawn image (PNG bytes in ``.value``).
        info: The text line (:attr:`DatasetBrowser.message`).
        container: The whole UI.
    """

    split: widgets.Dropdown
    camera: widgets.Dropdown
    condition: widgets.Dropdown
    class_name: widgets.Dropdown
    slider: widgets.IntSlider
    previous: widgets.Button
    next: widgets.Button
    image: widgets.Image
    info: widgets.Label
    container: widgets.VBox | None = None


# --------------------------------------------------------------------------------------------
# Pseudo-label reviewer


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
        self.class_names: dict[int, str] = _class_map(class_names)
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
        self._listeners = _Listeners()
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
            return _message_image("There are no proposals to review.")
        i = self._resolve(index)
        with Image.open(self.proposals[i].image) as opened:
            image = opened.convert("RGB")
        detections = self.proposals[i].detections
        confidence = self._confidence[i]
        dropped = [b for b in self.visible_boxes(i) if b in self._states[i].dropped]
        if dropped:
            image = _annotate(
                image,
                detections[np.array(dropped, dtype=int)],
                [f"#{b} dropped" for b in dropped],
                colour=_DROPPED_COLOUR,
            )
        kept = self.kept_boxes(i)
        labels = [f"#{b} {self.class_names[self.class_of(b, i)]} {confidence[b]:.2f}" for b in kept]
        return _annotate(image, self.kept_detections(i), labels)

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
                    controls.image.value = _png(self.render(), max_side)
                    controls.info.value = self.describe()
                    return
                i = self._index
                controls.image.value = _png(self.render(), max_side)
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
