"""Prometheus' HTTP API as plain Python values: PromQL queries, scrape targets, waiting.

:func:`query`, :func:`query_value`, :func:`query_table` and :func:`query_range` run PromQL
through ``/api/v1/query`` and ``/api/v1/query_range``; :func:`targets`, :func:`wait_for_scrape`
and :func:`wait_for` watch the scrapes and the rules. Every function takes Prometheus' base URL
(``handle.url`` of :func:`tcv_helpers.monitor.prometheus.start_prometheus`, or any server's).
The errors of the whole Prometheus family are defined here: :class:`PrometheusError` and its
kinds.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import pandas as pd

#: The scrape job of the service; the rules in ``alerts.yml`` select ``job="tcv"``.
JOB = "tcv"

_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


class PrometheusError(RuntimeError):
    """Prometheus did not do what was asked (the message says what it answered)."""


class PrometheusUnavailable(PrometheusError):
    """Prometheus or promtool is not installed, or no Prometheus answers at the URL."""


class PrometheusQueryError(PrometheusError, ValueError):
    """Prometheus refused a PromQL query (the message names the query)."""


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


def to_duration(value: str | float, *, name: str) -> str:
    """A Prometheus duration (``1s``, ``500ms``) from a string or a number of seconds.

    Args:
        value: ``"1s"``, ``"500ms"``, ``"1m"`` ... or seconds (``0.5``).
        name: The option's name, for the message.

    Returns:
        The duration as Prometheus writes it.

    Raises:
        ValueError: If it is not a positive duration (naming ``name``).
    """
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a duration such as '1s', got {value!r}.")
    if isinstance(value, int | float):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be positive, got {value}.")
        millis = round(value * 1000)
        return f"{millis // 1000}s" if millis % 1000 == 0 else f"{max(millis, 1)}ms"
    if not _DURATION.fullmatch(str(value)):
        raise ValueError(
            f"{name} must be a Prometheus duration such as '1s', '500ms' or '1m', got {value!r}."
        )
    return str(value)


def is_ready(base_url: str) -> bool:
    """Whether a Prometheus answers at ``base_url`` and is ready to serve queries (``/-/ready``)."""
    import httpx

    url = base_url.rstrip("/")
    try:
        return httpx.get(f"{url}/-/ready", timeout=2, trust_env=not _direct(url)).status_code == 200
    except httpx.HTTPError:
        return False


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
        step = to_duration(step, name="step")
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
