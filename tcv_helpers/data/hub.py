"""The course asset hub (COURSE.md section 9): named files, downloaded once, verified.

Everything a notebook may download is a named asset in a registry: the real sample camera set
(a zip of the Manaus frames), the two highway videos, and the course's trained checkpoints per
profile and dataset, each with its file, sha256, size, licence and citation. The registry is
``tcv_helpers/resources/assets.json``; ``TCV_ASSETS_REGISTRY`` names an extra registry file whose
entries are merged over it (``tcv release`` writes one).

Files come from the GitHub release of the installed version (``v<version>``), or from the mirror
that ``TCV_ASSETS_URL`` names: an ``http(s)://`` URL, or a folder on a shared filesystem (an HPC
mirror). `pooch <https://www.fatiando.org/pooch>`_ does the HTTP part: one download into
``cache_dir()/assets`` with a progress bar, a timeout, retries, and a temporary file that becomes
the cached file only once its sha256 matches the registry. A file already cached with the right
checksum is used without any network access.

Example:
    >>> from tcv_helpers.data import hub
    >>> got = hub.try_fetch("manaus-traffic", folder=True)
    >>> print(got.message)  # one sentence: where it came from, its licence and citation
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from tcv_helpers.io import (  # CACHE_ENV, cache_dir and sha256_of: the hub's interface too
    CACHE_ENV,  # noqa: F401
    cache_dir,
    new_file_mode,
    new_folder_mode,
    replace_into_place,
    sha256_of,
)
from tcv_helpers.trust import is_pickle, register_hashes, vouch_for

ASSETS_URL_ENV = "TCV_ASSETS_URL"
ASSETS_REGISTRY_ENV = "TCV_ASSETS_REGISTRY"
RELEASE_URL = "https://github.com/traffic-cams-cv/traffic-cams-cv/releases/download/v{version}/"
KINDS = ("dataset", "video", "checkpoint")
REQUIRED_FIELDS = ("file", "sha256", "size", "kind", "license", "citation")
# Connect and read timeouts in seconds, and extra attempts after a failed download (pooch waits
# 1 s, then 2 s, between them).
TIMEOUT = (10.0, 60.0)
RETRIES = 2
SHORT = 12  # hex digits of a checksum shown in messages


class AssetUnavailable(RuntimeError):
    """An asset cannot be had here; the message is one sentence: what, from where, why, what instead."""


class ChecksumMismatch(AssetUnavailable):
    """A downloaded or mirrored file does not match the registry's sha256; it was not kept."""


@dataclass(frozen=True)
class Asset:
    """One named file of the hub.

    Attributes:
        name: Registry name (``manaus-traffic``, ``checkpoint-smoke-synthetic``).
        file: File name, relative to the hub's base URL.
        sha256: Its checksum (64 lower-case hex digits).
        size: Its size in bytes.
        kind: ``dataset`` (a zip), ``video`` or ``checkpoint``.
        license: Licence of the file.
        citation: Credit to give when showing it.
        description: One sentence.
        meta: Extra facts; checkpoints: ``profile``, ``dataset``, ``imgsz``, ``names``,
            ``map50``, ``seed``.
    """

    name: str
    file: str
    sha256: str
    size: int
    kind: str
    license: str
    citation: str
    description: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        problem = _entry_problem(self)
        if problem:
            field_name, why = problem
            raise ValueError(f"Asset {self.name!r}: field {field_name!r} {why}.")

    @classmethod
    def from_dict(cls, name: str, entry: Any, *, source: str = "the registry") -> Asset:
        """Builds an asset from a registry entry, naming ``source`` and the field on any problem.

        Args:
            name: The entry's name.
            entry: The entry (a mapping with :data:`REQUIRED_FIELDS`, and optionally
                ``description`` and ``meta``).
            source: The registry file, for messages.

        Returns:
            The asset.

        Raises:
            ValueError: If the entry is not a mapping, lacks a field, or a field is invalid.
        """
        if not isinstance(entry, Mapping):
            raise ValueError(f"{source}: asset {name!r} must be a mapping of fields.")
        for key in REQUIRED_FIELDS:
            if key not in entry:
                raise ValueError(f"{source}: asset {name!r} lacks the field {key!r}.")
        meta = entry.get("meta") or {}
        if not isinstance(meta, Mapping):
            raise ValueError(f"{source}: asset {name!r}: field 'meta' must be a mapping.")
        try:
            return cls(
                name=name,
                file=entry["file"],
                sha256=entry["sha256"],
                size=entry["size"],
                kind=entry["kind"],
                license=entry["license"],
                citation=entry["citation"],
                description=entry.get("description", ""),
                meta=dict(meta),
            )
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """The registry entry (without the name, which is its key)."""
        return {
            "file": self.file,
            "sha256": self.sha256,
            "size": self.size,
            "kind": self.kind,
            "license": self.license,
            "citation": self.citation,
            "description": self.description,
            "meta": dict(self.meta),
        }


