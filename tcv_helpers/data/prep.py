"""Annotation and preprocessing (notebook 03): leak-free splits, what the model sees, augmentation.

Five pieces of the stage between raw labelled frames and training:

* **Leak-free splits.** Frames of one camera (or near-identical frames of a dataset without
  camera ids) look alike; if they land in both train and test, the test score measures memory,
  not generalisation. :func:`group_split` keeps every group in one split and stratifies classes;
  :func:`near_duplicate_groups` makes groups from perceptual hashes; :func:`split_report` shows
  the result.
* **Preprocessing shown.** :func:`tcv_helpers.imaging.letterbox` (the package's one letterbox,
  pixel for pixel Ultralytics' ``LetterBox``), :func:`boxes_to_letterbox` and :func:`normalize`
  turn a frame and its boxes into the tensor a YOLO model receives.
* **Augmentation preview.** :func:`augment` applies one augmentation with torchvision's v2
  transforms (boxes move with the image) or a photometric weather effect.
* **Class imbalance.** :func:`class_counts`, :func:`oversample` and :func:`write_image_list`
  repeat frames with rare classes in a training list Ultralytics reads.
* **Pseudo-label proposals.** :func:`propose_by_motion` proposes boxes of moving vehicles on a
  fixed camera by background subtraction, for a person to review: labels without any model.
"""

from __future__ import annotations

import copy
import math
import numbers
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import supervision as sv
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image, ImageDraw, ImageFilter

from tcv_helpers.data.labels import IMAGE_SUFFIXES, label_path_for, read_yolo_labels
from tcv_helpers.imaging import (
    NEAR_DUPLICATE_DISTANCE,
    image_array,
    letterbox,
    perceptual_hash,
    read_image,
)
from tcv_helpers.io import atomic_write_text
from tcv_helpers.project import PROJECT_CLASSES
from tcv_helpers.viz import COLOURS

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

#: Split names, in the order :func:`group_split` fills them.
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: Default share of items per split.
SPLIT_FRACTIONS: tuple[float, float, float] = (0.7, 0.15, 0.15)
#: Augmentations :func:`augment` knows: geometric, colour, then photometric weather effects.
GEOMETRIC_AUGMENTATIONS: tuple[str, ...] = ("flip", "rotate", "crop")
PHOTOMETRIC_AUGMENTATIONS: tuple[str, ...] = ("colour", "rain", "fog", "night")
AUGMENTATIONS: tuple[str, ...] = GEOMETRIC_AUGMENTATIONS + PHOTOMETRIC_AUGMENTATIONS
#: Range of the ``rotate`` augmentation's angle in degrees, either way (never ~0: a preview that
#: shows no change teaches nothing).
ROTATION_DEGREES: tuple[float, float] = (4.0, 10.0)
#: Area range (share of the frame) that the ``crop`` augmentation keeps before zooming back.
CROP_SCALE: tuple[float, float] = (0.45, 0.8)
#: A box keeping less than this share of its area inside the image after a geometric
#: augmentation is dropped: it has left the image.
MIN_BOX_VISIBLE = 0.3
#: Boxes narrower or lower than this many pixels after an augmentation are dropped.
MIN_BOX_SIDE = 2.0
#: Motion proposals: MOG2 marks shadows 127 and foreground 255; pixels above this are foreground.
FOREGROUND_THRESHOLD = 200
#: Motion proposals: squared Mahalanobis distance above which a pixel differs from the background.
MOG2_VAR_THRESHOLD = 16.0


# --------------------------------------------------------------------------------------------
# Leak-free splits
# --------------------------------------------------------------------------------------------


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    values = np.asarray(list(fractions), dtype=float)
    if (
        values.shape != (len(SPLITS),)
        or not np.isfinite(values).all()
        or (values <= 0).any()
        or abs(values.sum() - 1) > 1e-6
    ):
        raise ValueError(
            f"fractions must be {len(SPLITS)} positive numbers adding up to 1 "
            f"(for {', '.join(SPLITS)}), got {tuple(fractions)!r}."
        )
    return values


