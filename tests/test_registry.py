"""Datasets from every source, in the project taxonomy: load_dataset and the Roboflow helpers."""

import csv
import json
import os
import shutil
import sys
import types
import typing
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny import TINY

from tcv_helpers.config import load_config, with_overrides
from tcv_helpers.data import hub
from tcv_helpers.data.dataset import Dataset
from tcv_helpers.data.labels import MANIFEST_COLUMNS, label_path_for, read_manifest
from tcv_helpers.data.registry import (
    CLASS_SYNONYMS,
    DATASETS,
    MANAUS,
    STAMP_FILE,
    DatasetUnavailable,
    camera_id_from_name,
    class_map_for,
    describe_registry,
    download_roboflow,
    load_dataset,
    upload_for_labeling,
)
from tcv_helpers.data.synth import DATASET_LAYOUT
from tcv_helpers.project import PROJECT_CLASSES

WORKSHOP = with_overrides(TINY, name="workshop")


def _dataset(root: Path, names: list[str], boxes: dict[str, list[int]]) -> Path:
    """A small Roboflow-style YOLO export: ``<split>/images`` with class ids per image."""
    for split, per_image in boxes.items():
        for n, class_id in enumerate(per_image):
            image = root / split / "images" / f"cam{n % 2}_frame{n}_jpg.rf.{n:032x}.jpg"
            image.parent.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng(n)
            Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(image)
            label = label_path_for(image)
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text(f"{class_id} 0.5 0.5 0.25 0.5\n", encoding="utf-8")
    splits = {"train": "../train/images", "val": "../valid/images"}
    text = "".join(f"{k}: {v}\n" for k, v in splits.items())
    text += f"nc: {len(names)}\nnames: {json.dumps(names)}\n"
    (root / "data.yaml").write_text(text, encoding="utf-8")
    return root


FOREIGN = ["Car", "pedestrian", "traffic light"]
FOREIGN_BOXES = {"train": [0, 1, 2, 2, 0, 1], "valid": [0, 2, 1]}


@pytest.mark.parametrize(
    ("name", "camera"),
    [
        ("accident_frame191_jpg.rf.0c7628ac722d8e28bb802efa67b21dbd.jpg", "accident_frame"),
        ("abqlou105_jpg.rf.490c9ab5163cf5a6061303ec40a89044.jpg", "abqlou"),
        (
            "Stmarc_Video_Frame1973_jpg.rf.8630e69029afb5ca21cea93c851bad51.jpg",
            "stmarc_video_frame",
        ),
        ("cam-02_0001.png", "cam-02"),
        ("00123.jpg", "00123"),
    ],
)
def test_camera_id_from_roboflow_file_names(name, camera):
    assert camera_id_from_name(name) == camera


def test_class_map_by_name():
    assert class_map_for(["Car", "pedestrian", "traffic light", "lorry"]) == {
        "Car": "car", "pedestrian": "person", "lorry": "truck",
    }  # fmt: skip
    assert class_map_for(list(PROJECT_CLASSES)) == {c: c for c in PROJECT_CLASSES}
    assert set(CLASS_SYNONYMS.values()) <= set(PROJECT_CLASSES)
    manaus = DATASETS[MANAUS].class_map
    assert all(class_map_for([k])[k] == v for k, v in manaus.items()), "synonyms agree"


