"""The release build (`tcv release`): reproducible files, registry entries, checkpoints, the tag."""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tcv_helpers
from tcv_helpers.cli import app
from tcv_helpers.data import hub, release

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
runner = CliRunner()
META = {
    "profile": "smoke",
    "dataset": "manaus-traffic",
    "imgsz": 256,
    "names": ["car", "truck", "bus", "motorcycle", "bicycle", "person"],
    "map50": 0.41,
    "seed": 0,
}


def _workspace(root: Path, meta: dict | None = META, weights: bytes = b"weights") -> Path:
    models = root / "models"
    models.mkdir(parents=True)
    (models / "best.pt").write_bytes(weights)
    if meta is not None:
        (models / "best.meta.json").write_text(json.dumps(meta))
    return root


def test_the_build_reproduces_the_packaged_registry(sample_data, tmp_path):
    result = release.build_release(tmp_path / "release", sample_data=sample_data)
    packaged = hub.read_registry(hub.packaged_registry())
    assert set(result.assets) == {"manaus-traffic", "highway-cctv-a", "highway-cctv-b"}
    for name, built in result.assets.items():
        shipped = packaged[name]
        for key in ("file", "sha256", "size", "kind", "license", "citation"):
            assert getattr(built, key) == getattr(shipped, key), (
                f"{name}.{key} differs from tcv_helpers/resources/assets.json: rebuild it with "
                "`tcv release --out release/ --sample-data ../shared/data --registry "
                "tcv_helpers/resources/assets.json`"
            )
    with zipfile.ZipFile(tmp_path / "release" / "manaus-traffic.zip") as zf:
        names = zf.namelist()
    assert "manaus-traffic/data.yaml" in names and all(
        n.startswith("manaus-traffic/") for n in names
    )
    assert result.assets["manaus-traffic"].meta["images"] == {"train": 204, "valid": 76, "test": 44}


def test_the_zip_is_the_same_bytes_whatever_the_order_and_times(tmp_path):
    def make(root: Path, order: list[str], mtime: int) -> Path:
        for name in order:
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"content of {name}")
            path.chmod(0o600)
            os.utime(path, (mtime, mtime))
        (root / ".DS_Store").write_text("finder litter")
        return root

    files = ["data.yaml", "train/images/b.jpg", "train/images/a.jpg", "valid/labels/c.txt"]
    first = make(tmp_path / "one" / "set", files, 1_000_000)
    second = make(tmp_path / "two" / "set", list(reversed(files)), 2_000_000_000)
    a = release.deterministic_zip(first, tmp_path / "a.zip", top="set")
    b = release.deterministic_zip(second, tmp_path / "b.zip", top="set")
    assert a.read_bytes() == b.read_bytes()
    with zipfile.ZipFile(a) as zf:
        infos = zf.infolist()
    assert [i.filename for i in infos] == [f"set/{n}" for n in sorted(files)]
    for info in infos:
        assert info.date_time == (1980, 1, 1, 0, 0, 0)
        assert info.compress_type == zipfile.ZIP_STORED
        assert info.external_attr == 0o100644 << 16
    assert a.stat().st_mode & 0o777 == 0o644  # a mirror's other users can read it


def test_a_workspace_becomes_a_checkpoint_the_hub_can_fetch(tmp_path, monkeypatch):
    workspace = _workspace(tmp_path / "ws")
    result = release.build_release(tmp_path / "release", workspaces=[workspace])
    asset = result.assets["checkpoint-smoke-manaus-traffic"]
    assert asset.file == "checkpoint-smoke-manaus-traffic.pt" and asset.kind == "checkpoint"
    assert asset.size == len(b"weights") and dict(asset.meta) == META
    assert asset.license.startswith("AGPL-3.0 (trained with Ultralytics YOLO")
    assert "Manaus_traffic" in asset.license and "tamaturgo" in asset.citation
    assert "mAP50 0.410" in asset.description
    entries = json.loads(result.assets_json.read_text())["assets"]
    assert list(entries) == ["checkpoint-smoke-manaus-traffic"]
    # The folder is a hub: its assets.json is a registry, the folder a mirror.
    monkeypatch.setenv(hub.ASSETS_REGISTRY_ENV, str(result.assets_json))
    monkeypatch.setenv(hub.ASSETS_URL_ENV, str(result.out))
    monkeypatch.setenv(hub.CACHE_ENV, str(tmp_path / "cache"))
    name = hub.checkpoint_asset("smoke", "manaus-traffic")
    assert hub.fetch(name, progress=False).read_bytes() == b"weights"
    assert hub.assets()[name].meta["imgsz"] == 256


def test_a_second_build_adds_to_the_folders_registry(tmp_path):
    out = tmp_path / "release"
    release.build_release(out, workspaces=[_workspace(tmp_path / "a")])
    synthetic = {**META, "dataset": "synthetic", "map50": 0.9}
    result = release.build_release(out, workspaces=[_workspace(tmp_path / "b", synthetic)])
    entries = json.loads(result.assets_json.read_text())["assets"]
    assert list(entries) == ["checkpoint-smoke-manaus-traffic", "checkpoint-smoke-synthetic"]
    assert "synthetic set" in entries["checkpoint-smoke-synthetic"]["license"]


