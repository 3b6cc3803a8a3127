"""One trust check before any weights file is unpickled.

A ``.pt`` (also ``.pth``, ``.pkl``, ``.ckpt``) file is a Python pickle: loading one runs whatever
code it holds, before a single weight is read. So every place in the course that loads such a
file (training, resuming, pruning, exporting, benchmarking, predicting, proposing labels) asks
:func:`check_weights` first, and a file is loaded only when it is

1. one the course wrote on this machine: training (every checkpoint Ultralytics saves), pruning,
   publishing. Each is recorded with its sha256 in a ledger in the course cache
   (``TCV_CACHE/trusted-weights.json``, :func:`vouch_for`); a copy with the same bytes is the
   same file;
2. registered with a pinned sha256: the pretrained weights in
   :data:`tcv_helpers.model.train.WEIGHTS` and the asset hub's checkpoints (those modules
   register their checksums with :func:`register_hashes`; a verified download is also recorded
   in the ledger, so other processes trust it without importing them);
3. inside a folder the caller trusts: the workspace's models folder of the notebook's own
   configuration (:func:`tcv_helpers.config.load_config` adds it, so a Colab runtime that
   finds notebook 05's model on Drive can use it), or ``trusted_dirs``;
4. vouched for by the caller: ``trusted=True`` in Python, ``--trust`` on the command line.

Anything else is refused in one sentence, before it is opened. ONNX files and OpenVINO folders
are not pickles and are not checked. This is a core module (every stage loads weights), so it
knows the registries only through what they register.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from tcv_helpers.io import atomic_write_json, cache_dir, exclusive_lock, sha256_of

#: File types that are Python pickles (PyTorch, Detectron2, Lightning checkpoints).
PICKLE_SUFFIXES = frozenset({".pt", ".pth", ".pkl", ".ckpt"})

#: The ledger of weights this course wrote, in the course cache.
LEDGER_FILE = "trusted-weights.json"

_TRUSTED_FOLDERS: set[Path] = set()
_HASH_SOURCES: dict[str, Callable[[], Iterable[str]]] = {}


class UntrustedWeights(ValueError):
    """A weights file (a pickle) whose origin the course cannot vouch for."""


def is_pickle(path: str | os.PathLike) -> bool:
    """True for the file types that run code when loaded (``.pt``, ``.pth``, ``.pkl``, ``.ckpt``)."""
    return Path(path).suffix.lower() in PICKLE_SUFFIXES


def trust_folder(folder: str | os.PathLike) -> None:
    """Trusts every weights file inside ``folder`` for the rest of this process.

    :func:`tcv_helpers.config.load_config` calls it for the workspace's models folder: the
    workspace is the learner's own, chosen in the notebook's parameters.
    """
    _TRUSTED_FOLDERS.add(Path(folder).resolve())


def trusted_folders() -> tuple[Path, ...]:
    """The folders trusted in this process (see :func:`trust_folder`)."""
    return tuple(sorted(_TRUSTED_FOLDERS))


def ledger_path() -> Path:
    """The ledger file: ``trusted-weights.json`` in the course cache (``TCV_CACHE``)."""
    return cache_dir() / LEDGER_FILE


def _read_ledger() -> dict[str, dict[str, str]]:
    """The ledger's entries (path -> sha256, made_by, at); empty when missing or unreadable."""
    try:
        data = json.loads(ledger_path().read_text(encoding="utf-8"))
        files = data.get("files", {}) if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # an unreadable ledger trusts nothing; the next vouch_for rewrites it
    return {str(k): v for k, v in files.items() if isinstance(v, dict) and "sha256" in v}


