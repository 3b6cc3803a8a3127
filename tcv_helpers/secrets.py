"""Keeping API keys and tokens out of notebooks, logs and reports.

A secret is any environment variable whose name ends in ``_KEY``, ``_TOKEN`` or ``_SECRET``
(``ROBOFLOW_API_KEY``, ``HF_TOKEN``, ...). ``tcv run`` never passes one as a notebook parameter
and blanks its value out of every artifact it writes, in case a notebook prints it anyway.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

SECRET_SUFFIXES = ("_KEY", "_TOKEN", "_SECRET")
REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 4


def is_secret_name(name: str) -> bool:
    """True when a variable or parameter name marks a secret (``*_KEY``, ``*_TOKEN``, ``*_SECRET``)."""
    upper = name.upper()
    return any(upper.endswith(suffix) for suffix in SECRET_SUFFIXES)


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The values of the secret environment variables, longest first.

    Values shorter than :data:`MIN_SECRET_LENGTH` characters are left out: blanking every
    ``"1"`` out of a report would destroy it without protecting anything.
    """
    env = os.environ if environ is None else environ
    values = {v for k, v in env.items() if is_secret_name(k) and len(v) >= MIN_SECRET_LENGTH}
    return sorted(values, key=len, reverse=True)


def redact(text: str, values: Iterable[str]) -> str:
    """Replaces every occurrence of each secret value in ``text`` with ``[REDACTED]``."""
    for value in values:
        if value and value in text:
            text = text.replace(value, REDACTED)
    return text


def redact_tree(obj: Any, values: list[str]) -> Any:
    """Redacts secrets in every string of a JSON-like tree (plain dicts and lists); new object."""
    if not values:
        return obj
    if isinstance(obj, str):
        return redact(obj, values)
    if isinstance(obj, Mapping):
        return {k: redact_tree(v, values) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact_tree(v, values) for v in obj]
    return obj


def get_secret(name: str) -> str | None:
    """Reads a secret from the environment, or on Colab from its secret store (the key icon).

    The value is returned, never printed. Nothing is asked interactively: a notebook that needs
    a key and has none says so and goes on with the offline alternative.

    Args:
        name: The secret's name, e.g. ``"ROBOFLOW_API_KEY"``.

    Returns:
        The value, or None when it is not set anywhere.
    """
    value = os.environ.get(name, "").strip()
    if value:
        return value
    try:
        from google.colab import userdata  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        return (userdata.get(name) or "").strip() or None
    except Exception:
        return None
