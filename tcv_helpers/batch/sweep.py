"""Parameter sweeps: their definition (a YAML file) and their report (``tcv sweep report``).

A sweep runs the same ``tcv run`` once per parameter set; on Slurm it is one job array
(:mod:`tcv_helpers.batch.slurm_scripts`), each task writing its own ``runs/<sweep>/task-NNN/``.
The sweep file lists the parameter sets as a grid (every combination) or as a list::

    name: min-map50          # the folder under runs/ (default: the file's name)
    profile: smoke           # smoke, workshop, full or auto
    only: "01"               # the notebooks each task runs (default: all)
    parameters:              # the same for every task (optional)
      TARGET: cpu
    grid:                    # every combination of these values ...
      MIN_MAP50: [0.4, 0.6]
    # list:                  # ... or one entry per task
    #   - {MIN_MAP50: 0.4}
    #   - {MIN_MAP50: 0.6, TARGET: edge}

:func:`collect` gathers every task's ``summary.json`` (the newest run of each task) into one
table, parameters against metrics and seconds; :func:`write_report` writes it as CSV and as a
self-contained HTML page with plots. Failed tasks keep their task id and the path of their log.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tcv_helpers.batch.slurm_queue import queued_tasks
from tcv_helpers.io import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    read_yaml_mapping,
)
from tcv_helpers.secrets import is_secret_name

MANIFEST_FILE = "sweep.json"
CSV_FILE = "sweep.csv"
HTML_FILE = "sweep.html"
SUMMARY_FILE = "summary.json"  # what ``tcv run`` writes into every run folder
TASK_PREFIX = "task-"
SLURM_LOG_GLOB = "slurm-*.out"
SWEEP_KEYS = ("name", "profile", "only", "parameters", "grid", "list")
OK, FAILED, INTERRUPTED, RUNNING, PENDING, MISSING = (
    "ok",
    "failed",
    "interrupted",
    "running",
    "pending",
    "missing",
)
#: States of a task that did not finish and is not waiting or running: resubmit these.
UNFINISHED = (FAILED, INTERRUPTED, MISSING)
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class SweepError(ValueError):
    """A sweep file or a sweep folder that cannot be used; the message names the file and field."""


@dataclass(frozen=True)
class SweepTask:
    """One task of a sweep: one ``tcv run`` with its own parameters.

    Attributes:
        index: The Slurm array index (0, 1, ...).
        name: Its folder under the sweep folder (``task-000``).
        parameters: Every parameter of the task (the shared ones included).
    """

    index: int
    name: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class Sweep:
    """A parameter sweep read from a YAML file (see the module docstring).

    Attributes:
        name: Folder name under the runs folder.
        profile: The profile every task runs (None: ``auto``).
        only: The notebooks every task runs, e.g. ``"01"`` or ``"02,05-06"`` (None: all).
        tasks: The tasks, in array-index order.
        source: The file it was read from (None when built in code).
    """

    name: str
    profile: str | None
    only: str | None
    tasks: tuple[SweepTask, ...]
    source: Path | None = None

    @property
    def parameter_names(self) -> list[str]:
        """Every parameter name that some task sets, in first-seen order."""
        return list(dict.fromkeys(k for t in self.tasks for k in t.parameters))


def task_name(index: int, count: int) -> str:
    """The folder name of array task ``index`` in a sweep of ``count`` tasks (``task-007``).

    The number is zero-padded to :func:`index_width` digits, the same padding as Slurm's
    ``%3a`` in the job's ``--output`` pattern, so the log lands in the task's own folder.
    """
    return f"{TASK_PREFIX}{index:0{index_width(count)}d}"


def index_width(count: int) -> int:
    """Digits of the zero-padded task number: 3, or more for sweeps of over 1000 tasks."""
    return max(3, len(str(max(count - 1, 0))))


def _key_lines(node: yaml.Node, prefix: tuple = ()) -> dict[tuple, int]:
    """1-based line of every mapping key and sequence item of a composed YAML document."""
    lines: dict[tuple, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = (*prefix, key.value)
            lines[path] = key.start_mark.line + 1
            lines.update(_key_lines(value, path))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            path = (*prefix, i)
            lines[path] = item.start_mark.line + 1
            lines.update(_key_lines(item, path))
    return lines


def _check_name(value: Any, where: str) -> None:
    if not isinstance(value, str) or not value.isidentifier():
        raise SweepError(
            f"{where}: parameter names are Python names like MIN_MAP50, not {value!r}."
        )
    if is_secret_name(value):
        raise SweepError(
            f"{where}: {value} names a secret; secrets are never parameters (they would be "
            f"written into the job script and the notebooks). Set {value} in the environment "
            "you submit from and list the name with --require-env."
        )


def _check_value(value: Any, where: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _check_value(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_value(item, f"{where}[{i}]")
    elif not (value is None or isinstance(value, (str, int, float, bool))):
        raise SweepError(f"{where}: {value!r} is not a YAML literal a notebook parameter can take.")
    if isinstance(value, str) and "\n" in value:
        raise SweepError(f"{where}: a parameter value must fit on one line.")


def parse_sweep(
    data: Any, *, source: str = "<sweep>", lines: Mapping[tuple, int] | None = None
) -> Sweep:
    """Builds a :class:`Sweep` from the YAML data of a sweep file.

    Args:
        data: The loaded YAML (a mapping with ``grid`` or ``list``).
        source: The file name, for error messages.
        lines: Line numbers of the keys (from the composed YAML), for error messages.

    Returns:
        The sweep.

    Raises:
        SweepError: Naming the file, line and field of the first problem.
    """
    lines = lines or {}

    def where(*path: Any) -> str:
        line = next((lines[path[:n]] for n in range(len(path), 0, -1) if path[:n] in lines), None)
        field_name = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
        return f"{source}, line {line}: {field_name}" if line else f"{source}: {field_name}"

    if not isinstance(data, dict):
        raise SweepError(
            f"{source}: a sweep file holds a mapping with 'grid' or 'list' (see tcv slurm --help)."
        )
    unknown = sorted(set(map(str, data)) - set(SWEEP_KEYS))
    if unknown:
        raise SweepError(
            f"{where(unknown[0])}: unknown key; a sweep file has {', '.join(SWEEP_KEYS)}."
        )
    stem = Path(source).stem if source != "<sweep>" else "sweep"
    name = data.get("name", stem)
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise SweepError(
            f"{where('name')}: {name!r} is not a folder name (letters, digits, _ . -)."
        )
    profile = data.get("profile")
    if profile is not None and not isinstance(profile, str):
        raise SweepError(
            f"{where('profile')}: give a profile name (smoke, workshop, full or auto)."
        )
    only = data.get("only")
    if only is not None:
        if isinstance(only, int):  # `only: 1` in YAML; "01" is meant
            only = f"{only:02d}"
        if not isinstance(only, str):
            raise SweepError(f'{where("only")}: give the notebooks as text, e.g. only: "02,05-06".')
    shared = data.get("parameters") or {}
    if not isinstance(shared, dict):
        raise SweepError(f"{where('parameters')}: must be a mapping NAME: value.")
    for key, value in shared.items():
        _check_name(key, where("parameters", key))
        _check_value(value, where("parameters", key))
    if ("grid" in data) == ("list" in data):
        raise SweepError(
            f"{source}: give exactly one of 'grid' (every combination) or 'list' (one entry per task)."
        )
    combos: list[dict[str, Any]] = []
    if "grid" in data:
        grid = data["grid"]
        if not isinstance(grid, dict) or not grid:
            raise SweepError(f"{where('grid')}: must map each parameter to a list of values.")
        for key, values in grid.items():
            _check_name(key, where("grid", key))
            if not isinstance(values, list) or not values:
                raise SweepError(
                    f"{where('grid', key)}: must be a non-empty list of values, e.g. [0.4, 0.6]."
                )
            for i, value in enumerate(values):
                _check_value(value, where("grid", key, i))
        keys = list(grid)
        combos = [
            dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())
        ]
    else:
        entries = data["list"]
        if not isinstance(entries, list) or not entries:
            raise SweepError(f"{where('list')}: must be a non-empty list of mappings NAME: value.")
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise SweepError(f"{where('list', i)}: each entry is a mapping NAME: value.")
            for key, value in entry.items():
                _check_name(key, where("list", i, key))
                _check_value(value, where("list", i, key))
            combos.append(dict(entry))
    tasks = []
    for index, combo in enumerate(combos):
        clash = sorted(set(combo) & set(shared))
        if clash:
            section = "grid" if "grid" in data else "list"
            raise SweepError(
                f"{where(section)}: {clash[0]} is also under 'parameters'; give it in one place."
            )
        tasks.append(SweepTask(index, task_name(index, len(combos)), {**shared, **combo}))
    return Sweep(name=name, profile=profile, only=only, tasks=tuple(tasks))


def load_sweep(path: str | os.PathLike) -> Sweep:
    """Reads a sweep file (see the module docstring for its format).

    Raises:
        SweepError: If the file is missing, not YAML, or a field is wrong (with its line).
    """
    file = Path(path)
    data = read_yaml_mapping(
        file, error=SweepError, what="Sweep file", holds="a mapping with 'grid' or 'list'"
    )
    lines = _key_lines(yaml.compose(file.read_text(encoding="utf-8"))) if data else {}
    sweep = parse_sweep(data, source=str(file), lines=lines)
    return Sweep(sweep.name, sweep.profile, sweep.only, sweep.tasks, source=file.resolve())


def read_manifest(sweep_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The ``sweep.json`` that ``tcv slurm`` wrote into a sweep folder, or None if there is none.

    Raises:
        SweepError: If the file exists but is not readable JSON.
    """
    path = Path(sweep_dir) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SweepError(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
        raise SweepError(f"{path}: no 'tasks' list; was it written by tcv slurm?")
    return data


def write_manifest(sweep_dir: str | os.PathLike, manifest: Mapping[str, Any]) -> Path:
    """Writes a sweep folder's ``sweep.json`` atomically."""
    return atomic_write_json(Path(sweep_dir) / MANIFEST_FILE, dict(manifest))


@dataclass
class TaskResult:
    """What one task of a sweep did: its newest run, or why there is none.

    Attributes:
        name: The task's folder (``task-001``) or, outside a sweep, the run folder.
        index: The Slurm array index (None for runs that are not part of a sweep).
        status: ``ok``, ``failed``, ``interrupted`` (stopped mid-run: time limit, memory, node),
            ``running``, ``pending`` or ``missing`` (no run: the job never reached ``tcv run``).
        parameters: The task's parameters.
        metrics: Recorded metrics of every notebook, flattened (see :func:`collect`).
        seconds: Wall-clock seconds of the run.
        profile: The profile the run used.
        run_dir: The newest run folder (None when there is none).
        log: The task's log: the newest Slurm output file, else the run's ``run.log``.
        error: What went wrong, in one line (None when nothing did).
        attempts: How many runs the task folder holds.
    """

    name: str
    index: int | None
    status: str
    parameters: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None
    profile: str | None = None
    run_dir: Path | None = None
    log: Path | None = None
    error: str | None = None
    attempts: int = 0

    @property
    def unfinished(self) -> bool:
        """True when the task failed, was interrupted or never ran (and is not queued)."""
        return self.status in UNFINISHED

    def describe(self) -> str:
        """One line for the terminal: task id, status, what went wrong and the log's path."""
        label = f"task {self.index} ({self.name})" if self.index is not None else self.name
        text = f"{label}: {self.status}"
        if self.error:
            text += f": {self.error}"
        if self.log is not None:
            text += f"; log: {self.log}"
        return text


@dataclass
class SweepResult:
    """Every task of a sweep folder, ready for a table, plots or resubmission.

    Attributes:
        run_dir: The folder that was read.
        name: The sweep's name (the folder's name outside a sweep).
        tasks: One entry per task, in array-index order.
        parameter_names: Parameter columns, in first-seen order.
        metric_names: Metric columns, in first-seen order.
    """

    run_dir: Path
    name: str
    tasks: list[TaskResult]
    parameter_names: list[str]
    metric_names: list[str]

    @property
    def unfinished(self) -> list[TaskResult]:
        """The tasks to look at and resubmit: failed, interrupted or never ran."""
        return [t for t in self.tasks if t.unfinished]

    @property
    def complete(self) -> bool:
        """True when every task finished ok."""
        return all(t.status == OK for t in self.tasks)

    @property
    def varying_parameters(self) -> list[str]:
        """Parameters whose value differs between tasks (the sweep's axes)."""
        return [
            name
            for name in self.parameter_names
            if len({json.dumps(t.parameters.get(name), sort_keys=True) for t in self.tasks}) > 1
        ]

    def counts(self) -> dict[str, int]:
        """How many tasks are in each status: ok, running, pending, then the unfinished ones."""
        order = (OK, RUNNING, PENDING, FAILED, INTERRUPTED, MISSING)
        counts = {status: 0 for status in order}
        for task in self.tasks:
            counts[task.status] = counts.get(task.status, 0) + 1
        return {status: n for status, n in counts.items() if n}

    def table(self) -> Any:
        """One row per task: task id, status, parameters, metrics, seconds, attempts, log, error.

        Returns:
            A ``pandas.DataFrame``; list-valued parameters appear as their JSON text.
        """
        import pandas as pd

        rows = []
        for task in self.tasks:
            row: dict[str, Any] = {"task": task.index, "name": task.name, "status": task.status}
            row["profile"] = task.profile
            for name in self.parameter_names:
                value = task.parameters.get(name)
                row[name] = json.dumps(value) if isinstance(value, (list, dict)) else value
            for name in self.metric_names:
                row[name] = task.metrics.get(name)
            row["seconds"] = task.seconds
            row["attempts"] = task.attempts
            row["log"] = str(task.log) if task.log else None
            row["error"] = task.error
            rows.append(row)
        columns = ["task", "name", "status", "profile", *self.parameter_names, *self.metric_names]
        columns += ["seconds", "attempts", "log", "error"]
        return pd.DataFrame(rows, columns=columns)


def _newest_log(folder: Path) -> Path | None:
    logs = [p for p in folder.glob(SLURM_LOG_GLOB) if p.is_file()]
    return max(logs, key=lambda p: (p.stat().st_mtime, p.name)) if logs else None


def _runs_in(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Run folders directly inside ``folder`` with a readable summary, oldest first."""
    runs = []
    for summary in sorted(folder.glob(f"*/{SUMMARY_FILE}")):
        try:
            data = json.loads(summary.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("notebooks"), list):
            runs.append((summary.parent, data))
    runs.sort(key=lambda item: (str(item[1].get("started") or ""), item[0].name))
    return runs


def _queue_status(state: str) -> str:
    state = state.upper()
    if state in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"):
        return PENDING
    if state in ("RUNNING", "CONFIGURING", "COMPLETING", "STAGE_OUT", "RESIZING", "SIGNALING"):
        return RUNNING
    return state.lower()


def _from_summary(task: TaskResult, run_dir: Path, summary: dict[str, Any], may_run: bool) -> None:
    """Fills a task from its newest run; ``may_run``: its job may still be running."""
    task.run_dir = run_dir
    task.profile = summary.get("profile")
    task.seconds = summary.get("seconds")
    if summary.get("parameters") is not None:
        task.parameters = dict(summary["parameters"])
    status = summary.get("status")
    if status == OK:
        task.status = OK
    elif status == FAILED:
        task.status = FAILED
        entry = next((e for e in summary["notebooks"] if e.get("status") == FAILED), {})
        error = entry.get("error") or {}
        task.error = (
            f"{entry.get('notebook', '?')} cell {error.get('cell')}: {error.get('message')}"
            if error
            else f"{entry.get('notebook', 'a notebook')} failed"
        )
    elif status == "running" and may_run:
        task.status = RUNNING
    else:  # "running" with the job gone, or "interrupted"
        task.status = INTERRUPTED
        current = next((e["notebook"] for e in summary["notebooks"] if e.get("status") != OK), None)
        task.error = (
            f"stopped while running {current or 'the run'}: the job ended early (time limit, "
            "memory or node failure; the log says which)"
        )


def _flatten(results: list[tuple[TaskResult, dict[str, Any] | None]]) -> list[str]:
    """Puts every run's notebook metrics into its task; returns the metric column names.

    A metric name recorded by one notebook stays as it is (``min_map50``); a name that two
    notebooks record is prefixed with the notebook number (``05.map50``, ``06.map50``).
    """
    owners: dict[str, set[str]] = {}
    for _task, summary in results:
        for entry in (summary or {}).get("notebooks", []):
            for metric in entry.get("metrics") or {}:
                owners.setdefault(metric, set()).add(entry.get("notebook", "")[:2])
    names: list[str] = []
    for task, summary in results:
        for entry in (summary or {}).get("notebooks", []):
            for metric, value in (entry.get("metrics") or {}).items():
                column = metric if len(owners[metric]) == 1 else f"{entry['notebook'][:2]}.{metric}"
                task.metrics[column] = value
                if column not in names:
                    names.append(column)
    return names


def collect(run_dir: str | os.PathLike, *, queue: Mapping[int, str] | None = None) -> SweepResult:
    """Gathers the tasks of a sweep folder (or the runs of a runs folder) into one result.

    In a sweep folder (one with ``sweep.json``, written by ``tcv slurm --sweep``) every task of
    the manifest gets a row, from the newest run in its folder; a task without a run is
    ``missing``. Any other folder gives one row per run folder (``*/summary.json``).

    Args:
        run_dir: ``runs/<sweep>/`` (or any folder of ``tcv run`` results).
        queue: Array index -> Slurm state for the sweep's tasks still in the queue (from
            :func:`tcv_helpers.batch.slurm_queue.queued_tasks`); such tasks are ``pending`` or
            ``running`` whatever earlier runs say. None when the queue cannot be asked: a run
            that says ``running`` is then taken at its word.

    Returns:
        The tasks with their status, parameters, metrics, seconds, log and error.

    Raises:
        SweepError: If the folder does not exist, or holds no run and no sweep manifest.
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise SweepError(f"{root} is not a folder; give a sweep folder such as runs/<sweep>/.")
    manifest = read_manifest(root)
    pairs: list[tuple[TaskResult, dict[str, Any] | None]] = []
    parameter_names: list[str] = []
    if manifest is not None:
        for spec in manifest["tasks"]:
            index, name = int(spec["index"]), str(spec["name"])
            task = TaskResult(
                name=name,
                index=index,
                status=MISSING,
                parameters=dict(spec.get("parameters") or {}),
            )
            folder = root / name
            runs = _runs_in(folder) if folder.is_dir() else []
            task.attempts = len(runs)
            task.log = _newest_log(folder) if folder.is_dir() else None
            queued = queue is not None and index in queue
            summary = None
            if runs:
                run_path, summary = runs[-1]
                _from_summary(task, run_path, summary, queued or queue is None)
                if task.log is None:
                    task.log = run_path / "run.log"
            if queued:
                task.status, task.error = _queue_status(queue[index]), None
            elif not runs:
                task.error = (
                    "no run: the job never reached `tcv run` (see the log)"
                    if task.log
                    else "no run and no log: the task was never submitted or has not started"
                )
            parameter_names += [k for k in task.parameters if k not in parameter_names]
            pairs.append((task, summary))
        name = str(manifest.get("name") or root.name)
    else:
        runs = _runs_in(root)
        runs += [run for sub in sorted(root.iterdir()) if sub.is_dir() for run in _runs_in(sub)]
        if not runs:
            raise SweepError(
                f"{root} holds no {SUMMARY_FILE} (in <run>/ or <task>/<run>/) and no "
                f"{MANIFEST_FILE}: is it a sweep or runs folder?"
            )
        for run_path, summary in runs:
            task = TaskResult(
                name=run_path.relative_to(root).as_posix(), index=None, status=MISSING,
                parameters={}, attempts=1, log=run_path / "run.log",
            )  # fmt: skip
            _from_summary(task, run_path, summary, True)
            parameter_names += [k for k in task.parameters if k not in parameter_names]
            pairs.append((task, summary))
        name = root.name
    metric_names = _flatten(pairs)
    return SweepResult(
        run_dir=root, name=name, tasks=[t for t, _ in pairs],
        parameter_names=parameter_names, metric_names=metric_names,
    )  # fmt: skip


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def plottable_metrics(result: SweepResult) -> list[str]:
    """Metrics worth a plot: numeric, and different between the tasks that finished; plus ``seconds``."""
    done = [t for t in result.tasks if t.status == OK]
    chosen = []
    for name in result.metric_names:
        values = [_number(t.metrics.get(name)) for t in done]
        numbers = {v for v in values if v is not None}
        if len(numbers) > 1:
            chosen.append(name)
    return [*chosen, "seconds"]


def plot_sweep(result: SweepResult, metric: str, *, width: float = 6.0) -> Any:
    """One metric (or ``"seconds"``) against the sweep's parameter, for the tasks that finished.

    The x axis is the first parameter that varies; when more vary, each combination of the
    others gets its own line. Without a varying parameter the tasks are bars.

    Args:
        result: From :func:`collect`.
        metric: A metric column or ``"seconds"``.
        width: Figure width in inches.

    Returns:
        A matplotlib Figure.

    Raises:
        KeyError: If the metric is not in the result.
    """
    from matplotlib.figure import Figure

    if metric != "seconds" and metric not in result.metric_names:
        raise KeyError(
            f"{metric!r} is not a metric of {result.name}; known: {', '.join(result.metric_names)}."
        )

    def value_of(task: TaskResult) -> float | None:
        return _number(task.seconds if metric == "seconds" else task.metrics.get(metric))

    done = [t for t in result.tasks if t.status == OK and value_of(t) is not None]
    fig = Figure(figsize=(width, width * 0.62))
    ax = fig.subplots()
    axes_params = result.varying_parameters
    if not axes_params:
        ax.bar([t.name for t in done], [value_of(t) for t in done], color="#4363d8")
        ax.set_xlabel("task")
    else:
        x_name, others = axes_params[0], axes_params[1:]
        xs = [t.parameters.get(x_name) for t in done]
        numeric = all(_number(x) is not None for x in xs)
        labels = sorted({json.dumps(x) for x in xs}) if not numeric else []
        groups: dict[str, list[TaskResult]] = {}
        for task in done:
            key = ", ".join(f"{o}={task.parameters.get(o)}" for o in others)
            groups.setdefault(key, []).append(task)
        for key, tasks in groups.items():
            if numeric:
                points = sorted((float(t.parameters[x_name]), value_of(t)) for t in tasks)
            else:
                points = sorted(
                    (labels.index(json.dumps(t.parameters.get(x_name))), value_of(t)) for t in tasks
                )
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=key or None)
        if not numeric:
            ax.set_xticks(range(len(labels)), labels)
        if others:
            ax.legend(title=", ".join(others), fontsize=8)
        ax.set_xlabel(x_name)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} ({len(done)} of {len(result.tasks)} tasks finished)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _png_base64(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def render_html(result: SweepResult) -> str:
    """The sweep as a self-contained HTML page: counts, the table, unfinished tasks, plots."""
    esc = html.escape
    table = result.table()
    body = table.drop(columns=["log", "error"]).to_html(
        index=False, na_rep="", escape=True, classes="sweep", border=0
    )
    counts = ", ".join(f"{n} {s}" for s, n in result.counts().items())
    problems = "".join(
        f"<li><strong>task {esc(str(t.index))}</strong> ({esc(t.name)}): {esc(t.status)}"
        f"{': ' + esc(t.error) if t.error else ''}<br>log: <code>{esc(str(t.log or 'none'))}</code></li>"
        for t in result.unfinished
    )
    unfinished = (
        f"<h2>Unfinished tasks</h2><ul>{problems}</ul>"
        "<p>Resubmit only these with <code>tcv slurm --resubmit-failed "
        f"{esc(str(result.run_dir))} --submit</code>.</p>"
        if problems
        else ""
    )
    figures = "\n".join(
        f'<figure><img alt="{esc(m)}" src="data:image/png;base64,{_png_base64(plot_sweep(result, m))}"></figure>'
        for m in plottable_metrics(result)
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>tcv sweep {esc(result.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table.sweep {{ border-collapse: collapse; margin: 1rem 0; }}
table.sweep td, table.sweep th {{ border: 1px solid #ccc; padding: .3rem .6rem; text-align: right; }}
figure {{ display: inline-block; margin: .5rem; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>traffic-cams-cv sweep <code>{esc(result.name)}</code></h1>
<p>{len(result.tasks)} tasks: {esc(counts)}. Folder: <code>{esc(str(result.run_dir))}</code>.</p>
{body}
{unfinished}
<h2>Plots</h2>
{figures}
</body></html>
"""


def write_report(
    result: SweepResult, out_dir: str | os.PathLike | None = None
) -> tuple[Path, Path]:
    """Writes ``sweep.csv`` and ``sweep.html`` (atomically) into ``out_dir`` (default: the sweep folder).

    Returns:
        The paths of the CSV file and the HTML page.
    """
    folder = Path(out_dir) if out_dir is not None else result.run_dir
    csv_path = atomic_write_bytes(
        folder / CSV_FILE, result.table().to_csv(index=False).encode("utf-8")
    )
    html_path = atomic_write_text(folder / HTML_FILE, render_html(result))
    return csv_path, html_path


@dataclass(frozen=True)
class SweepReport:
    """What :func:`sweep_report` gathered and wrote.

    Attributes:
        result: Every task's result.
        csv: The written ``sweep.csv``.
        html: The written ``sweep.html``.
        resubmittable: True for a folder ``tcv slurm --sweep`` wrote (it has ``sweep.json``):
            its unfinished tasks can be sent again with ``tcv slurm --resubmit-failed``.
    """

    result: SweepResult
    csv: Path
    html: Path
    resubmittable: bool


def sweep_report(
    run_dir: str | os.PathLike, *, out: str | os.PathLike | None = None, queue: bool = True
) -> SweepReport:
    """``tcv sweep report``: every task's results in one table, written as CSV and HTML.

    Args:
        run_dir: A sweep folder (``runs/<sweep>/``) or a runs folder.
        out: Folder for ``sweep.csv`` and ``sweep.html`` (default: ``run_dir``).
        queue: Ask Slurm (``squeue``) which tasks of the sweep's submissions are still queued,
            so that they count as pending or running rather than missing.

    Returns:
        The results and the written files.

    Raises:
        SweepError: If the folder holds no runs or its ``sweep.json`` is not readable.
    """
    folder = Path(run_dir)
    manifest = read_manifest(folder) if folder.is_dir() else None
    ids = [str(s["job_id"]) for s in (manifest or {}).get("submissions", [])]
    states = queued_tasks(ids) if queue and ids else None
    result = collect(folder, queue=states)
    csv_path, html_path = write_report(result, out)
    return SweepReport(result, csv_path, html_path, resubmittable=manifest is not None)


def format_table(result: SweepResult, columns: Sequence[str] | None = None) -> str:
    """The table as text for the terminal (without the log and error columns)."""
    table = result.table()
    keep = (
        list(columns)
        if columns
        else [c for c in table.columns if c not in ("log", "error", "profile")]
    )
    return table[keep].to_string(index=False, na_rep="-")
