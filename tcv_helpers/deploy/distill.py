"""Knowledge distillation (notebook 07): a large teacher's predictions train a small student.

Labels are the expensive part of a detector. A larger, slower model that already works (the
*teacher*: the course's trained model, or a pretrained COCO model whose classes map into ours)
labels frames nobody labelled, and a smaller, faster *student* learns from those labels instead
of from people's. :func:`distill` trains two students of the same architecture on the same frames
for the same epochs, one from the human labels and one from the teacher's, and scores both and
the teacher on the human-labelled validation split, with their CPU latency.

* :func:`student_architecture` writes the student: the teacher's architecture at half its width
  (YOLO11n becomes a model with a third of its parameters).
* :func:`teacher_labelled_split` writes the teacher's labels for a list of frames as a training
  split Ultralytics reads (the frames are linked, never copied or changed).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure

from tcv_helpers.io import atomic_write_text, link_or_copy, write_path_list

if TYPE_CHECKING:
    import pandas as pd

    from tcv_helpers.config import Profile
    from tcv_helpers.model.train import TrainResult

#: Lowest confidence of a teacher's box that becomes a training label (Ultralytics' default
#: prediction threshold: below it most boxes are wrong).
TEACHER_CONF = 0.25
#: The student's width as a share of the teacher's (channels per layer).
STUDENT_WIDTH = 0.5


def student_architecture(
    teacher: str | os.PathLike, out_dir: str | os.PathLike, *, width: float = STUDENT_WIDTH
) -> Path:
    """Writes the student's Ultralytics ``.yaml``: the teacher's architecture, thinner.

    Args:
        teacher: The teacher's ``.pt`` (already checked by the caller) or an Ultralytics
            architecture name such as ``yolo11n.yaml``.
        out_dir: Folder for ``<teacher>-student.yaml``.
        width: Share of the teacher's channels the student keeps (0 < width <= 1).

    Returns:
        The ``.yaml`` path (train it with :func:`tcv_helpers.model.train.train`).

    Raises:
        ValueError: If ``width`` is outside (0, 1] or the teacher has no compound scale.
    """
    import yaml
    from ultralytics.nn.tasks import yaml_model_load

    if not 0 < width <= 1:
        raise ValueError(f"width must be in (0, 1], got {width}.")
    path = Path(teacher)
    if path.suffix == ".pt":
        import torch

        config = dict(torch.load(str(path), map_location="cpu", weights_only=False)["model"].yaml)
    else:
        config = yaml_model_load(str(teacher))
    scale, scales = config.get("scale"), config.get("scales") or {}
    if scale not in scales:
        raise ValueError(f"{path.name}: its architecture has no compound scale to make thinner.")
    depth, teacher_width, channels = scales[scale]
    stem = Path(config.get("yaml_file") or path.name).stem  # yolo11n
    # Ultralytics reads the scale letter from the file name (yolo11n-student.yaml -> "n").
    config.update(scales={scale: [depth, teacher_width * width, channels]}, scale=scale)
    config.pop("yaml_file", None)
    out = Path(out_dir) / f"{stem}-student.yaml"
    return atomic_write_text(out, yaml.safe_dump(config, sort_keys=False))


def teacher_labelled_split(
    teacher: str | os.PathLike | Any,
    frames: list[Path],
    names: list[str],
    out_dir: str | os.PathLike,
    *,
    imgsz: int,
    conf: float = TEACHER_CONF,
) -> tuple[Path, int]:
    """Labels frames with the teacher and writes them as a training split.

    Every frame is linked into ``out_dir/images/`` (a copy where links are impossible) with its
    label file in ``out_dir/labels/``, where Ultralytics looks for it; the originals are left
    as they are. The teacher's classes are mapped by name into ``names`` (a COCO model's
    ``truck`` becomes ours, its ``dog`` is dropped: :func:`tcv_helpers.data.prep.propose_by_model`).

    Args:
        teacher: A ``.pt`` the course trusts, or a loaded Ultralytics ``YOLO``.
        frames: The unlabelled frames.
        names: The dataset's class names, in order.
        out_dir: Folder for the split (emptied of an earlier run's labels and links first).
        imgsz: The teacher's inference size.
        conf: Lowest confidence kept as a label.

    Returns:
        ``(train.txt listing the linked frames, number of boxes the teacher labelled)``.

    Raises:
        ValueError: If ``frames`` is empty.
    """
    from PIL import Image

    from tcv_helpers.data.labelset import LabeledImage, make_detections
    from tcv_helpers.data.prep import propose_by_model
    from tcv_helpers.data.yolo import yolo_lines
    from tcv_helpers.project import PROJECT_CLASSES

    if not frames:
        raise ValueError("Distillation needs at least one unlabelled frame for the teacher.")
    out = Path(out_dir)
    for old in [*(out / "labels").glob("*.txt"), *(out / "images").glob("*")]:
        old.unlink()  # an earlier run's labels and links (the frames they point to stay)
    proposals = propose_by_model(teacher, frames, conf=conf, imgsz=imgsz)
    index = {name: i for i, name in enumerate(names)}
    linked, boxes = [], 0
    for number, (frame, found) in enumerate(zip(frames, proposals, strict=True)):
        keep = [i for i, c in enumerate(found.class_id) if PROJECT_CLASSES[c] in index]
        ids = [index[PROJECT_CLASSES[found.class_id[i]]] for i in keep]
        with Image.open(frame) as image:
            width, height = image.size
        detections = make_detections(found.xyxy[keep], ids)
        link = link_or_copy(frame, out / "images" / f"{number:06d}-{Path(frame).name}")
        lines = yolo_lines(LabeledImage(link, width, height, detections))
        atomic_write_text(out / "labels" / f"{link.stem}.txt", "".join(f"{x}\n" for x in lines))
        linked.append(link)
        boxes += len(lines)
    return write_path_list(linked, out / "train.txt"), boxes


@dataclass
class DistillResult:
    """The teacher and its two students, scored on the same human-labelled validation split.

    Attributes:
        teacher: The teacher's weights.
        teacher_map50: The teacher's validation mAP50.
        from_labels: The student trained on the human labels.
        from_teacher: The same student trained on the teacher's labels of the same frames.
        frames: Training frames each student saw per epoch.
        teacher_boxes: Boxes the teacher labelled on them (``true_boxes`` people labelled).
        true_boxes: Boxes in the human labels of the same frames.
        parameters: Parameters per model (``teacher``, ``student``).
        latency_ms: Median CPU latency of one frame per model (PyTorch, batch 1).
        latency_imgsz: Input size of the latency measurements.
        seconds: Wall-clock seconds of the whole comparison.
    """

    teacher: Path
    teacher_map50: float
    from_labels: TrainResult
    from_teacher: TrainResult
    frames: int
    teacher_boxes: int
    true_boxes: int
    parameters: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    latency_imgsz: int = 640
    seconds: float = 0.0

    def table(self) -> pd.DataFrame:
        """One row per model: parameters, mAP50, latency, training epochs and seconds."""
        import pandas as pd

        rows = {
            "teacher": (self.parameters.get("teacher"), self.teacher_map50, "teacher", None),
            "student from labels": (
                self.parameters.get("student"), self.from_labels.map50, "student",
                self.from_labels,
            ),
            "student from teacher": (
                self.parameters.get("student"), self.from_teacher.map50, "student",
                self.from_teacher,
            ),
        }  # fmt: skip
        table = []
        for name, (params, map50, model, run) in rows.items():
            table.append(
                {
                    "model": name,
                    "parameters (M)": round((params or 0) / 1e6, 2),
                    "mAP50": round(map50, 4),
                    f"latency ms ({self.latency_imgsz} px)": round(
                        self.latency_ms.get(model, math.nan), 1
                    ),
                    "epochs": run.epochs if run else None,
                    "train s": round(run.seconds, 1) if run else None,
                }
            )
        return pd.DataFrame(table).set_index("model")

    def metrics(self) -> dict[str, Any]:
        """The pair and the teacher as flat numbers (for ``record_metrics``)."""
        speedup = self.latency_ms.get("teacher", math.nan) / self.latency_ms.get(
            "student", math.nan
        )
        return {
            "distill_teacher_map50": round(self.teacher_map50, 4),
            "distill_student_labels_map50": round(self.from_labels.map50, 4),
            "distill_student_teacher_map50": round(self.from_teacher.map50, 4),
            "distill_student_speedup": round(speedup, 2) if math.isfinite(speedup) else None,
        }

    def plot(self) -> Figure:
        """mAP50 and latency of the teacher and the two students, side by side."""
        frame = self.table()
        fig = Figure(figsize=(10, 3.2))
        accuracy, speed = fig.subplots(1, 2)
        colours = ["tab:grey", "tab:blue", "tab:orange"]
        accuracy.barh(frame.index, frame["mAP50"], color=colours)
        accuracy.set_xlabel("validation mAP50 (human labels)")
        accuracy.set_xlim(0, 1)
        accuracy.invert_yaxis()
        speed.barh(frame.index, frame.iloc[:, 2], color=colours)
        speed.set_xlabel(f"CPU latency, ms per frame at {self.latency_imgsz} px (lower is better)")
        speed.invert_yaxis()
        speed.set_yticklabels([])
        fig.tight_layout()
        return fig


def _latencies_ms(models: dict[str, Path], frames: list[Any], repeats: int) -> dict[str, float]:
    """Median latency of each model, timed in turns (one frame each, round after round), so a
    busy moment of the machine slows every model alike instead of the one timed then."""
    from tcv_helpers.deploy.optimize import time_variant, variant_runner
    from tcv_helpers.env import usable_cores

    runners = {
        name: variant_runner("pytorch-fp32", path, usable_cores(), trusted=True)
        for name, path in models.items()
    }
    for run in runners.values():  # warm-up, not counted
        time_variant(run, frames, repeats=0, warmup=2)
    times: dict[str, list[float]] = {name: [] for name in models}
    for i in range(repeats):
        for name, run in runners.items():
            times[name] += time_variant(run, [frames[i % len(frames)]], repeats=1, warmup=0)
    return {name: statistics.median(values) for name, values in times.items()}


def _parameters(model: Path | Any) -> int:
    """Parameters of a ``.pt`` the course wrote, or of a loaded ``YOLO`` not yet fused."""
    from tcv_helpers.model.predict import load_yolo

    loaded = load_yolo(model, trusted=True) if isinstance(model, Path) else model
    return sum(p.numel() for p in loaded.model.parameters())


def distill(
    teacher: str | os.PathLike,
    data_yaml: str | os.PathLike,
    *,
    profile: Profile,
    out_dir: str | os.PathLike,
    epochs: int | None = None,
    fraction: float = 1.0,
    seed: int = 0,
    conf: float = TEACHER_CONF,
    width: float = STUDENT_WIDTH,
    latency_imgsz: int = 640,
    repeats: int = 10,
    trusted_dirs: tuple[str | os.PathLike, ...] = (),
    **overrides: Any,
) -> DistillResult:
    """Trains a small student from human labels and from a teacher's labels, and compares.

    Both students have the same architecture (:func:`student_architecture`), random initial
    weights, seed, epochs and settings (the profile's), and see the same frames: the first
    ``fraction`` of the training split. The student from labels reads their human labels; the
    student from the teacher reads the teacher's boxes for the same frames and never a human
    label. All three models are scored on the validation split's human labels.

    Args:
        teacher: The teacher's ``.pt`` (the course's trained model, or registered weights).
        data_yaml: The dataset: its training frames and validation split.
        profile: Training settings (image size, batch, optimiser).
        out_dir: Folder for the students' runs and the teacher's labels.
        epochs: Epochs of each student (default: the profile's).
        fraction: Share of the training split's frames both students train on (the first ones).
        seed: Random seed of both students.
        conf: Lowest teacher confidence kept as a label.
        width: The student's width as a share of the teacher's.
        latency_imgsz: Input size of the latency measurements.
        repeats: Timed frames per model.
        trusted_dirs: Folders whose ``.pt`` files count as trained by this course.
        **overrides: Ultralytics training arguments for both students (``lr0=0.01``...).

    Returns:
        The teacher, the two students and their measurements.

    Raises:
        UntrustedWeights: For a teacher of unknown origin (refused before it is opened).
        ValueError: If ``fraction`` is outside (0, 1].
        DatasetError: If ``data_yaml`` is missing or has no training or validation split.
    """
    from tcv_helpers.data.dataset import Dataset
    from tcv_helpers.deploy.optimize import letterbox_frames
    from tcv_helpers.model.predict import load_yolo, quiet_ultralytics, validate_yolo
    from tcv_helpers.model.train import train
    from tcv_helpers.trust import check_weights

    start = time.perf_counter()
    out = Path(out_dir)
    teacher = check_weights(teacher, trusted_dirs=tuple(Path(d) for d in trusted_dirs))
    dataset = Dataset.from_yaml(data_yaml)
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}.")
    everything = dataset.images("train")
    chosen = list(everything[: max(1, round(len(everything) * fraction))])
    names, val = list(dataset.names), dataset.images("val")
    listing = {"path": str(out.resolve()), "val": str(write_path_list(val, out / "val.txt"))}
    student = student_architecture(teacher, out, width=width)
    common: dict[str, Any] = {
        "profile": profile, "out_dir": out, "model": str(student), "epochs": epochs,
        "seed": seed, "publish_as": None, **overrides,
    }  # fmt: skip

    def data(name: str, train_list: Path) -> Path:
        import yaml

        spec = {**listing, "train": str(train_list), "names": dict(enumerate(names))}
        return atomic_write_text(out / f"data-{name}.yaml", yaml.safe_dump(spec, sort_keys=False))

    human = data("labels", write_path_list(chosen, out / "labels-train.txt"))
    from_labels = train(human, name="student-labels", **common)
    teacher_model = load_yolo(teacher, trusted=True)  # opened once: counted, labels, validated
    teacher_parameters = _parameters(teacher_model)  # before inference fuses its layers
    taught_list, teacher_boxes = teacher_labelled_split(
        teacher_model, chosen, names, out / "teacher-labels", imgsz=profile.imgsz, conf=conf
    )
    from_teacher = train(data("teacher", taught_list), name="student-teacher", **common)
    with quiet_ultralytics():
        teacher_map50 = validate_yolo(teacher_model, human, imgsz=profile.imgsz).map50
    timing = letterbox_frames(list(val[:4]), imgsz=latency_imgsz)
    return DistillResult(
        teacher=teacher, teacher_map50=float(teacher_map50), from_labels=from_labels,
        from_teacher=from_teacher, frames=len(chosen), teacher_boxes=teacher_boxes,
        true_boxes=sum(len(dataset.annotations(p)) for p in chosen),
        parameters={"teacher": teacher_parameters, "student": _parameters(from_labels.best)},
        latency_ms=_latencies_ms({"teacher": teacher, "student": from_labels.best}, timing, repeats),
        latency_imgsz=latency_imgsz, seconds=time.perf_counter() - start,
    )  # fmt: skip
