"""Writing Slurm job scripts: one ``tcv run``, a sweep's job array, JupyterLab on a node.

All three are written from the same pieces (:class:`~tcv_helpers.batch.slurm_site.JobSettings`:
what to ask Slurm for, how to activate the environment; then what to run):

- one ``tcv run`` (:func:`write_run_job`),
- a **job array** over a sweep file (:func:`write_sweep_job`): task ``i`` runs ``tcv run`` with
  the parameters of task ``i`` into ``runs/<sweep>/task-00i/``, its Slurm log beside it; the
  folder's ``sweep.json`` lists the tasks and every submission (:func:`record_submission`),
- JupyterLab bound to 127.0.0.1 with a token, reached through an SSH tunnel
  (:func:`write_jupyter_job`).

No secret is ever written into a script: a job gets keys from the environment it is submitted
from, and the script names the variables it needs (``--require-env``) without their values.
"""

from __future__ import annotations

import getpass
import os
import re
import secrets as _secrets
import shlex
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from tcv_helpers.batch import runner
from tcv_helpers.batch import sweep as sweep_mod
from tcv_helpers.batch.runner import RunError, parse_parameter
from tcv_helpers.batch.slurm_site import JobSettings, SlurmError, has_control_characters
from tcv_helpers.batch.sweep import Sweep, SweepTask
from tcv_helpers.config import DEVICE_ENV, PROFILES
from tcv_helpers.io import atomic_write_text
from tcv_helpers.secrets import MIN_SECRET_LENGTH, is_secret_name

SWEEP_SCRIPT = "sweep.sbatch"
JUPYTER_DIR = "jupyter"
JUPYTER_LOCAL_PORT = 8888
HOST_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class JobScript:
    """A job script written to disk.

    Attributes:
        path: The script.
        kind: ``run``, ``sweep`` or ``jupyter``.
        log: The ``--output`` pattern (``%j`` job id, ``%A`` array job id, ``%a`` task index).
        out: Where the results go (the runs folder, the sweep folder, the Jupyter folder).
        array: The ``--array`` of the script (None: not an array).
        tasks: The sweep's tasks (empty for other kinds).
    """

    path: Path
    kind: str
    log: str
    out: Path
    array: str | None = None
    tasks: tuple[SweepTask, ...] = ()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _quote_path(path: Path) -> str:
    text = str(path)
    if '"' in text or "\n" in text:
        raise SlurmError(
            f"{text!r}: a path with quotes or line breaks cannot go into an #SBATCH line."
        )
    return f'"{text}"' if any(c.isspace() for c in text) else text


def compress_indices(indices: Iterable[int]) -> str:
    """Array indices as Slurm's ``--array`` text: ``[0, 1, 2, 5]`` -> ``"0-2,5"``."""
    ordered = sorted(set(indices))
    if not ordered:
        raise SlurmError("No array index to submit.")
    parts, start, prev = [], ordered[0], ordered[0]
    for index in [*ordered[1:], None]:
        if index is not None and index == prev + 1:
            prev = index
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if index is not None:
            start = prev = index
    return ",".join(parts)


def parameter_literal(name: str, value: Any) -> str:
    """A parameter as ``tcv run -p`` reads it back: ``NAME=<YAML literal>``.

    Raises:
        SlurmError: For a secret's name, or a value that does not survive the round trip.
    """
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20, allow_unicode=True)
    text = text.strip()
    if text.endswith("\n..."):
        text = text[: -len("\n...")].strip()
    if "\n" in text:
        raise SlurmError(f"Parameter {name}: {value!r} does not fit on one line.")
    try:
        back = parse_parameter(f"{name}={text}")
    except RunError as exc:
        raise SlurmError(str(exc)) from exc
    if back != (name, value):
        raise SlurmError(f"Parameter {name}: {value!r} would reach the notebooks as {back[1]!r}.")
    return f"{name}={text}"


