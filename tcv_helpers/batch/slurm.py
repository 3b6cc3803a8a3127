"""``tcv slurm``: sbatch scripts for a run, a job-array sweep or JupyterLab on a compute node.

Three kinds of job script, all written from the same pieces (what to ask Slurm for, how to
activate the environment, what to run):

- one ``tcv run`` (:func:`write_run_job`),
- a **job array** over a sweep file (:func:`write_sweep_job`): task ``i`` runs ``tcv run`` with
  the parameters of task ``i`` into ``runs/<sweep>/task-00i/``, its Slurm log beside it; the
  folder's ``sweep.json`` lists the tasks and every submission, so :func:`prepare_resubmission`
  can find the tasks that failed and :func:`submit` can send only those again (``--array=1,3``),
- JupyterLab bound to 127.0.0.1 with a token, reached through an SSH tunnel
  (:func:`write_jupyter_job`).

Site presets (``resources/slurm/*.yaml``: partition, GPUs, CPUs, memory, time, modules or a
conda environment) give the defaults; every field can be overridden. No secret is ever written
into a script: a job gets keys from the environment it is submitted from, and the script names
the variables it needs (``--require-env``) without their values.
"""

from __future__ import annotations

import getpass
import os
import re
import secrets as _secrets
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from tcv_helpers.batch import runner
from tcv_helpers.batch import sweep as sweep_mod
from tcv_helpers.batch.runner import RunError, parse_parameter
from tcv_helpers.batch.sweep import Sweep, SweepTask
from tcv_helpers.config import DEVICE_ENV, PROFILES
from tcv_helpers.io import atomic_write_text
from tcv_helpers.secrets import MIN_SECRET_LENGTH, is_secret_name

PRESETS_DIR = Path(__file__).resolve().parent.parent / "resources" / "slurm"
DEFAULT_PRESET = "generic"
SWEEP_SCRIPT = "sweep.sbatch"
JUPYTER_DIR = "jupyter"
JUPYTER_LOCAL_PORT = 8888
SUBMIT_TIMEOUT = 60
TIME_PATTERN = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")
MEM_PATTERN = re.compile(r"^\d+[KMGTkmgt]?$")
WORD_PATTERN = re.compile(r"^[A-Za-z0-9_.:+-]+$")
PARTITION_PATTERN = re.compile(r"^[A-Za-z0-9_.+-]+(,[A-Za-z0-9_.+-]+)*$")
MODULE_PATTERN = re.compile(r"^[A-Za-z0-9_./+-]+$")
ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
HOST_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")
ACTIVE_STATES = ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED")


class SlurmError(Exception):
    """A job script that cannot be written or submitted; the message says what to change."""


