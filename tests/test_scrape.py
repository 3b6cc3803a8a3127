"""The scraper against a misbehaving camera server on 127.0.0.1 (no other network)."""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tcv_helpers.cli import app
from tcv_helpers.data.scrape import (
    DEFAULT_USER_AGENT,
    LOCK_NAME,
    MANIFEST_COLUMNS,
    MANIFEST_NAME,
    OUTCOMES,
    STATE_NAME,
    Camera,
    load_cameras,
    scrape,
)
from tcv_helpers.imaging import decode_image
from tcv_helpers.io import FolderBusy, exclusive_lock
from tests.conftest import ROOT

EXAMPLE_CAMERAS = ROOT / "tcv_helpers" / "resources" / "cameras_example.yaml"
FAST = {
    "interval": 0.0,
    "timeout": 0.5,
    "retries": 1,
    "backoff": 0.05,
    "max_bytes": 200_000,
    "per_host_delay": 0.05,
    "concurrency": 4,
    "progress": False,
}


def texture(seed: int, size: tuple[int, int] = (320, 240), shift: int = 0) -> Image.Image:
    """A smooth random texture: different seeds give very different perceptual hashes."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size[1] // 16, size[0] // 16, 3)).astype(np.int16)
    image = Image.fromarray(np.clip(small + shift, 0, 255).astype(np.uint8))
    return image.resize(size, Image.BILINEAR)


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


class CameraServer:
    """Shared state of the test server: what was asked, and switches for its behaviour."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.log: list[dict[str, object]] = []
        self.hits: Counter[str] = Counter()
        self.release = threading.Event()
        self.robots_status = 200
        self.base = ""
        self.redirects: dict[str, str] = {}  # path -> Location of a 302

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def requests_for(self, path: str) -> list[dict[str, object]]:
        with self.lock:
            return [entry for entry in self.log if entry["path"] == path]


