import pytest

from tcv_helpers import env
from tcv_helpers.env import GpuInfo, detect_platform


@pytest.mark.parametrize(
    ("environ", "host", "expected"),
    [
        ({"COLAB_RELEASE_TAG": "release-colab_20261101"}, "x", "colab"),
        ({"SLURM_JOB_ID": "123"}, "node17.cluster", "slurm"),
        ({"BINDER_REPO_URL": "https://github.com/o/r"}, "jupyter-o-r", "binder"),
        ({}, "tcv-vm.cis230.projects.jetstream-cloud.org", "jetstream2"),
        ({}, "my-laptop.local", "local"),
        ({"TCV_PLATFORM": "slurm"}, "my-laptop", "slurm"),
        ({"SLURM_JOB_ID": "1", "COLAB_GPU": "1"}, "x", "colab"),
    ],
)
def test_detect_platform(environ, host, expected):
    assert detect_platform(environ, host) == expected


def test_unknown_forced_platform():
    with pytest.raises(ValueError, match="TCV_PLATFORM"):
        detect_platform({"TCV_PLATFORM": "mars"}, "x")


def test_gpu_description():
    none = GpuInfo(False, 0, (), (), None, None, "none")
    assert "no NVIDIA GPU" in none.describe()
    two = GpuInfo(True, 2, ("A100", "A100"), (40.0, 40.0), "12.4", "2.5.0", "torch")
    assert two.describe().startswith("2 GPU(s): A100 (40 GiB), A100 (40 GiB)")


def test_gpu_info_without_torch_or_driver(monkeypatch):
    env.gpu_info.cache_clear()
    monkeypatch.setattr(env, "_torch_version", lambda: None)
    monkeypatch.setattr(env.shutil, "which", lambda _name: None)
    try:
        info = env.gpu_info()
        assert not info.available and info.source == "none"
    finally:
        env.gpu_info.cache_clear()


def test_gpu_info_from_nvidia_smi(monkeypatch, tmp_path):
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'Tesla T4, 15360, 535.104'\n")
    smi.chmod(0o755)
    env.gpu_info.cache_clear()
    monkeypatch.setattr(env, "_torch_version", lambda: None)
    monkeypatch.setattr(env.shutil, "which", lambda _name: str(smi))
    try:
        info = env.gpu_info()
        assert info.available and info.names == ("Tesla T4",) and info.memory_gb == (15.0,)
    finally:
        env.gpu_info.cache_clear()


def test_stop_process_terminates_then_kills():
    import subprocess
    import sys

    from tcv_helpers.env import stop_process

    polite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    stop_process(polite, timeout=10)
    assert polite.returncode == -15  # SIGTERM was enough
    stubborn = subprocess.Popen(
        [sys.executable, "-c",
         "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
         "print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert stubborn.stdout.readline().strip() == "ready"
    stop_process(stubborn, timeout=0.5)
    assert stubborn.returncode == -9  # killed after the timeout
    stop_process(stubborn)  # already gone: nothing to do
