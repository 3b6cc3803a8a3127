"""Describing a dataset: one example frame for the early notebooks and a data card."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from tcv_helpers.data.dataset import Dataset
from tcv_helpers.data.labels import (
    MANAUS,
    MANAUS_ATTRIBUTION,
    LabeledFrame,
    label_path_for,
    read_manifest,
)


def _sample_example(sample_data: Path) -> LabeledFrame | None:
    root = sample_data if (sample_data / "data.yaml").is_file() else sample_data / MANAUS
    if not (root / "data.yaml").is_file():
        return None
    dataset = Dataset.from_yaml(root)
    if "test" not in dataset.splits:
        return None
    best: tuple[int, int, Path] | None = None
    for image_path in dataset.unique_images("test"):  # most classes shown, then most objects
        label = dataset.label_path(image_path)
        if label.is_file():
            ids = [
                ln.split()[0] for ln in label.read_text(encoding="utf-8").splitlines() if ln.strip()
            ]
            key = (len(set(ids)), len(ids), image_path)
            if best is None or key[:2] > best[:2]:
                best = key
    if best is None:
        return None
    image = Image.open(best[2]).convert("RGB")
    found = dataset.annotations(best[2], size=image.size)
    return LabeledFrame(
        image=image,
        boxes=found.xyxy,
        class_names=[dataset.names[i] for i in found.class_id],
        polygons=None,
        source=f"sample data: {MANAUS}/{Path(os.path.relpath(best[2], root.resolve())).as_posix()}",
        attribution=MANAUS_ATTRIBUTION,
    )


def example_frame(sample_data: Path | None = None, *, seed: int = 7) -> LabeledFrame:
    """One labelled traffic-camera frame to look at.

    A real frame from the Manaus sample when ``sample_data`` points at it, else a synthetic
    frame (which also knows the exact outline of every vehicle).

    Args:
        sample_data: The Manaus sample's folder (what ``hub.try_fetch("manaus-traffic",
            folder=True)`` returns), or a folder holding ``manaus-traffic/``, or None.
        seed: Seed of the synthetic frame.

    Returns:
        The frame and its labels.
    """
    if sample_data is not None:
        frame = _sample_example(Path(sample_data))
        if frame is not None:
            return frame
    from tcv_helpers.data.synth import render_frame

    synthetic = render_frame(seed=seed, vehicles=10)
    return LabeledFrame(
        image=synthetic.image,
        boxes=synthetic.boxes,
        class_names=synthetic.class_names,
        polygons=synthetic.polygons,
        source=f"synthetic frame (seed {seed})",
        attribution="Synthetic frame drawn by tcv_helpers.data.synth; free to use.",
    )


def data_card(
    root: str | os.PathLike,
    *,
    name: str,
    license: str,
    source: str,
    intended_use: str = "Training and evaluating vehicle detectors for counting traffic on fixed cameras.",
) -> str:
    """A data card (Markdown) for a YOLO dataset with a manifest: what is in it, and its limits.

    Args:
        root: The dataset folder (``data.yaml``, ``manifest.csv``, ``labels/``).
        name: Dataset name.
        license: Its licence.
        source: Where it comes from.
        intended_use: What it is for.

    Returns:
        The card's Markdown text.
    """
    root = Path(root)
    manifest = read_manifest(root / "manifest.csv")
    names = Dataset.from_yaml(root).names
    counts = {n: 0 for n in names}
    for image in manifest["image"]:
        label = label_path_for(root / image)
        if label.is_file():
            for line in label.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    counts[names[int(line.split()[0])]] += 1
    by_split = manifest.groupby("split")["image"].count().to_dict()
    by_condition = manifest.groupby("condition")["image"].count().to_dict()
    cameras = manifest.groupby("split")["camera_id"].nunique().to_dict()
    leaked = manifest.groupby("camera_id")["split"].nunique()
    rare = [n for n, c in counts.items() if 0 < c < max(counts.values()) / 10]
    lines = [
        f"# Data card: {name}",
        "",
        f"- **Source:** {source}",
        f"- **Licence:** {license}",
        f"- **Intended use:** {intended_use}",
        f"- **Images:** {len(manifest)} ({', '.join(f'{k} {v}' for k, v in sorted(by_split.items()))})",
        f"- **Cameras:** {manifest['camera_id'].nunique()} ({', '.join(f'{k} {v}' for k, v in sorted(cameras.items()))} per split)",
        f"- **Conditions:** {', '.join(f'{k} {v}' for k, v in sorted(by_condition.items()))}",
        f"- **Boxes per class:** {', '.join(f'{k} {v}' for k, v in counts.items() if v)}",
        "",
        "## Known limitations",
        "",
        f"- Cameras in more than one split (leakage): {int((leaked > 1).sum())}.",
        f"- Rare classes (under a tenth of the most common): {', '.join(rare) or 'none'}.",
        "- Classes without any box: "
        + (", ".join(n for n, c in counts.items() if c == 0) or "none")
        + ".",
        "- People and licence plates may be visible in real frames: blur them before sharing.",
    ]
    return "\n".join(lines) + "\n"
