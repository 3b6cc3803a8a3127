"""One place pins versions (pyproject.toml); the Colab, Binder and conda files must agree with it."""

import tomllib
import yaml
from packaging.requirements import Requirement

from tests.conftest import ROOT

COLAB_SHIPS = {"torch", "torchvision"}


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
    assert colab == {k: v for k, v in deps.items() if k not in COLAB_SHIPS}


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
