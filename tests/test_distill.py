"""Knowledge distillation (notebook 07): the student's architecture, the teacher's labels, and
the two students trained on the same frames."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
import supervision as sv
import yaml
from PIL import Image

from tcv_helpers.data.dataset import Dataset
from tcv_helpers.deploy.distill import distill, student_architecture, teacher_labelled_split
from tcv_helpers.project import PROJECT_CLASSES
from tcv_helpers.trust import UntrustedWeights


def _parameters(architecture: str | Path) -> int:
    from ultralytics import YOLO

    return sum(p.numel() for p in YOLO(str(architecture)).model.parameters())


def test_the_student_is_the_teacher_thinner(tmp_path):
    student = student_architecture("yolo11n.yaml", tmp_path)
    assert student.name == "yolo11n-student.yaml"
    config = yaml.safe_load(student.read_text())
    assert config["scales"] == {"n": [0.5, 0.125, 1024]}, "half of yolo11n's width (0.25)"
    share = _parameters(student) / _parameters("yolo11n.yaml")
    assert 0.2 < share < 0.45, f"a third of the teacher's parameters, not {share:.2f}"
    with pytest.raises(ValueError, match="width must be in"):
        student_architecture("yolo11n.yaml", tmp_path, width=0)


class _Teacher:
    """Stands in for a YOLO model: fixed boxes of the project's classes for every frame."""

    def __init__(self, boxes: dict[str, sv.Detections]):
        self.boxes = boxes


def _fake_proposals(boxes):
    def propose(teacher, frames, *, conf, imgsz):
        assert conf == 0.25 and imgsz == 64
        return [boxes[Path(f).name] for f in frames]

    return propose


def test_teacher_labels_become_a_training_split(tiny_dataset, tmp_path, monkeypatch):
    dataset = Dataset.from_yaml(tiny_dataset.data_yaml)
    frames = list(dataset.images("train"))[:3]
    before = {f: hashlib.sha256(f.read_bytes()).hexdigest() for f in frames}
    # Project classes: 0 car, 1 truck, 5 person. The dataset below knows car and person only.
    proposals = {
        frames[0].name: sv.Detections(
            xyxy=np.array([[10.0, 20.0, 50.0, 60.0], [0.0, 0.0, 8.0, 8.0]]),
            class_id=np.array([0, 1]),
        ),
        frames[1].name: sv.Detections.empty(),
        frames[2].name: sv.Detections(
            xyxy=np.array([[5.0, 5.0, 25.0, 45.0]]), class_id=np.array([5])
        ),
    }
    monkeypatch.setattr("tcv_helpers.data.prep.propose_by_model", _fake_proposals(proposals))
    stale = tmp_path / "split" / "labels" / "old-frame.txt"
    stale.parent.mkdir(parents=True)
    stale.write_text("0 0.5 0.5 0.1 0.1\n")
    stale_link = tmp_path / "split" / "images" / "000009-old-frame.jpg"
    stale_link.parent.mkdir(parents=True)
    stale_link.symlink_to(frames[0].resolve())
    listing, boxes = teacher_labelled_split(
        _Teacher(proposals), frames, ["person", "car"], tmp_path / "split", imgsz=64
    )
    assert boxes == 2, "the truck has no class in this dataset: dropped"
    linked = [Path(line) for line in listing.read_text().splitlines()]
    assert len(linked) == 3 and all(p.parent == tmp_path / "split" / "images" for p in linked)
    assert [p.resolve() for p in linked] == [f.resolve() for f in frames]
    labels = [tmp_path / "split" / "labels" / f"{p.stem}.txt" for p in linked]
    first, empty, person = (p.read_text().splitlines() for p in labels)
    with Image.open(frames[0]) as image:
        width, height = image.size
    cx, cy, w, h = (float(v) for v in first[0].split()[1:])
    assert first[0].split()[0] == "1", "car is class 1 of this dataset"
    assert (cx * width, cy * height, w * width, h * height) == pytest.approx((30, 40, 40, 40))
    assert empty == [] and person[0].split()[0] == "0"
    assert not stale.exists(), "an earlier run's labels are cleared"
    assert sorted((tmp_path / "split" / "images").iterdir()) == sorted(linked), "and its links"
    assert {f: hashlib.sha256(f.read_bytes()).hexdigest() for f in frames} == before
    with pytest.raises(ValueError, match="at least one unlabelled frame"):
        teacher_labelled_split(_Teacher({}), [], ["car"], tmp_path / "none", imgsz=64)


