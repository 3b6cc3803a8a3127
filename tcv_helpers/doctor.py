"""``tcv doctor``: where the course runs, what it has, and how to fix what is missing."""

from __future__ import annotations

import os
import platform
import shutil
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from tcv_helpers.config import SAMPLE_DATA_ENV, resolve_profile
from tcv_helpers.env import detect_platform, gpu_info

OK, INFO, WARN, FAIL = "ok", "info", "warn", "fail"
MIN_PYTHON = (3, 10)
#: Free disk (GiB) that each profile needs in the workspace's file system.
DISK_NEEDED_GB = {"smoke": 2.0, "workshop": 15.0, "full": 50.0}
MIN_MEMORY_GB = 4.0

INSTALL_HINT = {
    "colab": "run the notebook's first (set-up) cell",
    "binder": "rebuild the Binder image (binder/requirements.txt)",
    "slurm": "activate the course environment in your job script: conda activate tcv",
    "jetstream2": 'pip install -e ".[dev]" inside the course environment',
    "local": 'pip install -e ".[dev]" inside the course environment',
}
TORCH_HINT = {
    "colab": "Colab ships PyTorch; do not reinstall it (Runtime > Disconnect and delete runtime to reset)",
    "binder": "binder/requirements.txt installs the CPU build of PyTorch",
    "slurm": "load the site's PyTorch module or: pip install 'torch>=2.2' 'torchvision>=0.17'",
    "jetstream2": "pip install 'torch>=2.2' 'torchvision>=0.17' (the CUDA build matches Jetstream2's drivers)",
    "local": "pip install 'torch>=2.2' 'torchvision>=0.17' (see pytorch.org for a CPU-only build)",
}


@dataclass(frozen=True)
class Check:
    """One finding of ``tcv doctor``.

    Attributes:
        name: What was checked.
        status: ``ok``, ``info``, ``warn`` or ``fail``.
        detail: What was found.
        fix: What to do about it (empty when nothing is to be done).
    """

    name: str
    status: str
    detail: str
    fix: str = ""


def _gib(n_bytes: float) -> float:
    return n_bytes / 2**30


def check_packages(dist: str = "tcv_helpers") -> list[Check]:
    """Checks that every dependency of ``dist`` is installed in a version it accepts."""
    where = detect_platform()
    try:
        requires = metadata.requires(dist) or []
    except metadata.PackageNotFoundError:
        return [Check("course helpers", FAIL, f"{dist} is not installed", INSTALL_HINT[where])]
    checks = [Check("course helpers", OK, f"{dist} {metadata.version(dist)}")]
    problems, fine = [], []
    for line in requires:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        try:
            installed = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            problems.append(f"{req.name} missing (wants {req.specifier})")
            continue
        if req.specifier and not req.specifier.contains(installed, prereleases=True):
            problems.append(f"{req.name} {installed} (wants {req.specifier})")
        else:
            fine.append(f"{req.name} {installed}")
    if problems:
        checks.append(Check("pinned packages", FAIL, "; ".join(problems), INSTALL_HINT[where]))
    else:
        checks.append(Check("pinned packages", OK, f"{len(fine)} packages as pinned"))
    return checks


def check_gpu(where: str) -> list[Check]:
    """PyTorch and the GPU, with the fix that fits the platform."""
    info = gpu_info()
    checks = []
    if info.torch is None:
        checks.append(
            Check("PyTorch", WARN, "not installed (needed from notebook 04 on)", TORCH_HINT[where])
        )
    else:
        checks.append(Check("PyTorch", OK, f"torch {info.torch}, CUDA build {info.cuda or 'none'}"))
    if info.available:
        checks.append(Check("GPU", OK, info.describe()))
    elif where == "colab":
        checks.append(
            Check(
                "GPU", WARN, info.describe(), "Runtime > Change runtime type > T4 GPU, then re-run"
            )
        )
    elif shutil.which("nvidia-smi") and info.torch:
        checks.append(
            Check(
                "GPU",
                WARN,
                "nvidia-smi sees a GPU but PyTorch cannot use it (a CPU-only build?)",
                "reinstall PyTorch with the CUDA build that matches the driver (see pytorch.org)",
            )
        )
    elif where == "slurm":
        checks.append(
            Check(
                "GPU",
                INFO,
                info.describe(),
                "ask Slurm for one: #SBATCH --gres=gpu:1 (or --gpus=1)",
            )
        )
    else:
        checks.append(Check("GPU", INFO, info.describe()))
    return checks


