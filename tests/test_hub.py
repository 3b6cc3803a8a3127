"""The course asset hub: one verified download into a cache, refusals in one sentence, mirrors.

Each test serves small files of its own from a loopback server (``hub_server``) and names them in
a registry it writes (``TCV_ASSETS_REGISTRY``), so nothing here needs the shared data or the
internet; the last test fetches the real camera set from the session's loopback hub.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from hub_server import HubServer, closed_port_url

import tcv_helpers
from tcv_helpers.data import hub

FILES = {"small.bin": 200_000}


def _write_toy_zip(path: Path, *, evil: bool = False) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("toy/data.yaml", "train: train/images\nval: train/images\nnames:\n  0: car\n")
        zf.writestr("toy/train/images/a.jpg", b"not really a jpeg")
        if evil:
            zf.writestr("../escaped.txt", "outside")


def _entry(path: Path, kind: str) -> dict:
    return {
        "file": path.name,
        "sha256": hub.sha256_of(path),
        "size": path.stat().st_size,
        "kind": kind,
        "license": "CC0",
        "citation": "made by the test",
        "description": f"A {kind} for the tests.",
    }


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder of test assets, their registry in ``TCV_ASSETS_REGISTRY``, a fresh cache."""
    folder = tmp_path / "served"
    folder.mkdir()
    small = folder / "small.bin"
    small.write_bytes(random.Random(0).randbytes(FILES["small.bin"]))
    _write_toy_zip(folder / "toy.zip")
    _write_toy_zip(folder / "evil.zip", evil=True)
    registry = {
        "assets": {
            "small": _entry(small, "video"),
            "toy": _entry(folder / "toy.zip", "dataset"),
            "evil": _entry(folder / "evil.zip", "dataset"),
        }
    }
    (tmp_path / "registry.json").write_text(json.dumps(registry))
    monkeypatch.setenv(hub.ASSETS_REGISTRY_ENV, str(tmp_path / "registry.json"))
    monkeypatch.setenv(hub.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(hub.ASSETS_URL_ENV, raising=False)
    monkeypatch.setattr(hub, "RETRIES", 0)  # failures fail at once (pooch waits between tries)
    return folder


@pytest.fixture
def server(served: Path, monkeypatch: pytest.MonkeyPatch):
    with HubServer(served) as running:
        monkeypatch.setenv(hub.ASSETS_URL_ENV, running.url)
        yield running


def _cached(cache: Path) -> list[str]:
    folder = cache / "assets"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _one_sentence(message: str) -> None:
    assert "\n" not in message and message.endswith("."), message
    assert ". " not in message.rstrip("."), message


def test_fetch_downloads_once_then_uses_the_cache_without_network(server, served, tmp_path):
    path = hub.fetch("small", progress=False)
    assert path == tmp_path / "cache" / "assets" / "small.bin"
    assert path.read_bytes() == (served / "small.bin").read_bytes()
    assert server.requests == ["/small.bin"]
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, "readable like any new file"
    server.stop()  # no hub any more: a second fetch must not need it
    assert hub.fetch("small", progress=False) == path
    got = hub.try_fetch("small", progress=False)
    assert got.ok and got.path == path
    assert got.message == "small: small.bin from the cache (CC0; made by the test)."


def test_try_fetch_names_the_url_licence_and_citation(server):
    got = hub.try_fetch("small", progress=False)
    assert got.message == f"small: small.bin from {server.url}small.bin (CC0; made by the test)."


def test_a_checksum_mismatch_is_refused_in_one_sentence_and_not_kept(server, served, tmp_path):
    server.corrupt = True
    with pytest.raises(hub.ChecksumMismatch) as caught:
        hub.fetch("small", progress=False)
    message = str(caught.value)
    want = hub.sha256_of(served / "small.bin")
    assert f"'small' from {server.url}small.bin" in message
    assert want[:12] in message
    served_bytes = (served / "small.bin").read_bytes()
    wrong = bytes(b ^ 0xFF for b in served_bytes[:64]) + served_bytes[64:]
    assert hashlib.sha256(wrong).hexdigest()[:12] in message
    assert message.endswith("the file was not kept.")
    _one_sentence(message)
    assert _cached(tmp_path / "cache") == []  # neither the file nor a temporary one
    got = hub.try_fetch("small", progress=False)
    assert got.path is None and got.message == message


def test_a_cut_download_is_not_left_behind_and_a_later_fetch_succeeds(server, served, tmp_path):
    server.cut = 1
    with pytest.raises(hub.AssetUnavailable) as caught:
        hub.fetch("small", progress=False)
    assert f"{server.url}small.bin" in str(caught.value)
    _one_sentence(str(caught.value))
    assert _cached(tmp_path / "cache") == []
    path = hub.fetch("small", progress=False)
    assert hub.sha256_of(path) == hub.sha256_of(served / "small.bin")
    assert server.requests == ["/small.bin", "/small.bin"]


def test_a_cut_download_is_retried(server, served, monkeypatch):
    monkeypatch.setattr(hub, "RETRIES", 1)
    server.cut = 1
    path = hub.fetch("small", progress=False)
    assert path.read_bytes() == (served / "small.bin").read_bytes()
    assert len(server.requests) == 2


def test_a_damaged_file_in_the_cache_is_downloaded_again(server, served, tmp_path):
    target = tmp_path / "cache" / "assets" / "small.bin"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"half a download")
    assert hub.fetch("small", progress=False).read_bytes() == (served / "small.bin").read_bytes()
    assert server.requests == ["/small.bin"]


