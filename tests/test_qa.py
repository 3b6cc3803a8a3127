"""Label and image QA (tcv_helpers.data.qa): one planted defect of every kind, fixing, the real sample."""

from __future__ import annotations

import functools
import hashlib
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from tcv_helpers.data.labels import label_path_for
from tcv_helpers.data.qa import QAReport, check_dataset, fix_dataset
from tcv_helpers.data.qa_checks import ISSUE_KINDS, Issue, near_duplicate_pairs
from tcv_helpers.imaging import is_near_duplicate, perceptual_hash

NAMES = ["car", "truck"]
CLEAN_LABEL = "0 0.30 0.40 0.20 0.30\n1 0.70 0.60 0.25 0.20\n"


def _texture(seed: int, size: tuple[int, int] = (96, 64)) -> Image.Image:
    """A smooth random texture; different seeds give perceptually different images."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)


def _encode(image: Image.Image, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, quality=90) if fmt == "JPEG" else image.save(buffer, fmt)
    return buffer.getvalue()


class Dataset:
    """A tiny clean YOLO dataset in a temporary folder, with helpers to plant defects."""

    def __init__(self, root: Path, layout: str = "roboflow", per_split: int = 2) -> None:
        self.root = root
        self.layout = layout
        self.seed = 0
        self.yaml: dict = {"train": "", "val": "", "test": "", "names": dict(enumerate(NAMES))}
        for split in ("train", "val", "test"):
            self.yaml[split] = self.images_dir(split).relative_to(root).as_posix()
            self.images_dir(split).mkdir(parents=True)
            self.labels_dir(split).mkdir(parents=True)
            for k in range(per_split):
                self.add_image(split, f"{split}_{k:02d}.jpg")
        self.write_yaml()

    def images_dir(self, split: str) -> Path:
        folder = {"train": "train", "val": "valid", "test": "test"}[split]
        if self.layout == "roboflow":
            return self.root / folder / "images"
        return self.root / "images" / folder

    def labels_dir(self, split: str) -> Path:
        return label_path_for(self.images_dir(split) / "x.jpg").parent

    def write_yaml(self) -> None:
        (self.root / "data.yaml").write_text(yaml.safe_dump(self.yaml), encoding="utf-8")

    def add_image(
        self, split: str, name: str, data: bytes | None = None, label: str | None = CLEAN_LABEL
    ) -> Path:
        self.seed += 1
        image = self.images_dir(split) / name
        image.write_bytes(data if data is not None else _encode(_texture(self.seed)))
        if label is not None:
            label_path_for(image).write_text(label, encoding="utf-8")
        return image

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def label(self, split: str, stem: str) -> Path:
        return self.labels_dir(split) / f"{stem}.txt"


@pytest.fixture
def dataset(tmp_path: Path) -> Dataset:
    return Dataset(tmp_path / "ds")


def _tree_hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _find(report: QAReport, kind: str) -> list[Issue]:
    return [i for i in report.issues if i.kind == kind]


@pytest.mark.parametrize("layout", ["roboflow", "ultralytics"])
def test_clean_dataset_is_ok_in_both_layouts(tmp_path: Path, layout: str) -> None:
    ds = Dataset(tmp_path / "ds", layout=layout)
    report = check_dataset(ds.root)
    assert report.ok, report.format()
    assert report.issues == ()
    assert report.format() == ""
    assert set(report.splits) == {"train", "val", "test"}
    for counts in report.splits.values():
        assert (counts.images, counts.labels) == (2, 2)
        assert counts.boxes == {"car": 2, "truck": 2}
    assert "OK: 0 errors, 0 warnings" in report.summary()


def test_path_key_resolves_split_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = Dataset(tmp_path / "ds" / "inner", layout="ultralytics")
    (ds.root / "data.yaml").rename(tmp_path / "ds" / "data.yaml")
    data = yaml.safe_load((tmp_path / "ds" / "data.yaml").read_text(encoding="utf-8"))
    data["path"] = str(ds.root)  # an absolute path: the same from any working folder
    (tmp_path / "ds" / "data.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    report = check_dataset(tmp_path / "ds")
    assert report.ok and report.issues == ()
    assert report.splits["train"].images == 2
    # A relative path is read as Ultralytics reads it: from the working folder (then from its
    # datasets folder), not from data.yaml's folder.
    data["path"] = "inner"
    (tmp_path / "ds" / "data.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    monkeypatch.chdir(tmp_path / "ds")
    assert check_dataset(tmp_path / "ds").ok
    monkeypatch.chdir(tmp_path)
    datasets = tmp_path / "datasets"  # Ultralytics' datasets folder, for this test
    monkeypatch.setattr("tcv_helpers.data.dataset._datasets_dir", lambda: datasets)
    report = check_dataset(tmp_path / "ds")
    missing = report.by_kind("missing_split")
    assert [(i.file, i.message.split(":")[0]) for i in missing] == [
        ("data.yaml", f"key '{key}'") for key in ("test", "train", "val")
    ]
    train = missing[1].message
    assert str(datasets / "inner" / "images" / "train") in train
    assert str(tmp_path / "inner") in train and "not read from data.yaml's folder" in train


def test_image_lists_and_roboflow_entries_are_checked(tmp_path: Path) -> None:
    ds = Dataset(tmp_path / "ds")
    train = sorted(ds.images_dir("train").glob("*.jpg"))
    (ds.root / "lists").mkdir()
    (ds.root / "lists" / "train.txt").write_text(
        "".join(f"{p}\n" for p in [*train, train[0]]) + "./gone.jpg\n", encoding="utf-8"
    )
    ds.yaml.update(train="lists/train.txt", val="../valid/images", test="../test/images")
    ds.write_yaml()
    report = check_dataset(ds.root)
    assert [(i.kind, i.file) for i in report.errors] == [("missing_image", "lists/gone.jpg")]
    assert report.splits["train"].images == 2 and report.splits["val"].images == 2
    fixed = fix_dataset(ds.root, tmp_path / "fixed", report=report)
    assert fixed.ok, fixed.format()
    data = yaml.safe_load((tmp_path / "fixed" / "data.yaml").read_text(encoding="utf-8"))
    assert (data["train"], data["val"]) == ("train.txt", "valid/images")
    listed = (tmp_path / "fixed" / "train.txt").read_text(encoding="utf-8").splitlines()
    assert listed == [f"./{ds.rel(p)}" for p in [train[0], train[0], train[1]]]
    assert fixed.splits["train"].images == 2


def _corrupt(ds: Dataset) -> str:
    return ds.rel(ds.add_image("train", "broken.jpg", b"\xff\xd8\xff" + bytes(200)))


def _truncated(ds: Dataset) -> str:
    data = _encode(_texture(999, (320, 240)))
    return ds.rel(ds.add_image("train", "cut.jpg", data[: len(data) // 2]))


def _empty(ds: Dataset) -> str:
    return ds.rel(ds.add_image("train", "empty.jpg", b""))


def _mismatch(ds: Dataset) -> str:
    return ds.rel(ds.add_image("train", "really_png.jpg", _encode(_texture(998), "PNG")))


def _missing_label(ds: Dataset) -> str:
    return ds.rel(ds.add_image("val", "no_label.jpg", label=None))


def _orphan(ds: Dataset) -> str:
    orphan = ds.label("test", "ghost")
    orphan.write_text(CLEAN_LABEL, encoding="utf-8")
    return ds.rel(orphan)


def _in_split(ds: Dataset) -> str:
    data = (ds.images_dir("train") / "train_00.jpg").read_bytes()
    return ds.rel(ds.add_image("train", "z_copy.png", _encode(Image.open(io.BytesIO(data)), "PNG")))


def _across(ds: Dataset) -> str:
    data = (ds.images_dir("train") / "train_01.jpg").read_bytes()
    return ds.rel(ds.add_image("val", "leak.jpg", data))


def _unreadable(ds: Dataset) -> str:
    ds.label("train", "train_00").write_bytes(b"\xff\xfe\x00\x81garbage")
    return ds.rel(ds.label("train", "train_00"))


def _gone(ds: Dataset) -> str:
    """The train split becomes an image list naming its images and one that is not there."""
    listing = ds.images_dir("train").parent / "train.txt"
    train = sorted(ds.images_dir("train").iterdir())
    listing.write_text("".join(f"{p}\n" for p in train) + "./images/gone.jpg\n", encoding="utf-8")
    ds.yaml["train"] = ds.rel(listing)
    ds.write_yaml()
    return ds.rel(ds.images_dir("train") / "gone.jpg")


FILE_DEFECTS: list[tuple[str, Callable[[Dataset], str], str, str]] = [
    ("corrupt_image", _corrupt, "error", "cannot be decoded"),
    ("truncated_image", _truncated, "error", "truncated"),
    ("empty_file", _empty, "error", "0 bytes"),
    ("extension_mismatch", _mismatch, "warning", "content is png"),
    ("missing_label", _missing_label, "warning", "background"),
    ("orphan_label", _orphan, "error", "ghost.*"),
    ("near_duplicate_in_split", _in_split, "warning", "train_00.jpg"),
    ("near_duplicate_across_splits", _across, "error", "train_01.jpg in 'train'"),
    ("unreadable_label", _unreadable, "error", "cannot be read as text"),
    ("missing_image", _gone, "error", "does not exist"),
]


@pytest.mark.parametrize(
    ("kind", "plant", "severity", "text"), FILE_DEFECTS, ids=[d[0] for d in FILE_DEFECTS]
)
def test_file_defect_is_reported(
    dataset: Dataset, kind: str, plant: Callable[[Dataset], str], severity: str, text: str
) -> None:
    file = plant(dataset)
    report = check_dataset(dataset.root)
    found = _find(report, kind)
    assert [(i.file, i.line, i.severity) for i in found] == [(file, None, severity)], (
        report.format()
    )
    assert text in found[0].message
    others = {i.kind for i in report.issues} - {kind}
    assert not others, report.format()
    assert report.ok is (severity == "warning")
    assert found[0].format() == f"{file}: {severity} {kind}: {found[0].message}"


def test_cross_split_leakage_names_both_files_and_splits(dataset: Dataset) -> None:
    leaked = _across(dataset)
    (issue,) = check_dataset(dataset.root).by_kind("near_duplicate_across_splits")
    assert issue.file == leaked == "valid/images/leak.jpg"
    assert "train/images/train_01.jpg" in issue.message
    assert "'val'" in issue.message and "'train'" in issue.message


def test_near_duplicates_can_be_switched_off(dataset: Dataset) -> None:
    _across(dataset)
    assert check_dataset(dataset.root, near_duplicates=False).ok


def test_missing_label_can_be_an_error(dataset: Dataset) -> None:
    file = _missing_label(dataset)
    report = check_dataset(dataset.root, require_labels=True)
    assert [(i.file, i.severity) for i in report.by_kind("missing_label")] == [(file, "error")]
    assert not report.ok


LINE_DEFECTS = [
    ("malformed_line", "0 0.5 0.5 0.1", "expected 5 values"),
    ("malformed_line", "0 0.1 0.1 0.2 0.2 0.3", "got 6"),
    ("non_numeric", "0 0.5 abc 0.1 0.1", "'abc'"),
    ("non_numeric", "car 0.5 0.5 0.1 0.1", "'car'"),
    ("non_numeric", "1.5 0.5 0.5 0.1 0.1", "not an integer"),
    ("nan_value", "0 nan 0.5 0.1 0.1", "NaN"),
    ("nan_value", "1 0.5 0.5 inf 0.1", "infinite"),
    ("box_outside", "0 1.3 0.5 0.2 0.2", "outside the image"),
    ("box_outside", "0 0.98 0.5 0.2 0.2", "outside the image"),
    ("box_outside", "0 0.1 0.1 0.2 0.2 1.5 0.2", "outside the image"),
    ("zero_area", "0 0.5 0.5 0 0.1", "no area"),
    ("zero_area", "1 0.5 0.5 0.1 -0.2", "no area"),
    ("class_out_of_range", "7 0.5 0.5 0.1 0.1", "outside 0..1"),
    ("class_out_of_range", "-1 0.5 0.5 0.1 0.1", "class id -1"),
    ("duplicate_box", "0 0.30 0.40 0.20 0.30", "line 1"),
    ("duplicate_box", "1 0.701 0.6 0.25 0.2", "line 2"),
]


@pytest.mark.parametrize(
    ("kind", "line", "text"),
    LINE_DEFECTS,
    ids=[f"{k}-{n}" for n, (k, _, _) in enumerate(LINE_DEFECTS)],
)
def test_label_line_defect_is_reported_with_file_and_line(
    dataset: Dataset, kind: str, line: str, text: str
) -> None:
    label = dataset.label("train", "train_01")
    label.write_text(CLEAN_LABEL + "\n" + line + "\n", encoding="utf-8")
    report = check_dataset(dataset.root)
    file = dataset.rel(label)
    assert [(i.kind, i.file, i.line, i.severity) for i in report.issues] == [
        (kind, file, 4, "error")
    ], report.format()
    assert text in report.issues[0].message
    assert report.format().startswith(f"{file}:4: error {kind}: ")
    assert not report.ok


def test_valid_lines_are_not_flagged(dataset: Dataset) -> None:
    label = dataset.label("train", "train_01")
    lines = [
        "0 0.995 0.5 0.02 0.1",  # edge 0.005 past the border: within tolerance
        "1 0.5 0.5 0.1 0.1",  # same box as the next line, other class: not a duplicate
        "0 0.5 0.5 0.1 0.1",
        "1.0 0.2 0.8 0.1 0.1",  # class written as a float
        "0 0.1 0.1 0.3 0.1 0.2 0.3",  # a polygon
    ]
    label.write_text(CLEAN_LABEL + "\n".join(lines) + "\n", encoding="utf-8")
    report = check_dataset(dataset.root)
    assert report.issues == (), report.format()
    assert report.splits["train"].boxes == {"car": 5, "truck": 4}


def test_class_imbalance_warns_with_the_ratio(dataset: Dataset) -> None:
    many = "".join(f"0 {0.05 + 0.04 * k:.2f} 0.5 0.03 0.03\n" for k in range(22))
    dataset.label("train", "train_00").write_text(many + "1 0.5 0.9 0.1 0.1\n", encoding="utf-8")
    dataset.label("train", "train_01").write_text("0 0.5 0.1 0.1 0.1\n", encoding="utf-8")
    report = check_dataset(dataset.root)
    (issue,) = report.by_kind("class_imbalance")
    assert (issue.severity, issue.file) == ("warning", "train/images")
    assert "23.0:1" in issue.message and "'car' has 23" in issue.message
    assert report.ok
    assert not check_dataset(dataset.root, imbalance_ratio=30).by_kind("class_imbalance")


def _yaml_without(key: str) -> Callable[[dict], None]:
    return lambda data: data.pop(key)


YAML_DEFECTS: list[tuple[str, Callable[[dict], None], str]] = [
    ("bad_data_yaml", _yaml_without("val"), "key 'val' is missing"),
    ("bad_data_yaml", _yaml_without("names"), "key 'names'"),
    ("bad_data_yaml", lambda d: d.update(nc=3), "key 'nc'"),
    ("bad_data_yaml", lambda d: d.update(train=["train/images", 5]), "key 'train'"),
    ("missing_split", lambda d: d.update(test="nowhere/images"), "key 'test'"),
    ("split_overlap", lambda d: d.update(test="valid/images"), "'val' and 'test' share 2"),
]


@pytest.mark.parametrize(
    ("kind", "edit", "text"),
    YAML_DEFECTS,
    ids=[f"{k}-{n}" for n, (k, _, _) in enumerate(YAML_DEFECTS)],
)
def test_data_yaml_defect_is_an_error_naming_the_key(
    dataset: Dataset, kind: str, edit: Callable[[dict], None], text: str
) -> None:
    edit(dataset.yaml)
    dataset.write_yaml()
    report = check_dataset(dataset.root)
    found = _find(report, kind)
    assert len(found) == 1, report.format()
    assert (found[0].file, found[0].severity) == ("data.yaml", "error")
    assert text in found[0].message
    assert not report.ok


@pytest.mark.parametrize("content", ["train: [unclosed\n", "- just\n- a list\n", None])
def test_unusable_data_yaml(dataset: Dataset, content: str | None) -> None:
    if content is None:
        (dataset.root / "data.yaml").unlink()
    else:
        (dataset.root / "data.yaml").write_text(content, encoding="utf-8")
    report = check_dataset(dataset.root)
    assert [(i.kind, i.file) for i in report.issues] == [("bad_data_yaml", "data.yaml")]
    assert not report.ok


def test_process_pool_gives_the_same_report(dataset: Dataset) -> None:
    _corrupt(dataset)
    _across(dataset)
    serial = check_dataset(dataset.root, workers=1)
    pooled = check_dataset(dataset.root, workers=2, progress=True)
    assert serial == pooled
    assert {i.kind for i in pooled.issues} == {"corrupt_image", "near_duplicate_across_splits"}


def test_missing_root_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_dataset(tmp_path / "absent")


def test_report_table_and_summary(dataset: Dataset) -> None:
    _corrupt(dataset)
    _missing_label(dataset)
    report = check_dataset(dataset.root)
    frame = report.to_pandas()
    assert list(frame.columns) == ["kind", "severity", "file", "line", "message"]
    assert sorted(frame["kind"]) == ["corrupt_image", "missing_label"]
    assert [i.kind for i in report.errors] == ["corrupt_image"]
    assert [i.kind for i in report.warnings] == ["missing_label"]
    summary = report.summary()
    assert "FAILED: 1 errors, 1 warnings" in summary and "train: 3 images" in summary
    assert len(report.format().splitlines()) == 2


def test_every_kind_is_covered_by_a_test() -> None:
    planted = {d[0] for d in FILE_DEFECTS} | {d[0] for d in LINE_DEFECTS}
    planted |= {d[0] for d in YAML_DEFECTS} | {"class_imbalance"}
    assert planted == set(ISSUE_KINDS)


def _plant_everything(ds: Dataset) -> dict[str, str]:
    files = {plant.__name__: plant(ds) for _, plant, _, _ in FILE_DEFECTS}
    label = ds.label("test", "test_00")
    label.write_text(
        CLEAN_LABEL
        + "0 0.5 0.5 0.1\n"  # malformed
        + "0 0.5 x 0.1 0.1\n"  # non-numeric
        + "0 nan 0.5 0.1 0.1\n"  # NaN
        + "5 0.5 0.5 0.1 0.1\n"  # class out of range
        + "0 0.5 0.5 0 0.1\n"  # zero area
        + "0 1.6 0.5 0.2 0.2\n"  # far outside: dropped
        + "1 0.97 0.2 0.1 0.1\n"  # 70% inside: clipped
        + "0 0.30 0.40 0.20 0.30\n",  # duplicate of line 1
        encoding="utf-8",
    )
    files["label"] = ds.rel(label)
    return files


def test_fix_writes_a_clean_copy_and_never_touches_the_source(
    dataset: Dataset, tmp_path: Path
) -> None:
    files = _plant_everything(dataset)
    before = _tree_hashes(dataset.root)
    report = check_dataset(dataset.root)
    assert not report.ok
    out = tmp_path / "fixed"
    fixed = fix_dataset(dataset.root, out)
    assert _tree_hashes(dataset.root) == before
    assert fixed.ok, fixed.format()
    assert fixed.root == out.resolve()
    assert {i.kind for i in fixed.issues} <= {"near_duplicate_in_split"}
    for name in ("_corrupt", "_truncated", "_empty", "_across", "_orphan"):
        assert not (out / files[name]).exists(), name
    assert not (out / "train/images/train_00.jpg").exists()  # its label was unreadable
    assert (out / "train/images/really_png.png").is_file()  # renamed to its content type
    assert (out / "train/images/train_01.jpg").read_bytes() == (
        dataset.root / "train/images/train_01.jpg"
    ).read_bytes()
    assert (out / "valid/labels/no_label.txt").read_text(encoding="utf-8") == ""
    lines = (out / files["label"]).read_text(encoding="utf-8").splitlines()
    assert lines == ["0 0.30 0.40 0.20 0.30", "1 0.70 0.60 0.25 0.20", "1 0.96 0.2 0.08 0.1"]
    data = yaml.safe_load((out / "data.yaml").read_text(encoding="utf-8"))
    assert data["val"] == "valid/images" and "path" not in data
    assert data["names"] == {0: "car", 1: "truck"}
    assert fix_dataset(dataset.root, tmp_path / "again", report=report).ok


def test_fix_refuses_unsafe_outputs(dataset: Dataset, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="inside the dataset"):
        fix_dataset(dataset.root, dataset.root / "cleaned")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(FileExistsError, match="not empty"):
        fix_dataset(dataset.root, busy)
    assert (busy / "keep.txt").read_text(encoding="utf-8") == "mine"
    dataset.yaml.pop("val")
    dataset.write_yaml()
    with pytest.raises(ValueError, match="key 'val' is missing"):
        fix_dataset(dataset.root, tmp_path / "new")


def test_near_duplicate_pairs_methods_agree_with_imagehash() -> None:
    rng = np.random.default_rng(3)
    hashes = rng.integers(0, 2**63, 3000, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    for k in range(0, 3000, 100):  # plant near-duplicates: flip up to 6 bits of another hash
        flips = rng.choice(64, size=k % 7, replace=False)
        hashes[k + 1] = hashes[k] ^ np.uint64(sum(1 << int(b) for b in flips))
    brute = near_duplicate_pairs(hashes, 6, method="brute")
    buckets = near_duplicate_pairs(hashes, 6, method="buckets")
    assert brute == buckets
    assert {(k, k + 1) for k in range(0, 3000, 100)} <= {(i, j) for i, j, _ in brute}
    assert all(d <= 6 for _, _, d in brute)
    a, b = perceptual_hash(_texture(1)), perceptual_hash(_texture(1).rotate(3))
    packed = [int("".join("1" if v else "0" for v in h.hash.ravel()), 2) for h in (a, b)]
    assert near_duplicate_pairs(packed, 64) == [(0, 1, a - b)]
    assert bool(near_duplicate_pairs(packed, 6)) == bool(is_near_duplicate(a, b, 6))
    with pytest.raises(ValueError, match="unknown method"):
        near_duplicate_pairs(hashes, 6, method="fast")  # type: ignore[arg-type]


def test_label_path_rule_replaces_the_last_images_component() -> None:
    assert label_path_for(Path("/d/images/train/a.b.jpg")) == Path("/d/labels/train/a.b.txt")
    assert label_path_for(Path("/d/train/images/x.png")) == Path("/d/train/labels/x.txt")
    assert label_path_for(Path("/images/s/images/x.jpg")) == Path("/images/s/labels/x.txt")
    assert label_path_for(Path("/d/frames/x.jpg")) == Path("/d/frames/x.txt")


@functools.lru_cache(maxsize=1)
def _sample_report(root: Path) -> QAReport:
    return check_dataset(root)


def test_real_sample_reports_cross_split_leakage(sample_data: Path) -> None:
    root = sample_data / "manaus-traffic"
    report = _sample_report(root)
    assert not report.ok
    leaks = report.by_kind("near_duplicate_across_splits")
    assert leaks
    for issue in leaks:
        assert issue.severity == "error"
        assert issue.file.startswith(("valid/images/", "test/images/"))
        other = issue.message.split("near-duplicate of ", 1)[1].split(" in ", 1)[0]
        assert (root / other).is_file() and (root / issue.file).is_file()
        assert other.split("/")[0] != issue.file.split("/")[0]
    assert report.splits["train"].images == 204
    assert report.splits["train"].boxes["car"] == 1173


def test_real_sample_fix_checks_clean(sample_data: Path, tmp_path: Path) -> None:
    root = sample_data / "manaus-traffic"
    report = _sample_report(root)
    fixed = fix_dataset(root, tmp_path / "clean", report=report)
    assert fixed.ok, fixed.format()
    leaked = len(report.by_kind("near_duplicate_across_splits"))
    assert fixed.splits["train"].images == report.splits["train"].images
    kept = fixed.splits["val"].images + fixed.splits["test"].images
    assert kept == report.splits["val"].images + report.splits["test"].images - leaked
