"""The dataset browser widget: look through a YOLO dataset with filters, boxes drawn.

The dataset is read by :class:`~tcv_helpers.data.dataset.Dataset` (any layout Ultralytics
reads: Ultralytics' ``images/<split>``, Roboflow's ``<split>/images`` with ``../`` entries,
``.txt`` image lists); a ``manifest.csv`` beside ``data.yaml`` adds camera, condition,
timestamp and source. See :mod:`tcv_helpers.data.widgets` for how the widgets are built.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import EllipsisType
from typing import Any

import ipywidgets as widgets
import numpy as np
import supervision as sv
from PIL import Image

from tcv_helpers.data.dataset import SPLIT_ALIASES, Dataset
from tcv_helpers.data.labels import MANIFEST_COLUMNS, read_yolo_labels
from tcv_helpers.data.widgets import Listeners, annotate, class_map, message_image, png_bytes

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
        self.class_names: dict[int, str] = class_map(class_names)
        self.root = Path(root) if root is not None else None
        self._filters: dict[str, str | None] = dict.fromkeys(self.FILTERS)
        self._matching: list[ImageRecord] = list(self.records)
        self._index = 0
        self._listeners = Listeners()
        self.controls: BrowserControls | None = None

    @classmethod
    def from_dataset(cls, root: str | os.PathLike) -> DatasetBrowser:
        """Reads a dataset: ``data.yaml``, the images of its splits, labels and the manifest.

        The images are the ones Ultralytics trains on (:class:`~tcv_helpers.data.dataset.Dataset`
        resolves the yaml file). The split of an image is the data.yaml key whose entry names
        it; an image named by two splits (or twice by a list) is shown once, under the first. A
        ``manifest.csv`` beside data.yaml adds camera, condition, timestamp and source (images
        it does not list get ``unknown``); without one (the Roboflow layout) those are
        ``unknown``.

        Args:
            root: The dataset folder (holding ``data.yaml``), or the ``data.yaml`` file itself.

        Returns:
            The browser, with no filter set.

        Raises:
            FileNotFoundError: If data.yaml or an image the manifest lists is missing; the
                message names the file.
            DatasetError: A ``ValueError`` if data.yaml lacks ``names`` or splits, or names a
                split that does not exist (the message names the key and the paths tried).
            ValueError: If a label file is malformed, or the manifest lacks a column, repeats
                an image or disagrees about a split.
        """
        dataset = Dataset.from_yaml(root)
        folder = dataset.folder
        manifest_file = folder / "manifest.csv"
        manifest = _read_manifest(manifest_file) if manifest_file.is_file() else {}
        records: list[ImageRecord] = []
        seen: set[str] = set()
        for split in dataset.split_keys:
            for path in dataset.images(split):
                absolute = path.resolve()
                try:
                    relative = absolute.relative_to(folder.resolve()).as_posix()
                except ValueError:
                    relative = absolute.as_posix()
                if relative in seen:
                    continue
                seen.add(relative)
                label_file = dataset.label_path(path)
                ids = tuple(int(i) for i in read_yolo_labels(label_file, 1, 1)[1])
                row = manifest.get(relative, {})
                listed = row.get("split", "")
                if listed and SPLIT_ALIASES.get(listed.lower(), listed.lower()) != split:
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
        return cls(records, dataset.class_map, root=folder)

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
            return message_image(self.message)
        record = record if record is not None else self._require_current()
        detections = self.detections(record)
        with Image.open(record.path) as opened:
            image = opened.convert("RGB")
        labels = [self.class_names.get(int(i), f"class {i}") for i in detections.class_id]
        return annotate(image, detections, labels)

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
                controls.image.value = png_bytes(self.render(), max_side)
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
