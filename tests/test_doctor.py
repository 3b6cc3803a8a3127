import json
import subprocess
import sys
import types

import pytest
from typer.testing import CliRunner

from tcv_helpers import doctor
from tcv_helpers.cli import app


def test_checks_cover_what_the_course_needs(tmp_path):
    checks = doctor.run_checks(tmp_path / "ws", "smoke")
    names = [c.name for c in checks]
    for expected in (
        "platform",
        "Python",
        "pinned packages",
        "Jupyter kernel",
        "PyTorch",
        "GPU",
        "disk",
        "memory",
    ):
        assert expected in names
    assert not (tmp_path / "ws").exists(), "doctor only looks, it creates nothing"
    assert all(c.status in (doctor.OK, doctor.INFO, doctor.WARN, doctor.FAIL) for c in checks)


def test_problems_come_with_fixes(tmp_path, monkeypatch):
    monkeypatch.setitem(doctor.DISK_NEEDED_GB, "smoke", 10**9)
    disk = next(c for c in doctor.check_resources(tmp_path, "smoke") if c.name == "disk")
    assert disk.status == doctor.FAIL and "WORKDIR" in disk.fix
    text = doctor.format_checks([disk])
    assert "FAIL" in text and "fix:" in text and "1 problem(s)" in text


def test_missing_package_is_named():
    checks = doctor.check_packages("no-such-distribution-tcv")
    assert checks[0].status == doctor.FAIL and "not installed" in checks[0].detail


def test_installed_pins_hold():
    checks = doctor.check_packages()
    assert [c.status for c in checks] == [doctor.OK, doctor.OK], checks


@pytest.mark.parametrize(
    ("environ", "warns"),
    [
        ({"SSH_CONNECTION": "1 2 3 4"}, True),
        ({"SSH_CONNECTION": "1 2 3 4", "TMUX": "/tmp/t"}, False),
        ({}, False),
    ],
)
def test_ssh_without_tmux_warns(environ, warns):
    checks = doctor.check_session("jetstream2", environ)
    assert any(c.name == "long runs" for c in checks) is warns


def test_secret_value_is_never_shown():
    checks = doctor.check_session("local", {"ROBOFLOW_API_KEY": "abcdef123456"})
    assert "abcdef123456" not in doctor.format_checks(checks)


