import pytest
import yaml

from tcv_helpers.project import (
    PROJECT_CLASSES,
    ProjectDefinition,
    SuccessCriteria,
    annotation_effort,
    ensure_project,
    read_project,
    write_project,
)


def test_round_trip(tmp_path):
    definition = ProjectDefinition(
        classes=("car", "bus"), target="edge", criteria=SuccessCriteria(min_map50=0.6)
    )
    path = write_project(tmp_path / "project.yaml", definition)
    assert yaml.safe_load(path.read_text())["criteria"]["min_map50"] == 0.6
    assert read_project(path) == definition


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"min_map50": 50}, "min_map50"),
        ({"max_count_error": -0.1}, "max_count_error"),
        ({"max_latency_ms": 0}, "max_latency_ms"),
        ({"min_fps": -1}, "min_fps"),
    ],
)
def test_bad_criteria_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SuccessCriteria(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "tracking"}, "task"),
        ({"target": "tpu"}, "target"),
        ({"classes": ()}, "at least one"),
        ({"classes": ("car", "tractor")}, "tractor"),
    ],
)
def test_bad_definition(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ProjectDefinition(**kwargs)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\ncolour: red\n", "unknown field.*colour"),
        ("criteria:\n  min_mAP: 0.5\n", "unknown criteria field.*min_mAP"),
        ("criteria:\n  min_map50: 5\n", "min_map50"),
        ("classes: car\n", "'classes' must be a list"),
        ("name: [unclosed\n", "not valid YAML"),
        ("- a\n- b\n", "mapping"),
    ],
)
def test_read_names_file_and_field(tmp_path, text, message):
    path = tmp_path / "project.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as err:
        read_project(path)
    assert str(path) in str(err.value)


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="notebook 01"):
        read_project(tmp_path / "project.yaml")


def test_ensure_project_writes_defaults_once(tmp_path):
    path = tmp_path / "project.yaml"
    first, created = ensure_project(path)
    assert created and first == ProjectDefinition()
    write_project(path, ProjectDefinition(classes=("truck",)))
    second, created = ensure_project(path)
    assert not created and second.classes == ("truck",)


def test_taxonomy_and_effort():
    assert PROJECT_CLASSES == ("car", "truck", "bus", "motorcycle", "bicycle", "person")
    rows = {r["task"]: r for r in annotation_effort(10, frames=360)}
    assert rows["detection"]["seconds_per_frame"] == 70
    assert rows["segmentation"]["seconds_per_frame"] > 10 * rows["detection"]["seconds_per_frame"]
    assert rows["detection"]["hours_for_360_frames"] == pytest.approx(7.0)
    with pytest.raises(ValueError):
        annotation_effort(-1)
