"""The `tcv data ...` commands end to end, as a user types them."""

import csv

import pytest
from typer.testing import CliRunner

from tcv_helpers.cli import app
from tcv_helpers.data.democam import DemoCameras
from tcv_helpers.data.qa import plant_defects
from tests.conftest import NOTEBOOKS

runner = CliRunner()


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "synth"
    result = runner.invoke(app, ["data", "synth", "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "Wrote 240 frames" in result.output
    assert f"Instance masks (YOLO segmentation): {out / 'segment' / 'data.yaml'}" in result.output
    return out


def test_synth_output_checks_without_errors(synth):
    result = runner.invoke(app, ["data", "check", str(synth)])
    assert result.exit_code == 0, result.output
    assert "OK: 0 errors" in result.output


def test_check_reports_every_planted_defect_then_fix_is_clean(synth, tmp_path):
    planted = plant_defects(synth, tmp_path / "messy")
    result = runner.invoke(
        app, ["data", "check", str(tmp_path / "messy"), "--fix", str(tmp_path / "clean")]
    )
    assert result.exit_code == 1, result.output
    for kind, file in planted.items():
        assert any(kind in line and file in line for line in result.output.splitlines()), (
            kind,
            file,
        )
    assert "Cleaned copy" in result.output
    again = runner.invoke(app, ["data", "check", str(tmp_path / "clean")])
    assert again.exit_code == 0 and "0 errors" in again.output
    refused = runner.invoke(
        app, ["data", "check", str(tmp_path / "messy"), "--fix", str(tmp_path / "messy" / "x")]
    )
    assert refused.exit_code == 2 and "inside" in refused.output


def test_check_missing_folder(tmp_path):
    result = runner.invoke(app, ["data", "check", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "nope" in result.output


def test_convert(synth, tmp_path):
    result = runner.invoke(
        app,
        ["data", "convert", "--from", "yolo", "--to", "coco", str(synth), str(tmp_path / "coco")],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "coco" / "annotations" / "instances_train.json").is_file()
    bad = runner.invoke(
        app,
        ["data", "convert", "--from", "yolo", "--to", "tfrecord", str(synth), str(tmp_path / "x")],
    )
    assert bad.exit_code == 2 and "known formats" in bad.output


def test_roboflow_without_key_is_one_sentence(monkeypatch, tmp_path):
    monkeypatch.delenv("ROBOFLOW_API_KEY", raising=False)
    result = runner.invoke(
        app, ["data", "roboflow", "tamaturgo/manaus_traffic/5", "--out", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "No ROBOFLOW_API_KEY set" in result.output and "tcv data synth" in result.output
    assert "Traceback" not in result.output


def test_scrape_demo_cameras(tmp_path):
    with DemoCameras(cameras=2, refresh=0.2) as demo:
        cameras = demo.write_camera_list(tmp_path / "cams.yaml")
        result = runner.invoke(
            app,
            [
                "data",
                "scrape",
                "--cameras",
                str(cameras),
                "--out",
                str(tmp_path / "out"),
                "--rounds",
                "2",
                "--interval",
                "0.25",
                "--per-host-delay",
                "0.02",
            ],
        )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "out" / "manifest.csv").open()))
    assert len(rows) == 6
    assert {r["outcome"] for r in rows if r["camera_id"] == "demo-offline"} == {"placeholder"}
    outcomes = [(r["camera_id"], r["outcome"], r.get("detail")) for r in rows]
    first, second = rows[:3], rows[3:]
    assert sum(r["outcome"] == "saved" for r in first) == 2, outcomes
    # Round two sees a new frame of each live camera: saved, or (whether it is depends on where
    # the random vehicles fell, and so on the tick the fetch landed in) a near-duplicate of it.
    assert [r["outcome"] in ("saved", "near_duplicate") for r in second].count(True) == 2, outcomes
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras:\n  - id: Bad Id\n    url: ftp://x\n")
    result = runner.invoke(
        app, ["data", "scrape", "--cameras", str(bad), "--out", str(tmp_path / "o2")]
    )
    assert result.exit_code == 2 and "bad.yaml" in result.output


def test_bench_refuses_missing_files_and_unknown_variants(synth, tmp_path):
    missing = runner.invoke(app, ["bench", str(tmp_path / "none.pt"), "--data", "x.yaml"])
    assert missing.exit_code == 2 and "none.pt does not exist" in missing.output
    weights = tmp_path / "best.pt"
    weights.write_bytes(b"not read: the variant list is checked first")
    unknown = runner.invoke(
        app, ["bench", str(weights), "--data", str(synth / "data.yaml"), "--variants", "tflite"]
    )
    assert unknown.exit_code == 2 and "Unknown variants ['tflite']" in unknown.output


def test_notebooks_check_names_each_problem(tmp_path):
    good = runner.invoke(
        app, ["notebooks", "check", str(NOTEBOOKS / "01_problem_definition.ipynb")]
    )
    assert good.exit_code == 0 and "1 of 1 notebooks follow the rules" in good.output, good.output
    bad = tmp_path / "99_bad.ipynb"
    bad.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}\n')
    result = runner.invoke(app, ["notebooks", "check", str(bad)])
    assert result.exit_code == 1 and "0 of 1 notebooks follow the rules" in result.output
    assert f"{bad}: " in result.output
