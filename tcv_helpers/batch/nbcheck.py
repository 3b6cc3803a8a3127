"""The notebook rules (STYLE.md item 7) as code: checked by the tests and ``tcv notebooks check``.

Every course notebook has, in this order: a title with an "Open in Colab" badge for that very
file; "What you'll learn" (3-5 bullets); prerequisites; the set-up (the Colab cell, identical
everywhere); a cell tagged ``parameters`` holding literals only, ``PROFILE`` and ``WORKDIR``
among them, followed by the cell that builds the config; "## Step N: ..." sections; a summary;
exercises, each with a worked solution folded in ``<details>``; a "Next:" link. It is committed
with outputs stripped, holds no absolute path from someone's machine, and at most
:data:`MAX_CODE_LINES` lines of code.

The repository URL and the tag the Colab cell installs from are read from the package metadata,
which comes from ``pyproject.toml``: that is the one place they are defined.
"""

from __future__ import annotations

import ast
import itertools
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from tcv_helpers.batch.runner import default_notebooks_dir
from tcv_helpers.io import atomic_write_text

MAX_CODE_LINES = 150
NOTEBOOK_NAME = re.compile(r"^(\d{2})_[a-z0-9]+(?:_[a-z0-9]+)*\.ipynb$")
COLAB_BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
ABSOLUTE_PATH = re.compile(
    r"(?<![\w/.:])(?:/(?:home|Users|root|work|mnt|scratch|tmp|private|var/folders)/[\w.-]"
    r"|[A-Za-z]:\\\\?[\w.-]+\\)"
)
REQUIRED_PARAMETERS = ("PROFILE", "WORKDIR")


@dataclass(frozen=True)
class RepoInfo:
    """Where the course lives.

    Attributes:
        url: ``https://github.com/OWNER/NAME``.
        ref: The tag the Colab set-up cell installs from (``v`` + the package version).
    """

    url: str
    ref: str

    @property
    def slug(self) -> str:
        """``OWNER/NAME``."""
        return self.url.rstrip("/").split("github.com/", 1)[1]

    def colab_url(self, notebook: str, branch: str | None = None) -> str:
        """The "Open in Colab" link of a notebook file, at the release tag by default.

        The badge opens the notebook of the same tag that its set-up cell installs the helpers
        from, so a learner never runs notebooks of one version against helpers of another.
        """
        ref = branch or self.ref
        return (
            f"https://colab.research.google.com/github/{self.slug}/blob/{ref}/notebooks/{notebook}"
        )

    def badge(self, notebook: str) -> str:
        """The badge's Markdown."""
        return f"[![Open In Colab]({COLAB_BADGE_IMAGE})]({self.colab_url(notebook)})"


def repo_info(dist: str = "tcv_helpers") -> RepoInfo:
    """Reads the repository URL and version from the installed package's metadata.

    Raises:
        RuntimeError: If the package is not installed or has no ``Repository`` URL.
    """
    try:
        meta = metadata.metadata(dist)
    except metadata.PackageNotFoundError as exc:
        raise RuntimeError(f"{dist} is not installed: pip install -e .") from exc
    for entry in meta.get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        if label.strip().lower() == "repository":
            return RepoInfo(url=url.strip(), ref=f"v{meta['Version']}")
    raise RuntimeError(f"{dist} has no 'Repository' URL in [project.urls] of pyproject.toml.")


def colab_setup_source(info: RepoInfo) -> str:
    """The set-up cell every notebook starts its code with (identical in all of them)."""
    return f'''# Set-up. On Google Colab this installs the course's pinned packages and helpers (about a
# minute) and keeps Colab's own PyTorch. Anywhere else the install is skipped: the course's
# set-up command (README) already installed everything. Then one line compares Python, PyTorch,
# NumPy, Pillow and Ultralytics with the versions the course was tested with.
import subprocess
import sys

if "google.colab" in sys.modules:
    REPO, REF = "{info.url}", "{info.ref}"
    RAW = f"https://raw.githubusercontent.com/{{REPO.split('github.com/')[1]}}/{{REF}}"
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "-r", f"{{RAW}}/requirements-colab.txt"], check=True)
    subprocess.run([*pip, "--no-deps", f"git+{{REPO}}@{{REF}}"], check=True)

from tcv_helpers.doctor import runtime_check

print(runtime_check().line())'''


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _headings(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.startswith("#")]


