"""Prometheus for the service (notebook 09): its config and a server on loopback.

The service (:mod:`tcv_helpers.deploy.app`) exports its metrics on ``/metrics``; this module
runs a real Prometheus next to it, the way it runs in production, only smaller: one scrape job
``tcv`` every second, the course's alert and recording rules, a throw-away data folder, a
free loopback port.

* :func:`prometheus_status` says whether Prometheus is installed here (and how to install it);
  :func:`write_config` writes a ``prometheus.yml``; :func:`start_prometheus` starts the server
  and returns a :class:`PrometheusHandle` (a context manager) whose methods query it.
* :func:`monitoring_files` finds the rules (``alerts.yml``) and the Grafana dashboard shipped
  with the package.
* What Prometheus stored is read back through its HTTP API by
  :mod:`tcv_helpers.monitor.prometheus_query`; ``promtool`` checks and the dashboard's queries
  are in :mod:`tcv_helpers.monitor.prometheus_rules`.

The API key never goes into a generated file: the config names a ``credentials_file`` that
only its owner may read, and :class:`PrometheusHandle` deletes it when it stops.

Example::

    from tcv_helpers.monitor import prometheus as prom

    status = prom.prometheus_status()  # status.available, status.message
    with serve_in_background(model, api_key=key) as server, \\
            prom.start_prometheus(server.url, api_key=key) as handle:
        ...  # send traffic
        handle.wait_for_scrape()
        handle.query('sum by (status) (tcv_requests_total{endpoint="/v1/detect"})')
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from tcv_helpers.env import Availability, stop_process
from tcv_helpers.monitor.prometheus_query import (
    JOB,
    PrometheusError,
    PrometheusUnavailable,
    Sample,
    Series,
    Target,
    is_ready,
    query,
    query_range,
    query_value,
    targets,
    to_duration,
    wait_for,
    wait_for_scrape,
)

#: How to install Prometheus and promtool (shown when they are missing).
INSTALL_HINT = (
    "install it with `sudo apt-get install prometheus` (Debian, Ubuntu; it brings promtool), or "
    "unpack the official tarball from https://prometheus.io/download/ and put `prometheus` and "
    "`promtool` on PATH"
)
#: Scrape (and rule evaluation) interval of the loopback set-up: a notebook sees data at once.
SCRAPE_INTERVAL = "1s"
#: Environment variable holding the service's API key (as in :mod:`tcv_helpers.deploy.app`).
API_KEY_ENV = "TCV_API_KEY"
#: Where the package keeps the rules and the dashboard.
MONITORING_DIR = Path(__file__).resolve().parent.parent / "resources" / "monitoring"


class MonitoringFiles(NamedTuple):
    """The monitoring files shipped with the package.

    Attributes:
        alerts: Prometheus alert and recording rules (``alerts.yml``).
        dashboard: The Grafana dashboard (``grafana-dashboard.json``) to import.
    """

    alerts: Path
    dashboard: Path


# --------------------------------------------------------------------------------------------
# Installation and the package's files
# --------------------------------------------------------------------------------------------


def find_executable(name: str = "prometheus") -> Path:
    """The path of ``prometheus`` or ``promtool``: on PATH, else in ``/usr/bin``.

    Args:
        name: ``prometheus`` or ``promtool``.

    Returns:
        The executable.

    Raises:
        PrometheusUnavailable: If it is not installed (the message says how to install it).
    """
    found = shutil.which(name)
    if found:
        return Path(found)
    fallback = Path("/usr/bin") / name
    if fallback.is_file() and os.access(fallback, os.X_OK):
        return fallback
    raise PrometheusUnavailable(f"{name} is not installed here; {INSTALL_HINT}.")


def prometheus_status() -> Availability:
    """Whether Prometheus is installed here, and one sentence saying so.

    Returns:
        ``.available`` and ``.message``: the message names the version and says whether
        ``promtool`` is there too; when Prometheus is missing it says how to install it.
    """
    try:
        executable = find_executable("prometheus")
    except PrometheusUnavailable as exc:
        return Availability(False, str(exc))
    try:
        answer = subprocess.run(
            [str(executable), "--version"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Availability(False, f"{executable} does not run ({exc}); {INSTALL_HINT}.")
    words = (answer.stdout + answer.stderr).split()
    version = words[2] if len(words) > 2 and words[:2] == ["prometheus,", "version"] else "?"
    try:
        promtool = f"promtool too ({find_executable('promtool')})"
    except PrometheusUnavailable:
        promtool = "promtool is missing (rule checks will not run)"
    return Availability(True, f"Prometheus {version} is installed ({executable}); {promtool}.")


def monitoring_files() -> MonitoringFiles:
    """The alert rules and the Grafana dashboard that come with the package.

    Returns:
        Their paths.

    Raises:
        FileNotFoundError: If the installed package lacks them (a broken install).
    """
    files = MonitoringFiles(
        alerts=MONITORING_DIR / "alerts.yml", dashboard=MONITORING_DIR / "grafana-dashboard.json"
    )
    for path in files:
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: reinstall tcv_helpers (pip install -e . in the repository)."
            )
    return files


# --------------------------------------------------------------------------------------------
# The configuration
# --------------------------------------------------------------------------------------------


def _split_target(target: str) -> tuple[str, str, str]:
    """``(scheme, host:port, path prefix)`` of ``http://host:port[/prefix]`` or ``host:port``."""
    text = str(target).strip().rstrip("/")
    parts = urlsplit(text if "://" in text else f"http://{text}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        raise ValueError(
            f"target must be the service's URL with a port, like http://127.0.0.1:8000 (the "
            f"url of serve_in_background's handle), got {target!r}."
        )
    if parts.path.endswith("/metrics"):
        raise ValueError(f"target is the service's base URL, without /metrics: got {target!r}.")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return parts.scheme, f"{host}:{port}", parts.path