def test_an_unreachable_hub_names_the_url_and_the_error(served, monkeypatch, tmp_path):
    url = closed_port_url()
    monkeypatch.setenv(hub.ASSETS_URL_ENV, url)
    with pytest.raises(hub.AssetUnavailable) as caught:
        hub.fetch("small", progress=False)
    message = str(caught.value)
    assert f"{url}small.bin" in message and "(ConnectionError)" in message
    assert hub.ASSETS_URL_ENV in message
    _one_sentence(message)
    got = hub.try_fetch("toy", folder=True, progress=False)
    assert got.path is None and f"{url}toy.zip" in got.message
    assert _cached(tmp_path / "cache") == []


def test_a_missing_file_on_the_hub_gives_the_http_status(server, served):
    (served / "small.bin").unlink()
    with pytest.raises(hub.AssetUnavailable, match=r"\(HTTPError 404\)"):
        hub.fetch("small", progress=False)


def test_fetch_folder_extracts_once_into_a_folder_named_by_the_checksum(server, served, tmp_path):
    folder = hub.fetch_folder("toy", progress=False)
    sha = hub.sha256_of(served / "toy.zip")
    assert folder == tmp_path / "cache" / "assets" / f"toy-{sha[:12]}" / "toy"
    assert (folder / "data.yaml").is_file() and (folder / "train" / "images" / "a.jpg").is_file()
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(folder.parent.stat().st_mode) == 0o777 & ~mask, "not mkdtemp's 0700"
    server.stop()
    assert hub.fetch_folder("toy", progress=False) == folder
    assert hub.try_fetch("toy", folder=True, progress=False).path == folder
    leftovers = [p.name for p in folder.parent.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_fetch_folder_refuses_a_member_that_escapes(server, tmp_path):
    with pytest.raises(hub.AssetUnavailable, match=r"'\.\./escaped\.txt' would escape"):
        hub.fetch_folder("evil", progress=False)
    assert not (tmp_path / "cache" / "escaped.txt").exists()
    assert [n for n in _cached(tmp_path / "cache") if n != "evil.zip"] == []


def test_fetch_folder_is_for_zips_only(served):
    with pytest.raises(ValueError, match="not a zip"):
        hub.fetch_folder("small")
    with pytest.raises(ValueError, match="not a zip"):
        hub.try_fetch("small", folder=True)


@pytest.mark.parametrize("as_url", [False, True], ids=["path", "file-url"])
def test_a_local_folder_mirror_is_copied_and_verified(served, monkeypatch, tmp_path, as_url):
    monkeypatch.setenv(hub.ASSETS_URL_ENV, served.as_uri() if as_url else str(served))
    got = hub.try_fetch("small", progress=False)
    assert got.path is not None
    assert got.path.read_bytes() == (served / "small.bin").read_bytes()
    assert f"from the mirror {served}" in got.message
    assert hub.fetch_folder("toy", progress=False).name == "toy"


def test_a_local_mirror_with_wrong_bytes_is_refused(served, monkeypatch, tmp_path):
    monkeypatch.setenv(hub.ASSETS_URL_ENV, str(served))
    (served / "small.bin").write_bytes(b"something else")
    with pytest.raises(hub.ChecksumMismatch, match="the file was not kept"):
        hub.fetch("small", progress=False)
    assert _cached(tmp_path / "cache") == []


def test_a_local_mirror_without_the_file_or_a_missing_folder(served, monkeypatch, tmp_path):
    monkeypatch.setenv(hub.ASSETS_URL_ENV, str(served))
    (served / "small.bin").unlink()
    with pytest.raises(hub.AssetUnavailable, match=r"small\.bin is missing there"):
        hub.fetch("small", progress=False)
    monkeypatch.setenv(hub.ASSETS_URL_ENV, str(tmp_path / "no-such-mirror"))
    got = hub.try_fetch("small", progress=False)
    assert got.path is None and "neither an http(s) URL nor an existing folder" in got.message


def test_the_extra_registry_is_merged_over_the_packaged_one(served, tmp_path, monkeypatch):
    known = hub.assets()
    assert {"manaus-traffic", "highway-cctv-a", "highway-cctv-b"} <= set(known)
    assert {"small", "toy", "evil"} <= set(known)
    override = json.loads((tmp_path / "registry.json").read_text())
    override["assets"]["manaus-traffic"] = override["assets"]["toy"]
    (tmp_path / "registry.json").write_text(json.dumps(override))
    assert hub.assets()["manaus-traffic"].file == "toy.zip"
    monkeypatch.delenv(hub.ASSETS_REGISTRY_ENV)
    assert "small" not in hub.assets()
    assert hub.assets()["manaus-traffic"].file == "manaus-traffic.zip"


def test_an_unknown_name_lists_the_known_ones(served):
    with pytest.raises(KeyError, match=r"Unknown asset 'nope'.*manaus-traffic.*small"):
        hub.fetch("nope")
    with pytest.raises(KeyError, match="Unknown asset"):
        hub.try_fetch("nope")


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda e: e.pop("sha256"), "lacks the field 'sha256'"),
        (lambda e: e.pop("citation"), "lacks the field 'citation'"),
        (lambda e: e.update(sha256="abc"), "field 'sha256' must be 64"),
        (lambda e: e.update(size=-1), "field 'size' must be a byte count"),
        (lambda e: e.update(kind="model"), "field 'kind' must be one of"),
        (lambda e: e.update(file="../x.zip"), "field 'file' must be a plain relative"),
        (lambda e: e.update(meta=[1]), "field 'meta' must be a mapping"),
    ],
)
def test_a_malformed_registry_entry_names_the_file_and_the_field(served, tmp_path, change, needle):
    registry = tmp_path / "registry.json"
    data = json.loads(registry.read_text())
    change(data["assets"]["small"])
    registry.write_text(json.dumps(data))
    with pytest.raises(ValueError) as caught:
        hub.assets()
    assert needle in str(caught.value) and str(registry) in str(caught.value)
    assert "'small'" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "needle"),
    [("{not json", r"is not valid JSON \(line 1\)"), ('{"small": {}}', "must hold an 'assets'")],
)
def test_a_malformed_registry_file_is_named(served, tmp_path, text, needle):
    registry = tmp_path / "registry.json"
    registry.write_text(text)
    with pytest.raises(ValueError, match=needle) as caught:
        hub.assets()
    assert str(registry) in str(caught.value)