def _check_parameters(source: str) -> list[str]:
    problems = []
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return [f"parameters cell does not parse: {exc.msg} (line {exc.lineno})"]
    names = set()
    for node in tree.body:
        target, value = None, None
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            target, value = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
            target, value = node.target.id, node.value
        if target is None:
            problems.append(
                f"parameters cell line {node.lineno}: only `NAME = literal` lines are allowed"
            )
            continue
        try:
            ast.literal_eval(value)
        except ValueError:
            problems.append(
                f"parameters cell: {target} is not a literal (papermill must override it)"
            )
        names.add(target)
    for name in REQUIRED_PARAMETERS:
        if name not in names:
            problems.append(f"parameters cell lacks {name}")
    return problems


def check_notebook(path: str | os.PathLike, info: RepoInfo | None = None) -> list[str]:
    """Checks one notebook against the rules.

    Args:
        path: The ``.ipynb`` file.
        info: Repository URL and tag (default: from the installed package).

    Returns:
        Problems found, each a sentence; empty when the notebook follows every rule.
    """
    path = Path(path)
    info = info or repo_info()
    problems: list[str] = []
    if not NOTEBOOK_NAME.match(path.name):
        problems.append("file name must be NN_snake_case.ipynb")
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [f"cannot be read as a notebook: {exc}"]
    cells = nb.get("cells", [])
    if not cells:
        return ["notebook has no cells"]
    if "widgets" in nb.get("metadata", {}):
        problems.append("notebook metadata holds widget state (strip it with nbstripout)")
    if nb.get("metadata", {}).get("kernelspec", {}).get("name") != "python3":
        problems.append("kernelspec must be python3")

    order: dict[str, int] = {}
    steps: list[tuple[int, int]] = []
    code_lines = 0
    for i, cell in enumerate(cells):
        text = _source(cell)
        if cell.get("cell_type") == "code":
            if cell.get("outputs") or cell.get("execution_count") is not None:
                problems.append(f"cell {i + 1} carries outputs or an execution count (strip them)")
            if text.strip() != colab_setup_source(info).strip():  # generated: not counted
                code_lines += sum(
                    1 for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")
                )
            if "parameters" in cell.get("metadata", {}).get("tags", []):
                if "parameters" in order:
                    problems.append("more than one cell is tagged parameters")
                order.setdefault("parameters", i)
                problems += _check_parameters(text)
            elif "setup" in order and "setup_cell" not in order:
                order["setup_cell"] = i
                if text.strip() != colab_setup_source(info).strip():
                    problems.append(
                        f"cell {i + 1}: the set-up cell differs from the canonical Colab cell "
                        "(run `tcv notebooks sync`)"
                    )
            elif "parameters" in order and "config" not in order:
                order["config"] = i
                if "load_config(" not in text:
                    problems.append(
                        f"cell {i + 1}: the cell after parameters must call load_config(...)"
                    )
        for match in ABSOLUTE_PATH.finditer(text):
            problems.append(f"cell {i + 1}: absolute path {match.group(0)!r}")
        if cell.get("cell_type") != "markdown":
            continue
        for heading in _headings(text):
            low = heading.lower()
            if i == 0 and heading.startswith("# ") and "title" not in order:
                order["title"] = i
            elif low.startswith("## what you'll learn"):
                order["learn"] = i
                bullets = [ln for ln in text.splitlines() if re.match(r"\s*[-*] ", ln)]
                if not 3 <= len(bullets) <= 5:
                    problems.append(
                        f"'What you'll learn' has {len(bullets)} bullets (3-5 expected)"
                    )
            elif low.startswith("## prerequisites"):
                order["prereq"] = i
            elif low.startswith("## set-up"):
                order["setup"] = i
            elif m := re.match(r"## step (\d+): \S", low):
                steps.append((int(m.group(1)), i))
            elif low.startswith("## summary"):
                order["summary"] = i
            elif low.startswith("## exercises"):
                order["exercises"] = i
                if "<details>" not in text:
                    problems.append("exercises need worked solutions folded in <details> blocks")
        if re.search(r"\*\*Next:?\*\*|^Next:", text, re.MULTILINE):
            order["next"] = i
            problems += _check_next_link(path, text)

    if "title" not in order:
        problems.append("first cell must be a markdown title ('# ...')")
    elif info.colab_url(path.name) not in _source(cells[0]):
        problems.append(f"title cell lacks the Colab badge linking to {info.colab_url(path.name)}")
    if [n for n, _ in steps] != list(range(1, len(steps) + 1)) or not steps:
        problems.append("steps must be '## Step 1: ...', '## Step 2: ...' in order (at least one)")
    else:
        order["first_step"], order["last_step"] = steps[0][1], steps[-1][1]
    sequence = [
        "title",
        "learn",
        "prereq",
        "setup",
        "setup_cell",
        "parameters",
        "config",
        "first_step",
        "last_step",
        "summary",
        "exercises",
        "next",
    ]
    labels = {
        "title": "title",
        "learn": "'## What you'll learn'",
        "prereq": "'## Prerequisites'",
        "setup": "'## Set-up'",
        "setup_cell": "the Colab set-up cell",
        "parameters": "a cell tagged 'parameters'",
        "config": "the load_config cell",
        "first_step": "steps",
        "last_step": "steps",
        "summary": "'## Summary'",
        "exercises": "'## Exercises'",
        "next": "a 'Next:' link",
    }
    for key in sequence:
        if key not in order and key not in ("first_step", "last_step"):
            problems.append(f"missing {labels[key]}")
    present = [(key, order[key]) for key in sequence if key in order]
    for (a, ia), (b, ib) in itertools.pairwise(present):
        if ib < ia:
            problems.append(f"{labels[b]} must come after {labels[a]}")
    if code_lines > MAX_CODE_LINES:
        problems.append(
            f"{code_lines} lines of code (at most {MAX_CODE_LINES}: move logic into tcv_helpers)"
        )
    return list(dict.fromkeys(problems))