@pytest.mark.parametrize(
    ("meta", "weights", "needle"),
    [
        (None, b"w", "best.meta.json does not exist"),
        ({**META, "dataset": None}, b"w", "trained on a custom dataset"),
        ({**META, "profile": "Smoke Test"}, b"w", "field 'profile' must be a course name"),
        ({"dataset": "synthetic"}, b"w", "field 'profile'"),
    ],
)
def test_an_unusable_workspace_is_refused_naming_the_file(tmp_path, meta, weights, needle):
    workspace = _workspace(tmp_path / "ws", meta, weights)
    with pytest.raises(ValueError, match=needle) as caught:
        release.build_release(tmp_path / "release", workspaces=[workspace])
    assert str(workspace / "models") in str(caught.value)
    assert not (tmp_path / "release" / "assets.json").exists()


def test_a_workspace_without_a_model_or_two_of_a_kind_are_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"best\.pt does not exist"):
        release.build_checkpoint(empty, tmp_path / "release")
    a, b = _workspace(tmp_path / "a"), _workspace(tmp_path / "b")
    with pytest.raises(ValueError, match="give one workspace per profile and dataset"):
        release.build_release(tmp_path / "release", workspaces=[a, b])
    with pytest.raises(ValueError, match="Nothing to release"):
        release.build_release(tmp_path / "release")


def test_bad_sample_data_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"manaus-traffic/data\.yaml does not exist"):
        release.build_release(tmp_path / "release", sample_data=tmp_path)


def test_merge_keeps_other_entries_and_refuses_a_malformed_registry(tmp_path):
    registry = tmp_path / "assets.json"
    keep = {"file": "k.zip", "sha256": "1" * 64, "size": 1, "kind": "dataset", "license": "L",
            "citation": "C"}  # fmt: skip
    registry.write_text(json.dumps({"about": "kept", "assets": {"zz-kept": keep}}))
    result = release.build_release(
        tmp_path / "release", workspaces=[_workspace(tmp_path / "ws")], registry=registry
    )
    assert result.registry == registry
    data = json.loads(registry.read_text())
    assert data["about"] == "kept"
    assert list(data["assets"]) == ["checkpoint-smoke-manaus-traffic", "zz-kept"]
    registry.write_text(json.dumps({"assets": {"x": {"file": "x"}}}))
    with pytest.raises(ValueError, match=r"lacks the field 'sha256'") as caught:
        release.merge_registry(registry, result.assets)
    assert str(registry) in str(caught.value)


def test_tcv_release_end_to_end(tmp_path):
    workspace = _workspace(tmp_path / "ws")
    registry = tmp_path / "registry.json"
    out = tmp_path / "release"
    result = runner.invoke(
        app,
        ["release", "--out", str(out), "--workspace", str(workspace), "--registry", str(registry)],
    )
    assert result.exit_code == 0, result.output
    assert "checkpoint-smoke-manaus-traffic: checkpoint-smoke-manaus-traffic.pt" in result.output
    assert f"Registry entries of these 1: {out / 'assets.json'}" in result.output
    assert f"Merged their entries into {registry}" in result.output
    assert (out / "checkpoint-smoke-manaus-traffic.pt").read_bytes() == b"weights"
    assert hub.read_registry(registry) == hub.read_registry(out / "assets.json")


def test_tcv_release_refuses_in_one_line(tmp_path):
    workspace = _workspace(tmp_path / "ws", meta=None)
    result = runner.invoke(
        app, ["release", "--out", str(tmp_path / "r"), "--workspace", str(workspace)]
    )
    assert result.exit_code == 2
    assert "tcv: " in result.output and "best.meta.json does not exist" in result.output


def _setup_refs(notebook: Path) -> list[str]:
    """The tags that a notebook's code cells assign to ``REF`` (``REF = "v..."`` or a tuple)."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    refs = []
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        refs += re.findall(r'\bREF\s*=\s*"(v[^"]*)"', source)
        refs += re.findall(r'\bREPO,\s*REF\s*=\s*"[^"]*",\s*"(v[^"]*)"', source)
    return refs


def test_every_notebook_installs_the_tag_of_this_version():
    refs = {nb.name: _setup_refs(nb) for nb in sorted(NOTEBOOKS.glob("*.ipynb"))}
    refs = {name: found for name, found in refs.items() if found}
    assert refs, "no notebook set-up cell assigns REF: the tag test would hold nothing"
    want = f"v{tcv_helpers.__version__}"
    wrong = {name: found for name, found in refs.items() if set(found) != {want}}
    assert not wrong, f"set-up cells must install {want} (run `tcv notebooks sync`): {wrong}"


def test_the_installed_version_is_pyprojects():
    tomllib = pytest.importorskip("tomllib")
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert tcv_helpers.__version__ == version, "reinstall the package: pip install -e ."
