"""One trust check before any weights pickle is loaded (tcv_helpers.trust).

The stranger in these tests is a real PyTorch checkpoint whose pickle creates a folder when it is
loaded: a test that finds the folder has caught a loader running the file's code.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tcv_helpers import trust
from tcv_helpers.trust import UntrustedWeights, check_weights, vouch_for


class _Payload:
    """Pickled as a call to ``os.mkdir(marker)``: what a hostile checkpoint would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def hostile_checkpoint(path: Path) -> Path:
    """A ``.pt`` that makes the folder ``<path>.ran`` when unpickled; returns that folder."""
    marker = path.with_name(path.name + ".ran")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": _Payload(marker), "epoch": 3}, path)
    return marker


@pytest.fixture
def stranger(tmp_path):
    """A hostile ``.pt`` in a downloads folder, and the folder its code would make."""
    path = tmp_path / "downloads" / "cool_model.pt"
    return path, hostile_checkpoint(path)


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """A course cache (and so a ledger) of this test's own, and no trusted folders."""
    monkeypatch.setenv("TCV_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(trust, "_TRUSTED_FOLDERS", set())
    return tmp_path / "cache"


def test_the_payload_really_runs_when_loaded(tmp_path):
    """The stranger is a working exploit, so the tests below would see a loader run it."""
    path = tmp_path / "x.pt"
    marker = hostile_checkpoint(path)
    torch.load(path, weights_only=False)
    assert marker.is_dir()


def test_every_loader_refuses_an_unknown_pickle_before_opening_it(stranger, tiny_model, tmp_path):
    from tcv_helpers.data.prep import propose_by_model
    from tcv_helpers.deploy.optimize import benchmark, export_onnx, prune_weights
    from tcv_helpers.model.predict import load_yolo, predict_yolo, validate_yolo
    from tcv_helpers.model.train import resolve_model, train

    path, marker = stranger
    data_yaml = tiny_model.data.data_yaml
    frame = next(Path(tiny_model.data.root).rglob("*.jpg"))
    loaders = {
        "load_yolo": lambda: load_yolo(path),
        "predict_yolo": lambda: predict_yolo(path, [frame], imgsz=64),
        "validate_yolo": lambda: validate_yolo(path, data_yaml, imgsz=64),
        "propose_by_model": lambda: propose_by_model(path, [frame], imgsz=64),
        "export_onnx": lambda: export_onnx(path, imgsz=64, out=tmp_path / "x.onnx"),
        "prune_weights": lambda: prune_weights(path, amount=0.5, out=tmp_path / "p.pt"),
        "benchmark": lambda: benchmark(path, data_yaml, out_dir=tmp_path / "bench", repeats=1),
        "resolve_model": lambda: resolve_model(path),
        "train": lambda: train(
            data_yaml, profile=tiny_model.profile, out_dir=tmp_path / "m", model=path
        ),
    }
    for name, load in loaders.items():
        with pytest.raises(UntrustedWeights, match=r"was not loaded.*pickle"):
            load()
        assert not marker.exists(), f"{name} ran the file's code"
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "p.pt").exists()


def test_the_caller_can_vouch_for_a_file(stranger):
    path, marker = stranger
    assert check_weights(path, trusted=True) == path
    assert check_weights(path, trusted_dirs=(path.parent,)) == path
    assert not marker.exists(), "checking never opens the file"


def test_what_the_course_wrote_is_trusted_anywhere_and_a_changed_byte_is_not(
    tmp_path, own_cache, tiny_model
):
    made = tmp_path / "runs" / "best.pt"
    made.parent.mkdir()
    shutil.copy(tiny_model.weights, made)
    with pytest.raises(UntrustedWeights):
        check_weights(made)
    vouch_for(made, made_by="train")
    copy = tmp_path / "elsewhere" / "model.pt"
    copy.parent.mkdir()
    shutil.copy(made, copy)
    assert check_weights(copy) == copy, "the same bytes are the same file"
    changed = tmp_path / "elsewhere" / "changed.pt"
    changed.write_bytes(made.read_bytes() + b"\0")
    with pytest.raises(UntrustedWeights):
        check_weights(changed)
    ledger = json.loads((own_cache / trust.LEDGER_FILE).read_text())
    assert ledger["files"][str(made.resolve())]["made_by"] == "train"
    made.unlink()
    vouch_for(copy, made_by="prune")
    ledger = json.loads((own_cache / trust.LEDGER_FILE).read_text())
    assert list(ledger["files"]) == [str(copy.resolve())], "entries of deleted files are dropped"


