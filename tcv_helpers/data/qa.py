"""Label and image QA for a YOLO dataset: find broken files, bad boxes and leakage; write a fix.

A dataset is a folder with a ``data.yaml`` (the Ultralytics dataset file) whose ``train``, ``val``
and (optional) ``test`` entries name image folders, relative to the folder of ``data.yaml`` or to
its ``path:`` key when given. Each image's label file is found by Ultralytics' rule: the last
``/images/`` component of the path becomes ``/labels/`` and the suffix becomes ``.txt``, so both
the Ultralytics layout (``images/train``, ``labels/train``) and the Roboflow layout
(``train/images``, ``train/labels``) work.

:func:`check_dataset` reports every problem as an :class:`Issue` naming the file (relative to the
dataset folder) and the line; :func:`fix_dataset` writes a cleaned copy. Each image is decoded
once (in a small process pool for large datasets); near-duplicates are found from 64-bit
perceptual hashes packed into ``uint64`` and compared with XOR and popcount, bucketed by hash
chunks for large datasets (two hashes at most ``d`` bits apart agree exactly on at least one of
``d + 1`` chunks), so no Python loop runs over all pairs.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from tcv_helpers.data.labels import IMAGE_SUFFIXES, label_path_for
from tcv_helpers.imaging import (
    NEAR_DUPLICATE_DISTANCE,
    SUFFIX_TYPES,
    ImageError,
    decode_image,
    perceptual_hash,
    sniff_type,
)
from tcv_helpers.io import atomic_write_bytes, atomic_write_text

Severity = Literal["error", "warning"]

#: How far (normalised units) a box edge may lie outside ``[0, 1]`` before it is an error.
BOX_TOLERANCE = 0.01
#: Smallest normalised width or height of a box; anything at or below has no area.
MIN_BOX_SIDE = 1e-6
#: Boxes of one class in one file overlapping more than this (IoU) are duplicates.
DUPLICATE_IOU = 0.95
#: Share of a box's area that must lie inside the image for :func:`fix_dataset` to clip it.
MIN_INSIDE_FRACTION = 0.5
#: Split keys of ``data.yaml``, in leakage order: a near-duplicate is dropped from the later one.
SPLIT_KEYS = ("train", "val", "test")
REQUIRED_SPLITS = ("train", "val")

#: Every kind of issue, with its usual severity (``missing_label`` can be made an error).
ISSUE_KINDS: dict[str, Severity] = {
    "bad_data_yaml": "error",
    "missing_split": "error",
    "split_overlap": "error",
    "empty_file": "error",
    "corrupt_image": "error",
    "truncated_image": "error",
    "extension_mismatch": "warning",
    "missing_label": "warning",
    "orphan_label": "error",
    "unreadable_label": "error",
    "malformed_line": "error",
    "non_numeric": "error",
    "nan_value": "error",
    "class_out_of_range": "error",
    "zero_area": "error",
    "box_outside": "error",
    "duplicate_box": "error",
    "near_duplicate_in_split": "warning",
    "near_duplicate_across_splits": "error",
    "class_imbalance": "warning",
}
#: Kinds about ``data.yaml`` itself, which :func:`fix_dataset` cannot repair.
CONFIG_KINDS = frozenset({"bad_data_yaml", "missing_split", "split_overlap"})
#: Kinds for which :func:`fix_dataset` drops the image (and its label).
DROPPED_IMAGE_KINDS = frozenset(
    {"empty_file", "corrupt_image", "truncated_image", "unreadable_label"}
)

_POOL_MIN_IMAGES = 128
_BRUTE_FORCE_MAX = 4096
_SUFFIX_FOR_TYPE = {"jpeg": ".jpg", "png": ".png", "gif": ".gif", "bmp": ".bmp", "webp": ".webp"}
_BYTESIO_REPR = re.compile(r"\s*<_io\.BytesIO object at 0x[0-9a-fA-F]+>")


@dataclass(frozen=True)
class Issue:
    """One problem found in a dataset.

    Attributes:
        kind: What is wrong (a key of :data:`ISSUE_KINDS`).
        severity: ``"error"`` (breaks training or evaluation) or ``"warning"``.
        file: The file, as a POSIX path relative to the dataset folder.
        line: 1-based line number in a label file, or None.
        message: What is wrong, for a person.
    """

    kind: str
    severity: Severity
    file: str
    line: int | None
    message: str

    def format(self) -> str:
        """The issue as one line: ``file:line: severity kind: message``.

        Returns:
            The line, without the line number when there is none.
        """
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.severity} {self.kind}: {self.message}"


@dataclass(frozen=True)
class SplitCounts:
    """What one split holds.

    Attributes:
        images: Image files found (broken ones included).
        labels: Label files found for those images.
        boxes: Valid boxes per class name (every class of ``names`` present, zero included).
    """

    images: int
    labels: int
    boxes: dict[str, int]


@dataclass(frozen=True)
class QAReport:
    """The result of :func:`check_dataset`.

    Attributes:
        root: The dataset folder (the one holding ``data.yaml``).
        issues: Every problem found, sorted by file and line.
        splits: Counts per split key (``train``, ``val``, ``test``).
        class_names: Class names from ``data.yaml``, index = class id.
    """

    root: Path
    issues: tuple[Issue, ...]
    splits: dict[str, SplitCounts] = field(default_factory=dict)
    class_names: tuple[str, ...] = ()

    @property
    def errors(self) -> list[Issue]:
        """The issues of severity ``error``."""
        return [issue for issue in self.issues if issue.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        """The issues of severity ``warning``."""
        return [issue for issue in self.issues if issue.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when there are no errors (warnings allowed)."""
        return not self.errors

    def by_kind(self, kind: str) -> list[Issue]:
        """The issues of one kind.

        Args:
            kind: A key of :data:`ISSUE_KINDS`.

        Returns:
            Those issues, in report order.
        """
        return [issue for issue in self.issues if issue.kind == kind]

    def to_pandas(self) -> Any:
        """The issues as a table.

        Returns:
            A ``pandas.DataFrame`` with columns ``kind, severity, file, line, message``
            (``line`` is a nullable integer).
        """
        import pandas as pd

        frame = pd.DataFrame(
            [(i.kind, i.severity, i.file, i.line, i.message) for i in self.issues],
            columns=["kind", "severity", "file", "line", "message"],
        )
        frame["line"] = frame["line"].astype("Int64")
        return frame

    def summary(self) -> str:
        """A short text: images and boxes per split, then issue counts per kind.

        Returns:
            A few lines of text, without a trailing newline.
        """
        lines = [f"Dataset {self.root}"]
        for key, counts in self.splits.items():
            boxes = ", ".join(
                f"{name} {n}" for name, n in sorted(counts.boxes.items(), key=lambda kv: -kv[1])
            )
            lines.append(
                f"  {key}: {counts.images} images, {counts.labels} label files, "
                f"{sum(counts.boxes.values())} boxes ({boxes or 'none'})"
            )
        verdict = "OK" if self.ok else "FAILED"
        lines.append(f"{verdict}: {len(self.errors)} errors, {len(self.warnings)} warnings")
        kinds = Counter((i.severity, i.kind) for i in self.issues)
        for (severity, kind), n in sorted(kinds.items(), key=lambda kv: (kv[0][0], -kv[1])):
            lines.append(f"  {severity} {kind}: {n}")
        return "\n".join(lines)

    def format(self) -> str:
        """Every issue, one line each (see :meth:`Issue.format`).

        Returns:
            The lines joined by newlines; an empty string when there is no issue.
        """
        return "\n".join(issue.format() for issue in self.issues)