def group_split(
    groups: Sequence[str],
    class_counts: Sequence[Mapping[str, int]],
    *,
    fractions: Sequence[float] = SPLIT_FRACTIONS,
    seed: int = 0,
) -> list[str]:
    """Assigns every item to train, val or test, keeping each group whole and classes balanced.

    A group is what must not be split: a camera id, or a cluster of near-duplicate frames (see
    :func:`near_duplicate_groups`). Groups are taken largest first (ties in an order set by
    ``seed``) and each goes to the split where, afterwards, the splits are filled most evenly
    relative to their targets: in items (the ``fractions``) and in boxes of every class (each
    split should hold its fraction of every class). Every class weighs the same, so a rare class
    is spread over the splits when it can be, and otherwise lands in train, the largest split.
    Every split receives at least one group.

    Args:
        groups: Group of each item (one entry per image).
        class_counts: Boxes per class name in each item, e.g. ``{"car": 3, "bus": 1}``.
        fractions: Target share of items for train, val and test.
        seed: Orders groups of equal size; the same inputs and seed give the same split.

    Returns:
        The split name (``train``, ``val`` or ``test``) of each item, in input order.

    Raises:
        ValueError: If the lengths differ, the fractions are not three positive numbers adding
            up to 1, there are fewer groups than splits, or a count is negative or not whole.

    Example:
        >>> cameras = ["a"] * 5 + ["b"] * 2 + ["c"]
        >>> group_split(cameras, [{"car": 1}] * 8, fractions=(0.6, 0.25, 0.15))
        ['train', 'train', 'train', 'train', 'train', 'val', 'val', 'test']
    """
    groups, counts = list(groups), list(class_counts)
    if len(groups) != len(counts):
        raise ValueError(
            f"groups and class_counts must have one entry per item: got {len(groups)} groups "
            f"and {len(counts)} class counts."
        )
    target = _check_fractions(fractions)
    unique = list(dict.fromkeys(groups))
    if len(unique) < len(SPLITS):
        raise ValueError(
            f"need at least {len(SPLITS)} distinct groups to fill {', '.join(SPLITS)} without "
            f"leakage, got {len(unique)}."
        )
    classes = sorted({name for mapping in counts for name in mapping})
    column = {name: k for k, name in enumerate(classes)}
    row = {group: k for k, group in enumerate(unique)}
    sizes = np.zeros(len(unique))
    boxes = np.zeros((len(unique), len(classes)))
    for number, (group, mapping) in enumerate(zip(groups, counts, strict=True)):
        sizes[row[group]] += 1
        for name, value in mapping.items():
            whole = isinstance(value, numbers.Real) and not isinstance(value, bool)
            if not whole or not float(value).is_integer() or value < 0:
                raise ValueError(
                    f"item {number}: the count of {name!r} must be a whole number >= 0, "
                    f"got {value!r}."
                )
            boxes[row[group], column[name]] += value
    total_boxes = boxes.sum(axis=0)
    present = total_boxes > 0
    size_target = target * len(groups)
    class_target = target[:, None] * total_boxes[None, present]

    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(len(unique))
    order = sorted(shuffled, key=lambda g: -sizes[g])  # stable: equal sizes keep the seed order
    filled = np.zeros(len(SPLITS))
    filled_boxes = np.zeros((len(SPLITS), int(present.sum())))
    members = np.zeros(len(SPLITS), dtype=int)
    split_of = np.empty(len(unique), dtype=int)

    def cost(split: int, group: int) -> float:
        items = filled.copy()
        items[split] += sizes[group]
        spread = float(np.var(items / size_target))
        if class_target.size:
            per_class = filled_boxes.copy()
            per_class[split] += boxes[group, present]
            spread += float(np.var(per_class / class_target, axis=0).mean())
        return spread

    for rank, group in enumerate(order):
        empty = [s for s in range(len(SPLITS)) if members[s] == 0]
        candidates = empty if len(empty) >= len(order) - rank else range(len(SPLITS))
        best = min(candidates, key=lambda s: cost(s, group))
        split_of[group] = best
        filled[best] += sizes[group]
        filled_boxes[best] += boxes[group, present]
        members[best] += 1
    return [SPLITS[split_of[row[group]]] for group in groups]


