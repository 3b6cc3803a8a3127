"""`tcv slurm`: presets, job scripts (run, job-array sweep, JupyterLab), secrets, several GPUs,
and a real one-node Slurm: a 2-task sweep of the smoke profile, a failed task resubmitted alone,
the presets' scripts judged by ``sbatch --test-only``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from tcv_helpers.batch import slurm, slurm_queue, slurm_scripts, slurm_site, sweep
from tcv_helpers.batch.runner import parse_parameter
from tcv_helpers.batch.slurm_site import Activation, JobSettings, Resources, SlurmError
from tcv_helpers.cli import app
from tcv_helpers.config import PROFILES
from tcv_helpers.model.train import training_args
from tests.conftest import NOTEBOOKS, ROOT
from tests.slurm_cluster import ClusterUnavailable, start_cluster

cli = CliRunner()
FAKE_KEY = "sk-fake-4d3c2b1a0f9e8d7c"
FAST = ["--cpus", "1", "--mem", "1G", "--time", "00:10:00"]  # what the real jobs ask for


def settings(tmp_path: Path, **changes) -> JobSettings:
    base = JobSettings(
        resources=Resources(cpus=1, mem="1G", time="00:10:00"),
        activation=slurm_site.current_activation(),
        workdir=ROOT,
        job_name="tcv-test",
    )
    return replace(base, **changes)


def fake_program(folder: Path, name: str, body: str) -> Path:
    """A Python program on a PATH folder that stands in for `tcv` or `jupyter`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!{sys.executable}\nimport json, os, sys\n{body}\n")
    path.chmod(0o755)
    return path


def write_sweep_file(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --- presets and resources -------------------------------------------------------------


def test_presets_ship_and_load():
    assert {"generic", "koa"} <= set(slurm_site.list_presets())
    koa = slurm_site.load_preset("koa")
    assert koa.resources.partition == "gpu" and koa.resources.gpus == 1
    assert koa.activation.modules == ("lang/Anaconda3",) and koa.activation.conda == "tcv"
    generic = slurm_site.load_preset("generic")
    assert generic.resources.gpus == 0 and generic.activation.empty
    # An empty activation means: the environment these tests run in.
    chosen = slurm_site.resolve_activation(generic.activation)
    assert chosen == slurm_site.current_activation()
    if sys.prefix != sys.base_prefix:
        assert chosen.venv == sys.prefix
    # Flags replace the preset's choice.
    assert slurm_site.resolve_activation(koa.activation, conda="other").conda == "other"
    assert slurm_site.resolve_activation(koa.activation, modules=[]).modules == ()
    with pytest.raises(SlurmError, match="not both"):
        slurm_site.resolve_activation(koa.activation, conda="a", venv="/tmp/v")
    with pytest.raises(SlurmError, match=r"No site preset 'nope'.*generic"):
        slurm_site.load_preset("nope")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"time": "4h"}, "time"),
        ({"mem": "lots"}, "mem"),
        ({"gpus": -1}, "gpus"),
        ({"cpus": 0}, "cpus"),
        ({"partition": "gpu; rm -rf ~"}, "partition"),
        ({"account": "a b"}, "account"),
        ({"gpu_type": "a100"}, "gpu_type"),  # a type without GPUs
    ],
)
def test_bad_resources_are_refused_naming_the_field(change, field):
    flag = "--" + field.replace("_", "-")
    with pytest.raises(SlurmError, match=rf"^{flag}: "):
        Resources(cpus=1).with_overrides(**change)
    with pytest.raises(SlurmError, match=rf"^resources\.{field}: "):
        Resources(**{"cpus": 1, **change}).validated()


@pytest.mark.parametrize("time", ["04:00:00", "30:00", "90", "1-00:00:00", "2-12", "0-1:30"])
def test_slurm_time_formats_are_accepted(time):
    assert Resources().with_overrides(time=time).time == time