def check_resources(workdir: Path, profile: str) -> list[Check]:
    """Free disk where the workspace lives, and memory, against what the profile needs."""
    import psutil

    probe = workdir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = _gib(shutil.disk_usage(probe).free)
    needed = DISK_NEEDED_GB[profile]
    disk = (
        Check("disk", OK, f"{free:.1f} GiB free at {probe}")
        if free >= needed
        else Check(
            "disk",
            FAIL,
            f"{free:.1f} GiB free at {probe}; the {profile} profile needs {needed:.0f} GiB",
            "free space, or point WORKDIR at a larger disk (on HPC: your scratch file system)",
        )
    )
    total = _gib(psutil.virtual_memory().total)
    memory = (
        Check("memory", OK, f"{total:.1f} GiB")
        if total >= MIN_MEMORY_GB
        else Check(
            "memory", WARN, f"{total:.1f} GiB", "close other programs or use the smoke profile"
        )
    )
    return [disk, memory]


def check_kernel() -> Check:
    """The ``python3`` Jupyter kernel that papermill and nbval start."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        specs = KernelSpecManager().find_kernel_specs()
    except Exception as exc:
        return Check("Jupyter kernel", FAIL, f"cannot list kernels: {exc}", "pip install ipykernel")
    if "python3" not in specs:
        return Check(
            "Jupyter kernel",
            FAIL,
            "no python3 kernel",
            "python -m ipykernel install --user --name python3",
        )
    return Check("Jupyter kernel", OK, f"python3 kernel at {specs['python3']}")


def check_session(where: str, environ: Mapping[str, str]) -> list[Check]:
    """Long runs over SSH without tmux die with the laptop; secrets present or not (never shown)."""
    checks = []
    over_ssh = "SSH_CONNECTION" in environ
    in_multiplexer = "TMUX" in environ or "STY" in environ
    if where in ("jetstream2", "local") and over_ssh and not in_multiplexer:
        checks.append(
            Check(
                "long runs",
                WARN,
                "logged in over SSH without tmux or screen: closing the laptop stops the run",
                "tmux new -s tcv (re-attach: tmux attach -t tcv), or: nohup tcv run > tcv.log 2>&1 &",
            )
        )
    key = "ROBOFLOW_API_KEY"
    has_key = bool(environ.get(key))
    checks.append(
        Check(
            "Roboflow key",
            OK if has_key else INFO,
            "set (value not shown)" if has_key else "not set: the embedded synthetic data is used",
            "" if has_key else f"export {key}=... (on Colab: the key icon, secret {key})",
        )
    )
    sample = environ.get(SAMPLE_DATA_ENV, "")
    if sample:
        exists = Path(sample).expanduser().is_dir()
        checks.append(
            Check(
                "sample data",
                OK if exists else WARN,
                f"{SAMPLE_DATA_ENV}={sample}" + ("" if exists else " does not exist"),
                "" if exists else f"unset {SAMPLE_DATA_ENV} or point it at the sample data folder",
            )
        )
    return checks


def run_checks(workdir: str | os.PathLike = "workspace", profile: str = "auto") -> list[Check]:
    """Runs every check of ``tcv doctor``.

    Args:
        workdir: The workspace the course will write to (need not exist yet).
        profile: The profile to check disk space for (``auto`` resolves as notebooks do).

    Returns:
        The findings, in display order.
    """
    where = detect_platform()
    resolved = resolve_profile(profile).name
    py = sys.version_info
    checks = [
        Check("platform", INFO, f"{where} ({platform.system()} {platform.machine()})"),
        Check(
            "Python",
            OK if py >= MIN_PYTHON else FAIL,
            platform.python_version(),
            "" if py >= MIN_PYTHON else "use Python 3.10 or newer (environment.yml sets it up)",
        ),
        Check("profile", INFO, f"{resolved} (PROFILE=auto picks it; set TCV_PROFILE to change)"),
    ]
    checks += check_packages()
    checks.append(check_kernel())
    checks += check_gpu(where)
    checks += check_resources(Path(workdir).expanduser().resolve(), resolved)
    checks += check_session(where, os.environ)
    return checks


def format_checks(checks: list[Check]) -> str:
    """A plain-text table of findings, each problem followed by its fix."""
    marks = {OK: "ok  ", INFO: "info", WARN: "WARN", FAIL: "FAIL"}
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"[{marks[c.status]}] {c.name:<{width}}  {c.detail}")
        if c.fix and c.status in (WARN, FAIL, INFO):
            lines.append(f"       {'':<{width}}  fix: {c.fix}")
    failed = sum(c.status == FAIL for c in checks)
    warned = sum(c.status == WARN for c in checks)
    lines.append(
        "All good." if not failed and not warned else f"{failed} problem(s), {warned} warning(s)."
    )
    return "\n".join(lines)


def checks_as_records(checks: list[Check]) -> list[dict[str, str]]:
    """The findings as dictionaries (for a pandas table or JSON)."""
    return [asdict(c) for c in checks]
