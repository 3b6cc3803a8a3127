"""``tcv doctor``: where the course runs, what it has, and how to fix what is missing.

:func:`runtime_check` is the part every notebook's set-up cell runs after installing: it
compares Python, PyTorch and CUDA, NumPy, Pillow and Ultralytics with the versions the course
was tested with (``resources/tested_with.json``) and says in one line what differs and whether
the runtime must be restarted (Colab keeps the NumPy or Pillow it imported before an upgrade)::

    from tcv_helpers.doctor import runtime_check

    print(runtime_check().line())
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from tcv_helpers.config import resolve_profile
from tcv_helpers.env import detect_platform, gpu_info
from tcv_helpers.io import atomic_write_json

OK, INFO, WARN, FAIL = "ok", "info", "warn", "fail"
ASSETS_URL_ENV = "TCV_ASSETS_URL"  # read by tcv_helpers.data.hub (a stage: not imported here)
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

#: The versions the course was last tested with (refresh with :func:`write_tested_with`).
TESTED_WITH_FILE = Path(__file__).resolve().parent / "resources" / "tested_with.json"
#: What :func:`runtime_check` compares, in display order: key of ``tested_with.json`` -> name.
RUNTIME_NAMES = {
    "python": "Python",
    "torch": "torch",
    "cuda": "CUDA",
    "numpy": "NumPy",
    "pillow": "Pillow",
    "ultralytics": "Ultralytics",
}
#: Compared on every part of the version; the others on major.minor.
EXACT_VERSIONS = frozenset({"ultralytics"})
#: Distributions a kernel may have imported before the set-up cell upgraded them, with their
#: module and display name (pip cannot swap a module that a running Python has loaded).
RESTART_WATCH = {
    "numpy": ("numpy", "NumPy"),
    "pillow": ("PIL", "Pillow"),
    "torch": ("torch", "torch"),
    "torchvision": ("torchvision", "torchvision"),
    "ultralytics": ("ultralytics", "Ultralytics"),
    "pandas": ("pandas", "pandas"),
    "matplotlib": ("matplotlib", "Matplotlib"),
}
#: What the runtime line tells a learner to do after an upgrade under a running kernel.
RESTART_ADVICE = "restart the runtime (Colab: Runtime > Restart session) and run the cells again"
#: What it tells a learner whose packages are outside the course's pins.
REINSTALL_ADVICE = "install the course's packages again (on Colab: run the set-up cell again)"
#: The Detectron2 commit the course is tested with (CI builds it from ../shared/vendor); it is on
#: no package registry, so users install it from its repository at that commit.
DETECTRON2_COMMIT = "02b5c4e295e990042a714712c21dc79b731e8833"
DETECTRON2_SOURCE = f"git+https://github.com/facebookresearch/detectron2.git@{DETECTRON2_COMMIT}"
DETECTRON2_INSTALL_HINT = (
    "install it from source: pip install 'setuptools<81' wheel ninja && pip install "
    f"--no-build-isolation --use-pep517 '{DETECTRON2_SOURCE}' (README, Detectron2)"
)
_CUDA_REQUIREMENT = re.compile(r"^(cuda-toolkit|nvidia-cuda-runtime(-cu\d+)?)$")


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
    mirror = environ.get(ASSETS_URL_ENV, "").strip()
    local = mirror and "://" not in mirror
    missing = bool(local) and not Path(mirror).expanduser().is_dir()
    checks.append(
        Check(
            "asset hub",
            WARN if missing else OK,
            (f"{ASSETS_URL_ENV}={mirror}" + (" does not exist" if missing else ""))
            if mirror
            else "the course's GitHub release (set TCV_ASSETS_URL for a mirror)",
            f"unset {ASSETS_URL_ENV} or point it at the mirror's folder or URL" if missing else "",
        )
    )
    return checks


@dataclass(frozen=True)
class RuntimeCheck:
    """How this runtime compares with the versions the course was tested with.

    Attributes:
        versions: ``(name, version)`` of each compared package as found, in display order
            (``"missing"`` when not installed; CUDA ``"none"`` for a CPU-only PyTorch).
        differences: ``(name, tested, found)`` for each package that differs, versions shown
            as compared (major.minor; all of it for Ultralytics).
        outside_pins: Names of the differing packages that are missing or outside the range
            the course's helpers require: those need installing again.
        upgraded: Names of the packages whose version on disk is not the one this process
            imported (pip upgraded them under a running kernel).
    """

    versions: tuple[tuple[str, str], ...]
    differences: tuple[tuple[str, str, str], ...] = ()
    outside_pins: tuple[str, ...] = ()
    upgraded: tuple[str, ...] = ()

    @property
    def restart_needed(self) -> bool:
        """True when a package was upgraded after it was imported: only a restart loads it."""
        return bool(self.upgraded)

    def line(self) -> str:
        """One line for the set-up cell and ``tcv doctor``: what differs, and what to do.

        Returns:
            For example ``"Differs from the tested versions: Python 3.12 (tested 3.11);
            these usually work."``.
        """
        if not self.differences:
            listing = ", ".join(f"{name} {version}" for name, version in self.versions)
            if self.upgraded:
                lead = "Installed versions match the course's tested ones"
            else:
                lead = "Runtime matches the course's tested versions"
            sentences = [f"{lead} ({listing})."]
        else:
            found = ", ".join(f"{n} {have} (tested {want})" for n, want, have in self.differences)
            if self.outside_pins:
                verb = "is" if len(self.outside_pins) == 1 else "are"
                advice = f"{_and(self.outside_pins)} {verb} outside the course's pins: "
                advice += f"{REINSTALL_ADVICE}."
            else:
                advice = "these usually work."
            sentences = [f"Differs from the tested versions: {found}; {advice}"]
        if self.upgraded:
            was, it = ("was", "it was") if len(self.upgraded) == 1 else ("were", "they were")
            sentences.append(
                f"{_and(self.upgraded)} {was} upgraded after {it} imported: {RESTART_ADVICE}."
            )
        return " ".join(sentences)


def _and(names: Iterable[str]) -> str:
    """``"a"``, ``"a and b"``, ``"a, b and c"``."""
    items = list(names)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _public(version: str) -> str:
    """A version without its local part: ``2.4.0+cu121`` -> ``2.4.0``."""
    try:
        return Version(version).public
    except InvalidVersion:
        return version.split("+", 1)[0].strip()


def _compared(key: str, version: str) -> str:
    """The part of a version that :func:`runtime_check` compares (see :data:`EXACT_VERSIONS`)."""
    public = _public(version)
    if key in EXACT_VERSIONS:
        return public
    try:
        release = Version(public).release
    except InvalidVersion:
        return ".".join(public.split(".")[:2])
    return ".".join(str(part) for part in release[:2])


def _dist_version(dist: str) -> str | None:
    """The installed version of a distribution (from its metadata on disk), or None."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def tested_versions(path: str | os.PathLike | None = None) -> dict[str, str | None]:
    """The versions the course was tested with (``resources/tested_with.json``).

    Args:
        path: Another file of the same form (default: :data:`TESTED_WITH_FILE`).

    Returns:
        One version string per key of :data:`RUNTIME_NAMES`; ``cuda`` is None when the course
        was tested with a CPU-only PyTorch.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If it is not JSON, or a field is missing, unknown or not a version (the
            message names the file and the field).
    """
    file = Path(path) if path is not None else TESTED_WITH_FILE
    if not file.is_file():
        raise FileNotFoundError(f"Tested-versions file {str(file)!r} does not exist.")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{file}: not valid JSON ({exc}).") from None
    if not isinstance(data, dict):
        raise ValueError(f"{file}: expected an object with the fields {', '.join(RUNTIME_NAMES)}.")
    unknown = sorted(str(key) for key in data if key not in RUNTIME_NAMES)
    if unknown:
        raise ValueError(
            f"{file}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(RUNTIME_NAMES)}."
        )
    versions: dict[str, str | None] = {}
    for key in RUNTIME_NAMES:
        if key not in data:
            raise ValueError(f"{file}: field {key!r} is missing.")
        value = data[key]
        if value is None and key == "cuda":
            versions[key] = None
            continue
        try:
            Version(value)
        except (InvalidVersion, TypeError):
            wanted = "a version string" + (
                ", or null for a CPU-only PyTorch" if key == "cuda" else ""
            )
            raise ValueError(f"{file}: field {key!r}: {value!r} is not {wanted}.") from None
        versions[key] = value
    return versions