def test_preset_file_errors_name_the_file_and_field(tmp_path):
    bad = tmp_path / "site.yaml"
    bad.write_text("resources:\n  gpus: 1\n  walltime: 4\n")
    with pytest.raises(SlurmError, match=r"site\.yaml.*resources\.walltime"):
        slurm_site.load_preset(bad)
    bad.write_text('resources:\n  time: "4 hours"\n')
    with pytest.raises(SlurmError, match=r"site\.yaml: resources\.time"):
        slurm_site.load_preset(bad)
    bad.write_text("resources:\n  time: 4:00:00\n")  # YAML 1.1 reads it as 14400
    with pytest.raises(SlurmError, match="in quotes"):
        slurm_site.load_preset(bad)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('name: "site\\ntouch PWNED; #"\n', "name"),
        ('name: "site; touch PWNED"\n', "name"),
        ('description: "A site\\ntouch PWNED"\n', "description"),
        ('description: "A site\\rtouch PWNED"\n', "description"),
    ],
)
def test_a_preset_cannot_put_a_command_into_the_script(tmp_path, text, field):
    preset = tmp_path / "site.yaml"
    preset.write_text(text + "resources:\n  cpus: 1\n")
    with pytest.raises(SlurmError, match=rf"site\.yaml: {field} "):
        slurm_site.load_preset(preset)
    # the same from the command line: a clear refusal, and no script
    result = cli.invoke(app, ["slurm", "--preset", str(preset), "--out", str(tmp_path / "runs")])
    assert result.exit_code != 0 and f"{field} " in result.output, result.output
    assert not list(tmp_path.rglob("*.sbatch")) and not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize(
    "change",
    [{"time": "4:00:00\n"}, {"mem": "4G\n"}, {"partition": "gpu\n"}, {"account": "lab\n"}],
)
def test_a_trailing_line_break_is_not_a_valid_value(change):
    with pytest.raises(SlurmError):
        Resources(**{"cpus": 1, **change}).validated()


def test_job_and_preset_names_are_checked_whole(tmp_path):
    for change in ({"job_name": "tcv\n"}, {"preset": "site\ntouch PWNED"}):
        with pytest.raises(SlurmError):
            slurm_scripts.write_run_job(settings(tmp_path, **change), out=tmp_path / "runs")
    assert not list(tmp_path.rglob("*.sbatch"))


def test_comment_lines_hold_no_line_break(tmp_path):
    """Whatever slips past validation into a comment stays in that comment."""
    unchecked = settings(tmp_path, preset="site\ntouch PWNED")  # not validated on purpose
    lines = slurm_scripts._header(unchecked, output="log", what="run\rtouch PWNED\u2028x")
    assert not [ln for ln in lines if "touch PWNED" in ln and not ln.startswith("#")]
    assert all("\r" not in ln and "\u2028" not in ln for ln in lines)


# --- what goes into the scripts ---------------------------------------------------------


@pytest.mark.parametrize(
    "value", [0.4, 50, -3, "0,1", [0, 1], True, None, "a b", "x: y", "it's", {"k": [1, 2]}, "yes"]
)
def test_parameter_literals_reach_tcv_run_unchanged(value):
    literal = slurm_scripts.parameter_literal("VALUE", value)
    assert parse_parameter(literal) == ("VALUE", value)


def test_parameter_literal_refuses_secrets_and_line_breaks():
    with pytest.raises(SlurmError, match="secret"):
        slurm_scripts.parameter_literal("ROBOFLOW_API_KEY", "x")
    with pytest.raises(SlurmError, match="one line"):
        slurm_scripts.parameter_literal("TEXT", "two\nlines")


@pytest.mark.parametrize(
    ("indices", "text"),
    [([0], "0"), ([0, 1, 2, 5], "0-2,5"), ([3, 1], "1,3"), ([4, 5, 7, 8], "4-5,7-8")],
)
def test_compress_indices(indices, text):
    assert slurm_scripts.compress_indices(indices) == text


