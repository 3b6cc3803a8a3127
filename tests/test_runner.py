"""`tcv run`: selection, parameters, failures that name notebook and cell, resume, secrets."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from tcv_helpers.batch import runner
from tcv_helpers.batch.runner import (
    RunError,
    cell_label,
    parse_parameter,
    run_notebooks,
    select_notebooks,
)
from tests.conftest import NOTEBOOKS, ROOT

FAKE_KEY = "fake-key-9f8e7d6c5b4a"
TCV = [sys.executable, "-c", "from tcv_helpers.cli import app; app()"]


def make_notebook(path: Path, *codes: str, params: str = "") -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    cell = nbformat.v4.new_code_cell(f'PROFILE = "auto"\nWORKDIR = "workspace"\n{params}')
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}"), cell]
    nb.cells += [nbformat.v4.new_code_cell(code) for code in codes]
    nbformat.write(nb, path)
    return path


COUNT = "from pathlib import Path\n(Path(WORKDIR) / '{name}.runs').open('a').write('x')"


@pytest.fixture
def course(tmp_path):
    folder = tmp_path / "nbs"
    folder.mkdir()
    make_notebook(
        folder / "00_first.ipynb",
        COUNT.format(name="00"),
        "from tcv_helpers import record_metrics\nrecord_metrics(answer=EPOCHS * 2, profile=PROFILE)",
        params="EPOCHS = 1",
    )
    make_notebook(
        folder / "01_second.ipynb",
        COUNT.format(name="01"),
        "import os\nraise ValueError('planted failure ' + os.environ.get('FAKE_API_KEY', ''))",
    )
    make_notebook(
        folder / "02_third.ipynb",
        COUNT.format(name="02"),
        "import os\nprint('the key is', os.environ.get('FAKE_API_KEY'))",
        "(Path(WORKDIR) / 'saved-config.txt').write_text('key: ' + os.environ['FAKE_API_KEY'])",
    )
    return folder


def _notebooks(*names):
    return [Path(n) for n in names]


@pytest.mark.parametrize(
    ("only", "expected"),
    [
        (None, ["00_a", "01_b", "02_c", "05_d"]),
        ("02", ["02_c"]),
        ("00,05", ["00_a", "05_d"]),
        ("01-02", ["01_b", "02_c"]),
        (" 5 , 0-1 ", ["00_a", "01_b", "05_d"]),
    ],
)
def test_select(only, expected):
    nbs = _notebooks("00_a.ipynb", "01_b.ipynb", "02_c.ipynb", "05_d.ipynb")
    assert [p.stem for p in select_notebooks(nbs, only)] == expected


@pytest.mark.parametrize(
    ("only", "message"), [("03", "no notebook 03"), ("x", "not a number"), ("02-01", "backwards")]
)
def test_select_errors(only, message):
    with pytest.raises(RunError, match=message):
        select_notebooks(_notebooks("00_a.ipynb", "01_b.ipynb", "02_c.ipynb"), only)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("EPOCHS=5", ("EPOCHS", 5)),
        ("LR=0.01", ("LR", 0.01)),
        ("NAME=yolo11n", ("NAME", "yolo11n")),
        ("FLAG=true", ("FLAG", True)),
        ("EMPTY=", ("EMPTY", "")),
        ("URL=http://a/b?x=1", ("URL", "http://a/b?x=1")),
    ],
)
def test_parse_parameter(text, expected):
    assert parse_parameter(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("EPOCHS", "KEY=VALUE"),
        ("2X=1", "KEY=VALUE"),
        ("ROBOFLOW_API_KEY=abc", "never passed as parameters"),
        ("HF_TOKEN=abc", "environment"),
    ],
)
def test_parse_parameter_errors(text, message):
    with pytest.raises(RunError, match=message):
        parse_parameter(text)


def test_params_file(tmp_path):
    good = tmp_path / "p.yaml"
    good.write_text("profile: smoke\nparameters:\n  EPOCHS: 4\n")
    assert runner.load_params_file(good) == {
        "profile": "smoke",
        "only": None,
        "parameters": {"EPOCHS": 4},
    }
    bad = tmp_path / "bad.yaml"
    bad.write_text("profil: smoke\n")
    with pytest.raises(RunError, match=r"unknown key.*profil"):
        runner.load_params_file(bad)
    with pytest.raises(RunError, match="does not exist"):
        runner.load_params_file(tmp_path / "none.yaml")


def test_run_command_merges_the_parameter_file_and_the_options(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(runner, "run_notebooks", lambda folder, **kw: calls.append((folder, kw)))
    file = tmp_path / "params.yaml"
    file.write_text("profile: smoke\nonly: '01'\nparameters:\n  EPOCHS: 4\n  TARGET: cpu\n")
    runner.run_command(params_file=file, parameters=["EPOCHS=6"], notebooks=tmp_path)
    folder, given = calls[-1]
    assert folder == tmp_path and given["profile"] == "smoke" and given["only"] == "01"
    assert given["parameters"] == {"EPOCHS": 6, "TARGET": "cpu"}  # -p wins over the file
    runner.run_command(params_file=file, profile="full", only="02", notebooks=tmp_path)
    assert (calls[-1][1]["profile"], calls[-1][1]["only"]) == ("full", "02")
    runner.run_command(notebooks=tmp_path)
    assert calls[-1][1]["profile"] == "auto" and calls[-1][1]["parameters"] == {}
    with pytest.raises(RunError, match="--resume reuses"):
        runner.run_command(resume=tmp_path, only="01")
    with pytest.raises(RunError, match="KEY=VALUE"):
        runner.run_command(parameters=["EPOCHS"], notebooks=tmp_path)
    assert len(calls) == 3


def test_unknown_and_secret_parameters_are_refused(course, tmp_path):
    with pytest.raises(RunError, match=r"EPOCH.*Declared: EPOCHS"):
        run_notebooks(
            course, out=tmp_path / "runs", profile="smoke", parameters={"EPOCH": 3}, progress=False
        )
    with pytest.raises(RunError, match="secret"):
        run_notebooks(
            course,
            out=tmp_path / "runs",
            profile="smoke",
            parameters={"X_TOKEN": "a"},
            progress=False,
        )
    assert not (tmp_path / "runs").exists(), "nothing is written for a bad call"


def test_progress_is_one_bar_per_notebook_naming_the_cell_being_run(tmp_path, capsys):
    folder = tmp_path / "nbs"
    folder.mkdir()
    make_notebook(folder / "00_one.ipynb", "# a comment first\nanswer = 6 * 7\nprint(answer)")
    make_notebook(folder / "01_two.ipynb", "%matplotlib inline\nimport time; time.sleep(0.01)")
    lines = []
    result = run_notebooks(
        folder, out=tmp_path / "runs", profile="smoke", progress=True, on_event=lines.append
    )
    assert result.failure is None
    err = capsys.readouterr().err
    assert "[1/2] 00_one" in err and "[2/2] 01_two" in err
    assert "cell 3: answer = 6 * 7" in err, "the bar names the cell being executed"
    assert "cell 3: import time; time.sleep(0.01)" in err
    assert not [line for line in lines if line.startswith(("▶", "✓"))], "one line per notebook"
    quiet = []
    run_notebooks(
        folder, out=tmp_path / "runs", profile="smoke", progress=False, on_event=quiet.append
    )
    assert [line.split(" (")[0] for line in quiet] == [
        "▶ 00_one.ipynb", "✓ 00_one.ipynb", "▶ 01_two.ipynb", "✓ 01_two.ipynb",
    ]  # fmt: skip


def test_cell_label_skips_comments_and_magics_and_shortens():
    code = {"cell_type": "code", "source": "%matplotlib inline\n# set up\n\n" + "x" * 80}
    assert cell_label(code, 4) == "cell 5: " + "x" * 45 + "..."
    markdown = {"cell_type": "markdown", "source": "## Step 2: Train\ntext"}
    assert cell_label(markdown, 0) == "cell 1: Step 2: Train"
    assert cell_label({"cell_type": "code", "source": ""}, None) == "cell"


def test_report_escapes_html():
    summary = {
        "run_id": "r<1>",
        "status": "ok",
        "profile": "smoke",
        "seconds": 1.0,
        "parameters": {"A": "<b>"},
        "notebooks": [
            {
                "notebook": "00_x.ipynb",
                "status": "failed",
                "seconds": 1.0,
                "metrics": {},
                "error": {"cell": 3, "code": "x = '<script>'", "message": "E: <i>"},
            }
        ],
    }
    page = runner.render_report(summary)
    assert "<script>" not in page and "&lt;script&gt;" in page and "cell 3" in page


def test_report_lists_the_slowest_cells():
    def entry(name, *seconds):
        cells = [
            {"cell": 2 * i + 3, "code": f"step_{i}()", "seconds": t} for i, t in enumerate(seconds)
        ]
        return {"notebook": name, "status": "ok", "seconds": sum(seconds), "metrics": {},
                "error": None, "cells": cells}  # fmt: skip

    summary = {
        "run_id": "r", "status": "ok", "profile": "smoke", "seconds": 1.0, "parameters": {},
        "notebooks": [entry("05_a.ipynb", 0.5, 90.0, *[0.1] * 20), entry("07_b.ipynb", 40.0, 2.0)],
    }  # fmt: skip
    page = runner.render_report(summary)
    table = page.split("Where the seconds go")[1]
    assert table.index("90.0") < table.index("40.0") < table.index("2.0"), "slowest first"
    assert '<td>05_a.ipynb</td><td class="num">5</td><td><code>step_1()</code>' in table
    assert table.count("<tr><td>") == runner.SLOWEST_CELLS
    assert "Where the seconds go" not in runner.render_report({**summary, "notebooks": []})


def _png(color: tuple[int, int, int]) -> str:
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (4, 3), color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_the_report_shows_figures_notebooks_and_bars(tmp_path):
    from tcv_helpers.batch.report import export_views, notebook_figures
    from tcv_helpers.project import ProjectDefinition, write_project

    secret = "sk-report-0123456789"
    nb = nbformat.v4.new_notebook()
    figure = nbformat.v4.new_code_cell("plot_training(history)")
    figure.id = "05-16"  # a cell whose figure the report shows
    figure.outputs = [nbformat.v4.new_output("display_data", data={"image/png": _png((0, 0, 200))})]
    other = nbformat.v4.new_code_cell("figure")
    other.id = "05-99"  # not listed: its figure stays in the notebook
    other.outputs = [nbformat.v4.new_output("display_data", data={"image/png": _png((9, 9, 9))})]
    leak = nbformat.v4.new_code_cell("print(key)")
    leak.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"key {secret}\n")]
    nb.cells = [nbformat.v4.new_markdown_cell("# 05 · Train"), figure, other, leak]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    executed = run_dir / "05_training.ipynb"
    nbformat.write(nb, executed)
    found = notebook_figures(json.loads(executed.read_text()))
    assert [(cell, caption.split(":")[0]) for cell, caption, _ in found] == [("05-16", "Training")]
    views = export_views(run_dir, executed, [secret])
    assert views["figures"] == [{"file": "figures/05_training-05-16.png", "caption": found[0][1]}]
    assert (run_dir / "figures" / "05_training-05-16.png").read_bytes() == found[0][2]
    page = (run_dir / views["html"]).read_text()
    assert "05 · Train" in page and "data:image/png;base64" in page, "images inline"
    assert secret not in page and "[REDACTED]" in page
    assert "cdnjs" not in page, "no script from the network: the folder is self-contained"

    workspace = tmp_path / "ws"
    write_project(workspace / "project.yaml", ProjectDefinition())
    summary = {
        "run_id": "r", "status": "ok", "profile": "smoke", "seconds": 1.0, "parameters": {},
        "workspace": str(workspace),
        "notebooks": [{"notebook": "05_training.ipynb", "status": "ok", "seconds": 2.0,
                       "metrics": {"map50": 0.62, "recall": 0.41, "epochs": 18},
                       "error": None, **views}],
    }  # fmt: skip
    report = runner.render_report(summary)
    assert '<img src="figures/05_training-05-16.png"' in report
    assert '<a href="html/05_training.html">HTML</a>' in report
    assert "map50=0.62 (bar ≥ 0.5: met)" in report
    assert "recall=0.41 (bar ≥ 0.7: NOT met)" in report
    assert "epochs=18 (bar" not in report, "a metric without a bar stands alone"
    foreign = {**summary["notebooks"][0], "figures": [{"file": "/etc/passwd", "caption": "x"}]}
    assert "/etc/passwd" not in runner.render_report({**summary, "notebooks": [foreign]})


def test_cell_seconds_number_cells_as_the_source_notebook():
    cell = nbformat.v4.new_code_cell
    nb = nbformat.v4.new_notebook()
    injected = cell("PROFILE = 'smoke'")
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), cell("PROFILE = 'auto'"), injected,
                cell("\n  train()  \nmore()"), cell("never_ran()")]  # fmt: skip
    for c, seconds in zip(nb.cells[1:4], (0.01, 0.02, 12.345), strict=True):
        c.metadata["papermill"] = {"duration": seconds}
    assert runner.cell_seconds(nb) == [
        {"cell": 2, "code": "PROFILE = 'auto'", "seconds": 0.01},
        {"cell": 3, "code": "train()", "seconds": 12.35},
    ]


def test_scrub_workspace_blanks_text_and_names_binary_files(tmp_path):
    key = "sk-test-0123456789"
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "notes.json").write_text(f'{{"key": "{key}", "x": 1}}')
    (tmp_path / "clean.txt").write_text("nothing here")
    (tmp_path / "blob.bin").write_bytes(b"\xff\xfe" + key.encode() + b"\x00")
    left = runner.scrub_workspace(tmp_path, [key])
    assert left == [tmp_path / "blob.bin"]
    assert (tmp_path / "sub" / "notes.json").read_text() == '{"key": "[REDACTED]", "x": 1}'
    assert (tmp_path / "clean.txt").read_text() == "nothing here"
    assert runner.scrub_workspace(tmp_path, []) == []


def _scan(run_dir: Path, value: str) -> list[str]:
    return [str(p) for p in runner.iter_artifacts(run_dir) if value.encode() in p.read_bytes()]


@pytest.mark.slow
def test_failure_names_notebook_and_cell_then_resume(course, tmp_path):
    env = {**os.environ, "FAKE_API_KEY": FAKE_KEY}
    out = tmp_path / "runs"
    cmd = [
        *TCV,
        "run",
        "--notebooks",
        str(course),
        "--out",
        str(out),
        "--profile",
        "smoke",
        "-p",
        "EPOCHS=21",
    ]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert first.returncode == 1, first.stdout + first.stderr
    message = first.stdout + first.stderr
    assert "01_second.ipynb failed in cell 4 (`import os`)" in message, message
    assert "planted failure" in message
    assert "tcv run --resume" in message
    assert FAKE_KEY not in message, "the secret reached the terminal"
    run_dir = next(out.iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [e["status"] for e in summary["notebooks"]] == ["ok", "failed", "pending"]
    assert summary["notebooks"][0]["metrics"] == {"answer": 42, "profile": "smoke"}
    assert summary["notebooks"][1]["error"]["cell"] == 4
    first_cells = summary["notebooks"][0]["cells"]
    assert [c["cell"] for c in first_cells] == [2, 3, 4] and first_cells[2]["code"].startswith(
        "from tcv_helpers import record_metrics"
    )
    assert all(c["seconds"] >= 0 for c in first_cells)
    assert summary["status"] == "failed"
    assert (run_dir / "report.html").is_file() and (run_dir / "run.log").is_file()
    assert _scan(run_dir, FAKE_KEY) == []

    make_notebook(course / "01_second.ipynb", COUNT.format(name="01"), "print('fixed')")
    second = subprocess.run(
        [*TCV, "run", "--resume", str(run_dir)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert second.returncode == 0, second.stdout + second.stderr
    quiet = second.stdout + second.stderr
    assert "without encryption" not in quiet, "kernels talk over local sockets, not TCP"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [e["status"] for e in summary["notebooks"]] == ["ok", "ok", "ok"]
    workspace = Path(summary["workspace"])
    runs = {n: (workspace / f"{n}.runs").read_text() for n in ("00", "01", "02")}
    assert runs == {"00": "x", "01": "xx", "02": "x"}, (
        "resume re-runs only from the failed notebook"
    )
    executed = (run_dir / "02_third.ipynb").read_text()
    assert "the key is" in executed and "[REDACTED]" in executed
    assert (workspace / "saved-config.txt").read_text() == "key: [REDACTED]", "workspace too"
    assert _scan(run_dir, FAKE_KEY) == []
    params = yaml.safe_load((run_dir / "params.yaml").read_text())
    assert params == {"profile": "smoke", "only": None, "parameters": {"EPOCHS": 21}}


@pytest.fixture(scope="module")
def real_course(tmp_path_factory) -> dict:
    """The README's `tcv run` of the smoke course on the real camera set, up to training.

    CI runs the course once per dataset: nbval executes every notebook on the synthetic default,
    and the real set (``DATASET=manaus-traffic``, downloaded from the course's asset hub: the
    session's loopback server, conftest.py) goes through each notebook once too: 00-05 in this
    run, as a workshop runs them, and 06-10 each alone in a fresh workspace from the checkpoint
    this run's model becomes (:func:`test_notebook_stands_alone_with_the_course_checkpoint`),
    as a learner opening one notebook on Colab does.
    """
    if not os.environ.get("TCV_ASSETS_URL"):
        pytest.skip("no asset hub for this session: the shared sample data is absent")
    env = {**os.environ, "FAKE_API_KEY": FAKE_KEY}
    env.pop("TCV_PROFILE", None)
    out = tmp_path_factory.mktemp("real-course") / "runs"
    command = [*TCV, "run", "--profile", "smoke", "--only", "00-05", "-p", "DATASET=manaus-traffic",
               "--out", str(out)]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=2400
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_dir = next(out.iterdir())
    return {"run_dir": run_dir, "summary": json.loads((run_dir / "summary.json").read_text())}


@pytest.mark.slow
def test_the_course_trains_on_the_real_camera_set(real_course):
    """Notebooks 00-05 on real frames in one run: the data comes from the hub, the model learns.

    The course's time is measured by ``benchmarks/bench_course.py`` (with the machine's speed
    beside it), not here; the timeout only stops a run that hangs.
    """
    run_dir, summary = real_course["run_dir"], real_course["summary"]
    names = sorted(p.name for p in NOTEBOOKS.glob("0[0-5]_*.ipynb"))
    assert [e["notebook"] for e in summary["notebooks"]] == names
    for entry in summary["notebooks"]:
        assert entry["status"] == "ok" and entry["seconds"] > 0 and entry["metrics"], entry
    assert summary["profile"] == "smoke" and summary["parameters"] == {"DATASET": "manaus-traffic"}
    training = {e["notebook"]: e for e in summary["notebooks"]}["05_training.ipynb"]
    # The model learns on real frames (a few minutes from random weights on a CPU: a low bar,
    # but far above what an untrained model scores).
    assert training["metrics"]["map50"] >= 0.03, training["metrics"]
    workspace = Path(summary["workspace"])
    copy = workspace / "data" / "manaus-traffic"
    assert yaml.safe_load((copy / "data.yaml").read_text())["names"] == dict(
        enumerate(("car", "truck", "bus", "motorcycle", "bicycle", "person"))
    ), "the real set was trained on in the project's classes"
    meta = json.loads((workspace / "models" / "best.meta.json").read_text())
    assert meta["dataset"] == "manaus-traffic" and meta["profile"] == "smoke"
    report = (run_dir / "report.html").read_text()
    assert all(name in report for name in names)
    for name in names:  # every executed notebook rendered as HTML and linked from its row
        page = f"html/{Path(name).stem}.html"
        assert (run_dir / page).is_file() and f'href="{page}"' in report, name
    assert '<img src="figures/05_training-05-16.png"' in report, "the training curves, shown"
    assert (run_dir / "figures" / "05_training-05-16.png").read_bytes()[:4] == b"\x89PNG"
    assert "map50=" in report and "(bar ≥ 0.5: " in report, "mAP50 beside its bar"
    assert (workspace / "project.yaml").is_file()
    assert _scan(run_dir, FAKE_KEY) == []


@pytest.fixture(scope="module")
def hub_with_checkpoint(real_course, tmp_path_factory):
    """The release step on the real course's workspace, served like the course's asset hub.

    ``tcv release`` turns the run's ``models/best.pt`` into ``checkpoint-smoke-manaus-traffic``;
    the data assets come from the session's hub. The notebooks find the checkpoint through the
    registry file the release wrote (``TCV_ASSETS_REGISTRY``), as a lab's own mirror would.
    """
    from tests.hub_server import HubServer

    folder = tmp_path_factory.mktemp("release")
    workspace = real_course["summary"]["workspace"]
    result = subprocess.run(
        [*TCV, "release", "--out", str(folder), "--workspace", workspace],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (folder / "checkpoint-smoke-manaus-traffic.pt").is_file()
    for asset in Path(os.environ["TCV_TEST_HUB_DIR"]).iterdir():
        if asset.is_file() and asset.name != "assets.json":
            shutil.copy2(asset, folder / asset.name)
    with HubServer(folder) as server:
        yield {"TCV_ASSETS_URL": server.url, "TCV_ASSETS_REGISTRY": str(folder / "assets.json")}


@pytest.mark.slow
@pytest.mark.parametrize("only", ["06", "07", "08", "09", "10"])
def test_notebook_stands_alone_with_the_course_checkpoint(hub_with_checkpoint, tmp_path, only):
    """Opened alone (Colab: a fresh runtime), a notebook fetches the course's checkpoint.

    Each runs in a new workspace with an empty download cache: it downloads the real set and the
    checkpoint for its profile and dataset from the hub, and trains no YOLO model of its own
    before teaching (07's search and 09's retraining are lessons, kept small here). This is
    where notebooks 06-10 meet the real set in CI (the real run stops after training).
    """
    env = {k: v for k, v in os.environ.items() if k != "TCV_PROFILE"}
    env.update(hub_with_checkpoint, TCV_CACHE=str(tmp_path / "cache"))
    lessons = {  # what the notebook teaches beyond the model, made small (the real run did it)
        "07": ["TRIALS=2", "TRIAL_EPOCHS=1", "PRUNE_AMOUNTS=[0.4]", "REPEATS=5"],
        "09": ["CONTROL=False"],
    }
    lesson = [arg for value in lessons.get(only, []) for arg in ("-p", value)]
    out = tmp_path / "runs"
    command = [*TCV, "run", "--profile", "smoke", "--only", only, "-p", "DATASET=manaus-traffic",
               *lesson, "--out", str(out), "--no-progress"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_dir = next(out.iterdir())
    (entry,) = json.loads((run_dir / "summary.json").read_text())["notebooks"]
    assert entry["status"] == "ok" and entry["metrics"], entry
    executed = next(run_dir.glob(f"{only}_*.ipynb")).read_text()
    assert (
        "Fetched the course's trained checkpoint for the smoke profile on manaus-traffic"
        in executed
    )
    assert "so one was trained now" not in executed
    models = run_dir / "workspace" / "models"
    assert json.loads((models / "best.meta.json").read_text())["dataset"] == "manaus-traffic"
    metrics = entry["metrics"]
    if only == "06":  # the course's evaluation (pycocotools) agrees with Ultralytics' own
        assert metrics["map50"] >= 0.03, metrics
        assert abs(metrics["map50"] - metrics["ultralytics_map50"]) <= 0.02, metrics
    if only == "10":  # the real highway video, fetched from the hub, was counted
        assert metrics["real_video_in"] + metrics["real_video_out"] > 0, metrics
    report = (run_dir / "report.html").read_text()
    assert next(run_dir.glob(f"{only}_*.ipynb")).name in report