def _entry_problem(asset: Asset) -> tuple[str, str] | None:
    """The first invalid field of an asset and why, or None."""
    for key in ("file", "kind", "license", "citation", "description"):
        if not isinstance(getattr(asset, key), str):
            return key, "must be a string"
    parts = PurePosixPath(asset.file).parts
    if not asset.file or asset.file.startswith("/") or ".." in parts or "\\" in asset.file:
        return "file", f"must be a plain relative file name, not {asset.file!r}"
    digest = asset.sha256
    if not (
        isinstance(digest, str)
        and len(digest) == 64
        and all(c in "0123456789abcdef" for c in digest)
    ):
        return "sha256", f"must be 64 lower-case hex digits, not {digest!r}"
    if not isinstance(asset.size, int) or isinstance(asset.size, bool) or asset.size < 0:
        return "size", f"must be a byte count (an integer >= 0), not {asset.size!r}"
    if asset.kind not in KINDS:
        return "kind", f"must be one of {', '.join(KINDS)}, not {asset.kind!r}"
    return None


@dataclass(frozen=True)
class Fetched:
    """The outcome of :func:`try_fetch`.

    Attributes:
        path: The verified file (or extracted folder), or None when it could not be had.
        message: One sentence for the notebook: where it came from and its licence, or why not.
    """

    path: Path | None
    message: str

    @property
    def ok(self) -> bool:
        """True when the asset was had."""
        return self.path is not None


def read_registry(path: str | os.PathLike) -> dict[str, Asset]:
    """Reads a registry file (``{"assets": {name: entry, ...}}``).

    Args:
        path: The JSON file.

    Returns:
        Its assets by name.

    Raises:
        ValueError: If the file does not exist, is not JSON, has no ``assets`` mapping, or an
            entry lacks a field or has an invalid one; the message names the file and the field.
    """
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"Asset registry {str(file)!r} does not exist.")
    return parse_registry(file.read_text(encoding="utf-8"), source=repr(str(file)))


def parse_registry(text: str, *, source: str) -> dict[str, Asset]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"Asset registry {source} is not valid JSON (line {exc.lineno}): {exc.msg}."
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("assets"), dict):
        raise ValueError(f"Asset registry {source} must hold an 'assets' mapping of name to entry.")
    return {
        name: Asset.from_dict(name, entry, source=f"Asset registry {source}")
        for name, entry in data["assets"].items()
    }


def packaged_registry() -> Path:
    """The registry file that ships with the package (``tcv_helpers/resources/assets.json``)."""
    return Path(str(resources.files("tcv_helpers") / "resources" / "assets.json"))


def assets() -> dict[str, Asset]:
    """Every asset the hub knows: the packaged registry, with ``TCV_ASSETS_REGISTRY`` merged over it.

    Raises:
        ValueError: If a registry file is missing or malformed (naming the file and the field).
    """
    known = read_registry(packaged_registry())
    extra = os.environ.get(ASSETS_REGISTRY_ENV, "").strip()
    if extra:
        known.update(read_registry(Path(extra).expanduser()))
    return known


register_hashes("the asset hub's checkpoints (tcv_helpers.data.hub)", lambda: (
    asset.sha256 for asset in assets().values() if is_pickle(asset.file)
))  # fmt: skip


def describe_assets() -> list[dict[str, Any]]:
    """The registry as rows for a table: name, kind, file, size in MB, licence and citation."""
    return [
        {
            "name": a.name,
            "kind": a.kind,
            "file": a.file,
            "size_mb": round(a.size / 1e6, 1),
            "license": a.license,
            "citation": a.citation,
        }
        for a in assets().values()
    ]


def base_url() -> str:
    """Where assets come from: ``TCV_ASSETS_URL``, else the GitHub release of this version.

    Returns:
        An ``http(s)://`` URL ending in ``/``, or a local folder path as it was given.
    """
    value = os.environ.get(ASSETS_URL_ENV, "").strip()
    if not value:
        from tcv_helpers import __version__

        return RELEASE_URL.format(version=__version__)
    if value.startswith(("http://", "https://")) and not value.endswith("/"):
        return value + "/"
    return value


def checkpoint_asset(profile: str, dataset: str) -> str:
    """The hub name of the course checkpoint for a profile and dataset key."""
    return f"checkpoint-{profile}-{dataset}"


