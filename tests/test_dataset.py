"""The dataset type (tcv_helpers.data.dataset): Ultralytics' own reading of data.yaml, and the
course's readers agreeing with it on a Roboflow export and on the relabel loop's merged set."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import roboflow_sample
import yaml
from matplotlib.figure import Figure
from PIL import Image
from tiny import TINY
from typer.testing import CliRunner

from tcv_helpers.cli import app
from tcv_helpers.data.dataset import (
    ULTRALYTICS_IMAGE_SUFFIXES,
    Dataset,
    DatasetError,
    write_data_yaml,
)
from tcv_helpers.data.labels import label_path_for
from tcv_helpers.data.qa import check_dataset
from tcv_helpers.viz import plot_dataset_samples

NAMES = ["car", "truck"]
runner = CliRunner()


def _image(path: Path, seed: int, size: tuple[int, int] = (64, 48)) -> Path:
    """A small textured image; different seeds give perceptually different images."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC).save(path)
    label = label_path_for(path)
    label.parent.mkdir(parents=True, exist_ok=True)
    label.write_text(f"{seed % 2} 0.5 0.5 0.25 0.5\n", encoding="utf-8")
    return path


def _write(yaml_file: Path, data: dict) -> Path:
    yaml_file.parent.mkdir(parents=True, exist_ok=True)
    yaml_file.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return yaml_file


def _ultralytics(yaml_file: Path, split: str) -> list[str]:
    """The images Ultralytics trains on for a split: check_det_dataset, then its file listing."""
    from ultralytics.data.base import BaseDataset
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(str(yaml_file), autodownload=False)
    listed = BaseDataset.get_img_files(SimpleNamespace(prefix="", fraction=1.0), data[split])
    return [os.path.abspath(p) for p in listed]


# --------------------------------------------------------------------------------------------
# Layouts, each compared with Ultralytics' own resolution of the same files


def _roboflow(root: Path) -> Path:
    """A Roboflow "YOLOv8" export as it comes out of the zip: data.yaml beside the splits."""
    for k, split in enumerate(("train", "valid", "test")):
        for n in range(2):
            _image(root / split / "images" / f"{split}{n}.jpg", 10 * k + n)
    data = {"train": "../train/images", "val": "../valid/images", "test": "../test/images",
            "nc": 2, "names": NAMES}  # fmt: skip
    return _write(root / "data.yaml", data)


def _ultralytics_layout(root: Path) -> None:
    for k, split in enumerate(("train", "val")):
        _image(root / "images" / split / f"{split}.jpg", 20 + k)
        _image(root / "images" / split / "night" / f"{split}-late.PNG", 30 + k)  # nested
        (root / "images" / split / "notes.txt").write_text("not an image", encoding="utf-8")
        _image(root / "images" / split / f".hidden{k}.jpg", 40 + k)  # Ultralytics skips these


def _absolute_path(root: Path) -> Path:
    _ultralytics_layout(root / "ds")
    data = {"path": str(root / "ds"), "train": "images/train", "val": "images/val",
            "names": dict(enumerate(NAMES))}  # fmt: skip
    return _write(root / "configs" / "data.yaml", data)


def _relative_path(root: Path) -> Path:
    """A relative ``path:``, found from the working folder (the test runs from ``root``)."""
    _ultralytics_layout(root / "ds")
    data = {"path": "ds", "train": "images/train", "val": "images/val", "names": NAMES}
    return _write(root / "configs" / "data.yaml", data)


def _datasets_dir(root: Path) -> Path:
    """A relative ``path:`` not in the working folder: under Ultralytics' datasets folder."""
    _ultralytics_layout(root / "datasets" / "ds")
    data = {"path": "ds", "train": "images/train", "val": "images/val", "names": NAMES}
    return _write(root / "configs" / "data.yaml", data)


def _image_lists(root: Path) -> Path:
    """``.txt`` lists: absolute, ``./`` and repeated lines, a byte-order mark, a list in a
    sub-folder, and a line Ultralytics drops (not an image)."""
    train = [_image(root / "images" / "train" / f"t{n}.jpg", 50 + n) for n in range(3)]
    val = _image(root / "images" / "val" / "v.jpg", 60)
    lines = [str(train[2]), "./images/train/t0.jpg", "./images/train/t1.jpg", str(train[2])]
    (root / "train.txt").write_text("\ufeff" + "\n".join([*lines, "README.md"]) + "\n", "utf-8")
    (root / "lists").mkdir()
    (root / "lists" / "val.txt").write_text(f"./../images/val/{val.name}\n", encoding="utf-8")
    data = {"train": "train.txt", "val": "lists/val.txt", "names": NAMES}
    return _write(root / "data.yaml", data)