def vouch_for(path: str | os.PathLike, *, made_by: str) -> str:
    """Records a weights file this course just wrote, so later loads accept it.

    The entry for a path replaces the one before it (``last.pt`` changes every epoch), and
    entries whose file is gone are dropped, so the ledger stays as small as the files on disk.

    Args:
        path: The file written.
        made_by: What wrote it (``train``, ``prune``), kept in the ledger for a person reading it.

    Returns:
        The file's sha256.
    """
    file = Path(path).resolve()
    digest = sha256_of(file)
    with exclusive_lock(  # waits: parallel trainings each add their files
        ledger_path().with_suffix(".lock"), what="recording trusted weights", wait=True
    ):
        files = {k: v for k, v in _read_ledger().items() if Path(k).exists()}
        files[str(file)] = {
            "sha256": digest,
            "made_by": made_by,
            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        atomic_write_json(
            ledger_path(),
            {
                "about": "Weights files traffic-cams-cv wrote on this machine (path -> sha256); "
                "only files whose sha256 is here, registered, or in a trusted folder are loaded.",
                "files": files,
            },
        )
    return digest


def register_hashes(source: str, supplier: Callable[[], Iterable[str]]) -> None:
    """Adds a registry of pinned checksums: ``supplier()`` is asked at every check.

    Args:
        source: Its name (registering the same name again replaces it).
        supplier: Returns the sha256 of each registered weights file (read when checking, so a
            registry that changes, such as ``TCV_ASSETS_REGISTRY``, is followed).
    """
    _HASH_SOURCES[source] = supplier


def _registered_hashes() -> set[str]:
    """The sha256 of every registered weights file (a registry that fails adds nothing)."""
    hashes: set[str] = set()
    for supplier in list(_HASH_SOURCES.values()):
        with contextlib.suppress(OSError, ValueError, KeyError):
            hashes.update(supplier())
    return hashes


def why_trusted(
    path: str | os.PathLike, *, trusted_dirs: tuple[str | os.PathLike, ...] = ()
) -> str | None:
    """Why the course may load ``path`` (one phrase), or None when it may not.

    Args:
        path: An existing weights file.
        trusted_dirs: Folders the caller trusts besides :func:`trusted_folders`.
    """
    file = Path(path).resolve()
    folders = [Path(folder).resolve() for folder in trusted_dirs] + list(_TRUSTED_FOLDERS)
    for folder in folders:
        if file.is_relative_to(folder):
            return f"inside the trusted folder {folder}"
    digest = sha256_of(file)
    if digest in _registered_hashes():
        return "registered with its sha256"
    if any(entry.get("sha256") == digest for entry in _read_ledger().values()):
        return "written by this course on this machine"
    return None


def check_weights(
    path: str | os.PathLike,
    *,
    trusted: bool = False,
    trusted_dirs: tuple[str | os.PathLike, ...] = (),
) -> Path:
    """Refuses a weights pickle of unknown origin, before anything opens it.

    Args:
        path: What is about to be loaded: a ``.pt`` (checked), or an ONNX file, OpenVINO
            folder, ``.yaml`` architecture... (not pickles: returned unchecked).
        trusted: The caller vouches for the file (it made it itself).
        trusted_dirs: Folders whose files the caller trusts (the workspace's models folder).

    Returns:
        ``path`` as a ``Path``.

    Raises:
        FileNotFoundError: If a weights file does not exist.
        UntrustedWeights: If nothing vouches for it (see the module's rules).
    """
    file = Path(path)
    if not is_pickle(file) or file.is_dir():
        return file
    if not file.is_file():
        raise FileNotFoundError(f"{file} does not exist: train a model first (notebook 05).")
    if trusted or why_trusted(file, trusted_dirs=trusted_dirs) is not None:
        return file
    raise UntrustedWeights(
        f"{file} was not loaded: it is not a file this course wrote, nor registered with a "
        "pinned sha256, nor in the workspace's models folder, and a "
        f"{file.suffix} file is a Python pickle that runs whatever code it holds when loaded. "
        "If you made it yourself, pass trusted=True (on the command line: --trust); for "
        "published weights, add them with their sha256 to tcv_helpers.model.train.WEIGHTS."
    )