def get_asset(name: str) -> Asset:
    """The registered asset called ``name``.

    Raises:
        KeyError: For an unknown name, listing the known ones.
    """
    known = assets()
    if name not in known:
        raise KeyError(
            f"Unknown asset {name!r}; the hub knows: {', '.join(sorted(known)) or 'nothing'}."
        )
    return known[name]


def _mirror_folder(base: str) -> Path | None:
    """The local folder a base names (a path or a ``file://`` URL), or None for a web URL."""
    if base.startswith(("http://", "https://")):
        return None
    if base.startswith("file://"):
        return Path(url2pathname(unquote(urlparse(base).path)))
    return Path(base).expanduser()


@contextlib.contextmanager
def _quiet_pooch() -> Iterator[None]:
    """Silences pooch's "Downloading file ..." log lines: the caller gets its own message."""
    import pooch

    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


class _HashingDownloader:
    """Wraps pooch's HTTP downloader and remembers the sha256 of what it last wrote."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.last_sha256: str | None = None

    def __call__(self, url: str, output_file: Any, pooch: Any, check_only: bool = False) -> Any:
        self.last_sha256 = None
        result = self.inner(url, output_file, pooch, check_only=check_only)
        if not check_only and isinstance(output_file, (str, os.PathLike)):
            self.last_sha256 = sha256_of(output_file)
        return result


def _mismatch(asset: Asset, where: str, got: str | None) -> ChecksumMismatch:
    got_text = f"{got[:SHORT]}…" if got else "something else"
    return ChecksumMismatch(
        f"Asset {asset.name!r} from {where} has sha256 {got_text} but the registry expects "
        f"{asset.sha256[:SHORT]}…; the file was not kept."
    )


def _download(asset: Asset, base: str, target: Path, *, progress: bool) -> None:
    """Downloads ``asset`` from an http(s) base into ``target`` with pooch, verified."""
    import pooch
    import requests

    url = base + asset.file
    downloader = _HashingDownloader(pooch.HTTPDownloader(progressbar=progress, timeout=TIMEOUT))
    store = pooch.Pooch(
        path=target.parent,
        base_url=base,
        registry={asset.file: f"sha256:{asset.sha256}"},
        retry_if_failed=RETRIES,
    )
    try:
        with _quiet_pooch():
            fetched = store.fetch(asset.file, downloader=downloader)
        os.chmod(fetched, new_file_mode())  # pooch's temporary file was private (0600)
    except ValueError:  # pooch: the hash differs (the temporary file is already deleted)
        raise _mismatch(asset, url, downloader.last_sha256) from None
    except requests.RequestException as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        why = f"{type(exc).__name__} {status}" if status else type(exc).__name__
        raise AssetUnavailable(
            f"Asset {asset.name!r} could not be downloaded from {url} ({why}); check the "
            f"connection, or set {ASSETS_URL_ENV} to a mirror."
        ) from None


def _copy_from_mirror(asset: Asset, folder: Path, target: Path) -> None:
    """Copies ``asset`` from a local mirror folder into ``target``, verified (no pooch)."""
    source = folder / asset.file
    if not source.is_file():
        raise AssetUnavailable(
            f"Asset {asset.name!r} is not in the mirror folder {folder} ({ASSETS_URL_ENV}): "
            f"{asset.file} is missing there; copy the release files into it."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        got = sha256_of(tmp)
        if got != asset.sha256:
            raise _mismatch(asset, str(source), got)
        replace_into_place(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _fetch(name: str, *, progress: bool) -> tuple[Asset, Path, str]:
    """Fetches an asset; returns it, its cached file, and where it came from (for messages)."""
    asset, target, where = _fetch_verified(name, progress=progress)
    if is_pickle(target):  # a checkpoint: loadable by any process (tcv_helpers.trust)
        vouch_for(target, made_by=f"asset hub, {name}, sha256 verified")
    return asset, target, where


def _fetch_verified(name: str, *, progress: bool) -> tuple[Asset, Path, str]:
    asset = get_asset(name)
    target = cache_dir() / "assets" / asset.file
    if target.is_file() and sha256_of(target) == asset.sha256:
        return asset, target, "the cache"
    base = base_url()
    folder = _mirror_folder(base)
    if folder is None:
        _download(asset, base, target, progress=progress)
        return asset, target, base + asset.file
    if not folder.is_dir():
        raise AssetUnavailable(
            f"Asset {name!r} cannot be fetched: {ASSETS_URL_ENV} is {base!r}, which is neither an "
            "http(s) URL nor an existing folder; fix it or unset it to use the course's release."
        )
    _copy_from_mirror(asset, folder, target)
    return asset, target, f"the mirror {folder}"


def fetch(name: str, *, progress: bool = True) -> Path:
    """Downloads an asset once into ``cache_dir()/assets`` and returns the verified file.

    A file already in the cache with the registry's sha256 is returned without any network
    access. Otherwise it is downloaded from :func:`base_url` (or copied from a mirror folder)
    into a temporary file, checked, and only then moved into place: a cut or corrupted download
    never remains as a good file.

    Args:
        name: The asset's registry name.
        progress: Show a download progress bar (on standard error).

    Returns:
        The cached file.

    Raises:
        KeyError: For an unknown name, listing the known ones.
        ChecksumMismatch: (an :class:`AssetUnavailable`) When the file differs from the registry.
        AssetUnavailable: When the hub cannot be reached; one sentence naming the URL and why.
        ValueError: If a registry file is malformed.
    """
    return _fetch(name, progress=progress)[1]


def _top_folder(root: Path) -> Path:
    """The folder that holds the archive's content: its single top folder if it has one."""
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    if not (root / "data.yaml").is_file() and len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return root


