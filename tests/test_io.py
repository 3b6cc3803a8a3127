import pytest

from tcv_helpers.io import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    read_yaml_mapping,
)


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