@dataclass(frozen=True)
class Resources:
    """What a job asks Slurm for.

    Attributes:
        partition: ``--partition`` (None: the site's default).
        account: ``--account`` (None: the user's default).
        qos: ``--qos``.
        gpus: GPUs per job, asked as ``--gres=gpu[:TYPE]:N`` (0: none).
        gpu_type: The GPU type in ``--gres`` (None: any).
        cpus: ``--cpus-per-task``.
        mem: ``--mem``, e.g. ``16G`` (None: the site's default).
        time: ``--time``, ``[days-]hours:minutes:seconds`` (None: the partition's default).
    """

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    gpus: int = 0
    gpu_type: str | None = None
    cpus: int = 1
    mem: str | None = None
    time: str | None = None

    def validated(self, where: str = "resources") -> Resources:
        """Returns itself after checking every field (values go into ``#SBATCH`` lines).

        Args:
            where: How errors name the fields: ``"resources"`` gives ``resources.time``, a
                file name ``"koa.yaml: resources"`` gives ``koa.yaml: resources.time``, and
                ``"--"`` names the command-line flag (``--time``).

        Raises:
            SlurmError: Naming the field and the expected form.
        """

        def label(name: str) -> str:
            return f"--{name.replace('_', '-')}" if where == "--" else f"{where}.{name}"

        if self.partition is not None and not PARTITION_PATTERN.match(str(self.partition)):
            raise SlurmError(
                f"{label('partition')}: {self.partition!r} is not a partition name (or a comma list)."
            )
        for name in ("account", "qos", "gpu_type"):
            value = getattr(self, name)
            if value is not None and not WORD_PATTERN.match(str(value)):
                raise SlurmError(
                    f"{label(name)}: {value!r} is not a Slurm name (letters, digits, _ . : + -)."
                )
        if isinstance(self.gpus, bool) or not isinstance(self.gpus, int) or self.gpus < 0:
            raise SlurmError(f"{label('gpus')}: {self.gpus!r} must be a whole number, 0 or more.")
        if isinstance(self.cpus, bool) or not isinstance(self.cpus, int) or self.cpus < 1:
            raise SlurmError(f"{label('cpus')}: {self.cpus!r} must be a whole number, 1 or more.")
        if self.mem is not None and not MEM_PATTERN.match(str(self.mem)):
            raise SlurmError(f"{label('mem')}: {self.mem!r} must look like 16G, 4000M or 32000.")
        if self.time is not None and not TIME_PATTERN.match(str(self.time)):
            raise SlurmError(
                f"{label('time')}: {self.time!r} must look like 04:00:00, 30:00, 90 or 1-12:00:00 "
                "(days-hours:minutes:seconds)."
            )
        if self.gpu_type is not None and self.gpus == 0:
            raise SlurmError(
                f"{label('gpu_type')}: {self.gpu_type!r} is set but no GPU is asked for; give "
                "--gpus 1 or more."
            )
        return self

    def with_overrides(self, **changes: Any) -> Resources:
        """A copy with some fields changed (None changes nothing), validated.

        Raises:
            SlurmError: For an unknown field or a bad value.
        """
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise SlurmError(
                f"Unknown resource(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}."
            )
        changed = replace(self, **{k: v for k, v in changes.items() if v is not None})
        return changed.validated("--")

    def sbatch_options(self) -> list[str]:
        """The ``#SBATCH`` options, e.g. ``["--partition=gpu", "--gres=gpu:2", ...]``."""
        options = []
        for name, flag in (("partition", "partition"), ("account", "account"), ("qos", "qos")):
            value = getattr(self, name)
            if value:
                options.append(f"--{flag}={value}")
        if self.time:
            options.append(f"--time={self.time}")
        options += ["--nodes=1", "--ntasks=1", f"--cpus-per-task={self.cpus}"]
        if self.mem:
            options.append(f"--mem={self.mem}")
        if self.gpus:
            kind = f"{self.gpu_type}:" if self.gpu_type else ""
            options.append(f"--gres=gpu:{kind}{self.gpus}")
        return options