def test_registry_rows_name_the_original_source():
    rows = {row["name"]: row for row in describe_registry()}
    assert "tamaturgo/manaus_traffic/5" in rows[MANAUS]["source"]
    assert rows[MANAUS]["license"] == "CC BY 4.0" and rows["synthetic"]["source"] == "generated"


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A data folder whose synthetic sets (tiny and workshop-named) are already generated."""
    data_dir = tmp_path_factory.mktemp("made") / "data"
    for profile in (TINY, WORKSHOP):
        load_dataset("synthetic", data_dir=data_dir, profile=profile)
    return data_dir


def test_synthetic_is_made_once(tmp_path):
    first = load_dataset("synthetic", data_dir=tmp_path, profile=TINY)
    assert "Generated" in first.message and first.data_yaml.is_file() and not first.fell_back
    assert first.key == "synthetic" and not first.real
    assert len(list((first.path / "images").rglob("*.jpg"))) == TINY.synth_images
    again = load_dataset("synthetic", data_dir=tmp_path, profile=TINY)
    assert again.path == first.path and "already" in again.message
    # A set generated before the instance masks (its stamp has no layout) is made again, with them.
    segment = first.path / "segment"
    shutil.rmtree(segment)
    stamp = first.path / ".complete"
    stamp.write_text(stamp.read_text().replace(f" layout={DATASET_LAYOUT}", ""))
    older = load_dataset("synthetic", data_dir=tmp_path, profile=TINY)
    assert "Generated" in older.message and (segment / "data.yaml").is_file()


def test_auto_is_synthetic_in_the_smoke_profile(made, monkeypatch):
    monkeypatch.setattr(hub, "fetch_folder", _never)
    loaded = load_dataset("auto", data_dir=made, profile=TINY)
    assert loaded.key == "synthetic" and not loaded.real and not loaded.fell_back
    reason = loaded.message.split(". ")[0]
    assert "smoke profile" in reason and 'DATASET="manaus-traffic"' in reason
    assert load_dataset(data_dir=made, profile=TINY).path == loaded.path, "auto is the default"


def _never(*args, **kwargs):
    raise AssertionError("the hub was asked although it should not have been")


def test_auto_falls_back_when_the_hub_is_unreachable(made, tmp_path, monkeypatch):
    from hub_server import closed_port_url

    url = closed_port_url()
    monkeypatch.setenv("TCV_ASSETS_URL", url)
    monkeypatch.setenv("TCV_CACHE", str(tmp_path / "cache"))
    loaded = load_dataset("auto", data_dir=made, profile=WORKSHOP)
    assert loaded.fell_back and loaded.key == "synthetic" and not loaded.real
    reason, rest = loaded.message.split(". ", 1)
    assert url.rstrip("/") in reason and "\n" not in reason, "one sentence naming the hub"
    assert rest.startswith("Using the synthetic dataset already in synthetic-workshop-0")
    assert not (made / MANAUS).exists()
    monkeypatch.setenv("TCV_ASSETS_URL", str(tmp_path / "no-such-mirror"))
    with pytest.raises(hub.AssetUnavailable, match="no-such-mirror"):
        load_dataset(MANAUS, data_dir=made, profile=WORKSHOP, fallback=False)


@pytest.fixture(scope="module")
def manaus(tmp_path_factory, request):
    """The real camera set loaded once through the session's loopback hub (root conftest)."""
    value = os.environ.get("TCV_SAMPLE_DATA", "")
    if not value or not (Path(value) / "manaus-traffic").is_dir():
        pytest.skip("real sample data absent: set TCV_SAMPLE_DATA to the shared data folder")
    if not os.environ.get("TCV_ASSETS_URL"):
        pytest.skip("no asset hub for this session (the root conftest serves one from the data)")
    data_dir = tmp_path_factory.mktemp("ws") / "data"
    return data_dir, load_dataset(MANAUS, data_dir=data_dir, profile=WORKSHOP, fallback=False)


def test_manaus_traffic_comes_from_the_hub_in_project_classes(manaus, sample_data):
    data_dir, loaded = manaus
    assert loaded.path == data_dir / MANAUS and loaded.key == MANAUS and loaded.real
    assert not loaded.fell_back
    assert "CC BY 4.0" in loaded.message and "tamaturgo" in loaded.message
    assert "biker->motorcycle" in loaded.message and "kept out" not in loaded.message
    dataset = Dataset.from_yaml(loaded.path)
    assert dataset.names == PROJECT_CLASSES
    source = Dataset.from_yaml(sample_data / "manaus-traffic")
    for split in ("train", "val", "test"):
        assert len(dataset.images(split)) == len(source.images(split))
    boxes = {name: 0 for name in PROJECT_CLASSES}
    for split in ("train", "val", "test"):
        for truth in dataset.ground_truth(split)[1]:
            for class_id in truth.class_id:
                boxes[PROJECT_CLASSES[class_id]] += 1
    # the README's counts per split, summed: biker 149+27+24, cyclist 121+29+16, ...
    assert boxes == {"car": 1992, "truck": 140, "bus": 0, "motorcycle": 200, "bicycle": 166,
                     "person": 545}  # fmt: skip


