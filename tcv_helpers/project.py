"""The problem definition and its success criteria, kept in the workspace's ``project.yaml``.

Notebook 01 writes it; later notebooks read it: model selection (04) filters models by the
latency budget, evaluation (06) checks the accuracy bar, counting (10) checks the counting error.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from tcv_helpers.config import save_yaml
from tcv_helpers.io import read_yaml_mapping

#: The project's class taxonomy (COURSE.md section 6). Datasets with other names are mapped to it.
PROJECT_CLASSES: tuple[str, ...] = ("car", "truck", "bus", "motorcycle", "bicycle", "person")
TASKS = ("classification", "detection", "segmentation")
TARGETS = ("cpu", "gpu", "edge")


@dataclass(frozen=True)
class SuccessCriteria:
    """What "good enough" means, in numbers that later notebooks check.

    Attributes:
        min_map50: Lowest acceptable mAP at IoU 0.5 on the validation split (0-1).
        min_recall: Lowest acceptable recall for vehicles at the chosen confidence (0-1).
        max_latency_ms: Highest acceptable inference time per frame on the deployment target.
        max_count_error: Highest acceptable relative error of counts per direction (0-1).
        min_fps: Frames per second the deployment must sustain per camera.
    """

    min_map50: float = 0.5
    min_recall: float = 0.7
    max_latency_ms: float = 200.0
    max_count_error: float = 0.05
    min_fps: float = 2.0

    def __post_init__(self) -> None:
        for name in ("min_map50", "min_recall", "max_count_error"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"criteria.{name} must be between 0 and 1, got {value!r}.")
        for name in ("max_latency_ms", "min_fps"):
            value = getattr(self, name)
            if value <= 0:
                raise ValueError(f"criteria.{name} must be positive, got {value!r}.")


@dataclass(frozen=True)
class ProjectDefinition:
    """The problem the course solves, as the learner defined it.

    Attributes:
        name: A short name.
        question: The question the system answers.
        task: ``classification``, ``detection`` or ``segmentation``.
        classes: Classes to detect, a subset of :data:`PROJECT_CLASSES`.
        cameras: Which cameras, with what view.
        target: Deployment target: ``cpu``, ``gpu`` or ``edge``.
        stakeholders: Who uses the answers.
        privacy: How people in the frames are protected.
        criteria: The success criteria.
    """

    name: str = "vehicle counts from fixed traffic cameras"
    question: str = "How many vehicles of each class pass each camera, per direction and minute?"
    task: str = "detection"
    classes: tuple[str, ...] = ("car", "truck", "bus", "motorcycle")
    cameras: str = "fixed roadside and overhead traffic cameras, day and night, all weather"
    target: str = "cpu"
    stakeholders: tuple[str, ...] = ("traffic engineers", "city planners", "researchers")
    privacy: str = "count only; blur people and plates before anything is stored"
    criteria: SuccessCriteria = field(default_factory=SuccessCriteria)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}.")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {self.target!r}.")
        if not self.classes:
            raise ValueError("classes must name at least one class.")
        unknown = [c for c in self.classes if c not in PROJECT_CLASSES]
        if unknown:
            raise ValueError(
                f"classes {unknown} are not in the project taxonomy {list(PROJECT_CLASSES)}."
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain data for YAML (tuples become lists)."""
        data = asdict(self)
        data["classes"] = list(self.classes)
        data["stakeholders"] = list(self.stakeholders)
        return data


def write_project(path: str | os.PathLike, definition: ProjectDefinition) -> Path:
    """Writes the definition to ``project.yaml`` atomically and returns the path."""
    return save_yaml(Path(path), definition.to_dict())


def read_project(path: str | os.PathLike) -> ProjectDefinition:
    """Reads ``project.yaml`` back, checking every field.

    Args:
        path: The file (usually ``cfg.workspace.project_file``).

    Returns:
        The definition.

    Raises:
        FileNotFoundError: If the file is missing (run notebook 01, or use :func:`ensure_project`).
        ValueError: If the YAML is malformed or a field is unknown or invalid; the message names
            the file and the field.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{file} does not exist: run notebook 01 (or call ensure_project).")
    data = read_yaml_mapping(file, what="Project file", holds="a mapping of fields")
    known = {f.name for f in fields(ProjectDefinition)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(
            f"{file}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}."
        )
    criteria = data.pop("criteria", None) or {}
    if not isinstance(criteria, dict):
        raise ValueError(f"{file}: field 'criteria' must be a mapping.")
    known_criteria = {f.name for f in fields(SuccessCriteria)}
    bad = sorted(set(criteria) - known_criteria)
    if bad:
        raise ValueError(f"{file}: unknown criteria field(s) {', '.join(bad)}.")
    for key in ("classes", "stakeholders"):
        if key in data:
            if not isinstance(data[key], list):
                raise ValueError(f"{file}: field '{key}' must be a list.")
            data[key] = tuple(data[key])
    try:
        return ProjectDefinition(**data, criteria=SuccessCriteria(**criteria))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{file}: {exc}") from exc


def ensure_project(path: str | os.PathLike) -> tuple[ProjectDefinition, bool]:
    """Reads ``project.yaml``, writing the course defaults first when it is missing.

    This is how a notebook opened on its own (without notebook 01 before it) still works.

    Returns:
        The definition, and True when the defaults were written just now.
    """
    file = Path(path)
    if file.is_file():
        return read_project(file), False
    definition = ProjectDefinition()
    write_project(file, definition)
    return definition, True


#: Human labelling time per image and per object, in seconds, for each task type: an image-level
#: label takes seconds; a box about 7 s with extreme clicking (Papadopoulos et al., ICCV 2017);
#: a polygon about 79 s (COCO, Lin et al., ECCV 2014).
ANNOTATION_SECONDS: dict[str, tuple[float, float]] = {
    "classification": (3.0, 0.0),
    "detection": (0.0, 7.0),
    "segmentation": (0.0, 79.0),
}


def annotation_effort(n_objects: int, frames: int = 1000) -> list[dict[str, float | str]]:
    """Estimated labelling time per task type for frames with ``n_objects`` objects each.

    Args:
        n_objects: Objects in a typical frame.
        frames: How many such frames to label.

    Returns:
        One row per task type: seconds per frame and hours for ``frames`` frames.

    Raises:
        ValueError: If a count is negative.
    """
    if n_objects < 0 or frames < 0:
        raise ValueError("n_objects and frames must not be negative.")
    rows = []
    for task, (per_image, per_object) in ANNOTATION_SECONDS.items():
        seconds = per_image + per_object * n_objects
        rows.append(
            {
                "task": task,
                "seconds_per_frame": seconds,
                f"hours_for_{frames}_frames": seconds * frames / 3600,
            }
        )
    return rows