@dataclass(frozen=True)
class Activation:
    """How a job script gets the course's environment.

    Modules load first, then a conda environment or a virtual environment is activated, or
    ``path`` is put in front of ``PATH`` (a Python without an environment).

    Attributes:
        modules: Environment modules to ``module load``.
        conda: A conda environment name or prefix.
        conda_exe: The ``conda`` program (None: ``conda`` on the ``PATH`` after the modules).
        venv: A virtual environment folder.
        path: A folder with the ``tcv`` and ``python`` programs.
    """

    modules: tuple[str, ...] = ()
    conda: str | None = None
    conda_exe: str | None = None
    venv: str | None = None
    path: str | None = None

    @property
    def empty(self) -> bool:
        """True when nothing says how to activate (presets use it for "the current environment")."""
        return not (self.modules or self.conda or self.venv or self.path)

    def validated(self, where: str = "activation") -> Activation:
        """Returns itself after checking the fields.

        Raises:
            SlurmError: For a module name that is not one, or both conda and venv.
        """
        for module in self.modules:
            if not MODULE_PATTERN.match(str(module)):
                raise SlurmError(
                    f"{where}.modules: {module!r} is not a module name like lang/Anaconda3."
                )
        if self.conda and self.venv:
            raise SlurmError(f"{where}: give conda or venv, not both.")
        for name in ("conda", "conda_exe", "venv", "path"):
            value = getattr(self, name)
            if value is not None and (not str(value).strip() or "\n" in str(value)):
                raise SlurmError(f"{where}.{name}: {value!r} is not a name or a path.")
        return self

    def lines(self) -> list[str]:
        """Shell lines that activate the environment, then check that ``tcv`` is there."""
        out = []
        if self.modules:
            out += [
                "# A batch shell may lack the `module` command that login shells have.",
                "type module >/dev/null 2>&1 || source /etc/profile",
                "module load " + " ".join(shlex.quote(m) for m in self.modules),
            ]
        if self.conda:
            exe = shlex.quote(self.conda_exe) if self.conda_exe else "conda"
            out += [f'eval "$({exe} shell.bash hook)"', f"conda activate {shlex.quote(self.conda)}"]
        elif self.venv:
            out.append(f"source {shlex.quote(str(Path(self.venv) / 'bin' / 'activate'))}")
        elif self.path:
            out.append(f'export PATH={shlex.quote(self.path)}:"$PATH"')
        out.append(
            'command -v tcv >/dev/null || { echo "tcv: the course is not installed in this '
            'environment (see docs/hpc.md)" >&2; exit 127; }'
        )
        return out

    def describe(self) -> str:
        """A few words: what the script loads and activates."""
        parts = [f"modules {', '.join(self.modules)}"] if self.modules else []
        if self.conda:
            parts.append(f"conda env {self.conda}")
        elif self.venv:
            parts.append(f"venv {self.venv}")
        elif self.path:
            parts.append(f"PATH {self.path}")
        return "; ".join(parts) or "nothing"


def current_activation() -> Activation:
    """The environment this Python runs in, for a job to activate the same one.

    A virtual environment (``sys.prefix`` differs from ``sys.base_prefix``) is sourced; a conda
    environment (``CONDA_PREFIX``) is activated with the same ``conda``; otherwise the folder of
    the ``tcv`` program (or of this Python) goes in front of ``PATH``.
    """
    if sys.prefix != sys.base_prefix:
        return Activation(venv=sys.prefix)
    conda = os.environ.get("CONDA_PREFIX")
    if conda:
        return Activation(conda=conda, conda_exe=os.environ.get("CONDA_EXE") or None)
    tcv = shutil.which("tcv")
    return Activation(path=str(Path(tcv).parent if tcv else Path(sys.executable).parent))


@dataclass(frozen=True)
class Preset:
    """A site preset: default resources and environment activation.

    Attributes:
        name: ``generic``, ``koa`` or the file's name.
        description: One line for ``tcv slurm --help`` and the script's header.
        resources: Default resources.
        activation: How to get the environment (empty: the current one).
        source: The YAML file.
    """

    name: str
    description: str
    resources: Resources
    activation: Activation
    source: Path