def test_a_damaged_ledger_trusts_nothing_and_is_rewritten(tmp_path, own_cache, stranger):
    path, _ = stranger
    own_cache.mkdir(parents=True)
    (own_cache / trust.LEDGER_FILE).write_text("{not json")
    with pytest.raises(UntrustedWeights):
        check_weights(path)
    mine = tmp_path / "mine.pt"
    torch.save({"epoch": 1}, mine)
    vouch_for(mine, made_by="test")
    assert check_weights(mine) == mine


def test_registered_weights_are_trusted_by_their_checksum(tmp_path, own_cache, monkeypatch):
    from tcv_helpers.data.hub import sha256_of
    from tcv_helpers.model import train as train_mod

    pretrained = tmp_path / "yolo11n.pt"
    torch.save({"epoch": 0}, pretrained)
    with pytest.raises(UntrustedWeights):
        check_weights(pretrained)
    entry = train_mod.WeightsEntry("yolo11n.pt", "http://127.0.0.1:9/x", sha256_of(pretrained), "")
    monkeypatch.setattr(train_mod, "WEIGHTS", {"yolo11n.pt": entry})
    assert check_weights(pretrained) == pretrained


def test_training_records_every_checkpoint_it_saves(tiny_model):
    ledger = json.loads(trust.ledger_path().read_text())
    hashes = {entry["sha256"] for entry in ledger["files"].values()}
    from tcv_helpers.data.hub import sha256_of

    run = tiny_model.weights.parent / "train" / "weights"
    for file in (tiny_model.weights, run / "last.pt", run / "best.pt"):
        assert sha256_of(file) in hashes, f"{file} is not in the ledger"


def test_a_pruned_file_is_trusted_and_loads(tiny_model, tmp_path):
    from tcv_helpers.deploy.optimize import prune_weights
    from tcv_helpers.model.predict import load_yolo

    pruned = prune_weights(tiny_model.weights, amount=0.3, out=tmp_path / "elsewhere" / "p.pt")
    assert load_yolo(pruned.weights) is not None


def test_load_config_trusts_its_workspace_models(tmp_path, own_cache):
    from tcv_helpers.config import load_config

    inside = tmp_path / "ws" / "models" / "best.pt"
    marker = hostile_checkpoint(inside)
    with pytest.raises(UntrustedWeights):
        check_weights(inside)
    cfg = load_config("smoke", tmp_path / "ws")
    assert cfg.workspace.models.resolve() in trust.trusted_folders()
    assert check_weights(inside) == inside
    assert not marker.exists()


def test_exports_are_not_pickles_and_are_not_checked(tmp_path, own_cache):
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"whatever")
    assert check_weights(onnx_file) == onnx_file
    folder = tmp_path / "m_openvino_model"
    folder.mkdir()
    assert check_weights(folder) == folder
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_weights(tmp_path / "missing.pt")


def test_tcv_bench_refuses_a_stranger_from_the_command_line(stranger, tmp_path):
    path, marker = stranger
    data = tmp_path / "data.yaml"
    data.write_text("path: .\ntrain: images/train\nval: images/val\nnames: [car]\n")
    tcv = Path(sys.executable).with_name("tcv")
    done = subprocess.run(
        [str(tcv), "bench", str(path), "--data", str(data), "--out", str(tmp_path / "v")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "was not loaded" in done.stderr and "--trust" in done.stderr
    assert "Traceback" not in done.stderr
    assert not marker.exists(), "tcv bench ran the file's code"
    assert not (tmp_path / "v").exists()
