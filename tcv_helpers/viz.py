"""Plots. Every function returns a matplotlib Figure; nothing is shown or saved on its own."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse, Polygon, Rectangle

if TYPE_CHECKING:  # the core never imports a stage at run time (COURSE.md section 8)
    from tcv_helpers.data.dataset import Dataset
    from tcv_helpers.data.labels import LabeledFrame

COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45"]


def _colour_map(names: list[str]) -> dict[str, str]:
    return {name: COLOURS[i % len(COLOURS)] for i, name in enumerate(sorted(set(names)))}


def plot_task_types(frame: LabeledFrame, *, width: float = 15.0) -> Figure:
    """The same frame seen as classification, detection and segmentation, side by side.

    Args:
        frame: A labelled frame (see :func:`tcv_helpers.data.card.example_frame`).
        width: Figure width in inches.

    Returns:
        A figure with three panels.
    """
    aspect = frame.image.height / frame.image.width
    fig = Figure(figsize=(width, width / 3 * aspect + 0.9))
    axes = fig.subplots(1, 3)
    colours = _colour_map(frame.class_names)
    counts = Counter(frame.class_names)
    for ax in axes:
        ax.imshow(frame.image)
        ax.set_axis_off()
    summary = ", ".join(f"{n} x{c}" for n, c in counts.most_common()) or "no objects"
    axes[0].set_title("Classification: one answer per image")
    axes[0].text(
        0.02,
        0.04,
        f"contains: {summary}",
        transform=axes[0].transAxes,
        fontsize=9,
        color="white",
        bbox={"facecolor": "black", "alpha": 0.7},
    )
    axes[1].set_title(f"Detection: a box per object ({len(frame.class_names)})")
    for (x1, y1, x2, y2), name in zip(frame.boxes, frame.class_names, strict=True):
        axes[1].add_patch(
            Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1.5, ec=colours[name])
        )
        axes[1].text(
            x1,
            y1 - 2,
            name,
            fontsize=7,
            color="white",
            bbox={"facecolor": colours[name], "alpha": 0.8, "pad": 1, "lw": 0},
        )
    exact = frame.polygons is not None
    axes[2].set_title(
        "Segmentation: the pixels of each object" + ("" if exact else " (approximate)")
    )
    for i, name in enumerate(frame.class_names):
        if exact:
            patch = Polygon(frame.polygons[i], closed=True)
        else:  # no outlines in the labels: an ellipse inside the box stands in for the mask
            x1, y1, x2, y2 = frame.boxes[i]
            patch = Ellipse(((x1 + x2) / 2, (y1 + y2) / 2), x2 - x1, y2 - y1)
        patch.set(facecolor=colours[name], alpha=0.55, edgecolor=colours[name])
        axes[2].add_patch(patch)
    fig.text(0.01, 0.01, f"{frame.source}. {frame.attribution}", fontsize=8, color="#555")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def plot_estimates(table, *, title: str = "Estimated training time") -> Figure:
    """Horizontal bars of estimated training minutes per hardware (log scale), cost annotated.

    Args:
        table: The DataFrame from :func:`tcv_helpers.compute.estimates_table`.
        title: Figure title.

    Returns:
        The figure.
    """
    fig = Figure(figsize=(9, 0.5 * len(table) + 1.5))
    ax = fig.subplots()
    minutes = np.maximum(table["minutes"].to_numpy(dtype=float), 0.1)
    ypos = np.arange(len(table))
    ax.barh(
        ypos, minutes, color=["#4363d8" if a != "cpu" else "#999999" for a in table["accelerator"]]
    )
    ax.set_yticks(ypos, labels=table["hardware"])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("minutes (log scale)")
    ax.set_title(title)
    for y, m, cost, unit in zip(ypos, minutes, table["cost"], table["unit"], strict=True):
        label = f"{m:,.0f} min" if m >= 1 else f"{m * 60:.0f} s"
        label += f", {cost:,.2f} {unit}" if cost else ", free"
        ax.text(m * 1.08, y, label, va="center", fontsize=9)
    ax.set_xlim(minutes.min() / 2, minutes.max() * 8)
    fig.tight_layout()
    return fig


def plot_dataset_samples(
    dataset: Dataset,
    images: Sequence[str | os.PathLike],
    *,
    captions: Sequence[str] | None = None,
    cols: int = 3,
    width: float = 15.0,
) -> Figure:
    """A grid of dataset images with their labelled boxes drawn.

    Args:
        dataset: The dataset (:class:`tcv_helpers.data.dataset.Dataset`): its class names and
            its labels are used.
        images: Image paths to show, absolute or relative to the dataset's folder (as
            ``manifest.csv`` lists them).
        captions: One caption per image (default: the file name).
        cols: Images per row.
        width: Figure width in inches.

    Returns:
        The figure.

    Raises:
        ValueError: If no image is given, or ``captions`` does not have one per image.
    """
    from PIL import Image

    if not images:
        raise ValueError("plot_dataset_samples needs at least one image.")
    if captions is not None and len(captions) != len(images):
        raise ValueError(f"{len(captions)} captions for {len(images)} images: give one each.")
    names = list(dataset.names)
    rows = -(-len(images) // cols)
    fig = Figure(figsize=(width, width / cols * 0.62 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    colours = _colour_map(names)
    for k, ax in enumerate(axes):
        ax.set_axis_off()
        if k >= len(images):
            continue
        path = Path(images[k])
        path = path if path.is_absolute() else dataset.folder / path
        with Image.open(path) as image:
            picture = image.convert("RGB")
        found = dataset.annotations(path, size=picture.size)
        ax.imshow(picture)
        for (x1, y1, x2, y2), cid in zip(found.xyxy, found.class_id, strict=True):
            name = names[cid]
            ax.add_patch(
                Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1.2, ec=colours[name])
            )
        ax.set_title(captions[k] if captions else path.name, fontsize=9)
    fig.tight_layout()
    return fig
