"""Where a Slurm job runs and what it asks for: resources, environment activation, site presets.

A site preset (``resources/slurm/*.yaml``: partition, GPUs, CPUs, memory, time, modules or a
conda environment) gives the defaults; every field can be overridden from the command line
(:meth:`Resources.with_overrides`, :func:`resolve_activation`). :class:`JobSettings` gathers
what every job script needs besides what it runs. The scripts themselves are written by
:mod:`tcv_helpers.batch.slurm_scripts`.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from tcv_helpers.io import read_yaml_mapping

PRESETS_DIR = Path(__file__).resolve().parent.parent / "resources" / "slurm"
DEFAULT_PRESET = "generic"
TIME_PATTERN = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")
MEM_PATTERN = re.compile(r"^\d+[KMGTkmgt]?$")
WORD_PATTERN = re.compile(r"^[A-Za-z0-9_.:+-]+$")
PARTITION_PATTERN = re.compile(r"^[A-Za-z0-9_.+-]+(,[A-Za-z0-9_.+-]+)*$")
MODULE_PATTERN = re.compile(r"^[A-Za-z0-9_./+-]+$")
ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: A preset's name: it goes into the header of every script written with the preset.
PRESET_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


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

        if self.partition is not None and not PARTITION_PATTERN.fullmatch(str(self.partition)):
            raise SlurmError(
                f"{label('partition')}: {self.partition!r} is not a partition name (or a comma list)."
            )
        for name in ("account", "qos", "gpu_type"):
            value = getattr(self, name)
            if value is not None and not WORD_PATTERN.fullmatch(str(value)):
                raise SlurmError(
                    f"{label(name)}: {value!r} is not a Slurm name (letters, digits, _ . : + -)."
                )
        if isinstance(self.gpus, bool) or not isinstance(self.gpus, int) or self.gpus < 0:
            raise SlurmError(f"{label('gpus')}: {self.gpus!r} must be a whole number, 0 or more.")
        if isinstance(self.cpus, bool) or not isinstance(self.cpus, int) or self.cpus < 1:
            raise SlurmError(f"{label('cpus')}: {self.cpus!r} must be a whole number, 1 or more.")
        if self.mem is not None and not MEM_PATTERN.fullmatch(str(self.mem)):
            raise SlurmError(f"{label('mem')}: {self.mem!r} must look like 16G, 4000M or 32000.")
        if self.time is not None and not TIME_PATTERN.fullmatch(str(self.time)):
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
            if not MODULE_PATTERN.fullmatch(str(module)):
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
    data = read_yaml_mapping(
        path, error=SlurmError, what="Preset file", holds="a mapping with resources and activation"
    )
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
    name = str(data.get("name") or path.stem)
    if not PRESET_NAME_PATTERN.fullmatch(name):
        raise SlurmError(
            f"Preset {path}: name {name!r} is not a preset name (letters, digits and _ . + -; it "
            "goes into every script's header)."
        )
    description = str(data.get("description") or "")
    if has_control_characters(description):
        raise SlurmError(
            f"Preset {path}: description must be one line of text without control characters "
            "(it goes into every script's header)."
        )
    return Preset(
        name=name, description=description, resources=resources, activation=activation,
        source=path.resolve(),
    )  # fmt: skip


def has_control_characters(text: str) -> bool:
    """True if ``text`` holds a line break or another control character (a script's line ends
    there: what follows would run as a command)."""
    return any(unicodedata.category(c) in {"Cc", "Zl", "Zp"} for c in text)


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
        """Returns itself after checking the job name, the preset's name and the variable names.

        Raises:
            SlurmError: For a malformed job name, preset name or variable name.
        """
        if not WORD_PATTERN.fullmatch(self.job_name):
            raise SlurmError(f"--job-name {self.job_name!r}: use letters, digits and _ . -.")
        if not PRESET_NAME_PATTERN.fullmatch(self.preset):
            raise SlurmError(f"Preset name {self.preset!r}: use letters, digits and _ . + -.")
        for name in self.require_env:
            if not ENV_NAME_PATTERN.fullmatch(name):
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