class Handler(BaseHTTPRequestHandler):
    server_version = "MisbehavingCam/1.0"

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the tests read the server's own log instead."""

    def send_body(self, body: bytes, status: int = 200, ctype: str = "image/jpeg", **extra) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        state: CameraServer = self.server.state  # type: ignore[attr-defined]
        path = self.path.split("?", 1)[0]  # a key in the query does not change the camera
        with state.lock:
            state.hits[path] += 1
            count = state.hits[path]
            state.log.append(
                {
                    "path": path,
                    "time": time.monotonic(),
                    "user_agent": self.headers.get("User-Agent"),
                    "if_none_match": self.headers.get("If-None-Match"),
                    "if_modified_since": self.headers.get("If-Modified-Since"),
                }
            )
        seed = zlib.crc32(path.encode()) + 7919 * count
        try:
            self.respond(state, path, count, seed)
        except (BrokenPipeError, ConnectionResetError):
            return  # the client hung up, as it should for the huge body

    def respond(self, state: CameraServer, path: str, count: int, seed: int) -> None:
        if path in state.redirects:
            self.send_response(302)
            self.send_header("Location", state.redirects[path])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/robots.txt":
            if state.robots_status != 200:
                self.send_body(b"unavailable", state.robots_status, "text/plain")
            else:
                rules = b"User-agent: *\nDisallow: /private/\n"
                self.send_body(rules, ctype="text/plain")
        elif path.startswith(("/cam/new/", "/private/")):
            self.send_body(jpeg(texture(seed)))
        elif path == "/cam/same":
            self.send_body(jpeg(texture(100)))
        elif path == "/cam/near":
            frame = jpeg(texture(200)) if count == 1 else jpeg(texture(200, shift=10), 75)
            self.send_body(frame)
        elif path == "/cam/flaky":
            if count == 1:
                self.send_body(b"oops", 500, "text/plain")
            else:
                self.send_body(jpeg(texture(seed)))
        elif path == "/cam/throttled":
            if count == 1:
                self.send_body(b"slow down", 429, "text/plain", Retry_After="0")
            else:
                self.send_body(jpeg(texture(seed)))
        elif path == "/cam/busy":
            self.send_body(b"come back later", 429, "text/plain", Retry_After="120")
        elif path == "/cam/missing":
            self.send_body(b"not here", 404, "text/html")
        elif path == "/cam/slow":
            state.release.wait(2.0)
            self.send_body(jpeg(texture(seed)))
        elif path == "/cam/html":
            self.send_body(b"<!DOCTYPE html><html><body>Camera offline</body></html>")
        elif path == "/cam/truncated":
            whole = jpeg(texture(500))
            self.send_body(whole[: len(whole) * 6 // 10])
        elif path == "/cam/grey":
            self.send_body(jpeg(Image.new("RGB", (320, 240), (128, 128, 128))))
        elif path.startswith("/cam/offline-"):
            self.send_body(jpeg(texture(400)))
        elif path == "/cam/huge":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()  # no Content-Length: the body ends when the connection does
            self.wfile.write(b"\xff\xd8\xff\xe0")
            for _ in range(64):
                self.wfile.write(b"\0" * 65_536)
        elif path == "/cam/huge-declared":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", "50000000")
            self.end_headers()
            self.wfile.write(b"\xff\xd8\xff\xe0")
        elif path == "/cam/etag":
            if self.headers.get("If-None-Match") == '"v1"':
                self.send_response(304)
                self.send_header("ETag", '"v1"')
                self.end_headers()
            else:
                self.send_body(jpeg(texture(300)), ETag='"v1"')
        elif path == "/cam/lastmod":
            stamp = "Sat, 21 Nov 2026 10:00:00 GMT"
            if self.headers.get("If-Modified-Since") == stamp:
                self.send_response(304)
                self.end_headers()
            else:
                self.send_body(jpeg(texture(310)), Last_Modified=stamp)
        elif path == "/cam/stall":
            whole = jpeg(texture(seed))
            if count == 1:  # half a body, then silence until released (or the client dies)
                self.send_response(200)
                self.send_header("Content-Length", str(len(whole)))
                self.end_headers()
                self.wfile.write(whole[: len(whole) // 2])
                self.wfile.flush()
                state.release.wait(10.0)
            else:
                self.send_body(whole)
        else:
            self.send_body(b"no such camera", 404, "text/plain")


def _serve():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = CameraServer()
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    state.release.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture
def server():
    yield from _serve()


@pytest.fixture
def other_server():
    """A second camera host (another port on loopback)."""
    yield from _serve()


def cams(server: CameraServer, *paths: str) -> list[Camera]:
    return [
        Camera(id=path.strip("/").replace("/", "-"), url=server.url(path), source="test DOT")
        for path in paths
    ]


def read_manifest(out: Path) -> list[dict[str, str]]:
    text = (out / MANIFEST_NAME).read_text(encoding="utf-8")
    assert text.endswith("\n")
    rows = list(csv.reader(io.StringIO(text)))
    assert tuple(rows[0]) == MANIFEST_COLUMNS
    assert all(len(row) == len(MANIFEST_COLUMNS) for row in rows), "a row has the wrong width"
    assert sum(tuple(row) == MANIFEST_COLUMNS for row in rows) == 1, "header written twice"
    return [dict(zip(MANIFEST_COLUMNS, row, strict=True)) for row in rows[1:]]


def leftovers(out: Path) -> list[Path]:
    return [path for path in out.rglob("*") if path.name.endswith(".tmp")]


EXPECTED = {
    "cam-new-a": ["saved", "saved"],
    "cam-new-b": ["saved", "saved"],
    "cam-same": ["saved", "duplicate"],
    "cam-near": ["saved", "near_duplicate"],
    "cam-flaky": ["saved", "saved"],
    "cam-throttled": ["saved", "saved"],
    "cam-busy": ["http_error", "http_error"],
    "cam-missing": ["http_error", "http_error"],
    "cam-slow": ["timeout", "timeout"],
    "cam-html": ["not_image", "not_image"],
    "cam-truncated": ["bad_image", "bad_image"],
    "cam-grey": ["placeholder", "placeholder"],
    "cam-huge": ["too_large", "too_large"],
    "cam-huge-declared": ["too_large", "too_large"],
    "cam-etag": ["saved", "not_modified"],
    "cam-lastmod": ["saved", "not_modified"],
    "private-cam-jpg": ["robots_disallowed", "robots_disallowed"],
}


def test_scrape_keeps_only_new_valid_frames_and_logs_every_failure(server, tmp_path):
    paths = ["/" + cid.replace("cam-", "cam/", 1) for cid in EXPECTED if cid.startswith("cam-")]
    paths = [p.replace("/cam/new-", "/cam/new/") for p in paths]
    cameras = [
        *cams(server, *paths, "/cam/offline-a", "/cam/offline-b"),
        Camera(id="private-cam-jpg", url=server.url("/private/cam.jpg")),
    ]
    out = tmp_path / "out"
    report = scrape(cameras, out, rounds=2, **FAST)

    rows = read_manifest(out)
    assert rows == report.rows
    assert len(rows) == 2 * len(cameras)
    by_camera: dict[str, list[str]] = {}
    for row in rows:
        by_camera.setdefault(row["camera_id"], []).append(row["outcome"])
        assert row["outcome"] in OUTCOMES
        assert row["condition"] == "unknown" and row["split"] == ""
        assert (row["image"] != "") == (row["outcome"] == "saved")
        if row["outcome"] not in ("saved", "duplicate", "not_modified"):
            assert row["error"], f"{row['camera_id']} {row['outcome']} has no explanation"
    for cid, outcomes in EXPECTED.items():
        assert by_camera[cid] == outcomes, cid
    # The same "camera offline" card from two cameras: the first copy cannot be known yet.
    offline = by_camera["cam-offline-a"] + by_camera["cam-offline-b"]
    assert sorted(offline) == ["placeholder", "placeholder", "placeholder", "saved"]
    assert report.counts == {o: sum(r["outcome"] == o for r in rows) for o in OUTCOMES}

    # Only valid, distinct images were written, each where the manifest says.
    saved = sorted(p for p in out.rglob("*.jpg"))
    assert saved == sorted(out / row["image"] for row in rows if row["outcome"] == "saved")
    assert sorted(report.saved) == saved
    assert len({p.read_bytes() for p in saved}) == len(saved)
    for path in saved:
        decode_image(path.read_bytes())
        assert path.parent.name in by_camera
        assert len(path.stem) >= 16 and path.stem[8] == "T" and path.stem[15] == "Z"
    for cid in ("cam-huge", "cam-huge-declared", "cam-html", "cam-truncated", "cam-grey"):
        assert not (out / cid).exists() or not any((out / cid).iterdir()), cid
    assert not leftovers(out)

    # Politeness: our User-Agent everywhere, robots.txt read once and obeyed, hosts paced.
    assert server.log and {e["user_agent"] for e in server.log} == {DEFAULT_USER_AGENT}
    assert len(server.requests_for("/robots.txt")) == 1
    assert not server.requests_for("/private/cam.jpg")
    times = sorted(float(e["time"]) for e in server.log)  # type: ignore[arg-type]
    assert min(b - a for a, b in itertools.pairwise(times)) >= 0.05  # never closer, by design

    # Retries: 500 and 429 with a short Retry-After are retried, 404 and a long Retry-After not.
    assert len(server.requests_for("/cam/flaky")) == 3
    assert len(server.requests_for("/cam/throttled")) == 3
    assert len(server.requests_for("/cam/missing")) == 2
    assert len(server.requests_for("/cam/busy")) == 2
    assert len(server.requests_for("/cam/slow")) == 4  # 2 rounds x (1 try + 1 retry)

    # Conditional requests: the validators were sent the second time.
    etag = server.requests_for("/cam/etag")
    assert [e["if_none_match"] for e in etag] == [None, '"v1"']
    lastmod = server.requests_for("/cam/lastmod")
    assert lastmod[1]["if_modified_since"] == "Sat, 21 Nov 2026 10:00:00 GMT"
    state = json.loads((out / STATE_NAME).read_text())
    assert state["cameras"]["cam-etag"]["etag"] == '"v1"'

    frame = report.to_pandas()
    assert list(frame.columns) == list(MANIFEST_COLUMNS) and len(frame) == len(rows)
    assert "saved" in report.summary()


def test_requests_to_one_host_are_spaced_and_camera_interval_holds(server, tmp_path):
    cameras = [*cams(server, "/cam/new/a", "/cam/new/b", "/cam/new/c")]
    cameras.append(Camera(id="own-interval", url=server.url("/cam/new/d"), interval=0.8))
    options = {**FAST, "per_host_delay": 0.2, "concurrency": 4}
    report = scrape(cameras, tmp_path / "out", rounds=2, **options)
    assert report.counts["saved"] == 8
    times = sorted(float(e["time"]) for e in server.log)  # type: ignore[arg-type]
    assert len(times) == 9  # robots.txt + 4 cameras x 2 rounds
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.2, gaps
    own = [float(e["time"]) for e in server.requests_for("/cam/new/d")]  # type: ignore[arg-type]
    assert own[1] - own[0] >= 0.8 - 0.05


@pytest.mark.parametrize(
    ("status", "outcome"), [(503, "robots_disallowed"), (404, "saved")], ids=["5xx", "4xx"]
)
def test_robots_txt_errors(server, tmp_path, status, outcome):
    server.robots_status = status
    cameras = [Camera(id="private", url=server.url("/private/cam.jpg"))]
    report = scrape(cameras, tmp_path / "out", **FAST)
    assert [row["outcome"] for row in report.rows] == [outcome]
    assert len(server.requests_for("/private/cam.jpg")) == (outcome == "saved")


def test_an_unreachable_robots_txt_disallows_until_it_can_be_read(tmp_path):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cameras = [Camera(id="gone", url=f"http://127.0.0.1:{port}/cam.jpg")]
    report = scrape(cameras, tmp_path / "out", rounds=2, **FAST)
    assert [row["outcome"] for row in report.rows] == ["robots_disallowed"] * 2
    for row in report.rows:  # RFC 9309: unreachable means disallowed, asked again next time
        assert "robots.txt could not be reached (ConnectionError)" in row["error"], row


def test_redirects_are_followed_by_hand_each_hop_checked(server, other_server, tmp_path):
    import socket

    with socket.socket() as probe:  # a loopback port the camera list does not name
        probe.bind(("127.0.0.1", 0))
        unnamed = f"http://127.0.0.1:{probe.getsockname()[1]}/cam.jpg"
    server.redirects = {
        "/cam/moved": "/cam/new/moved",  # same host: followed
        "/cam/to-other": other_server.url("/cam/new/there"),  # a host the list names
        "/cam/to-private": "/private/secret.jpg",  # robots.txt disallows the target
        "/cam/to-loopback": unnamed,
        "/cam/to-metadata": "http://169.254.169.254/latest/meta-data/",  # link-local
        "/cam/to-file": "file:///etc/passwd",
        "/cam/loop": "/cam/loop",
    }
    other_server.redirects = {"/cam/back": server.url("/cam/new/back")}
    cameras = [
        *cams(server, *server.redirects),
        Camera(id="other-listed", url=other_server.url("/cam/back")),
    ]
    report = scrape(cameras, tmp_path / "out", **FAST)
    rows = {row["camera_id"]: row for row in report.rows}
    outcomes = {camera: row["outcome"] for camera, row in rows.items()}
    assert outcomes == {
        "cam-moved": "saved",
        "cam-to-other": "saved",
        "cam-to-private": "robots_disallowed",
        "cam-to-loopback": "redirect_refused",
        "cam-to-metadata": "redirect_refused",
        "cam-to-file": "redirect_refused",
        "cam-loop": "http_error",
        "other-listed": "saved",
    }
    assert not server.requests_for("/private/secret.jpg"), "a disallowed target was requested"
    assert "169.254.169.254" in rows["cam-to-metadata"]["error"]
    assert "does not name" in rows["cam-to-loopback"]["error"]
    assert "more than 5 redirects" in rows["cam-loop"]["error"]
    assert len(server.requests_for("/cam/loop")) == 6
    # The other host's robots.txt was asked before its frame, and its requests were paced.
    paths = [entry["path"] for entry in other_server.log]
    assert paths.index("/robots.txt") < paths.index("/cam/new/there")
    hops = [float(e["time"]) for e in server.log]  # type: ignore[arg-type]
    assert min(b - a for a, b in itertools.pairwise(sorted(hops))) >= FAST["per_host_delay"]


def test_robots_txt_redirects_are_followed_and_checked(server, other_server, tmp_path):
    server.redirects = {"/robots.txt": other_server.url("/robots.txt")}  # the rules live there
    cameras = [
        Camera(id="open", url=server.url("/cam/new/a")),
        Camera(id="closed", url=server.url("/private/cam.jpg")),
        Camera(id="other", url=other_server.url("/cam/new/b")),
    ]
    report = scrape(cameras, tmp_path / "out", **FAST)
    outcomes = {row["camera_id"]: row["outcome"] for row in report.rows}
    assert outcomes == {"open": "saved", "closed": "robots_disallowed", "other": "saved"}
    assert not server.requests_for("/private/cam.jpg")
    other_server.redirects = {"/robots.txt": "http://169.254.169.254/robots.txt"}
    asked = len(other_server.requests_for("/cam/new/b"))
    report = scrape(cameras[2:], tmp_path / "out2", **FAST)
    [row] = report.rows
    assert row["outcome"] == "robots_disallowed" and "169.254.169.254" in row["error"], row
    assert len(other_server.requests_for("/cam/new/b")) == asked, "the camera was requested"


CHILD = """
import json, sys
from tcv_helpers.data.scrape import Camera, scrape
cameras = [Camera(**c) for c in json.loads(sys.argv[2])]
scrape(cameras, sys.argv[1], rounds=3, interval=0, per_host_delay=0.02, timeout=8,
       retries=0, concurrency=4, progress=False)
"""


def test_resume_after_kill(server, tmp_path):
    out = tmp_path / "out"
    cameras = cams(server, "/cam/new/a", "/cam/new/b", "/cam/same", "/cam/etag", "/cam/stall")
    spec = json.dumps([{"id": c.id, "url": c.url} for c in cameras])
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(out), spec],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            done = out / MANIFEST_NAME
            written = done.read_text().count("\n") - 1 if done.exists() else 0
            state_written = (out / STATE_NAME).exists()
            if server.requests_for("/cam/stall") and written >= 4 and state_written:
                break
            assert child.poll() is None, child.stdout.read().decode() if child.stdout else ""
            time.sleep(0.05)
        else:
            pytest.fail("the child scraper did not get going within 20 s")
        os.kill(child.pid, signal.SIGKILL)  # mid-download of /cam/stall
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        if child.stdout:
            child.stdout.close()
    server.release.set()
    before = read_manifest(out)
    assert not [r for r in before if r["camera_id"] == "cam-stall"]

    # What a kill at a worse moment leaves: a temporary file, a cut line, a frame without row.
    stale = out / "cam-new-a" / ".20260101T000000Z.jpg.k1ll3d.tmp"
    stale.write_bytes(b"\xff\xd8half")
    with (out / MANIFEST_NAME).open("ab") as handle:
        handle.write(b"20260101T000000Z.jpg,cam-new-a,2026-01-")
    orphan = out / "cam-new-b" / "20250101T000000Z.jpg"
    orphan.write_bytes(jpeg(texture(777)))

    report = scrape(cameras, out, rounds=1, **FAST)

    rows = read_manifest(out)
    assert rows[: len(before)] == before
    assert not leftovers(out)
    assert any("partial last line" in note for note in report.notes)
    assert any("k1ll3d" in note for note in report.notes)
    recovered = [r for r in rows if r["image"] == "cam-new-b/20250101T000000Z.jpg"]
    assert len(recovered) == 1 and recovered[0]["outcome"] == "saved"
    assert recovered[0]["error"].startswith("recovered")
    new = {r["camera_id"]: r["outcome"] for r in report.rows if not r["error"].startswith("rec")}
    assert new == {
        "cam-new-a": "saved",
        "cam-new-b": "saved",
        "cam-same": "duplicate",  # the last frame of each camera came back from the manifest
        "cam-etag": "not_modified",  # and its ETag from the state file
        "cam-stall": "saved",
    }
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*.jpg")}
    assert on_disk == {r["image"] for r in rows if r["image"]}


def test_a_key_in_a_camera_url_stays_out_of_the_manifest_and_the_state(server, tmp_path):
    base = server.url("/cam/etag")
    url = base.replace("http://", "http://viewer:pa55word@") + "?api_key=sk-cam-12345&size=2"
    camera = Camera(id="cam-keyed", url=url, source="test DOT")
    out = tmp_path / "out"
    scrape([camera], out, rounds=2, **FAST)
    rows = read_manifest(out)
    assert [r["outcome"] for r in rows] == ["saved", "not_modified"], "the key still works"
    written = (out / MANIFEST_NAME).read_text() + (out / STATE_NAME).read_text()
    assert "sk-cam-12345" not in written and "pa55word" not in written
    assert rows[0]["url"] == (
        base.replace("http://", "http://viewer:[REDACTED]@") + "?api_key=[REDACTED]&size=2"
    )
    state = json.loads((out / STATE_NAME).read_text())
    assert state["cameras"]["cam-keyed"]["url"] == rows[0]["url"]


def test_a_second_scrape_into_the_same_folder_is_refused(server, tmp_path):
    out = tmp_path / "out"
    camera = cams(server, "/cam/new/a")
    with exclusive_lock(out / LOCK_NAME, what="test"):  # a scrape in another process
        with pytest.raises(
            FolderBusy, match=rf"another process \(process {os.getpid()}\) is writing"
        ):
            scrape(camera, out, rounds=1, **FAST)
        assert not (out / MANIFEST_NAME).exists() and server.log == [], "nothing was touched"
        cameras_file = tmp_path / "cams.yaml"
        cameras_file.write_text(f"cameras:\n  - id: a\n    url: {server.url('/cam/new/a')}\n")
        args = ["data", "scrape", "--cameras", str(cameras_file), "--out", str(out)]
        result = CliRunner().invoke(app, [*args, "--rounds", "1"])
        assert result.exit_code != 0 and "is writing into" in result.output, result.output
    report = scrape(camera, out, rounds=1, **FAST)  # the lock went with its holder
    assert report.counts["saved"] == 1


def test_manifest_with_other_columns_is_refused(server, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / MANIFEST_NAME).write_text("file,label\na.jpg,car\n")
    with pytest.raises(ValueError, match="expected image, camera_id"):
        scrape(cams(server, "/cam/same"), out, **FAST)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"rounds": 0}, "rounds=0"),
        ({"concurrency": 0}, "concurrency=0"),
        ({"timeout": -1}, "timeout=-1"),
        ({"max_bytes": 0}, "max_bytes=0"),
    ],
)
def test_scrape_argument_checks(tmp_path, arguments, message):
    camera = Camera(id="a", url="http://127.0.0.1:9/a.jpg")
    with pytest.raises(ValueError, match=message):
        scrape([camera], tmp_path / "out", **arguments)
    with pytest.raises(ValueError, match="more than once"):
        scrape([camera, camera], tmp_path / "out")


