"""One place pins versions (pyproject.toml); the Colab, Binder and conda files must agree with it."""

import subprocess
import sys
from pathlib import Path

import tomllib
import yaml
from packaging.requirements import Requirement

from tests.conftest import ROOT

COLAB_SHIPS = {"torch", "torchvision"}
NOT_ON_COLAB = {"jupyterlab"}  # Colab is its own notebook front end


def _pyproject_deps() -> dict[str, str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return _specs(data["project"]["dependencies"])


def _specs(lines) -> dict[str, str]:
    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        req = Requirement(line)
        assert req.name.lower() not in out, f"{req.name} listed twice"
        out[req.name.lower()] = str(req.specifier)
    return out


def _requirements(path) -> dict[str, str]:
    return _specs(path.read_text().splitlines())


def test_every_dependency_has_a_version_constraint():
    for name, spec in _pyproject_deps().items():
        assert spec, f"{name} has no version constraint in pyproject.toml"


def test_colab_requirements_match_without_torch():
    deps = _pyproject_deps()
    colab = _requirements(ROOT / "requirements-colab.txt")
    assert not COLAB_SHIPS & set(colab), "Colab's own torch/torchvision must never be reinstalled"
    assert not NOT_ON_COLAB & set(colab), "Colab has its own notebook UI: no JupyterLab there"
    assert colab == {k: v for k, v in deps.items() if k not in COLAB_SHIPS | NOT_ON_COLAB}


def test_jupyterlab_is_pinned_for_the_colab_free_set_ups():
    """After the README's set-up (and in conda and Binder) `jupyter lab` opens the course."""
    assert _pyproject_deps()["jupyterlab"].startswith("==")
    assert "jupyterlab" in _requirements(ROOT / "binder" / "requirements.txt")


def test_jupyter_lab_runs_in_this_environment():
    """The environment the README's set-up made has a working `jupyter lab` command."""
    jupyter = Path(sys.executable).parent / "jupyter"
    result = subprocess.run(
        [str(jupyter), "lab", "--version"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == _pyproject_deps()["jupyterlab"].removeprefix("==")


def test_binder_requirements_match():
    assert _requirements(ROOT / "binder" / "requirements.txt") == _pyproject_deps()


def test_conda_environment_matches():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_lists = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_lists) == 1
    assert _specs(pip_lists[0]) == _pyproject_deps()
    assert "-e .[dev]" in pip_lists[0], "the conda environment installs the helpers too"
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert Requirement(f"python{requires}").specifier.contains(python.split("=")[1] + ".0")


def test_dev_tools_used_by_pre_commit_are_pinned():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    dev = _specs(data["project"]["optional-dependencies"]["dev"])
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    for hook in config["repos"][0]["hooks"]:
        tool = hook["entry"].split()[0]
        package = {
            "check-added-large-files": "pre-commit-hooks",
            "detect-private-key": "pre-commit-hooks",
            "tcv": None,
        }.get(tool, tool)
        if package:
            assert dev.get(package, "").startswith("=="), (
                f"{package} (hook {hook['id']}) is not pinned"
            )
