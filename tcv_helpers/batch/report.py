"""What the run report of ``tcv run`` shows besides its tables: figures, notebooks, bars.

An instructor checks a run before a workshop by looking, not by reading key=value lists. For
every executed notebook, :func:`export_views` writes

* the notebook rendered as HTML (``html/<notebook>.html``, images inline, no script from the
  network), linked from its row of ``report.html``;
* the figures an instructor checks (:data:`REPORT_FIGURES`: training curves, the
  precision-recall curve, the search methods, the benchmark, the drift timeline, the counts over
  time) as PNG files (``figures/``), shown in ``report.html``.

:func:`read_bars` reads the project's success criteria (``project.yaml``), and :func:`bar_note`
puts a metric beside its bar (``map50`` against ``min_map50``). The run folder stays one
self-contained folder; both files are written from the executed notebooks, which the runner has
already redacted, and redacted again (:func:`tcv_helpers.secrets.redact`).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tcv_helpers.io import atomic_write_bytes, atomic_write_text
from tcv_helpers.project import read_project
from tcv_helpers.secrets import redact

#: Folders of the run folder that hold the rendered notebooks and the figures.
HTML_DIR = "html"
FIGURES_DIR = "figures"
#: The cells whose figures go into ``report.html`` (by cell id), with their captions.
REPORT_FIGURES: dict[str, str] = {
    "04-25": "Custom classifier and backbone: loss and accuracy per epoch",
    "05-16": "Training: losses and validation mAP per epoch",
    "05-20": "Fine-tuning: validation mAP50-95 per epoch, where early stopping ended it",
    "05-22c": "Three task types on one frame: classification, detection, segmentation",
    "06-12": "Evaluation: precision-recall curve",
    "07-10": "Search methods: best mAP50 so far per trial",
    "07-14a": "Distillation: the teacher and its two students, mAP50 and latency",
    "07-16": "Benchmark: latency, throughput and mAP50 per variant",
    "d268bdd6": "Monitoring: the drift timeline",
    "5749873b": "Counting: vehicles over time per direction",
}
#: Metric -> (criterion of ``project.yaml``, direction): the bar it is held to.
BARS: dict[str, tuple[str, str]] = {
    "map50": ("min_map50", ">="),
    "recall": ("min_recall", ">="),
    "chosen_latency_ms": ("max_latency_ms", "<="),
    "count_trueboxes_mape": ("max_count_error", "<="),
    "count_mape": ("max_count_error", "<="),
}


def notebook_figures(executed: Mapping[str, Any]) -> list[tuple[str, str, bytes]]:
    """The figures of :data:`REPORT_FIGURES` in an executed notebook.

    Args:
        executed: The executed notebook (its JSON).

    Returns:
        ``(cell id, caption, PNG bytes)`` for each listed cell that displayed a PNG (the last
        one, where a cell displayed several), in notebook order.
    """
    found = []
    for cell in executed.get("cells", []):
        caption = REPORT_FIGURES.get(str(cell.get("id")))
        if caption is None:
            continue
        pngs = [
            o["data"]["image/png"]
            for o in cell.get("outputs", [])
            if "image/png" in o.get("data", {})
        ]
        if not pngs:
            continue
        text = "".join(pngs[-1]) if isinstance(pngs[-1], list) else str(pngs[-1])
        try:
            found.append((str(cell["id"]), caption, base64.b64decode(text, validate=False)))
        except (binascii.Error, ValueError):
            continue
    return found


def export_views(
    run_dir: str | os.PathLike, notebook_file: str | os.PathLike, values: Sequence[str] = ()
) -> dict[str, Any]:
    """Writes a notebook's HTML page and its report figures into the run folder.

    Args:
        run_dir: The run folder.
        notebook_file: The executed notebook in it.
        values: Secret values to blank out of the page (the runner's).

    Returns:
        ``{"html": "html/<stem>.html", "figures": [{"file": ..., "caption": ...}, ...]}`` (paths
        relative to the run folder); ``"html"`` is None where the page could not be rendered.
    """
    import json

    folder, file = Path(run_dir), Path(notebook_file)
    text = file.read_text(encoding="utf-8")
    executed = json.loads(text)
    figures = []
    for cell_id, caption, png in notebook_figures(executed):
        relative = f"{FIGURES_DIR}/{file.stem}-{cell_id}.png"
        atomic_write_bytes(folder / relative, png)
        figures.append({"file": relative, "caption": caption})
    page = f"{HTML_DIR}/{file.stem}.html"
    try:
        atomic_write_text(folder / page, redact(_render_html(text), list(values)))
    except Exception as exc:  # a page that cannot be rendered must not fail the run
        import logging

        logging.getLogger("tcv").warning("could not render %s as HTML: %s", file.name, exc)
        page = None
    return {"html": page, "figures": figures}


def _render_html(notebook_json: str) -> str:
    """The notebook (its JSON text) as one HTML page, images inline, no script loaded from the
    network."""
    import nbformat
    from nbconvert import HTMLExporter

    node = nbformat.reads(notebook_json, as_version=4)
    exporter = HTMLExporter(
        template_name="lab", mathjax_url="", require_js_url="", mermaid_js_url="",
        mermaid_layout_elk_js_url="", widget_renderer_url="", jupyter_widgets_base_url="",
    )  # fmt: skip
    body, _ = exporter.from_notebook_node(node)
    return body


def read_bars(workspace: str | os.PathLike | None) -> dict[str, tuple[str, float]]:
    """The bars of :data:`BARS` from the workspace's ``project.yaml`` (none where it is absent
    or unreadable: the report then shows the metrics alone).

    Returns:
        Metric -> (direction, bar value).
    """
    if workspace is None:
        return {}
    path = Path(workspace) / "project.yaml"
    if not path.is_file():
        return {}
    try:
        criteria = read_project(path).criteria
    except (OSError, ValueError):
        return {}
    return {metric: (op, float(getattr(criteria, name))) for metric, (name, op) in BARS.items()}


def bar_note(name: str, value: Any, bars: Mapping[str, tuple[str, float]]) -> str:
    """``"(bar ≥ 0.5: met)"`` for a metric held to a bar, ``""`` otherwise."""
    if name not in bars or not isinstance(value, int | float) or isinstance(value, bool):
        return ""
    op, bar = bars[name]
    met = value >= bar if op == ">=" else value <= bar
    sign = "≥" if op == ">=" else "≤"
    return f" (bar {sign} {bar:g}: {'met' if met else 'NOT met'})"