def _folder_list(root: Path) -> Path:
    """A split made of several folders."""
    for n, folder in enumerate(("day", "night", "val")):
        _image(root / "images" / folder / f"{folder}.jpg", 70 + n)
    data = {"train": ["images/night", "images/day"], "val": "images/val", "names": NAMES}
    return _write(root / "data.yaml", data)


LAYOUTS = {
    "roboflow": _roboflow,
    "absolute-path": _absolute_path,
    "relative-path": _relative_path,
    "datasets-dir": _datasets_dir,
    "image-lists": _image_lists,
    "folder-list": _folder_list,
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_images_are_the_ones_ultralytics_reads(
    layout: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ultralytics.data.utils

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ultralytics.data.utils, "DATASETS_DIR", tmp_path / "datasets")
    yaml_file = LAYOUTS[layout](tmp_path)
    dataset = Dataset.from_yaml(yaml_file)
    assert dataset.names == tuple(NAMES) and dataset.class_map == {0: "car", 1: "truck"}
    for split in dataset.split_keys:
        ours = [str(p) for p in dataset.images(split)]
        assert ours == _ultralytics(yaml_file, split), split
        assert all(Path(p).is_file() for p in ours)
        from ultralytics.data.utils import img2label_paths

        assert [str(dataset.label_path(p)) for p in ours] == img2label_paths(ours)


def test_the_special_cases_of_each_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    robo = Dataset.from_yaml(_roboflow(tmp_path / "rf"))  # the folder holding data.yaml
    assert robo.root == tmp_path / "rf" and robo.split_keys == ("train", "val", "test")
    assert robo.images("valid") == robo.images("val")
    assert [s.path for s in robo.sources["val"]] == [tmp_path / "rf" / "valid" / "images"]
    lists = Dataset.from_yaml(_image_lists(tmp_path / "lists"))
    names = [p.name for p in lists.images("train")]
    assert names == ["t0.jpg", "t1.jpg", "t2.jpg", "t2.jpg"]  # sorted by path, repeats kept
    assert [p.name for p in lists.unique_images("train")] == ["t0.jpg", "t1.jpg", "t2.jpg"]
    assert all(s.is_list for s in lists.sources["train"])
    nested = Dataset.from_yaml(_absolute_path(tmp_path / "abs"))
    assert [p.name for p in nested.images("train")] == ["train-late.PNG", "train.jpg"]


def test_suffixes_are_ultralytics_own() -> None:
    from ultralytics.data.utils import IMG_FORMATS

    assert set(IMG_FORMATS) == ULTRALYTICS_IMAGE_SUFFIXES


# --------------------------------------------------------------------------------------------
# Errors


def test_a_missing_split_names_the_key_and_every_path_tried(tmp_path: Path) -> None:
    yaml_file = _roboflow(tmp_path / "rf")
    shutil.rmtree(tmp_path / "rf" / "valid")
    with pytest.raises(DatasetError) as caught:
        Dataset.from_yaml(yaml_file)
    message = str(caught.value)
    assert message.startswith(f"{yaml_file}: key 'val': '../valid/images' does not exist")
    assert str(tmp_path / "valid" / "images") in message  # as written
    assert str(tmp_path / "rf" / "valid" / "images") in message  # Roboflow's ../ dropped
    assert [(p.kind, p.key) for p in caught.value.problems] == [("missing_split", "val")]
    assert isinstance(caught.value, ValueError)


def test_a_list_entry_is_not_retried_without_its_dots(tmp_path: Path) -> None:
    yaml_file = _roboflow(tmp_path / "rf")
    _write(yaml_file, {**yaml.safe_load(yaml_file.read_text()), "val": ["../valid/images"]})
    with pytest.raises(DatasetError, match=r"key 'val'.*tried .*/valid/images\)\.$"):
        Dataset.from_yaml(yaml_file)


@pytest.mark.parametrize(
    ("edit", "problems"),
    [
        (lambda d: d.pop("val"), [("missing_key", "val")]),
        (lambda d: (d.pop("names"), d.pop("nc")), [("missing_key", "names")]),
        (lambda d: d.update(names={0: "car", 2: "bus"}), [("invalid", "names")]),
        (lambda d: d.update(nc=3), [("invalid", "nc")]),
        (lambda d: d.update(train=["../train/images", 5]), [("invalid", "train")]),
        (lambda d: d.update(path=7), [("invalid", "path")]),
        (lambda d: d.update(test="nowhere"), [("missing_split", "test")]),
    ],
    ids=["no-val", "no-names", "name-ids", "nc", "entry-type", "path-type", "missing-test"],
)
def test_every_problem_is_named(tmp_path: Path, edit, problems) -> None:
    yaml_file = _roboflow(tmp_path / "rf")
    data = yaml.safe_load(yaml_file.read_text())
    edit(data)
    _write(yaml_file, data)
    with pytest.raises(DatasetError) as caught:
        Dataset.from_yaml(yaml_file)
    assert [(p.kind, p.key) for p in caught.value.problems] == problems
    assert str(yaml_file) in str(caught.value)


def test_unreadable_files_and_unknown_splits(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"data\.yaml does not exist"):
        Dataset.from_yaml(tmp_path)
    (tmp_path / "data.yaml").write_text("- a\n- list\n", encoding="utf-8")
    dataset, problems = Dataset.read(tmp_path)
    assert dataset is None and [p.kind for p in problems] == ["unreadable"]
    with pytest.raises(DatasetError, match="mapping"):
        Dataset.from_yaml(tmp_path / "data.yaml")
    rf = Dataset.from_yaml(_roboflow(tmp_path / "rf"))
    with pytest.raises(DatasetError, match=r"no images in split 'holdout'; splits present: train"):
        rf.images("holdout")


def test_names_may_come_from_nc_alone(tmp_path: Path) -> None:
    yaml_file = _roboflow(tmp_path / "rf")
    data = yaml.safe_load(yaml_file.read_text())
    del data["names"]
    assert Dataset.from_yaml(_write(yaml_file, data)).names == ("class_0", "class_1")


# --------------------------------------------------------------------------------------------
# Boxes, writing, plotting


def test_ground_truth_in_pixels(tmp_path: Path) -> None:
    dataset = Dataset.from_yaml(_roboflow(tmp_path / "rf"))
    paths, truth = dataset.ground_truth("valid")
    assert paths == list(dataset.images("val"))
    np.testing.assert_allclose(truth[0].xyxy, [[24, 12, 40, 36]])
    assert truth[0].class_id.tolist() == [0] and truth[1].class_id.tolist() == [1]
    relative = dataset.annotations("valid/images/valid0.jpg")
    np.testing.assert_allclose(relative.xyxy, truth[0].xyxy)
    label_path_for(paths[0]).write_text("0 0.5 0.5 0.1\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"valid0\.txt:1: expected 5 values"):
        dataset.ground_truth("val")


def test_to_yaml_keeps_what_it_does_not_change(tmp_path: Path) -> None:
    source = Dataset.from_yaml(_roboflow(tmp_path / "rf"))
    moved = source.to_yaml(tmp_path / "elsewhere" / "data.yaml", header="# moved")
    text = moved.read_text(encoding="utf-8")
    assert text.startswith("# moved\npath: ")
    data = yaml.safe_load(text)
    assert (data["path"], data["val"], data["nc"]) == (str(source.root), "../valid/images", 2)
    copy = Dataset.from_yaml(moved)
    assert copy.splits == source.splits and copy.names == source.names
    listing = tmp_path / "train.txt"
    listing.write_text("".join(f"{p}\n" for p in source.images("train")[:1]), encoding="utf-8")
    fewer = Dataset.from_yaml(source.to_yaml(tmp_path / "fewer.yaml", splits={"train": listing}))
    assert fewer.images("train") == source.images("train")[:1]
    assert fewer.images("test") == source.images("test")


def test_write_data_yaml(tmp_path: Path) -> None:
    for n in range(2):
        _image(tmp_path / "images" / "train" / f"{n}.jpg", n)
    written = write_data_yaml(
        tmp_path / "data.yaml",
        names=NAMES,
        splits={"train": "images/train", "val": ["images/train"]},
    )
    assert yaml.safe_load(written.read_text()) == {
        "train": "images/train", "val": "images/train", "names": {0: "car", 1: "truck"},
    }  # fmt: skip
    assert len(Dataset.from_yaml(written).images("val")) == 2
    with pytest.raises(ValueError, match="unknown split key"):
        write_data_yaml(tmp_path / "x.yaml", names=NAMES, splits={"holdout": "images"})


def test_plot_dataset_samples_draws_the_labels(tmp_path: Path) -> None:
    dataset = Dataset.from_yaml(_roboflow(tmp_path / "rf"))
    images = ["train/images/train0.jpg", dataset.images("val")[0]]
    fig = plot_dataset_samples(dataset, images, captions=["a", "b"], cols=2)
    assert isinstance(fig, Figure)
    assert [len(ax.patches) for ax in fig.axes] == [1, 1]
    assert [ax.get_title() for ax in fig.axes] == ["a", "b"]
    with pytest.raises(ValueError, match="at least one image"):
        plot_dataset_samples(dataset, [])


# --------------------------------------------------------------------------------------------
# Done when (issue 12): a Roboflow export and the relabel loop's merged set pass the course's
# own check, train and evaluate


@pytest.fixture(scope="module")
def roboflow_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Part of the real sample in Roboflow's zip layout (data.yaml with ``../train/images``).

    The sample keeps near-copies of frames across its splits on purpose (its README); the ones
    the check names are left out of this export, so that it is clean as Roboflow could have
    made it. Everything else is the sample's own files.
    """
    value = os.environ.get("TCV_SAMPLE_DATA", "")
    source = Path(value) / "manaus-traffic"
    if not value or not source.is_dir():
        pytest.skip("real sample data absent: set TCV_SAMPLE_DATA to the shared data folder")
    root = tmp_path_factory.mktemp("roboflow") / "Manaus_traffic-5"
    roboflow_sample.roboflow_export(source, root, {"train": 24, "valid": 16, "test": 8})
    for issue in check_dataset(root).by_kind("near_duplicate_across_splits"):
        image = root / issue.file
        image.unlink()
        label_path_for(image).unlink()
    return root


def test_roboflow_export_passes_the_check_trains_and_evaluates(
    roboflow_export: Path, tmp_path: Path
) -> None:
    from tcv_helpers.model.evaluate import evaluate_detections, load_ground_truth
    from tcv_helpers.model.predict import predict_yolo
    from tcv_helpers.model.train import train

    result = runner.invoke(app, ["data", "check", str(roboflow_export)])
    assert result.exit_code == 0, result.output
    assert "missing_split" not in result.output and "OK: 0 errors" in result.output
    run = train(roboflow_export / "data.yaml", profile=TINY, out_dir=tmp_path, epochs=1, workers=0)
    assert run.epochs == 1 and run.best.is_file()
    assert run.images_per_second > 0
    paths, truth, names = load_ground_truth(roboflow_export, "val")
    assert len(paths) == len(list((roboflow_export / "valid" / "images").glob("*.jpg"))) > 0
    predictions = predict_yolo(run.best, paths, imgsz=TINY.imgsz)
    scores = evaluate_detections(truth, predictions, names)
    assert 0.0 <= scores.map50 <= 1.0 and scores.n_gt == sum(len(t) for t in truth) > 0


def test_relabel_merged_dataset_passes_the_check_and_trains(tmp_path: Path) -> None:
    from tcv_helpers.data.synth import generate_dataset
    from tcv_helpers.model.train import train
    from tcv_helpers.monitor.conditions import condition_set
    from tcv_helpers.monitor.retrain import merged_data_yaml

    base = generate_dataset(tmp_path / "data", images=24, cameras=3, sequences=0, workers=1)
    night = condition_set(
        tmp_path / "night", production=4, validation=2, cameras=[0], val_cameras=[1],
        width=320, height=180,
    )  # fmt: skip
    reviewed = tmp_path / "reviewed"  # what RelabelQueue.apply_review writes: images/, labels/
    for frame in night.frames("production"):
        for src, dst in (
            (frame.image, reviewed / "images" / frame.image.name),
            (label_path_for(frame.image), reviewed / "labels" / f"{frame.image.stem}.txt"),
        ):
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
    merged = merged_data_yaml(base.data_yaml, reviewed, out_dir=tmp_path / "merged", repeat=2)
    listed = Path(yaml.safe_load(merged.read_text())["train"]).read_text().splitlines()
    base_train = base.images["train"]
    assert len(listed) == 2 * 4 + base_train

    result = runner.invoke(app, ["data", "check", str(merged.parent)])
    assert result.exit_code == 0, result.output
    assert f"train: {4 + base_train} images" in result.output  # each file once
    dataset = Dataset.from_yaml(merged)
    assert len(dataset.images("train")) == len(listed)  # what Ultralytics trains on per epoch
    run = train(merged, profile=TINY, out_dir=tmp_path / "models", epochs=1, workers=0)
    assert run.images_per_second > 0
    assert run.images_per_second * run.seconds == pytest.approx(len(listed) * run.epochs)