def test_a_missing_registry_file_is_named(served, monkeypatch, tmp_path):
    monkeypatch.setenv(hub.ASSETS_REGISTRY_ENV, str(tmp_path / "gone.json"))
    with pytest.raises(ValueError, match=r"gone\.json' does not exist"):
        hub.assets()


def test_the_base_url_is_the_release_of_this_version_or_the_mirror(monkeypatch):
    monkeypatch.delenv(hub.ASSETS_URL_ENV, raising=False)
    assert hub.base_url() == (
        "https://github.com/traffic-cams-cv/traffic-cams-cv/releases/download/"
        f"v{tcv_helpers.__version__}/"
    )
    monkeypatch.setenv(hub.ASSETS_URL_ENV, "https://mirror.example.org/tcv")
    assert hub.base_url() == "https://mirror.example.org/tcv/"


def test_the_cache_is_tcv_cache_or_the_users_cache(monkeypatch, tmp_path):
    monkeypatch.setenv(hub.CACHE_ENV, str(tmp_path))
    assert hub.cache_dir() == tmp_path
    monkeypatch.delenv(hub.CACHE_ENV)
    assert hub.cache_dir() == Path.home() / ".cache" / "traffic-cams-cv"


def test_the_packaged_registry_credits_every_asset(monkeypatch):
    monkeypatch.delenv(hub.ASSETS_REGISTRY_ENV, raising=False)
    rows = {row["name"]: row for row in hub.describe_assets()}
    assert rows["manaus-traffic"]["kind"] == "dataset"
    assert rows["manaus-traffic"]["license"] == "CC BY 4.0"
    assert "tamaturgo" in rows["manaus-traffic"]["citation"]
    assert rows["manaus-traffic"]["size_mb"] > 1
    for name in ("highway-cctv-a", "highway-cctv-b"):
        assert rows[name]["kind"] == "video" and "bgslibrary" in rows[name]["citation"]
        assert "tests and demos only" in rows[name]["license"]
    assert all(row["license"] and row["citation"] for row in rows.values())


