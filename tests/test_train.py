"""Training: what is loaded and why, the profile's settings, a real run, resume after a kill."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from matplotlib.figure import Figure
from tiny import TINY

from tcv_helpers.config import PROFILES, with_overrides
from tcv_helpers.data.release import build_release
from tcv_helpers.data.synth import generate_dataset
from tcv_helpers.model import train as train_mod
from tcv_helpers.model.curves import LiveCurves, plot_training, read_tensorboard
from tcv_helpers.model.train import (
    FINE_TUNE_LR_SCALE,
    FINE_TUNE_PATIENCE,
    TrainResult,
    UntrustedWeights,
    WeightsEntry,
    ensure_trained,
    fine_tune,
    meta_path,
    model_to_train,
    read_model_meta,
    resolve_model,
    train,
    training_args,
    write_model_meta,
)
from tcv_helpers.project import PROJECT_CLASSES


def test_architecture_trains_from_scratch():
    choice = resolve_model("yolo11n.yaml")
    assert choice.model == "yolo11n.yaml" and "from scratch" in choice.message


def test_registry_pins_release_weights():
    for name, entry in train_mod.WEIGHTS.items():
        assert entry.name == name and entry.url.endswith(f"/{name}")
        assert len(entry.sha256) == 64 and "AGPL-3.0" in entry.license


def test_unregistered_pretrained_weights_fall_back_to_the_yaml(monkeypatch):
    monkeypatch.setattr(train_mod, "WEIGHTS", {})
    choice = resolve_model("yolo11s.pt")
    assert choice.model == "yolo11s.yaml" and "No verified checksum" in choice.message


def test_registered_weights_offline_fall_back(monkeypatch, tmp_path):
    monkeypatch.setenv("TCV_CACHE", str(tmp_path))
    entry = WeightsEntry("yolo11n.pt", "http://127.0.0.1:9/yolo11n.pt", "0" * 64, "AGPL-3.0")
    monkeypatch.setattr(train_mod, "WEIGHTS", {"yolo11n.pt": entry})
    choice = resolve_model("yolo11n.pt")
    assert choice.model == "yolo11n.yaml"
    assert "from scratch instead of pretrained yolo11n.pt" in choice.message
    assert choice.message.count("\n") == 0
    choice = resolve_model("yolo11n.pt", allow_download=False)
    assert choice.model == "yolo11n.yaml" and "Downloads are off" in choice.message


def test_registered_weights_in_the_cache_are_used(monkeypatch, tmp_path):
    import hashlib

    monkeypatch.setenv("TCV_CACHE", str(tmp_path))
    payload = b"pretend weights"
    digest = hashlib.sha256(payload).hexdigest()
    cached = tmp_path / "weights" / f"{digest[:16]}-yolo11n.pt"
    cached.parent.mkdir()
    cached.write_bytes(payload)
    entry = WeightsEntry("yolo11n.pt", "http://127.0.0.1:9/yolo11n.pt", digest, "AGPL-3.0")
    monkeypatch.setattr(train_mod, "WEIGHTS", {"yolo11n.pt": entry})
    choice = resolve_model("yolo11n.pt")
    assert choice.model == str(cached) and "checksum verified" in choice.message


def test_registered_weights_with_a_wrong_checksum_are_not_kept(monkeypatch, tmp_path):
    from hub_server import HubServer

    monkeypatch.setenv("TCV_CACHE", str(tmp_path / "cache"))
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "yolo11n.pt").write_bytes(b"not the pinned weights")
    with HubServer(tmp_path / "srv") as server:
        entry = WeightsEntry("yolo11n.pt", f"{server.url}yolo11n.pt", "0" * 64, "AGPL-3.0")
        monkeypatch.setattr(train_mod, "WEIGHTS", {"yolo11n.pt": entry})
        choice = resolve_model("yolo11n.pt")
    assert choice.model == "yolo11n.yaml" and "did not match its pinned sha256" in choice.message
    assert not list((tmp_path / "cache").rglob("*yolo11n.pt")), "the file was not kept"


def test_unknown_pickles_are_refused(tmp_path):
    stranger = tmp_path / "downloads" / "cool_model.pt"
    stranger.parent.mkdir()
    stranger.write_bytes(b"not looked at")
    with pytest.raises(UntrustedWeights, match=r"was not loaded.*Python pickle"):
        resolve_model(str(stranger), trusted_dirs=(tmp_path / "models",))
    assert resolve_model(stranger, trusted=True).model == str(stranger.resolve())
    ours = tmp_path / "models" / "best.pt"
    ours.parent.mkdir()
    ours.write_bytes(b"x")
    assert resolve_model(str(ours), trusted_dirs=(tmp_path / "models",)).model == str(
        ours.resolve()
    )
    with pytest.raises(ValueError, match=r"\.yaml"):
        resolve_model("model.onnx")


def test_training_args_come_from_the_profile():
    args = training_args(PROFILES["smoke"], epochs=5, lr0=None)
    assert args["epochs"] == 5 and args["imgsz"] == PROFILES["smoke"].imgsz
    assert args["lr0"] == PROFILES["smoke"].lr0, "None overrides nothing"
    assert args["device"] == "cpu" and args["cache"] is True
    assert args["nbs"] == PROFILES["smoke"].batch, "one optimiser step per batch"
    assert training_args(PROFILES["smoke"], batch=4)["nbs"] == 4
    assert training_args(PROFILES["smoke"], batch=4, nbs=64)["nbs"] == 64
    workshop = training_args(PROFILES["workshop"])
    assert workshop["val"] is True and "device" not in workshop and "cache" not in workshop
    assert "nbs" not in workshop


def test_model_to_train_follows_notebook_04(tmp_path):
    smoke, workshop = PROFILES["smoke"], PROFILES["workshop"]
    assert model_to_train(workshop, tmp_path).model == workshop.model
    assert model_to_train(workshop, tmp_path, "yolo11s.yaml").model == "yolo11s.yaml"
    (tmp_path / "model_selection.json").write_text(json.dumps({"model": "yolo11s"}))
    choice = model_to_train(workshop, tmp_path)
    assert choice.model == "yolo11s.pt" and "notebook 04" in choice.message
    choice = model_to_train(smoke, tmp_path)
    assert choice.model == smoke.model and "smoke profile" in choice.message
    assert "yolo11s" in choice.message
    (tmp_path / "model_selection.json").write_text(json.dumps({"model": "yolo26n"}))
    choice = model_to_train(workshop, tmp_path)  # measured in 04; no pinned pretrained weights
    assert choice.model == workshop.model and "pins no checksum" in choice.message
    assert "yolo26n.yaml" in choice.message
    (tmp_path / "model_selection.json").write_text(json.dumps({"model": "yolo11n-seg"}))
    assert model_to_train(workshop, tmp_path).model == workshop.model
    (tmp_path / "model_selection.json").write_text("{broken")
    assert model_to_train(workshop, tmp_path).model == workshop.model


def test_smoke_profile_settings_reach_ultralytics():
    smoke = PROFILES["smoke"]
    args = training_args(smoke)
    for key in ("epochs", "imgsz", "batch", "patience", "optimizer", "lr0", "mosaic"):
        assert args[key] == getattr(smoke, key), key
    assert args["val"] is smoke.validate_each_epoch is False and args["warmup_epochs"] == 1.0
    assert training_args(smoke, epochs=3, lr0=None)["epochs"] == 3, "None overrides nothing"


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    made = generate_dataset(root / "data", images=24, cameras=3, sequences=0, workers=1)
    return made.data_yaml


def test_missing_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match="notebook 02"):
        train(tmp_path / "none.yaml", profile=TINY, out_dir=tmp_path)
    (tmp_path / "d.yaml").write_text("train: x\n")
    with pytest.raises(FileNotFoundError, match="Nothing to resume"):
        train(tmp_path / "d.yaml", profile=TINY, out_dir=tmp_path, resume=True)
    damaged = tmp_path / "train" / "weights" / "last.pt"
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"PK\x03\x04 cut short by a kill")
    with pytest.raises(FileNotFoundError, match="incomplete or damaged"):
        train(tmp_path / "d.yaml", profile=TINY, out_dir=tmp_path, resume=True)


def _frame(epochs: int) -> pd.DataFrame:
    rows = []
    for epoch in range(1, epochs + 1):
        validated = epoch == epochs
        rows.append(
            {
                "epoch": epoch,
                "train/box_loss": 3.0 / epoch,
                "train/cls_loss": 2.0 / epoch,
                "metrics/mAP50(B)": 0.6 if validated else 0.0,
                "metrics/mAP50-95(B)": 0.3 if validated else 0.0,
            }
        )
    return pd.DataFrame(rows)


def test_plot_training_skips_unvalidated_epochs(tmp_path):
    frame = _frame(4)
    csv = tmp_path / "results.csv"
    frame.rename(columns=lambda c: f"  {c}").to_csv(csv, index=False)  # Ultralytics pads names
    fig = plot_training(csv)
    assert isinstance(fig, Figure)
    losses, quality = fig.axes
    assert len(losses.lines) == 2 and list(losses.lines[0].get_xdata()) == [1, 2, 3, 4]
    assert [list(line.get_xdata()) for line in quality.lines] == [[4], [4]]
    assert isinstance(plot_training(frame), Figure)


def test_live_curves_redraw_in_place(monkeypatch):
    import IPython.display

    shown = []

    class Handle:
        def update(self, obj):
            shown.append(("update", obj))

    def fake_display(obj, display_id=False):
        shown.append(("display", obj))
        return Handle()

    monkeypatch.setattr(IPython.display, "display", fake_display)
    curves = LiveCurves(show=True)
    for row in _frame(3).to_dict("records"):
        epoch = int(row.pop("epoch"))
        assert curves(epoch, row) is curves.figure
    assert [kind for kind, _ in shown] == ["display", "update", "update"]
    assert all(obj is curves.figure for _, obj in shown)
    assert list(curves.frame()["epoch"]) == [1, 2, 3]
    curves.update(3, {"train/box_loss": 0.5})  # a resumed epoch replaces the old row
    assert list(curves.frame()["epoch"]) == [1, 2, 3] and len(curves.figure.axes[0].lines) == 2
    quiet = LiveCurves(show=False)
    quiet.update(1, {"train/box_loss": 1.0})
    assert len(shown) == 4 and isinstance(quiet.figure, Figure)


@pytest.mark.slow
def test_a_short_run_writes_weights_and_reports_epochs(tiny_data, tmp_path):
    import torch

    seen, threads = [], []
    before = torch.get_num_threads()

    def on_epoch(epoch, metrics):
        seen.append((epoch, metrics))
        threads.append(torch.get_num_threads())

    result = train(
        tiny_data,
        profile=TINY,
        out_dir=tmp_path / "models",
        workers=0,
        threads=2,
        on_epoch=on_epoch,
    )
    assert threads == [2, 2] and torch.get_num_threads() == before, "threads set, then restored"
    assert [e for e, _ in seen] == [1, 2]
    assert "train/box_loss" in seen[0][1] and "metrics/mAP50(B)" not in seen[0][1]
    assert "metrics/mAP50(B)" in seen[1][1], "the last epoch is validated"
    assert result.best == tmp_path / "models" / "best.pt" and result.best.is_file()
    assert (result.run_dir / "weights" / "best.pt").is_file() and result.last.is_file()
    assert 0 <= result.map50 <= 1 and result.images_per_second > 0 and result.epochs == 2
    assert list(result.history["epoch"]) == [1, 2]
    assert result.settings["imgsz"] == 64 and "from scratch" in result.model_note
    assert isinstance(plot_training(result.run_dir / "results.csv"), Figure)
    assert list((result.run_dir / "tensorboard").glob("events.out.tfevents*")), "TensorBoard logs"
    logged = read_tensorboard(result.run_dir / "tensorboard")  # what TensorBoard would show
    assert list(logged["epoch"]) == [1, 2]
    for column in ("train/box_loss", "metrics/mAP50(B)"):
        assert logged[column].tolist() == pytest.approx(
            [m.get(column, float("nan")) for _, m in seen], nan_ok=True, rel=1e-6
        ), column
    assert isinstance(plot_training(logged), Figure)
    with pytest.raises(FileNotFoundError, match="no TensorBoard event files"):
        read_tensorboard(tmp_path)


@pytest.mark.slow
def test_resume_continues_after_a_kill(tiny_data, tmp_path):
    import torch

    out = tmp_path / "models"
    marker = tmp_path / "epoch3"
    # The child pauses after epoch 3 (its checkpoint is on disk by then), so the kill lands
    # mid-run however fast the machine is.
    code = (
        "import pathlib, time\n"
        "from tcv_helpers.model.train import train\n"
        "from tcv_helpers.config import PROFILES, with_overrides\n"
        "def on_epoch(epoch, metrics):\n"
        "    if epoch == 3:\n"
        f"        pathlib.Path({str(marker)!r}).touch(); time.sleep(600)\n"
        f"train({str(tiny_data)!r}, profile=with_overrides(PROFILES['smoke'], imgsz=64, batch=8),"
        f" out_dir={str(out)!r}, epochs=8, workers=0, on_epoch=on_epoch)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    last = out / "train" / "weights" / "last.pt"
    deadline = time.monotonic() + 240
    while not marker.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert last.is_file(), "training never wrote a checkpoint"
    done = torch.load(last, weights_only=False)["epoch"] + 1  # epochs completed
    assert done == 3
    seen = []
    result = train(
        tiny_data,
        profile=TINY,
        out_dir=out,
        resume=True,
        on_epoch=lambda epoch, metrics: seen.append(epoch),
    )
    assert seen == list(range(done + 1, 9)), "resume continues after the checkpoint"
    epochs = list(result.history["epoch"])
    assert epochs[-1] == 8 and epochs == sorted(set(epochs)), "results.csv continues"
    assert result.epochs == 8 and result.best.is_file() and "Resuming" in result.model_note


@pytest.mark.slow
def test_fine_tune_compares_with_scratch(tiny_data, tmp_path):
    target = generate_dataset(
        tmp_path / "target", images=18, cameras=3, seed=7, sequences=0, workers=1
    ).data_yaml
    one = with_overrides(TINY, epochs=1)
    models = tmp_path / "models"
    source = train(tiny_data, profile=one, out_dir=models, name="pretrain", workers=0)
    assert "from scratch" in source.model_note
    result = fine_tune(source, target, profile=one, out_dir=models, workers=0)
    assert "trained by this course" in result.fine_tuned.model_note
    assert "from scratch" in result.scratch.model_note
    assert result.scratch.settings["epochs"] == result.fine_tuned.settings["epochs"] == 1
    # Fine-tuning validates every epoch, so early stopping can act (issue 16); the run from
    # scratch trains for the epochs fine-tuning used, validated as the profile says.
    assert result.fine_tuned.settings["val"] is True
    assert result.fine_tuned.settings["patience"] == FINE_TUNE_PATIENCE
    assert result.fine_tuned.best_epoch == 1 and not result.fine_tuned.stopped_early
    assert result.scratch.settings["val"] is one.validate_each_epoch
    assert result.scratch.best_epoch is None, "validated only at the end: no best epoch"
    # A trained model is fine-tuned gently (no warm-up, a tenth of the rate): the profile's
    # settings undo what it learned. From scratch keeps the profile's.
    assert result.fine_tuned.settings["warmup_epochs"] == 0.0
    assert result.fine_tuned.settings["lr0"] == pytest.approx(one.lr0 * FINE_TUNE_LR_SCALE)
    assert result.scratch.settings["lr0"] == one.lr0
    assert result.scratch.settings["warmup_epochs"] == one.warmup_epochs
    assert result.fine_tuned.best == models / "finetuned.pt"
    assert models.joinpath("best.pt").read_bytes() == source.best.read_bytes(), "left alone"
    table = result.table()
    assert list(table.index) == [
        "pretrain (source)",
        "before fine-tuning (target)",
        "fine-tuned (target)",
        "from scratch (target)",
    ]
    assert list(table["epochs"]) == [1, 0, 1, 1]
    assert 0 <= result.before["map50"] <= 1 and "map50_95" in result.before
    figure = result.plot()
    fitness = figure.axes[2]
    assert fitness.get_title().startswith("validation mAP50-95")
    lines = {line.get_label(): line for line in fitness.lines}
    assert list(lines) == ["fine-tuned", "_child1", "from scratch", "before"]
    assert len(lines["from scratch"].get_xdata()) == 1, "validated once: one point, not zeros"
    assert list(lines["_child1"].get_xdata()) == [1], "the best epoch is ringed"
    only_path = fine_tune(source.best, target, profile=one, out_dir=models, workers=0)
    assert only_path.pretrained is None and len(only_path.table()) == 3
    assert only_path.before == result.before, "the same weights score the same before"


def _run(epochs: int, asked: int, best: int | None, patience: int = 2) -> TrainResult:
    path = Path("runs/x/weights/best.pt")
    return TrainResult(
        run_dir=path.parent.parent, best=path, last=path, history=_frame(epochs), map50=0.5,
        map50_95=0.3, seconds=1.0, images_per_second=1.0, epochs=epochs,
        settings={"patience": patience}, epochs_asked=asked, best_epoch=best,
    )  # fmt: skip


def test_stopping_note_says_where_early_stopping_acted():
    stopped = _run(6, 10, 4)
    assert stopped.stopped_early
    assert stopped.stopping_note() == (
        "Early stopping ended the run after epoch 6 of 10: validation mAP50-95 had not "
        "improved for 2 epochs since epoch 4, whose weights are best.pt."
    )
    full = _run(10, 10, 9)
    assert not full.stopped_early and full.stopping_note().startswith("All 10 epochs ran")
    unvalidated = _run(18, 18, None)
    assert not unvalidated.stopped_early and "nothing to act on" in unvalidated.stopping_note()
    assert not _run(3, 10, None).stopped_early, "no validated epochs: not early stopping"


@pytest.mark.slow
def test_ensure_trained_trains_once(tiny_data, tmp_path):
    models = tmp_path / "models"
    first = ensure_trained(
        tiny_data, profile=TINY, out_dir=models, dataset="synthetic", fetch=False, workers=0
    )
    weights = first.weights
    assert weights == models / "best.pt" and weights.is_file() and "trained now" in first.message
    assert first.trained_now and first.source == "trained" and "is off (TRAIN)" in first.message
    meta = read_model_meta(weights)
    assert meta["profile"] == "smoke" and meta["dataset"] == "synthetic" and meta["seed"] == 0
    assert meta["imgsz"] == TINY.imgsz and meta["names"] == list(PROJECT_CLASSES)
    assert 0 <= meta["map50"] <= 1
    stamp = weights.stat().st_mtime_ns
    again = ensure_trained(tiny_data, profile=TINY, out_dir=models, dataset="synthetic")
    assert again.weights == weights and weights.stat().st_mtime_ns == stamp
    assert "earlier" in again.message and not again.trained_now and again.source == "workspace"


# --------------------------------------------------------------------------------------------
# The sidecar of published weights, and ensure_trained's three sources: workspace, hub, training


def test_model_meta_sidecar(tmp_path):
    weights = tmp_path / "best.pt"
    assert meta_path(weights) == tmp_path / "best.meta.json"
    assert read_model_meta(weights) == {}, "absent: empty"
    written = write_model_meta(weights, profile="smoke", dataset=None, map50=0.5)
    assert written == meta_path(weights)
    assert read_model_meta(weights) == {"profile": "smoke", "dataset": None, "map50": 0.5}
    for bad in ("{broken", "[1, 2]", ""):
        meta_path(weights).write_text(bad)
        assert read_model_meta(weights) == {}, bad


def _never_train(*args, **kwargs):
    raise AssertionError("ensure_trained trained although it should not have")


def _fake_train(calls):
    def fake(data_yaml, **kwargs):
        calls.append(kwargs)
        best = kwargs["out_dir"] / kwargs["publish_as"]
        best.write_bytes(b"weights trained now")
        return SimpleNamespace(best=best, epochs=2, seconds=1.0, map50=0.25)

    return fake


def test_ensure_trained_uses_the_workspace_model_of_the_same_dataset(tmp_path, monkeypatch):
    monkeypatch.setattr(train_mod, "train", _never_train)
    models = tmp_path / "models"
    models.mkdir()
    (models / "best.pt").write_bytes(b"ours")
    legacy = ensure_trained(tmp_path / "d.yaml", profile=TINY, out_dir=models, dataset="synthetic")
    assert legacy.source == "workspace" and not legacy.trained_now, "no sidecar: used"
    write_model_meta(models / "best.pt", dataset="manaus-traffic")
    same = ensure_trained(
        tmp_path / "d.yaml", profile=TINY, out_dir=models, dataset="manaus-traffic"
    )
    assert same.weights == models / "best.pt" and same.source == "workspace"
    assert "trained earlier" in same.message


@pytest.fixture
def checkpoint_hub(tiny_model, tmp_path, monkeypatch):
    """A release holding the tiny model as the course checkpoint for smoke on synthetic."""
    from hub_server import HubServer

    workspace = tmp_path / "release-ws"
    (workspace / "models").mkdir(parents=True)
    shutil.copyfile(tiny_model.weights, workspace / "models" / "best.pt")
    write_model_meta(
        workspace / "models" / "best.pt", profile="smoke", dataset="synthetic", imgsz=64,
        names=list(PROJECT_CLASSES), map50=0.4242, seed=0,
    )  # fmt: skip
    build_release(tmp_path / "release", workspaces=[workspace])
    monkeypatch.setenv("TCV_ASSETS_REGISTRY", str(tmp_path / "release" / "assets.json"))
    monkeypatch.setenv("TCV_CACHE", str(tmp_path / "cache"))
    with HubServer(tmp_path / "release") as server:
        monkeypatch.setenv("TCV_ASSETS_URL", server.url)
        yield server, tiny_model.weights


def test_ensure_trained_fetches_the_course_checkpoint(checkpoint_hub, tmp_path, monkeypatch):
    server, published = checkpoint_hub
    monkeypatch.setattr(train_mod, "train", _never_train)
    models = tmp_path / "models"
    got = ensure_trained(tmp_path / "d.yaml", profile=TINY, out_dir=models, dataset="synthetic")
    assert got.source == "hub" and not got.trained_now and got.weights == models / "best.pt"
    assert got.message == (
        "Fetched the course's trained checkpoint for the smoke profile on synthetic (mAP50 0.42) "
        f"from the asset hub instead of training: {models / 'best.pt'}."
    )
    assert got.weights.read_bytes() == published.read_bytes()
    assert server.requests == ["/checkpoint-smoke-synthetic.pt"]
    meta = read_model_meta(got.weights)
    assert (meta["profile"], meta["dataset"], meta["map50"]) == ("smoke", "synthetic", 0.4242)
    assert resolve_model(got.weights, trusted_dirs=(models,)).model == str(got.weights.resolve())
    again = ensure_trained(tmp_path / "d.yaml", profile=TINY, out_dir=models, dataset="synthetic")
    assert again.source == "workspace" and len(server.requests) == 1


def test_a_model_of_another_dataset_is_kept_aside(checkpoint_hub, tmp_path, monkeypatch):
    monkeypatch.setattr(train_mod, "train", _never_train)
    models = tmp_path / "models"
    models.mkdir()
    (models / "best.pt").write_bytes(b"trained on the real set")
    write_model_meta(models / "best.pt", dataset="manaus-traffic", map50=0.3)
    got = ensure_trained(tmp_path / "d.yaml", profile=TINY, out_dir=models, dataset="synthetic")
    assert got.source == "hub" and got.message.startswith(
        "The workspace's model was trained on manaus-traffic, so it was kept as "
        "best-manaus-traffic.pt."
    )
    assert (models / "best-manaus-traffic.pt").read_bytes() == b"trained on the real set"
    assert read_model_meta(models / "best-manaus-traffic.pt")["dataset"] == "manaus-traffic"
    assert read_model_meta(models / "best.pt")["dataset"] == "synthetic"


@pytest.mark.parametrize(
    ("dataset", "fetch", "why"),
    [
        ("synthetic", True, "The asset hub lists no course checkpoint for the smoke profile on "
         "synthetic (checkpoint-smoke-synthetic)."),
        ("synthetic", False, "Fetching the course's checkpoint is off (TRAIN)."),
        (None, True, "The course publishes no checkpoint for this dataset."),
        ("cams-v3", True, "The course publishes no checkpoint for cams-v3."),
    ],
)  # fmt: skip
def test_ensure_trained_trains_when_there_is_no_checkpoint(
    tmp_path, monkeypatch, dataset, fetch, why
):
    monkeypatch.delenv("TCV_ASSETS_REGISTRY", raising=False)
    calls = []
    monkeypatch.setattr(train_mod, "train", _fake_train(calls))
    models = tmp_path / "models"
    models.mkdir()
    got = ensure_trained(
        tmp_path / "d.yaml", profile=TINY, out_dir=models, dataset=dataset, fetch=fetch, workers=0
    )
    assert got.source == "trained" and got.trained_now and got.weights == models / "best.pt"
    assert got.message.startswith(why + " No trained model in the workspace, so one was trained")
    assert calls == [
        {"profile": TINY, "out_dir": models, "publish_as": "best.pt", "dataset": dataset,
         "workers": 0}
    ]  # fmt: skip


def test_ensure_trained_says_why_the_hub_failed(checkpoint_hub, tmp_path, monkeypatch):
    from hub_server import closed_port_url

    url = closed_port_url()
    monkeypatch.setenv("TCV_ASSETS_URL", url)
    calls = []
    monkeypatch.setattr(train_mod, "train", _fake_train(calls))
    got = ensure_trained(tmp_path / "d.yaml", profile=TINY, out_dir=tmp_path, dataset="synthetic")
    why, rest = got.message.split(". ", 1)
    assert url.rstrip("/") in why and "checkpoint-smoke-synthetic" in why
    assert rest.startswith("No trained model in the workspace, so one was trained now")
    assert got.source == "trained" and len(calls) == 1
