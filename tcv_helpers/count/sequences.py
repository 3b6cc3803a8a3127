"""Synthetic traffic sequences: frames of one fixed camera with their true tracks and counts.

:func:`tcv_helpers.data.synth.generate_sequence` writes them; :func:`read_sequence` reads one
back (checking ``sequence.json`` and ``tracks.csv``), :func:`ensure_sequence` generates one
once and reuses it. With the true boxes (:func:`tcv_helpers.count.detectors.ground_truth_detector`)
they test tracking and counting against known counts.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tcv_helpers.count.frames import folder_images
from tcv_helpers.count.lines import DIRECTIONS, CountingLine
from tcv_helpers.project import PROJECT_CLASSES

#: Columns of a sequence's ``tracks.csv``.
TRACK_COLUMNS = ("frame", "track_id", "class_name", "direction", "x1", "y1", "x2", "y2")


@dataclass(frozen=True)
class SyntheticSequence:
    """A synthetic sequence written by :func:`tcv_helpers.data.synth.generate_sequence`.

    Attributes:
        folder: The sequence folder.
        frames_dir: Its frames (``000000.jpg`` ...).
        fps: Frames per second.
        size: ``(width, height)``.
        line: The counting line ("in" = towards the camera, down the image).
        counts: True crossings per direction.
        tracks: The ground-truth boxes (:func:`read_tracks`).
        camera: The camera's name.
    """

    folder: Path
    frames_dir: Path
    fps: float
    size: tuple[int, int]
    line: CountingLine
    counts: dict[str, int]
    tracks: pd.DataFrame
    camera: str


def read_tracks(path: str | os.PathLike) -> pd.DataFrame:
    """Reads a sequence's ``tracks.csv`` (frame, track_id, class_name, direction, x1..y2).

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: Naming the file, line and field, on a missing column, a value that is not a
            number, an unknown class or direction, or a box with no area.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist.")
    rows: list[tuple] = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in TRACK_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: line 1: missing column(s) {', '.join(missing)}.")
        for row in reader:
            where = f"{path}: line {reader.line_num}"
            values = {}
            for name in ("frame", "track_id"):
                try:
                    values[name] = int(row[name])
                except (TypeError, ValueError):
                    raise ValueError(
                        f"{where}: {name} {row[name]!r} is not a whole number."
                    ) from None
                if values[name] < 0:
                    raise ValueError(f"{where}: {name} is negative ({values[name]}).")
            for name in ("x1", "y1", "x2", "y2"):
                try:
                    values[name] = float(row[name])
                except (TypeError, ValueError):
                    raise ValueError(f"{where}: {name} {row[name]!r} is not a number.") from None
                if not math.isfinite(values[name]):
                    raise ValueError(f"{where}: {name} is not finite.")
            if row["class_name"] not in PROJECT_CLASSES:
                raise ValueError(
                    f"{where}: class_name {row['class_name']!r} is not one of "
                    f"{', '.join(PROJECT_CLASSES)}."
                )
            if row["direction"] not in DIRECTIONS:
                raise ValueError(f"{where}: direction {row['direction']!r} is not in or out.")
            if values["x2"] <= values["x1"] or values["y2"] <= values["y1"]:
                raise ValueError(f"{where}: the box x1..x2, y1..y2 has no area.")
            rows.append(
                (
                    values["frame"],
                    values["track_id"],
                    row["class_name"],
                    row["direction"],
                    *(values[k] for k in ("x1", "y1", "x2", "y2")),
                )
            )
    return pd.DataFrame(rows, columns=list(TRACK_COLUMNS))


def read_sequence(folder: str | os.PathLike) -> SyntheticSequence:
    """Reads a synthetic sequence folder: ``sequence.json``, ``tracks.csv`` and ``frames/``.

    Raises:
        FileNotFoundError: If the folder, its frames or one of its files is missing.
        ValueError: Naming the file and field when ``sequence.json`` or ``tracks.csv`` is malformed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Sequence folder {folder} does not exist.")
    meta_path = folder / "sequence.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} does not exist: is {folder} a sequence folder?")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{meta_path}: line {exc.lineno}: not valid JSON ({exc.msg}).") from None
    try:
        fps = float(meta["fps"])
        width, height = (int(v) for v in meta["size"])
        start, end = ((float(x), float(y)) for x, y in meta["line"])
        counts = {d: int(meta["counts"][d]) for d in DIRECTIONS}
    except KeyError as exc:
        raise ValueError(f"{meta_path}: missing field {exc.args[0]!r}.") from None
    except (TypeError, ValueError):
        raise ValueError(
            f"{meta_path}: fps, size, line or counts has the wrong form "
            "(fps: number, size: [w, h], line: [[x, y], [x, y]], counts: {in: n, out: n})."
        ) from None
    if fps <= 0:
        raise ValueError(f"{meta_path}: fps must be positive, got {fps}.")
    frames_dir = folder / "frames"
    if not frames_dir.is_dir():
        raise FileNotFoundError(f"{frames_dir} does not exist.")
    return SyntheticSequence(
        folder=folder,
        frames_dir=frames_dir,
        fps=fps,
        size=(width, height),
        line=CountingLine(start, end, inward="down"),
        counts=counts,
        tracks=read_tracks(folder / "tracks.csv"),
        camera=str(meta.get("camera_name", folder.name)),
    )


@dataclass(frozen=True)
class ReadySequence:
    """A synthetic sequence on disk, and one sentence saying whether it was made now or earlier.

    Attributes:
        sequence: The sequence (frames, fps, true counts).
        message: Made now (and how long it took) or found from earlier.
    """

    sequence: SyntheticSequence
    message: str


def ensure_sequence(
    parent: str | os.PathLike,
    *,
    camera_index: int,
    seed: int = 0,
    seconds: float = 60.0,
    fps: float = 10.0,
    index: int = 0,
) -> ReadySequence:
    """A synthetic sequence of one fixed camera, generated once (``generate_sequence``).

    Args:
        parent: Where sequences live (``cfg.workspace.data / "sequences"``).
        camera_index: Which camera of the synthetic dataset ``seed``.
        seed: The dataset's seed.
        seconds: Length of the sequence.
        fps: Frames per second.
        index: Sequence number (varies the traffic).

    Returns:
        The sequence (``.sequence``) and one sentence saying whether it was made now or earlier
        (``.message``).

    Raises:
        ValueError: If ``seconds`` or ``fps`` is not positive.
    """
    from tcv_helpers.data.synth import generate_sequence, make_camera

    if seconds <= 0 or fps <= 0:
        raise ValueError(f"seconds and fps must be positive, got {seconds}, {fps}.")
    frames = max(1, round(seconds * fps))
    root = Path(parent) / f"seed-{seed}"
    folder = root / f"{make_camera(camera_index, seed=seed).camera_id}-{index}"
    try:
        sequence = read_sequence(folder)
        if len(folder_images(sequence.frames_dir)) == frames and sequence.fps == fps:
            return ReadySequence(sequence, f"Using the sequence generated earlier: {folder}.")
    except (FileNotFoundError, ValueError):
        pass  # missing or unreadable: generated below
    if folder.exists():  # generated earlier with other settings: frames would be left over
        shutil.rmtree(folder)
    started = time.perf_counter()
    generate_sequence(
        root, camera_index=camera_index, seed=seed, index=index, frames=frames, fps=fps
    )
    sequence = read_sequence(folder)
    return ReadySequence(
        sequence,
        f"Generated a {seconds:g} s sequence of {sequence.camera} ({frames} frames at {fps:g} fps, "
        f"{time.perf_counter() - started:.0f} s): {folder}.",
    )
