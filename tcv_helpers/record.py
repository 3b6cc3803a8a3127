"""Recording a notebook's key numbers so that ``tcv run`` can collect them.

A notebook calls :func:`record_metrics`; the values travel inside the notebook's own output (a
display item of MIME type :data:`METRICS_MIME`), which papermill saves in the executed notebook.
``tcv run`` reads them back from there into ``summary.json``. Nothing is kept in hidden state
or side files, so a notebook run by hand, by papermill or by nbval behaves the same.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

METRICS_MIME = "application/vnd.tcv.metrics+json"


def _clean(name: str, value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"Metric {name!r} is {number}; record only finite numbers.")
        return number
    raise TypeError(
        f"Metric {name!r} has type {type(value).__name__}; record numbers, strings or booleans."
    )


def clean_metrics(**metrics: Any) -> dict[str, Any]:
    """Checks metrics and turns numpy numbers into Python numbers (what :func:`record_metrics` stores).

    Raises:
        TypeError: If a value is not a number, string or boolean.
        ValueError: If a number is NaN or infinite, or no metric is given.
    """
    if not metrics:
        raise ValueError("record_metrics() needs at least one name=value.")
    return {name: _clean(name, value) for name, value in metrics.items()}


def record_metrics(**metrics: Any) -> None:
    """Records metrics of this notebook (for example ``record_metrics(map50=0.61)``).

    In a notebook the metrics are displayed as a short line and stored in the cell's output,
    where ``tcv run`` finds them. Calling it twice with the same name keeps the last value.
    Outside IPython the values are only checked. Nothing is returned, so a call at the end of a
    cell shows the line once.

    Args:
        **metrics: Names and values: numbers (finite), strings or booleans.

    Raises:
        TypeError: If a value is not a number, string or boolean.
        ValueError: If a number is NaN or infinite, or no metric is given.
    """
    clean = clean_metrics(**metrics)
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # plain Python: nothing to display into
        return
    if get_ipython() is not None:
        text = "recorded: " + ", ".join(f"{k}={v}" for k, v in clean.items())
        display({METRICS_MIME: clean, "text/plain": text}, raw=True)


def collect_metrics(notebook: Mapping[str, Any]) -> dict[str, Any]:
    """Reads every metric recorded in an executed notebook (later values win).

    Args:
        notebook: The notebook as loaded by ``nbformat`` (or its JSON dictionary).

    Returns:
        Metric names to values, in the order they were first recorded.
    """
    found: dict[str, Any] = {}
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []) or []:
            data = output.get("data") or {}
            if METRICS_MIME in data and isinstance(data[METRICS_MIME], Mapping):
                found.update(data[METRICS_MIME])
    return found
