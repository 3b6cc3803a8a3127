"""``tcv run``: execute the course's notebooks in order with papermill.

Each run gets a folder ``OUT/<run-id>/`` holding the executed notebooks, ``run.log``,
``summary.json`` (per notebook: status, seconds, recorded metrics, seconds per cell),
``params.yaml`` (enough to reproduce the run) and ``report.html`` (with the slowest cells).
The run's workspace is ``OUT/<run-id>/workspace``, so notebooks hand artifacts to each other
through it and two runs never mix.

Secrets (environment variables with secret names: ``*_KEY``, ``*_TOKEN``, ``*_PASSWORD``, ...;
see :mod:`tcv_helpers.secrets`) are never passed as parameters, and their values are blanked out
of every artifact the run writes: notebooks, log, summary, report, and the text files the
notebooks wrote into the run's workspace (:func:`scrub_workspace`).
"""

from __future__ import annotations

import atexit
import functools
import html
import json
import logging
import os
import platform
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from tcv_helpers.batch.report import FIGURES_DIR, bar_note, export_views, read_bars
from tcv_helpers.config import AUTO, resolve_profile
from tcv_helpers.io import atomic_write_json, atomic_write_text, read_yaml_mapping
from tcv_helpers.record import collect_metrics
from tcv_helpers.secrets import is_secret_name, redact, redact_tree, secret_values

NOTEBOOK_PATTERN = re.compile(r"^(\d{2})_[a-z0-9_]+\.ipynb$")
SUMMARY_FILE = "summary.json"
PARAMS_FILE = "params.yaml"
LOG_FILE = "run.log"
REPORT_FILE = "report.html"
OK, FAILED, PENDING = "ok", "failed", "pending"
#: Cells listed in the report's "Where the seconds go" table.
SLOWEST_CELLS = 15


class RunError(Exception):
    """A problem with how ``tcv run`` was called (bad option, unknown parameter, ...)."""


@dataclass
class NotebookFailure(Exception):
    """A notebook failed while executing.

    Attributes:
        notebook: The source notebook file.
        cell: 1-based number of the failing cell in the source notebook (None if unknown).
        source_line: The first line of the failing cell's code.
        error: ``ExceptionName: message``.
        output: The executed notebook (what ran up to the failure).
    """

    notebook: Path
    cell: int | None
    source_line: str
    error: str
    output: Path

    def __str__(self) -> str:
        where = f"cell {self.cell}" if self.cell else "before any cell ran"
        line = f" (`{self.source_line}`)" if self.source_line else ""
        return f"{_display_path(self.notebook)} failed in {where}{line}: {self.error}"


@dataclass
class RunResult:
    """What :func:`run_notebooks` did.

    Attributes:
        run_dir: The run's folder.
        summary: The content of ``summary.json``.
        failure: The failure that stopped the run, or None when every notebook succeeded.
    """

    run_dir: Path
    summary: dict[str, Any]
    failure: NotebookFailure | None = None

    @property
    def ok(self) -> bool:
        """True when every selected notebook succeeded."""
        return self.failure is None


def find_notebooks(folder: str | os.PathLike) -> list[Path]:
    """Lists the course notebooks (``NN_name.ipynb``) of a folder in course order.

    Raises:
        RunError: If the folder does not exist or holds no course notebook.
    """
    root = Path(folder)
    if not root.is_dir():
        raise RunError(f"Notebook folder {str(root)!r} does not exist (use --notebooks DIR).")
    found = sorted(p for p in root.iterdir() if NOTEBOOK_PATTERN.fullmatch(p.name))
    if not found:
        raise RunError(f"No course notebooks (NN_name.ipynb) in {str(root)!r}.")
    return found


