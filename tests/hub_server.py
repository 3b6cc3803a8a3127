"""A loopback HTTP server for a folder: the course asset hub as tests and CI see it.

It serves the files of one folder on ``127.0.0.1`` (a free port), quietly, from a daemon thread,
and can misbehave on purpose for the failure tests:

- ``cut``: the next N responses announce the full ``Content-Length`` but send only half of the
  bytes and close the connection (a download cut short);
- ``corrupt``: every response sends bytes of the right length but the wrong content.

Example:
    >>> with HubServer(folder) as hub:
    ...     os.environ["TCV_ASSETS_URL"] = hub.url
    ...     hub.cut = 1  # the next download is cut short
"""

from __future__ import annotations

import functools
import socket
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class _Handler(SimpleHTTPRequestHandler):
    """Serves the folder; consults the server's ``cut`` and ``corrupt`` settings per request."""

    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: no line per request on standard error."""

    def do_GET(self) -> None:
        hub = self.server.hub
        with hub.lock:
            hub.requests.append(self.path)
            cut = hub.cut > 0
            if cut:
                hub.cut -= 1
        if not (cut or hub.corrupt):
            super().do_GET()
            return
        file = Path(self.translate_path(self.path))
        if not file.is_file():
            self.send_error(404, "File not found")
            return
        data = file.read_bytes()
        if hub.corrupt:
            data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if cut:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    hub: HubServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: a client that hangs up (or a response cut on purpose) is no test failure."""


class HubServer:
    """A folder served on loopback HTTP; a context manager, or :meth:`start` and :meth:`stop`.

    Attributes:
        folder: The folder served.
        cut: How many of the next responses are cut short (counts down).
        corrupt: Serve wrong bytes (of the right length) while True.
        requests: The paths asked for, in order.
    """

    def __init__(self, folder: str | Path, *, cut: int = 0, corrupt: bool = False) -> None:
        self.folder = Path(folder)
        self.cut = cut
        self.corrupt = corrupt
        self.requests: list[str] = []
        self.lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port it listens on (only while started)."""
        if self._server is None:
            raise RuntimeError("The hub server is not started.")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """The base URL, ending in ``/``."""
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> HubServer:
        """Starts serving from a daemon thread; returns itself."""
        handler = functools.partial(_Handler, directory=str(self.folder))
        self._server = _Server(("127.0.0.1", 0), handler)
        self._server.hub = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="tcv-test-hub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving and closes the port (idempotent)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def closed_port_url() -> str:
    """A loopback URL on which nothing listens (a port that was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"
