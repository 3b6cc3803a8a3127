"""Prometheus for the service (notebook 09): its config, a server on loopback, its query API.

The service (:mod:`tcv_helpers.deploy.serve`) exports its metrics on ``/metrics``; this module runs a
real Prometheus next to it, the way it runs in production, only smaller: one scrape job
``tcv`` every second, the course's alert and recording rules, a throw-away data folder, a
free loopback port. What Prometheus stored is read back through its HTTP API as plain Python
values.

* :func:`prometheus_status` says whether Prometheus is installed here (and how to install it);
  :func:`write_config` writes a ``prometheus.yml``; :func:`start_prometheus` starts the server
  and returns a :class:`PrometheusHandle` (a context manager).
* :func:`query`, :func:`query_value` and :func:`query_range` run PromQL through
  ``/api/v1/query`` and ``/api/v1/query_range``; :func:`targets`, :func:`wait_for_scrape` and
  :func:`wait_for` watch the scrapes and the rules.
* :func:`check_rules`, :func:`run_rule_tests` and :func:`check_config` run ``promtool``;
  :func:`monitoring_files` finds the rules (``alerts.yml``) and the Grafana dashboard shipped
  with the package, and :func:`check_dashboard` checks the dashboard's queries against the
  metrics a running service exports.

The API key never goes into a generated file: the config names a ``credentials_file`` that
only its owner may read, and :class:`PrometheusHandle` deletes it when it stops.

Example::

    ok, why = tcv.prometheus.prometheus_status()
    with serve_in_background(model, api_key=key) as server, \\
            tcv.prometheus.start_prometheus(server.url, api_key=key) as prom:
        ...  # send traffic
        prom.wait_for_scrape()
        prom.query('sum by (status) (tcv_requests_total{endpoint="/v1/detect"})')
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from tcv_helpers.env import stop_process

if TYPE_CHECKING:
    import pandas as pd

#: How to install Prometheus and promtool (shown when they are missing).
INSTALL_HINT = (
    "install it with `sudo apt-get install prometheus` (Debian, Ubuntu; it brings promtool), or "
    "unpack the official tarball from https://prometheus.io/download/ and put `prometheus` and "
    "`promtool` on PATH"
)
#: The scrape job of the service; the rules in ``alerts.yml`` select ``job="tcv"``.
JOB = "tcv"
#: Scrape (and rule evaluation) interval of the loopback set-up: a notebook sees data at once.
SCRAPE_INTERVAL = "1s"
#: Environment variable holding the service's API key (as in :mod:`tcv_helpers.deploy.serve`).
API_KEY_ENV = "TCV_API_KEY"
#: Where the package keeps the rules and the dashboard.
MONITORING_DIR = Path(__file__).resolve().parent.parent / "resources" / "monitoring"

_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


class PrometheusError(RuntimeError):
    """Prometheus did not do what was asked (the message says what it answered)."""


class PrometheusUnavailable(PrometheusError):
    """Prometheus or promtool is not installed, or no Prometheus answers at the URL."""


class PrometheusQueryError(PrometheusError, ValueError):
    """Prometheus refused a PromQL query (the message names the query)."""


class RulesError(PrometheusError, ValueError):
    """``promtool`` found a problem in a rules, rule-test or config file (message: its output)."""


class MonitoringFiles(NamedTuple):
    """The monitoring files shipped with the package.

    Attributes:
        alerts: Prometheus alert and recording rules (``alerts.yml``).
        dashboard: The Grafana dashboard (``grafana-dashboard.json``) to import.
    """

    alerts: Path
    dashboard: Path


@dataclass(frozen=True)
class Sample:
    """One value of an instant query.

    Attributes:
        labels: The series' labels (``__name__`` included when the result keeps it).
        value: The value (NaN and infinities as floats).
        timestamp: When it was evaluated, in seconds since the epoch.
    """

    labels: dict[str, str]
    value: float
    timestamp: float


@dataclass(frozen=True)
class Series:
    """One series of a range query.

    Attributes:
        labels: The series' labels.
        timestamps: Evaluation times, in seconds since the epoch.
        values: The value at each time.
    """

    labels: dict[str, str]
    timestamps: list[float]
    values: list[float]


@dataclass(frozen=True)
class Target:
    """One scrape target as Prometheus sees it (``/api/v1/targets``).

    Attributes:
        job: The scrape job.
        instance: The ``instance`` label (``host:port``).
        url: The URL scraped.
        health: ``up``, ``down`` or ``unknown`` (not scraped yet).
        last_error: Why the last scrape failed (``""`` when it did not).
        last_scrape: When the last scrape started, in seconds since the epoch (NaN: never).
    """

    job: str
    instance: str
    url: str
    health: str
    last_error: str
    last_scrape: float


@dataclass(frozen=True)
class DashboardQuery:
    """One PromQL query of a Grafana dashboard.

    Attributes:
        panel: The panel's title.
        ref_id: The query's letter in the panel (``A``, ``B``, ...).
        expr: The PromQL, with Grafana's variables (``$job``, ``$__rate_interval``) as written.
    """

    panel: str
    ref_id: str
    expr: str


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


def prometheus_status() -> tuple[bool, str]:
    """Whether Prometheus is installed here, and one sentence saying so.

    Returns:
        ``(available, sentence)``: the sentence names the version and says whether ``promtool``
        is there too; when Prometheus is missing it says how to install it.
    """
    try:
        executable = find_executable("prometheus")
    except PrometheusUnavailable as exc:
        return False, str(exc)
    try:
        answer = subprocess.run(
            [str(executable), "--version"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"{executable} does not run ({exc}); {INSTALL_HINT}."
    words = (answer.stdout + answer.stderr).split()
    version = words[2] if len(words) > 2 and words[:2] == ["prometheus,", "version"] else "?"
    try:
        promtool = f"promtool too ({find_executable('promtool')})"
    except PrometheusUnavailable:
        promtool = "promtool is missing (rule checks will not run)"
    return True, f"Prometheus {version} is installed ({executable}); {promtool}."


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


def _duration(value: str | float, *, name: str) -> str:
    """A Prometheus duration (``1s``, ``500ms``) from a string or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a duration such as '1s', got {value!r}.")
    if isinstance(value, int | float):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be positive, got {value}.")
        millis = round(value * 1000)
        return f"{millis // 1000}s" if millis % 1000 == 0 else f"{max(millis, 1)}ms"
    if not _DURATION.match(str(value)):
        raise ValueError(
            f"{name} must be a Prometheus duration such as '1s', '500ms' or '1m', got {value!r}."
        )
    return str(value)


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
    interval = _duration(scrape_interval, name="scrape_interval")
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

    The query methods are :func:`query`, :func:`query_value`, :func:`query_range`,
    :func:`targets`, :func:`wait_for_scrape` and :func:`wait_for` with this server's URL.

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
        if _ready(url):
            return handle
        if time.monotonic() > deadline:
            tail = log_path.read_text(errors="replace")[-3000:]
            handle.stop()
            raise PrometheusError(
                f"Prometheus was not ready on {url} within {startup_timeout:.0f} s; its log "
                f"ends:\n{tail}"
            )
        time.sleep(0.1)


