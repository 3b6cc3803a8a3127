"""The report and the model card say what the numbers say."""

from __future__ import annotations

import json

import pytest

from tcv_helpers.model.evaluate import evaluate_detections
from tcv_helpers.model.report import model_card, write_report
from tcv_helpers.model.slices import evaluate_slices
from tcv_helpers.project import ProjectDefinition, SuccessCriteria, read_project, write_project
from tcv_helpers.record import clean_metrics
from tests.eval_cases import NAMES, synthetic


@pytest.fixture(scope="module")
def evaluated():
    gt, pred = synthetic(5, n_images=20)
    cameras = [f"cam-{i % 2}" for i in range(20)]
    conditions = ["night" if i % 4 == 0 else "day" for i in range(20)]
    result = evaluate_detections(gt, pred, NAMES)
    table = evaluate_slices(gt, pred, NAMES, {"camera": cameras, "condition": conditions})
    return result, table


@pytest.mark.parametrize(
    ("criteria", "verdict"),
    [
        (SuccessCriteria(min_map50=0.5, min_recall=0.5), "PASS"),
        (SuccessCriteria(min_map50=0.99, min_recall=0.5), "FAIL"),
        (ProjectDefinition(criteria=SuccessCriteria(min_map50=0.2, min_recall=0.99)), "FAIL"),
        ({"min_map50": 0.1, "min_recall": 0.1}, "PASS"),
    ],
)
def test_write_report(evaluated, tmp_path, criteria, verdict):
    result, table = evaluated
    out = tmp_path / "eval"
    numbers = write_report(
        result, out, slices_table=table, criteria=criteria, model_name="yolo11n", data_name="val"
    )
    assert sorted(p.name for p in out.iterdir()) == ["evaluation.json", "evaluation.md"]
    assert numbers == clean_metrics(**numbers)
    assert all(isinstance(v, float) for v in numbers.values())
    assert numbers["map50"] == result.map50 and numbers["recall"] == result.recall
    document = json.loads((out / "evaluation.json").read_text(encoding="utf-8"))
    assert document["metrics"] == numbers
    assert document["criteria"]["passed"] is (verdict == "PASS")
    assert len(document["slices"]) == len(table)
    assert len(document["result"]["per_class"]) == len(NAMES)
    text = (out / "evaluation.md").read_text(encoding="utf-8")
    assert f"**Overall: {verdict}**" in text
    assert f"- **mAP50:** {result.map50:.3f}" in text
    assert "## Per slice" in text and "| camera | cam-0 |" in text
    assert "| car |" in text


def test_write_report_with_project_yaml_and_without_criteria(evaluated, tmp_path):
    result, _ = evaluated
    write_project(tmp_path / "project.yaml", ProjectDefinition())
    project = read_project(tmp_path / "project.yaml")
    write_report(result, tmp_path / "a", criteria=project.criteria, model_name="m", data_name="d")
    document = json.loads((tmp_path / "a" / "evaluation.json").read_text(encoding="utf-8"))
    assert document["criteria"]["limits"] == {"min_map50": 0.5, "min_recall": 0.7}
    write_report(result, tmp_path / "b", model_name="m", data_name="d")
    assert "No criteria given." in (tmp_path / "b" / "evaluation.md").read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="min_recall"):
        write_report(
            result, tmp_path / "c", criteria={"min_map50": 0.5}, model_name="m", data_name="d"
        )
    # Rewriting replaces the files whole.
    write_report(result, tmp_path / "b", model_name="other", data_name="d")
    assert "other" in (tmp_path / "b" / "evaluation.md").read_text(encoding="utf-8").splitlines()[0]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "evaluation.json",
        "evaluation.md",
    ]


def test_model_card(evaluated):
    result, table = evaluated
    card = model_card(
        result,
        model_name="yolo11n",
        data_name="synthetic val",
        slices_table=table,
        criteria=SuccessCriteria(min_map50=0.99, min_recall=0.1),
        limitations=["Only synthetic frames."],
    )
    for heading in (
        "# Model card: yolo11n",
        "## Intended use",
        "## Data",
        "## Metrics by slice",
        "## Limitations",
        "## Privacy and bias",
    ):
        assert heading in card, heading
    assert "- Only synthetic frames." in card
    assert "does NOT meet" in card and "synthetic val" in card
    cams = table[table["slice"] == "camera"].set_index("value")["map50"]
    worst = cams.idxmin()
    assert f"Across cameras: mAP50 is lowest for **{worst}**" in card
    assert f"{cams.max() - cams.min():.3f}" in card
    assert "conditions (day/night)" in card
    assert "blur people and plates" in card
    bare = model_card(result, model_name="m", data_name="d", slices_table=None, criteria=None)
    assert "not compared across cameras" in bare and "No slices were evaluated." in bare
