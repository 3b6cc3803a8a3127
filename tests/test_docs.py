"""The README, the instructor guide and CI agree with the code and with each other."""

import re
import subprocess
from pathlib import Path

from tcv_helpers.batch.nbcheck import repo_info
from tests.conftest import NOTEBOOKS, ROOT

README = (ROOT / "README.md").read_text()
INSTRUCTOR = (ROOT / "docs" / "instructor.md").read_text()


def _block(marker: str) -> str:
    after = README.split(f"<!-- ci:{marker} -->", 1)[1]
    match = re.search(r"```\w*\n(.*?)```", after, re.DOTALL)
    return match.group(1).strip()


def test_ci_runs_the_readme_commands():
    setup, test = _block("setup"), _block("test")
    assert 'pip install -e ".[dev]"' in setup and "venv" in setup
    assert test.startswith("pytest")
    printed = subprocess.run(
        ["bash", str(ROOT / ".ci" / "run"), "--print"], capture_output=True, text=True, check=True
    )
    assert printed.stdout.strip().splitlines() == [setup, test]


def test_quick_start_is_setup_run_test():
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)```", quick, re.DOTALL)
    expected = [_block("setup"), "tcv run", "jupyter lab notebooks/", _block("test")]
    assert [c.strip() for c in commands] == expected


def test_every_notebook_is_in_the_readme_table_with_its_badge():
    info = repo_info()
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        row = next((ln for ln in README.splitlines() if f"(notebooks/{path.name})" in ln), None)
        assert row is not None, f"{path.name} missing from the README's notebook table"
        assert info.colab_url(path.name) in row, (
            f"{path.name}: README badge does not point at the file"
        )
    assert f"git clone {info.url}" in README


def test_instructor_guide_covers_what_the_issue_asks():
    for heading in (
        "## Time per notebook",
        "## A 3-hour workshop",
        "## A 2-day course",
        "## Before the workshop",
        "## Learner errors",
    ):
        assert heading in INSTRUCTOR
    for item in ("T4", "ROBOFLOW_API_KEY", "Data fetched ahead"):
        assert item in INSTRUCTOR
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        number = path.name[:2]
        assert re.search(rf"^\| {number} .*\| ~\d+ s \|", INSTRUCTOR, re.MULTILINE), (
            f"no timing for {path.name}"
        )


def test_contributing_states_the_rules_and_checks():
    text = (ROOT / "CONTRIBUTING.md").read_text()
    for needle in (
        "tcv notebooks check",
        "pre-commit install",
        "parameters",
        "<details>",
        "150 lines",
    ):
        assert needle in text


def test_every_test_the_security_promises_name_exists():
    """docs/security.md names the tests that hold each promise: each must be a real test."""
    text = (ROOT / "docs" / "security.md").read_text()
    assert "](docs/security.md)" in README, "the README links the promises"
    current = None
    named = 0
    for cell in re.findall(r"`([^`]+)`", text):
        match = re.fullmatch(r"(?:(test_\w+\.py)(?:::(test_\w+))?|::(test_\w+))", cell)
        if not match:
            continue
        current = match.group(1) or current
        test = match.group(2) or match.group(3)
        source = (ROOT / "tests" / current).read_text()
        if test:
            assert re.search(rf"^(async )?def {test}\(", source, re.M), f"{current}::{test}"
            named += 1
    assert named >= 25


def test_detectron2_is_installed_from_one_commit_everywhere():
    """Users, the notebook, the missing-Detectron2 hint and CI name the same Detectron2 source."""
    from tcv_helpers.model.detectron import DETECTRON2_COMMIT, DETECTRON2_SOURCE, INSTALL_HINT

    assert DETECTRON2_SOURCE.endswith(f"@{DETECTRON2_COMMIT}") and DETECTRON2_SOURCE in INSTALL_HINT
    assert DETECTRON2_SOURCE in README, "the README's install line names the tested commit"
    notebook = (NOTEBOOKS / "05_training.ipynb").read_text()
    assert DETECTRON2_SOURCE in notebook, "notebook 05's install line names it too"
    assert "detectron2.git'" not in notebook and 'detectron2.git"' not in README, "no bare HEAD"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "../shared/vendor/detectron2-*.tar.gz" in ci and "--no-build-isolation" in ci
    vendored = sorted((ROOT.parent / "shared" / "vendor").glob("detectron2-*.tar.gz"))
    if vendored:  # the offline copy CI builds is the same commit
        assert vendored[0].name == f"detectron2-{DETECTRON2_COMMIT[:7]}.tar.gz"


#: Words of the README's notebook table -> what the notebook's code, or the course helpers it
#: imports, must contain for the claim to run (lower case). A claim only described in a
#: notebook says so in the table: "(in words)".
CLAIMS = {
    "Optuna": ("optuna",),
    "grid, random and Bayesian": ('"grid"', '"random"', '"tpe"'),
    "OpenVINO": ("openvino",),
    "NNCF": ("nncf",),
    "ONNX Runtime": ("onnxruntime",),
    "Detectron2": ("detectron2",),
    "pycocotools": ("pycocotools",),
    "FastAPI": ("fastapi",),
    "Prometheus": ("prometheus",),
    "PromQL": ("/api/v1/query",),
    "promtool": ("promtool",),
    "Grafana": ("grafana",),
    "Kolmogorov-Smirnov": ("ks_2samp",),
    "PSI": ("psi",),
    "ByteTrack": ("bytetrack",),
    "Roboflow": ("roboflow",),
    "TensorBoard": ("tensorboard",),
    "YOLO26": ("yolo26",),
    "knowledge distillation measured": ("teacher_labelled_split", "student_architecture"),
    "Docker": ('"-m", "tcv_helpers.deploy.server"',),  # the image's entry point, run here
    "hand-written PyTorch loop": ("loss.backward()", "optimiser.step()"),
    "early stopping": ("patience",),
    "ResNet-18": ("resnet18",),
    "k-fold cross-validation grouped by camera": ("groupkfold",),
    "regularisation table": ("regularisation_study",),
    "Keras 3 (PyTorch backend)": ("import keras", "keras_backend"),
    "instance segmentation": ("train_segmenter", "-seg"),
    "mask mAP50 beside box mAP50, IoU and Dice": ("mask_map50", "box_map50", "dice"),
    "early stopping ending the fine-tuning": ('"patience": patience', "stopping_note"),
}


def _evidence(notebook) -> str:
    """A notebook's code and the source of every course module it reaches through imports."""
    import json

    cells = json.loads(notebook.read_text())["cells"]
    text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    pattern = re.compile(
        r"(?:from|import)[ \t]+(tcv_helpers(?:\.\w+)*)(?:[ \t]+import[ \t]+(?:\(([^)]*)\)|([\w, \t]+)))?"
    )

    def modules(source: str) -> list[str]:  # "from a.b import c, d": a.b, a.b.c and a.b.d
        found = []
        for module, wrapped, names in pattern.findall(source):
            listed = (wrapped or names).replace("\n", ",").split(",")
            found += [module] + [f"{module}.{n.split()[0]}" for n in listed if n.strip()]
        return found

    seen, todo, parts = set(), modules(text), [text]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        base = ROOT / Path(*module.split("."))
        file = (
            base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        )
        if file.is_file():
            source = file.read_text()
            parts.append(source)
            todo += modules(source)
    return "\n".join(parts).lower()


def test_what_the_readme_table_claims_runs_in_its_notebook():
    rows = {}
    for line in README.splitlines():
        match = re.match(r"\| (\d\d) \| \[[^]]+\]\(notebooks/([^)]+)\) \| ([^|]+) \|", line)
        if match:
            rows[match.group(2)] = match.group(3)
    assert len(rows) == len(list(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")))
    unbacked = []
    for name, claims in rows.items():
        evidence = _evidence(NOTEBOOKS / name)
        for word, needles in CLAIMS.items():
            if word not in claims:
                continue
            said_in_words = f"{word} (in words)" in claims
            if not said_in_words and not all(n in evidence for n in needles):
                unbacked.append(f"{name}: {word!r} needs {needles} in its code or helpers")
    assert not unbacked, "\n".join(unbacked)
