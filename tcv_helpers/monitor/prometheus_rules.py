"""The monitoring files Prometheus and Grafana load: alert rules, rule tests, the dashboard.

:func:`check_rules`, :func:`run_rule_tests` and :func:`check_config` run ``promtool``;
:func:`alert_rules` lists the alerts of a rules file as a table; :func:`check_dashboard` checks
the Grafana dashboard's queries against the metrics a running service exports (a panel that
reads a metric or label the service does not have stays empty without any error in Grafana).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tcv_helpers.io import read_yaml_mapping
from tcv_helpers.monitor.prometheus import find_executable, monitoring_files
from tcv_helpers.monitor.prometheus_query import PrometheusError

if TYPE_CHECKING:
    import pandas as pd


class RulesError(PrometheusError, ValueError):
    """``promtool`` found a problem in a rules, rule-test or config file (message: its output)."""


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


def alert_rules(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """The alerts of a rules file as a table: name, expression, how long it must hold, severity
    and summary.

    Args:
        path: The rules file (default: the course's ``alerts.yml``).

    Returns:
        One row per alert (recording rules are left out).

    Raises:
        FileNotFoundError: If the file does not exist.
        RulesError: If it is not YAML or not a mapping (naming the file).
    """
    import pandas as pd

    source = Path(path) if path else monitoring_files().alerts
    if not source.is_file():
        raise FileNotFoundError(f"Rules file {source} does not exist.")
    rules = read_yaml_mapping(
        source, error=RulesError, what="Rules file", holds="a mapping with 'groups'"
    )
    groups = rules.get("groups") or []
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
