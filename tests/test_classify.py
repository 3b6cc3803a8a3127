"""The custom crop classifier (notebook 04, Step 6): crops by camera, the loop, the measurements."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from tiny import toy_crops

from tcv_helpers.model import classify
from tcv_helpers.model.classify import (
    Crops,
    SmallCNN,
    crops_from_dataset,
    evaluate,
    fit,
    grouped_kfold,
    regularisation_study,
)
from tcv_helpers.model.curves import LiveCurves


@pytest.fixture(scope="module")
def crops(tiny_dataset):
    return crops_from_dataset(tiny_dataset.root, splits=("train", "val", "test"))


def test_crops_come_from_the_labelled_boxes_and_keep_cameras_apart(crops, tiny_dataset):
    from tcv_helpers.data.dataset import Dataset

    dataset = Dataset.from_yaml(tiny_dataset.root)
    boxes = sum(len(dataset.annotations(p)) for p in dataset.unique_images())
    assert 0 < len(crops) <= boxes, "one crop per box (tiny boxes skipped)"
    assert crops.images.shape[1:] == (3, classify.CROP, classify.CROP)
    assert crops.images.dtype == np.uint8 and crops.names == tuple(dataset.names)
    train, val = crops.split("train"), crops.split("val")
    assert len(train) and len(val) and len(train) + len(val) < len(crops)
    assert not set(train.cameras) & set(val.cameras), "validation is on unseen cameras"
    assert set(crops.cameras) <= {f"cam-{i:02d}" for i in range(3)}
    capped = crops_from_dataset(tiny_dataset.root, splits=("train",), max_per_class=2)
    assert max(capped.counts().values()) <= 2 and set(capped.counts()) == set(train.counts())


def test_unreadable_images_and_empty_datasets_are_named(tiny_dataset, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_dataset.root, copy)
    yaml_file = copy / "data.yaml"  # its path: names the original folder
    yaml_file.write_text(yaml_file.read_text().replace(str(tiny_dataset.root), str(copy)))
    broken = sorted((copy / "images" / "val").glob("*.jpg"))[0]
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=broken.name):
        crops_from_dataset(copy, splits=("val",))
    for label in (copy / "labels").rglob("*.txt"):
        label.write_text("")
    with pytest.raises(ValueError, match="no labelled box"):
        crops_from_dataset(copy, splits=("train",))


def test_the_loop_learns_keeps_the_best_epoch_and_stops_early(tmp_path):
    train, val = toy_crops(97)  # 65 training crops: a last batch of one is left out (batch norm)
    seen = []
    run = fit(
        SmallCNN(2, width=8, seed=0), train, val, epochs=30, patience=3, lr=1e-2, seed=0,
        checkpoint=tmp_path / "best.pt", on_epoch=lambda epoch, m: seen.append((epoch, m)),
    )  # fmt: skip
    assert run.best["val_acc"] == 1.0 and run.best_epoch == run.history["val_acc"].idxmax() + 1
    assert run.stopped_early and run.stopped_at == run.best_epoch + 3 < 30
    assert [e for e, _ in seen] == list(range(1, run.stopped_at + 1))
    assert {"train_loss", "val_loss", "train_acc", "val_acc", "lr"} <= set(seen[0][1])
    lrs = run.history["lr"].tolist()
    assert lrs[0] == pytest.approx(1e-2) and lrs == sorted(lrs, reverse=True), "cosine schedule"
    saved = torch.load(tmp_path / "best.pt", weights_only=True)
    assert saved["epoch"] == run.best_epoch and saved["names"] == ["car", "truck"]
    restored = SmallCNN(2, width=8, seed=0)
    restored.load_state_dict(saved["state_dict"])
    assert (classify.predict(restored, val) == classify.predict(run.model, val)).all()
    assert "stopped early after epoch" in run.message()
    state = torch.get_rng_state()
    full = fit(SmallCNN(2, width=8, dropout=0.5, seed=0), train, val, epochs=3, patience=None)
    assert not full.stopped_early and full.stopped_at == 3 and "ran all 3 epochs" in full.message()
    assert torch.equal(torch.get_rng_state(), state), "the caller's random state is left alone"
    torch.manual_seed(123)  # another global state: dropout still draws the same masks
    again = fit(SmallCNN(2, width=8, dropout=0.5, seed=0), train, val, epochs=3, patience=None)
    assert again.history.equals(full.history), "a seed repeats a run, dropout included"


def test_fit_refuses_what_cannot_train():
    train, val = toy_crops()
    with pytest.raises(ValueError, match="crops to train and to validate"):
        fit(SmallCNN(2), train, val.subset([]))
    with pytest.raises(ValueError, match="lr > 0"):
        fit(SmallCNN(2), train, val, lr=0)


def test_evaluation_counts_what_it_reports():
    train, val = toy_crops()
    run = fit(SmallCNN(2, width=8, seed=0), train, val, epochs=8, lr=1e-2, seed=0)
    report = evaluate(run.model, val, repeats=3)
    predicted = classify.predict(run.model, val)
    assert report.accuracy == pytest.approx((predicted == val.labels).mean())
    assert report.confusion.to_numpy().sum() == len(val)
    assert np.trace(report.confusion.to_numpy()) == int((predicted == val.labels).sum())
    assert list(report.per_class.index) == ["car", "truck"]
    assert report.per_class["support"].sum() == len(val)
    assert report.parameters == sum(p.numel() for p in run.model.parameters())
    assert report.latency_ms > 0 and set(report.summary()) == {
        "accuracy",
        "parameters",
        "latency_ms",
    }


def test_regularisation_runs_differ_only_in_their_switches(monkeypatch):
    train, val = toy_crops(64)
    real = classify.fit
    runs = {"none": (0.0, 0.0, False), "both": (0.5, 0.1, True)}
    table = regularisation_study(train, val, runs=runs, epochs=2, lr=1e-2)
    assert list(table.index) == ["none", "both"]
    seen = []
    monkeypatch.setattr(
        classify,
        "fit",
        lambda model, tr, va, **kw: seen.append((len(tr), len(va))) or real(model, tr, va, **kw),
    )
    regularisation_study(train, val, runs=runs, epochs=1, train_size=10, val_size=4)
    assert seen == [(10, 4), (10, 4)], "10 and 4 crops, evenly spread"
    assert table.loc["both", "dropout"] == 0.5 and bool(table.loc["both", "augmentation"])
    assert (table["gap"] == table["train_acc"] - table["val_acc"]).all()
    assert ((table["val_acc"] >= 0) & (table["val_acc"] <= table["best_val_acc"])).all()
    metrics = classify.regularisation_metrics(table)
    assert set(metrics) == {"reg_none_gap", "reg_none_val_acc", "reg_both_gap", "reg_both_val_acc"}
    assert metrics["reg_both_gap"] == round(table.loc["both", "gap"], 4)


def test_kfold_holds_each_camera_out_once():
    train, val = toy_crops()
    everything = Crops(
        np.concatenate([train.images, val.images]), np.concatenate([train.labels, val.labels]),
        np.concatenate([train.cameras, val.cameras]), np.concatenate([train.splits, val.splits]),
        train.names,
    )  # fmt: skip
    result = grouped_kfold(everything, k=3, epochs=2, lr=1e-2)
    held = [set(c.split(", ")) for c in result.folds["cameras"]]
    assert len(held) == 3 and set().union(*held) == {f"cam-{i}" for i in range(6)}
    assert sum(len(h) for h in held) == 6, "every camera in exactly one fold"
    assert result.folds["crops"].sum() == len(everything)
    assert result.mean == pytest.approx(result.folds["val_acc"].mean()) and result.std >= 0
    with pytest.raises(ValueError, match="at least 7 cameras"):
        grouped_kfold(everything, k=7)


def test_backbone_says_where_its_weights_came_from(monkeypatch):
    from torchvision.models import get_model_weights

    def offline(self, *args, **kwargs):
        raise OSError("no network")

    weights = get_model_weights("resnet18").DEFAULT
    monkeypatch.setattr(weights.__class__, "get_state_dict", offline)
    backbone = classify.torchvision_backbone(4)
    assert not backbone.pretrained and "could not be had" in backbone.message
    assert backbone.message.startswith("resnet18 from random weights")
    assert backbone.model.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 4)
    small = classify.torchvision_backbone(3, name="mobilenet_v3_small", pretrained=False)
    assert small.model.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 3), "its last Linear"
    plain = classify.torchvision_backbone(4, name="resnet18", pretrained=False, dropout=0.3, seed=1)
    assert plain.message == "resnet18 from random weights." and not plain.pretrained
    assert isinstance(plain.model.fc[0], torch.nn.Dropout) and plain.model.fc[1].out_features == 4
    twin = classify.torchvision_backbone(4, name="resnet18", pretrained=False, dropout=0.3, seed=1)
    assert torch.equal(plain.model.fc[1].weight, twin.model.fc[1].weight), "seeded"
    with pytest.raises(ValueError, match="no model 'lenet'"):
        classify.torchvision_backbone(4, name="lenet")


def test_curves_and_pictures(crops):
    train, val = toy_crops()
    live = LiveCurves(show=False, draw=classify.draw_history)
    run = fit(SmallCNN(2, width=8, seed=0), train, val, epochs=2, on_epoch=live)
    assert len(live.frame()) == 2 and len(live.figure.axes) == 2
    assert len(live.figure.axes[1].get_lines()) == 2, "train and validation accuracy"
    figure = classify.plot_history({"a": run, "b": run})
    assert isinstance(figure, Figure) and len(figure.axes[0].get_lines()) == 4
    grid = classify.plot_crops(crops, per_class=3)
    assert len(grid.axes) == 3 * len(crops.counts())


def test_comparison_puts_models_side_by_side():
    train, val = toy_crops()
    runs = {
        "a": fit(SmallCNN(2, width=8, seed=0), train, val, epochs=2, seed=0),
        "b": fit(SmallCNN(2, width=4, seed=1), train, val, epochs=3, patience=None, seed=0),
    }
    result = classify.compare(runs, val)
    table = result.table()
    assert list(table.index) == ["a", "b"] and list(table["epochs"]) == [2, 3]
    assert table.loc["a", "accuracy"] == round(result.reports["a"].accuracy, 4)
    assert table.loc["a", "parameters"] > table.loc["b", "parameters"], "width 8 against 4"
    assert list(result.per_class().columns.get_level_values(0).unique()) == ["a", "b"]


def test_a_sample_has_the_size_asked_even_when_it_is_most_of_the_crops():
    train, _ = toy_crops(200)
    picked = classify._spread(train, len(train) - 5)  # a step of 1 would keep them all
    assert len(picked) == len(train) - 5 and len(set(picked.cameras)) == len(set(train.cameras))
    assert classify._spread(train, None) is train and classify._spread(train, 10**6) is train
