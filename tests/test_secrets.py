import sys
import types

import pytest

from tcv_helpers import secrets
from tcv_helpers.secrets import (
    REDACTED,
    get_secret,
    is_secret_name,
    redact,
    redact_tree,
    redact_url,
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
        ("NGROK_AUTHTOKEN", True),
        ("DB_PASSWORD", True),
        ("GITHUB_PAT", True),
        ("OPENAI_APIKEY", True),
        ("SMTP_PASSWD", True),
        ("PATH_PATTERN", False),
        ("COMPAT", False),
        ("PASSWORD_MIN_LENGTH", False),
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


def test_a_secret_from_colabs_store_is_redacted_like_one_from_the_environment(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(secrets, "_read_secrets", set())
    colab = types.ModuleType("google.colab")
    colab.userdata = types.SimpleNamespace(get=lambda name: {"HF_TOKEN": " hf_colab_value "}[name])
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    assert "hf_colab_value" not in secret_values(), "not read yet"
    assert get_secret("HF_TOKEN") == "hf_colab_value"
    assert "hf_colab_value" in secret_values()
    assert redact("loaded hf_colab_value", secret_values()) == f"loaded {REDACTED}"
    assert secret_values({}) == [], "an explicit environment is taken as given"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://cams.example/a.jpg?w=640", "https://cams.example/a.jpg?w=640"),
        (
            "https://cams.example/a.jpg?api_key=s3cr3t&w=640",
            "https://cams.example/a.jpg?api_key=[REDACTED]&w=640",
        ),
        (
            "https://viewer:pa55@cams.example:8443/a.jpg",
            "https://viewer:[REDACTED]@cams.example:8443/a.jpg",
        ),
        ("https://ghp_tok@cams.example/a.jpg", "https://[REDACTED]@cams.example/a.jpg"),
        (
            "https://s3.example/a.jpg?X-Amz-Credential=AK&X-Amz-Signature=ff&X-Amz-Date=1",
            "https://s3.example/a.jpg?X-Amz-Credential=[REDACTED]&X-Amz-Signature=[REDACTED]"
            "&X-Amz-Date=1",
        ),
        (
            "https://cams.example/Token=x?ACCESS-TOKEN=y",
            "https://cams.example/Token=x?ACCESS-TOKEN=[REDACTED]",
        ),
    ],
)
def test_redact_url_takes_out_passwords_and_keys(url, expected):
    assert redact_url(url, values=[]) == expected


def test_redact_url_also_blanks_a_secret_value_anywhere(monkeypatch):
    monkeypatch.setenv("CAM_API_KEY", "abcdef123")
    assert redact_url("https://cams.example/abcdef123/a.jpg") == (
        f"https://cams.example/{REDACTED}/a.jpg"
    )