def check_parameters(notebooks: Path, only: str | None, parameters: Iterable[str]) -> None:
    """Checks, before anything is submitted, that the selected notebooks declare every parameter.

    Raises:
        SlurmError: For an unknown notebook selection, a secret's name or an undeclared parameter.
    """
    names = list(dict.fromkeys(parameters))
    for name in names:
        if is_secret_name(name):
            raise SlurmError(
                f"{name} names a secret: never a parameter. Export it where you submit and pass "
                f"--require-env {name}; the job inherits it without the script holding it."
            )
    try:
        selected = runner.select_notebooks(runner.find_notebooks(notebooks), only)
        declared = {k for p in selected for k in runner.notebook_parameters(p)}
    except RunError as exc:
        raise SlurmError(str(exc)) from exc
    unknown = [n for n in names if n not in declared]
    if unknown:
        raise SlurmError(
            f"Unknown parameter(s) {', '.join(unknown)}: no selected notebook declares them "
            f"(declared: {', '.join(sorted(declared))})."
        )


def _check_profile(profile: str | None) -> None:
    if profile is not None and profile.strip().lower() not in (*PROFILES, "auto"):
        raise SlurmError(f"Unknown profile {profile!r}; choose {', '.join([*PROFILES, 'auto'])}.")


def _refuse_secret_values(text: str, where: Path) -> None:
    for name, value in os.environ.items():
        if is_secret_name(name) and len(value) >= MIN_SECRET_LENGTH and value in text:
            raise SlurmError(
                f"The value of {name} would be written into {where}; secrets stay in the "
                f"environment: pass the name with --require-env {name} instead."
            )


def _comment(text: str) -> str:
    """Text for a ``#`` comment line: a line break (or any control character) inside would end
    the comment and run the rest as a command, so each becomes a space. Values are validated
    before they get here; this holds for anything that slips past."""
    return "".join(" " if has_control_characters(c) else c for c in str(text))


def _header(
    settings: JobSettings,
    *,
    output: str,
    what: str,
    array: str | None = None,
) -> list[str]:
    from tcv_helpers import __version__

    lines = [
        "#!/bin/bash",
        f"# {_comment(what)}",
        f"# Written by `tcv slurm` (tcv_helpers {__version__}, preset {_comment(settings.preset)}) on {_now()}.",
        "# Environment variables (keys included) come from the shell you submit from; no value",
        "# of a secret is written here.",
        f"#SBATCH --job-name={settings.job_name}",
    ]
    lines += [f"#SBATCH {opt}" for opt in settings.resources.sbatch_options()]
    if array:
        lines.append(f"#SBATCH --array={array}")
    lines += [
        f"#SBATCH --output={output}",
        f"#SBATCH --chdir={_quote_path(settings.workdir)}",
        "#SBATCH --export=ALL",
        "",
        "set -eo pipefail",
        "",
        f"# Environment: {_comment(settings.activation.describe())}",
        *settings.activation.lines(),
    ]
    for name in settings.require_env:
        lines.append(
            f': "${{{name}:?{name} is not set: export it in the shell you submit from (its value never goes into this script)}}"'
        )
    if settings.resources.gpus > 1:
        devices = ",".join(str(i) for i in range(settings.resources.gpus))
        lines += [
            f"# Train on all {settings.resources.gpus} GPUs of this job (Ultralytics DDP); the indices count",
            "# the GPUs Slurm gave the job (CUDA_VISIBLE_DEVICES), not the node's.",
            f"export {DEVICE_ENV}={devices}",
        ]
    lines.append("")
    return lines


def _run_command(
    *,
    profile: str | None,
    only: str | None,
    notebooks: Path,
    out: str,
    params: str,
) -> str:
    parts = ["tcv", "run"]
    if profile:
        parts += ["--profile", shlex.quote(profile)]
    if only:
        parts += ["--only", shlex.quote(only)]
    parts += ["--notebooks", shlex.quote(str(notebooks)), "--out", out, "--no-progress"]
    if params:
        parts.append(params)
    return "exec " + " ".join(parts)


def _write(path: Path, text: str) -> Path:
    _refuse_secret_values(text, path)
    return atomic_write_text(path, text)


