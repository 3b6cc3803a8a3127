"""The container's health check: asks the running service's ``/healthz`` on the port it serves.

The Docker image's ``HEALTHCHECK`` runs ``python -m tcv_helpers.deploy.healthcheck``. It reads
the service's own command line (process 1 in the container: ``--port``, ``--host``), so a
service started with ``--port 9000`` is checked on 9000, not on a port written into the image.
Standard library only: the image has no torch and needs nothing more for this.
"""

from __future__ import annotations

import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path

DEFAULT_PORT = 8000
#: Where to ask when the service listens on every interface.
WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def _option(argv: Sequence[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    return None


def health_url(argv: Sequence[str]) -> str:
    """The ``/healthz`` URL of a service started with these arguments.

    Example:
        >>> health_url(["python", "-m", "tcv_helpers.deploy.server", "--host", "0.0.0.0", "--port", "9000"])
        'http://127.0.0.1:9000/healthz'
    """
    port = int(_option(argv, "--port") or DEFAULT_PORT)
    host = _option(argv, "--host") or "127.0.0.1"
    host = WILDCARDS.get(host, host)
    if ":" in host:
        host = f"[{host.strip('[]')}]"
    return f"http://{host}:{port}/healthz"


def service_argv(pid: int = 1) -> list[str]:
    """The command line of a process (the service is process 1 in its container)."""
    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status 0 when ``/healthz`` answers 200 within 2 s, else 1 (Docker's convention)."""
    try:
        url = health_url(service_argv() if argv is None else argv)
        with urllib.request.urlopen(url, timeout=2) as answer:
            return 0 if answer.status == 200 else 1
    except (OSError, ValueError):
        return 1


if __name__ == "__main__":
    sys.exit(main())