def _extract_once(asset: Asset, archive: Path) -> Path:
    """Extracts ``archive`` into ``cache_dir()/assets/<name>-<sha12>`` unless already there."""
    dest = archive.parent / f"{asset.name}-{asset.sha256[:SHORT]}"
    if dest.is_dir():
        return dest
    tmp = Path(tempfile.mkdtemp(dir=archive.parent, prefix=f".{dest.name}."))
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                for member in zf.namelist():
                    parts = PurePosixPath(member.replace("\\", "/")).parts
                    if member.startswith(("/", "\\")) or ".." in parts or ":" in member:
                        raise AssetUnavailable(
                            f"Asset {asset.name!r} ({archive.name}) was not extracted: its "
                            f"member {member!r} would escape the folder."
                        )
                zf.extractall(tmp)
        except zipfile.BadZipFile as exc:
            raise AssetUnavailable(
                f"Asset {asset.name!r} ({archive.name}) is not a readable zip ({exc}); "
                "the registry entry is wrong."
            ) from None
        tmp.chmod(new_folder_mode())  # mkdtemp's 0700 would hide the data from other users
        try:
            os.replace(tmp, dest)
        except OSError:
            if not dest.is_dir():  # another process got there first, or a real error
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def fetch_folder(name: str, *, progress: bool = True) -> Path:
    """Fetches a zip asset and extracts it once; returns the folder that holds its content.

    The zip is extracted into a temporary folder, then renamed to
    ``cache_dir()/assets/<name>-<sha256[:12]>``: a half-extracted folder is never used. Members
    that would land outside the folder are refused.

    Args:
        name: The asset's registry name (a ``.zip`` file, e.g. ``manaus-traffic``).
        progress: Show a download progress bar.

    Returns:
        The zip's single top folder if it has one (for a dataset: the folder with ``data.yaml``),
        else the extraction folder.

    Raises:
        KeyError: For an unknown name.
        ValueError: If the asset is not a zip.
        AssetUnavailable: As :func:`fetch`, or when the zip cannot be read or a dataset zip holds
            no ``data.yaml``.
    """
    _require_zip(get_asset(name))
    asset, archive, _ = _fetch(name, progress=progress)
    return _folder_of(asset, archive)


def _require_zip(asset: Asset) -> None:
    if not asset.file.endswith(".zip"):
        raise ValueError(
            f"Asset {asset.name!r} is a {asset.kind} ({asset.file}), not a zip: use fetch() for it."
        )


def _folder_of(asset: Asset, archive: Path) -> Path:
    """Extracts a verified zip once and returns the folder that holds its content."""
    folder = _top_folder(_extract_once(asset, archive))
    if asset.kind == "dataset" and not (folder / "data.yaml").is_file():
        raise AssetUnavailable(
            f"Asset {asset.name!r} ({asset.file}) holds no data.yaml at its top; the registry "
            "entry is wrong."
        )
    return folder


def try_fetch(name: str, *, folder: bool = False, progress: bool = True) -> Fetched:
    """Fetches an asset, or says in one sentence why it cannot; never raises AssetUnavailable.

    Args:
        name: The asset's registry name.
        folder: Extract a zip asset and return its folder (:func:`fetch_folder`).
        progress: Show a download progress bar.

    Returns:
        ``Fetched(path, message)``: the path and where it came from with its licence and
        citation, or ``None`` and why not.

    Raises:
        KeyError: For an unknown name (a mistake in the code, not in the network).
        ValueError: With ``folder=True`` for an asset that is not a zip, or a malformed registry.
    """
    if folder:
        _require_zip(get_asset(name))
    try:
        asset, path, where = _fetch(name, progress=progress)
        if folder:
            path = _folder_of(asset, path)
    except AssetUnavailable as exc:
        return Fetched(None, str(exc))
    return Fetched(path, f"{name}: {asset.file} from {where} ({asset.license}; {asset.citation}).")