def test_a_stranger_teacher_is_refused(tiny_dataset, tmp_path, tiny_model):
    stranger = tmp_path / "teacher.pt"
    stranger.write_bytes(tiny_model.weights.read_bytes() + b"changed")
    with pytest.raises(UntrustedWeights):
        distill(stranger, tiny_dataset.data_yaml, profile=tiny_model.profile, out_dir=tmp_path)


@pytest.mark.slow
def test_two_students_on_the_same_frames(tiny_model, tmp_path, monkeypatch):
    # A perfect teacher (the human labels; the synthetic set's classes are the project's), so
    # the teacher's split must carry exactly the human boxes.
    dataset = Dataset.from_yaml(tiny_model.data.data_yaml)
    assert list(dataset.names) == list(PROJECT_CLASSES)

    def perfect(teacher, frames, *, conf, imgsz):
        assert Path(teacher.ckpt_path) == tiny_model.weights, "the teacher, opened once"
        assert imgsz == tiny_model.profile.imgsz
        return [dataset.annotations(frame) for frame in frames]

    monkeypatch.setattr("tcv_helpers.data.prep.propose_by_model", perfect)
    result = distill(
        tiny_model.weights, tiny_model.data.data_yaml, profile=tiny_model.profile,
        out_dir=tmp_path / "distill", epochs=1, fraction=0.5, latency_imgsz=64, repeats=2,
    )  # fmt: skip
    train_split = Dataset.from_yaml(tiny_model.data.data_yaml).images("train")
    assert result.frames == round(len(train_split) * 0.5)
    human = yaml.safe_load((tmp_path / "distill" / "data-labels.yaml").read_text())
    taught = yaml.safe_load((tmp_path / "distill" / "data-teacher.yaml").read_text())
    assert human["val"] == taught["val"], "both scored on the same human-labelled cameras"
    human_frames = Path(human["train"]).read_text().splitlines()
    taught_frames = Path(taught["train"]).read_text().splitlines()
    assert human_frames == [str(p) for p in train_split[: result.frames]]
    assert [str(Path(p).resolve()) for p in taught_frames] == [
        str(Path(p).resolve()) for p in human_frames
    ], "the same frames, labelled by the teacher"
    assert result.from_labels.epochs == result.from_teacher.epochs == 1
    assert result.parameters["student"] < result.parameters["teacher"] / 2
    assert set(result.latency_ms) == {"teacher", "student"}
    table = result.table()
    assert list(table.index) == ["teacher", "student from labels", "student from teacher"]
    metrics = result.metrics()
    assert metrics["distill_teacher_map50"] == round(result.teacher_map50, 4)
    assert set(metrics) == {
        "distill_teacher_map50", "distill_student_labels_map50",
        "distill_student_teacher_map50", "distill_student_speedup",
    }  # fmt: skip
    assert result.teacher_boxes == result.true_boxes > 0
    for human_frame, taught_frame in zip(human_frames, taught_frames, strict=True):
        taught_labels = Dataset.label_path(taught_frame).read_text().split()
        assert [float(v) for v in taught_labels] == pytest.approx(
            [float(v) for v in Dataset.label_path(human_frame).read_text().split()], abs=1e-5
        ), "the teacher's boxes are what the student from the teacher reads"
    assert len(result.plot().axes) == 2
