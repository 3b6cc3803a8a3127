"""The notebook rules, over every notebook present, and each rule shown to catch its defect."""

import json
import shutil

import pytest
import tomllib

from tcv_helpers.batch.nbcheck import (
    MAX_CODE_LINES,
    check_notebook,
    colab_setup_source,
    repo_info,
    sync_notebook,
)
from tests.conftest import NOTEBOOKS, ROOT

ALL = sorted(NOTEBOOKS.glob("*.ipynb"))


def test_there_are_notebooks():
    names = [p.name for p in ALL]
    assert "00_setup_compute.ipynb" in names and "01_problem_definition.ipynb" in names


@pytest.mark.parametrize("path", ALL, ids=[p.name for p in ALL])
def test_notebook_follows_the_rules(path):
    assert check_notebook(path) == []


def test_repository_url_and_tag_come_from_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    info = repo_info()
    assert info.url == project["urls"]["Repository"]
    assert info.ref == f"v{project['version']}"
    setup = colab_setup_source(info)
    assert info.url in setup and info.ref in setup
    assert "torch" not in setup, "the Colab cell must never reinstall torch"
    assert "--no-deps" in setup and "requirements-colab.txt" in setup


def _cells(nb, kind=None):
    return [c for c in nb["cells"] if kind is None or c["cell_type"] == kind]


def _src(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _find(nb, needle):
    return next(c for c in nb["cells"] if needle in _src(c))


def _set(cell, text):
    cell["source"] = text


def _params(nb):
    return next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))


MUTATIONS = {
    "outputs": (
        lambda nb: _cells(nb, "code")[1].update(
            outputs=[{"output_type": "stream", "name": "stdout", "text": "hi"}], execution_count=3
        ),
        "carries outputs",
    ),
    "no parameters tag": (
        lambda nb: _params(nb)["metadata"].update(tags=[]),
        "tagged 'parameters'",
    ),
    "no PROFILE": (
        lambda nb: _set(_params(nb), _src(_params(nb)).replace("PROFILE =", "PROFILES =")),
        "lacks PROFILE",
    ),
    "non-literal": (
        lambda nb: _set(_params(nb), _src(_params(nb)) + "\nEPOCHS = 2 * 3"),
        "not a literal",
    ),
    "statement": (
        lambda nb: _set(_params(nb), _src(_params(nb)) + "\nprint(PROFILE)"),
        "only `NAME = literal`",
    ),
    "absolute path": (
        lambda nb: _set(
            _find(nb, "## Step 1"), _src(_find(nb, "## Step 1")) + "\nData in /home/alice/cams."
        ),
        "absolute path",
    ),
    "windows path": (
        lambda nb: _set(
            _find(nb, "## Step 1"), _src(_find(nb, "## Step 1")) + "\nC:\\Users\\bob\\cams"
        ),
        "absolute path",
    ),
    "badge": (
        lambda nb: _set(
            nb["cells"][0],
            _src(nb["cells"][0]).replace("notebooks/00_setup_compute", "notebooks/00_other"),
        ),
        "Colab badge",
    ),
    "no solutions": (
        lambda nb: _set(
            _find(nb, "## Exercises"), _src(_find(nb, "## Exercises")).replace("<details>", "")
        ),
        "<details>",
    ),
    "step numbers": (
        lambda nb: _set(
            _find(nb, "## Step 2:"),
            _src(_find(nb, "## Step 2:")).replace("## Step 2:", "## Step 7:"),
        ),
        "Step 1",
    ),
    "setup edited": (
        lambda nb: _set(
            _find(nb, 'if "google.colab" in sys.modules'),
            _src(_find(nb, 'if "google.colab" in sys.modules'))
            + "\n    subprocess.run(['pip', 'install', 'torch'])",
        ),
        "set-up cell differs",
    ),
    "bullets": (
        lambda nb: _set(
            _find(nb, "## What you'll learn"), "## What you'll learn\n\n" + "- x\n" * 7
        ),
        "7 bullets",
    ),
    "no next": (
        lambda nb: _set(
            _find(nb, "**Next:**"), _src(_find(nb, "**Next:**")).replace("**Next:**", "")
        ),
        "'Next:'",
    ),
    "order": (
        lambda nb: nb["cells"].insert(
            2, nb["cells"].pop(nb["cells"].index(_find(nb, "## Summary")))
        ),
        "must come after",
    ),
    "long": (
        lambda nb: nb["cells"].insert(
            -1,
            {
                "cell_type": "code",
                "metadata": {},
                "execution_count": None,
                "outputs": [],
                "id": "x",
                "source": "x = 1\n" * (MAX_CODE_LINES + 1),
            },
        ),
        "lines of code",
    ),
    "widget state": (lambda nb: nb["metadata"].update(widgets={"state": {}}), "widget state"),
    "no config": (lambda nb: _set(_find(nb, "load_config(PROFILE"), "cfg = None"), "load_config"),
}


@pytest.mark.parametrize("name", MUTATIONS)
def test_each_rule_catches_its_defect(tmp_path, name):
    mutate, expected = MUTATIONS[name]
    nb = json.loads((NOTEBOOKS / "00_setup_compute.ipynb").read_text())
    mutate(nb)
    path = tmp_path / "00_setup_compute.ipynb"
    path.write_text(json.dumps(nb))
    problems = check_notebook(path)
    assert any(expected in p for p in problems), problems


def test_bad_file_name(tmp_path):
    path = tmp_path / "Setup Compute.ipynb"
    shutil.copy(NOTEBOOKS / "00_setup_compute.ipynb", path)
    assert any("NN_snake_case" in p for p in check_notebook(path))


def test_next_link_must_name_the_following_notebook(tmp_path):
    for name in ("00_setup_compute.ipynb", "01_problem_definition.ipynb"):
        shutil.copy(NOTEBOOKS / name, tmp_path / name)
    shutil.copy(NOTEBOOKS / "01_problem_definition.ipynb", tmp_path / "00b_extra.ipynb")
    (tmp_path / "00b_extra.ipynb").rename(tmp_path / "00_zz_extra.ipynb")
    assert any(
        "00_zz_extra.ipynb" in p for p in check_notebook(tmp_path / "00_setup_compute.ipynb")
    )


def test_sync_repairs_badge_and_setup_cell(tmp_path):
    nb = json.loads((NOTEBOOKS / "00_setup_compute.ipynb").read_text())
    MUTATIONS["badge"][0](nb)
    MUTATIONS["setup edited"][0](nb)
    path = tmp_path / "00_setup_compute.ipynb"
    path.write_text(json.dumps(nb))
    assert check_notebook(path)
    assert sync_notebook(path) is True
    assert check_notebook(path) == []
    assert sync_notebook(path) is False
