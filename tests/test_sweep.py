"""Sweep files (grid or list, errors with file and line) and `tcv sweep report`: every task's
summary.json in one table, CSV and an HTML page with plots; unfinished tasks with id and log."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from tcv_helpers.batch import sweep
from tcv_helpers.batch.runner import run_notebooks
from tcv_helpers.batch.sweep import SweepError, load_sweep
from tcv_helpers.cli import app

cli = CliRunner()


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- sweep files ------------------------------------------------------------------------


def test_grid_is_every_combination_in_order(tmp_path):
    plan = load_sweep(
        write(
            tmp_path / "lr.yaml",
            "profile: smoke\nonly: 5\nparameters:\n  TARGET: edge\n"
            "grid:\n  EPOCHS: [1, 2]\n  SEED: [0, 1, 2]\n",
        )
    )
    assert plan.name == "lr" and plan.profile == "smoke" and plan.only == "05"
    assert [t.name for t in plan.tasks] == [f"task-00{i}" for i in range(6)]
    assert [(t.parameters["EPOCHS"], t.parameters["SEED"]) for t in plan.tasks] == [
        (e, s) for e in (1, 2) for s in (0, 1, 2)
    ]
    assert all(t.parameters["TARGET"] == "edge" for t in plan.tasks)
    assert plan.parameter_names == ["TARGET", "EPOCHS", "SEED"]
    assert plan.source == (tmp_path / "lr.yaml").resolve()


def test_list_gives_one_task_per_entry(tmp_path):
    plan = load_sweep(
        write(
            tmp_path / "s.yaml",
            "name: pick\nlist:\n  - {MODEL: yolo11n.pt}\n  - {MODEL: yolo11s.pt, EPOCHS: 3}\n",
        )
    )
    assert plan.name == "pick" and plan.profile is None and plan.only is None
    assert [t.parameters for t in plan.tasks] == [
        {"MODEL": "yolo11n.pt"},
        {"MODEL": "yolo11s.pt", "EPOCHS": 3},
    ]


def test_task_names_widen_past_a_thousand_tasks():
    assert sweep.task_name(7, 2) == "task-007"
    assert sweep.task_name(7, 1500) == "task-0007" and sweep.index_width(1500) == 4


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("grid:\n  A: [1]\nlist:\n  - {A: 1}\n", "exactly one of 'grid'"),
        ("profile: smoke\n", "exactly one of 'grid'"),
        ("profile: smoke\ngrid:\n  EPOCHS: 3\n", "line 3: grid.EPOCHS: must be a non-empty list"),
        ("grid:\n  EPOCHS: []\n", "line 2: grid.EPOCHS"),
        (
            "grid:\n  ROBOFLOW_API_KEY: [a]\n",
            "line 2: grid.ROBOFLOW_API_KEY: ROBOFLOW_API_KEY names a secret",
        ),
        ("list:\n  - {A: 1}\n  - 7\n", "line 3: list[1]: each entry is a mapping"),
        ("list:\n  - {A: 1}\n  - {not-a-name: 2}\n", "line 3: list[1].not-a-name: parameter names"),
        ("parameters:\n  A: 1\ngrid:\n  A: [1, 2]\n", "grid: A is also under 'parameters'"),
        ("grid:\n  A: [1]\nepochs: 3\n", "line 3: epochs: unknown key"),
        ("name: ../up\ngrid:\n  A: [1]\n", "line 1: name: '../up' is not a folder name"),
        ('grid:\n  A: ["two\\nlines"]\n', "grid.A[0]: a parameter value must fit on one line"),
        ("grid:\n  A: [1\n", "not valid YAML"),
        ("- 1\n- 2\n", "must hold a mapping with 'grid' or 'list'"),
    ],
)
def test_bad_sweep_files_name_file_line_and_field(tmp_path, text, expected):
    file = write(tmp_path / "bad.yaml", text)
    with pytest.raises(SweepError) as err:
        load_sweep(file)
    assert str(file) in str(err.value) and expected in str(err.value), str(err.value)


def test_missing_sweep_file_is_named(tmp_path):
    with pytest.raises(SweepError, match=r"nope\.yaml' does not exist"):
        load_sweep(tmp_path / "nope.yaml")


# --- sweep folders as tcv slurm and tcv run leave them ----------------------------------


def summary(
    folder: Path,
    *,
    params: dict,
    metrics: dict[str, dict],
    status: str = "ok",
    seconds: float = 3.0,
    started: str = "2026-01-01T10:00:00+00:00",
    failed: str | None = None,
) -> Path:
    """A run folder with the summary.json ``tcv run`` writes (see tcv_helpers.batch.runner)."""
    folder.mkdir(parents=True)
    notebooks = []
    for name, values in metrics.items():
        entry = {"notebook": name, "status": "ok", "seconds": 1.0, "metrics": values, "error": None}
        if name == failed:
            entry.update(
                status="failed", error={"cell": 9, "code": "x = 1", "message": "ValueError: bad"}
            )
        notebooks.append(entry)
    data = {
        "run_id": folder.name, "profile": "smoke", "parameters": params, "status": status,
        "started": started, "seconds": seconds, "notebooks": notebooks,
    }  # fmt: skip
    (folder / "summary.json").write_text(json.dumps(data))
    return folder


def manifest(folder: Path, tasks: list[dict], job_id: str = "41") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    sweep.write_manifest(
        folder,
        {
            "name": folder.name,
            "tasks": [
                {"index": i, "name": sweep.task_name(i, len(tasks)), "parameters": p}
                for i, p in enumerate(tasks)
            ],
            "submissions": [{"job_id": job_id, "array": f"0-{len(tasks) - 1}"}],
        },
    )


def slurm_log(task_dir: Path, name: str, text: str = "", age: float = 0.0) -> Path:
    path = task_dir / name
    path.write_text(text)
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


@pytest.fixture
def mixed(tmp_path) -> Path:
    """A sweep of six tasks: ok, ok after a retry, failed, interrupted, never ran, queued."""
    root = tmp_path / "mix"
    manifest(
        root,
        [
            {"SEED": s, "LR": lr}
            for s, lr in [(0, 0.1), (1, 0.1), (2, 0.2), (3, 0.2), (4, 0.3), (5, 0.3)]
        ],
    )
    m = "05_training.ipynb"
    summary(root / "task-000" / "r1", params={"SEED": 0, "LR": 0.1}, metrics={m: {"map50": 0.5}})
    slurm_log(root / "task-000", "slurm-41_0.out")
    summary(
        root / "task-001" / "r1",
        params={"SEED": 1, "LR": 0.1},
        metrics={m: {}},
        status="failed",
        failed=m,
    )
    summary(
        root / "task-001" / "r2", params={"SEED": 1, "LR": 0.1}, metrics={m: {"map50": 0.7}},
        started="2026-01-01T11:00:00+00:00", seconds=5.0,
    )  # fmt: skip
    slurm_log(root / "task-001", "slurm-41_1.out", age=60)
    slurm_log(root / "task-001", "slurm-45_1.out")
    summary(
        root / "task-002" / "r1",
        params={"SEED": 2, "LR": 0.2},
        metrics={m: {}},
        status="failed",
        failed=m,
    )
    slurm_log(root / "task-002", "slurm-41_2.out")
    summary(
        root / "task-003" / "r1",
        params={"SEED": 3, "LR": 0.2},
        metrics={m: {"epochs": 2}},
        status="running",
    )
    slurm_log(
        root / "task-003",
        "slurm-41_3.out",
        "slurmstepd: error: *** JOB 44 CANCELLED DUE TO TIME LIMIT ***",
    )
    (root / "task-004").mkdir()
    slurm_log(
        root / "task-004", "slurm-41_4.out", "tcv: the course is not installed in this environment"
    )
    (root / "task-005").mkdir()
    return root


def test_collect_reads_every_task_with_status_log_and_error(mixed):
    result = sweep.collect(mixed, queue={5: "PENDING"})
    by_index = {t.index: t for t in result.tasks}
    assert [t.status for t in result.tasks] == [
        "ok",
        "ok",
        "failed",
        "interrupted",
        "missing",
        "pending",
    ]
    assert by_index[1].metrics == {"map50": 0.7} and by_index[1].attempts == 2
    assert by_index[1].seconds == 5.0 and by_index[1].log == mixed / "task-001" / "slurm-45_1.out"
    assert by_index[2].error == "05_training.ipynb cell 9: ValueError: bad"
    assert by_index[2].log == mixed / "task-002" / "slurm-41_2.out"
    assert "time limit" in by_index[3].error and by_index[3].metrics == {"epochs": 2}
    assert "never reached `tcv run`" in by_index[4].error and by_index[4].attempts == 0
    assert by_index[5].error is None and by_index[5].parameters == {"SEED": 5, "LR": 0.3}
    assert [t.index for t in result.unfinished] == [2, 3, 4] and not result.complete
    assert result.varying_parameters == ["SEED", "LR"]
    assert "task 2 (task-002): failed: 05_training.ipynb cell 9" in by_index[2].describe()
    assert f"log: {mixed / 'task-002' / 'slurm-41_2.out'}" in by_index[2].describe()


def test_queue_decides_between_running_and_interrupted(mixed):
    assert sweep.collect(mixed, queue={3: "RUNNING"}).tasks[3].status == "running"
    assert sweep.collect(mixed, queue={}).tasks[3].status == "interrupted"
    # Without the queue, a run that says "running" is believed and a task without run is missing.
    unknown = sweep.collect(mixed, queue=None)
    assert unknown.tasks[3].status == "running" and unknown.tasks[5].status == "missing"
    assert "never submitted or has not started" in unknown.tasks[5].error
    # A resubmitted task waiting in the queue is pending, whatever its last run said.
    assert sweep.collect(mixed, queue={2: "PENDING"}).tasks[2].status == "pending"


def test_metric_recorded_by_two_notebooks_gets_their_numbers(tmp_path):
    root = tmp_path / "two"
    manifest(root, [{"A": 1}, {"A": 2}])
    for i in (0, 1):
        summary(
            root / f"task-00{i}" / "r", params={"A": i + 1},
            metrics={"05_training.ipynb": {"map50": 0.1 * i, "epochs": 3}, "06_evaluation.ipynb": {"map50": 0.2 * i}},
        )  # fmt: skip
    result = sweep.collect(root)
    assert result.metric_names == ["05.map50", "epochs", "06.map50"]
    assert result.tasks[1].metrics == {"05.map50": 0.1, "epochs": 3, "06.map50": 0.2}
    assert sweep.plottable_metrics(result) == ["05.map50", "06.map50", "seconds"]


def test_folder_without_manifest_gives_a_row_per_run(tmp_path):
    summary(tmp_path / "runs" / "a", params={"X": 1}, metrics={"01_p.ipynb": {"m": 1}})
    summary(
        tmp_path / "runs" / "b",
        params={"X": 2},
        metrics={"01_p.ipynb": {"m": 4}},
        status="failed",
        failed="01_p.ipynb",
    )
    result = sweep.collect(tmp_path / "runs")
    assert [(t.name, t.index, t.status) for t in result.tasks] == [
        ("a", None, "ok"),
        ("b", None, "failed"),
    ]
    assert result.tasks[1].log == tmp_path / "runs" / "b" / "run.log"
    (tmp_path / "empty").mkdir()
    with pytest.raises(SweepError, match=r"holds no summary\.json"):
        sweep.collect(tmp_path / "empty")
    with pytest.raises(SweepError, match="is not a folder"):
        sweep.collect(tmp_path / "nowhere")


def test_report_writes_csv_and_html_with_plots(mixed, tmp_path):
    result = sweep.collect(mixed, queue={5: "PENDING"})
    csv_path, html_path = sweep.write_report(result, tmp_path / "out")
    table = pd.read_csv(csv_path)
    assert list(table["task"]) == list(range(6)) and list(table["SEED"]) == list(range(6))
    assert table.loc[1, "map50"] == 0.7 and pd.isna(table.loc[2, "map50"])
    assert table.loc[2, "log"].endswith("task-002/slurm-41_2.out")
    assert list(table.columns[:4]) == ["task", "name", "status", "profile"]
    page = html_path.read_text()
    assert page.count("data:image/png;base64,") == len(sweep.plottable_metrics(result)) == 2
    assert (
        "<strong>task 2</strong>" in page
        and "slurm-41_2.out" in page
        and "--resubmit-failed" in page
    )
    assert "<script" not in page


def test_html_escapes_what_runs_recorded(tmp_path):
    root = tmp_path / "esc"
    manifest(root, [{"NAME": "<script>alert(1)</script>"}, {"NAME": "b"}])
    summary(
        root / "task-000" / "r",
        params={"NAME": "<script>alert(1)</script>"},
        metrics={"01_p.ipynb": {"note": "<b>"}},
    )
    page = sweep.render_html(sweep.collect(root))
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_plot_puts_the_varying_parameter_on_x(tmp_path):
    root = tmp_path / "plot"
    values = [0.6, 0.2, 0.4]
    manifest(root, [{"LR": lr, "OPT": "sgd"} for lr in values])
    for i, lr in enumerate(values):
        summary(
            root / f"task-00{i}" / "r",
            params={"LR": lr, "OPT": "sgd"},
            metrics={"05_t.ipynb": {"map50": lr * 2}},
        )
    result = sweep.collect(root)
    fig = sweep.plot_sweep(result, "map50")
    (line,) = fig.axes[0].get_lines()
    assert list(line.get_xdata()) == [0.2, 0.4, 0.6] and list(line.get_ydata()) == pytest.approx(
        [0.4, 0.8, 1.2]
    )
    assert fig.axes[0].get_xlabel() == "LR" and fig.axes[0].get_ylabel() == "map50"
    with pytest.raises(KeyError, match="nope"):
        sweep.plot_sweep(result, "nope")


def test_plot_draws_a_line_per_value_of_a_second_parameter(tmp_path):
    root = tmp_path / "grid"
    combos = [{"MODEL": m, "EPOCHS": e} for m in ("n", "s") for e in (1, 2)]
    manifest(root, combos)
    for i, combo in enumerate(combos):
        summary(
            root / f"task-00{i}" / "r",
            params=combo,
            metrics={"05_t.ipynb": {"map50": combo["EPOCHS"] / 10}},
        )
    fig = sweep.plot_sweep(sweep.collect(root), "seconds")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "MODEL" and [t.get_text() for t in ax.get_xticklabels()] == [
        '"n"',
        '"s"',
    ]
    assert sorted(line.get_label() for line in ax.get_lines()) == ["EPOCHS=1", "EPOCHS=2"]


def test_plot_without_a_varying_parameter_is_bars(tmp_path):
    root = tmp_path / "same"
    manifest(root, [{"A": 1}, {"A": 1}])
    for i in (0, 1):
        summary(
            root / f"task-00{i}" / "r",
            params={"A": 1},
            metrics={"01_p.ipynb": {"m": i}},
            seconds=2.0 + i,
        )
    fig = sweep.plot_sweep(sweep.collect(root), "seconds")
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == [2.0, 3.0]


def test_cli_report_exit_code_and_unfinished_tasks(mixed, tmp_path):
    result = cli.invoke(
        app, ["sweep", "report", str(mixed), "--no-queue", "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 1, result.output
    assert "6 tasks: 2 ok, 1 running, 1 failed, 2 missing" in result.output
    assert (
        f"task 2 (task-002): failed: 05_training.ipynb cell 9: ValueError: bad; log: {mixed / 'task-002' / 'slurm-41_2.out'}"
        in result.output
    )
    assert f"Resubmit only these: tcv slurm --resubmit-failed {mixed} --submit" in result.output
    assert (tmp_path / "r" / "sweep.csv").is_file() and (tmp_path / "r" / "sweep.html").is_file()
    missing = cli.invoke(app, ["sweep", "report", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "is not a folder" in missing.output


def _notebook(path: Path, code: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    cell = nbformat.v4.new_code_cell('PROFILE = "auto"\nWORKDIR = "workspace"\nSCALE = 1')
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(code)]
    nbformat.write(nb, path)
    return path


def test_report_of_real_tcv_runs(tmp_path):
    """What `tcv run` writes is what the report reads (one kernel per task: a few seconds)."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _notebook(
        notebooks / "01_scale.ipynb",
        "from tcv_helpers import record_metrics\nrecord_metrics(area=SCALE * SCALE, scale=SCALE)",
    )
    root = tmp_path / "runs" / "scale"
    manifest(root, [{"SCALE": 2}, {"SCALE": 3}])
    for index, scale in enumerate((2, 3)):
        run = run_notebooks(
            notebooks,
            out=root / f"task-00{index}",
            profile="smoke",
            parameters={"SCALE": scale},
            progress=False,
        )
        assert run.ok, run.failure
    result = sweep.collect(root)
    assert [t.metrics for t in result.tasks] == [{"area": 4, "scale": 2}, {"area": 9, "scale": 3}]
    assert [t.parameters for t in result.tasks] == [{"SCALE": 2}, {"SCALE": 3}]
    assert all(t.status == "ok" and t.seconds > 0 and t.profile == "smoke" for t in result.tasks)
    assert yaml.safe_load((result.tasks[0].run_dir / "params.yaml").read_text())["parameters"] == {
        "SCALE": 2
    }
