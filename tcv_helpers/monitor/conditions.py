"""Offline production frames of a condition, with their true boxes (notebook 09).

Without real cameras, :func:`condition_set` makes the story of the relabel loop: production
frames drawn at night (or in rain or fog) from the cameras of the course's synthetic dataset,
and a held-out set of the same condition, both with their true boxes. The truth lets
:func:`tcv_helpers.monitor.review.review_with_truth` stand in for the person reviewing.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import supervision as sv

from tcv_helpers.data.labels import MANIFEST_COLUMNS
from tcv_helpers.io import atomic_write_bytes, atomic_write_text
from tcv_helpers.monitor.edge_cases import Frame
from tcv_helpers.project import PROJECT_CLASSES

#: File names :func:`condition_set` writes (and replaces on the next call).
_GENERATED = re.compile(r"^cam-\d+_[a-z]+_(production|val)_\d{5}\.(jpg|txt)$")


@dataclass(frozen=True)
class ConditionSet:
    """Synthetic frames of one condition with their true boxes (:func:`condition_set`).

    Attributes:
        root: The folder.
        data_yaml: Its data.yaml: ``val`` is the held-out set; ``train`` names the production
            frames (Ultralytics needs a train entry; the loop trains only on what review accepts).
        manifest: ``manifest.csv`` (image, camera_id, timestamp, source, condition, split, boxes).
        condition: ``day``, ``night``, ``rain`` or ``fog``.
    """

    root: Path
    data_yaml: Path
    manifest: Path
    condition: str

    def frames(self, split: str = "production") -> list[Frame]:
        """The frames of a split as :class:`Frame` objects (id: file stem; camera and time).

        Raises:
            ValueError: If the split is not ``production`` or ``val``.
        """
        if split not in ("production", "val"):
            raise ValueError(f"split must be 'production' or 'val', got {split!r}.")
        with self.manifest.open(encoding="utf-8", newline="") as handle:
            rows = [r for r in csv.DictReader(handle) if r["split"] == split]
        return [
            Frame(id=Path(r["image"]).stem, image=self.root / r["image"], camera=r["camera_id"],
                  captured_at=r["timestamp"])
            for r in rows
        ]  # fmt: skip

    def truth(self, split: str = "production") -> dict[str, sv.Detections]:
        """True boxes by frame id (``production`` is data.yaml's ``train`` entry)."""
        from tcv_helpers.model.evaluate import load_ground_truth

        key = "train" if split == "production" else split
        paths, truth, _ = load_ground_truth(self.root, key)
        return {Path(p).stem: t for p, t in zip(paths, truth, strict=True)}


def condition_set(
    out_dir: str | os.PathLike,
    *,
    condition: str = "night",
    production: int = 120,
    validation: int = 60,
    cameras: Iterable[int] = range(8),
    val_cameras: Iterable[int] | None = (8, 9),
    seed: int = 1,
    dataset_seed: int = 0,
    width: int = 640,
    height: int = 360,
) -> ConditionSet:
    """Makes the offline story of notebook 09: production frames of a condition, and a held-out set.

    Frames come from the cameras of the course's synthetic dataset (``tcv data synth`` with
    ``dataset_seed``), drawn in ``condition`` with new traffic, and are written in the YOLO
    layout with their true boxes: ``images/production`` (what the cameras send: it goes
    through capture, review and retraining) and ``images/val`` (held out, scored before and
    after). Production frames are spread over ``cameras``, the held-out ones over
    ``val_cameras``; timestamps fall in the condition's hours (night: 21:00-04:59).

    Args:
        out_dir: The folder (created; frames of an earlier call are replaced, not mixed in).
        condition: ``day``, ``night``, ``rain`` or ``fog``.
        production: Production frames.
        validation: Held-out frames.
        cameras: Camera indices of the production frames.
        val_cameras: Camera indices of the held-out frames (None: the same cameras as the
            production frames, other moments). The defaults follow the course's 12-camera
            set: production from its training cameras 0-7, held out on its validation
            cameras 8-9, so an improvement there is about the condition, not about scenes
            the model has seen.
        seed: Seed of the traffic and noise.
        dataset_seed: Seed of the synthetic dataset whose cameras are used.
        width: Frame width.
        height: Frame height.

    Returns:
        The set, with its data.yaml and manifest.

    Raises:
        ValueError: On an unknown condition, a negative count or an empty camera list.
    """
    from tcv_helpers.data.dataset import write_data_yaml
    from tcv_helpers.data.labelset import LabeledImage, make_detections
    from tcv_helpers.data.synth import CONDITIONS, START, draw_frame, make_camera, random_vehicles
    from tcv_helpers.data.yolo import yolo_lines

    if condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {', '.join(CONDITIONS)}, got {condition!r}.")
    if production < 0 or validation < 0:
        raise ValueError("production and validation must not be negative.")
    production_cams = list(cameras)
    held_out_cams = production_cams if val_cameras is None else list(val_cameras)
    if not production_cams or not held_out_cams:
        raise ValueError("cameras and val_cameras must not be empty.")
    root = Path(out_dir).resolve()
    rows = []
    for split_index, (split, count, cams) in enumerate(
        (("production", production, production_cams), ("val", validation, held_out_cams))
    ):
        for kind in ("images", "labels"):
            folder = root / kind / split
            folder.mkdir(parents=True, exist_ok=True)
            for stale in folder.iterdir():  # frames of an earlier call, which would mix in
                if _GENERATED.match(stale.name):
                    stale.unlink()
        for k in range(count):
            camera = make_camera(cams[k % len(cams)], seed=dataset_seed, width=width, height=height)
            rng = np.random.default_rng([seed, split_index, k, 4099])
            hour = (
                int(rng.integers(21, 29)) % 24 if condition == "night" else int(rng.integers(7, 19))
            )
            day = START + timedelta(days=int(rng.integers(0, 60)))
            when = day.replace(
                hour=hour, minute=int(rng.integers(60)), second=int(rng.integers(60))
            )
            frame = draw_frame(
                camera, random_vehicles(camera, rng, int(rng.integers(3, 13))),
                condition=condition, timestamp=when, noise_seed=int(rng.integers(2**31)),
            )  # fmt: skip
            stem = f"{camera.camera_id}_{condition}_{split}_{k:05d}"
            buffer = io.BytesIO()
            frame.image.save(buffer, format="JPEG", quality=int(rng.integers(55, 92)))
            atomic_write_bytes(root / "images" / split / f"{stem}.jpg", buffer.getvalue())
            labels = LabeledImage(
                Path(f"{stem}.jpg"), width, height, make_detections(frame.boxes, frame.class_ids)
            )
            lines = yolo_lines(labels)
            atomic_write_text(
                root / "labels" / split / f"{stem}.txt", "".join(f"{ln}\n" for ln in lines)
            )
            rows.append([f"images/{split}/{stem}.jpg", camera.camera_id, when.isoformat(),
                         "synthetic", condition, split, len(lines)])  # fmt: skip
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*MANIFEST_COLUMNS, "boxes"])
    writer.writerows(rows)
    manifest = atomic_write_text(root / "manifest.csv", buffer.getvalue())
    data_yaml = write_data_yaml(
        root / "data.yaml",
        names=PROJECT_CLASSES,
        splits={"train": "images/production", "val": "images/val"},
        root=root,
        header=f"# Synthetic {condition} frames (tcv_helpers.monitor.conditions.condition_set).\n"
        "# val: held out; train: the production frames, whose labels only simulate the reviewer.",
    )
    return ConditionSet(root=root, data_yaml=data_yaml, manifest=manifest, condition=condition)
