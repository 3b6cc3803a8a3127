"""The per-file checks of the dataset QA: label lines, image decoding and near-duplicate search.

:func:`check_label_text` checks every line of a YOLO label file and builds the lines of its
cleaned copy; :func:`inspect_image` reads, sniffs, fully decodes and hashes one image (in a
process pool through :func:`inspect_all`); :func:`near_duplicate_pairs` finds every pair of
64-bit perceptual hashes within a distance, with XOR and popcount on ``uint64`` arrays, bucketed
by hash chunks for large datasets (two hashes at most ``d`` bits apart agree exactly on at least
one of ``d + 1`` chunks), so no Python loop runs over all pairs. Each problem is an
:class:`Issue`; :mod:`tcv_helpers.data.qa` puts them together for a whole dataset.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from tcv_helpers.imaging import (
    NEAR_DUPLICATE_DISTANCE,
    ImageError,
    decode_image,
    perceptual_hash,
    sniff_type,
)

Severity = Literal["error", "warning"]

#: How far (normalised units) a box edge may lie outside ``[0, 1]`` before it is an error.
BOX_TOLERANCE = 0.01


#: Smallest normalised width or height of a box; anything at or below has no area.
MIN_BOX_SIDE = 1e-6


#: Boxes of one class in one file overlapping more than this (IoU) are duplicates.
DUPLICATE_IOU = 0.95


#: Share of a box's area that must lie inside the image for :func:`fix_dataset` to clip it.
MIN_INSIDE_FRACTION = 0.5


#: Every kind of issue, with its usual severity (``missing_label`` can be made an error).
ISSUE_KINDS: dict[str, Severity] = {
    "bad_data_yaml": "error",
    "missing_split": "error",
    "split_overlap": "error",
    "missing_image": "error",
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


_BRUTE_FORCE_MAX = 4096


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


def issue(kind: str, file: str, message: str, line: int | None = None) -> Issue:
    return Issue(kind, ISSUE_KINDS[kind], file, line, message)


@dataclass(frozen=True)
class ImageInfo:
    """What decoding one image found (picklable, made in a worker process)."""

    size: int
    kind: str | None
    problem: str | None
    message: str
    hash: int | None


@dataclass(frozen=True)
class LabelResult:
    """Issues of one label file, the valid class ids, and the lines of its cleaned copy."""

    issues: list[Issue]
    classes: list[int]
    fixed_lines: list[str]


def inspect_image(path: str) -> ImageInfo:
    """Reads, sniffs, fully decodes and hashes one image (runs in a worker process)."""
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        return ImageInfo(0, None, "corrupt_image", f"cannot be read ({exc})", None)
    if not data:
        return ImageInfo(0, None, "empty_file", "image file is empty (0 bytes)", None)
    kind = sniff_type(data)
    try:
        image = decode_image(data)
    except ImageError as exc:
        message = _BYTESIO_REPR.sub("", str(exc))
        problem = "truncated_image" if "truncated" in message.lower() else "corrupt_image"
        return ImageInfo(len(data), kind, problem, message, None)
    if kind == "jpeg" and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        return ImageInfo(
            len(data), kind, "truncated_image", "JPEG has no end-of-image marker", None
        )
    factor = max(1, min(image.size) // 64)
    small = image.reduce(factor) if factor > 1 else image
    bits = np.asarray(perceptual_hash(small).hash, dtype=bool).ravel()
    return ImageInfo(len(data), kind, None, "", int.from_bytes(np.packbits(bits).tobytes(), "big"))


def inspect_all(paths: Sequence[Path], workers: int, progress: bool) -> list[ImageInfo]:
    """Inspects every image, in a process pool when ``workers`` > 1."""
    names = [str(p) for p in paths]
    if workers > 1 and len(names) > 1:
        pool = ProcessPoolExecutor(max_workers=workers)
        results: Iterable[ImageInfo] = pool.map(inspect_image, names, chunksize=16)
    else:
        pool = None
        results = map(inspect_image, names)
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


def check_label_text(text: str, file: str, n_classes: int) -> LabelResult:
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
                issue(
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
                issue("non_numeric", file, f"value {bad!r} is not a number in {raw!r}", number)
            )
            continue
        if not all(math.isfinite(v) for v in values):
            issues.append(
                issue("nan_value", file, f"NaN or infinite value in {raw.strip()!r}", number)
            )
            continue
        if values[0] != int(values[0]):
            issues.append(
                issue("non_numeric", file, f"class id {parts[0]!r} is not an integer", number)
            )
            continue
        cls, coords = int(values[0]), values[1:]
        if not 0 <= cls < n_classes:
            issues.append(
                issue(
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
                issue(
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
                issue(
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
            issue(
                "duplicate_box",
                file,
                f"duplicates the class-{good[later][1]} box on line {good[earlier][0]}",
                good[later][0],
            )
        )
    duplicate_fixed = _duplicates([(c, b) for c, b, _ in fixed])
    fixed_lines = [line for k, (_, _, line) in enumerate(fixed) if k not in duplicate_fixed]
    classes = [c for k, (_, c, _, _) in enumerate(good) if k not in duplicate_good]
    return LabelResult(issues=issues, classes=classes, fixed_lines=fixed_lines)


def _clipped_box(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (min(max(v, 0.0), 1.0) for v in box)
    return x1, y1, x2, y2


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_label(path: Path, file: str, n_classes: int) -> LabelResult:
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return LabelResult(
            [issue("unreadable_label", file, f"label file cannot be read as text ({exc})")],
            [],
            [],
        )
    return check_label_text(text, file, n_classes)
