"""Training: what is loaded and why, the profile's settings, a real run, and resume after a kill."""

import os
import signal
import subprocess
import sys
import time

import pytest
from matplotlib.figure import Figure

from tcv_helpers import train as train_mod
from tcv_helpers.config import PROFILES, with_overrides
from tcv_helpers.synth import generate_dataset
from tcv_helpers.train import (
    UntrustedWeights,
    WeightsEntry,
    plot_training,
    resolve_model,
    train,
    training_args,
)

TINY = with_overrides(PROFILES["smoke"], imgsz=64, epochs=2, batch=8)


def test_architecture_trains_from_scratch():
    source, note = resolve_model("yolo11n.yaml")
    assert source == "yolo11n.yaml" and "from scratch" in note


def test_unregistered_pretrained_weights_fall_back_to_the_yaml(monkeypatch):
    monkeypatch.setattr(train_mod, "WEIGHTS", {})
    source, note = resolve_model("yolo11s.pt")
    assert source == "yolo11s.yaml" and "No verified checksum" in note


def test_registered_weights_offline_fall_back(monkeypatch, tmp_path):
    monkeypatch.setenv("TCV_CACHE", str(tmp_path))
    entry = WeightsEntry("yolo11n.pt", "http://127.0.0.1:9/yolo11n.pt", "0" * 64, "AGPL-3.0")
    monkeypatch.setattr(train_mod, "WEIGHTS", {"yolo11n.pt": entry})
    source, note = resolve_model("yolo11n.pt")
    assert source == "yolo11n.yaml" and "Could not download" in note and "from scratch" in note
    source, note = resolve_model("yolo11n.pt", allow_download=False)
    assert source == "yolo11n.yaml" and "Downloads are off" in note


def test_unknown_pickles_are_refused(tmp_path):
    stranger = tmp_path / "downloads" / "cool_model.pt"
    stranger.parent.mkdir()
    stranger.write_bytes(b"not looked at")
    with pytest.raises(UntrustedWeights, match="pickle"):
        resolve_model(str(stranger), trusted_dirs=(tmp_path / "models",))
    ours = tmp_path / "models" / "best.pt"
    ours.parent.mkdir()
    ours.write_bytes(b"x")
    assert resolve_model(str(ours), trusted_dirs=(tmp_path / "models",))[0] == str(ours.resolve())
    with pytest.raises(ValueError, match=r"\.yaml"):
        resolve_model("model.onnx")


def test_training_args_come_from_the_profile():
    args = training_args(PROFILES["smoke"], epochs=5, lr0=None)
    assert args["epochs"] == 5 and args["imgsz"] == PROFILES["smoke"].imgsz
    assert args["optimizer"] == "AdamW" and args["mosaic"] == 0 and args["val"] is False
    assert args["lr0"] == PROFILES["smoke"].lr0, "None overrides nothing"
    assert training_args(PROFILES["workshop"])["val"] is True


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return generate_dataset(root / "data", images=24, cameras=3, sequences=0, workers=1).data_yaml


def test_missing_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match="notebook 02"):
        train(tmp_path / "none.yaml", profile=TINY, out_dir=tmp_path)
    (tmp_path / "d.yaml").write_text("train: x\n")
    with pytest.raises(FileNotFoundError, match="Nothing to resume"):
        train(tmp_path / "d.yaml", profile=TINY, out_dir=tmp_path, resume=True)


@pytest.mark.slow
def test_a_short_run_writes_weights_and_reports_epochs(tiny_data, tmp_path):
    seen = []
    result = train(
        tiny_data,
        profile=TINY,
        out_dir=tmp_path / "models",
        workers=0,
        on_epoch=lambda epoch, metrics: seen.append((epoch, sorted(metrics))),
    )
    assert [e for e, _ in seen] == [1, 2]
    assert any("train/box_loss" in keys for _, keys in seen)
    assert result.best == tmp_path / "models" / "best.pt" and result.best.is_file()
    assert result.last.is_file() and 0 <= result.map50 <= 1 and result.images_per_second > 0
    assert list(result.results()["epoch"]) == [1, 2]
    assert isinstance(plot_training(result.run_dir / "results.csv"), Figure)


@pytest.mark.slow
def test_resume_continues_after_a_kill(tiny_data, tmp_path):
    import torch

    out = tmp_path / "models"
    code = (
        "from tcv_helpers.train import train; from tcv_helpers.config import PROFILES, with_overrides;"
        f"train({str(tiny_data)!r}, profile=with_overrides(PROFILES['smoke'], imgsz=64, batch=8),"
        f" out_dir={str(out)!r}, epochs=8, workers=0)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    last = out / "train" / "weights" / "last.pt"
    deadline = time.monotonic() + 240
    while not last.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # let the checkpoint be written whole
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert last.is_file(), "training never wrote a checkpoint"
    done = torch.load(last, weights_only=False)["epoch"]
    assert 0 <= done < 7, "the run finished before it could be interrupted"
    seen = []
    result = train(
        tiny_data,
        profile=TINY,
        out_dir=out,
        resume=True,
        on_epoch=lambda epoch, metrics: seen.append(epoch),
    )
    assert seen[0] == done + 2, "resume must continue after the checkpoint, not start again"
    assert seen[-1] == 8 and result.best.is_file()
