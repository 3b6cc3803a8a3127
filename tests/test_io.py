import os
import stat

import pytest

from tcv_helpers import io
from tcv_helpers.io import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    read_yaml_mapping,
)


@pytest.fixture
def umask():
    """Sets the process umask for one test and puts the old one back."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_a_new_file_gets_the_mode_open_would_give_it(tmp_path, umask, mask, expected):
    umask(mask)
    assert io.current_umask() == mask
    for name, write in (("a.bin", atomic_write_bytes), ("a.txt", atomic_write_text)):
        target = write(tmp_path / name, b"x" if name.endswith("bin") else "x")
        assert mode(target) == expected, f"{name}: {oct(mode(target))}"
    assert mode(atomic_write_json(tmp_path / "a.json", {})) == expected
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert mode(plain) == expected, "the same as open()"


def test_a_replaced_file_keeps_its_mode(tmp_path, umask):
    target = tmp_path / "private.json"
    target.write_text("{}")
    target.chmod(0o640)
    atomic_write_json(target, {"x": 1})
    assert mode(target) == 0o640 and target.read_text().startswith("{")


def test_the_folder_is_flushed_after_the_rename(tmp_path, monkeypatch):
    flushed = []
    real = os.fsync

    def fsync(fd):
        flushed.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real(fd)

    monkeypatch.setattr("tcv_helpers.io.os.fsync", fsync)
    atomic_write_text(tmp_path / "a.txt", "x")
    expected = [False, True] if os.name == "posix" else [False]
    assert flushed == expected, "the file's bytes, then the folder's entry"


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "sub" / "a.json"
    atomic_write_json(target, {"x": 1})
    assert target.read_text().strip() == '{\n  "x": 1\n}'
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "keep.txt"
    target.write_text("original")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("tcv_helpers.io.os.replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"half")
    assert target.read_text() == "original"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


class BadFile(Exception):
    """Stands in for a caller's own error type (SlurmError, SweepError, ...)."""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: 1\nb: [2, 3]\n", {"a": 1, "b": [2, 3]}),
        ("", {}),
        ("# only a comment\n", {}),
    ],
)
def test_read_yaml_mapping(tmp_path, text, expected):
    path = tmp_path / "ok.yaml"
    path.write_text(text)
    assert read_yaml_mapping(path) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, r"Preset '.*nope\.yaml' does not exist\."),
        ("a: [1\n", r"Preset '.*nope\.yaml' is not valid YAML at line 2, column 1: "),
        ("- a\n- b\n", r"Preset '.*nope\.yaml' must hold a mapping with resources, not a list\."),
        ("just text\n", r"must hold a mapping with resources, not a str\."),
    ],
)
def test_read_yaml_mapping_raises_the_callers_error_naming_the_file(tmp_path, text, message):
    path = tmp_path / "nope.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(BadFile, match=message):
        read_yaml_mapping(path, error=BadFile, what="Preset", holds="a mapping with resources")


def test_read_yaml_mapping_defaults_to_value_error(tmp_path):
    path = tmp_path / "bytes.yaml"
    path.write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(ValueError, match=r"YAML file '.*bytes\.yaml' cannot be read"):
        read_yaml_mapping(path)


def test_what_a_command_writes_is_readable_by_others(tmp_path, umask):
    """From the command line: a dataset written by `tcv data synth` (manifest, data.yaml, COCO
    json, all written atomically) can be read by another user, as a container's non-root user
    reads a mounted workspace."""
    from typer.testing import CliRunner

    from tcv_helpers.cli import app

    out = tmp_path / "synth"
    args = ["data", "synth", "--out", str(out), "--images", "6", "--cameras", "3"]
    result = CliRunner().invoke(app, [*args, "--sequences", "0", "--no-progress"])
    assert result.exit_code == 0, result.output
    written = [p for p in out.rglob("*") if p.is_file()]
    assert {p.name for p in written} >= {"manifest.csv", "data.yaml"}
    private = [str(p.relative_to(out)) for p in written if mode(p) & 0o044 != 0o044]
    assert private == [], "files only their owner can read"