GOOD = "  - id: a\n    url: https://example.org/a.jpg\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cameras:\n  - url: https://example.org/a.jpg\n", r"camera #0: field 'id' is missing"),
        ("cameras:\n  - id: a\n", r"camera #0 \('a'\): field 'url' is missing"),
        ("cameras:\n" + GOOD + GOOD, r"camera #1 \('a'\): field 'id': 'a' is already used"),
        (
            "cameras:\n  - id: I5 Main\n    url: https://example.org/a.jpg\n",
            r"camera #0 \('I5 Main'\): field 'id'.*not a valid camera id",
        ),
        (
            "cameras:\n  - id: a\n    url: ftp://example.org/a.jpg\n",
            r"\('a'\): field 'url'.*not an http",
        ),
        ("cameras:\n" + GOOD + "    interval: 0\n", r"field 'interval': 0 must be a positive"),
        ("cameras:\n" + GOOD + "    interval: -5\n", r"field 'interval': -5 must be a positive"),
        ("cameras:\n" + GOOD + "    interval: fast\n", r"field 'interval': 'fast' is not a"),
        ("cameras:\n" + GOOD + "    intervall: 5\n", r"unknown field\(s\) intervall"),
        ("cameras:\n  - just-a-string\n", r"camera #0: expected a mapping"),
        ("- id: a\n  url: https://example.org/a.jpg\n", r"'cameras:' list at the top level"),
        ("cameras: []\n", r"non-empty list"),
        ("cameras:\n  - id: a\n    url: [unclosed\n", r"not valid YAML at line \d+"),
    ],
    ids=[
        "no-id",
        "no-url",
        "duplicate-id",
        "bad-id",
        "not-http",
        "zero-interval",
        "negative-interval",
        "text-interval",
        "unknown-field",
        "not-a-mapping",
        "no-cameras-key",
        "empty-list",
        "yaml-syntax",
    ],
)
def test_load_cameras_errors(tmp_path, text, message):
    path = tmp_path / "cams.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as caught:
        load_cameras(path)
    assert str(path) in str(caught.value)


