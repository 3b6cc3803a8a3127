"""Local "public cameras" for practising snapshot scraping offline.

:class:`DemoCameras` serves synthetic camera snapshots over HTTP on the loopback interface, the
way a transport department publishes them: one JPEG URL per camera that shows a newer frame
every few seconds, an ``ETag``, a ``robots.txt``, and one camera that is "offline" and returns a
grey placeholder. The scraper of the course collects from it exactly as it would from real URLs.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from tcv_helpers.data.synth import draw_frame, make_camera, random_vehicles
from tcv_helpers.io import atomic_write_text

HOST = "127.0.0.1"


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


class DemoCameras:
    """Synthetic cameras published on ``http://127.0.0.1:<port>/cams/<id>.jpg``.

    Use it as a context manager; the server stops on exit::

        with DemoCameras(cameras=3, refresh=0.5) as demo:
            demo.write_camera_list("cameras.yaml")

    Args:
        cameras: Number of live cameras.
        refresh: Seconds after which a camera shows a new frame.
        offline: Also publish one camera that only returns a "camera offline" placeholder.
        seed: Seed of the synthetic cameras.
        size: Frame width and height.
    """

    def __init__(
        self,
        cameras: int = 3,
        *,
        refresh: float = 1.0,
        offline: bool = True,
        seed: int = 0,
        size: tuple[int, int] = (480, 270),
    ) -> None:
        if cameras < 1 or refresh <= 0:
            raise ValueError("cameras must be at least 1 and refresh positive.")
        self.refresh = refresh
        self.seed = seed
        self.size = size
        self.ids = [f"demo-{i:02d}" for i in range(cameras)]
        self.offline_id = "demo-offline" if offline else None
        self.requests: list[tuple[float, str, str]] = []
        self._started = time.monotonic()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (the server must be running)."""
        if self._server is None:
            raise RuntimeError("DemoCameras is not running: use it in a `with` block.")
        return f"http://{HOST}:{self._server.server_address[1]}"

    def url(self, camera_id: str) -> str:
        """The snapshot URL of a camera."""
        return f"{self.base_url}/cams/{camera_id}.jpg"

    def frame(self, index: int, tick: int) -> bytes:
        """The JPEG that camera ``index`` shows during refresh period ``tick``."""
        import numpy as np

        camera = make_camera(index, seed=self.seed, width=self.size[0], height=self.size[1])
        rng = np.random.default_rng([self.seed, index, tick])
        return _jpeg(draw_frame(camera, random_vehicles(camera, rng, 8), noise_seed=tick).image)

    def _respond(self, path: str, headers) -> tuple[int, dict[str, str], bytes]:
        if path == "/robots.txt":
            return 200, {"Content-Type": "text/plain"}, b"User-agent: *\nDisallow: /private/\n"
        name = path.rsplit("/", 1)[-1].removesuffix(".jpg")
        if path.startswith("/cams/") and name == self.offline_id:
            grey = Image.new("RGB", self.size, (128, 128, 128))
            return 200, {"Content-Type": "image/jpeg"}, _jpeg(grey)
        if not path.startswith("/cams/") or name not in self.ids:
            return 404, {"Content-Type": "text/html"}, b"<html><body>No such camera</body></html>"
        tick = int((time.monotonic() - self._started) / self.refresh)
        etag = '"' + hashlib.sha1(f"{name}-{tick}".encode()).hexdigest()[:16] + '"'
        if headers.get("If-None-Match") == etag:
            return 304, {"ETag": etag}, b""
        body = self.frame(self.ids.index(name), tick)
        return 200, {"Content-Type": "image/jpeg", "ETag": etag, "Cache-Control": "no-cache"}, body

    def __enter__(self) -> DemoCameras:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, headers, body = owner._respond(self.path, self.headers)
                with owner._lock:
                    owner.requests.append(
                        (time.monotonic(), self.path, self.headers.get("User-Agent", ""))
                    )
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                """Quiet: the scraper's manifest is the log."""

        self._server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def camera_list(self) -> dict:
        """The cameras as a camera-list mapping (the YAML format ``tcv data scrape`` reads)."""
        ids: Sequence[str] = [*self.ids, *([self.offline_id] if self.offline_id else [])]
        return {
            "cameras": [
                {
                    "id": cid,
                    "url": self.url(cid),
                    "name": f"Demo camera {cid}",
                    "source": "tcv_helpers.data.democam (synthetic, on this machine)",
                    "license": "CC0",
                    "interval": self.refresh,
                }
                for cid in ids
            ]
        }

    def write_camera_list(self, path: str | Path) -> Path:
        """Writes :meth:`camera_list` as YAML (atomically) and returns the path."""
        import yaml

        return atomic_write_text(Path(path), yaml.safe_dump(self.camera_list(), sort_keys=False))
