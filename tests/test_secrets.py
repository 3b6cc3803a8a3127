import pytest

from tcv_helpers.secrets import (
    REDACTED,
    get_secret,
    is_secret_name,
    redact,
    redact_tree,
    secret_values,
)


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("ROBOFLOW_API_KEY", True),
        ("HF_TOKEN", True),
        ("aws_secret", True),
        ("FAKE_API_KEY", True),
        ("KEYBOARD", False),
        ("PATH", False),
        ("TOKENS_USED", False),
        ("MONKEY", False),
    ],
)
def test_secret_names(name, secret):
    assert is_secret_name(name) is secret


def test_secret_values_skip_short_ones_and_sort_longest_first():
    env = {"A_KEY": "abcd", "B_TOKEN": "abcdefgh", "C_SECRET": "1", "HOME": "/home/x"}
    assert secret_values(env) == ["abcdefgh", "abcd"]


def test_redact_text_and_tree():
    values = ["s3cr3t-value"]
    assert redact("key=s3cr3t-value!", values) == f"key={REDACTED}!"
    tree = {"cells": [{"outputs": [{"text": ["x s3cr3t-value"]}], "n": 3}]}
    out = redact_tree(tree, values)
    assert out["cells"][0]["outputs"][0]["text"] == [f"x {REDACTED}"]
    assert out["cells"][0]["n"] == 3
    assert tree["cells"][0]["outputs"][0]["text"] == ["x s3cr3t-value"], "original untouched"


def test_get_secret_reads_the_environment(monkeypatch):
    monkeypatch.setenv("ROBOFLOW_API_KEY", "  abc  ")
    assert get_secret("ROBOFLOW_API_KEY") == "abc"
    monkeypatch.delenv("ROBOFLOW_API_KEY")
    assert get_secret("ROBOFLOW_API_KEY") is None
