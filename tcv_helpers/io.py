"""Small file helpers: atomic writes, so a crash never leaves a half-written file, one reader of
the YAML files that must hold a mapping (each error names the file), the course cache and file
checksums."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

#: The variable naming the course cache (downloads, the ledger of trusted weights).
CACHE_ENV = "TCV_CACHE"


def cache_dir() -> Path:
    """Where downloads are kept: ``TCV_CACHE``, else ``~/.cache/traffic-cams-cv``."""
    return Path(
        os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "traffic-cams-cv"
    ).expanduser()


def sha256_of(path: str | os.PathLike) -> str:
    """The sha256 of a file (lower-case hex), read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def current_umask() -> int:
    """The process's umask (the permission bits new files do *not* get)."""
    try:  # Linux says it without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and put back at once
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0666 minus the umask."""
    return 0o666 & ~current_umask()


def new_folder_mode() -> int:
    """The mode ``mkdir`` gives a new folder: 0777 minus the umask (``tempfile.mkdtemp``'s
    folders are 0700: a folder built there and renamed into place must be given this)."""
    return 0o777 & ~current_umask()


def file_mode_for(target: str | os.PathLike) -> int:
    """The mode a file written over ``target`` should get: the existing file's, else what
    ``open()`` gives a new file (0666 minus the umask).

    ``tempfile.mkstemp`` makes files 0600, private to their owner. Renamed into place unchanged,
    a report, a ``reference.json`` or a published ``best.pt`` would be unreadable to anyone else:
    another user of a shared folder, or the container's non-root user reading a mounted model.
    """
    try:
        return os.stat(target).st_mode & 0o7777
    except OSError:
        return new_file_mode()


def fsync_folder(folder: str | os.PathLike) -> None:
    """Flushes a folder's entries to disk, so a rename into it survives a power cut (POSIX;
    nothing to do on Windows, where folders cannot be opened)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a folder one may write but not read: the rename is done all the same
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems (network mounts) refuse: the rename itself is done
        pass
    finally:
        os.close(fd)


def replace_into_place(tmp: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Renames a finished temporary file over ``target`` (same folder) with the mode of
    :func:`file_mode_for`, then flushes the folder: the last step of every atomic write."""
    target = Path(target)
    os.chmod(tmp, file_mode_for(target))
    os.replace(tmp, target)
    fsync_folder(target.parent)
    return target


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Writes ``data`` to ``path`` atomically.

    The bytes go to a temporary file in the same folder, are flushed to disk, and the file is
    renamed over ``path``: readers see either the old file or the new one, never a partial one.
    A new file gets the mode ``open()`` would give it (0666 minus the umask), a replaced file
    keeps its mode (:func:`file_mode_for`).

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
        replace_into_place(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


class FolderBusy(RuntimeError):
    """Another process holds the lock of a folder this one wants to write into."""


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, *, what: str, wait: bool = False) -> Iterator[Path]:
    """Holds an exclusive lock on ``path`` (a lock file, created if missing) or refuses at once.

    Two processes appending to one manifest would interleave rows and race on each file; the
    second one is refused instead, with the first one's process id. The lock belongs to the
    open file, so the operating system releases it if the process dies: no stale lock.

    Args:
        path: The lock file, inside the folder it guards.
        what: What is being done, for the message (``"tcv data scrape into DIR"``).
        wait: Wait for the lock instead of refusing (for short critical sections, such as
            updating one shared file).

    Raises:
        FolderBusy: If another process (or another open of the same file) holds it and
            ``wait`` is False.
    """
    lock = Path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            if os.name == "posix":
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            else:  # Windows
                import msvcrt

                msvcrt.locking(fd, msvcrt.LK_LOCK if wait else msvcrt.LK_NBLCK, 1)
        except OSError:
            holder = (
                os.pread(fd, 32, 0).decode("ascii", "replace").strip() if os.name == "posix" else ""
            )
            by = f" (process {holder})" if holder.isdigit() else ""
            raise FolderBusy(
                f"{what}: another process{by} is writing into {lock.parent} now; wait for it to "
                f"finish, or choose another folder. (Lock file: {lock.name}.)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode("ascii"))
        yield lock
    finally:
        os.close(fd)


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


def link_or_copy(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """``target`` becomes a symbolic link to ``source`` (an atomic copy where links are
    impossible: some file systems, Windows without the right); the source is never touched.

    Returns:
        ``target``.
    """
    source, target = Path(source), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        target.symlink_to(source.resolve())
    except (OSError, NotImplementedError):
        atomic_write_bytes(target, source.read_bytes())
    return target


def write_path_list(paths: Iterable[str | os.PathLike], target: str | os.PathLike) -> Path:
    """A list of files, one absolute path per line (links not resolved), written atomically:
    Ultralytics reads such a ``.txt`` as a dataset split and finds each label beside its image."""
    return atomic_write_text(target, "".join(f"{Path(p).absolute().as_posix()}\n" for p in paths))