@dataclass(frozen=True)
class _Config:
    """What ``data.yaml`` says, resolved to folders."""

    base: Path
    yaml: dict[str, Any]
    names: tuple[str, ...]
    splits: dict[str, list[Path]]


@dataclass(frozen=True)
class _ImageInfo:
    """What decoding one image found (picklable, made in a worker process)."""

    size: int
    kind: str | None
    problem: str | None
    message: str
    hash: int | None


@dataclass
class _Entry:
    """One image of the dataset, its label and what was found."""

    split: str
    image: Path
    label: Path
    info: _ImageInfo | None = None
    has_label: bool = False


@dataclass(frozen=True)
class _LabelResult:
    """Issues of one label file, the valid class ids, and the lines of its cleaned copy."""

    issues: list[Issue]
    classes: list[int]
    fixed_lines: list[str]


def _labels_dir_for(images_dir: Path) -> Path:
    return label_path_for(images_dir / "x.jpg").parent


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return Path(os.path.relpath(path, root)).as_posix()


def _issue(kind: str, file: str, message: str, line: int | None = None) -> Issue:
    return Issue(kind, ISSUE_KINDS[kind], file, line, message)


def _read_config(root: Path) -> tuple[_Config | None, list[Issue]]:
    """Reads and checks ``data.yaml``; returns the config (None when unusable) and issues."""
    yaml_file = root / "data.yaml"
    if not yaml_file.is_file():
        return None, [_issue("bad_data_yaml", "data.yaml", f"no data.yaml in {root}")]
    try:
        data = yaml.safe_load(yaml_file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        return None, [_issue("bad_data_yaml", "data.yaml", f"cannot be parsed: {exc}")]
    if not isinstance(data, dict):
        return None, [
            _issue("bad_data_yaml", "data.yaml", "expected a mapping of keys (train, val, names)")
        ]
    issues: list[Issue] = []
    raw_names = data.get("names")
    names: tuple[str, ...] = ()
    if isinstance(raw_names, dict) and all(isinstance(k, int) for k in raw_names):
        if sorted(raw_names) != list(range(len(raw_names))):
            issues.append(
                _issue("bad_data_yaml", "data.yaml", "key 'names': class ids must be 0..n-1")
            )
        names = tuple(str(raw_names[k]) for k in sorted(raw_names))
    elif isinstance(raw_names, list) and raw_names:
        names = tuple(str(n) for n in raw_names)
    else:
        issues.append(
            _issue(
                "bad_data_yaml",
                "data.yaml",
                "key 'names' is missing or not a list / {id: name} mapping of class names",
            )
        )
    if "nc" in data and names and data["nc"] != len(names):
        issues.append(
            _issue(
                "bad_data_yaml",
                "data.yaml",
                f"key 'nc' is {data['nc']!r} but 'names' lists {len(names)} classes",
            )
        )
    base = root
    if data.get("path"):
        base = Path(str(data["path"]))
        base = base if base.is_absolute() else root / base
    splits: dict[str, list[Path]] = {}
    for key in SPLIT_KEYS:
        value = data.get(key)
        if value in (None, ""):
            if key in REQUIRED_SPLITS:
                issues.append(_issue("bad_data_yaml", "data.yaml", f"key '{key}' is missing"))
            continue
        entries = value if isinstance(value, list) else [value]
        if not all(isinstance(e, str) and e for e in entries):
            issues.append(
                _issue(
                    "bad_data_yaml", "data.yaml", f"key '{key}' must be a folder or list of folders"
                )
            )
            continue
        folders = []
        for entry in entries:
            folder = Path(entry) if Path(entry).is_absolute() else base / entry
            if folder.is_dir():
                folders.append(folder)
            elif folder.exists():
                issues.append(
                    _issue(
                        "bad_data_yaml",
                        "data.yaml",
                        f"key '{key}': {entry!r} is a file; expected an image folder",
                    )
                )
            else:
                issues.append(
                    _issue(
                        "missing_split",
                        "data.yaml",
                        f"key '{key}': image folder {entry!r} does not exist "
                        f"(looked for {_rel(folder, root)})",
                    )
                )
        if folders:
            splits[key] = folders
    return _Config(base=base, yaml=data, names=names, splits=splits), issues


def _inspect_image(path: str) -> _ImageInfo:
    """Reads, sniffs, fully decodes and hashes one image (runs in a worker process)."""
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        return _ImageInfo(0, None, "corrupt_image", f"cannot be read ({exc})", None)
    if not data:
        return _ImageInfo(0, None, "empty_file", "image file is empty (0 bytes)", None)
    kind = sniff_type(data)
    try:
        image = decode_image(data)
    except ImageError as exc:
        message = _BYTESIO_REPR.sub("", str(exc))
        problem = "truncated_image" if "truncated" in message.lower() else "corrupt_image"
        return _ImageInfo(len(data), kind, problem, message, None)
    if kind == "jpeg" and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        return _ImageInfo(
            len(data), kind, "truncated_image", "JPEG has no end-of-image marker", None
        )
    factor = max(1, min(image.size) // 64)
    small = image.reduce(factor) if factor > 1 else image
    bits = np.asarray(perceptual_hash(small).hash, dtype=bool).ravel()
    return _ImageInfo(len(data), kind, None, "", int.from_bytes(np.packbits(bits).tobytes(), "big"))


def _inspect_all(paths: Sequence[Path], workers: int, progress: bool) -> list[_ImageInfo]:
    """Inspects every image, in a process pool when ``workers`` > 1."""
    names = [str(p) for p in paths]
    if workers > 1 and len(names) > 1:
        pool = ProcessPoolExecutor(max_workers=workers)
        results: Iterable[_ImageInfo] = pool.map(_inspect_image, names, chunksize=16)
    else:
        pool = None
        results = map(_inspect_image, names)
    try:
        if progress:
            from tqdm.auto import tqdm

            results = tqdm(results, total=len(names), desc="images", unit="img")
        return list(results)
    finally:
        if pool is not None:
            pool.shutdown()


def _popcount(values: np.ndarray) -> np.ndarray:
    """Number of set bits of each ``uint64``."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(values).astype(np.int64)
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)
    return table[values.view(np.uint8).reshape(*values.shape, 8)].sum(axis=-1)


def near_duplicate_pairs(
    hashes: Sequence[int] | np.ndarray,
    max_distance: int = NEAR_DUPLICATE_DISTANCE,
    *,
    method: Literal["auto", "brute", "buckets"] = "auto",
) -> list[tuple[int, int, int]]:
    """All pairs of 64-bit hashes at most ``max_distance`` bits apart.

    ``brute`` compares every pair with vectorised XOR and popcount, block by block. ``buckets``
    splits the 64 bits into ``max_distance + 1`` chunks: two hashes within the distance agree
    exactly on at least one chunk (pigeonhole), so only hashes sharing a chunk value are
    compared. ``auto`` picks brute force for up to a few thousand hashes.

    Args:
        hashes: The hashes as unsigned 64-bit integers (bit ``i`` of the pHash = bit ``63 - i``).
        max_distance: Largest Hamming distance counted as a near-duplicate.
        method: ``auto``, ``brute`` or ``buckets``.

    Returns:
        ``(i, j, distance)`` with ``i < j``, sorted.

    Raises:
        ValueError: For an unknown method or a negative distance.
    """
    if max_distance < 0:
        raise ValueError(f"max_distance must be >= 0, got {max_distance}")
    if method not in ("auto", "brute", "buckets"):
        raise ValueError(f"unknown method {method!r}: use auto, brute or buckets")
    values = np.asarray(hashes, dtype=np.uint64).ravel()
    n = len(values)
    if n < 2:
        return []
    if method == "auto":
        method = "brute" if n <= _BRUTE_FORCE_MAX or max_distance >= 16 else "buckets"
    left: list[np.ndarray] = []
    right: list[np.ndarray] = []
    if method == "brute":
        block = 1024
        for start in range(0, n, block):
            rows = values[start : start + block]
            dist = _popcount(rows[:, None] ^ values[None, :])
            i, j = np.nonzero(dist <= max_distance)
            i = i + start
            keep = i < j
            left.append(i[keep])
            right.append(j[keep])
    else:
        chunks = min(max_distance + 1, 64)
        bounds = np.linspace(0, 64, chunks + 1).astype(int)
        for lo, hi in itertools.pairwise(bounds.tolist()):
            mask = np.uint64((1 << hi - lo) - 1)
            keys = (values >> np.uint64(lo)) & mask
            order = np.argsort(keys, kind="stable")
            sorted_keys = keys[order]
            starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
            ends = np.r_[starts[1:], n]
            for s, e in zip(starts[ends - starts > 1], ends[ends - starts > 1], strict=True):
                members = order[s:e]
                a, b = np.triu_indices(len(members), 1)
                i, j = members[a], members[b]
                left.append(np.minimum(i, j))
                right.append(np.maximum(i, j))
    if not left:
        return []
    i = np.concatenate(left).astype(np.int64)
    j = np.concatenate(right).astype(np.int64)
    if i.size == 0:
        return []
    pair_ids = np.unique(i * n + j)
    i, j = pair_ids // n, pair_ids % n
    dist = _popcount(values[i] ^ values[j])
    keep = dist <= max_distance
    return [(int(a), int(b), int(d)) for a, b, d in zip(i[keep], j[keep], dist[keep], strict=True)]


def _xyxy(coords: Sequence[float], polygon: bool) -> tuple[float, float, float, float]:
    if polygon:
        xs, ys = coords[0::2], coords[1::2]
        return min(xs), min(ys), max(xs), max(ys)
    cx, cy, w, h = coords
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def _inside_fraction(box: tuple[float, float, float, float]) -> float:
    x1, y1, x2, y2 = box
    area = (x2 - x1) * (y2 - y1)
    if area <= 0:
        return 0.0
    inner = max(0.0, min(x2, 1.0) - max(x1, 0.0)) * max(0.0, min(y2, 1.0) - max(y1, 0.0))
    return inner / area


def _clip_line(cls: int, coords: list[float], polygon: bool) -> str | None:
    """The line with its coordinates clipped to the image, or None if nothing usable is left."""
    if polygon:
        clipped = [min(max(v, 0.0), 1.0) for v in coords]
        x1, y1, x2, y2 = _xyxy(clipped, True)
        if x2 - x1 <= MIN_BOX_SIDE or y2 - y1 <= MIN_BOX_SIDE:
            return None
        return " ".join([str(cls), *(f"{v:.6g}" for v in clipped)])
    x1, y1, x2, y2 = (min(max(v, 0.0), 1.0) for v in _xyxy(coords, False))
    w, h = x2 - x1, y2 - y1
    if w <= MIN_BOX_SIDE or h <= MIN_BOX_SIDE:
        return None
    return f"{cls} {(x1 + x2) / 2:.6g} {(y1 + y2) / 2:.6g} {w:.6g} {h:.6g}"


def _duplicates(boxes: list[tuple[int, tuple[float, float, float, float]]]) -> dict[int, int]:
    """Index of each box that duplicates an earlier one -> index of that earlier box."""
    if len(boxes) < 2:
        return {}
    classes = np.array([c for c, _ in boxes])
    xyxy = np.array([b for _, b in boxes], dtype=np.float64)
    x1, y1, x2, y2 = xyxy.T
    area = (x2 - x1) * (y2 - y1)
    iw = np.clip(np.minimum(x2[:, None], x2[None]) - np.maximum(x1[:, None], x1[None]), 0, None)
    ih = np.clip(np.minimum(y2[:, None], y2[None]) - np.maximum(y1[:, None], y1[None]), 0, None)
    inter = iw * ih
    union = area[:, None] + area[None] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    same = (classes[:, None] == classes[None]) & (
        (iou > DUPLICATE_IOU) | np.all(xyxy[:, None] == xyxy[None], axis=-1)
    )
    found: dict[int, int] = {}
    for later in range(1, len(boxes)):
        earlier = np.flatnonzero(same[later, :later])
        if earlier.size:
            found[later] = int(earlier[0])
    return found


def _check_label_text(text: str, file: str, n_classes: int) -> _LabelResult:
    """Checks every line of a label file and builds the lines of its cleaned copy."""
    issues: list[Issue] = []
    good: list[tuple[int, int, tuple[float, float, float, float], str]] = []
    fixed: list[tuple[int, tuple[float, float, float, float], str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        parts = raw.split()
        if not parts:
            continue
        count = len(parts)
        if count != 5 and (count < 7 or count % 2 == 0):
            issues.append(
                _issue(
                    "malformed_line",
                    file,
                    f"expected 5 values 'class cx cy w h' (or a polygon 'class x1 y1 x2 y2 "
                    f"x3 y3 ...'), got {count}",
                    number,
                )
            )
            continue
        polygon = count > 5
        try:
            values = [float(p) for p in parts]
        except ValueError:
            bad = next(p for p in parts if not _is_float(p))
            issues.append(
                _issue("non_numeric", file, f"value {bad!r} is not a number in {raw!r}", number)
            )
            continue
        if not all(math.isfinite(v) for v in values):
            issues.append(
                _issue("nan_value", file, f"NaN or infinite value in {raw.strip()!r}", number)
            )
            continue
        if values[0] != int(values[0]):
            issues.append(
                _issue("non_numeric", file, f"class id {parts[0]!r} is not an integer", number)
            )
            continue
        cls, coords = int(values[0]), values[1:]
        if not 0 <= cls < n_classes:
            issues.append(
                _issue(
                    "class_out_of_range",
                    file,
                    f"class id {cls} is outside 0..{n_classes - 1} (data.yaml names "
                    f"{n_classes} classes)",
                    number,
                )
            )
            continue
        box = _xyxy(coords, polygon)
        width, height = box[2] - box[0], box[3] - box[1]
        if width <= MIN_BOX_SIDE or height <= MIN_BOX_SIDE:
            issues.append(
                _issue(
                    "zero_area",
                    file,
                    f"box has no area (width {width:.6g}, height {height:.6g})",
                    number,
                )
            )
            continue
        span = coords if polygon else box
        outside = [v for v in span if v < -BOX_TOLERANCE or v > 1 + BOX_TOLERANCE]
        fraction = _inside_fraction(box)
        if outside or fraction < MIN_INSIDE_FRACTION:
            issues.append(
                _issue(
                    "box_outside",
                    file,
                    f"box x1 y1 x2 y2 = {box[0]:.4g} {box[1]:.4g} {box[2]:.4g} {box[3]:.4g} "
                    f"lies outside the image [0, 1] by more than {BOX_TOLERANCE} "
                    f"({fraction:.0%} of it inside)",
                    number,
                )
            )
            if fraction >= MIN_INSIDE_FRACTION:
                clipped = _clip_line(cls, coords, polygon)
                if clipped is not None:
                    fixed.append((cls, _clipped_box(box), clipped))
            continue
        good.append((number, cls, box, raw.strip()))
        needs_clip = any(v < 0 or v > 1 for v in span)
        line = _clip_line(cls, coords, polygon) if needs_clip else raw.strip()
        if line is not None:
            fixed.append((cls, _clipped_box(box), line))
    duplicate_good = _duplicates([(c, b) for _, c, b, _ in good])
    for later, earlier in duplicate_good.items():
        issues.append(
            _issue(
                "duplicate_box",
                file,
                f"duplicates the class-{good[later][1]} box on line {good[earlier][0]}",
                good[later][0],
            )
        )
    duplicate_fixed = _duplicates([(c, b) for c, b, _ in fixed])
    fixed_lines = [line for k, (_, _, line) in enumerate(fixed) if k not in duplicate_fixed]
    classes = [c for k, (_, c, _, _) in enumerate(good) if k not in duplicate_good]
    return _LabelResult(issues=issues, classes=classes, fixed_lines=fixed_lines)


def _clipped_box(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (min(max(v, 0.0), 1.0) for v in box)
    return x1, y1, x2, y2


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_label(path: Path, file: str, n_classes: int) -> _LabelResult:
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return _LabelResult(
            [_issue("unreadable_label", file, f"label file cannot be read as text ({exc})")],
            [],
            [],
        )
    return _check_label_text(text, file, n_classes)


def _list_images(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )


def _collect(root: Path, config: _Config) -> tuple[list[_Entry], list[Issue]]:
    """Every image of every split (each file once) and split-overlap issues."""
    entries: list[_Entry] = []
    seen: dict[Path, str] = {}
    overlaps: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for key, folders in config.splits.items():
        for folder in folders:
            for image in _list_images(folder):
                resolved = image.resolve()
                if resolved in seen:
                    if seen[resolved] != key:
                        overlaps[(seen[resolved], key)].append(image)
                    continue
                seen[resolved] = key
                label = label_path_for(image)
                entries.append(_Entry(key, image, label, has_label=label.is_file()))
    issues = [
        _issue(
            "split_overlap",
            "data.yaml",
            f"'{first}' and '{second}' share {len(images)} image files (e.g. "
            f"{_rel(images[0], root)}): their folders overlap",
        )
        for (first, second), images in overlaps.items()
    ]
    return entries, issues


def _orphans(root: Path, config: _Config, entries: list[_Entry]) -> list[Issue]:
    """Issues for label files in the label folders of the splits that belong to no image."""
    expected = {e.label.resolve() for e in entries}
    issues: list[Issue] = []
    seen: set[Path] = set()
    for key, folders in config.splits.items():
        for folder in folders:
            labels_dir = _labels_dir_for(folder)
            if not labels_dir.is_dir():
                continue
            for label in sorted(labels_dir.rglob("*.txt")):
                resolved = label.resolve()
                if resolved in expected or resolved in seen or not label.is_file():
                    continue
                seen.add(resolved)
                image_dir = folder / label.parent.relative_to(labels_dir)
                issues.append(
                    _issue(
                        "orphan_label",
                        _rel(label, root),
                        f"label file of split '{key}' has no image: no "
                        f"{_rel(image_dir, root)}/{label.stem}.* (one of {', '.join(IMAGE_SUFFIXES)})",
                    )
                )
    return issues


def _split_rank(key: str) -> int:
    return SPLIT_KEYS.index(key) if key in SPLIT_KEYS else len(SPLIT_KEYS)


def _near_duplicate_issues(root: Path, entries: list[_Entry], max_distance: int) -> list[Issue]:
    """Near-duplicate issues: each on the later image of a pair (the later split across splits)."""
    hashes = {k: e.info.hash for k, e in enumerate(entries) if e.info is not None}
    hashed = [k for k, h in hashes.items() if h is not None]
    pairs = near_duplicate_pairs([hashes[k] for k in hashed], max_distance)
    partners: dict[tuple[int, str], list[tuple[int, int]]] = defaultdict(list)
    for a, b, distance in pairs:
        first, second = hashed[a], hashed[b]
        ea, eb = entries[first], entries[second]
        if ea.split == eb.split:
            partners[(second, "near_duplicate_in_split")].append((first, distance))
            continue
        if _split_rank(eb.split) < _split_rank(ea.split):
            first, second = second, first
        partners[(second, "near_duplicate_across_splits")].append((first, distance))
    issues = []
    for (index, kind), found in partners.items():
        entry = entries[index]
        other_index, distance = min(found, key=lambda item: (item[1], item[0]))
        other = entries[other_index]
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        if kind == "near_duplicate_in_split":
            message = (
                f"near-duplicate of {_rel(other.image, root)} in the same split "
                f"'{entry.split}' (hash distance {distance}){more}"
            )
        else:
            message = (
                f"leakage: this '{entry.split}' image is a near-duplicate of "
                f"{_rel(other.image, root)} in '{other.split}' (hash distance {distance}){more}"
            )
        issues.append(_issue(kind, _rel(entry.image, root), message))
    return issues


def _imbalance_issues(
    root: Path, config: _Config, counts: dict[str, SplitCounts], ratio: float
) -> list[Issue]:
    issues = []
    for key, split in counts.items():
        if not sum(split.boxes.values()):
            continue
        (most, high), (least, low) = (
            max(split.boxes.items(), key=lambda kv: kv[1]),
            min(split.boxes.items(), key=lambda kv: kv[1]),
        )
        actual = high / low if low else math.inf
        if actual > ratio:
            shown = "no boxes at all" if not low else f"{actual:.1f}:1"
            issues.append(
                _issue(
                    "class_imbalance",
                    _rel(config.splits[key][0], root),
                    f"'{key}': class imbalance {shown} (threshold {ratio:g}:1): "
                    f"'{most}' has {high} boxes, '{least}' {low}",
                )
            )
    return issues


@dataclass(frozen=True)
class _Analysis:
    report: QAReport
    config: _Config | None
    entries: list[_Entry]
    labels: dict[int, _LabelResult]


def _analyse(
    root: str | os.PathLike,
    *,
    near_duplicates: bool,
    max_distance: int,
    imbalance_ratio: float,
    require_labels: bool,
    progress: bool,
    workers: int | None,
    inspect_images: bool = True,
) -> _Analysis:
    folder = Path(root).expanduser()
    if folder.is_file() and folder.suffix in (".yaml", ".yml"):
        folder = folder.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset folder {folder} does not exist")
    folder = folder.resolve()
    config, issues = _read_config(folder)
    if config is None:
        report = QAReport(root=folder, issues=tuple(issues))
        return _Analysis(report, None, [], {})
    entries, overlap_issues = _collect(folder, config)
    issues += overlap_issues
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if len(entries) >= _POOL_MIN_IMAGES else 1
    if inspect_images:
        infos = _inspect_all([e.image for e in entries], workers, progress)
        for entry, info in zip(entries, infos, strict=True):
            entry.info = info
    labels: dict[int, _LabelResult] = {}
    n_classes = len(config.names)
    for index, entry in enumerate(entries):
        info = entry.info
        file = _rel(entry.image, folder)
        if info is not None and info.problem is not None:
            issues.append(_issue(info.problem, file, f"{info.message}"))
        expected = SUFFIX_TYPES.get(entry.image.suffix.lower())
        if info is not None and info.kind is not None and info.kind != expected:
            issues.append(
                _issue(
                    "extension_mismatch",
                    file,
                    f"content is {info.kind} but the extension says {expected or 'unknown'}",
                )
            )
        label_file = _rel(entry.label, folder)
        if not entry.has_label:
            message = f"no label file {label_file} (treated as a background image)"
            issue = _issue("missing_label", file, message)
            if require_labels:
                issue = Issue("missing_label", "error", file, None, f"no label file {label_file}")
            issues.append(issue)
            continue
        labels[index] = _read_label(entry.label, label_file, n_classes)
        issues += labels[index].issues
    issues += _orphans(folder, config, entries)
    if near_duplicates:
        issues += _near_duplicate_issues(folder, entries, max_distance)
    counts: dict[str, SplitCounts] = {}
    for key in config.splits:
        members = [k for k, e in enumerate(entries) if e.split == key]
        per_class = Counter(c for k in members if k in labels for c in labels[k].classes)
        counts[key] = SplitCounts(
            images=len(members),
            labels=sum(entries[k].has_label for k in members),
            boxes={name: per_class.get(i, 0) for i, name in enumerate(config.names)},
        )
    if config.names:
        issues += _imbalance_issues(folder, config, counts, imbalance_ratio)
    issues.sort(key=lambda i: (i.file, i.line or 0, i.kind, i.message))
    report = QAReport(
        root=folder, issues=tuple(issues), splits=counts, class_names=tuple(config.names)
    )
    return _Analysis(report, config, entries, labels)


def check_dataset(
    root: str | os.PathLike,
    *,
    near_duplicates: bool = True,
    max_distance: int = NEAR_DUPLICATE_DISTANCE,
    imbalance_ratio: float = 20.0,
    require_labels: bool = False,
    progress: bool = False,
    workers: int | None = None,
) -> QAReport:
    """Checks a YOLO dataset: ``data.yaml``, every image, every label line, leakage, balance.

    Each image is read and decoded once (in a pool of ``workers`` processes); its perceptual
    hash is taken from a downscaled copy.

    Args:
        root: The dataset folder holding ``data.yaml`` (or the ``data.yaml`` file itself).
        near_duplicates: Look for near-duplicate images within and across splits.
        max_distance: Largest hash distance (bits of 64) counted as a near-duplicate.
        imbalance_ratio: Warn when the most common class of a split has more than this many
            times the boxes of the rarest one.
        require_labels: Make an image without a label file an error instead of a warning
            (by default it is a background image).
        progress: Show a tqdm progress bar while decoding images.
        workers: Processes decoding images; None means ``min(2, cpu_count)`` from
            128 images on and 1 (no pool) below.

    Returns:
        The report; ``report.ok`` is False when there is any error.

    Raises:
        FileNotFoundError: When ``root`` is not a folder.
    """
    return _analyse(
        root,
        near_duplicates=near_duplicates,
        max_distance=max_distance,
        imbalance_ratio=imbalance_ratio,
        require_labels=require_labels,
        progress=progress,
        workers=workers,
    ).report


def _check_out_folder(root: Path, out: Path) -> None:
    if out == root or root in out.parents:
        raise ValueError(f"output folder {out} is inside the dataset {root}; choose another place")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise FileExistsError(f"output folder {out} is not empty; give a new or empty folder")


def fix_dataset(
    root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    report: QAReport | None = None,
    near_duplicates: bool = True,
    max_distance: int = NEAR_DUPLICATE_DISTANCE,
    progress: bool = False,
    workers: int | None = None,
) -> QAReport:
    """Writes a cleaned copy of a dataset to ``out``; the original is only read.

    The rules:

    - Images that are empty, corrupt or truncated are dropped with their label file, and so
      are images whose label file cannot be read as text. Orphan label files are not copied.
    - Label files are rewritten without malformed, non-numeric, NaN, out-of-range-class and
      zero-area lines and without duplicate boxes (the first of a duplicate group stays).
      Boxes partly outside the image are clipped to it when at least half of their area lies
      inside (:data:`MIN_INSIDE_FRACTION`); others are dropped. Unchanged lines keep their text.
    - An image without a label file gets an empty one (an explicit background image).
    - An image whose content does not match its extension is renamed to the right extension
      (unless that name is taken).
    - Leakage: of each near-duplicate pair across splits, the image in the later split
      (order ``train``, ``val``, ``test``) is dropped, so ``train`` always keeps its images.
      Near-duplicates within one split are kept (they are warnings, not errors).
    - ``data.yaml`` is copied without ``path:``, so the split folders resolve inside ``out``.

    Args:
        root: The dataset folder (or its ``data.yaml``).
        out: New or empty folder for the copy, outside ``root``.
        report: A report of ``root`` from :func:`check_dataset` (with the same
            ``near_duplicates`` setting), to decide which images to drop without decoding them
            again; None checks ``root`` first.
        near_duplicates: Look for (and drop) cross-split near-duplicates when checking.
        max_distance: Largest hash distance counted as a near-duplicate.
        progress: Show progress bars.
        workers: Processes decoding images; None means ``min(2, cpu_count)``.

    Returns:
        The report of checking ``out``.

    Raises:
        ValueError: When ``out`` is inside ``root``, ``report`` belongs to another dataset,
            ``data.yaml`` has errors that need a person (missing keys or folders, overlapping
            splits), or a split folder lies outside the dataset folder.
        FileExistsError: When ``out`` exists and is not an empty folder.
        FileNotFoundError: When ``root`` is not a folder.
        RuntimeError: When the copy still has errors (for example a stale ``report``).
    """
    source = Path(root).expanduser()
    if source.is_file():
        source = source.parent
    if not source.is_dir():
        raise FileNotFoundError(f"dataset folder {source} does not exist")
    source = source.resolve()
    target = Path(out).expanduser().resolve()
    _check_out_folder(source, target)
    if report is not None and report.root != source:
        raise ValueError(f"the report given is for {report.root}, not for {source}")
    analysis = _analyse(
        source,
        near_duplicates=near_duplicates and report is None,
        max_distance=max_distance,
        imbalance_ratio=math.inf,
        require_labels=False,
        progress=progress,
        workers=workers,
        inspect_images=report is None,
    )
    report = report if report is not None else analysis.report
    config = analysis.config
    blocking = [i for i in report.issues if i.kind in CONFIG_KINDS]
    if config is None or blocking:
        lines = "\n".join(i.format() for i in blocking or analysis.report.issues)
        raise ValueError(f"cannot fix {source}: data.yaml needs a person's fix first:\n{lines}")
    base = config.base.resolve()
    outside = [f for fs in config.splits.values() for f in fs if not _is_within(f, base)]
    if outside:
        raise ValueError(
            f"cannot fix {source}: split folder {outside[0]} lies outside the dataset folder {base}"
        )
    drop_kinds = DROPPED_IMAGE_KINDS | {"near_duplicate_across_splits"}
    dropped = {i.file for i in report.issues if i.kind in drop_kinds}
    mismatched = {i.file for i in report.issues if i.kind == "extension_mismatch"}
    taken = {_rel(e.image, base).lower() for e in analysis.entries}
    entries: Iterable[tuple[int, _Entry]] = enumerate(analysis.entries)
    if progress:
        from tqdm.auto import tqdm

        entries = tqdm(list(entries), desc="copy", unit="img")
    for index, entry in entries:
        file = _rel(entry.image, source)
        if file in dropped or _rel(entry.label, source) in dropped:
            continue
        relative = entry.image.resolve().relative_to(base)
        data = entry.image.read_bytes()
        kind = sniff_type(data)
        if file in mismatched and kind is not None:
            renamed = relative.with_suffix(_SUFFIX_FOR_TYPE[kind])
            if renamed.as_posix().lower() not in taken:
                taken.add(renamed.as_posix().lower())
                relative = renamed
        atomic_write_bytes(target / relative, data)
        result = analysis.labels.get(index)
        lines = result.fixed_lines if result is not None else []
        atomic_write_text(label_path_for(target / relative), "".join(f"{x}\n" for x in lines))
    data_yaml = {k: v for k, v in config.yaml.items() if k != "path"}
    data_yaml["names"] = dict(enumerate(config.names))
    if "nc" in data_yaml:
        data_yaml["nc"] = len(config.names)
    for key, folders in config.splits.items():
        relative_folders = [f.resolve().relative_to(base) for f in folders]
        entries_out = [f.as_posix() for f in relative_folders]
        data_yaml[key] = entries_out[0] if len(entries_out) == 1 else entries_out
        for folder in relative_folders:
            (target / folder).mkdir(parents=True, exist_ok=True)
    header = f"# Cleaned copy of {source} written by tcv_helpers.data.qa.fix_dataset.\n"
    atomic_write_text(
        target / "data.yaml",
        header + yaml.safe_dump(data_yaml, sort_keys=False, allow_unicode=True),
    )
    checked = check_dataset(
        target,
        near_duplicates=near_duplicates,
        max_distance=max_distance,
        progress=progress,
        workers=workers,
    )
    if not checked.ok:
        raise RuntimeError(
            f"the cleaned copy {target} still has errors:\n"
            + "\n".join(i.format() for i in checked.errors)
        )
    return checked


def _is_within(path: Path, base: Path) -> bool:
    resolved = path.resolve()
    return resolved == base or base in resolved.parents


def plant_defects(root: str | os.PathLike, out: str | os.PathLike) -> dict[str, str]:
    """Copies a YOLO dataset and plants one defect of each common kind in the copy.

    For teaching and testing label QA: the copy has a truncated, an empty and a mislabelled
    image file, malformed, non-numeric, NaN, out-of-range, outside, zero-area and duplicate label
    lines, an orphan label, an image without labels and a frame copied into another split. The
    original is only read.

    Args:
        root: A dataset with at least two train images (``images/train``, ``labels/train``) and
            one val image, in the Ultralytics layout that ``tcv data synth`` writes.
        out: Where to write the copy (must not exist yet).

    Returns:
        Each planted kind with the file (relative to ``out``) that holds it.

    Raises:
        FileExistsError: If ``out`` exists.
        ValueError: If the dataset has too few images to plant everything.
    """
    import shutil

    src, dst = Path(root), Path(out)
    if dst.exists():
        raise FileExistsError(f"{dst} exists; plant_defects writes a fresh copy.")
    train = sorted((src / "images" / "train").glob("*.jpg"))
    val = sorted((src / "images" / "val").glob("*.jpg"))
    if len(train) < 8 or not val:
        raise ValueError(f"{src}: need at least 8 train images and 1 val image to plant defects.")
    shutil.copytree(src, dst)
    config = yaml.safe_load((dst / "data.yaml").read_text(encoding="utf-8"))
    if "path" in config:  # the copy must describe itself, not the original
        config["path"] = str(dst.resolve())
        atomic_write_text(dst / "data.yaml", yaml.safe_dump(config, sort_keys=False))
    images = [dst / "images" / "train" / p.name for p in train]
    labels = [label_path_for(p) for p in images]
    planted: dict[str, str] = {}

    def rel(path: Path) -> str:
        return path.relative_to(dst).as_posix()

    data = images[0].read_bytes()
    atomic_write_bytes(images[0], data[: len(data) // 2])
    planted["truncated_image"] = rel(images[0])
    atomic_write_bytes(images[1], b"")
    planted["empty_file"] = rel(images[1])
    atomic_write_text(images[2], "<html><body>camera offline</body></html>")
    planted["corrupt_image"] = rel(images[2])
    bad_lines = {
        "malformed_line": "0 0.5 0.5 0.1",
        "non_numeric": "car 0.5 0.5 0.1 0.1",
        "nan_value": "0 nan 0.5 0.1 0.1",
        "class_out_of_range": "42 0.5 0.5 0.1 0.1",
        "box_outside": "0 1.4 0.5 0.2 0.2",
    }
    for label, (kind, line) in zip(labels[3:8], bad_lines.items(), strict=True):
        atomic_write_text(label, label.read_text(encoding="utf-8") + line + "\n")
        planted[kind] = rel(label)
    first = next(
        (ln for ln in labels[3].read_text(encoding="utf-8").splitlines() if ln.strip()), None
    )
    if first is not None:
        atomic_write_text(labels[3], labels[3].read_text(encoding="utf-8") + first + "\n")
        planted["duplicate_box"] = rel(labels[3])
    orphan = labels[0].parent / "no_such_frame.txt"
    atomic_write_text(orphan, "0 0.5 0.5 0.1 0.1\n")
    planted["orphan_label"] = rel(orphan)
    leaked = dst / "images" / "val" / f"copy_of_{train[-1].name}"
    atomic_write_bytes(leaked, train[-1].read_bytes())
    atomic_write_bytes(label_path_for(leaked), label_path_for(train[-1]).read_bytes())
    planted["near_duplicate_across_splits"] = rel(leaked)
    return planted