def test_load_cameras_reads_all_fields(tmp_path):
    path = tmp_path / "cams.yaml"
    path.write_text(
        "cameras:\n" + GOOD + '    name: "A st"\n    source: DOT\n    license: PD\n'
        "    interval: 30\n",
        encoding="utf-8",
    )
    assert load_cameras(path) == [
        Camera("a", "https://example.org/a.jpg", "A st", "DOT", "PD", 30),
    ]


def test_example_camera_list_is_valid_and_honest():
    cameras = load_cameras(EXAMPLE_CAMERAS)
    assert 5 <= len(cameras) <= 10
    for camera in cameras:
        assert camera.url.startswith("https://") and camera.name and camera.source, camera.id
        assert camera.license, f"{camera.id}: state the terms of use"
    wildfire = [c for c in cameras if "wildfire" in c.id or "fire" in c.name.lower()]
    assert 1 <= len(wildfire) <= 2
    assert "may change" in EXAMPLE_CAMERAS.read_text(encoding="utf-8")


# --- cameras whose terms do not allow automated fetching (fetch: false) ---------------------


def test_camera_marked_fetch_false_is_listed_but_never_requested(server, tmp_path):
    cameras = [
        *cams(server, "/cam/new/a"),
        Camera(id="no-bots", url=server.url("/cam/new/forbidden"), source="Fire net", fetch=False),
    ]
    out = tmp_path / "out"
    report = scrape(cameras, out, rounds=2, **FAST)

    assert not server.requests_for("/cam/new/forbidden")
    rows = read_manifest(out)
    assert rows == report.rows
    skipped = [row for row in rows if row["camera_id"] == "no-bots"]
    assert len(skipped) == 1, "one row per run, not per round"
    (row,) = skipped
    assert row["outcome"] == "terms_disallowed" and row["outcome"] in OUTCOMES
    assert "terms do not allow automated fetching" in row["error"]
    assert row["image"] == "" and row["http_status"] == "" and row["source"] == "Fire net"
    assert not (out / "no-bots").exists()
    assert report.counts["terms_disallowed"] == 1 and report.counts["saved"] == 2
    assert report.fetches == 2, "a camera never requested is no fetch"
    assert "2 fetches" in report.summary() and "terms_disallowed=1" in report.summary()


