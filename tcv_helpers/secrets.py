"""Keeping API keys and tokens out of notebooks, logs and reports.

A secret is any environment variable whose name ends in ``_KEY``, ``_TOKEN``, ``_SECRET``,
``_PASSWORD``, ``_PASSWD``, ``_PAT`` or ``_CREDENTIALS``, or whose last word ends in ``TOKEN``,
``SECRET``, ``PASSWORD`` or ``APIKEY`` (``ROBOFLOW_API_KEY``, ``HF_TOKEN``, ``NGROK_AUTHTOKEN``,
``GITHUB_PAT``, ``DB_PASSWORD``, ...), and any value read with :func:`get_secret` (Colab's secret
store included). ``tcv run`` never passes one as a notebook parameter and blanks its value out
of every artifact it writes, in case a notebook prints it anyway; :func:`redact_url` takes keys
and passwords out of a URL before it is written anywhere.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SECRET_SUFFIXES = ("_KEY", "_TOKEN", "_SECRET", "_PASSWORD", "_PASSWD", "_PAT", "_CREDENTIALS")
#: Endings of a name's last word that mark a secret too (``NGROK_AUTHTOKEN``, ``OPENAI_APIKEY``).
SECRET_WORD_ENDINGS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "APIKEY")
REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 4
#: Query parameters of a URL whose values are credentials (compared without case, ``-``, ``_``).
SECRET_QUERY_NAMES = frozenset(
    {"key", "apikey", "token", "accesstoken", "authtoken", "auth", "authorization", "password",
     "passwd", "pwd", "pass", "secret", "clientsecret", "sig", "signature", "credential",
     "xamzsignature", "xamzcredential", "xamzsecuritytoken", "session", "sessionid", "sid"}
)  # fmt: skip

_read_secrets: set[str] = set()


def is_secret_name(name: str) -> bool:
    """True when a variable or parameter name marks a secret (see the module's rule).

    Example:
        >>> [is_secret_name(n) for n in ("HF_TOKEN", "NGROK_AUTHTOKEN", "GITHUB_PAT", "TOKENS_USED")]
        [True, True, True, False]
    """
    upper = name.upper()
    last = upper.rsplit("_", 1)[-1]
    return upper.endswith(SECRET_SUFFIXES) or last.endswith(SECRET_WORD_ENDINGS)


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The values of the secret environment variables, longest first.

    Values shorter than :data:`MIN_SECRET_LENGTH` characters are left out: blanking every
    ``"1"`` out of a report would destroy it without protecting anything.
    """
    env = os.environ if environ is None else environ
    values = {v for k, v in env.items() if is_secret_name(k) and len(v) >= MIN_SECRET_LENGTH}
    if environ is None:  # this process's own secrets: those read from Colab's store too
        values |= {v for v in _read_secrets if len(v) >= MIN_SECRET_LENGTH}
    return sorted(values, key=len, reverse=True)


def redact_url(url: str, values: Iterable[str] | None = None) -> str:
    """A URL fit to be written down: without its password, its credential query parameters
    and any secret value.

    ``https://user:pw@host/cam.jpg?key=abc&size=2`` becomes
    ``https://user:[REDACTED]@host/cam.jpg?key=[REDACTED]&size=2``; a user name alone (a token
    used as one) is redacted too. Query parameters count as credentials by name
    (:data:`SECRET_QUERY_NAMES`, or a secret variable's name).

    Args:
        url: The URL.
        values: Secret values to blank anywhere in it (default: :func:`secret_values`).

    Example:
        >>> redact_url("https://cams.example/a.jpg?api_key=s3cr3t&w=640")
        'https://cams.example/a.jpg?api_key=[REDACTED]&w=640'
    """
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:{REDACTED}@{host}" if has_password else f"{REDACTED}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        secret = [
            re.sub(r"[^a-z0-9]", "", k.lower()) in SECRET_QUERY_NAMES or is_secret_name(k)
            for k, _ in pairs
        ]
        if any(secret):
            query = urlencode(
                [
                    (k, REDACTED if hidden else v)
                    for (k, v), hidden in zip(pairs, secret, strict=True)
                ],
                safe="[]",
            )
    text = urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return redact(text, secret_values() if values is None else values)


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

    The value is returned, never printed, and remembered: :func:`secret_values` (and so every
    redaction in this process) includes it, although Colab's store never puts it in the
    environment. Nothing is asked interactively: a notebook that needs a key and has none says
    so and goes on with the offline alternative.

    Args:
        name: The secret's name, e.g. ``"ROBOFLOW_API_KEY"``.

    Returns:
        The value, or None when it is not set anywhere.
    """
    value = os.environ.get(name, "").strip()
    if not value:
        try:
            from google.colab import userdata  # type: ignore[import-not-found]

            value = (userdata.get(name) or "").strip()
        except Exception:  # not on Colab, no such secret, or notebook access not granted
            value = ""
    if value:
        _read_secrets.add(value)  # redacted from now on, whatever the variable's name
    return value or None