def test_sweep_script_hands_each_task_its_own_parameters(tmp_path):
    file = write_sweep_file(
        tmp_path / "tricky.yaml",
        {
            "profile": "smoke",
            "only": "01",
            "parameters": {"TARGET": "edge"},
            "list": [
                {"MIN_MAP50": 0.4, "CLASSES": ["car", "bus"]},
                {"MIN_MAP50": 0.6, "CLASSES": ["car's", "truck bus"]},
            ],
        },
    )
    plan = sweep.load_sweep(file)
    fake_bin = tmp_path / "bin"
    fake_program(fake_bin, "tcv", "print(json.dumps(sys.argv[1:]))")
    job = slurm_scripts.write_sweep_job(
        plan, settings(tmp_path, activation=Activation(path=str(fake_bin))), out=tmp_path / "runs",
        notebooks=NOTEBOOKS,
    )  # fmt: skip
    assert job.path == tmp_path / "runs" / "tricky" / "sweep.sbatch" and job.array == "0-1"
    text = job.path.read_text()
    assert "#SBATCH --array=0-1" in text
    assert f"#SBATCH --output={tmp_path}/runs/tricky/task-%3a/slurm-%A_%a.out" in text
    assert all((job.out / t.name).is_dir() for t in plan.tasks)  # Slurm does not create them
    manifest = sweep.read_manifest(job.out)
    assert [t["parameters"] for t in manifest["tasks"]] == [t.parameters for t in plan.tasks]
    for task in plan.tasks:
        env = {**os.environ, "SLURM_ARRAY_TASK_ID": str(task.index), "SLURM_ARRAY_JOB_ID": "7"}
        done = subprocess.run(["bash", str(job.path)], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
        args = json.loads(done.stdout.strip().splitlines()[-1])
        assert args[:2] == ["run", "--profile"] and args[args.index("--only") + 1] == "01"
        assert args[args.index("--out") + 1] == f"{job.out}/{task.name}"
        given = dict(parse_parameter(args[i + 1]) for i, a in enumerate(args) if a == "-p")
        assert given == task.parameters == {"TARGET": "edge", **plan.tasks[task.index].parameters}
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "5"}
    done = subprocess.run(["bash", str(job.path)], capture_output=True, text=True, env=env)
    assert done.returncode == 2 and "tasks 0-1, not 5" in done.stderr


def test_run_script_checks_parameters_before_anything_is_submitted(tmp_path):
    with pytest.raises(SlurmError, match=r"Unknown parameter.*NOPE"):
        slurm_scripts.write_run_job(
            settings(tmp_path), out=tmp_path, only="01", parameters={"NOPE": 1}, notebooks=NOTEBOOKS
        )
    with pytest.raises(SlurmError, match="no notebook 42"):
        slurm_scripts.write_run_job(
            settings(tmp_path), out=tmp_path, only="42", notebooks=NOTEBOOKS
        )
    with pytest.raises(SlurmError, match="Unknown profile"):
        slurm_scripts.write_run_job(
            settings(tmp_path), out=tmp_path, profile="huge", notebooks=NOTEBOOKS
        )
    job = slurm_scripts.write_run_job(
        settings(tmp_path), out=tmp_path / "runs", profile="smoke", only="01",
        parameters={"MIN_MAP50": 0.7}, notebooks=NOTEBOOKS,
    )  # fmt: skip
    text = job.path.read_text()
    assert job.path.name == "tcv-test.sbatch" and "--array" not in text
    assert f"--out {tmp_path}/runs" in text and "-p MIN_MAP50=0.7" in text
    assert subprocess.run(["bash", "-n", str(job.path)]).returncode == 0


