import hashlib
import http.server
import io
import sys
import tarfile
import threading
import types
import typing
import zipfile

import pytest
from tiny import TINY

from tcv_helpers.data import registry
from tcv_helpers.data.registry import (
    DatasetUnavailable,
    download,
    download_roboflow,
    load_dataset,
    upload_for_labeling,
)

PAYLOAD = b"traffic camera archive" * 100


@pytest.fixture
def server():
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            if self.path == "/missing.zip":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hits, httpd
    httpd.shutdown()


def test_download_verifies_and_caches(server, tmp_path, monkeypatch):
    base, hits, httpd = server
    monkeypatch.setenv("TCV_CACHE", str(tmp_path / "cache"))
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    first = download(f"{base}/data.zip", sha)
    assert first.read_bytes() == PAYLOAD and first.is_relative_to(tmp_path / "cache")
    httpd.shutdown()
    assert download(f"{base}/data.zip", sha) == first, "cached file used without the network"
    assert hits == ["/data.zip"]


def test_download_refuses_a_wrong_checksum(server, tmp_path):
    base, _, _ = server
    with pytest.raises(DatasetUnavailable, match="checksum"):
        download(f"{base}/data.zip", "0" * 64, dest=tmp_path / "d.zip")
    assert list(tmp_path.iterdir()) == [], "no partial or unverified file is left"


@pytest.mark.parametrize(
    ("path", "sha", "error", "message"),
    [
        ("/missing.zip", "0" * 64, DatasetUnavailable, "Could not download"),
        ("/x.zip", "abc", ValueError, "64 hex digits"),
    ],
)
def test_download_errors(server, tmp_path, path, sha, error, message):
    base, _, _ = server
    with pytest.raises(error, match=message):
        download(base + path, sha, dest=tmp_path / "x.zip")


def test_extract_zip_and_tar(tmp_path):
    zpath = tmp_path / "a.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("ds/data.yaml", "names: {0: car}\n")
    assert (registry._extract(zpath, tmp_path / "z") / "ds" / "data.yaml").is_file()
    tpath = tmp_path / "a.tar.gz"
    with tarfile.open(tpath, "w:gz") as tf:
        data = b"names: {0: car}\n"
        info = tarfile.TarInfo("data.yaml")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    assert (registry._extract(tpath, tmp_path / "t") / "data.yaml").is_file()
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../escape.txt", "x")
    with pytest.raises(DatasetUnavailable, match="escape"):
        registry._extract(evil, tmp_path / "e")
    assert not (tmp_path / "escape.txt").exists()


def test_load_local_and_unknown(tmp_path):
    ds = tmp_path / "mine"
    ds.mkdir()
    with pytest.raises(DatasetUnavailable, match=r"no data\.yaml"):
        load_dataset(ds, data_dir=tmp_path / "data", profile=TINY)
    (ds / "data.yaml").write_text("names: {0: car}\n")
    loaded = load_dataset(ds, data_dir=tmp_path / "data", profile=TINY)
    assert loaded.path == ds.resolve() and loaded.data_yaml == ds.resolve() / "data.yaml"
    assert "local dataset" in loaded.message and not loaded.fell_back
    with pytest.raises(KeyError, match="Unknown dataset 'nope'"):
        load_dataset("nope", data_dir=tmp_path / "data", profile=TINY)


def test_synthetic_is_made_once(tmp_path):
    first = load_dataset("synthetic", data_dir=tmp_path, profile=TINY)
    assert "Generated" in first.message and first.data_yaml.is_file() and not first.fell_back
    assert len(list((first.path / "images").rglob("*.jpg"))) == TINY.synth_images
    again = load_dataset("synthetic", data_dir=tmp_path, profile=TINY)
    assert again.path == first.path and "already" in again.message


def test_roboflow_without_key_falls_back(tmp_path, monkeypatch):
    monkeypatch.delenv("ROBOFLOW_API_KEY", raising=False)
    loaded = load_dataset("manaus-traffic", data_dir=tmp_path, profile=TINY)
    assert (
        "ROBOFLOW_API_KEY" in loaded.message
        and "synthetic" in loaded.message
        and loaded.path.name.startswith("synthetic")
        and loaded.fell_back
    )
    with pytest.raises(DatasetUnavailable, match="No ROBOFLOW_API_KEY"):
        load_dataset("manaus-traffic", data_dir=tmp_path, profile=TINY, fallback=False)


class FakeRoboflow:
    calls: typing.ClassVar[list] = []
    fail: Exception | None = None

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
        return types.SimpleNamespace(location=location)

    def upload(self, image_path, batch_name):
        self.calls.append(("upload", image_path, batch_name))


@pytest.fixture
def fake_roboflow(monkeypatch):
    FakeRoboflow.calls, FakeRoboflow.fail = [], None
    monkeypatch.setitem(sys.modules, "roboflow", types.SimpleNamespace(Roboflow=FakeRoboflow))
    monkeypatch.setenv("ROBOFLOW_API_KEY", "rf-secret-123456")
    return FakeRoboflow


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
