from pathlib import Path

import pytest

from tcv_helpers import config
from tcv_helpers.config import PROFILES, load_config, resolve_profile, with_overrides


def test_three_profiles_grow_from_smoke_to_full():
    smoke, workshop, full = PROFILES["smoke"], PROFILES["workshop"], PROFILES["full"]
    assert smoke.device == "cpu"
    assert smoke.imgsz < workshop.imgsz <= full.imgsz
    assert smoke.epochs < workshop.epochs < full.epochs
    assert smoke.synth_images < workshop.synth_images < full.synth_images
    assert smoke.course_minutes <= 10


@pytest.mark.parametrize("name", ["smoke", "WORKSHOP", " full "])
def test_named_profile(name, monkeypatch):
    monkeypatch.delenv("TCV_PROFILE", raising=False)
    assert resolve_profile(name).name == name.strip().lower()


@pytest.mark.parametrize(
    ("env", "gpu", "expected"),
    [
        ("workshop", False, "workshop"),
        ("", False, "smoke"),
        ("", True, "workshop"),
    ],
)
def test_auto_profile(monkeypatch, env, gpu, expected):
    monkeypatch.setenv("TCV_PROFILE", env)
    monkeypatch.setattr(config, "gpu_available", lambda: gpu)
    assert resolve_profile("auto").name == expected


def test_unknown_profile_names_its_source(monkeypatch):
    monkeypatch.setenv("TCV_PROFILE", "turbo")
    with pytest.raises(ValueError, match="TCV_PROFILE"):
        resolve_profile("auto")
    with pytest.raises(ValueError, match=r"'big'.*smoke, workshop, full, auto"):
        resolve_profile("big")


def test_load_config_creates_the_workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("TCV_PROFILE", "smoke")
    monkeypatch.delenv("TCV_SAMPLE_DATA", raising=False)
    cfg = load_config("auto", tmp_path / "ws", EPOCHS=2)
    assert cfg.profile.name == "smoke"
    for folder in (cfg.workspace.data, cfg.workspace.models, cfg.workspace.reports):
        assert folder.is_dir() and folder.parent == tmp_path / "ws"
    assert cfg.workspace.project_file == tmp_path / "ws" / "project.yaml"
    assert cfg.params == {"EPOCHS": 2}
    assert "profile=smoke" in cfg.describe()


def test_load_config_refuses_a_file_as_workdir(tmp_path):
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    with pytest.raises(ValueError, match="is a file"):
        load_config("smoke", file)
    assert file.read_text() == "mine"


def test_with_overrides():
    changed = with_overrides(PROFILES["smoke"], epochs=1)
    assert changed.epochs == 1 and PROFILES["smoke"].epochs != 1
    with pytest.raises(ValueError, match="epoch"):
        with_overrides(PROFILES["smoke"], epoch=1)


def test_import_has_no_side_effects(tmp_path):
    import subprocess
    import sys

    code = "import tcv_helpers, tcv_helpers.batch.runner, tcv_helpers.doctor, tcv_helpers.viz, tcv_helpers.cli"
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True)
    assert list(Path(tmp_path).iterdir()) == []


def test_real_data_settings_are_data_of_the_profile():
    smoke = PROFILES["smoke"]
    assert smoke.real_data == {"imgsz": 192}
    real = smoke.for_real_data()
    assert (real.imgsz, real.epochs, real.patience) == (192, smoke.epochs, smoke.patience)
    assert real.name == "smoke" and real.batch == smoke.batch, "the rest is the profile's"
    assert real.for_real_data() == real, "applying twice changes nothing more"
    assert PROFILES["workshop"].for_real_data() is PROFILES["workshop"], "no overrides: itself"
    assert with_overrides(smoke, real_data={}).for_real_data().imgsz == smoke.imgsz
    with pytest.raises(ValueError, match=r"'smoke': real_data names unknown field\(s\) imgsize"):
        with_overrides(smoke, real_data={"imgsize": 320})


def test_config_for_dataset_reads_only_the_real_flag(tmp_path, monkeypatch):
    from types import SimpleNamespace

    monkeypatch.delenv("TCV_SAMPLE_DATA", raising=False)
    cfg = load_config("smoke", tmp_path / "ws")
    real = cfg.for_dataset(SimpleNamespace(real=True, key=None, path=tmp_path / "cams-v3"))
    assert real.profile.imgsz == 192 and real.profile.epochs == PROFILES["smoke"].epochs
    assert cfg.profile.imgsz == PROFILES["smoke"].imgsz, "the original is unchanged"
    assert "imgsz=192, epochs=18" in real.describe() and "dataset=cams-v3 (real)" in real.describe()
    synthetic = cfg.for_dataset(SimpleNamespace(real=False, key="synthetic", path=tmp_path))
    assert (
        synthetic.profile == cfg.profile and "dataset=synthetic (synthetic)" in synthetic.describe()
    )
    assert real.workspace == cfg.workspace and real.params == cfg.params