def test_no_secret_value_is_ever_written(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBOFLOW_API_KEY", FAKE_KEY)
    job = slurm_scripts.write_run_job(
        settings(tmp_path, require_env=("ROBOFLOW_API_KEY",)), out=tmp_path, only="01",
        notebooks=NOTEBOOKS,
    )  # fmt: skip
    text = job.path.read_text()
    assert FAKE_KEY not in text and '"${ROBOFLOW_API_KEY:?' in text
    # The check stops a job whose submitter forgot to export the key, naming it.
    check = next(line for line in text.splitlines() if "ROBOFLOW_API_KEY:?" in line)
    done = subprocess.run(
        ["bash", "-c", check], capture_output=True, text=True, env={"PATH": os.environ["PATH"]}
    )
    assert done.returncode != 0 and "ROBOFLOW_API_KEY is not set" in done.stderr
    # A secret's value smuggled in as a parameter value is refused, and so is a secret's name.
    with pytest.raises(SlurmError, match="value of ROBOFLOW_API_KEY"):
        slurm_scripts.write_run_job(
            settings(tmp_path),
            out=tmp_path,
            only="01",
            parameters={"TARGET": FAKE_KEY},
            notebooks=NOTEBOOKS,
        )
    with pytest.raises(SlurmError, match="secret"):
        slurm_scripts.write_run_job(
            settings(tmp_path),
            out=tmp_path,
            only="02",
            parameters={"ROBOFLOW_API_KEY": "x"},
            notebooks=NOTEBOOKS,
        )
    with pytest.raises(SlurmError, match="NAME"):
        slurm_scripts.write_run_job(
            settings(tmp_path, require_env=(FAKE_KEY,)), out=tmp_path, notebooks=NOTEBOOKS
        )
    result = cli.invoke(
        app,
        [
            "slurm",
            "--out",
            str(tmp_path),
            "--notebooks",
            str(NOTEBOOKS),
            "-p",
            f"ROBOFLOW_API_KEY={FAKE_KEY}",
        ],
    )
    assert result.exit_code == 2 and "never passed as parameters" in result.output
    assert FAKE_KEY not in "".join(p.read_text() for p in tmp_path.rglob("*.sbatch"))


def test_several_gpus_ask_slurm_and_reach_ultralytics(tmp_path, monkeypatch):
    two = settings(tmp_path, resources=Resources(cpus=8, gpus=2, gpu_type="a100", time="01:00:00"))
    text = slurm_scripts.write_run_job(
        two, out=tmp_path, only="01", notebooks=NOTEBOOKS
    ).path.read_text()
    assert "#SBATCH --gres=gpu:a100:2" in text and "export TCV_DEVICE=0,1" in text
    one = settings(tmp_path, resources=Resources(cpus=8, gpus=1))
    text = slurm_scripts.write_run_job(
        one, out=tmp_path, only="01", notebooks=NOTEBOOKS
    ).path.read_text()
    assert "#SBATCH --gres=gpu:1" in text and "TCV_DEVICE" not in text
    # What the job exports is what Ultralytics gets (DDP over the listed GPUs).
    monkeypatch.setenv("TCV_DEVICE", "0,1")
    assert training_args(PROFILES["workshop"])["device"] == "0,1"
    assert training_args(PROFILES["workshop"], device=[2, 3])["device"] == "2,3"
    monkeypatch.delenv("TCV_DEVICE")
    assert training_args(PROFILES["workshop"], device="cuda:0")["device"] == "0"
    assert "device" not in training_args(PROFILES["workshop"])
    assert training_args(PROFILES["smoke"])["device"] == "cpu"
    monkeypatch.setenv("TCV_DEVICE", "gpu")
    with pytest.raises(ValueError, match="TCV_DEVICE='gpu'"):
        training_args(PROFILES["workshop"])


def test_jupyter_job_binds_localhost_with_a_fresh_token(tmp_path):
    result = cli.invoke(app, ["slurm", "--jupyter", "--port", "23456", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "ssh -N -L 8888:127.0.0.1:23456 -J " in result.output and "<node>" in result.output
    script = tmp_path / "jupyter" / "jupyter.sbatch"
    text = script.read_text()
    assert "--ip=127.0.0.1" in text and "0.0.0.0" not in text and "port_retries=0" in text
    assert (tmp_path / "jupyter").stat().st_mode & 0o777 == 0o700  # the log holds the token
    # Run it with a stand-in `jupyter` that reports what it was given.
    fake_bin = tmp_path / "bin"
    fake_program(fake_bin, "tcv", "")
    fake_program(
        fake_bin,
        "jupyter",
        'print("GOT", json.dumps({"args": sys.argv[1:], "token": os.environ.get("JUPYTER_TOKEN")}))',
    )
    job = slurm_scripts.write_jupyter_job(
        settings(tmp_path, activation=Activation(path=str(fake_bin))), out=tmp_path, port=23456,
        user="learner", login="login.example.edu",
    )  # fmt: skip
    env = {**os.environ, "SLURM_JOB_ID": "77", "SLURMD_NODENAME": "gpu-node-3"}
    done = subprocess.run(["bash", str(job.job.path)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    got = json.loads(next(ln for ln in done.stdout.splitlines() if ln.startswith("GOT "))[4:])
    port = next(a for a in got["args"] if a.startswith("--port=")).split("=")[1]
    assert "--ip=127.0.0.1" in got["args"] and len(got["token"]) >= 32
    tunnel = f"ssh -N -L 8888:127.0.0.1:{port} -J learner@login.example.edu learner@gpu-node-3"
    assert tunnel in done.stdout and f"/lab?token={got['token']}" in done.stdout
    assert got["token"] not in job.job.path.read_text()  # made when the job starts
    assert (
        job.tunnel("gpu-node-3")
        == "ssh -N -L 8888:127.0.0.1:23456 -J learner@login.example.edu learner@gpu-node-3"
    )


def test_cli_refuses_contradictions(tmp_path):
    for args, message in (
        (["--sweep", "s.yaml", "--jupyter"], "one of --sweep"),
        (["--wait"], "add --submit"),
        (["--resubmit-failed", str(tmp_path)], "no sweep.json"),
    ):
        result = cli.invoke(app, ["slurm", "--out", str(tmp_path), *args])
        assert result.exit_code == 2 and message in result.output, result.output


def test_submit_without_slurm_says_where_to_run(tmp_path, monkeypatch):
    job = slurm_scripts.write_run_job(
        settings(tmp_path), out=tmp_path, only="01", notebooks=NOTEBOOKS
    )
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SlurmError, match="sbatch not found: run this on the cluster's login node"):
        slurm_queue.submit(job.path)
    assert slurm_queue.queued_tasks(["1"]) is None  # the queue cannot be asked


def test_resubmission_refuses_when_the_queue_cannot_be_asked(tmp_path, monkeypatch):
    plan = sweep.load_sweep(
        write_sweep_file(tmp_path / "q.yaml", {"only": "01", "grid": {"MIN_MAP50": [0.4]}})
    )
    job = slurm_scripts.write_sweep_job(plan, settings(tmp_path), out=tmp_path, notebooks=NOTEBOOKS)
    slurm_scripts.record_submission(job.out, "12", "0")
    monkeypatch.setattr(slurm_queue, "queued_tasks", lambda ids: None)
    with pytest.raises(SlurmError, match="no task runs twice"):
        slurm.prepare_resubmission(job.out)
    # Asked, the queue says task 0 still waits: nothing to resubmit, nothing written twice.
    monkeypatch.setattr(
        slurm_queue, "queued_tasks", lambda ids: {0: "PENDING"} if ids == ["12"] else {}
    )
    again = slurm.prepare_resubmission(job.out)
    assert again.tasks == () and again.array == ""


def test_submit_wait_and_resubmit_with_stand_ins_for_slurm(tmp_path, monkeypatch):
    """The submitting side of `tcv slurm` against stand-ins for sbatch and squeue (no cluster)."""
    fake_bin = tmp_path / "bin"
    fake_program(
        fake_bin,
        "sbatch",
        'log = os.path.join(os.path.dirname(sys.argv[0]), "sbatch.log")\n'
        'with open(log, "a") as f:\n'
        '    f.write(json.dumps(sys.argv[1:]) + "\\n")\n'
        'print(f"{100 + len(open(log).readlines())};cluster")',
    )
    fake_program(fake_bin, "squeue", "")  # nothing is queued: every job has left
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    file = write_sweep_file(tmp_path / "w.yaml", {"only": "01", "grid": {"MIN_MAP50": [0.4, 0.6]}})
    out = tmp_path / "runs"
    script = (out / "w" / "sweep.sbatch").resolve()
    waited = cli.invoke(
        app,
        _sweep_cli(
            "--sweep", str(file), "--out", str(out), "--submit", "--wait", "--wait-timeout", "10"
        ),
    )
    assert waited.exit_code == 1, waited.output  # no task ran: both are missing
    assert waited.stdout.strip().splitlines()[-1] == "101"
    assert "Job 101 has left the queue." in waited.output
    assert "task 1 (task-001): missing" in waited.output
    assert f"tcv slurm --resubmit-failed {script.parent} --submit" in waited.output
    again = cli.invoke(
        app, ["slurm", "--resubmit-failed", str(out / "w"), "--submit", "--time", "00:20:00"]
    )
    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == "102" and "--array=0-1" in again.output
    assert "#SBATCH --time=00:20:00" in script.read_text()
    calls = [json.loads(line) for line in (fake_bin / "sbatch.log").read_text().splitlines()]
    assert calls == [["--parsable", str(script)], ["--parsable", "--array=0-1", str(script)]]
    submissions = sweep.read_manifest(out / "w")["submissions"]
    assert [(s["job_id"], s["array"]) for s in submissions] == [("101", "0-1"), ("102", "0-1")]
    # The Python API takes the same options and returns what the command prints.
    printed: list[str] = []
    result = slurm.write_and_submit(
        out=out, only="01", parameters=["MIN_MAP50=0.5"], notebooks=NOTEBOOKS, submit=True,
        wait=True, wait_timeout=10, on_output=printed.append,
    )  # fmt: skip
    assert result.ok and result.job_id == "103" and printed == ["103"]
    assert result.job.kind == "run" and "-p MIN_MAP50=0.5" in result.job.path.read_text()


# --- a real Slurm -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    """A one-node Slurm on localhost for this module's tests, stopped even when they fail."""
    try:
        running = start_cluster()
    except ClusterUnavailable as exc:
        pytest.skip(f"no local Slurm cluster: {exc}")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def on_cluster(cluster, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
    return cluster


@pytest.mark.parametrize("preset", ["generic", "koa"])
@pytest.mark.parametrize("kind", ["run", "sweep", "jupyter"])
def test_preset_scripts_pass_sbatch_test_only(on_cluster, tmp_path, preset, kind):
    site = slurm_site.load_preset(preset)
    job_settings = JobSettings(
        resources=site.resources, activation=slurm_site.resolve_activation(site.activation), workdir=ROOT,
        job_name=f"tcv-{kind}", preset=site.name,
    )  # fmt: skip
    if kind == "run":
        path = slurm_scripts.write_run_job(
            job_settings, out=tmp_path, profile="workshop", notebooks=NOTEBOOKS
        ).path
    elif kind == "sweep":
        plan = sweep.load_sweep(
            write_sweep_file(tmp_path / "s.yaml", {"only": "01", "grid": {"MIN_MAP50": [0.4, 0.6]}})
        )
        path = slurm_scripts.write_sweep_job(
            plan, job_settings, out=tmp_path, notebooks=NOTEBOOKS
        ).path
    else:
        path = slurm_scripts.write_jupyter_job(job_settings, out=tmp_path).job.path
    answer = slurm_queue.sbatch_test_only(path)
    assert "to start at" in answer, answer
    if preset == "koa":
        assert "partition gpu" in answer


def test_sbatch_test_only_reports_what_slurm_refuses(on_cluster, tmp_path):
    greedy = settings(tmp_path, resources=Resources(cpus=1, gpus=3))  # the node has 2
    path = slurm_scripts.write_run_job(greedy, out=tmp_path, only="01", notebooks=NOTEBOOKS).path
    with pytest.raises(SlurmError, match="Slurm would refuse"):
        slurm_queue.sbatch_test_only(path)
    result = cli.invoke(
        app,
        [
            "slurm",
            "--out",
            str(tmp_path),
            "--only",
            "01",
            "--partition",
            "nosuchpartition",
            "--notebooks",
            str(NOTEBOOKS),
            "--test-only",
        ],
    )
    assert result.exit_code == 2 and "invalid partition" in result.output.lower(), result.output


def _sweep_cli(*args: str) -> list[str]:
    return ["slurm", *args, *FAST, "--notebooks", str(NOTEBOOKS)]


def test_sweep_array_runs_on_slurm_and_the_report_has_both_rows(on_cluster, tmp_path):
    file = write_sweep_file(
        tmp_path / "bar.yaml",
        {"name": "bar", "profile": "smoke", "only": "01", "grid": {"MIN_MAP50": [0.4, 0.6]}},
    )
    out = tmp_path / "runs"
    result = cli.invoke(
        app,
        _sweep_cli(
            "--sweep", str(file), "--out", str(out), "--submit", "--wait", "--wait-timeout", "150"
        ),
    )
    assert result.exit_code == 0, result.output + on_cluster.logs()
    job_id = result.stdout.strip().splitlines()[-1]
    assert job_id.isdigit() and f"Submitted job {job_id}" in result.output
    submissions = sweep.read_manifest(out / "bar")["submissions"]
    assert [(s["job_id"], s["array"]) for s in submissions] == [(job_id, "0-1")]
    for index in (0, 1):  # each task wrote its own folder, its Slurm log beside its run
        assert (out / "bar" / f"task-00{index}" / f"slurm-{job_id}_{index}.out").is_file()
    report = cli.invoke(app, ["sweep", "report", str(out / "bar")])
    assert report.exit_code == 0, report.output
    assert "2 tasks: 2 ok" in report.output
    table = pd.read_csv(out / "bar" / "sweep.csv")
    assert list(table["task"]) == [0, 1] and list(table["status"]) == ["ok", "ok"]
    assert list(table["MIN_MAP50"]) == [0.4, 0.6] and list(table["min_map50"]) == [0.4, 0.6]
    assert (table["seconds"] > 0).all() and (table["classes"] == 4).all()
    page = (out / "bar" / "sweep.html").read_text()
    assert page.count("data:image/png;base64,") == 2  # min_map50 and seconds


def test_a_failed_task_is_reported_and_resubmitted_alone(on_cluster, tmp_path):
    file = write_sweep_file(
        tmp_path / "fix.yaml",
        {"name": "fix", "profile": "smoke", "only": "01", "grid": {"MIN_MAP50": [0.3, 30]}},
    )
    out = tmp_path / "runs"
    folder = out / "fix"
    result = cli.invoke(
        app,
        _sweep_cli(
            "--sweep", str(file), "--out", str(out), "--submit", "--wait", "--wait-timeout", "150"
        ),
    )
    assert result.exit_code == 1, result.output + on_cluster.logs()
    first = result.stdout.strip().splitlines()[-1]
    log = folder / "task-001" / f"slurm-{first}_1.out"
    assert "task 1 (task-001): failed: 01_problem_definition.ipynb cell" in result.output
    assert f"log: {log}" in result.output and "min_map50 must be between 0 and 1" in log.read_text()
    report = cli.invoke(app, ["sweep", "report", str(folder)])
    assert report.exit_code == 1 and "task 1 (task-001): failed" in report.output
    assert f"log: {log}" in report.output and "--resubmit-failed" in report.output
    # Fix the bad value in the sweep file and resubmit: only task 1 runs again.
    write_sweep_file(
        file, {"name": "fix", "profile": "smoke", "only": "01", "grid": {"MIN_MAP50": [0.3, 0.7]}}
    )
    again = cli.invoke(
        app,
        ["slurm", "--resubmit-failed", str(folder), "--submit", "--wait", "--wait-timeout", "150"],
    )
    assert again.exit_code == 0, again.output + on_cluster.logs()
    second = again.stdout.strip().splitlines()[-1]
    assert second != first and "--array=1" in again.output
    submissions = sweep.read_manifest(folder)["submissions"]
    assert [(s["job_id"], s["array"]) for s in submissions] == [(first, "0-1"), (second, "1")]
    assert len(list((folder / "task-000").glob("*/summary.json"))) == 1  # task 0 did not run again
    assert not (folder / "task-000" / f"slurm-{second}_0.out").exists()
    assert (folder / "task-001" / f"slurm-{second}_1.out").is_file()
    final = cli.invoke(app, ["sweep", "report", str(folder)])
    assert final.exit_code == 0 and "2 tasks: 2 ok" in final.output, final.output
    result = sweep.collect(folder)
    assert [t.metrics["min_map50"] for t in result.tasks] == [0.3, 0.7]
    assert [t.attempts for t in result.tasks] == [1, 2]
    # Nothing is left to resubmit.
    nothing = cli.invoke(app, ["slurm", "--resubmit-failed", str(folder), "--submit"])
    assert nothing.exit_code == 0 and "Nothing to resubmit" in nothing.output