def _ready(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/-/ready", timeout=2, trust_env=not _direct(url)).status_code == 200
    except httpx.HTTPError:
        return False


# --------------------------------------------------------------------------------------------
# The HTTP API
# --------------------------------------------------------------------------------------------


def _direct(url: str) -> bool:
    """Whether ``url`` is on loopback, where an HTTP proxy from the environment must not apply."""
    return urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1")


def _api(base_url: str, path: str, params: Mapping[str, Any], *, timeout: float, what: str) -> Any:
    """GET ``base_url + path`` and return the ``data`` of Prometheus' JSON answer."""
    import httpx

    base = base_url.rstrip("/")
    try:
        answer = httpx.get(
            f"{base}{path}", params=dict(params), timeout=timeout, trust_env=not _direct(base)
        )
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise PrometheusUnavailable(
            f"No Prometheus answers at {base} ({exc}): start one with start_prometheus(...)."
        ) from None
    except httpx.HTTPError as exc:
        raise PrometheusError(f"{what} at {base} failed: {exc}") from None
    try:
        body = answer.json()
    except ValueError:
        raise PrometheusError(
            f"{what}: {base}{path} answered {answer.status_code} with no Prometheus JSON "
            f"({answer.text[:200]!r}); is this a Prometheus server?"
        ) from None
    if body.get("status") != "success":
        kind, error = body.get("errorType", "error"), body.get("error", answer.text[:300])
        if answer.status_code in (400, 422):
            raise PrometheusQueryError(f"Prometheus refused {what}: {kind}: {error}")
        raise PrometheusError(f"{what} failed at {base} ({answer.status_code}): {kind}: {error}")
    return body.get("data")


def _timestamp(value: float | datetime | None) -> float:
    if value is None:
        return time.time()
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


def query(
    base_url: str, promql: str, *, at: float | datetime | None = None, timeout: float = 10.0
) -> list[Sample]:
    """Runs an instant PromQL query (``/api/v1/query``).

    Args:
        base_url: Prometheus' URL (``handle.url``).
        promql: The expression, e.g. ``sum by (status) (tcv_requests_total)``.
        at: Evaluation time (seconds since the epoch or a datetime; default: now).
        timeout: Seconds to wait for the answer.

    Returns:
        One :class:`Sample` per series (a scalar result is one sample without labels).

    Raises:
        PrometheusQueryError: If Prometheus refuses the query (the message names it and says
            why), or it returns a range vector or a string.
        PrometheusUnavailable: If no Prometheus answers at ``base_url``.
    """
    what = f"the query {promql!r}"
    data = _api(
        base_url, "/api/v1/query", {"query": promql, "time": _timestamp(at)},
        timeout=timeout, what=what,
    )  # fmt: skip
    kind, result = data.get("resultType"), data.get("result")
    if kind == "vector":
        return [
            Sample(labels=dict(item["metric"]), value=float(item["value"][1]),
                   timestamp=float(item["value"][0]))
            for item in result
        ]  # fmt: skip
    if kind == "scalar":
        return [Sample(labels={}, value=float(result[1]), timestamp=float(result[0]))]
    raise PrometheusQueryError(
        f"{what} returns a {kind}, not numbers at one time: use query_range for values over "
        "time, or wrap a range selector in a function such as rate(...) or max_over_time(...)."
    )


def query_table(
    base_url: str, queries: Mapping[str, str], *, timeout: float = 10.0
) -> pd.DataFrame:
    """Runs named PromQL queries and returns every sample as a row (query, labels, value).

    Args:
        base_url: Prometheus' URL.
        queries: Name -> PromQL.
        timeout: Seconds per query.

    Returns:
        A table with the columns ``query``, ``labels`` (as ``k=v`` text) and ``value``.

    Raises:
        PrometheusQueryError: If a query is not valid PromQL (its name and text in the message).
    """
    import pandas as pd

    rows = []
    for name, promql in queries.items():
        for sample in query(base_url, promql, timeout=timeout):
            labels = ", ".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            rows.append({"query": name, "labels": labels, "value": sample.value})
    return pd.DataFrame(rows, columns=["query", "labels", "value"])


def alert_rules(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """The alerts of a rules file (default: the course's ``alerts.yml``): name, expression,
    how long it must hold, severity and summary."""
    import pandas as pd
    import yaml

    source = Path(path) if path else monitoring_files().alerts
    groups = (yaml.safe_load(source.read_text(encoding="utf-8")) or {}).get("groups") or []
    rows = [
        {
            "alert": rule["alert"],
            "expr": " ".join(str(rule["expr"]).split()),
            "for": rule.get("for", "0s"),
            "severity": rule.get("labels", {}).get("severity", ""),
            "summary": rule.get("annotations", {}).get("summary", ""),
        }
        for group in groups
        for rule in group.get("rules") or []
        if "alert" in rule
    ]
    return pd.DataFrame(rows, columns=["alert", "expr", "for", "severity", "summary"])


def query_value(
    base_url: str,
    promql: str,
    *,
    at: float | datetime | None = None,
    default: float = math.nan,
    timeout: float = 10.0,
) -> float:
    """The one number an instant query returns (``sum(...)``, a scalar).

    Args:
        base_url: Prometheus' URL.
        promql: An expression returning at most one series.
        at: Evaluation time (default: now).
        default: Returned when the result is empty (no such series yet).
        timeout: Seconds to wait for the answer.

    Returns:
        The value.

    Raises:
        PrometheusQueryError: If the query is refused or returns several series.
        PrometheusUnavailable: If no Prometheus answers at ``base_url``.
    """
    samples = query(base_url, promql, at=at, timeout=timeout)
    if not samples:
        return default
    if len(samples) > 1:
        shown = ", ".join(str(s.labels) for s in samples[:3])
        raise PrometheusQueryError(
            f"the query {promql!r} returns {len(samples)} series ({shown}, ...), not one "
            "number: aggregate it, e.g. sum(...), or use query()."
        )
    return samples[0].value


def query_range(
    base_url: str,
    promql: str,
    *,
    start: float | datetime,
    end: float | datetime | None = None,
    step: float | str = 1.0,
    timeout: float = 10.0,
) -> list[Series]:
    """Runs a PromQL query over a time range (``/api/v1/query_range``), as a graph does.

    Args:
        base_url: Prometheus' URL.
        promql: The expression (instant-vector valued).
        start: First evaluation time (seconds since the epoch or a datetime).
        end: Last evaluation time (default: now).
        step: Seconds between evaluations, or a duration such as ``"15s"``.
        timeout: Seconds to wait for the answer.

    Returns:
        One :class:`Series` per series, its points in time order.

    Raises:
        ValueError: If ``end`` is before ``start`` or ``step`` is not positive.
        PrometheusQueryError: If Prometheus refuses the query (the message names it).
        PrometheusUnavailable: If no Prometheus answers at ``base_url``.
    """
    first, last = _timestamp(start), _timestamp(end)
    if last < first:
        raise ValueError(f"end ({last}) is before start ({first}).")
    if isinstance(step, str):
        step = _duration(step, name="step")
    elif not (math.isfinite(step) and step > 0):
        raise ValueError(f"step must be positive, got {step}.")
    what = f"the query {promql!r}"
    data = _api(
        base_url, "/api/v1/query_range",
        {"query": promql, "start": first, "end": last, "step": step},
        timeout=timeout, what=what,
    )  # fmt: skip
    return [
        Series(
            labels=dict(item["metric"]),
            timestamps=[float(t) for t, _ in item["values"]],
            values=[float(v) for _, v in item["values"]],
        )
        for item in data.get("result", [])
    ]


def _parse_time(text: str) -> float:
    """Seconds since the epoch from Go's RFC 3339 time (nanoseconds, ``Z`` or an offset)."""
    match = re.match(r"^(.*?T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text or "")
    if not match:
        return math.nan
    stamp, fraction, zone = match.groups()
    moment = datetime.fromisoformat(stamp + ("+00:00" if zone == "Z" else zone))
    if moment.year <= 1:  # Go's zero time: never scraped
        return math.nan
    return moment.replace(tzinfo=moment.tzinfo or timezone.utc).timestamp() + float(fraction or 0)


def targets(base_url: str, *, job: str | None = None, timeout: float = 10.0) -> list[Target]:
    """The active scrape targets and how their last scrape went (``/api/v1/targets``).

    Args:
        base_url: Prometheus' URL.
        job: Only this scrape job's targets (default: all).
        timeout: Seconds to wait for the answer.

    Returns:
        One :class:`Target` per target.

    Raises:
        PrometheusUnavailable: If no Prometheus answers at ``base_url``.
    """
    data = _api(
        base_url, "/api/v1/targets", {"state": "active"}, timeout=timeout, what="the targets"
    )
    found = []
    for item in data.get("activeTargets", []):
        labels = item.get("labels", {})
        if job is not None and labels.get("job") != job:
            continue
        found.append(
            Target(
                job=labels.get("job", ""),
                instance=labels.get("instance", ""),
                url=item.get("scrapeUrl", ""),
                health=item.get("health", "unknown"),
                last_error=item.get("lastError", ""),
                last_scrape=_parse_time(item.get("lastScrape", "")),
            )
        )
    return found


def wait_for_scrape(
    base_url: str,
    *,
    since: float | None = None,
    job: str = JOB,
    timeout: float = 30.0,
    require_up: bool = True,
) -> list[Target]:
    """Waits until every target of ``job`` was scraped after ``since``.

    Call it after sending traffic: the counters Prometheus holds then include that traffic.
    A freshly started Prometheus applies its targets after about 5 seconds, so the first scrape
    comes that late; later ones follow the scrape interval.

    Args:
        base_url: Prometheus' URL.
        since: Seconds since the epoch (default: now).
        job: The scrape job.
        timeout: Seconds to wait.
        require_up: Raise if a scrape failed (a wrong API key gives ``401 Unauthorized``).

    Returns:
        The job's targets after their scrape.

    Raises:
        PrometheusError: If no target of ``job`` exists or none was scraped in time, or (with
            ``require_up``) a scrape failed; the message has Prometheus' error for the target.
    """
    since = time.time() if since is None else since
    deadline = time.monotonic() + timeout
    found: list[Target] = []
    while time.monotonic() < deadline:
        found = targets(base_url, job=job)
        if found and all(t.last_scrape > since for t in found):
            down = [t for t in found if t.health != "up"]
            if require_up and down:
                raise PrometheusError(
                    "; ".join(f"scraping {t.url} failed: {t.last_error or t.health}" for t in down)
                )
            return found
        time.sleep(0.2)
    if not found:
        raise PrometheusError(f"Prometheus at {base_url} has no target in job {job!r}.")
    states = "; ".join(f"{t.url}: {t.health} {t.last_error}".strip() for t in found)
    raise PrometheusError(f"No scrape of job {job!r} within {timeout:.0f} s ({states}).")


def wait_for(
    base_url: str,
    promql: str,
    *,
    until: Callable[[list[Sample]], bool] = bool,
    timeout: float = 30.0,
    interval: float = 0.25,
) -> list[Sample]:
    """Runs an instant query until its result satisfies ``until`` (a rule evaluated, an alert).

    Args:
        base_url: Prometheus' URL.
        promql: The expression, e.g. ``ALERTS{alertname="TcvInputBrightnessDrift"}``.
        until: Says when the samples are the awaited ones (default: any sample at all).
        timeout: Seconds to wait.
        interval: Seconds between queries.

    Returns:
        The samples that satisfied ``until``.

    Raises:
        PrometheusError: If it does not happen in time (the message has the last result).
        PrometheusQueryError: If Prometheus refuses the query.
    """
    deadline = time.monotonic() + timeout
    while True:
        samples = query(base_url, promql)
        if until(samples):
            return samples
        if time.monotonic() > deadline:
            shown = [(s.labels, s.value) for s in samples[:5]]
            raise PrometheusError(
                f"{promql!r} did not give the awaited result within {timeout:.0f} s; it gives "
                f"{shown or 'nothing'}."
            )
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# promtool
# --------------------------------------------------------------------------------------------


def _promtool(*args: str, path: str | os.PathLike, what: str) -> str:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{what} {file} does not exist.")
    tool = find_executable("promtool")
    done = subprocess.run(
        [str(tool), *args, str(file)], capture_output=True, text=True, timeout=120
    )
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        raise RulesError(f"{file}: promtool {' '.join(args)} failed:\n{output}")
    return output


def check_rules(path: str | os.PathLike) -> str:
    """Checks a Prometheus rules file with ``promtool check rules``.

    Args:
        path: The rules file (``monitoring_files().alerts``).

    Returns:
        promtool's report (``SUCCESS: N rules found``).

    Raises:
        RulesError: With promtool's message (file, group, rule and what is wrong).
        FileNotFoundError: If the file does not exist.
        PrometheusUnavailable: If promtool is not installed.
    """
    return _promtool("check", "rules", path=path, what="Rules file")


def run_rule_tests(path: str | os.PathLike) -> str:
    """Runs Prometheus rule unit tests with ``promtool test rules``.

    Args:
        path: A rule-test file (``tests/monitoring/alerts_test.yml`` in the repository).

    Returns:
        promtool's report (``SUCCESS``).

    Raises:
        RulesError: With promtool's report of the failed cases (expected and got).
        FileNotFoundError: If the file does not exist.
        PrometheusUnavailable: If promtool is not installed.
    """
    return _promtool("test", "rules", path=path, what="Rule-test file")


def check_config(path: str | os.PathLike) -> str:
    """Checks a ``prometheus.yml`` (and the rule files it loads) with ``promtool check config``.

    Args:
        path: The configuration file.

    Returns:
        promtool's report.

    Raises:
        RulesError: With promtool's message.
        FileNotFoundError: If the file does not exist.
        PrometheusUnavailable: If promtool is not installed.
    """
    return _promtool("check", "config", path=path, what="Prometheus config")


# --------------------------------------------------------------------------------------------
# The dashboard and the names in PromQL
# --------------------------------------------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)?\s*\{([^{}]*)\}")
_MATCHER = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)\s*\"")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_NAME = re.compile(r"(?<![\w:.$])[A-Za-z_:][\w:]*")
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or"}
    | {"unless", "offset", "inf", "nan", "atan2"}
)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (``tcv_requests_total``, ``up``, ...).

    Function and aggregation names, keywords, label names, strings, durations and Grafana
    variables (``$job``) are left out.

    Args:
        expr: The PromQL.

    Returns:
        The names.
    """
    text = _STRING.sub('""', expr)
    names = {m.group(1) for m in _SELECTOR.finditer(text) if m.group(1)}
    text = _SELECTOR.sub(" ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = _GROUPING.sub(" ", text)
    for match in _NAME.finditer(text):
        word = match.group(0)
        if word.lower() in _KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue
        names.add(word)
    return names


def _label_names(expr: str) -> dict[str, set[str]]:
    """Metric name -> the label names its selectors in ``expr`` match on."""
    used: dict[str, set[str]] = {}
    for match in _SELECTOR.finditer(re.sub(r"\[[^\]]*\]", " ", expr)):
        if match.group(1):
            used.setdefault(match.group(1), set()).update(_MATCHER.findall(match.group(2)))
    return used


def dashboard_queries(path: str | os.PathLike | None = None) -> list[DashboardQuery]:
    """Every PromQL query of a Grafana dashboard (panels inside rows included).

    Args:
        path: The dashboard JSON (default: the package's ``grafana-dashboard.json``).

    Returns:
        One :class:`DashboardQuery` per target that has an ``expr``.

    Raises:
        ValueError: If the file is not a dashboard (the message names the file).
        FileNotFoundError: If it does not exist.
    """
    file = Path(path) if path is not None else monitoring_files().dashboard
    if not file.is_file():
        raise FileNotFoundError(f"Dashboard {file} does not exist.")
    try:
        board = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{file} is not valid JSON: {exc}") from None
    if not isinstance(board, dict) or not isinstance(board.get("panels"), list):
        raise ValueError(f"{file} is not a Grafana dashboard: no top-level 'panels' list.")
    found = []
    stack = list(board["panels"])
    while stack:
        panel = stack.pop(0)
        stack[:0] = panel.get("panels", [])  # a collapsed row keeps its panels inside
        for target in panel.get("targets", []):
            if target.get("expr"):
                found.append(
                    DashboardQuery(
                        panel=str(panel.get("title", "")),
                        ref_id=str(target.get("refId", "")),
                        expr=str(target["expr"]),
                    )
                )
    return found


def exported_metrics(metrics_text: str) -> dict[str, set[str]]:
    """The series names in a ``/metrics`` page and the label names each carries.

    Args:
        metrics_text: Prometheus' text format, as the service's ``/metrics`` answers it.

    Returns:
        Sample name (``tcv_requests_total``, ``tcv_request_seconds_bucket``, ...) -> labels.
    """
    from prometheus_client.parser import text_string_to_metric_families

    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def check_queries(queries: Mapping[str, str], exported: Mapping[str, Iterable[str]]) -> list[str]:
    """Problems of PromQL queries against the series a service exports.

    Args:
        queries: A description (``panel 'Latency' A``) -> PromQL.
        exported: Series name -> label names (:func:`exported_metrics`); ``job`` and
            ``instance``, which Prometheus adds, are always allowed.

    Returns:
        One sentence per unknown metric or label (empty: every query reads what exists).
    """
    problems = []
    for where, expr in queries.items():
        for name in sorted(metric_names(expr) - set(exported)):
            problems.append(f"{where}: {name} is not exported by the service")
        for name, labels in sorted(_label_names(expr).items()):
            if name in exported:
                unknown = labels - set(exported[name]) - {"job", "instance", "__name__"}
                for label in sorted(unknown):
                    problems.append(f"{where}: {name} has no label {label!r}")
    return problems


def check_dashboard(metrics_text: str, *, path: str | os.PathLike | None = None) -> list[str]:
    """Problems of a Grafana dashboard's queries against what the service exports.

    Args:
        metrics_text: The service's ``/metrics`` page, after some traffic (a labelled series
            appears once it has a value).
        path: The dashboard (default: the package's).

    Returns:
        One sentence per query reading a metric or label the service does not export.
    """
    exported = exported_metrics(metrics_text)
    exported.setdefault("up", set())  # Prometheus' own series for every target
    queries = {f"panel {q.panel!r} {q.ref_id}": q.expr for q in dashboard_queries(path)}
    return check_queries(queries, exported)