def test_manaus_manifest_gives_camera_slices(manaus):
    from tcv_helpers.model.evaluate import load_ground_truth
    from tcv_helpers.model.slices import slices_from_manifest

    _, loaded = manaus
    manifest = read_manifest(loaded.path / "manifest.csv")
    assert list(manifest.columns[: len(MANIFEST_COLUMNS)]) == list(MANIFEST_COLUMNS)
    assert len(manifest) == 324 and set(manifest["split"]) == {"train", "val", "test"}
    assert set(manifest["condition"]) == {"unknown"} and set(manifest["timestamp"]) == {""}
    assert set(manifest["source"]) == {MANAUS}
    assert all((loaded.path / image).is_file() for image in manifest["image"])
    cameras = set(manifest["camera_id"])
    assert {"accident_frame", "stmarc_video_frame", "abqlou"} <= cameras and len(cameras) > 20
    paths, _, _ = load_ground_truth(loaded.path, "val")
    slices = slices_from_manifest(loaded.path, paths)
    assert len(slices["camera_id"]) == len(paths) == 76 and len(set(slices["camera_id"])) > 5


def test_manaus_copy_is_reused_without_the_hub(manaus, monkeypatch):
    data_dir, first = manaus
    stamp = (first.path / STAMP_FILE).stat().st_mtime_ns
    monkeypatch.setattr(hub, "fetch_folder", _never)
    again = load_dataset(MANAUS, data_dir=data_dir, profile=WORKSHOP, fallback=False)
    assert again.path == first.path and "prepared earlier" in again.message
    assert (first.path / STAMP_FILE).stat().st_mtime_ns == stamp
    auto = load_dataset("auto", data_dir=data_dir, profile=WORKSHOP)
    assert auto.key == MANAUS and auto.real, "auto is the real set in the workshop profile"


def test_config_for_real_data(manaus, tmp_path):
    _, loaded = manaus
    cfg = load_config("smoke", tmp_path / "ws").for_dataset(loaded)
    assert cfg.profile.imgsz == 192
    assert "imgsz=192" in cfg.describe() and "manaus-traffic (real)" in cfg.describe()


def test_local_folder_with_project_classes_is_used_in_place(made, tmp_path):
    synthetic = load_dataset("synthetic", data_dir=made, profile=TINY)
    loaded = load_dataset(synthetic.path, data_dir=tmp_path / "b", profile=TINY)
    assert loaded.path == synthetic.path.resolve() and "as it is" in loaded.message
    assert loaded.key is None and not loaded.real, "its manifest says synthetic"
    assert not (tmp_path / "b").exists(), "nothing copied"
    by_yaml = load_dataset(synthetic.data_yaml, data_dir=tmp_path / "b", profile=TINY)
    assert by_yaml.path == loaded.path


def test_local_folder_with_other_classes_is_mapped_and_reported(tmp_path):
    source = _dataset(tmp_path / "mine", FOREIGN, FOREIGN_BOXES)
    loaded = load_dataset(source, data_dir=tmp_path / "data", profile=TINY)
    assert loaded.path == tmp_path / "data" / "mine-mapped" and loaded.real and loaded.key is None
    assert "'traffic light' (3 boxes)" in loaded.message
    assert "pedestrian->person" in loaded.message and "Car->car" not in loaded.message
    dataset = Dataset.from_yaml(loaded.path)
    assert dataset.names == PROJECT_CLASSES and len(dataset.images("train")) == 6
    kept = [PROJECT_CLASSES[c] for t in dataset.ground_truth("train")[1] for c in t.class_id]
    assert sorted(kept) == ["car", "car", "person", "person"]
    manifest = read_manifest(loaded.path / "manifest.csv")
    assert set(manifest["camera_id"]) == {"cam0_frame", "cam1_frame"}
    assert set(manifest["split"]) == {"train", "val"}
    again = load_dataset(source, data_dir=tmp_path / "data", profile=TINY)
    assert "made earlier" in again.message and "'traffic light' (3 boxes)" in again.message
    label_path_for(next((source / "train" / "images").iterdir())).write_text("1 0.5 0.5 0.1 0.1\n")
    changed = load_dataset(source, data_dir=tmp_path / "data", profile=TINY)
    assert "made now" in changed.message, "a changed source is copied again"


