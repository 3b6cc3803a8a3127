import json

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