def list_presets() -> list[str]:
    """Names of the presets that ship with the course."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def load_preset(name: str | os.PathLike = DEFAULT_PRESET) -> Preset:
    """Reads a site preset by name (``generic``, ``koa``) or from a YAML file of the same form.

    Raises:
        SlurmError: If there is no such preset, or a field is wrong (naming the file and field).
    """
    text = str(name)
    path = Path(text)
    if not (text.endswith((".yaml", ".yml")) or path.is_file()):
        path = PRESETS_DIR / f"{text}.yaml"
        if not path.is_file():
            raise SlurmError(
                f"No site preset {text!r}; choose {', '.join(list_presets())} or give a YAML file."
            )
    if not path.is_file():
        raise SlurmError(f"Preset file {text!r} does not exist.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise SlurmError(f"Preset {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SlurmError(f"Preset {path}: expected a mapping with resources and activation.")
    unknown = sorted(set(data) - {"name", "description", "resources", "activation"})
    if unknown:
        raise SlurmError(f"Preset {path}: unknown key(s) {', '.join(unknown)}.")
    res, act = data.get("resources") or {}, data.get("activation") or {}
    if not isinstance(res, dict) or not isinstance(act, dict):
        raise SlurmError(f"Preset {path}: resources and activation must be mappings.")
    known_res = {f.name for f in fields(Resources)}
    known_act = {"modules", "conda", "venv"}
    for section, values, known in (("resources", res, known_res), ("activation", act, known_act)):
        bad = sorted(set(values) - known)
        if bad:
            raise SlurmError(
                f"Preset {path}: {section}.{bad[0]} is not a field; known: {', '.join(sorted(known))}."
            )
    if res.get("time") is not None and not isinstance(res["time"], str):
        raise SlurmError(
            f"Preset {path}: resources.time is the number {res['time']!r}; write it in quotes, "
            'e.g. time: "4:00:00" (without quotes, YAML reads 4:00:00 as 14400).'
        )
    if res.get("mem") is not None:
        res["mem"] = str(res["mem"])
    modules = act.get("modules") or []
    if not isinstance(modules, list):
        raise SlurmError(f"Preset {path}: activation.modules must be a list.")
    resources = Resources(**res).validated(f"{path.name}: resources")
    activation = Activation(
        modules=tuple(str(m) for m in modules), conda=act.get("conda"), venv=act.get("venv")
    ).validated(f"{path.name}: activation")
    return Preset(
        name=str(data.get("name") or path.stem), description=str(data.get("description") or ""),
        resources=resources, activation=activation, source=path.resolve(),
    )  # fmt: skip


def resolve_activation(
    base: Activation,
    *,
    modules: Sequence[str] | None = None,
    conda: str | None = None,
    venv: str | os.PathLike | None = None,
) -> Activation:
    """A preset's activation with flags on top; empty means the current environment.

    Args:
        base: The preset's activation (``preset.activation``).
        modules: Replaces the preset's modules (None: keep them).
        conda: A conda environment (replaces the preset's conda or venv).
        venv: A virtual environment folder (replaces the preset's conda or venv).

    Raises:
        SlurmError: If both ``conda`` and ``venv`` are given, or a value is malformed.
    """
    if conda and venv:
        raise SlurmError("Give --conda or --venv, not both.")
    chosen = Activation(
        modules=tuple(modules) if modules is not None else base.modules,
        conda=conda if (conda or venv) else base.conda,
        venv=str(Path(venv).expanduser().resolve()) if venv else (None if conda else base.venv),
    )
    if not (chosen.conda or chosen.venv):
        current = current_activation()
        chosen = replace(current, modules=chosen.modules)
    return chosen.validated()


@dataclass(frozen=True)
class JobSettings:
    """Everything a job script needs besides what it runs.

    Attributes:
        resources: What to ask Slurm for.
        activation: How to get the environment.
        workdir: The folder the job starts in (``--chdir``): the course repository.
        job_name: ``--job-name``.
        require_env: Names of environment variables the job needs (keys such as
            ``ROBOFLOW_API_KEY``): the script checks they are set, never holds their values.
        preset: The preset's name, for the header.
    """

    resources: Resources
    activation: Activation
    workdir: Path
    job_name: str = "tcv"
    require_env: tuple[str, ...] = ()
    preset: str = DEFAULT_PRESET

    def validated(self) -> JobSettings:
        """Returns itself after checking the job name and the variable names.

        Raises:
            SlurmError: For a malformed job name or variable name.
        """
        if not WORD_PATTERN.match(self.job_name):
            raise SlurmError(f"--job-name {self.job_name!r}: use letters, digits and _ . -.")
        for name in self.require_env:
            if not ENV_NAME_PATTERN.match(name):
                raise SlurmError(  # the text is not echoed: it may be the value by mistake
                    "--require-env takes a variable's NAME (e.g. ROBOFLOW_API_KEY), never its "
                    "value; one of those given is not a name."
                )
        self.resources.validated()
        self.activation.validated()
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``sweep.json`` (read back by :meth:`from_dict`)."""
        data = asdict(self)
        data["workdir"] = str(self.workdir)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobSettings:
        """The settings stored by :meth:`to_dict`."""
        act = dict(data["activation"])
        act["modules"] = tuple(act.get("modules") or ())
        return cls(
            resources=Resources(**data["resources"]), activation=Activation(**act),
            workdir=Path(data["workdir"]), job_name=data.get("job_name", "tcv"),
            require_env=tuple(data.get("require_env") or ()), preset=data.get("preset", DEFAULT_PRESET),
        )  # fmt: skip


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
        f"# {what}",
        f"# Written by `tcv slurm` (tcv_helpers {__version__}, preset {settings.preset}) on {_now()}.",
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
        f"# Environment: {settings.activation.describe()}",
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


def _prepare_run(
    notebooks: Path | None, only: str | None, profile: str | None, names: Iterable[str]
) -> Path:
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
    folder = _prepare_run(Path(notebooks) if notebooks else None, only, profile, params)
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
    folder = _prepare_run(
        Path(notebooks) if notebooks else None, sweep.only, sweep.profile, sweep.parameter_names
    )
    return _write_sweep(sweep, settings, Path(out).resolve() / sweep.name, folder, max_parallel)


def _write_sweep(
    sweep: Sweep,
    settings: JobSettings,
    sweep_dir: Path,
    folder: Path,
    max_parallel: int | None,
    may_change: Iterable[int] = (),
) -> JobScript:
    """Writes the script, the task folders and ``sweep.json`` of a checked sweep.

    Tasks that already have results keep their parameters, except those in ``may_change`` (the
    unfinished tasks of a resubmission).
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


def _manifest(sweep_dir: Path) -> dict[str, Any]:
    manifest = sweep_mod.read_manifest(sweep_dir)
    if manifest is None:
        raise SlurmError(
            f"{sweep_dir} has no {sweep_mod.MANIFEST_FILE}: give the folder `tcv slurm --sweep` "
            "wrote (runs/<sweep>/)."
        )
    return manifest


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
    manifest = _manifest(folder)
    ids = [str(s["job_id"]) for s in manifest.get("submissions", [])]
    queue = queued_tasks(ids)
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
    notebooks = _prepare_run(
        Path(manifest["notebooks"]), sweep.only, sweep.profile, sweep.parameter_names
    )
    throttle = manifest.get("max_parallel")
    job = _write_sweep(sweep, settings, folder, notebooks, throttle, may_change=redo)
    array = compress_indices(redo) + (f"%{throttle}" if throttle else "") if redo else ""
    return Resubmission(job=job, tasks=unfinished, array=array)


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
        if not HOST_PATTERN.match(value):
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
        'command -v jupyter >/dev/null || { echo "tcv: JupyterLab is not installed in this environment: pip install jupyterlab" >&2; exit 127; }',
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


def _slurm_command(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise SlurmError(
            f"{name} not found: run this on the cluster's login node (where Slurm's commands "
            "are), or write the script without --submit and copy it there."
        )
    return found


def _run(args: list[str], *, timeout: float = SUBMIT_TIMEOUT) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise SlurmError(
            f"{' '.join(args[:2])} did not answer in {timeout:.0f} s: is the Slurm controller up?"
        ) from exc


def submit(script: str | os.PathLike, *, array: str | None = None) -> str:
    """Submits a job script with ``sbatch --parsable`` and returns the job id.

    Args:
        script: The job script.
        array: ``--array`` for this submission, overriding the script's (``"1,3"``: only those
            tasks of a sweep).

    Raises:
        SlurmError: If sbatch is missing or refuses the job (with its message).
    """
    args = [_slurm_command("sbatch"), "--parsable"]
    if array:
        args.append(f"--array={array}")
    done = _run([*args, str(script)])
    if done.returncode != 0:
        raise SlurmError(f"sbatch refused {script}: {done.stderr.strip() or done.stdout.strip()}")
    job_id = done.stdout.strip().split(";")[0]
    if not job_id.isdigit():
        raise SlurmError(f"sbatch answered {done.stdout.strip()!r}, not a job id.")
    return job_id


def record_submission(sweep_dir: str | os.PathLike, job_id: str, array: str) -> dict[str, Any]:
    """Adds a submission (job id, array, time) to a sweep folder's ``sweep.json``; returns it."""
    folder = Path(sweep_dir)
    manifest = _manifest(folder)
    entry = {"job_id": str(job_id), "array": array, "submitted": _now()}
    manifest.setdefault("submissions", []).append(entry)
    sweep_mod.write_manifest(folder, manifest)
    return entry


def sbatch_test_only(script: str | os.PathLike) -> str:
    """Asks Slurm whether it would accept a script (``sbatch --test-only``), without submitting.

    Returns:
        Slurm's answer (``Job ... to start at ... on nodes ...``).

    Raises:
        SlurmError: With Slurm's reason when it would refuse the job (unknown partition, more
            CPUs or memory than any node has, ...).
    """
    done = _run([_slurm_command("sbatch"), "--test-only", str(script)])
    answer = (done.stderr.strip() + "\n" + done.stdout.strip()).strip()
    if done.returncode != 0:
        raise SlurmError(f"Slurm would refuse {script}: {answer}")
    return answer


def queued_tasks(ids: Sequence[str]) -> dict[int, str] | None:
    """The array tasks of these jobs that are still in the queue: index -> Slurm state.

    Returns:
        ``{1: "PENDING", 3: "RUNNING"}``; an empty dict when none is queued; None when the queue
        cannot be asked (no ``squeue`` here, or the controller does not answer).
    """
    if not ids:
        return {}
    squeue = shutil.which("squeue")
    if not squeue:
        return None
    try:
        done = _run([squeue, "-h", "-r", "-j", ",".join(ids), "-o", "%F|%K|%T"], timeout=30)
    except SlurmError:
        return None
    if done.returncode != 0:
        return {} if "Invalid job id" in done.stderr else None
    tasks: dict[int, str] = {}
    for line in done.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3 and parts[1].isdigit():
            tasks[int(parts[1])] = parts[2]
    return tasks


def active_jobs(ids: Sequence[str]) -> list[str]:
    """The jobs (or array tasks, as ``123_4``) among ``ids`` that are still queued or running.

    Raises:
        SlurmError: If squeue is missing or the controller does not answer.
    """
    if not ids:
        return []
    done = _run(
        [_slurm_command("squeue"), "-h", "-r", "-j", ",".join(ids), "-o", "%i|%T"], timeout=30
    )
    if done.returncode != 0:
        if "Invalid job id" in done.stderr:
            return []
        raise SlurmError(f"squeue failed: {done.stderr.strip()}")
    return [
        line.split("|")[0] for line in done.stdout.split() if line.split("|")[-1] in ACTIVE_STATES
    ]


def wait_for_jobs(ids: Sequence[str], *, timeout: float = 3600.0, poll: float = 2.0) -> None:
    """Waits until none of these jobs is queued or running.

    Raises:
        TimeoutError: If some are still there after ``timeout`` seconds (naming them).
        SlurmError: If the queue cannot be asked.
    """
    deadline = time.monotonic() + timeout
    while True:
        left = active_jobs(ids)
        if not left:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"Still queued or running after {timeout:.0f} s: {', '.join(left)}.")
        time.sleep(poll)


def describe_resources(resources: Resources) -> str:
    """One line: partition, GPUs, CPUs, memory, time."""
    gpus = f"{resources.gpus} GPU{'s' if resources.gpus != 1 else ''}" + (
        f" ({resources.gpu_type})" if resources.gpu_type else ""
    )
    parts = [
        f"partition {resources.partition or '(default)'}", gpus, f"{resources.cpus} CPUs",
        f"mem {resources.mem or '(default)'}", f"time {resources.time or '(default)'}",
    ]  # fmt: skip
    if resources.account:
        parts.append(f"account {resources.account}")
    return ", ".join(parts)