def test_only_disallowed_cameras_send_no_request_at_all(server, tmp_path):
    cameras = [
        Camera(id="fire-a", url=server.url("/cam/new/a"), fetch=False),
        Camera(id="fire-b", url=server.url("/cam/new/b"), fetch=False),
    ]
    out = tmp_path / "out"
    first = scrape(cameras, out, rounds=3, **FAST)
    second = scrape(cameras, out, rounds=3, **FAST)  # a later run lists them again
    assert server.log == [], "not even robots.txt is asked for"
    assert first.fetches == second.fetches == 0 and not first.saved
    assert [r["outcome"] for r in read_manifest(out)] == ["terms_disallowed"] * 4


def test_load_cameras_reads_the_fetch_flag(tmp_path):
    path = tmp_path / "cams.yaml"
    path.write_text(
        "cameras:\n" + GOOD + "    fetch: false\n  - id: b\n    url: https://example.org/b.jpg\n",
        encoding="utf-8",
    )
    first, second = load_cameras(path)
    assert first.fetch is False and second.fetch is True


@pytest.mark.parametrize("value", ["maybe", "0", "'false'", "null"])
def test_load_cameras_refuses_a_fetch_flag_that_is_not_true_or_false(tmp_path, value):
    path = tmp_path / "cams.yaml"
    path.write_text("cameras:\n" + GOOD + f"    fetch: {value}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"camera #0 \('a'\): field 'fetch': .* true or false"):
        load_cameras(path)
    with pytest.raises(ValueError, match="field 'fetch'"):
        Camera(id="a", url="https://example.org/a.jpg", fetch="no")  # type: ignore[arg-type]


def test_example_list_names_alertwest_and_never_fetches_it():
    cameras = {camera.id: camera for camera in load_cameras(EXAMPLE_CAMERAS)}
    alertwest = [c for c in cameras.values() if "alertwest" in c.url]
    assert len(alertwest) == 1
    (camera,) = alertwest
    assert camera.fetch is False and "ALERTWest" in camera.source
    assert "automated fetching" in camera.license and "credit" in camera.license
    alertca = [c for c in cameras.values() if "alertcalifornia" in c.url]
    assert len(alertca) == 1 and alertca[0].fetch and "credit" in alertca[0].license
    for camera in cameras.values():
        assert camera.fetch or "automated" in camera.license, camera.id