def _torch_cuda(*, import_torch: bool) -> tuple[bool, str | None]:
    """The CUDA version PyTorch was built with, as ``(known, version)``.

    Read from ``torch.version.cuda`` when PyTorch is imported already (or may be imported),
    else from the metadata on disk: the CUDA runtime a PyTorch wheel requires, or the local part
    of its version (``+cu126``, ``+cpu``). ``version`` is None for a CPU-only build or no
    PyTorch; ``known`` is False when the metadata does not tell.
    """
    module = sys.modules.get("torch")
    if module is None and import_torch and _dist_version("torch") is not None:
        try:
            import torch as module
        except (ImportError, OSError):  # a broken install: the PyTorch check reports it
            module = None
    version = getattr(module, "version", None)
    if version is not None:
        return True, getattr(version, "cuda", None)
    installed = _dist_version("torch")
    if installed is None:
        return True, None
    for line in metadata.requires("torch") or []:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if not _CUDA_REQUIREMENT.match(req.name.lower()):
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        for spec in req.specifier:
            if spec.operator in ("==", "===") and "*" not in spec.version:
                return True, _compared("cuda", spec.version)
    try:
        local = Version(installed).local or ""
    except InvalidVersion:
        local = ""
    if local == "cpu":
        return True, None
    digits = local.removeprefix("cu")
    if local.startswith("cu") and digits.isdigit() and len(digits) >= 2:
        return True, f"{int(digits[:-1])}.{digits[-1]}"
    return False, None


