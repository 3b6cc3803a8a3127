"""``tcv slurm`` as one call (:func:`write_and_submit`) and the resubmission of failed tasks.

One command, four modes, each writing a job script (:mod:`tcv_helpers.batch.slurm_scripts`) from
a site preset and overrides (:mod:`tcv_helpers.batch.slurm_site`):

- one ``tcv run`` (the default),
- a job array over a sweep file (``sweep=``),
- JupyterLab on a compute node (``jupyter=True``),
- the failed tasks of a sweep again (``resubmit_failed=``, :func:`prepare_resubmission`): the
  queue is asked first, so a task still waiting is never sent twice.

Then, as asked, Slurm checks the script (``sbatch --test-only``), it is submitted, and the call
waits until the job has left the queue (:mod:`tcv_helpers.batch.slurm_queue`); after a sweep,
every task's result is read back. Progress lines go to ``on_event``; what a shell script reads
(the script's path, the job id, the tunnel command) goes to ``on_output``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tcv_helpers.batch import runner, slurm_queue
from tcv_helpers.batch import sweep as sweep_mod
from tcv_helpers.batch.slurm_scripts import (
    JobScript,
    check_run,
    compress_indices,
    read_sweep_record,
    record_submission,
    write_jupyter_job,
    write_run_job,
    write_sweep_files,
    write_sweep_job,
)
from tcv_helpers.batch.slurm_site import (
    DEFAULT_PRESET,
    JobSettings,
    SlurmError,
    describe_resources,
    load_preset,
    resolve_activation,
)
from tcv_helpers.batch.sweep import Sweep, SweepTask

DEFAULT_WAIT_TIMEOUT = 86400.0


@dataclass(frozen=True)
class Resubmission:
    """What :func:`prepare_resubmission` found and wrote.

    Attributes:
        job: The sweep's job script, written again (fixes in the sweep file included).
        tasks: The unfinished tasks that will run again.
        array: Their indices as ``--array`` text (``"1,3"``); empty when nothing is unfinished.
    """

    job: JobScript
    tasks: tuple[sweep_mod.TaskResult, ...]
    array: str


def prepare_resubmission(
    sweep_dir: str | os.PathLike,
    *,
    resources: Mapping[str, Any] | None = None,
    modules: Sequence[str] | None = None,
    conda: str | None = None,
    venv: str | os.PathLike | None = None,
    require_env: Sequence[str] | None = None,
) -> Resubmission:
    """Finds a sweep's unfinished tasks and writes its script again, ready for ``--array=<ids>``.

    Slurm's queue is asked first (``squeue``): tasks still waiting or running are not
    unfinished. The sweep file is read again, so a fixed parameter value of a failed task goes
    into the new script; a task that finished must keep its parameters, and the number of tasks
    cannot change (that is another sweep). Resources can be changed
    (``resources={"time": "08:00:00"}`` for tasks that hit their time limit).

    Args:
        sweep_dir: ``runs/<sweep>/``.
        resources: Resource overrides (None values change nothing).
        modules: Replaces the modules.
        conda: Another conda environment.
        venv: Another virtual environment.
        require_env: Replaces the required variable names.

    Returns:
        The script, the unfinished tasks and their ``--array`` text (with the sweep's
        ``%max_parallel``).

    Raises:
        SlurmError: If the folder is not a sweep folder, the queue cannot be asked (a task
            might run twice), or the sweep file changed in a way a resubmission cannot follow.
    """
    folder = Path(sweep_dir).resolve()
    manifest = read_sweep_record(folder)
    ids = [str(s["job_id"]) for s in manifest.get("submissions", [])]
    queue = slurm_queue.queued_tasks(ids)
    if queue is None:
        raise SlurmError(
            "Slurm's queue cannot be asked (squeue is missing or the controller does not "
            "answer), so tasks still waiting cannot be told from failed ones; resubmit where "
            "squeue works, so that no task runs twice."
        )
    unfinished = tuple(sweep_mod.collect(folder, queue=queue).unfinished)
    redo = {t.index for t in unfinished}
    stored = [
        SweepTask(int(t["index"]), t["name"], dict(t["parameters"])) for t in manifest["tasks"]
    ]
    source = Path(manifest["sweep_file"]) if manifest.get("sweep_file") else None
    tasks = tuple(stored)
    if source is not None and source.is_file():  # the file may hold a fix for a failed task
        fresh = sweep_mod.load_sweep(source).tasks
        if len(fresh) != len(stored):
            raise SlurmError(
                f"{source} now has {len(fresh)} tasks and {folder} {len(stored)}: a different "
                "sweep. Give it another name and submit it as a new one."
            )
        for old, new in zip(stored, fresh, strict=True):
            if old.parameters != new.parameters and old.index not in redo:
                raise SlurmError(
                    f"{source}: task {old.index} ({old.name}) did not fail but its parameters "
                    f"changed ({old.parameters} -> {new.parameters}); only failed tasks may change."
                )
        tasks = fresh
    sweep = Sweep(manifest["name"], manifest.get("profile"), manifest.get("only"), tasks, source)
    settings = JobSettings.from_dict(manifest["settings"])
    activation = settings.activation
    if modules is not None or conda or venv:
        activation = resolve_activation(activation, modules=modules, conda=conda, venv=venv)
    settings = replace(
        settings,
        resources=settings.resources.with_overrides(**dict(resources or {})),
        activation=activation,
        require_env=tuple(require_env) if require_env is not None else settings.require_env,
    ).validated()
    notebooks = check_run(
        Path(manifest["notebooks"]), sweep.only, sweep.profile, sweep.parameter_names
    )
    throttle = manifest.get("max_parallel")
    job = write_sweep_files(sweep, settings, folder, notebooks, throttle, may_change=redo)
    array = compress_indices(redo) + (f"%{throttle}" if throttle else "") if redo else ""
    return Resubmission(job=job, tasks=unfinished, array=array)


@dataclass(frozen=True)
class SlurmResult:
    """What :func:`write_and_submit` did.

    Attributes:
        job: The script written (for a resubmission: the sweep's script, written again).
        array: The ``--array`` of this submission (None: the script's own).
        job_id: The submitted job's id (None: not submitted, or nothing to resubmit).
        tasks: Every task's result after waiting for a sweep (or its failed tasks, sent
            again); empty otherwise.
        ok: False when a sweep that was waited for has unfinished tasks.
    """

    job: JobScript
    array: str | None = None
    job_id: str | None = None
    tasks: tuple[sweep_mod.TaskResult, ...] = ()
    ok: bool = True


def _quiet(_line: str) -> None:
    """Drops a line (no callback given)."""


def _check_modes(
    *,
    sweep: str | os.PathLike | None,
    jupyter: bool,
    resubmit_failed: str | os.PathLike | None,
    submit: bool,
    wait: bool,
    parameters: Sequence[str],
    mode_options: bool,
) -> None:
    if sum([sweep is not None, jupyter, resubmit_failed is not None]) > 1:
        raise SlurmError("Give one of --sweep, --jupyter and --resubmit-failed.")
    if wait and not submit:
        raise SlurmError("--wait waits for a submitted job: add --submit.")
    if resubmit_failed is not None and (mode_options or parameters):
        raise SlurmError(
            "--resubmit-failed reuses the sweep's settings and its sweep file; only "
            "resources (--time, --mem, ...) and the environment can change."
        )
    if sweep is not None and parameters:
        raise SlurmError("A sweep's parameters go into its file (under parameters: or grid:).")


def _write_new_job(
    *,
    sweep: str | os.PathLike | None,
    jupyter: bool,
    preset: str | os.PathLike | None,
    profile: str | None,
    only: str | None,
    parameters: Sequence[str],
    out: str | os.PathLike,
    notebooks: str | os.PathLike | None,
    resources: Mapping[str, Any],
    modules: Sequence[str] | None,
    conda: str | None,
    venv: str | os.PathLike | None,
    require_env: Sequence[str] | None,
    job_name: str | None,
    max_parallel: int | None,
    port: int | None,
    script: str | os.PathLike | None,
    say: Callable[[str], None],
    show: Callable[[str], None],
) -> JobScript:
    """The run, sweep or JupyterLab mode: the preset, the overrides, then the script."""
    site = load_preset(preset or DEFAULT_PRESET)
    chosen = site.resources.with_overrides(**resources)
    activation = resolve_activation(site.activation, modules=modules, conda=conda, venv=venv)
    say(f"Preset {site.name}: {site.description}")
    plan: Sweep | None = None
    if sweep is not None:
        plan = sweep_mod.load_sweep(sweep)
        plan = replace(plan, profile=profile or plan.profile, only=only or plan.only)
        default_name = f"tcv-{plan.name}"
    else:
        default_name = "tcv-jupyter" if jupyter else f"tcv-{profile or 'run'}"
    settings = JobSettings(
        resources=chosen, activation=activation, workdir=Path.cwd().resolve(),
        job_name=job_name or default_name, require_env=tuple(require_env or ()),
        preset=site.name,
    )  # fmt: skip
    if plan is not None:
        job = write_sweep_job(
            plan, settings, out=out, notebooks=notebooks, max_parallel=max_parallel
        )
        say(f"Wrote {job.path}: a job array of {len(job.tasks)} tasks into {job.out}/")
        for task in job.tasks:
            values = ", ".join(f"{k}={v}" for k, v in task.parameters.items())
            say(f"  task {task.index} ({task.name}): {values or 'defaults'}")
    elif jupyter:
        lab = write_jupyter_job(settings, out=out, port=port, script=script)
        job = lab.job
        say(f"Wrote {job.path}: JupyterLab on 127.0.0.1:{lab.port} of the node, token on.")
        say(
            "Once it runs, open the tunnel from your computer (the node: squeue -j JOBID -h -o %N):"
        )
        show(f"  {lab.tunnel()}")
        say(f"The job's log ({job.log}) prints the exact command and the link with its token.")
    else:
        values = dict(runner.parse_parameter(p) for p in parameters)
        job = write_run_job(
            settings, out=out, profile=profile, only=only, parameters=values,
            notebooks=notebooks, script=script,
        )  # fmt: skip
        say(f"Wrote {job.path}: one tcv run into {job.out}/")
    say(
        f"Resources: {describe_resources(settings.resources)}; "
        f"environment: {settings.activation.describe()}"
    )
    return job


def write_and_submit(
    *,
    sweep: str | os.PathLike | None = None,
    jupyter: bool = False,
    resubmit_failed: str | os.PathLike | None = None,
    preset: str | os.PathLike | None = None,
    profile: str | None = None,
    only: str | None = None,
    parameters: Sequence[str] = (),
    out: str | os.PathLike = "runs",
    notebooks: str | os.PathLike | None = None,
    resources: Mapping[str, Any] | None = None,
    modules: Sequence[str] | None = None,
    conda: str | None = None,
    venv: str | os.PathLike | None = None,
    require_env: Sequence[str] | None = None,
    job_name: str | None = None,
    max_parallel: int | None = None,
    port: int | None = None,
    script: str | os.PathLike | None = None,
    submit: bool = False,
    test_only: bool = False,
    wait: bool = False,
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
    on_event: Callable[[str], None] | None = None,
    on_output: Callable[[str], None] | None = None,
) -> SlurmResult:
    """``tcv slurm``: writes the job script of one mode, then checks, submits and waits as asked.

    Args:
        sweep: A sweep file: a job array, one task per parameter set.
        jupyter: A JupyterLab job (127.0.0.1, a token, reached through an SSH tunnel).
        resubmit_failed: A sweep folder (``runs/<sweep>/``): its script written again, only its
            failed tasks submitted (``--array=<ids>``).
        preset: Site preset: ``generic``, ``koa`` or a YAML file (None: ``generic``).
        profile: ``smoke``, ``workshop``, ``full`` or ``auto`` (a sweep: its file's).
        only: Notebook selection such as ``"02,05-06"``.
        parameters: ``KEY=VALUE`` texts as ``-p`` takes them (one run only; a sweep has its file).
        out: Runs folder; a sweep goes to ``out/<sweep>/``.
        notebooks: Notebook folder (default: ``./notebooks`` or the course's).
        resources: Overrides of the preset's resources (``{"time": "08:00:00"}``; None values
            change nothing).
        modules: Environment modules (replace the preset's).
        conda: A conda environment to activate.
        venv: A virtual environment to activate.
        require_env: Names of variables the job needs: checked, never written.
        job_name: ``--job-name`` (default: ``tcv-<sweep>``, ``tcv-jupyter`` or ``tcv-<profile>``).
        max_parallel: A sweep's tasks at once at most (``--array=...%N``).
        port: JupyterLab's port on the node (default: random).
        script: Where to write the script (one run or JupyterLab).
        submit: Submit with ``sbatch``.
        test_only: Ask Slurm first whether it would run it (``sbatch --test-only``).
        wait: With ``submit``: wait until the job has left the queue, then read a sweep's results.
        wait_timeout: Seconds ``wait`` waits at most.
        on_event: Called with each progress line (what was written, resources, hints).
        on_output: Called with each line a shell script reads: the script's path (not
            submitted), the job id (submitted), the SSH tunnel command (JupyterLab).

    Returns:
        The script, the submission and, after waiting for a sweep, its tasks' results.

    Raises:
        SlurmError: For contradicting options, bad resources or environment, an unknown
            preset, profile, notebook or parameter, a secret, or what Slurm refuses.
        SweepError: For a bad sweep file or sweep folder.
        RunError: For a malformed ``KEY=VALUE``.
        TimeoutError: If the job is still queued or running after ``wait_timeout`` seconds.
    """
    say, show = on_event or _quiet, on_output or _quiet
    _check_modes(
        sweep=sweep, jupyter=jupyter, resubmit_failed=resubmit_failed, submit=submit, wait=wait,
        parameters=parameters,
        mode_options=bool(preset or profile or only or job_name or max_parallel or script or port),
    )  # fmt: skip
    array: str | None = None
    resent: tuple[sweep_mod.TaskResult, ...] = ()
    if resubmit_failed is not None:
        folder = Path(resubmit_failed).resolve()
        again = prepare_resubmission(
            folder, resources=resources, modules=modules, conda=conda, venv=venv,
            require_env=require_env,
        )  # fmt: skip
        if not again.tasks:
            say(f"Nothing to resubmit in {folder}: no task failed (see tcv sweep report).")
            return SlurmResult(job=again.job)
        for task in again.tasks:
            say(task.describe())
        job, array, resent = again.job, again.array, again.tasks
        say(f"Wrote {job.path} again; tasks to resubmit: --array={array}")
    else:
        job = _write_new_job(
            sweep=sweep, jupyter=jupyter, preset=preset, profile=profile, only=only,
            parameters=parameters, out=out, notebooks=notebooks, resources=dict(resources or {}),
            modules=modules, conda=conda, venv=venv, require_env=require_env, job_name=job_name,
            max_parallel=max_parallel, port=port, script=script, say=say, show=show,
        )  # fmt: skip
    if test_only:
        say(slurm_queue.sbatch_test_only(job.path))
    if not submit:
        hint = f"sbatch --array={array} {job.path}" if array else f"sbatch {job.path}"
        say(f"Submit with: {hint}")
        if job.kind != "jupyter":
            show(str(job.path))
        return SlurmResult(job=job, array=array, tasks=resent)
    job_id = slurm_queue.submit(job.path, array=array)
    if job.kind == "sweep":
        record_submission(job.out, job_id, array or job.array or "")
    say(f"Submitted job {job_id}; log: {job.log}")
    show(job_id)
    if not wait:
        return SlurmResult(job=job, array=array, job_id=job_id, tasks=resent)
    slurm_queue.wait_for_jobs([job_id], timeout=wait_timeout)
    say(f"Job {job_id} has left the queue.")
    if job.kind != "sweep":
        return SlurmResult(job=job, array=array, job_id=job_id)
    ids = [str(s["job_id"]) for s in read_sweep_record(job.out)["submissions"]]
    result = sweep_mod.collect(job.out, queue=slurm_queue.queued_tasks(ids))
    for task in result.tasks:
        say(task.describe())
    if result.unfinished:
        say(f"Resubmit the failed tasks with: tcv slurm --resubmit-failed {job.out} --submit")
    return SlurmResult(
        job=job, array=array, job_id=job_id, tasks=tuple(result.tasks), ok=not result.unfinished
    )