def _check_next_link(path: Path, text: str) -> list[str]:
    """The "Next:" link names the following notebook, or a later one (or the README) at the end."""
    own = NOTEBOOK_NAME.match(path.name)
    if not own:
        return []  # the file name problem is reported on its own
    links = re.findall(r"\]\(([^)\s]+\.ipynb)\)", text)
    later = sorted(
        p.name
        for p in path.parent.glob("*.ipynb")
        if NOTEBOOK_NAME.match(p.name) and p.name > path.name
    )
    if later:
        return [] if later[0] in links else [f"'Next:' must link to {later[0]}"]
    numbers = [int(m.group(1)) for link in links if (m := NOTEBOOK_NAME.match(Path(link).name))]
    if any(n > int(own.group(1)) for n in numbers) or "README" in text:
        return []
    return ["'Next:' must link to the next notebook (or the README for the last one)"]


def sync_notebook(path: str | os.PathLike, info: RepoInfo | None = None) -> bool:
    """Rewrites a notebook's Colab badge and set-up cell from the package metadata.

    Returns:
        True when the file changed (written atomically), False when it was already in sync.
    """
    import nbformat

    path = Path(path)
    info = info or repo_info()
    nb = nbformat.read(path, as_version=4)
    cells = nb.cells
    before = [c.source for c in cells]
    title = cells[0].source
    badge_re = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)")
    if badge_re.search(title):
        title = badge_re.sub(lambda _m: info.badge(path.name), title)
    else:
        title = title.rstrip("\n") + "\n\n" + info.badge(path.name)
    cells[0].source = title
    setup = next(
        (
            i
            for i, c in enumerate(cells)
            if c.cell_type == "markdown"
            and any(h.lower().startswith("## set-up") for h in _headings(c.source))
        ),
        None,
    )
    if setup is not None:
        code = next((i for i in range(setup + 1, len(cells)) if cells[i].cell_type == "code"), None)
        if code is not None:
            cells[code].source = colab_setup_source(info)
    if [c.source for c in cells] == before:
        return False
    atomic_write_text(path, nbformat.writes(nb))
    return True


def _course_notebooks(paths: Sequence[str | os.PathLike] | None) -> list[Path]:
    if paths:
        return [Path(p) for p in paths]
    return sorted(default_notebooks_dir().glob("*.ipynb"))


def check_notebooks(paths: Sequence[str | os.PathLike] | None = None) -> dict[Path, list[str]]:
    """``tcv notebooks check``: every notebook's problems (an empty list: it follows the rules).

    Args:
        paths: The notebooks (default: ``notebooks/*.ipynb`` here, else the course's).

    Returns:
        Each notebook, in the given order, with its problems.

    Raises:
        RunError: If no paths are given and there is no notebooks folder.
    """
    return {file: check_notebook(file) for file in _course_notebooks(paths)}


def sync_notebooks(paths: Sequence[str | os.PathLike] | None = None) -> list[Path]:
    """``tcv notebooks sync``: :func:`sync_notebook` on each notebook; returns those it changed.

    Args:
        paths: The notebooks (default: ``notebooks/*.ipynb`` here, else the course's).

    Raises:
        RunError: If no paths are given and there is no notebooks folder.
    """
    return [file for file in _course_notebooks(paths) if sync_notebook(file)]