def installed_versions(*, cuda: bool = False) -> dict[str, str | None]:
    """The versions of this environment, in the form of :func:`tested_versions`.

    Packages are read from their metadata on disk, so nothing is imported.

    Args:
        cuda: Import PyTorch (when it is not imported yet) to read the CUDA version it was
            built with. Without it the CUDA version comes from PyTorch's metadata, and is left
            out when the metadata does not tell.

    Returns:
        Versions by key of :data:`RUNTIME_NAMES` (None: not installed; ``cuda`` None: a
        CPU-only PyTorch); ``cuda`` is absent when it could not be told.
    """
    found: dict[str, str | None] = {"python": platform.python_version()}
    for key in RUNTIME_NAMES:
        if key not in ("python", "cuda"):
            found[key] = _dist_version(key)
    known, version = _torch_cuda(import_torch=cuda)
    if known:
        found["cuda"] = version
    return {key: found[key] for key in RUNTIME_NAMES if key in found}


def upgraded_since_import(
    watch: Mapping[str, tuple[str, str]] = RESTART_WATCH,
) -> tuple[str, ...]:
    """Packages this process imported whose version on disk has changed since.

    Args:
        watch: Distribution -> ``(module, display name)``; see :data:`RESTART_WATCH`.

    Returns:
        The display names of the packages that need a restart to load their new version.
    """
    stale = []
    for dist, (module_name, label) in watch.items():
        loaded = getattr(sys.modules.get(module_name), "__version__", None)
        if not isinstance(loaded, str):
            continue  # not imported (or no version to compare): nothing is stale
        on_disk = _dist_version(dist)
        if on_disk is not None and _public(on_disk) != _public(loaded):
            stale.append(label)
    return tuple(stale)


def course_pins(dist: str = "tcv_helpers") -> dict[str, str]:
    """The version ranges the course's helpers require for the packages compared.

    Args:
        dist: The distribution whose requirements are read.

    Returns:
        Key of :data:`RUNTIME_NAMES` -> specifier (``"python"`` from ``Requires-Python``);
        empty when ``dist`` is not installed.
    """
    try:
        requires = metadata.requires(dist) or []
        python = metadata.metadata(dist).get("Requires-Python")
    except metadata.PackageNotFoundError:
        return {}
    pins = {"python": str(python)} if python else {}
    for line in requires:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = req.name.lower()
        if name in RUNTIME_NAMES and req.specifier:
            pins[name] = str(req.specifier)
    return pins