def test_asset_round_trips_through_its_registry_entry():
    asset = hub.Asset(
        name=hub.checkpoint_asset("smoke", "synthetic"),
        file="checkpoint-smoke-synthetic.pt",
        sha256="0" * 64,
        size=3,
        kind="checkpoint",
        license="MIT",
        citation="the course",
        meta={"imgsz": 256},
    )
    assert asset.name == "checkpoint-smoke-synthetic"
    assert hub.Asset.from_dict(asset.name, asset.to_dict()) == asset
    with pytest.raises(ValueError, match="field 'kind'"):
        hub.Asset(**{**asset.to_dict(), "name": "x", "kind": "weights"})


def test_the_real_camera_set_comes_from_the_sessions_loopback_hub(monkeypatch, tmp_path):
    hub_dir = os.environ.get("TCV_TEST_HUB_DIR")
    if not hub_dir or not os.environ.get(hub.ASSETS_URL_ENV, "").startswith("http://127.0.0.1"):
        pytest.skip("no session hub: the real sample data (../shared/data) is absent")
    monkeypatch.delenv(hub.ASSETS_REGISTRY_ENV, raising=False)
    monkeypatch.setenv(hub.CACHE_ENV, str(tmp_path / "cache"))
    got = hub.try_fetch("manaus-traffic", folder=True, progress=False)
    assert got.path is not None, got.message
    assert got.path.name == "manaus-traffic" and (got.path / "data.yaml").is_file()
    assert len(list((got.path / "valid" / "images").iterdir())) == 76
    assert "CC BY 4.0" in got.message and "tamaturgo" in got.message
    video = hub.fetch("highway-cctv-a", progress=False)
    assert video.stat().st_size == hub.assets()["highway-cctv-a"].size
    # A subprocess (an nbval kernel, `tcv run`) inherits the session's hub through the env.
    code = (
        "from tcv_helpers.data import hub; "
        "print(hub.try_fetch('highway-cctv-b', progress=False).message)"
    )
    env = {**os.environ, hub.CACHE_ENV: str(tmp_path / "child-cache")}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("highway-cctv-b: highway-cctv-b.avi from http://127.0.0.1:")