def check_run(
    notebooks: Path | None, only: str | None, profile: str | None, names: Iterable[str]
) -> Path:
    """Checks what a job will run before any script is written; returns the notebooks folder.

    Args:
        notebooks: The notebooks folder (None: ``./notebooks`` or the course's).
        only: Notebook selection such as ``"02,05-06"``.
        profile: The profile (None: ``tcv run``'s default).
        names: The parameter names the job passes.

    Raises:
        SlurmError: For an unknown profile, no notebooks folder, an unknown selection, a
            secret's name or a parameter no selected notebook declares.
    """
    _check_profile(profile)
    try:
        folder = (notebooks or runner.default_notebooks_dir()).resolve()
    except RunError as exc:
        raise SlurmError(str(exc)) from exc
    check_parameters(folder, only, names)
    return folder


def write_run_job(
    settings: JobSettings,
    *,
    out: str | os.PathLike = "runs",
    profile: str | None = None,
    only: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    notebooks: str | os.PathLike | None = None,
    script: str | os.PathLike | None = None,
) -> JobScript:
    """Writes the sbatch script of one ``tcv run`` (the whole course or a selection).

    Args:
        settings: Resources, environment, working folder and job name.
        out: The runs folder; the run goes to ``out/<run-id>/``, the Slurm log to
            ``out/slurm-<job id>.out``.
        profile: ``smoke``, ``workshop``, ``full`` or ``auto`` (None: ``tcv run``'s default).
        only: Notebook selection such as ``"02,05-06"``.
        parameters: ``-p`` parameters for the notebooks.
        notebooks: The notebooks folder (default: ``./notebooks`` or the course's).
        script: Where to write the script (default: ``out/<job name>.sbatch``).

    Returns:
        The written script.

    Raises:
        SlurmError: For an unknown profile, notebook selection or parameter, a secret, or bad
            resources.
    """
    settings = settings.validated()
    params = dict(parameters or {})
    folder = check_run(Path(notebooks) if notebooks else None, only, profile, params)
    out_dir = Path(out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    log = str(out_dir / "slurm-%j.out")
    args = " ".join(f"-p {shlex.quote(parameter_literal(k, v))}" for k, v in params.items())
    lines = _header(
        settings, output=_quote_path(Path(log)), what=f"One `tcv run` into {out_dir}/<run-id>/."
    )
    lines += [
        'echo "tcv: job ${SLURM_JOB_ID} on $(hostname), started $(date -Is)"',
        _run_command(
            profile=profile, only=only, notebooks=folder, out=shlex.quote(str(out_dir)), params=args
        ),
        "",
    ]
    path = Path(script) if script else out_dir / f"{settings.job_name}.sbatch"
    _write(path, "\n".join(lines))
    return JobScript(path=path.resolve(), kind="run", log=log, out=out_dir)


def _sweep_case(sweep: Sweep) -> list[str]:
    lines = ['case "${SLURM_ARRAY_TASK_ID:?this script is a job array: submit it with sbatch}" in']
    for task in sweep.tasks:
        args = " ".join(
            f"-p {shlex.quote(parameter_literal(k, v))}" for k, v in task.parameters.items()
        )
        lines.append(f"  {task.index}) TASK={task.name}; PARAMS=({args}) ;;")
    last = len(sweep.tasks) - 1
    lines += [
        f'  *) echo "tcv: this sweep has tasks 0-{last}, not ${{SLURM_ARRAY_TASK_ID}}" >&2; exit 2 ;;',
        "esac",
    ]
    return lines


def _render_sweep(
    sweep: Sweep, settings: JobSettings, sweep_dir: Path, notebooks: Path, max_parallel: int | None
) -> tuple[str, str, str]:
    width = sweep_mod.index_width(len(sweep.tasks))
    log = str(sweep_dir / f"{sweep_mod.TASK_PREFIX}%{width}a" / "slurm-%A_%a.out")
    array = f"0-{len(sweep.tasks) - 1}" + (f"%{max_parallel}" if max_parallel else "")
    what = (
        f"Sweep {sweep.name}: a job array of {len(sweep.tasks)} `tcv run` tasks, task i writing "
        f"{sweep_dir}/task-NNN/."
    )
    lines = _header(settings, output=_quote_path(Path(log)), what=what, array=array)
    lines += _sweep_case(sweep)
    lines += [
        'echo "tcv: task ${SLURM_ARRAY_TASK_ID} ($TASK) of job ${SLURM_ARRAY_JOB_ID} on $(hostname), started $(date -Is): ${PARAMS[*]}"',
        _run_command(
            profile=sweep.profile,
            only=sweep.only,
            notebooks=notebooks,
            out=f'{shlex.quote(str(sweep_dir))}/"$TASK"',
            params='"${PARAMS[@]}"',
        ),
        "",
    ]
    return "\n".join(lines), log, array


def _tasks_data(sweep: Sweep) -> list[dict[str, Any]]:
    return [{"index": t.index, "name": t.name, "parameters": t.parameters} for t in sweep.tasks]


def write_sweep_job(
    sweep: Sweep,
    settings: JobSettings,
    *,
    out: str | os.PathLike = "runs",
    notebooks: str | os.PathLike | None = None,
    max_parallel: int | None = None,
) -> JobScript:
    """Writes a sweep's job array: ``out/<sweep>/sweep.sbatch``, ``sweep.json``, the task folders.

    Each array task ``i`` runs ``tcv run`` with the parameters of task ``i`` into
    ``out/<sweep>/task-00i/<run-id>/``; its Slurm log is ``out/<sweep>/task-00i/slurm-<job>_<i>.out``.
    Writing the same sweep again keeps the record of earlier submissions.

    Args:
        sweep: The sweep (:func:`tcv_helpers.batch.sweep.load_sweep`).
        settings: Resources, environment, working folder and job name.
        out: The runs folder.
        notebooks: The notebooks folder (default: ``./notebooks`` or the course's).
        max_parallel: At most this many tasks at once (``--array=0-9%2``); None: no limit.

    Returns:
        The written script.

    Raises:
        SlurmError: For unknown notebooks or parameters, a secret, bad resources, or a sweep
            folder that already holds a different sweep with results.
    """
    settings = settings.validated()
    if max_parallel is not None and max_parallel < 1:
        raise SlurmError(f"--max-parallel {max_parallel}: give 1 or more.")
    folder = check_run(
        Path(notebooks) if notebooks else None, sweep.only, sweep.profile, sweep.parameter_names
    )
    return write_sweep_files(
        sweep, settings, Path(out).resolve() / sweep.name, folder, max_parallel
    )


def write_sweep_files(
    sweep: Sweep,
    settings: JobSettings,
    sweep_dir: Path,
    folder: Path,
    max_parallel: int | None,
    may_change: Iterable[int] = (),
) -> JobScript:
    """Writes the script, the task folders and ``sweep.json`` of a checked sweep.

    Tasks that already have results keep their parameters, except those in ``may_change`` (the
    unfinished tasks of a resubmission). Earlier submissions stay in ``sweep.json``.

    Args:
        sweep: The sweep.
        settings: Validated job settings.
        sweep_dir: ``runs/<sweep>/``.
        folder: The notebooks folder, checked by :func:`check_run`.
        max_parallel: At most this many tasks at once (None: no limit).
        may_change: Indices of tasks whose parameters may differ from those stored.

    Returns:
        The written script.

    Raises:
        SlurmError: If tasks that have results would get other parameters, or for a secret.
    """
    old = sweep_mod.read_manifest(sweep_dir) if sweep_dir.is_dir() else None
    if old is not None:
        before = {int(t["index"]): t for t in old["tasks"]}
        after = {t.index: t for t in sweep.tasks}
        allowed = set(may_change)
        ran = [
            before[i]["name"]
            for i in sorted(before)
            if i not in allowed
            and (i not in after or after[i].parameters != before[i]["parameters"])
            and any((sweep_dir / before[i]["name"]).glob(f"*/{sweep_mod.SUMMARY_FILE}"))
        ]
        if ran:
            raise SlurmError(
                f"{sweep_dir} holds sweep {old.get('name')!r} whose tasks {', '.join(ran[:3])} "
                "have results with other parameters; give this sweep another name, or fix only "
                f"failed tasks and resubmit them: tcv slurm --resubmit-failed {sweep_dir}"
            )
    text, log, array = _render_sweep(sweep, settings, sweep_dir, folder, max_parallel)
    for task in sweep.tasks:
        (sweep_dir / task.name).mkdir(parents=True, exist_ok=True)
    path = _write(sweep_dir / SWEEP_SCRIPT, text)
    if sweep.source is not None:
        atomic_write_text(sweep_dir / "sweep.yaml", sweep.source.read_text(encoding="utf-8"))
    manifest = {
        "name": sweep.name,
        "sweep_file": str(sweep.source) if sweep.source else None,
        "profile": sweep.profile,
        "only": sweep.only,
        "notebooks": str(folder),
        "script": str(path),
        "max_parallel": max_parallel,
        "settings": settings.to_dict(),
        "written": _now(),
        "tasks": _tasks_data(sweep),
        "submissions": (old or {}).get("submissions", []),
    }
    sweep_mod.write_manifest(sweep_dir, manifest)
    return JobScript(
        path=path, kind="sweep", log=log, out=sweep_dir, array=array, tasks=sweep.tasks
    )


def read_sweep_record(sweep_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``sweep.json`` that :func:`write_sweep_job` wrote into a sweep folder.

    Raises:
        SlurmError: If the folder has none (it is not a folder ``tcv slurm --sweep`` wrote).
        SweepError: If the file is not readable JSON.
    """
    manifest = sweep_mod.read_manifest(sweep_dir)
    if manifest is None:
        raise SlurmError(
            f"{sweep_dir} has no {sweep_mod.MANIFEST_FILE}: give the folder `tcv slurm --sweep` "
            "wrote (runs/<sweep>/)."
        )
    return manifest


def record_submission(sweep_dir: str | os.PathLike, job_id: str, array: str) -> dict[str, Any]:
    """Adds a submission (job id, array, time) to a sweep folder's ``sweep.json``; returns it."""
    folder = Path(sweep_dir)
    manifest = read_sweep_record(folder)
    entry = {"job_id": str(job_id), "array": array, "submitted": _now()}
    manifest.setdefault("submissions", []).append(entry)
    sweep_mod.write_manifest(folder, manifest)
    return entry


def default_port() -> int:
    """A random port above 20000 for JupyterLab (a busy one is replaced when the job starts)."""
    return 20000 + _secrets.randbelow(40000)


def login_host() -> str:
    """This machine's name, as the jump host of the SSH tunnel (run ``tcv slurm`` on the login node)."""
    return socket.getfqdn()


def tunnel_command(
    *,
    port: int,
    node: str = "<node>",
    user: str | None = None,
    login: str | None = None,
    local_port: int = JUPYTER_LOCAL_PORT,
) -> str:
    """The SSH command that forwards ``127.0.0.1:local_port`` on your computer to JupyterLab.

    It jumps through the login node to the compute node and connects there to 127.0.0.1, where
    JupyterLab listens: nothing else on the cluster's network can reach it.
    """
    user = user or getpass.getuser()
    login = login or login_host()
    return f"ssh -N -L {local_port}:127.0.0.1:{port} -J {user}@{login} {user}@{node}"


@dataclass(frozen=True)
class JupyterJob:
    """A JupyterLab job script and how to reach it.

    Attributes:
        job: The script.
        port: The port JupyterLab listens on (on 127.0.0.1 of the compute node).
        user: The user name in the tunnel command.
        login: The login node in the tunnel command.
    """

    job: JobScript
    port: int
    user: str
    login: str

    def tunnel(self, node: str = "<node>") -> str:
        """The tunnel command for the node the job runs on (``squeue -j ID -h -o %N``)."""
        return tunnel_command(port=self.port, node=node, user=self.user, login=self.login)


def write_jupyter_job(
    settings: JobSettings,
    *,
    out: str | os.PathLike = "runs",
    port: int | None = None,
    user: str | None = None,
    login: str | None = None,
    script: str | os.PathLike | None = None,
) -> JupyterJob:
    """Writes a job script that runs JupyterLab on a compute node, safely.

    JupyterLab listens on 127.0.0.1 only (never on an address other users of the node or the
    cluster's network reach), with a token generated on the node when the job starts
    (``JUPYTER_TOKEN``: never in the script, only in the job's log, inside a folder only you can
    read). You reach it through an SSH tunnel via the login node; the log prints the exact command
    with the node and the token.

    Args:
        settings: Resources, environment, working folder (JupyterLab's root) and job name.
        out: Runs folder; the script and the log go to ``out/jupyter/`` (mode 0700).
        port: Port on the node (default: a random one above 20000; if it is taken when the job
            starts, the job picks a free one and its log says so).
        user: User name for the tunnel (default: yours).
        login: Login host for the tunnel (default: this machine's name).
        script: Where to write the script (default: ``out/jupyter/jupyter.sbatch``).

    Returns:
        The script and the tunnel's parts.

    Raises:
        SlurmError: For bad resources, user, host or port.
    """
    settings = settings.validated()
    port = default_port() if port is None else port
    if not 1024 <= port <= 65535:
        raise SlurmError(f"--port {port}: give a port from 1024 to 65535.")
    user = user or getpass.getuser()
    login = login or login_host()
    for label, value in (("user", user), ("login host", login)):
        if not HOST_PATTERN.fullmatch(value):
            raise SlurmError(f"The {label} {value!r} has characters an SSH command cannot take.")
    folder = Path(out).resolve() / JUPYTER_DIR
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)  # the log holds the token
    log = str(folder / "jupyter-%j.out")
    root = shlex.quote(str(settings.workdir))
    lines = _header(
        settings, output=_quote_path(Path(log)),
        what="JupyterLab on a compute node: 127.0.0.1 only, a token, reached through an SSH tunnel.",
    )  # fmt: skip
    lines += [
        'command -v jupyter >/dev/null || { echo "tcv: JupyterLab is not installed in this environment: activate the course environment (environment.yml), or pip install -e . in the course folder" >&2; exit 127; }',
        "umask 077",
        "# The port on 127.0.0.1 of this node; another free one if a different job holds it.",
        f'PORT=$(python -c \'import socket, sys\ns = socket.socket()\ntry:\n    s.bind(("127.0.0.1", int(sys.argv[1])))\nexcept OSError:\n    s.bind(("127.0.0.1", 0))\nprint(s.getsockname()[1])\' {port})',
        "# A fresh token, made here and now: it is in this job's log only, never in the script.",
        "JUPYTER_TOKEN=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')",
        "export JUPYTER_TOKEN",
        'NODE="${SLURMD_NODENAME:-$(hostname -s)}"',
        "cat <<EOF",
        "JupyterLab runs on ${NODE}, listening on 127.0.0.1:${PORT} only (not on the network), token required.",
        "1. On your own computer, open the tunnel through the login node and leave it open:",
        f"     ssh -N -L {JUPYTER_LOCAL_PORT}:127.0.0.1:${{PORT}} -J {user}@{login} {user}@${{NODE}}",
        f"2. Browse to http://127.0.0.1:{JUPYTER_LOCAL_PORT}/lab?token=${{JUPYTER_TOKEN}}",
        "3. When you are done: scancel ${SLURM_JOB_ID} (the job also ends at its time limit).",
        "EOF",
        f'exec jupyter lab --no-browser --ip=127.0.0.1 --port="${{PORT}}" --ServerApp.port_retries=0 --ServerApp.root_dir={root}',
        "",
    ]
    path = Path(script) if script else folder / "jupyter.sbatch"
    _write(path, "\n".join(lines))
    job = JobScript(path=path.resolve(), kind="jupyter", log=log, out=folder)
    return JupyterJob(job=job, port=port, user=user, login=login)