def test_cli_doctor(tmp_path):
    result = CliRunner().invoke(
        app, ["doctor", "--workdir", str(tmp_path), "--profile", "smoke", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert {r["name"] for r in json.loads(result.output)} >= {"platform", "disk"}
    bad = CliRunner().invoke(app, ["doctor", "--profile", "turbo"])
    assert bad.exit_code == 2 and "Unknown profile" in bad.output


# --- the runtime line: the set-up cell's check against the tested versions -------------------

TESTED = {
    "python": "3.12.3",
    "torch": "2.14.1",
    "cuda": "13.0",
    "numpy": "2.4.6",
    "pillow": "13.0.0",
    "ultralytics": "8.4.190",
}
PINS = {
    "python": ">=3.10",
    "torch": ">=2.2",
    "numpy": "<3,>=1.26",
    "pillow": "<14,>=10.2",
    "ultralytics": "==8.4.190",
}


def test_tested_with_is_valid_and_pins_ultralytics_as_pyproject():
    import tomllib

    from tests.conftest import ROOT

    tested = doctor.tested_versions()
    assert list(tested) == list(doctor.RUNTIME_NAMES)
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pin = next(d for d in deps["dependencies"] if d.startswith("ultralytics"))
    assert pin == f"ultralytics=={tested['ultralytics']}", "refresh tested_with.json"


def test_matching_runtime_says_so_in_one_line():
    found = {**TESTED, "numpy": "2.4.1", "torch": "2.14.0+cu130"}  # patch levels do not count
    result = doctor.compare_versions(TESTED, found, pins=PINS)
    assert result.differences == () and not result.restart_needed
    assert result.line() == (
        "Runtime matches the course's tested versions (Python 3.12, torch 2.14, CUDA 13.0, "
        "NumPy 2.4, Pillow 13.0, Ultralytics 8.4.190)."
    )


def test_differences_within_the_pins_usually_work():
    found = {**TESTED, "python": "3.11.7", "torch": "2.8.0+cu126", "cuda": "12.6"}
    result = doctor.compare_versions(TESTED, found, pins=PINS)
    assert result.differences == (
        ("Python", "3.12", "3.11"),
        ("torch", "2.14", "2.8"),
        ("CUDA", "13.0", "12.6"),
    )
    assert result.outside_pins == () and not result.restart_needed
    assert result.line() == (
        "Differs from the tested versions: Python 3.11 (tested 3.12), torch 2.8 (tested 2.14), "
        "CUDA 12.6 (tested 13.0); these usually work."
    )
    assert "\n" not in result.line()


def test_ultralytics_is_compared_exactly_and_a_missing_package_needs_installing():
    found = {**TESTED, "ultralytics": "8.4.191", "pillow": None, "cuda": None}
    result = doctor.compare_versions(TESTED, found, pins=PINS)
    assert ("Ultralytics", "8.4.190", "8.4.191") in result.differences
    assert ("Pillow", "13.0", "missing") in result.differences
    assert ("CUDA", "13.0", "none") in result.differences  # a CPU-only PyTorch still works
    assert result.outside_pins == ("Pillow", "Ultralytics")
    assert result.line().endswith(
        "; Pillow and Ultralytics are outside the course's pins: " + doctor.REINSTALL_ADVICE + "."
    )


def test_an_old_python_is_outside_the_pins():
    result = doctor.compare_versions(TESTED, {**TESTED, "python": "3.9.18"}, pins=PINS)
    assert result.outside_pins == ("Python",)
    assert "Python 3.9 (tested 3.12); Python is outside the course's pins" in result.line()


def test_an_unknown_cuda_version_is_not_compared():
    found = {k: v for k, v in TESTED.items() if k != "cuda"}
    result = doctor.compare_versions({**TESTED, "cuda": "12.1"}, found, pins=PINS)
    assert result.differences == () and "CUDA" not in result.line()


def _fake_module(name: str, version: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__version__ = version  # type: ignore[attr-defined]
    return module


def test_upgrade_under_a_running_kernel_needs_a_restart(monkeypatch):
    on_disk = {"numpy": "2.4.6", "pillow": "13.0.0"}
    monkeypatch.setattr(doctor, "_dist_version", on_disk.get)
    watch = {"numpy": ("numpy", "NumPy"), "pillow": ("PIL", "Pillow")}
    monkeypatch.setitem(sys.modules, "numpy", _fake_module("numpy", "2.4.6"))
    monkeypatch.setitem(sys.modules, "PIL", _fake_module("PIL", "11.1.0"))
    assert doctor.upgraded_since_import(watch) == ("Pillow",)

    result = doctor.compare_versions(TESTED, TESTED, pins=PINS, upgraded=("Pillow",))
    assert result.restart_needed
    assert result.line().endswith(
        " Pillow was upgraded after it was imported: restart the runtime "
        "(Colab: Runtime > Restart session) and run the cells again."
    )
    assert result.line().startswith("Installed versions match the course's tested ones (")

    monkeypatch.setitem(sys.modules, "numpy", _fake_module("numpy", "2.0.2"))
    assert doctor.upgraded_since_import(watch) == ("NumPy", "Pillow")
    both = doctor.compare_versions(TESTED, TESTED, upgraded=("NumPy", "Pillow")).line()
    assert "NumPy and Pillow were upgraded after they were imported: restart" in both


def test_local_version_parts_are_no_upgrade(monkeypatch):
    monkeypatch.setattr(doctor, "_dist_version", {"torch": "2.14.1"}.get)
    monkeypatch.setitem(sys.modules, "torch", _fake_module("torch", "2.14.1+cu130"))
    assert doctor.upgraded_since_import({"torch": ("torch", "torch")}) == ()


def test_runtime_check_reports_a_real_upgrade(monkeypatch):
    import PIL

    monkeypatch.setattr(PIL, "__version__", "9.5.0")  # as if pip replaced Pillow after import
    result = doctor.runtime_check()
    assert result.restart_needed and "Pillow" in result.upgraded
    assert "Runtime > Restart session" in result.line()


@pytest.mark.parametrize(
    ("version", "requires", "cuda"),
    [
        ("2.14.1", ['cuda-toolkit[cudart]==13.0.3; platform_system == "Linux"'], "13.0"),
        ("2.8.0", ['nvidia-cuda-runtime-cu12==12.6.77; platform_system == "Linux"'], "12.6"),
        ("2.8.0+cu126", [], "12.6"),
        ("2.8.0+cpu", [], None),
        ("2.8.0", ["filelock"], "unknown"),
    ],
    ids=["cu13-wheel", "cu12-wheel", "local-cu", "local-cpu", "cannot-tell"],
)
def test_cuda_version_is_read_from_metadata_without_importing_torch(
    monkeypatch, version, requires, cuda
):
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(doctor, "_dist_version", {"torch": version}.get)
    monkeypatch.setattr(doctor.metadata, "requires", lambda dist: requires)
    found = doctor.installed_versions()
    if sys.platform.startswith("linux") or not requires:
        assert found.get("cuda", "unknown") == cuda
    assert "torch" not in sys.modules


def test_set_up_cell_check_imports_no_heavy_package():
    code = (
        "import sys\n"
        "from tcv_helpers.doctor import runtime_check\n"
        "line = runtime_check().line()\n"
        "heavy = [m for m in ('torch', 'ultralytics', 'cv2', 'numpy', 'PIL') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "print(line)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("\n") == 1 and "Python " in result.stdout


def test_written_tested_versions_match_this_environment(tmp_path):
    written = doctor.write_tested_with(tmp_path / "tested_with.json")
    tested = doctor.tested_versions(written)
    result = doctor.compare_versions(tested, doctor.installed_versions(cuda=True))
    assert result.differences == ()
    assert result.line().startswith("Runtime matches the course's tested versions (Python ")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "expected an object"),
        ("{nope", "not valid JSON"),
        (json.dumps({k: v for k, v in TESTED.items() if k != "numpy"}), "'numpy' is missing"),
        (json.dumps({**TESTED, "opencv": "5.1"}), r"unknown field\(s\) opencv"),
        (json.dumps({**TESTED, "torch": "latest"}), "'torch': 'latest' is not a version"),
        (json.dumps({**TESTED, "pillow": None}), "'pillow': None is not a version"),
    ],
    ids=["not-object", "not-json", "missing", "unknown", "not-version", "null"],
)
def test_bad_tested_with_file_is_named(tmp_path, text, message):
    path = tmp_path / "tested_with.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as caught:
        doctor.tested_versions(path)
    assert str(path) in str(caught.value)


def test_cpu_only_tested_cuda_may_be_null(tmp_path):
    path = tmp_path / "tested_with.json"
    path.write_text(json.dumps({**TESTED, "cuda": None}), encoding="utf-8")
    assert doctor.tested_versions(path)["cuda"] is None


def test_doctor_shows_the_runtime_line(tmp_path):
    check = next(
        c for c in doctor.run_checks(tmp_path / "ws", "smoke") if c.name == "tested versions"
    )
    assert check.detail == doctor.runtime_check(cuda=True).line()
    result = CliRunner().invoke(app, ["doctor", "--workdir", str(tmp_path), "--profile", "smoke"])
    assert "tested versions" in result.output and check.detail in result.output


def test_session_names_the_asset_hub(tmp_path):
    """The row says where downloads come from, and flags a mirror folder that is not there."""
    by_name = {c.name: c for c in doctor.check_session("local", {})}
    assert by_name["asset hub"].status == doctor.OK
    assert "GitHub release" in by_name["asset hub"].detail
    mirror = {c.name: c for c in doctor.check_session("local", {"TCV_ASSETS_URL": str(tmp_path)})}
    assert mirror["asset hub"].status == doctor.OK and str(tmp_path) in mirror["asset hub"].detail
    gone = tmp_path / "gone"
    missing = {c.name: c for c in doctor.check_session("local", {"TCV_ASSETS_URL": str(gone)})}
    assert (
        missing["asset hub"].status == doctor.WARN
        and "does not exist" in missing["asset hub"].detail
    )
    url = {
        c.name: c for c in doctor.check_session("local", {"TCV_ASSETS_URL": "http://127.0.0.1:9/"})
    }
    assert url["asset hub"].status == doctor.OK


def test_detectron2_status_without_importing_it(monkeypatch):
    import importlib.util

    from tcv_helpers.model.detectron import DETECTRON2_COMMIT

    real = importlib.util.find_spec
    missing: set[str] = set()
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in missing else real(name, *a)
    )
    missing.add("detectron2")
    check = doctor.check_detectron2()
    assert check.status == doctor.INFO and "optional" in check.detail
    assert DETECTRON2_COMMIT in check.fix and "setuptools<81" in check.fix
    if real("detectron2") is None:
        pytest.skip("Detectron2 is not installed here: the installed cases need it")
    missing.clear()
    check = doctor.check_detectron2()
    assert check.status == doctor.OK and DETECTRON2_COMMIT[:7] in check.detail
    missing.add("pkg_resources")
    check = doctor.check_detectron2()
    assert check.status == doctor.WARN and check.fix == "pip install 'setuptools<81'"