def _within(version: str, pin: str) -> bool:
    try:
        return SpecifierSet(pin).contains(version, prereleases=True)
    except (InvalidSpecifier, InvalidVersion):
        return True  # a range it cannot read is no reason to alarm a learner


def compare_versions(
    tested: Mapping[str, str | None],
    found: Mapping[str, str | None],
    *,
    pins: Mapping[str, str] | None = None,
    upgraded: Iterable[str] = (),
) -> RuntimeCheck:
    """Compares found versions with tested ones (the pure part of :func:`runtime_check`).

    Args:
        tested: As :func:`tested_versions` returns.
        found: As :func:`installed_versions` returns; a key left out is not compared.
        pins: As :func:`course_pins` returns; a differing version outside its pin (or a
            missing package) is listed in :attr:`RuntimeCheck.outside_pins`.
        upgraded: Display names of packages upgraded after import.

    Returns:
        The comparison.
    """
    versions, differences, outside = [], [], []
    for key, name in RUNTIME_NAMES.items():
        if key not in found or key not in tested:
            continue
        want, have = tested[key], found[key]
        none = "none" if key == "cuda" else "missing"
        want_shown = _compared(key, want) if want else none
        have_shown = _compared(key, have) if have else none
        versions.append((name, have_shown))
        if want_shown == have_shown:
            continue
        differences.append((name, want_shown, have_shown))
        pin = (pins or {}).get(key)
        if (have is None and key != "cuda") or (have and pin and not _within(have, pin)):
            outside.append(name)
    return RuntimeCheck(tuple(versions), tuple(differences), tuple(outside), tuple(upgraded))


def runtime_check(*, cuda: bool = False) -> RuntimeCheck:
    """Compares Python, PyTorch and CUDA, NumPy, Pillow and Ultralytics with the tested versions.

    Cheap enough for every notebook's set-up cell: it reads package metadata and imports
    nothing (unless ``cuda``). ``print(runtime_check().line())`` says in one line what differs
    and whether the runtime must be restarted.

    Args:
        cuda: Import PyTorch to read its exact CUDA version (see :func:`installed_versions`).

    Returns:
        The comparison; :meth:`RuntimeCheck.line` is the sentence to show.

    Example:
        >>> print(runtime_check().line())  # doctest: +SKIP
        Runtime matches the course's tested versions (Python 3.11, torch 2.14, ...).
    """
    return compare_versions(
        tested_versions(),
        installed_versions(cuda=cuda),
        pins=course_pins(),
        upgraded=upgraded_since_import(),
    )


def check_runtime(*, cuda: bool = True) -> Check:
    """The ``tcv doctor`` row of :func:`runtime_check`: a warning when something needs doing."""
    result = runtime_check(cuda=cuda)
    if result.restart_needed or result.outside_pins:
        status = WARN
    else:
        status = INFO if result.differences else OK
    return Check("tested versions", status, result.line())


def write_tested_with(path: str | os.PathLike | None = None) -> Path:
    """Records this environment's versions as the tested ones (after the course passed here).

    Args:
        path: Where to write (default: :data:`TESTED_WITH_FILE`, the packaged file).

    Returns:
        The file written.
    """
    return atomic_write_json(
        path if path is not None else TESTED_WITH_FILE, installed_versions(cuda=True)
    )


def check_detectron2() -> Check:
    """Detectron2 (optional: the Faster R-CNN of notebooks 05-06), found without importing it."""
    from importlib.util import find_spec

    if find_spec("detectron2") is None:
        return Check(
            "Detectron2",
            INFO,
            "not installed (optional: notebooks 05-06 then train and score YOLO only)",
            DETECTRON2_INSTALL_HINT,
        )
    version = _dist_version("detectron2") or "unknown version"
    if find_spec("pkg_resources") is None:  # its model zoo imports it; setuptools 81 removed it
        return Check(
            "Detectron2",
            WARN,
            f"detectron2 {version} is installed but its model zoo cannot import pkg_resources",
            "pip install 'setuptools<81'",
        )
    return Check(
        "Detectron2", OK, f"detectron2 {version} (the course tests commit {DETECTRON2_COMMIT[:7]})"
    )


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
    checks.append(check_runtime())
    checks.append(check_detectron2())
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