def test_a_zip_is_extracted_once_then_used_as_a_folder(tmp_path):
    source = _dataset(tmp_path / "src" / "export", FOREIGN, FOREIGN_BOXES)
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in sorted(source.rglob("*")):
            zf.write(file, file.relative_to(source.parent).as_posix())
    data_dir = tmp_path / "data"
    loaded = load_dataset(archive, data_dir=data_dir, profile=TINY)
    assert (data_dir / "export" / "export" / "data.yaml").is_file(), "extracted under its stem"
    assert loaded.path == data_dir / "export-mapped" and loaded.real
    assert Dataset.from_yaml(loaded.path).names == PROJECT_CLASSES
    extracted = (data_dir / "export" / STAMP_FILE).stat().st_mtime_ns
    again = load_dataset(archive, data_dir=data_dir, profile=TINY)
    assert again.path == loaded.path and "made earlier" in again.message
    assert (data_dir / "export" / STAMP_FILE).stat().st_mtime_ns == extracted, "extracted once"


def test_a_zip_member_escaping_its_folder_is_refused(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("data.yaml", "names: [car]\n")
        zf.writestr("../escape.txt", "x")
    with pytest.raises(DatasetUnavailable, match="outside the folder"):
        load_dataset(evil, data_dir=tmp_path / "data", profile=TINY)
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "data" / "evil").exists()
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("readme.txt", "no dataset here")
    with pytest.raises(DatasetUnavailable, match=r"no data\.yaml"):
        load_dataset(empty, data_dir=tmp_path / "data", profile=TINY)


