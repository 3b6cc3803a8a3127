"""Small file helpers: atomic writes, so a crash never leaves a half-written file, and one
reader of the YAML files that must hold a mapping (each error names the file)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Writes ``data`` to ``path`` atomically.

    The bytes go to a temporary file in the same folder, are flushed to disk, and the file is
    renamed over ``path``: readers see either the old file or the new one, never a partial one.

    Args:
        path: Destination file; its folder is created if missing.
        data: The content.

    Returns:
        The destination path.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Writes UTF-8 text atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    """Writes JSON (indented, UTF-8) atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_text(
        path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"
    )


def read_yaml_mapping(
    path: str | os.PathLike,
    *,
    error: type[Exception] = ValueError,
    what: str = "YAML file",
    holds: str = "a mapping",
) -> dict[str, Any]:
    """Reads a YAML file whose top level must be a mapping; an empty file gives ``{}``.

    Every problem raises the caller's own error type, naming the file, so a command can show
    the message as it is.

    Args:
        path: The file.
        error: The exception type to raise (e.g. ``SlurmError``); it is called with the message.
        what: What the file is, for messages (``"Preset"``, ``"Sweep file"``).
        holds: What the mapping holds, for the message when the top level is something else
            (``"a mapping with resources and activation"``).

    Returns:
        The mapping.

    Raises:
        error: If the file does not exist or cannot be read, is not valid YAML (with the line
            and column), or its top level is not a mapping.

    Example:
        >>> read_yaml_mapping("koa.yaml", error=SlurmError, what="Preset")  # doctest: +SKIP
        {'name': 'koa', 'resources': {...}, 'activation': {...}}
    """
    import yaml

    file = Path(path)
    name = repr(str(file))
    if not file.is_file():
        raise error(f"{what} {name} does not exist.")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{what} {name} cannot be read: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(f"{what} {name} is not valid YAML{where}: {problem}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise error(f"{what} {name} must hold {holds}, not a {type(data).__name__}.")
    return data