def write_config(
    path: str | os.PathLike,
    target: str,
    *,
    api_key_file: str | os.PathLike | None = None,
    rules: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    job: str = JOB,
    scrape_interval: str | float = SCRAPE_INTERVAL,
) -> Path:
    """Writes a ``prometheus.yml`` that scrapes the service (atomically).

    Args:
        path: The file to write.
        target: The service's base URL (``http://127.0.0.1:8000``) or ``host:port``.
        api_key_file: A file holding the service's API key, sent as ``Authorization: Bearer``
            (Prometheus reads it at every scrape; the key itself is never in the config).
        rules: Rule files to load (None: the package's ``alerts.yml``; ``[]``: none).
        job: The scrape job's name (the rules select ``job="tcv"``).
        scrape_interval: How often to scrape and evaluate the rules (``1s`` on loopback; 15 s
            to 1 min is usual in production).

    Returns:
        The path written.

    Raises:
        ValueError: If the target or the interval is malformed.
        FileNotFoundError: If the key file or a rule file does not exist.
    """
    import yaml

    from tcv_helpers.io import atomic_write_text

    scheme, address, prefix = _split_target(target)
    interval = to_duration(scrape_interval, name="scrape_interval")
    if rules is None:
        rules = [monitoring_files().alerts]
    elif isinstance(rules, str | os.PathLike):
        rules = [rules]
    rule_paths = [Path(r).resolve() for r in rules]
    for rule in rule_paths:
        if not rule.is_file():
            raise FileNotFoundError(f"Rule file {rule} does not exist.")
    scrape: dict[str, Any] = {
        "job_name": job,
        "scrape_interval": interval,
        "scrape_timeout": interval,
        "scheme": scheme,
        "metrics_path": f"{prefix}/metrics",
        "static_configs": [{"targets": [address]}],
    }
    if api_key_file is not None:
        key_file = Path(api_key_file).resolve()
        if not key_file.is_file():
            raise FileNotFoundError(f"API key file {key_file} does not exist.")
        scrape["authorization"] = {"type": "Bearer", "credentials_file": str(key_file)}
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(r) for r in rule_paths],
        "scrape_configs": [scrape],
    }
    header = (
        "# Written by tcv_helpers.monitor.prometheus.write_config: Prometheus scraping the detection\n"
        "# service (tcv serve). Run: prometheus --config.file=<this file>\n"
    )
    return atomic_write_text(path, header + yaml.safe_dump(config, sort_keys=False))


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _write_secret(path: Path, secret: str) -> Path:
    """Writes ``secret`` to a new file only its owner may read."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secret)
    return path


def _shutdown(
    process: subprocess.Popen, secret: Path | None, workdir: Path, remove_workdir: bool
) -> None:
    stop_process(process)
    if secret is not None:
        secret.unlink(missing_ok=True)
    if remove_workdir:
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class PrometheusHandle:
    """A Prometheus server started by :func:`start_prometheus` (also a context manager).

    Its query methods are the functions of :mod:`tcv_helpers.monitor.prometheus_query`
    (``query``, ``query_value``, ``query_range``, ``targets``, ``wait_for_scrape``,
    ``wait_for``) with this server's URL.

    Attributes:
        url: Its base URL, e.g. ``http://127.0.0.1:40123`` (the web UI too).
        pid: The server's process id.
        workdir: Its folder: ``prometheus.yml``, ``data/``, ``prometheus.log``.
        config: The configuration file it runs.
        log: Its log file.
    """

    url: str
    pid: int
    workdir: Path
    config: Path
    log: Path
    _stop: Callable[[], None] = field(default=lambda: None, repr=False)

    def stop(self) -> None:
        """Stops the server, deletes the key file and a temporary folder (idempotent)."""
        self._stop()

    def __enter__(self) -> PrometheusHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def query(self, promql: str, **kwargs: Any) -> list[Sample]:
        """:func:`query` on this server."""
        return query(self.url, promql, **kwargs)

    def query_value(self, promql: str, **kwargs: Any) -> float:
        """:func:`query_value` on this server."""
        return query_value(self.url, promql, **kwargs)

    def query_range(self, promql: str, **kwargs: Any) -> list[Series]:
        """:func:`query_range` on this server."""
        return query_range(self.url, promql, **kwargs)

    def targets(self, **kwargs: Any) -> list[Target]:
        """:func:`targets` of this server."""
        return targets(self.url, **kwargs)

    def wait_for_scrape(self, **kwargs: Any) -> list[Target]:
        """:func:`wait_for_scrape` on this server."""
        return wait_for_scrape(self.url, **kwargs)

    def wait_for(self, promql: str, **kwargs: Any) -> list[Sample]:
        """:func:`wait_for` on this server."""
        return wait_for(self.url, promql, **kwargs)


def start_prometheus(
    target: str | None = None,
    *,
    config: str | os.PathLike | None = None,
    api_key: str | None = None,
    rules: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    job: str = JOB,
    scrape_interval: str | float = SCRAPE_INTERVAL,
    host: str = "127.0.0.1",
    port: int | None = None,
    workdir: str | os.PathLike | None = None,
    executable: str | os.PathLike | None = None,
    startup_timeout: float = 30.0,
) -> PrometheusHandle:
    """Starts Prometheus on loopback, scraping the service, and returns once it is ready.

    Give either ``target`` (the config is written for you, with the key in a private
    ``credentials_file``) or ``config`` (your own ``prometheus.yml``, run as it is).

    Args:
        target: The service's base URL (``server.url`` of ``serve_in_background``).
        config: An existing configuration file instead.
        api_key: The service's key (None: ``TCV_API_KEY`` from the environment; ``""``: none).
        rules: Rule files (None: the package's ``alerts.yml``; ``[]``: none).
        job: The scrape job's name.
        scrape_interval: How often to scrape and evaluate the rules.
        host: Interface Prometheus listens on (loopback: nobody else can read it).
        port: Its TCP port (default: a free one).
        workdir: Folder for the config, data and log (default: a temporary folder, deleted by
            :meth:`PrometheusHandle.stop`; a folder given is kept).
        executable: The ``prometheus`` binary (default: on PATH, else ``/usr/bin``).
        startup_timeout: Seconds to wait for ``/-/ready``.

    Returns:
        The running server's handle.

    Raises:
        PrometheusUnavailable: If Prometheus is not installed (the message says how to get it).
        PrometheusError: If it exits or is not ready in time (the message ends with its log).
        ValueError: If both or neither of ``target`` and ``config`` are given, or a key is
            given with ``config``.
    """
    if (target is None) == (config is None):
        raise ValueError("Give either target (the service's URL) or config (a prometheus.yml).")
    if config is not None and api_key:
        raise ValueError(
            "With your own config, put the key in a file and name it in the config's "
            "authorization.credentials_file; api_key is for configs written here."
        )
    binary = Path(executable) if executable is not None else find_executable("prometheus")
    if not binary.is_file():
        raise PrometheusUnavailable(f"{binary} does not exist; {INSTALL_HINT}.")
    temporary = workdir is None
    folder = Path(tempfile.mkdtemp(prefix="tcv-prometheus-") if temporary else workdir)
    folder.mkdir(parents=True, exist_ok=True)
    secret = None
    try:
        if config is None:
            key = os.environ.get(API_KEY_ENV, "") if api_key is None else api_key
            if key:
                secret = folder / "api_key"
                secret.unlink(missing_ok=True)
                _write_secret(secret, key)
            config_path = write_config(
                folder / "prometheus.yml", target, api_key_file=secret, rules=rules, job=job,
                scrape_interval=scrape_interval,
            )  # fmt: skip
        else:
            config_path = Path(config).resolve()
            if not config_path.is_file():
                raise FileNotFoundError(f"Prometheus config {config_path} does not exist.")
    except BaseException:
        if secret is not None:
            secret.unlink(missing_ok=True)
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    port = port or _free_port(host)
    url = f"http://{host}:{port}"
    log_path = folder / "prometheus.log"
    command = [
        str(binary),
        f"--config.file={config_path}",
        f"--storage.tsdb.path={folder / 'data'}",
        f"--web.listen-address={host}:{port}",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    handle = PrometheusHandle(
        url=url, pid=process.pid, workdir=folder, config=config_path, log=log_path
    )
    # Stops the server when the handle is stopped, collected, or the interpreter exits.
    handle._stop = weakref.finalize(handle, _shutdown, process, secret, folder, temporary)
    deadline = time.monotonic() + startup_timeout
    while True:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            handle.stop()
            raise PrometheusError(
                f"Prometheus exited with status {process.returncode} at start; its log ends:\n"
                f"{tail}"
            )
        if is_ready(url):
            return handle
        if time.monotonic() > deadline:
            tail = log_path.read_text(errors="replace")[-3000:]
            handle.stop()
            raise PrometheusError(
                f"Prometheus was not ready on {url} within {startup_timeout:.0f} s; its log "
                f"ends:\n{tail}"
            )
        time.sleep(0.1)