def near_duplicate_groups(
    image_paths: Sequence[str | os.PathLike], *, max_distance: int = NEAR_DUPLICATE_DISTANCE
) -> list[str]:
    """Clusters near-identical frames, so a dataset without camera ids can be split leak-free.

    Every image gets a 64-bit perceptual hash; two images at most ``max_distance`` bits apart are
    linked, and linked images form one group (connected components, the union-find of all
    links, so a chain of near-duplicates is one group). Pass the result as ``groups`` to
    :func:`group_split`.

    Args:
        image_paths: The image files.
        max_distance: Largest Hamming distance between hashes of frames that count as the same.

    Returns:
        A group name per image (``dup-0000`` ...), numbered in order of first appearance.

    Raises:
        ValueError: If ``max_distance`` is negative or not a whole number, or an image cannot be
            read (:class:`~tcv_helpers.imaging.ImageError`, naming the file).

    Example:
        >>> near_duplicate_groups(["a.jpg", "a_copy.jpg", "b.jpg"])  # doctest: +SKIP
        ['dup-0000', 'dup-0000', 'dup-0001']
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if isinstance(max_distance, bool) or not isinstance(max_distance, int) or max_distance < 0:
        raise ValueError(f"max_distance must be a whole number >= 0, got {max_distance!r}.")
    paths = [Path(p) for p in image_paths]
    if not paths:
        return []
    bits = np.stack(
        [np.asarray(perceptual_hash(read_image(p)).hash, dtype=np.int32).ravel() for p in paths]
    )
    rows, cols = [], []
    chunk = 1024
    for start in range(0, len(bits), chunk):  # Hamming distances, a block of rows at a time
        block = bits[start : start + chunk]
        distance = block @ (1 - bits).T + (1 - block) @ bits.T
        i, j = np.nonzero(distance <= max_distance)
        rows.append(i + start)
        cols.append(j)
    i, j = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(len(paths), len(paths)))
    _, labels = connected_components(graph, directed=False)
    number = {label: k for k, label in enumerate(dict.fromkeys(labels.tolist()))}
    return [f"dup-{number[label]:04d}" for label in labels.tolist()]


def split_report(
    groups: Sequence[str], splits: Sequence[str], class_counts: Sequence[Mapping[str, int]]
) -> pd.DataFrame:
    """Images, groups and boxes per class in each split, and whether any group leaks.

    Args:
        groups: Group of each item.
        splits: Split of each item (from :func:`group_split`).
        class_counts: Boxes per class name in each item.

    Returns:
        One row per split (train, val, test first, then any other name): ``images``,
        ``image_share``, ``groups``, one box count per class, ``boxes`` and ``leak_free`` (True
        when none of the split's groups also has items in another split).

    Raises:
        ValueError: If the three sequences differ in length.

    Example:
        >>> report = split_report(["a", "b", "c"], ["train", "val", "test"], [{"car": 1}] * 3)
        >>> report["images"].tolist(), bool(report["leak_free"].all())
        ([1, 1, 1], True)
    """
    import pandas as pd

    groups, splits, counts = list(groups), list(splits), list(class_counts)
    if not len(groups) == len(splits) == len(counts):
        raise ValueError(
            f"groups, splits and class_counts must have one entry per item: got {len(groups)}, "
            f"{len(splits)} and {len(counts)}."
        )
    classes = sorted({name for mapping in counts for name in mapping})
    names = [s for s in SPLITS if s in splits] + sorted(set(splits) - set(SPLITS))
    splits_of_group: dict[str, set[str]] = {}
    for group, split in zip(groups, splits, strict=True):
        splits_of_group.setdefault(group, set()).add(split)
    rows = []
    for name in names:
        chosen = [k for k, split in enumerate(splits) if split == name]
        per_class = {c: int(sum(counts[k].get(c, 0) for k in chosen)) for c in classes}
        in_split = {groups[k] for k in chosen}
        rows.append(
            {
                "split": name,
                "images": len(chosen),
                "image_share": len(chosen) / len(splits),
                "groups": len(in_split),
                **per_class,
                "boxes": sum(per_class.values()),
                "leak_free": all(len(splits_of_group[g]) == 1 for g in in_split),
            }
        )
    columns = ["split", "images", "image_share", "groups", *classes, "boxes", "leak_free"]
    return pd.DataFrame(rows, columns=columns).set_index("split")


# --------------------------------------------------------------------------------------------
# Preprocessing shown
# --------------------------------------------------------------------------------------------


def _xyxy(boxes: np.ndarray | sv.Detections) -> np.ndarray:
    array = boxes.xyxy if isinstance(boxes, sv.Detections) else np.asarray(boxes, dtype=float)
    if array.size == 0:
        return np.zeros((0, 4), dtype=np.float32)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"boxes must be an (N, 4) array of x1, y1, x2, y2, got {array.shape}.")
    return array.astype(np.float32)


def boxes_to_letterbox(
    xyxy: np.ndarray | sv.Detections, scale: float, pad: tuple[int, int]
) -> np.ndarray:
    """Maps ``x1, y1, x2, y2`` boxes from the original frame into the letterboxed one.

    Args:
        xyxy: ``(N, 4)`` boxes in the original frame's pixels, or detections.
        scale: The scale :func:`tcv_helpers.imaging.letterbox` returned.
        pad: The ``(left, top)`` padding it returned.

    Returns:
        ``(N, 4)`` float32 boxes in the letterboxed frame's pixels.

    Raises:
        ValueError: If the boxes are not ``(N, 4)`` or the scale is not positive.

    Example:
        >>> boxes_to_letterbox(np.array([[0, 0, 100, 50]]), 0.5, (0, 70)).tolist()
        [[0.0, 70.0, 50.0, 95.0]]
    """
    if not (isinstance(scale, int | float) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number, got {scale!r}.")
    left, top = pad
    boxes = _xyxy(xyxy)
    return (boxes * scale + np.array([left, top, left, top], dtype=np.float32)).astype(np.float32)


def normalize(array: np.ndarray) -> np.ndarray:
    """The frame as a model receives it: float32 in [0, 1], channels first (``C, H, W``).

    Args:
        array: An ``(H, W, 3)`` uint8 RGB array (e.g. from :func:`tcv_helpers.imaging.letterbox`).

    Returns:
        A contiguous ``(3, H, W)`` float32 array with values in [0, 1].

    Raises:
        ValueError: If the array is not ``(H, W, 3)`` uint8.

    Example:
        >>> normalize(np.full((2, 4, 3), 255, np.uint8)).shape
        (3, 2, 4)
    """
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8:
        raise ValueError("normalize expects a uint8 (H, W, 3) array (values 0-255).")
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"normalize expects an (H, W, 3) array, got shape {array.shape}.")
    return np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32) / np.float32(255)


def _draw_boxes(ax: Axes, boxes: np.ndarray, class_ids: np.ndarray | None = None) -> None:
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        colour = COLOURS[int(class_ids[k]) % len(COLOURS)] if class_ids is not None else COLOURS[0]
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1.3, ec=colour))


def _class_ids(boxes: np.ndarray | sv.Detections) -> np.ndarray | None:
    return boxes.class_id if isinstance(boxes, sv.Detections) else None


def plot_letterbox(
    image: Image.Image | np.ndarray, boxes: np.ndarray | sv.Detections, size: int
) -> Figure:
    """The original frame next to its letterboxed version, boxes drawn on both.

    Args:
        image: An RGB PIL image or ``(H, W, 3)`` uint8 array.
        boxes: ``(N, 4)`` boxes in the original frame, or detections.
        size: The model's input size.

    Returns:
        A figure with two panels; the second's title gives the scale and padding.

    Raises:
        ValueError: On bad boxes or size (see :func:`tcv_helpers.imaging.letterbox`).
    """
    array = image_array(image)
    xyxy = _xyxy(boxes)
    out, scale, pad = letterbox(array, size)
    fig = Figure(figsize=(11, 4.6))
    axes = fig.subplots(1, 2, width_ratios=[array.shape[1] / array.shape[0], 1])
    axes[0].imshow(array)
    _draw_boxes(axes[0], xyxy, _class_ids(boxes))
    axes[0].set_title(f"original {array.shape[1]} x {array.shape[0]}")
    axes[1].imshow(out)
    _draw_boxes(axes[1], boxes_to_letterbox(xyxy, scale, pad), _class_ids(boxes))
    axes[1].set_title(
        f"letterboxed {out.shape[1]} x {out.shape[0]}\nscale {scale:.3f}, pad (left, top) {pad}"
    )
    for ax in axes:
        ax.set_axis_off()
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Augmentation preview
# --------------------------------------------------------------------------------------------


def _box_area(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def _torchvision_augment(
    array: np.ndarray, detections: sv.Detections, kind: str, seed: int
) -> tuple[Image.Image, sv.Detections]:
    """Flip, rotate, crop or colour with torchvision v2; boxes follow, leavers are dropped."""
    import torch
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    height, width = array.shape[:2]
    transforms = {
        "flip": v2.RandomHorizontalFlip(p=1.0),
        "rotate": v2.RandomChoice(
            [
                v2.RandomRotation(degrees=ROTATION_DEGREES, interpolation="bilinear", fill=114),
                v2.RandomRotation(
                    degrees=(-ROTATION_DEGREES[1], -ROTATION_DEGREES[0]),
                    interpolation="bilinear",
                    fill=114,
                ),
            ]
        ),
        "crop": v2.RandomResizedCrop(
            size=(height, width),
            scale=CROP_SCALE,
            ratio=(0.9 * width / height, 1.1 * width / height),
        ),
        "colour": v2.ColorJitter(brightness=0.5, contrast=0.5, saturation=0.6, hue=0.06),
    }
    sample = {
        "image": tv_tensors.Image(torch.from_numpy(np.array(array)).permute(2, 0, 1)),
        "boxes": tv_tensors.BoundingBoxes(
            torch.from_numpy(_xyxy(detections)),
            format="XYXY",
            canvas_size=(height, width),
            clamping_mode=None,  # keep the full extent: how much left the image is checked below
        ),
        "labels": torch.arange(len(detections)),  # row numbers, so every field follows the box
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        moved = transforms[kind](sample)
    raw = moved["boxes"].as_subclass(torch.Tensor).numpy().astype(np.float32).reshape(-1, 4)
    clipped = np.clip(raw, 0, [width, height, width, height]).astype(np.float32)
    visible = _box_area(clipped) / np.maximum(_box_area(raw), 1e-6)
    keep = (
        (visible >= MIN_BOX_VISIBLE)
        & (clipped[:, 2] - clipped[:, 0] >= MIN_BOX_SIDE)
        & (clipped[:, 3] - clipped[:, 1] >= MIN_BOX_SIDE)
    )
    rows = moved["labels"].numpy()[keep]
    result = detections[rows]
    result.xyxy = clipped[keep]
    image = Image.fromarray(moved["image"].permute(1, 2, 0).numpy())
    return image, result


def _rain(array: np.ndarray, rng: np.random.Generator) -> Image.Image:
    height, width = array.shape[:2]
    dimmed = Image.fromarray((array.astype(np.float32) * 0.82 + 12).astype(np.uint8))
    overlay = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    slant = rng.uniform(-0.35, 0.35)
    for _ in range(width * height // 350):
        x, y = rng.uniform(-20, width + 20), rng.uniform(-20, height)
        length = rng.uniform(6, 16)
        alpha = int(rng.integers(70, 150))
        draw.line([(x, y), (x + slant * length, y + length)], fill=(210, 210, 220, alpha), width=1)
    rainy = Image.alpha_composite(dimmed.convert("RGBA"), overlay).convert("RGB")
    return rainy.filter(ImageFilter.GaussianBlur(0.8))


def _fog(array: np.ndarray, rng: np.random.Generator) -> Image.Image:
    height, width = array.shape[:2]
    patches = Image.fromarray((rng.uniform(0.6, 1.0, (6, 10)) * 255).astype(np.uint8))
    texture = np.asarray(patches.resize((width, height), Image.Resampling.BICUBIC), np.float32)
    depth = np.linspace(0.75, 0.3, height, dtype=np.float32)[:, None]  # far (top) is foggier
    density = (depth * texture / 255)[..., None]
    fogged = array.astype(np.float32) * (1 - density) + np.float32(205) * density
    return Image.fromarray(np.clip(fogged, 0, 255).astype(np.uint8))


def _night(array: np.ndarray, rng: np.random.Generator) -> Image.Image:
    light = (array.astype(np.float32) / 255) ** 1.8 * 0.45
    tinted = light * np.array([0.8, 0.85, 1.1], dtype=np.float32) * 255
    noisy = tinted + rng.normal(0, 4, (*array.shape[:2], 1)).astype(np.float32)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def augment(
    image: Image.Image | np.ndarray, detections: sv.Detections, kind: str, *, seed: int = 0
) -> tuple[Image.Image, sv.Detections]:
    """Applies one augmentation to a frame and its boxes.

    Geometric ones (``flip``, ``rotate``, ``crop``) and ``colour`` use torchvision's v2
    transforms with :class:`torchvision.tv_tensors.BoundingBoxes`, so the boxes move with the
    image; boxes that mostly leave the image (less than :data:`MIN_BOX_VISIBLE` of their area
    stays) are dropped and the rest are clipped to it. ``rain``, ``fog`` and ``night`` are
    photometric effects drawn with numpy and PIL: the boxes stay as they are.

    Args:
        image: An RGB PIL image or ``(H, W, 3)`` uint8 array.
        detections: The frame's boxes (class ids and other fields follow their boxes).
        kind: One of :data:`AUGMENTATIONS`.
        seed: Seed of the random parameters; the same seed gives the same result.

    Returns:
        The augmented image (same size) and its detections.

    Raises:
        ValueError: On an unknown ``kind`` or a bad image array.
        TypeError: If ``detections`` is not an ``sv.Detections``.

    Example:
        >>> frame = np.zeros((100, 200, 3), np.uint8)
        >>> boxes = sv.Detections(xyxy=np.array([[10.0, 10.0, 50.0, 40.0]]), class_id=np.array([0]))
        >>> augment(frame, boxes, "flip")[1].xyxy.tolist()
        [[150.0, 10.0, 190.0, 40.0]]
    """
    if kind not in AUGMENTATIONS:
        raise ValueError(f"kind must be one of {', '.join(AUGMENTATIONS)}, got {kind!r}.")
    if not isinstance(detections, sv.Detections):
        raise TypeError(f"detections must be an sv.Detections, got {type(detections).__name__}.")
    array = image_array(image)
    if kind in (*GEOMETRIC_AUGMENTATIONS, "colour"):
        return _torchvision_augment(array, detections, kind, seed)
    rng = np.random.default_rng([seed, AUGMENTATIONS.index(kind)])
    effect = {"rain": _rain, "fog": _fog, "night": _night}[kind]
    return effect(array, rng), copy.deepcopy(detections)


def plot_augmentations(
    image: Image.Image | np.ndarray,
    detections: sv.Detections,
    kinds: Sequence[str] = AUGMENTATIONS,
    seed: int = 0,
    *,
    columns: int = 4,
) -> Figure:
    """The original frame and each augmentation of it in a grid, boxes drawn.

    Args:
        image: An RGB PIL image or ``(H, W, 3)`` uint8 array.
        detections: The frame's boxes.
        kinds: Augmentations to show (see :data:`AUGMENTATIONS`).
        seed: Seed of every augmentation.
        columns: Panels per row.

    Returns:
        The figure; each panel's title names the augmentation and its box count.

    Raises:
        ValueError: On an unknown kind or fewer than one column.
    """
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}.")
    unknown = [kind for kind in kinds if kind not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"unknown kind(s) {unknown}; known: {', '.join(AUGMENTATIONS)}.")
    panels = [("original", image_array(image), detections)]
    for kind in kinds:
        out, moved = augment(image, detections, kind, seed=seed)
        panels.append((kind, np.asarray(out), moved))
    rows = math.ceil(len(panels) / columns)
    height, width = panels[0][1].shape[:2]
    fig = Figure(figsize=(3.6 * columns, 3.6 * rows * height / width + 0.5 * rows))
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, (title, array, boxes) in zip(axes, panels, strict=False):
        ax.imshow(array)
        _draw_boxes(ax, _xyxy(boxes), boxes.class_id)
        ax.set_title(f"{title} ({len(boxes)} boxes)", fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Class imbalance
# --------------------------------------------------------------------------------------------


def _names(names: Sequence[str] | Mapping[int, str]) -> list[str]:
    listed = [names[k] for k in sorted(names)] if isinstance(names, Mapping) else list(names)
    if not listed or isinstance(names, str):
        raise ValueError("names must list at least one class name (index = class id).")
    return listed


def _label_file(path: str | os.PathLike) -> Path:
    """The YOLO label file of a path that is either a label file or an image."""
    file = Path(path)
    return file if file.suffix.lower() == ".txt" else label_path_for(file)


def _image_file(path: str | os.PathLike) -> Path:
    """The image of a path that is either an image or a label file (looked up on disk)."""
    file = Path(path)
    if file.suffix.lower() != ".txt":
        return file
    parts = list(file.parts)
    folders = [i for i, part in enumerate(parts[:-1]) if part == "labels"]
    if folders:
        parts[folders[-1]] = "images"
    stem = Path(*parts)
    for suffix in IMAGE_SUFFIXES + tuple(s.upper() for s in IMAGE_SUFFIXES):
        candidate = stem.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{file}: no image found for this label file (looked for {stem}.*).")


def _count_matrix(files: Sequence[str | os.PathLike], names: list[str]) -> np.ndarray:
    counts = np.zeros((len(files), len(names)), dtype=np.int64)
    for row, path in enumerate(files):
        label = _label_file(path)
        _, ids = read_yolo_labels(label, 1, 1)
        bad = ids[(ids < 0) | (ids >= len(names))]
        if bad.size:
            raise ValueError(
                f"{label}: class id {int(bad[0])} is outside the {len(names)} names given."
            )
        counts[row] = np.bincount(ids, minlength=len(names))
    return counts


def class_counts(
    label_files: Sequence[str | os.PathLike], names: Sequence[str] | Mapping[int, str]
) -> pd.Series:
    """Boxes per class over YOLO label files.

    Args:
        label_files: YOLO ``.txt`` label files, or images (their label file is found the way
            Ultralytics does); a missing label file means an image without objects.
        names: Class names by id: a list, or the ``names`` mapping of a ``data.yaml``.

    Returns:
        A Series named ``boxes``, indexed by class name (all names, zeros included).

    Raises:
        ValueError: If ``names`` is empty, a label line is malformed, or a class id has no name.

    Example:
        >>> class_counts([], ["car", "bus"]).tolist()
        [0, 0]
    """
    import pandas as pd

    listed = _names(names)
    totals = _count_matrix(list(label_files), listed).sum(axis=0)
    return pd.Series(totals, index=pd.Index(listed, name="class"), name="boxes", dtype="int64")


def oversample(
    label_files: Sequence[str | os.PathLike],
    names: Sequence[str] | Mapping[int, str],
    *,
    target: str | int = "max",
    seed: int = 0,
) -> list[Path]:
    """A training list in which images with rare classes appear several times.

    Every image appears once; then, while some class has fewer boxes than ``target``, an image
    containing the class furthest below it is added again. Images of a class are reused in turn
    (purest first, i.e. those with most of their boxes in classes still below target; ties in
    an order set by ``seed``), so no single frame is repeated much more than the others. A class
    stops when one more image would take it further from the target than it is. Classes with no
    box at all cannot be raised and are left alone; classes above the target are never reduced
    (and grow when they share frames with rare ones).

    Args:
        label_files: YOLO ``.txt`` label files (their images are looked up under the matching
            ``images`` folder) or images (their label files are found the way Ultralytics does).
        names: Class names by id: a list, or the ``names`` mapping of a ``data.yaml``.
        target: Boxes to aim for per class: ``"max"`` (the most common class's count) or a
            positive number.
        seed: Orders equally good images; the same inputs and seed give the same list.

    Returns:
        Image paths: every image once in input order, then the repeats in the order added.

    Raises:
        ValueError: On a bad ``target``, empty ``names`` or a malformed label file.
        FileNotFoundError: If a label file has no image next to its ``images`` folder.

    Example:
        >>> oversample(["images/a.jpg"], ["car"])  # doctest: +SKIP
        [PosixPath('images/a.jpg')]
    """
    listed = _names(names)
    files = list(label_files)
    if target != "max" and (isinstance(target, bool) or not isinstance(target, int) or target < 1):
        raise ValueError(f"target must be 'max' or a positive whole number, got {target!r}.")
    images = [_image_file(f) for f in files]
    counts = _count_matrix(files, listed)
    totals = counts.sum(axis=0)
    goal = int(totals.max()) if target == "max" else int(target)
    active = [c for c in range(len(listed)) if 0 < totals[c] < goal]
    rng = np.random.default_rng(seed)
    tiebreak = rng.permutation(len(files))
    queues: dict[int, list[int]] = {}
    for c in active:
        rare = counts[:, active].sum(axis=1)
        purity = rare / np.maximum(counts.sum(axis=1), 1)
        holders = [i for i in range(len(files)) if counts[i, c] > 0]
        queues[c] = sorted(holders, key=lambda i: (-purity[i], tiebreak[i]))
    turn = dict.fromkeys(active, 0)
    extra: list[Path] = []
    while active:
        c = max(active, key=lambda k: ((goal - totals[k]) / goal, -k))
        i = queues[c][turn[c] % len(queues[c])]
        if counts[i, c] >= 2 * (goal - totals[c]):  # one more would overshoot by more than it helps
            active.remove(c)
            continue
        turn[c] += 1
        totals += counts[i]
        extra.append(images[i])
        active = [k for k in active if totals[k] < goal]
    return images + extra


def write_image_list(images: Sequence[str | os.PathLike], path: str | os.PathLike) -> Path:
    """Writes a list of image paths that Ultralytics accepts as a ``train:`` (or ``val:``) entry.

    One absolute path per line; repeated lines are kept (that is how oversampling works). The
    labels are found from each image path as usual (``images`` -> ``labels``).

    Args:
        images: Image paths (e.g. from :func:`oversample`).
        path: The ``.txt`` file to write, atomically.

    Returns:
        The written file.

    Raises:
        ValueError: If the list is empty or the file name does not end in ``.txt``.

    Example:
        >>> write_image_list(["data/images/train/a.jpg"], "train.txt")  # doctest: +SKIP
        PosixPath('train.txt')
    """
    target = Path(path)
    if target.suffix != ".txt":
        raise ValueError(f"Ultralytics reads image lists from .txt files, got {target.name!r}.")
    listed = [Path(p).resolve().as_posix() for p in images]
    if not listed:
        raise ValueError("images is empty: a training list needs at least one image.")
    return atomic_write_text(target, "\n".join(listed) + "\n")


def plot_class_balance(before: pd.Series, after: pd.Series) -> Figure:
    """Boxes per class before and after rebalancing, as paired bars.

    Args:
        before: Boxes per class (from :func:`class_counts`).
        after: Boxes per class after oversampling (:func:`class_counts` of the new list).

    Returns:
        The figure, with the counts written above the bars.
    """
    classes = list(dict.fromkeys([*before.index, *after.index]))
    values = [before.reindex(classes, fill_value=0), after.reindex(classes, fill_value=0)]
    fig = Figure(figsize=(max(6.0, 1.3 * len(classes) + 2), 4.2))
    ax = fig.subplots()
    xpos = np.arange(len(classes))
    for offset, series, label, colour in zip(
        (-0.2, 0.2), values, ("before", "after"), ("#999999", "#4363d8"), strict=True
    ):
        bars = ax.bar(xpos + offset, series.to_numpy(), width=0.4, label=label, color=colour)
        ax.bar_label(bars, fontsize=8)
    ax.set_xticks(xpos, labels=[str(c) for c in classes])
    ax.set_ylabel("boxes")
    ax.set_title("Class balance of the training list")
    ax.legend()
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Pseudo-label proposals on a fixed camera
# --------------------------------------------------------------------------------------------


def _frame_array(frame: np.ndarray | Image.Image | str | os.PathLike) -> np.ndarray:
    if isinstance(frame, str | os.PathLike):
        return np.asarray(read_image(frame))
    return image_array(frame)


def propose_by_motion(
    frames: Iterable[np.ndarray | Image.Image | str | os.PathLike],
    *,
    history: int = 50,
    min_area: float = 80,
    warmup: int = 10,
    roi: np.ndarray | None = None,
) -> list[sv.Detections]:
    """Proposes boxes around moving objects in the frames of a fixed camera, without a model.

    Classic background subtraction: OpenCV's MOG2 learns a per-pixel model of the static scene;
    pixels that do not fit it are foreground (shadows, which MOG2 marks separately, are not).
    An opening removes speckle, a closing fills each vehicle's blob, and the outer contours of
    blobs of at least ``min_area`` pixels become boxes. The proposals are **pseudo-labels for a
    person to review** (class id 0, "car", as a placeholder): they merge vehicles that touch and
    miss vehicles that stand still. The confidence is the blob's solidity (area / convex hull
    area) times a factor growing with its size, so compact, large blobs come first.

    Args:
        frames: Consecutive frames of one camera: RGB or BGR ``(H, W, 3)`` uint8 arrays (the
            channel order does not matter here), PIL images or image files; all the same size.
        history: Frames the background model remembers.
        min_area: Smallest blob area in pixels that becomes a box.
        warmup: Frames at the start used only to learn the background (they get no boxes).
        roi: Optional ``(H, W)`` boolean mask of where to look (e.g. the road, without the
            burned-in clock).

    Returns:
        One ``sv.Detections`` per frame (empty during the warm-up).

    Raises:
        ValueError: If ``history`` is below 1, ``min_area`` is not positive, ``warmup`` is
            negative, a frame differs in size from the first, or ``roi`` does not match.

    Example:
        >>> proposals = propose_by_motion(sorted(Path("seq/frames").glob("*.jpg")))  # doctest: +SKIP
    """
    if isinstance(history, bool) or not isinstance(history, int) or history < 1:
        raise ValueError(f"history must be a whole number >= 1, got {history!r}.")
    if not (isinstance(min_area, int | float) and math.isfinite(min_area) and min_area > 0):
        raise ValueError(f"min_area must be a positive number of pixels, got {min_area!r}.")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be a whole number >= 0, got {warmup!r}.")
    subtractor = cv2.createBackgroundSubtractorMOG2(
        history=history, varThreshold=MOG2_VAR_THRESHOLD, detectShadows=True
    )
    side = max(3, round(math.sqrt(min_area) / 2) | 1)
    open_kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    close_kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    shape: tuple[int, ...] | None = None
    proposals: list[sv.Detections] = []
    for index, frame in enumerate(frames):
        array = _frame_array(frame)
        if shape is None:
            shape = array.shape
            if roi is not None and np.shape(roi) != shape[:2]:
                raise ValueError(
                    f"roi must have the frames' shape {shape[:2]}, got {np.shape(roi)}."
                )
        elif array.shape != shape:
            raise ValueError(f"frame {index} is {array.shape}, the first frame was {shape}.")
        mask = subtractor.apply(array)
        if index < warmup:
            proposals.append(sv.Detections.empty())
            continue
        _, mask = cv2.threshold(mask, FOREGROUND_THRESHOLD, 255, cv2.THRESH_BINARY)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, open_kernel)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, close_kernel)
        if roi is not None:
            mask[~np.asarray(roi, dtype=bool)] = 0
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        boxes, confidence = [], []
        for contour in contours:
            area = cv2.contourArea(contour)
            if area < min_area:
                continue
            hull = cv2.contourArea(cv2.convexHull(contour))
            solidity = area / hull if hull > 0 else 0.0
            x, y, w, h = cv2.boundingRect(contour)
            boxes.append([x, y, x + w, y + h])
            confidence.append(solidity * (1 - math.exp(-area / (4 * min_area))))
        proposals.append(
            sv.Detections(
                xyxy=np.array(boxes, dtype=np.float32).reshape(-1, 4),
                confidence=np.array(confidence, dtype=np.float32),
                class_id=np.full(len(boxes), PROJECT_CLASSES.index("car"), dtype=np.int64),
            )
        )
    return proposals


#: COCO class names (what pretrained YOLO models predict) that map into the project taxonomy.
COCO_TO_PROJECT = {
    "car": "car",
    "truck": "truck",
    "bus": "bus",
    "motorcycle": "motorcycle",
    "bicycle": "bicycle",
    "person": "person",
}


def propose_by_model(
    model: str | os.PathLike | object,
    frames: Sequence[str | os.PathLike],
    *,
    conf: float = 0.25,
    imgsz: int = 640,
    class_map: Mapping[str, str] | None = None,
) -> list[sv.Detections]:
    """Proposes labels with an existing detector (Ultralytics YOLO weights or model object).

    The model's class names are mapped into the project taxonomy: by name when the model was
    trained on it (notebook 05), through :data:`COCO_TO_PROJECT` for a COCO-pretrained model;
    other classes (a model's "dog", "traffic light") are left out of the proposals.

    Args:
        model: A ``.pt`` path the course trusts (:func:`tcv_helpers.trust.check_weights`) or a
            loaded ``ultralytics.YOLO`` (pretrained COCO weights, checksum verified:
            ``tcv_helpers.model.predict.load_yolo("yolo11n.pt")``).
        frames: Image files.
        conf: Lowest confidence proposed.
        imgsz: Inference size.
        class_map: Model class name to project class (default: identity for project names, then
            :data:`COCO_TO_PROJECT`).

    Returns:
        One ``sv.Detections`` per frame, ``class_id`` indexing :data:`PROJECT_CLASSES`.

    Raises:
        ValueError: If ``conf`` is outside 0-1.
        UntrustedWeights: For a ``.pt`` of unknown origin.
    """
    from ultralytics import YOLO

    from tcv_helpers.env import use_every_core
    from tcv_helpers.trust import check_weights

    if not 0 <= conf <= 1:
        raise ValueError(f"conf must be between 0 and 1, got {conf}.")
    use_every_core()
    # A .pt passes the course's trust check before Ultralytics unpickles it.
    detector = model if hasattr(model, "predict") else YOLO(str(check_weights(model)))
    names = detector.names
    mapping = dict(class_map) if class_map is not None else {**COCO_TO_PROJECT}
    to_project = {
        int(k): PROJECT_CLASSES.index(mapping.get(v, v))
        for k, v in names.items()
        if mapping.get(v, v) in PROJECT_CLASSES
    }
    proposals = []
    for frame in frames:
        result = detector.predict(str(frame), conf=conf, imgsz=imgsz, verbose=False)[0]
        detections = sv.Detections.from_ultralytics(result)
        keep = np.array([int(c) in to_project for c in detections.class_id], dtype=bool)
        detections = detections[keep] if len(detections) else detections
        if len(detections):
            detections.class_id = np.array([to_project[int(c)] for c in detections.class_id])
        proposals.append(detections)
    return proposals