def select_notebooks(notebooks: Sequence[Path], only: str | None) -> list[Path]:
    """Picks notebooks by number: ``"02,05-06"`` selects 02, 05 and 06.

    Raises:
        RunError: If the selection is malformed or names a notebook that does not exist.
    """
    if not only:
        return list(notebooks)
    by_number = {int(NOTEBOOK_PATTERN.fullmatch(p.name).group(1)): p for p in notebooks}
    wanted: set[int] = set()
    for part in only.split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d{1,2})(?:-(\d{1,2}))?", part)
        if not match:
            raise RunError(f"--only: {part!r} is not a number or a range like 05-06.")
        first = int(match.group(1))
        last = int(match.group(2) or first)
        if last < first:
            raise RunError(f"--only: range {part!r} goes backwards.")
        for number in range(first, last + 1):
            if number not in by_number:
                known = ", ".join(f"{n:02d}" for n in sorted(by_number))
                raise RunError(f"--only: there is no notebook {number:02d} (there are {known}).")
            wanted.add(number)
    return [by_number[n] for n in sorted(wanted)]


def parse_parameter(text: str) -> tuple[str, Any]:
    """Parses ``KEY=VALUE`` from ``-p``; the value is read as a YAML literal (``3``, ``true``, ``a``).

    Raises:
        RunError: If the text has no ``=``, the key is not a Python name, or names a secret.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise RunError(f"-p {text!r}: expected KEY=VALUE with KEY a Python name, e.g. -p EPOCHS=5.")
    if is_secret_name(key):
        raise RunError(
            f"-p {key}: secrets are never passed as parameters (they would be written into the "
            f"executed notebook). Set {key} in the environment; notebooks read it from there."
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def notebook_parameters(path: Path) -> dict[str, Any]:
    """The parameters a notebook declares in its ``parameters`` cell (name -> default as text)."""
    import papermill

    return {
        name: info.get("default") for name, info in papermill.inspect_notebook(str(path)).items()
    }


def _new_run_id(profile: str) -> str:
    return f"{datetime.now():%Y%m%d-%H%M%S}-{profile}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _environment() -> dict[str, Any]:
    from tcv_helpers import __version__
    from tcv_helpers.env import detect_platform, gpu_info

    return {
        "platform": detect_platform(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.machine()}",
        "tcv_helpers": __version__,
        "gpu": gpu_info().describe(),
        "cpus": os.cpu_count(),
    }


class _RedactingFilter(logging.Filter):
    def __init__(self, values: list[str]) -> None:
        super().__init__()
        self.values = values

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), self.values)
        record.args = ()
        return True


def _open_log(path: Path, values: list[str]) -> logging.Handler:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    handler.addFilter(_RedactingFilter(values))
    handler.setLevel(logging.INFO)
    return handler


#: Tag of the cells papermill inserts into a notebook that failed (papermill.execute).
_ERROR_TAG = "papermill-error-cell-tag"


def _failure_from(exc: Exception, source: Path, output: Path) -> NotebookFailure:
    """Turns a papermill exception into a message naming the notebook and the cell."""
    from papermill.exceptions import PapermillExecutionError

    if not isinstance(exc, PapermillExecutionError):
        return NotebookFailure(source, None, "", f"{type(exc).__name__}: {exc}".strip(), output)
    cell_number, first_line = None, ""
    try:
        cells = json.loads(output.read_text(encoding="utf-8"))["cells"]
        # papermill adds two markdown cells to a failed notebook (an error banner on top, an
        # anchor before the failing cell); exc.cell_index counts the cells without them.
        cells = [c for c in cells if _ERROR_TAG not in c.get("metadata", {}).get("tags", [])]
        failing = cells[exc.cell_index]
        injected = [
            i
            for i, c in enumerate(cells)
            if "injected-parameters" in c.get("metadata", {}).get("tags", [])
        ]
        shift = sum(1 for i in injected if i < exc.cell_index)
        cell_number = exc.cell_index - shift + 1
        code = "".join(failing.get("source", ""))
        first_line = next((ln.strip() for ln in code.splitlines() if ln.strip()), "")[:80]
    except (OSError, ValueError, KeyError, IndexError):
        pass
    return NotebookFailure(source, cell_number, first_line, f"{exc.ename}: {exc.evalue}", output)


def cell_seconds(executed: dict[str, Any]) -> list[dict[str, Any]]:
    """Seconds per code cell of an executed notebook (papermill records each cell's duration).

    Cells are numbered as in the source notebook (1-based, papermill's injected parameters cell
    left out), as failures name them.

    Returns:
        One entry per executed code cell: ``cell``, ``code`` (its first line), ``seconds``.
    """
    times, number = [], 0
    for cell in executed.get("cells", []):
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags or _ERROR_TAG in tags:
            continue
        number += 1
        duration = cell.get("metadata", {}).get("papermill", {}).get("duration")
        if cell.get("cell_type") != "code" or duration is None:
            continue
        code = "".join(cell.get("source", ""))
        first = next((ln.strip() for ln in code.splitlines() if ln.strip()), "")[:80]
        times.append({"cell": number, "code": first, "seconds": round(float(duration), 2)})
    return times


def _redact_notebook_file(path: Path, values: list[str]) -> None:
    if not values or not path.exists():
        return
    data = json.loads(path.read_text(encoding="utf-8"))
    atomic_write_json(path, redact_tree(data, values))


#: Longest socket path prefix used for IPC (Unix domain socket paths are capped at ~104 bytes).
_MAX_SOCKET_PREFIX = 90


@functools.cache
def _socket_folder() -> str:
    """This process's private folder for kernel sockets (removed at exit)."""
    folder = tempfile.mkdtemp(prefix="tcv-kernels-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


@functools.cache
def _kernel_manager_class() -> type | None:
    """A kernel manager that talks to the kernel over local sockets (IPC) where there are any.

    Over TCP (Jupyter's default) every kernel warns that it "is running over TCP without
    encryption", eleven warnings per run; over Unix domain sockets, which only this machine's
    processes reach, there is nothing to warn about. Each kernel's sockets get their own path
    in a private folder, so runs side by side (a Slurm job array in one folder) never meet.
    Windows has no IPC transport, and a temporary folder too deep for a socket path keeps TCP:
    None keeps the default there.
    """
    if (
        os.name != "posix"
        or len(os.path.join(_socket_folder(), "k-" + "0" * 12)) > _MAX_SOCKET_PREFIX
    ):
        return None
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import CaselessStrEnum, default

    class LocalKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

        @default("ip")
        def _ip_default(self) -> str:
            return os.path.join(_socket_folder(), f"k-{uuid.uuid4().hex[:12]}")

    return LocalKernelManager


#: Characters of a cell's first line shown beside a notebook's progress bar.
CELL_LABEL_CHARS = 48
#: The papermill engine of ``tcv run``: nbclient's, naming the cell being executed.
ENGINE_NAME = "tcv-cells"


def cell_label(cell: Any, index: int | None) -> str:
    """``"cell 7: result = train(...)"``: a cell's number and first line of code, for the bar.

    Comments, blank lines and magics (``%matplotlib``) are skipped; a markdown cell is named by
    its first heading or line.
    """
    source = cell.get("source", "") if hasattr(cell, "get") else ""
    if isinstance(source, list):
        source = "".join(source)
    lines = [line.strip() for line in str(source).splitlines()]
    if cell.get("cell_type") == "code":
        lines = [x for x in lines if x and not x.startswith(("#", "%", "!"))]
    else:
        lines = [x.lstrip("#").strip() for x in lines if x.strip("#").strip()]
    text = lines[0] if lines else ""
    if len(text) > CELL_LABEL_CHARS:
        text = text[: CELL_LABEL_CHARS - 3] + "..."
    number = f"cell {index + 1}" if index is not None else "cell"
    return f"{number}: {text}" if text else number


@functools.cache
def _register_engine() -> str:
    """Registers (once) nbclient's engine with the current cell named on the progress bar."""
    from papermill.engines import NBClientEngine, papermill_engines

    class CellNamingEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, **kwargs: Any) -> Any:
            started = nb_man.cell_start

            def cell_start(cell: Any, cell_index: int | None = None, **more: Any) -> None:
                started(cell, cell_index, **more)
                if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
                    if getattr(nb_man, "pbar", None):
                        nb_man.pbar.set_postfix_str("the run's parameters")
                elif getattr(nb_man, "pbar", None):
                    if cell_index is not None:  # numbered as the source notebook, as failures are
                        cell_index -= sum(
                            "injected-parameters" in c.get("metadata", {}).get("tags", [])
                            for c in nb_man.nb.cells[:cell_index]
                        )
                    nb_man.pbar.set_postfix_str(cell_label(cell, cell_index))

            nb_man.cell_start = cell_start
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    papermill_engines.register(ENGINE_NAME, CellNamingEngine)
    return ENGINE_NAME


def _execute(
    source: Path,
    output: Path,
    parameters: dict[str, Any],
    cwd: Path,
    values: list[str],
    progress: str | None,
    cell_timeout: int | None,
) -> None:
    """Executes one notebook into ``output``; secrets are blanked before the file appears there."""
    import papermill

    kernel = _kernel_manager_class()
    local_kernel = {"kernel_manager_class": kernel} if kernel else {}
    with tempfile.TemporaryDirectory(prefix="tcv-run-") as private:
        partial = Path(private) / output.name
        try:
            papermill.execute_notebook(
                str(source),
                str(partial),
                parameters=parameters,
                cwd=str(cwd),
                kernel_name="python3",
                log_output=True,
                progress_bar={"leave": True, "desc": progress, "unit": "cell"}
                if progress
                else False,
                engine_name=_register_engine(),
                execution_timeout=cell_timeout,
                **local_kernel,
            )
        finally:
            if partial.exists():
                _redact_notebook_file(partial, values)
                shutil.move(str(partial), output)


#: Workspace files larger than this are not scanned for secrets (models, videos).
SCRUB_MAX_BYTES = 64 * 1024 * 1024


def scrub_workspace(workspace: str | os.PathLike, values: Sequence[str]) -> list[Path]:
    """Blanks secret values out of the text files a run's notebooks wrote into its workspace.

    A notebook may write a key into a file (a config it saved, a log of a failed download);
    the run's artifacts include its workspace, so the promise "no secret in any artifact" holds
    there too. Text files (UTF-8) are rewritten atomically with ``[REDACTED]``; files that hold
    a secret and are not text cannot be edited safely and are returned, to be named in the log.
    Files over :data:`SCRUB_MAX_BYTES` are not read.

    Returns:
        Files that still hold a secret value (binary ones).
    """
    if not values:
        return []
    needles = [v.encode("utf-8") for v in values]
    left = []
    for path in sorted(Path(workspace).rglob("*")):
        if not path.is_file() or path.is_symlink() or path.stat().st_size > SCRUB_MAX_BYTES:
            continue
        data = path.read_bytes()
        if not any(n in data for n in needles):
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            left.append(path)
            continue
        atomic_write_text(path, redact(text, values))
    return left


def _write_artifacts(run_dir: Path, summary: dict[str, Any], values: list[str]) -> None:
    clean = redact_tree(summary, values)
    atomic_write_json(run_dir / SUMMARY_FILE, clean)
    atomic_write_text(run_dir / REPORT_FILE, render_report(clean))


def run_notebooks(
    notebooks_dir: str | os.PathLike = "notebooks",
    *,
    out: str | os.PathLike = "runs",
    profile: str = AUTO,
    only: str | None = None,
    parameters: dict[str, Any] | None = None,
    resume: str | os.PathLike | None = None,
    progress: bool = True,
    cell_timeout: int | None = None,
    on_event: Callable[[str], None] | None = None,
) -> RunResult:
    """Executes the course notebooks in order (the engine behind ``tcv run``).

    Args:
        notebooks_dir: Folder of ``NN_name.ipynb`` notebooks.
        out: Folder that receives ``<run-id>/``.
        profile: ``smoke``, ``workshop``, ``full`` or ``auto``; resolved once for the whole run.
        only: Selection like ``"02,05-06"``; None runs every notebook.
        parameters: Extra papermill parameters; each goes to the notebooks that declare it.
        resume: An earlier run folder: its notebooks that succeeded are skipped, the rest run
            again with the same parameters and workspace.
        progress: Show one progress bar per notebook, over its cells, naming the cell being
            executed (instead of the start and finish lines of ``on_event``).
        cell_timeout: Seconds a single cell may run (None: no limit).
        on_event: Called with one line per event (start and finish when there are no progress
            bars, a failure, a file that keeps a secret) for the terminal.

    Returns:
        The run folder and its summary; ``failure`` is set when a notebook failed (the run stops
        there, because later notebooks build on earlier ones).

    Raises:
        RunError: For bad options: unknown notebooks, unknown or secret parameters, a resume
            folder without ``summary.json``.
    """
    say = on_event or (lambda _line: None)
    values = secret_values()
    if resume is not None:
        run_dir = Path(resume).resolve()
        summary_path = run_dir / SUMMARY_FILE
        if not summary_path.is_file():
            raise RunError(
                f"--resume {str(resume)!r}: no {SUMMARY_FILE} there; is it a run folder?"
            )
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        notebooks_root = Path(summary["notebooks_dir"])
        selected = [notebooks_root / entry["notebook"] for entry in summary["notebooks"]]
        missing = [str(p) for p in selected if not p.is_file()]
        if missing:
            raise RunError(f"--resume: the run's notebooks are gone: {', '.join(missing)}.")
        profile_obj = resolve_profile(summary["profile"])
        given = dict(summary.get("parameters", {}))
        skip = {e["notebook"] for e in summary["notebooks"] if e["status"] == OK}
        for entry in summary["notebooks"]:
            if entry["notebook"] not in skip:
                entry.update(status=PENDING, seconds=None, metrics={}, error=None, cells=[])
        summary.update(status="running", resumed=_now(), finished=None)
    else:
        notebooks_root = Path(notebooks_dir).resolve()
        selected = select_notebooks(find_notebooks(notebooks_root), only)
        profile_obj = resolve_profile(profile)
        given = dict(parameters or {})
        for key in given:
            if is_secret_name(key):
                raise RunError(
                    f"Parameter {key} names a secret; set it in the environment instead."
                )
        declared = {p.name: notebook_parameters(p) for p in selected}
        unknown = sorted(k for k in given if not any(k in d for d in declared.values()))
        if unknown:
            names = sorted({k for d in declared.values() for k in d})
            raise RunError(
                f"Unknown parameter(s) {', '.join(unknown)}: no selected notebook declares them. "
                f"Declared: {', '.join(names)}."
            )
        out_root = Path(out).resolve()
        run_id = _new_run_id(profile_obj.name)
        run_dir = out_root / run_id
        suffix = 1
        while run_dir.exists():
            suffix += 1
            run_dir = out_root / f"{run_id}-{suffix}"
        run_dir.mkdir(parents=True)
        skip = set()
        summary = {
            "run_id": run_dir.name,
            "profile": profile_obj.name,
            "parameters": given,
            "notebooks_dir": str(notebooks_root),
            "workspace": str(run_dir / "workspace"),
            "started": _now(),
            "finished": None,
            "status": "running",
            "seconds": None,
            "environment": _environment(),
            "notebooks": [
                {
                    "notebook": p.name,
                    "status": PENDING,
                    "seconds": None,
                    "metrics": {},
                    "error": None,
                    "cells": [],
                }
                for p in selected
            ],
        }
        atomic_write_text(
            run_dir / PARAMS_FILE,
            yaml.safe_dump(
                {"profile": profile_obj.name, "only": only, "parameters": given}, sort_keys=False
            ),
        )

    workspace = Path(summary["workspace"])
    workspace.mkdir(parents=True, exist_ok=True)
    handler = _open_log(run_dir / LOG_FILE, values)
    loggers = [logging.getLogger("papermill"), logging.getLogger("tcv")]
    saved_levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
    log = logging.getLogger("tcv")
    started = time.perf_counter() - float(summary.get("seconds") or 0)
    failure: NotebookFailure | None = None
    _write_artifacts(run_dir, summary, values)
    entries = {e["notebook"]: e for e in summary["notebooks"]}
    try:
        todo = [p for p in selected if p.name not in skip]
        for number, path in enumerate(todo, start=1):
            # With progress bars, each notebook is one line: its bar over the cells, naming the
            # cell being executed; without (a log, CI), a line when it starts and when it ends.
            bar = f"[{number}/{len(todo)}] {path.stem}" if progress else None
            entry = entries[path.name]
            declared = notebook_parameters(path)
            params = {k: v for k, v in given.items() if k in declared}
            params.update(PROFILE=profile_obj.name, WORKDIR=str(workspace))
            params = {k: v for k, v in params.items() if k in declared}
            log.info("start %s with parameters %s", path.name, params)
            if not progress:
                say(f"▶ {path.name}")
            output = run_dir / path.name
            t0 = time.perf_counter()
            try:
                _execute(path, output, params, notebooks_root, values, bar, cell_timeout)
            except Exception as exc:
                failure = _failure_from(exc, path, output)
                failure.error = redact(failure.error, values)
                failure.source_line = redact(failure.source_line, values)
                entry.update(
                    status=FAILED,
                    seconds=round(time.perf_counter() - t0, 2),
                    error={
                        "cell": failure.cell,
                        "code": failure.source_line,
                        "message": failure.error,
                    },
                )
                if output.exists():
                    executed = json.loads(output.read_text(encoding="utf-8"))
                    entry.update(metrics=collect_metrics(executed), cells=cell_seconds(executed))
                    entry.update(export_views(run_dir, output, values))
                log.error("%s", failure)
                say(f"✗ {failure}")
                break
            executed = json.loads(output.read_text(encoding="utf-8"))
            entry.update(
                status=OK,
                seconds=round(time.perf_counter() - t0, 2),
                metrics=collect_metrics(executed),
                error=None,
                cells=cell_seconds(executed),
            )
            entry.update(export_views(run_dir, output, values))  # its HTML page and figures
            log.info("ok %s in %.1f s", path.name, entry["seconds"])
            if not progress:
                say(f"✓ {path.name} ({entry['seconds']:.1f} s)")
            _write_artifacts(run_dir, summary, values)
    finally:
        summary["seconds"] = round(time.perf_counter() - started, 2)
        summary["finished"] = _now()
        summary["status"] = (
            FAILED
            if failure
            else (OK if all(e["status"] == OK for e in summary["notebooks"]) else "interrupted")
        )
        for kept in scrub_workspace(workspace, values):
            log.warning(
                "%s holds a secret's value and is not text: delete it before sharing.", kept
            )
            say(f"! {kept} holds a secret's value and is not text: delete it before sharing.")
        _write_artifacts(run_dir, summary, values)
        for lg, level in zip(loggers, saved_levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
        handler.close()
    return RunResult(run_dir=run_dir, summary=redact_tree(summary, values), failure=failure)


def _metric_text(metrics: dict[str, Any], bars: dict[str, tuple[str, float]]) -> str:
    return ", ".join(
        (f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}") + bar_note(k, v, bars)
        for k, v in metrics.items()
    )


def render_report(summary: dict[str, Any]) -> str:
    """Renders a run's summary as a self-contained HTML page (``report.html``): one row per
    notebook (linked as executed and as HTML, metrics beside their bars), the figures an
    instructor checks (:mod:`tcv_helpers.batch.report`), the slowest cells, the environment."""
    esc = html.escape
    bars = read_bars(summary.get("workspace"))
    rows, figures = [], []
    for entry in summary["notebooks"]:
        status = entry["status"]
        link = f'<a href="{esc(entry["notebook"])}">{esc(entry["notebook"])}</a>'
        if entry.get("html"):
            link += f' (<a href="{esc(entry["html"])}">HTML</a>)'
        figures += [(entry["notebook"], figure) for figure in entry.get("figures") or []]
        seconds = "" if entry["seconds"] is None else f"{entry['seconds']:.1f}"
        error = entry.get("error") or {}
        detail = (
            f"cell {esc(str(error.get('cell')))}: <code>{esc(error.get('code') or '')}</code><br>"
            f"{esc(error.get('message') or '')}"
            if error
            else esc(_metric_text(entry.get("metrics") or {}, bars))
        )
        rows.append(
            f'<tr class="{esc(status)}"><td>{link}</td><td>{esc(status)}</td>'
            f'<td class="num">{seconds}</td><td>{detail}</td></tr>'
        )
    timed = [
        (entry["notebook"], cell)
        for entry in summary["notebooks"]
        for cell in entry.get("cells") or []
    ]
    slowest = sorted(timed, key=lambda item: -item[1]["seconds"])[:SLOWEST_CELLS]
    cell_rows = "".join(
        f'<tr><td>{esc(name)}</td><td class="num">{cell["cell"]}</td>'
        f'<td><code>{esc(cell["code"])}</code></td><td class="num">{cell["seconds"]:.1f}</td></tr>'
        for name, cell in slowest
    )
    cell_table = (
        "<h2>Where the seconds go</h2>\n<p>The slowest cells of the run (every cell's seconds are"
        f" in <code>{esc(SUMMARY_FILE)}</code>).</p>\n<table><thead><tr><th>notebook</th>"
        f"<th>cell</th><th>first line</th><th>seconds</th></tr></thead>\n<tbody>{cell_rows}"
        "</tbody></table>"
        if slowest
        else ""
    )
    figure_html = "".join(
        f'<figure><img src="{esc(figure["file"])}" alt="{esc(figure["caption"])}">'
        f"<figcaption>{esc(figure['caption'])} ({esc(name)})</figcaption></figure>\n"
        for name, figure in figures
        if str(figure.get("file", "")).startswith(f"{FIGURES_DIR}/")
    )
    figure_section = f"<h2>Figures</h2>\n{figure_html}" if figure_html else ""
    env = summary.get("environment", {})
    env_rows = "".join(
        f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>" for k, v in env.items()
    )
    params = summary.get("parameters") or {}
    param_text = esc(", ".join(f"{k}={v}" for k, v in params.items()) or "none")
    total = summary.get("seconds")
    total_text = "" if total is None else f"{total:.1f} s"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>tcv run {esc(summary["run_id"])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
td, th {{ border: 1px solid #ccc; padding: .3rem .6rem; text-align: left; vertical-align: top; }}
td.num {{ text-align: right; }}
tr.ok td:nth-child(2) {{ color: #1a7f37; font-weight: bold; }}
tr.failed td:nth-child(2) {{ color: #cf222e; font-weight: bold; }}
tr.pending td:nth-child(2) {{ color: #888; }}
figure {{ margin: 1rem 0; }} figure img {{ max-width: 100%; border: 1px solid #ddd; }}
</style></head><body>
<h1>traffic-cams-cv run <code>{esc(summary["run_id"])}</code></h1>
<p>Status <strong>{esc(summary["status"])}</strong>, profile <strong>{esc(summary["profile"])}</strong>,
{total_text}; parameters: {param_text}. Started {esc(str(summary.get("started")))},
finished {esc(str(summary.get("finished")))}.</p>
<table><thead><tr><th>notebook</th><th>status</th><th>seconds</th><th>metrics / error</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
{figure_section}
{cell_table}
<h2>Environment</h2>
<table>{env_rows}</table>
<p>Reproduce with <code>tcv run --params {esc(PARAMS_FILE)}</code> from this folder's
<code>{esc(PARAMS_FILE)}</code>; resume a failed run with <code>tcv run --resume RUN_DIR</code>.</p>
</body></html>
"""


def load_params_file(path: str | os.PathLike) -> dict[str, Any]:
    """Reads a parameter file (``params.yaml`` of a run, or one written by hand).

    Keys: ``profile`` (optional), ``only`` (optional), ``parameters`` (mapping, optional).

    Raises:
        RunError: If the file is missing, not YAML, or has unknown keys.
    """
    file = Path(path)
    data = read_yaml_mapping(
        file, error=RunError, what="Parameter file", holds="a mapping (profile, only, parameters)"
    )
    unknown = sorted(set(data) - {"profile", "only", "parameters"})
    if unknown:
        raise RunError(f"Parameter file {str(file)!r}: unknown key(s) {', '.join(unknown)}.")
    params = data.get("parameters") or {}
    if not isinstance(params, dict):
        raise RunError(f"Parameter file {str(file)!r}: 'parameters' must be a mapping.")
    return {"profile": data.get("profile"), "only": data.get("only"), "parameters": params}


def iter_artifacts(run_dir: str | os.PathLike) -> Iterable[Path]:
    """Every file a run wrote (for scanning, archiving or copying results back)."""
    return (p for p in sorted(Path(run_dir).rglob("*")) if p.is_file())


def default_notebooks_dir() -> Path:
    """``./notebooks`` when it exists, else the notebooks of the repository this package is in."""
    here = Path.cwd() / "notebooks"
    if here.is_dir():
        return here
    repo = Path(__file__).resolve().parents[2] / "notebooks"
    if repo.is_dir():
        return repo
    raise RunError(
        "No notebooks/ folder here. Run tcv from the course repository, or pass --notebooks DIR."
    )


def _display_path(path: Path) -> str:
    """A path relative to the working folder when it lies inside it, else absolute."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def main_message(result: RunResult) -> str:
    """The closing lines ``tcv run`` prints."""
    where = _display_path(result.run_dir)
    if result.ok:
        count, seconds = len(result.summary["notebooks"]), result.summary["seconds"]
        return f"All {count} notebooks ok in {seconds:.0f} s. Results: {where}/ ({REPORT_FILE}, {SUMMARY_FILE})"
    failure = result.failure
    return (
        f"tcv run failed: {failure}\n"
        f"  executed notebook: {_display_path(failure.output)}\n"
        f"  log: {where}/{LOG_FILE}\n"
        f"  after fixing it, continue with: tcv run --resume {where}"
    )


def run_command(
    *,
    profile: str | None = None,
    only: str | None = None,
    parameters: Sequence[str] = (),
    params_file: str | os.PathLike | None = None,
    out: str | os.PathLike = "runs",
    resume: str | os.PathLike | None = None,
    notebooks: str | os.PathLike | None = None,
    cell_timeout: int | None = None,
    progress: bool = True,
    on_event: Callable[[str], None] | None = None,
) -> RunResult:
    """``tcv run``: its options turned into one :func:`run_notebooks` call.

    A parameter file gives the profile, the selection and parameters; ``-p`` values and the
    other options take precedence over it.

    Args:
        profile: ``smoke``, ``workshop``, ``full`` or ``auto`` (None: the file's, else ``auto``).
        only: Notebook selection such as ``"02,05-06"`` (None: the file's, else all).
        parameters: ``KEY=VALUE`` texts as ``-p`` takes them (values are YAML literals).
        params_file: A parameter file (a run's ``params.yaml``) to reproduce.
        out: Folder that receives ``<run-id>/``.
        resume: An earlier run folder to continue; it brings its own profile and parameters.
        notebooks: Notebook folder (default: ``./notebooks``, else the course's).
        cell_timeout: Seconds a single cell may run (None: no limit).
        progress: Show progress bars.
        on_event: Called with one line per event for the terminal.

    Returns:
        The run (see :func:`run_notebooks`).

    Raises:
        RunError: For ``resume`` with other options, a bad parameter file or ``KEY=VALUE``,
            and what :func:`run_notebooks` refuses.
    """
    if resume and (profile or only or parameters or params_file):
        raise RunError(
            "--resume reuses the run's own profile and parameters; give no other options."
        )
    settings = load_params_file(params_file) if params_file else {}
    values = dict(settings.get("parameters") or {})
    values.update(parse_parameter(item) for item in parameters)
    folder = notebooks or (Path("notebooks") if resume else default_notebooks_dir())
    return run_notebooks(
        folder,
        out=out,
        profile=profile or settings.get("profile") or AUTO,
        only=only or settings.get("only"),
        parameters=values,
        resume=resume,
        progress=progress,
        cell_timeout=cell_timeout,
        on_event=on_event,
    )
