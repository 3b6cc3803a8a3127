"""The release build (``tcv release``): the asset hub's files and their registry entries.

A release is a tag ``v<version>`` plus files uploaded to its GitHub release (CONTRIBUTING.md,
"Releasing"). This module makes those files from local folders:

- ``manaus-traffic.zip`` from the real sample data's ``manaus-traffic/`` folder, built
  deterministically (sorted members, fixed timestamps and permissions, no compression), so the
  same folder gives the same sha256 on any machine;
- the two highway videos, copied;
- ``checkpoint-<profile>-<dataset>.pt`` from each workspace's ``models/best.pt`` and the
  ``models/best.meta.json`` written beside it by training;

and writes their entries (file, sha256, size, licence, citation, meta) to ``OUT/assets.json``,
optionally merged into another registry file (the packaged ``tcv_helpers/resources/assets.json``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tcv_helpers.data.hub import Asset, checkpoint_asset, parse_registry, sha256_of
from tcv_helpers.io import atomic_write_json

MANAUS = "manaus-traffic"
MANAUS_LICENSE = "CC BY 4.0"
MANAUS_CITATION = (
    '"Manaus_traffic" v5 by tamaturgo, Roboflow Universe '
    "(universe.roboflow.com/tamaturgo/manaus_traffic/dataset/5), CC BY 4.0"
)
MANAUS_DESCRIPTION = (
    "Real frames from fixed city and highway cameras in Manaus, Brazil (Roboflow YOLO export: "
    "data.yaml, train/ valid/ test/; classes biker, car, cyclist, people, truck)."
)
VIDEO_LICENSE = (
    "MIT for the bgslibrary repository; the clips are third-party research footage of "
    "undocumented provenance: use them for tests and demos only"
)
VIDEO_CITATION = "dataset/ folder of the andrewssobral/bgslibrary repository (github.com/andrewssobral/bgslibrary)"
VIDEOS = {
    "highway-cctv-a": "A highway CCTV view with an on-screen timestamp, traffic in both "
    "directions (320x240, 25 fps, 750 frames; no labels).",
    "highway-cctv-b": 'A fixed camera above a highway, the "highway" background-subtraction '
    "sequence (320x240, 60 fps, 1700 frames; no labels).",
}
# What each course dataset key credits, for the checkpoints trained on it.
TRAINED_ON = {
    "synthetic": ("the course's synthetic set (CC0)", "the traffic-cams-cv synthetic set"),
    MANAUS: ('"Manaus_traffic" v5 by tamaturgo (CC BY 4.0)', MANAUS_CITATION),
}
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
ZIP_ATTR = 0o100644 << 16  # a regular file, rw-r--r--
ZIP_UNIX = 3  # "made on Unix", whatever the machine, so the bytes do not depend on it
NAME_OK = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
PUBLIC = 0o644  # release files are read by others (a mirror on a shared filesystem, a web server)
ABOUT = (
    "The course asset hub's registry (tcv_helpers.data.hub): name -> file, sha256, size, "
    "licence, citation. Written by `tcv release`; see CONTRIBUTING.md, Releasing."
)


@dataclass(frozen=True)
class ReleaseResult:
    """What a release build made.

    Attributes:
        out: The release folder (upload every file in it except ``assets.json``).
        assets: The assets built this time, by name.
        assets_json: ``OUT/assets.json``, the registry entries of the folder.
        registry: The registry file the entries were merged into, if any.
    """

    out: Path
    assets: dict[str, Asset]
    assets_json: Path
    registry: Path | None = None


def deterministic_zip(folder: str | os.PathLike, dest: str | os.PathLike, *, top: str) -> Path:
    """Zips a folder so that the same files give the same bytes on any machine.

    Members are the folder's files (hidden ones left out) under ``top/``, in sorted order, with
    the timestamp 1980-01-01, permissions rw-r--r-- and no compression (images are compressed
    already). The zip is written to a temporary file and renamed into place.

    Args:
        folder: The folder to pack.
        dest: The zip file to write.
        top: The single top folder inside the zip.

    Returns:
        ``dest``.

    Raises:
        ValueError: If ``folder`` is not a folder or holds no files.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder, so it cannot be zipped.")
    files = sorted(
        (p for p in root.rglob("*") if p.is_file()),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    files = [
        p for p in files if not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    if not files:
        raise ValueError(f"{root} holds no files to zip.")
    target = Path(dest)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED) as zf:
                for path in files:
                    info = zipfile.ZipInfo(f"{top}/{path.relative_to(root).as_posix()}", ZIP_DATE)
                    info.compress_type = zipfile.ZIP_STORED
                    info.external_attr = ZIP_ATTR
                    info.create_system = ZIP_UNIX
                    zf.writestr(info, path.read_bytes())
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, PUBLIC)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def _copy(source: Path, dest: Path) -> Path:
    """Copies a file atomically (a temporary file renamed into place), readable by all."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.chmod(tmp, PUBLIC)
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest


def _asset(name: str, file: Path, **fields: Any) -> Asset:
    return Asset(
        name=name, file=file.name, sha256=sha256_of(file), size=file.stat().st_size, **fields
    )


def build_data_assets(sample_data: str | os.PathLike, out: str | os.PathLike) -> list[Asset]:
    """Builds the data assets from the real sample data folder.

    Args:
        sample_data: The folder holding ``manaus-traffic/`` and ``videos/highway-cctv-{a,b}.avi``
            (the shared data's layout).
        out: The release folder.

    Returns:
        The assets ``manaus-traffic`` (a zip), ``highway-cctv-a`` and ``highway-cctv-b``.

    Raises:
        ValueError: If a part of the sample data is missing (naming it).
    """
    source, out = Path(sample_data), Path(out)
    manaus = source / MANAUS
    if not (manaus / "data.yaml").is_file():
        raise ValueError(
            f"{manaus / 'data.yaml'} does not exist: --sample-data must be the folder that holds "
            f"{MANAUS}/ and videos/."
        )
    videos = {name: source / "videos" / f"{name}.avi" for name in VIDEOS}
    for path in videos.values():
        if not path.is_file():
            raise ValueError(f"{path} does not exist: the sample data lacks a highway video.")
    images = {
        split: sum(1 for p in (manaus / split / "images").glob("*") if p.is_file())
        for split in ("train", "valid", "test")
        if (manaus / split / "images").is_dir()
    }
    built = [
        _asset(
            MANAUS,
            deterministic_zip(manaus, out / f"{MANAUS}.zip", top=MANAUS),
            kind="dataset",
            license=MANAUS_LICENSE,
            citation=MANAUS_CITATION,
            description=MANAUS_DESCRIPTION,
            meta={"images": images, "source": "tamaturgo/manaus_traffic/5"},
        )
    ]
    for name, path in videos.items():
        built.append(
            _asset(
                name,
                _copy(path, out / path.name),
                kind="video",
                license=VIDEO_LICENSE,
                citation=VIDEO_CITATION,
                description=VIDEOS[name],
            )
        )
    return built


def read_checkpoint_meta(workspace: str | os.PathLike) -> dict[str, Any]:
    """Reads a workspace's ``models/best.meta.json`` (profile, dataset, imgsz, names, ...).

    Raises:
        ValueError: If the file is missing, not JSON, or lacks a usable ``profile`` or
            ``dataset`` (a model trained on a custom dataset is not a course checkpoint).
    """
    path = Path(workspace) / "models" / "best.meta.json"
    if not path.is_file():
        raise ValueError(
            f"{path} does not exist: a checkpoint needs the metadata training writes beside "
            "best.pt (run the course again with this version, or write it with "
            "tcv_helpers.model.train.write_model_meta)."
        )
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}.") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path} must hold a JSON object with profile and dataset.")
    for key in ("profile", "dataset"):
        value = meta.get(key)
        if value is None and key == "dataset":
            raise ValueError(
                f"{path}: 'dataset' is null, so the model was trained on a custom dataset and "
                "cannot be published as a course checkpoint."
            )
        if not isinstance(value, str) or not NAME_OK.fullmatch(value):
            raise ValueError(
                f"{path}: field {key!r} must be a course name (lower case, digits, - _ .), "
                f"not {value!r}."
            )
    return meta


def build_checkpoint(workspace: str | os.PathLike, out: str | os.PathLike) -> Asset:
    """Publishes a workspace's trained model as ``checkpoint-<profile>-<dataset>.pt``.

    Args:
        workspace: A course workspace (``tcv run``'s), holding ``models/best.pt`` and
            ``models/best.meta.json``.
        out: The release folder.

    Returns:
        The checkpoint asset, with the metadata in ``meta``.

    Raises:
        ValueError: If ``best.pt`` or its metadata is missing or unusable (naming the file).
    """
    weights = Path(workspace) / "models" / "best.pt"
    if not weights.is_file():
        raise ValueError(f"{weights} does not exist: train the course in that workspace first.")
    meta = read_checkpoint_meta(workspace)
    profile, dataset = meta["profile"], meta["dataset"]
    name = checkpoint_asset(profile, dataset)
    trained_on, credit = TRAINED_ON.get(dataset, (dataset, dataset))
    score = meta.get("map50")
    scored = (
        f", mAP50 {score:.3f} on its validation split"
        if isinstance(score, (int, float)) and not isinstance(score, bool)
        else ""
    )
    return _asset(
        name,
        _copy(weights, Path(out) / f"{name}.pt"),
        kind="checkpoint",
        license=(
            "AGPL-3.0 (trained with Ultralytics YOLO, whose licence covers the models it trains; "
            f"by the traffic-cams-cv course on {trained_on})"
        ),
        citation=f"traffic-cams-cv course checkpoint ({profile} profile), trained on {credit}",
        description=(
            f"YOLO weights of the course's {profile} profile trained on {dataset} "
            f"(imgsz {meta.get('imgsz', '?')}{scored})."
        ),
        meta=meta,
    )


def merge_registry(path: str | os.PathLike, entries: Mapping[str, Asset]) -> Path:
    """Merges assets into a registry file (created if missing), atomically, sorted by name.

    Entries with the same name are replaced; the others are kept.

    Raises:
        ValueError: If the existing file is malformed (naming it and the field).
    """
    file = Path(path)
    data: dict[str, Any] = {"about": ABOUT, "assets": {}}
    if file.is_file():
        text = file.read_text(encoding="utf-8")
        parse_registry(text, source=repr(str(file)))  # refuses a malformed file, naming it
        data = json.loads(text)
    merged = {**data["assets"], **{name: asset.to_dict() for name, asset in entries.items()}}
    data["assets"] = dict(sorted(merged.items()))
    atomic_write_json(file, data)
    os.chmod(file, PUBLIC)
    return file


def build_release(
    out: str | os.PathLike,
    *,
    sample_data: str | os.PathLike | None = None,
    workspaces: Iterable[str | os.PathLike] = (),
    registry: str | os.PathLike | None = None,
) -> ReleaseResult:
    """Builds the release files and their registry entries (``tcv release``).

    Args:
        out: The release folder; ``OUT/assets.json`` gets the entries (merged over the ones an
            earlier build left there).
        sample_data: The real sample data folder, for the data assets (None: none built).
        workspaces: Course workspaces whose trained model becomes a checkpoint asset.
        registry: A registry file to merge the entries into as well (the packaged
            ``tcv_helpers/resources/assets.json`` when releasing).

    Returns:
        What was built (:class:`ReleaseResult`).

    Raises:
        ValueError: If there is nothing to build, a part is missing or unusable, or two
            workspaces give the same checkpoint (each message names the file).
    """
    workspaces = [Path(w) for w in workspaces]
    if sample_data is None and not workspaces:
        raise ValueError("Nothing to release: give --sample-data, --workspace, or both.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    built: dict[str, Asset] = {}
    if sample_data is not None:
        built.update((a.name, a) for a in build_data_assets(sample_data, out))
    sources: dict[str, Path] = {}
    for workspace in workspaces:
        meta = read_checkpoint_meta(workspace)
        name = checkpoint_asset(meta["profile"], meta["dataset"])
        if name in sources:
            raise ValueError(
                f"{workspace} and {sources[name]} both hold a {meta['profile']} model trained on "
                f"{meta['dataset']}; give one workspace per profile and dataset."
            )
        sources[name] = workspace
        built[name] = build_checkpoint(workspace, out)
    assets_json = merge_registry(out / "assets.json", built)
    merged = merge_registry(registry, built) if registry is not None else None
    return ReleaseResult(out=out, assets=built, assets_json=assets_json, registry=merged)
