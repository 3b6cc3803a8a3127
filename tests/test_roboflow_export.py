"""Done when (issue 13): ``tcv data check``, training and evaluation accept a Roboflow export as
downloaded, with its flaws: the real sample keeps near-copies of frames across its splits.

"Accept" means: the export is read as Ultralytics reads it (Roboflow's ``../train/images`` and
its extra keys), every split is counted, and the only errors are the leakage the sample really
has (named per image, exit code 1); without the near-duplicate search it passes. Training and
evaluation then run on it without a path error, and ``load_dataset`` turns it into the project's
classes with per-camera slices.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from roboflow_sample import roboflow_export
from tiny import TINY
from typer.testing import CliRunner

from tcv_helpers.cli import app
from tcv_helpers.data.dataset import Dataset
from tcv_helpers.data.qa import check_dataset
from tcv_helpers.data.registry import load_dataset
from tcv_helpers.project import PROJECT_CLASSES

runner = CliRunner()
SPLITS = {"train": 204, "val": 76, "test": 44}  # the sample's README


@pytest.fixture(scope="module")
def manaus() -> Path:
    """The shared sample's Roboflow export (skips with the reason when it is absent)."""
    value = os.environ.get("TCV_SAMPLE_DATA", "")
    source = Path(value) / "manaus-traffic"
    if not value or not source.is_dir():
        pytest.skip("real sample data absent: set TCV_SAMPLE_DATA to the shared data folder")
    return source


@pytest.mark.parametrize("layout", ["as shared", "as Roboflow's zip"])
def test_data_check_reads_the_export_and_reports_its_leakage(manaus, tmp_path, layout):
    root = (
        manaus if layout == "as shared" else roboflow_export(manaus, tmp_path / "Manaus_traffic-5")
    )
    result = runner.invoke(app, ["data", "check", str(root)])
    assert isinstance(result.exception, SystemExit), result.output  # an exit, not a crash
    assert result.exit_code == 1, "the sample's near-copies across splits are errors"
    for split, images in SPLITS.items():
        assert f"{split}: {images} images, {images} label files" in result.output
    report = check_dataset(root)
    assert {issue.kind for issue in report.errors} == {"near_duplicate_across_splits"}
    assert not report.by_kind("missing_split") and not report.by_kind("unreadable")
    assert "leakage" in report.errors[0].message
    clean = runner.invoke(app, ["data", "check", str(root), "--no-near-duplicates"])
    assert clean.exit_code == 0 and "OK: 0 errors" in clean.output, clean.output


def test_a_roboflow_export_trains_evaluates_and_loads(manaus, tmp_path):
    from tcv_helpers.model.evaluate import evaluate_detections, load_ground_truth
    from tcv_helpers.model.predict import predict_yolo
    from tcv_helpers.model.slices import slices_from_manifest
    from tcv_helpers.model.train import read_model_meta, train

    export = roboflow_export(
        manaus, tmp_path / "Manaus_traffic-5", {"train": 6, "valid": 2, "test": 2}
    )
    run = train(export / "data.yaml", profile=TINY, out_dir=tmp_path / "models", epochs=1,
                workers=0)  # fmt: skip
    assert run.epochs == 1 and run.best.is_file() and run.images_per_second > 0
    assert read_model_meta(run.best)["names"] == ["biker", "car", "cyclist", "people", "truck"]
    paths, truth, names = load_ground_truth(export, "val")
    assert [p.parent for p in paths] == [(export / "valid" / "images").resolve()] * 2
    predictions = predict_yolo(run.best, paths, imgsz=TINY.imgsz)
    scores = evaluate_detections(truth, predictions, names)
    assert 0.0 <= scores.map50 <= 1.0 and scores.n_gt == sum(len(t) for t in truth) > 0

    loaded = load_dataset(export, data_dir=tmp_path / "data", profile=TINY)
    assert loaded.real and loaded.path == tmp_path / "data" / "Manaus_traffic-5-mapped"
    assert Dataset.from_yaml(loaded.path).names == PROJECT_CLASSES
    test_paths, _, _ = load_ground_truth(loaded.path, "test")
    cameras = slices_from_manifest(loaded.path, test_paths)["camera_id"]
    assert len(cameras) == 2 and all(cameras)
