"""Where the course is running: Colab, a Slurm job, Binder, Jetstream2 or a plain machine; GPUs."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache

PLATFORM_ENV = "TCV_PLATFORM"
PLATFORMS = ("colab", "slurm", "binder", "jetstream2", "local")


@dataclass(frozen=True)
class Availability:
    """Whether an optional part (Detectron2, Prometheus, ...) can run here, and why in one sentence.

    It is true when the part is available, so ``if detectron2_status():`` reads as it should.

    Attributes:
        available: The part can be used here.
        message: One sentence: its version, or what is missing and how to install it.
    """

    available: bool
    message: str

    def __bool__(self) -> bool:
        return self.available


def detect_platform(environ: dict[str, str] | None = None, hostname: str | None = None) -> str:
    """Tells where this Python process runs.

    Checked in this order: ``TCV_PLATFORM`` (an explicit override), Google Colab, a Slurm job,
    Binder, a Jetstream2 VM, else ``"local"``.

    Args:
        environ: Environment to inspect (default: ``os.environ``).
        hostname: Fully qualified host name (default: this machine's).

    Returns:
        One of :data:`PLATFORMS`.

    Raises:
        ValueError: If ``TCV_PLATFORM`` names an unknown platform.
    """
    env = os.environ if environ is None else environ
    forced = env.get(PLATFORM_ENV, "").strip().lower()
    if forced:
        if forced not in PLATFORMS:
            raise ValueError(f"{PLATFORM_ENV}={forced!r} is not one of {', '.join(PLATFORMS)}.")
        return forced
    if (
        "COLAB_RELEASE_TAG" in env
        or "COLAB_GPU" in env
        or (environ is None and "google.colab" in sys.modules)
    ):
        return "colab"
    if "SLURM_JOB_ID" in env:
        return "slurm"
    if "BINDER_REPO_URL" in env or "BINDER_LAUNCH_HOST" in env or "BINDER_SERVICE_HOST" in env:
        return "binder"
    host = (hostname if hostname is not None else socket.getfqdn()).lower()
    if host.endswith("jetstream-cloud.org") or "jetstream2" in host:
        return "jetstream2"
    return "local"


@dataclass(frozen=True)
class GpuInfo:
    """What is known about the GPUs of this machine.

    Attributes:
        available: True when a CUDA GPU can be used.
        count: Number of GPUs.
        names: Their names.
        memory_gb: Memory of each, in GiB.
        cuda: CUDA version PyTorch was built with (or the driver's, from nvidia-smi).
        torch: PyTorch version, or None when PyTorch is not installed.
        source: How this was found out (``"torch"``, ``"nvidia-smi"`` or ``"none"``).
    """

    available: bool
    count: int
    names: tuple[str, ...]
    memory_gb: tuple[float, ...]
    cuda: str | None
    torch: str | None
    source: str

    def describe(self) -> str:
        """One line: GPU names and memory, or why there is none."""
        if not self.available:
            why = "PyTorch sees no CUDA device" if self.torch else "no NVIDIA GPU found"
            return f"no GPU ({why}); the course runs on the CPU in the smoke profile"
        gpus = ", ".join(
            f"{n} ({m:.0f} GiB)" for n, m in zip(self.names, self.memory_gb, strict=True)
        )
        return f"{self.count} GPU(s): {gpus}; CUDA {self.cuda or 'unknown'}"


def usable_cores() -> int:
    """CPU cores this process may run on: its affinity where the OS tells (a Slurm job or a
    container may get fewer than the machine has), else every core."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def use_every_core() -> None:
    """Lets PyTorch keep every core this process may use after Ultralytics picks a device.

    Ultralytics resets PyTorch to ``NUM_THREADS`` threads (the CPU count minus one, left for its
    data-loading workers) whenever it selects the CPU, at every ``predict`` and ``val``: on a
    2-core machine (a laptop VM, Colab's CPU runtime) that is one thread, for its own inference
    and for all PyTorch work after it in the process (measured: Detectron2 trained 1.6x
    slower after one YOLO validation). The course loads data in the main process, so PyTorch
    gets every core. Idempotent; called by
    :func:`tcv_helpers.model.predict.load_yolo` and ``quiet_ultralytics``.
    """
    from ultralytics.utils import torch_utils

    torch_utils.NUM_THREADS = usable_cores()


def stop_process(process: subprocess.Popen, *, timeout: float = 15.0) -> None:
    """Stops a child process: SIGTERM, then SIGKILL if it has not exited within ``timeout``.

    Args:
        process: The child (a no-op if it already exited).
        timeout: Seconds it may take to shut down cleanly.
    """
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _torch_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("torch")
    except Exception:
        return None


@lru_cache(maxsize=1)
def gpu_info() -> GpuInfo:
    """Finds the GPUs, through PyTorch when installed, else through ``nvidia-smi``."""
    torch_version = _torch_version()
    if torch_version:
        try:
            import torch

            if torch.cuda.is_available():
                count = torch.cuda.device_count()
                props = [torch.cuda.get_device_properties(i) for i in range(count)]
                return GpuInfo(
                    True,
                    count,
                    tuple(p.name for p in props),
                    tuple(p.total_memory / 2**30 for p in props),
                    torch.version.cuda,
                    torch_version,
                    "torch",
                )
            return GpuInfo(False, 0, (), (), torch.version.cuda, torch_version, "torch")
        except Exception:
            pass
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [
                    smi,
                    "--query-gpu=name,memory.total,driver_version",
                    "--format=csv,noheader,nounits",
                ],
                capture_output=True,
                text=True,
                timeout=20,
                check=True,
            ).stdout
            rows = [
                [c.strip() for c in line.split(",")] for line in out.strip().splitlines() if line
            ]
            if rows:
                return GpuInfo(
                    True,
                    len(rows),
                    tuple(r[0] for r in rows),
                    tuple(float(r[1]) / 1024 for r in rows),
                    None,
                    torch_version,
                    "nvidia-smi",
                )
        except (subprocess.SubprocessError, OSError, ValueError, IndexError):
            pass
    return GpuInfo(False, 0, (), (), None, torch_version, "none")


def gpu_available() -> bool:
    """True when a CUDA GPU can be used by this process."""
    return gpu_info().available