def test_a_folder_load_dataset_did_not_write_is_never_replaced(tmp_path):
    source = _dataset(tmp_path / "mine", FOREIGN, FOREIGN_BOXES)
    theirs = tmp_path / "data" / "mine-mapped"
    theirs.mkdir(parents=True)
    (theirs / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not written by load_dataset"):
        load_dataset(source, data_dir=tmp_path / "data", profile=TINY)
    assert (theirs / "notes.txt").read_text() == "mine"


def test_errors_name_the_problem(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    with pytest.raises(DatasetUnavailable, match=r"no data\.yaml"):
        load_dataset(folder, data_dir=tmp_path / "data", profile=TINY)
    with pytest.raises(KeyError, match=r"Unknown dataset .+nope.*workspace/project/version"):
        load_dataset("nope", data_dir=tmp_path / "data", profile=TINY)
    other = _dataset(tmp_path / "animals", ["cat", "dog"], {"train": [0, 1], "valid": [1]})
    with pytest.raises(ValueError, match=r"none of its classes \(cat, dog\)"):
        load_dataset(other, data_dir=tmp_path / "data", profile=TINY)


class FakeRoboflow:
    calls: typing.ClassVar[list] = []
    fail: Exception | None = None
    export: typing.ClassVar[typing.Callable[[Path], None] | None] = None

    def __init__(self, api_key):
        self.calls.append(("key", api_key))

    def workspace(self, name):
        self.calls.append(("workspace", name))
        return self

    def project(self, name):
        self.calls.append(("project", name))
        return self

    def version(self, number):
        self.calls.append(("version", number))
        return self

    def download(self, model_format, location, overwrite):
        if self.fail:
            raise self.fail
        self.calls.append(("download", model_format, location))
        export = type(self).export  # a plain function, not bound to the instance
        if export is not None:
            export(Path(location))
        return types.SimpleNamespace(location=location)

    def upload(self, image_path, batch_name):
        self.calls.append(("upload", image_path, batch_name))


@pytest.fixture
def fake_roboflow(monkeypatch):
    FakeRoboflow.calls, FakeRoboflow.fail, FakeRoboflow.export = [], None, None
    monkeypatch.setitem(sys.modules, "roboflow", types.SimpleNamespace(Roboflow=FakeRoboflow))
    monkeypatch.setenv("ROBOFLOW_API_KEY", "rf-secret-123456")
    return FakeRoboflow


def test_a_roboflow_id_is_downloaded_once_and_mapped_by_name(fake_roboflow, tmp_path):
    fake_roboflow.export = lambda root: _dataset(root, FOREIGN, FOREIGN_BOXES)
    data_dir = tmp_path / "data"
    loaded = load_dataset("ws/cams/3", data_dir=data_dir, profile=TINY)
    raw = data_dir / "roboflow" / "ws" / "cams" / "3"
    assert ("download", "yolov11", str(raw)) in fake_roboflow.calls
    assert loaded.path == data_dir / "cams-v3" and loaded.key is None and loaded.real
    assert "'traffic light' (3 boxes)" in loaded.message and "ws/cams/3" in loaded.message
    assert Dataset.from_yaml(loaded.path).names == PROJECT_CLASSES
    with (loaded.path / "manifest.csv").open(newline="") as handle:
        assert {row["source"] for row in csv.DictReader(handle)} == {"roboflow:ws/cams/3"}
    fake_roboflow.calls.clear()
    again = load_dataset("ws/cams/3", data_dir=data_dir, profile=TINY)
    assert again.path == loaded.path and fake_roboflow.calls == [], "no second download"


def test_a_roboflow_id_without_a_key_falls_back(made, monkeypatch):
    monkeypatch.delenv("ROBOFLOW_API_KEY", raising=False)
    loaded = load_dataset("ws/cams/3", data_dir=made, profile=TINY)
    assert loaded.fell_back and loaded.key == "synthetic"
    assert loaded.message.startswith("No ROBOFLOW_API_KEY set") and "synthetic" in loaded.message
    with pytest.raises(DatasetUnavailable, match="No ROBOFLOW_API_KEY"):
        load_dataset("ws/cams/3", data_dir=made, profile=TINY, fallback=False)


def test_roboflow_download_calls(fake_roboflow, tmp_path):
    path = download_roboflow("ws/proj/5", tmp_path / "d")
    assert path == tmp_path / "d"
    assert fake_roboflow.calls == [
        ("key", "rf-secret-123456"),
        ("workspace", "ws"),
        ("project", "proj"),
        ("version", 5),
        ("download", "yolov11", str(tmp_path / "d")),
    ]


def test_roboflow_errors_never_show_the_key(fake_roboflow, tmp_path):
    import requests

    fake_roboflow.fail = RuntimeError("invalid api key rf-secret-123456")
    with pytest.raises(DatasetUnavailable) as err:
        download_roboflow("ws/proj/5", tmp_path / "d")
    assert "rf-secret-123456" not in str(err.value) and "[REDACTED]" in str(err.value)
    fake_roboflow.fail = requests.ConnectionError("no route")
    with pytest.raises(DatasetUnavailable, match=r"could not be reached.*synthetic"):
        download_roboflow("ws/proj/5", tmp_path / "d")
    with pytest.raises(ValueError, match="WORKSPACE/PROJECT/VERSION"):
        download_roboflow("ws/proj", tmp_path / "d")


def test_upload_for_labeling(fake_roboflow, tmp_path):
    image = tmp_path / "a.jpg"
    image.write_bytes(b"x")
    assert upload_for_labeling([image], "ws/proj", batch="b1") == 1
    assert ("upload", str(image), "b1") in fake_roboflow.calls
    with pytest.raises(FileNotFoundError, match="missing"):
        upload_for_labeling([tmp_path / "none.jpg"], "ws/proj")
