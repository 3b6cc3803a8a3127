"""Where datasets come from: the synthetic set, the course's real camera set, Roboflow, your own.

:func:`load_dataset` takes the notebooks' ``DATASET`` parameter and returns a YOLO dataset in the
project taxonomy (COURSE.md section 6):

- ``"auto"``: the synthetic set in the smoke profile; the real camera set (``manaus-traffic``)
  in the workshop and full profiles when it can be had, else the synthetic set, saying why.
- ``"synthetic"``: the embedded synthetic set, generated at the profile's size.
- ``"manaus-traffic"``: real frames of city traffic cameras, fetched from the course's asset hub
  (:mod:`tcv_helpers.data.hub`, no key needed; its original is the Roboflow Universe dataset
  ``tamaturgo/manaus_traffic/5``).
- ``"workspace/project/version"``: any Roboflow Universe dataset (with ``ROBOFLOW_API_KEY``).
- a local folder with ``data.yaml``, or a ``.zip`` of one.

Real sets whose classes differ from the project's are written as a mapped copy under the
workspace's data folder, with a ``manifest.csv`` whose ``camera_id`` groups frames by source
camera or clip; classes that do not map are kept out and named in the message. The copy is
reused on the next call, so a notebook that loads the dataset again pays nothing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tcv_helpers.config import Profile
from tcv_helpers.data import hub
from tcv_helpers.data.dataset import Dataset
from tcv_helpers.data.formats import MANAUS_TO_PROJECT, map_classes, read_labels, write_labels
from tcv_helpers.data.labels import MANIFEST_COLUMNS
from tcv_helpers.io import atomic_write_json, atomic_write_text, new_folder_mode
from tcv_helpers.project import PROJECT_CLASSES
from tcv_helpers.secrets import get_secret

ROBOFLOW_KEY = "ROBOFLOW_API_KEY"
AUTO = "auto"
SYNTHETIC = "synthetic"
MANAUS = "manaus-traffic"
#: The file beside a copy made by :func:`load_dataset` recording what it was made from.
STAMP_FILE = ".tcv-source.json"
LAYOUT_VERSION = 2  # of the copies written here: a copy in an older layout is written again
#: The forms :func:`load_dataset` accepts, for error messages.
FORMS = (
    f'"{AUTO}", "{SYNTHETIC}", "{MANAUS}", a Roboflow id "workspace/project/version", '
    "or a local folder with data.yaml or a .zip of one"
)

#: Other names of the project's classes in public datasets (lower case). A name that is a
#: project class maps to itself; anything else is kept out and reported.
CLASS_SYNONYMS: dict[str, str] = {
    "cars": "car",
    "trucks": "truck",
    "lorry": "truck",
    "buses": "bus",
    "motorbike": "motorcycle",
    "motorbikes": "motorcycle",
    "motorcycles": "motorcycle",
    "biker": "motorcycle",
    "bike": "bicycle",
    "bikes": "bicycle",
    "bicycles": "bicycle",
    "cyclist": "bicycle",
    "people": "person",
    "persons": "person",
    "pedestrian": "person",
    "pedestrians": "person",
}

_ROBOFLOW_ID = re.compile(r"^[\w.-]+/[\w.-]+/\d+$")
_ROBOFLOW_NAME = re.compile(r"^(?P<stem>.+)_(?:jpe?g|png|bmp|webp)\.rf\.[0-9a-f]+$", re.IGNORECASE)


class DatasetUnavailable(RuntimeError):
    """A dataset cannot be had here (no key, no network, a bad checksum); the message says why."""


@dataclass(frozen=True)
class LoadedDataset:
    """A dataset ready on disk, and one sentence saying where it came from.

    Attributes:
        path: The dataset folder (it holds ``data.yaml``).
        message: What was used and why, for the notebook to print.
        fell_back: True when the dataset asked for could not be had and the synthetic set
            stands in for it.
        key: The registry name (``synthetic``, ``manaus-traffic``), or None for a Roboflow
            download or a local dataset. The course's checkpoints exist per key.
        real: True for real camera frames (the profile's real-data settings apply:
            :meth:`tcv_helpers.config.Config.for_dataset`).
    """

    path: Path
    message: str
    fell_back: bool = False
    key: str | None = None
    real: bool = False

    @property
    def data_yaml(self) -> Path:
        """The dataset's ``data.yaml``."""
        return self.path / "data.yaml"


@dataclass(frozen=True)
class DatasetEntry:
    """A dataset the course knows by name.

    Attributes:
        name: Registry name.
        kind: ``synthetic`` (generated) or ``hub`` (an asset of :mod:`tcv_helpers.data.hub`).
        description: One sentence.
        license: Licence of the data.
        source: Where the data originally comes from (a Roboflow ``workspace/project/version``).
        asset: The hub asset holding it (``hub`` entries).
        class_map: Source class name to project class (None: dropped on purpose).
        citation: Credit to give when showing it.
    """

    name: str
    kind: str
    description: str
    license: str
    source: str = ""
    asset: str = ""
    class_map: dict[str, str | None] = field(default_factory=dict)
    citation: str = ""


DATASETS: dict[str, DatasetEntry] = {
    SYNTHETIC: DatasetEntry(
        name=SYNTHETIC,
        kind="synthetic",
        description="The embedded synthetic traffic-camera set (tcv data synth), sized by the profile.",
        license="CC0 (generated by this course)",
    ),
    MANAUS: DatasetEntry(
        name=MANAUS,
        kind="hub",
        description="City traffic and CCTV cameras in Manaus, Brazil: biker, car, cyclist, people, truck.",
        license="CC BY 4.0",
        source="tamaturgo/manaus_traffic/5",
        asset=MANAUS,
        class_map=dict(MANAUS_TO_PROJECT),
        citation='"Manaus_traffic" v5 by tamaturgo, Roboflow Universe, CC BY 4.0',
    ),
}


def camera_id_from_name(file_name: str | os.PathLike) -> str:
    """The source camera (or clip) of an image, guessed from its file name.

    Roboflow renames every image ``<stem>_jpg.rf.<hash>.jpg``; the stem is the uploaded file's
    name, and the frame number at its end is dropped so that frames of one camera or clip share
    an id (``accident_frame191_jpg.rf.0c76….jpg`` gives ``accident_frame``).

    Args:
        file_name: The image file name (or path).

    Returns:
        The lower-case stem without its trailing frame digits and separators (the whole stem
        when nothing else is left).

    Example:
        >>> camera_id_from_name("accident_frame191_jpg.rf.0c7628ac722d8e28bb802efa67b21dbd.jpg")
        'accident_frame'
    """
    stem = Path(file_name).stem
    match = _ROBOFLOW_NAME.match(stem)
    if match:
        stem = match["stem"]
    stem = stem.lower()
    camera = stem.rstrip("0123456789").rstrip(" _-.")
    return camera or stem


def class_map_for(names: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Maps class names onto the project taxonomy by name: identity and :data:`CLASS_SYNONYMS`.

    Args:
        names: A dataset's class names.

    Returns:
        Source name to project class for the names that map (case and surrounding spaces are
        ignored); the others are absent, for :func:`~tcv_helpers.data.formats.map_classes` to
        keep out and report.

    Example:
        >>> class_map_for(["Car", "pedestrian", "traffic light"])
        {'Car': 'car', 'pedestrian': 'person'}
    """
    mapping = {}
    for name in names:
        key = str(name).strip().lower()
        target = key if key in PROJECT_CLASSES else CLASS_SYNONYMS.get(key)
        if target is not None:
            mapping[name] = target
    return mapping


def download_roboflow(
    source: str,
    dest: str | os.PathLike,
    *,
    model_format: str = "yolov11",
    api_key: str | None = None,
) -> Path:
    """Downloads a Roboflow dataset version with the ``roboflow`` package.

    Args:
        source: ``workspace/project/version``, e.g. ``tamaturgo/manaus_traffic/5``.
        dest: Folder to download into.
        model_format: Roboflow export format (``yolov11`` is the YOLO layout Ultralytics reads).
        api_key: The key (default: ``ROBOFLOW_API_KEY`` or Colab's secret store). Never printed.

    Returns:
        The dataset folder (with ``data.yaml``).

    Raises:
        DatasetUnavailable: Without a key, or when Roboflow cannot be reached: one sentence that
            says so and names the offline alternative.
        ValueError: If ``source`` is not ``workspace/project/version``.
    """
    parts = source.strip("/").split("/")
    if len(parts) != 3 or not parts[2].isdigit():
        raise ValueError(f"Roboflow source must be WORKSPACE/PROJECT/VERSION, got {source!r}.")
    key = api_key or get_secret(ROBOFLOW_KEY)
    if not key:
        raise DatasetUnavailable(
            f"No {ROBOFLOW_KEY} set, so {source} cannot be downloaded from Roboflow; "
            "use the embedded synthetic set (tcv data synth) or set the key (Colab: the key icon)."
        )
    import requests
    from roboflow import Roboflow

    workspace, project, version = parts
    try:
        dataset = (
            Roboflow(api_key=key).workspace(workspace).project(project).version(int(version))
            .download(model_format, location=str(dest), overwrite=True)
        )  # fmt: skip
    except (requests.RequestException, OSError) as exc:
        raise DatasetUnavailable(
            f"Roboflow could not be reached for {source} ({type(exc).__name__}); "
            "use the embedded synthetic set (tcv data synth) instead."
        ) from None
    except RuntimeError as exc:  # the roboflow package reports bad keys and missing projects so
        message = str(exc).replace(key, "[REDACTED]")
        raise DatasetUnavailable(f"Roboflow refused {source}: {message}") from None
    return Path(getattr(dataset, "location", dest))


def upload_for_labeling(
    images: list[str | os.PathLike],
    source: str,
    *,
    batch: str = "tcv-upload",
    api_key: str | None = None,
) -> int:
    """Uploads images to a Roboflow project so that people can label them there.

    Args:
        images: Image files.
        source: ``workspace/project`` (a version is not needed to upload).
        batch: Roboflow batch name, to find the upload in the annotation queue.
        api_key: The key (default: ``ROBOFLOW_API_KEY`` or Colab's secret store).

    Returns:
        Number of images uploaded.

    Raises:
        DatasetUnavailable: Without a key or network, in one sentence.
        FileNotFoundError: If an image does not exist (checked before anything is sent).
    """
    files = [Path(p) for p in images]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"Cannot upload missing image(s): {', '.join(missing[:5])}.")
    key = api_key or get_secret(ROBOFLOW_KEY)
    if not key:
        raise DatasetUnavailable(f"No {ROBOFLOW_KEY} set, so nothing can be uploaded to Roboflow.")
    import requests
    from roboflow import Roboflow

    workspace, project = source.strip("/").split("/")[:2]
    try:
        target = Roboflow(api_key=key).workspace(workspace).project(project)
        for path in files:
            target.upload(image_path=str(path), batch_name=batch)
    except (requests.RequestException, OSError) as exc:
        raise DatasetUnavailable(
            f"Roboflow could not be reached ({type(exc).__name__}); nothing more was uploaded."
        ) from None
    return len(files)


def _synthetic(workspace_data: Path, profile: Profile, seed: int) -> LoadedDataset:
    from tcv_helpers.data.synth import DATASET_LAYOUT, generate_dataset

    root = workspace_data / f"synthetic-{profile.name}-{seed}"
    stamp = root / ".complete"
    wanted = (
        f"images={profile.synth_images} cameras={profile.synth_cameras} seed={seed} "
        f"layout={DATASET_LAYOUT}\n"
    )
    if stamp.is_file() and stamp.read_text() == wanted:
        message = (
            f"Using the synthetic dataset already in {root.name} ({profile.synth_images} frames)."
        )
    else:
        generate_dataset(
            root, images=profile.synth_images, cameras=profile.synth_cameras, seed=seed
        )
        atomic_write_text(stamp, wanted)
        message = (
            f"Generated the synthetic dataset ({profile.synth_images} frames, "
            f"{profile.synth_cameras} cameras) in {root.name}."
        )
    return LoadedDataset(root, message, key=SYNTHETIC, real=False)


def _read_stamp(folder: Path) -> dict[str, Any]:
    """What a copy made by :func:`load_dataset` was made from ({} when unknown or unreadable)."""
    try:
        value = json.loads((folder / STAMP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _reusable(
    dest: Path, identity: str, mapping: Mapping[str, str | None]
) -> dict[str, Any] | None:
    """The stamp of ``dest`` when it is a finished copy of ``identity`` with ``mapping``."""
    stamp = _read_stamp(dest)
    same = (
        stamp.get("source") == identity
        and stamp.get("mapping") == dict(mapping)
        and stamp.get("layout") == LAYOUT_VERSION
    )
    return stamp if same and (dest / "data.yaml").is_file() else None


def _claim(dest: Path) -> None:
    """Refuses to replace a folder that :func:`load_dataset` did not write."""
    foreign = dest.is_dir() and not (dest / STAMP_FILE).is_file() and any(dest.iterdir())
    if foreign or dest.is_file():
        raise ValueError(
            f"{dest} exists and was not written by load_dataset, so it is not replaced: move it "
            "away, or give the dataset another name."
        )


def _replace_with(tmp: Path, dest: Path) -> None:
    """Puts a finished temporary folder in place of ``dest``."""
    tmp.chmod(new_folder_mode())  # mkdtemp's 0700 would hide the data from other users
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)


def _manifest_text(labelset: Any, source: str) -> str:
    """``manifest.csv`` (COURSE.md section 6) of a copy written by :func:`_write_course_layout`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*MANIFEST_COLUMNS, "boxes"])
    for image in labelset.images:
        split = "val" if image.split in ("valid", "validation") else image.split
        writer.writerow(
            [
                f"images/{split}/{image.file_name}",
                camera_id_from_name(image.file_name),
                "",
                source,
                "unknown",
                split,
                len(image.detections),
            ]
        )
    return buffer.getvalue()


def _write_course_layout(labelset: Any, root: Path) -> None:
    """Writes a label set in the layout ``tcv data synth`` writes, so every course step reads it.

    ``images/<split>/`` and ``annotations/instances_<split>.json`` (COCO: Detectron2 and
    pycocotools read it), ``labels/<split>/`` (YOLO) and a ``data.yaml`` without ``path:``;
    Roboflow's ``valid`` split is called ``val``, as in the rest of the course.
    """
    from dataclasses import replace

    from tcv_helpers.data.dataset import SPLIT_KEYS, write_data_yaml
    from tcv_helpers.data.labelset import LabelSet
    from tcv_helpers.data.yolo import yolo_lines

    renamed = {"valid": "val", "validation": "val"}
    course = LabelSet(
        classes=labelset.classes,
        images=[replace(im, split=renamed.get(im.split, im.split)) for im in labelset.images],
        root=labelset.root,
    )
    write_labels(course, root, "coco", copy_images=True)
    for image in course.images:
        label = root / "labels" / image.split / f"{Path(image.file_name).stem}.txt"
        atomic_write_text(label, "".join(f"{line}\n" for line in yolo_lines(image)))
    write_data_yaml(
        root / "data.yaml",
        names=course.classes,
        splits={s: f"images/{s}" for s in course.splits if s in SPLIT_KEYS},
        header="# A copy in the course's project classes, written by tcv_helpers.data.registry.\n"
        "# No `path:` key: the split folders are relative to this file's folder.",
    )


def _project_copy(
    src: Path, dest: Path, mapping: Mapping[str, str | None], *, source: str, identity: str
) -> dict[str, Any]:
    """Writes ``dest``: ``src`` with its classes mapped into the project taxonomy, a manifest
    and a stamp (written last, so an interrupted copy is never reused).

    Returns:
        The stamp: what was mapped, kept out and written.

    Raises:
        ValueError: If no class of ``src`` maps to a project class, or ``dest`` is a folder
            that :func:`load_dataset` did not write.
    """
    _claim(dest)
    labels = read_labels(src, "yolo")
    mapped, report = map_classes(labels, mapping, allow_unmapped=True)
    if not any(report.after.values()) and any(report.before.values()):
        raise ValueError(
            f"{src}: none of its classes ({', '.join(labels.classes)}) is a project class "
            f"({', '.join(PROJECT_CLASSES)}) or a known synonym of one; map them with "
            "tcv_helpers.data.formats.remap_dataset first."
        )
    stamp = {
        "layout": LAYOUT_VERSION,
        "source": identity,
        "mapping": dict(mapping),
        "renamed": {
            k: v for k, v in report.mapping.items() if v is not None and k.strip().lower() != v
        },
        "unmapped": report.unmapped,
        "dropped": report.dropped,
        "images": len(mapped),
        "cameras": len({camera_id_from_name(image.file_name) for image in mapped.images}),
        "boxes": report.after,
    }
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        _write_course_layout(mapped, tmp)
        atomic_write_text(tmp / "manifest.csv", _manifest_text(mapped, source))
        atomic_write_json(tmp / STAMP_FILE, stamp)
        _replace_with(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return stamp


def _copy_note(stamp: Mapping[str, Any]) -> str:
    """What a copy holds and what its class mapping did, as a clause."""
    note = f"{stamp.get('images', '?')} frames, {stamp.get('cameras', '?')} cameras or clips"
    renamed = stamp.get("renamed") or {}
    if renamed:
        note += "; classes mapped " + ", ".join(f"{k}->{v}" for k, v in renamed.items())
    left = {**(stamp.get("unmapped") or {}), **(stamp.get("dropped") or {})}
    if left:
        kept_out = ", ".join(f"{name!r} ({count} boxes)" for name, count in left.items())
        note += f"; kept out, not in the project taxonomy: {kept_out}"
    return note


def _from_hub(entry: DatasetEntry, data_dir: Path) -> LoadedDataset:
    dest = data_dir / entry.name
    asset = hub.assets().get(entry.asset)
    identity = f"hub:{entry.asset}:{asset.sha256 if asset else ''}"
    stamp = _reusable(dest, identity, entry.class_map)
    how = "prepared earlier"
    if stamp is None:
        folder = hub.fetch_folder(entry.asset)
        stamp = _project_copy(folder, dest, entry.class_map, source=entry.name, identity=identity)
        how = "fetched from the course's asset hub"
    return LoadedDataset(
        dest,
        f"Using the real camera set {entry.name}, {how}, in {dest} ({_copy_note(stamp)}); "
        f"original: Roboflow Universe {entry.source}; credit: {entry.citation}.",
        key=entry.name,
        real=True,
    )


def _roboflow(source: str, data_dir: Path) -> LoadedDataset:
    workspace, project, version = source.split("/")
    raw = data_dir / "roboflow" / workspace / project / version
    if not (raw / "data.yaml").is_file():
        raw = download_roboflow(source, raw)
    mapping = class_map_for(Dataset.from_yaml(raw).names)
    dest = data_dir / f"{project}-v{version}"
    identity = f"roboflow:{source}"
    stamp = _reusable(dest, identity, mapping)
    how = "prepared earlier"
    if stamp is None:
        stamp = _project_copy(raw, dest, mapping, source=f"roboflow:{source}", identity=identity)
        how = "downloaded from Roboflow"
    return LoadedDataset(
        dest,
        f"Using Roboflow's {source}, {how}, in {dest} ({_copy_note(stamp)}); see its page on "
        "universe.roboflow.com for its licence.",
        key=None,
        real=True,
    )


def _fingerprint(root: Path) -> str:
    """A cheap identity of a folder's files: their paths, sizes and modification times."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != STAMP_FILE):
        stat = path.stat()
        line = f"{path.relative_to(root).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n"
        digest.update(line.encode("utf-8"))
    return digest.hexdigest()


def _is_synthetic(root: Path) -> bool:
    """True when the folder's ``manifest.csv`` says every frame is synthetic."""
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        return False
    with manifest.open(encoding="utf-8", newline="") as handle:
        sources = {row.get("source") for row in csv.DictReader(handle)}
    return sources == {SYNTHETIC}


def _local_folder(folder: Path, data_dir: Path) -> LoadedDataset:
    if not (folder / "data.yaml").is_file():
        raise DatasetUnavailable(f"{folder} has no data.yaml: is it a YOLO dataset folder?")
    root = folder.resolve()
    real = not _is_synthetic(root)
    names = Dataset.from_yaml(root).names
    if tuple(names) == PROJECT_CLASSES:
        return LoadedDataset(
            root, f"Using the local dataset {folder} as it is (its classes are the project's).",
            real=real,
        )  # fmt: skip
    mapping = class_map_for(names)
    dest = data_dir / f"{root.name}-mapped"
    identity = f"folder:{root}:{_fingerprint(root)}"
    stamp = _reusable(dest, identity, mapping)
    how = "made earlier"
    if stamp is None:
        stamp = _project_copy(root, dest, mapping, source=root.name, identity=identity)
        how = "made now"
    return LoadedDataset(
        dest,
        f"Using a copy of the local dataset {folder} in the project's classes, {how}, in {dest} "
        f"({_copy_note(stamp)}).",
        real=real,
    )


def _extract_zip(archive: Path, data_dir: Path) -> Path:
    """Extracts a zip once into ``data_dir/<zip stem>`` and returns the folder with data.yaml.

    Raises:
        DatasetUnavailable: If a member would land outside the folder, or no single data.yaml
            is found.
        ValueError: If the destination exists and was not written by :func:`load_dataset`.
    """
    dest = data_dir / archive.stem
    identity = f"zip:{hub.sha256_of(archive)}"
    if _read_stamp(dest).get("source") != identity:
        _claim(dest)
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=data_dir, prefix=f".{dest.name}."))
        try:
            with zipfile.ZipFile(archive) as zf:
                for member in zf.namelist():
                    if not (tmp / member).resolve().is_relative_to(tmp.resolve()):
                        raise DatasetUnavailable(
                            f"{archive}: member {member!r} would land outside the folder, so "
                            "nothing was extracted."
                        )
                zf.extractall(tmp)
            atomic_write_json(tmp / STAMP_FILE, {"source": identity, "mapping": {}})
            _replace_with(tmp, dest)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    if (dest / "data.yaml").is_file():
        return dest
    found = sorted(p.parent for p in dest.glob("*/data.yaml"))
    if len(found) != 1:
        raise DatasetUnavailable(
            f"{archive} holds {len(found) or 'no'} data.yaml file(s) at its top or one folder "
            "down; zip one YOLO dataset folder."
        )
    return found[0]


def _resolve_local(text: str) -> Path | None:
    """The dataset folder or zip that ``text`` names on disk, else None."""
    path = Path(text).expanduser()
    if path.is_dir() or (path.is_file() and path.suffix.lower() == ".zip"):
        return path
    if path.is_file() and path.name == "data.yaml":
        return path.parent
    return None


def load_dataset(
    name_or_path: str | os.PathLike = AUTO,
    *,
    data_dir: str | os.PathLike,
    profile: Profile,
    seed: int = 0,
    fallback: bool = True,
) -> LoadedDataset:
    """Gets the dataset a notebook's ``DATASET`` names, in the project's classes.

    Args:
        name_or_path: ``"auto"``, ``"synthetic"``, ``"manaus-traffic"``, a Roboflow id
            ``workspace/project/version``, a local folder with ``data.yaml`` (or that file), or a
            ``.zip`` of one (see the module docstring).
        data_dir: Where datasets live (``cfg.workspace.data``).
        profile: Decides ``"auto"`` and sizes the synthetic set.
        seed: Seed of the synthetic set.
        fallback: When a real set cannot be had (offline, no key), use the synthetic set instead
            of raising.

    Returns:
        The dataset folder (``.path``, ``.data_yaml``), one sentence saying what was used and
        why (``.message``), whether it stands in for what was asked (``.fell_back``), its
        registry key (``.key``) and whether it is real camera frames (``.real``).

    Example:
        >>> ds = load_dataset(DATASET, data_dir=cfg.workspace.data, profile=cfg.profile)
        >>> cfg = cfg.for_dataset(ds)
        >>> print(ds.message)

    Raises:
        KeyError: For a name that is none of the forms above.
        DatasetUnavailable: For a folder without ``data.yaml``, a zip without one or with a
            member escaping its folder, and (with ``fallback=False``) a Roboflow download that
            fails.
        AssetUnavailable: When the asset hub cannot be reached and ``fallback`` is False.
        ValueError: For labels that cannot be read, a dataset none of whose classes maps to the
            project's, or a destination folder that ``load_dataset`` did not write.
    """
    data_dir = Path(data_dir)
    text = os.fspath(name_or_path).strip()
    if text == AUTO and profile.name == "smoke":
        synthetic = _synthetic(data_dir, profile, seed)
        reason = (
            "DATASET=auto in the smoke profile trains on the synthetic set to stay within minutes "
            f'on a CPU (set DATASET="{MANAUS}" for real camera frames).'
        )
        return LoadedDataset(synthetic.path, f"{reason} {synthetic.message}", key=SYNTHETIC)
    if text == AUTO:
        text = MANAUS
    if text == SYNTHETIC:
        return _synthetic(data_dir, profile, seed)
    local = None if text in DATASETS else _resolve_local(text)
    if local is not None:
        folder = _extract_zip(local, data_dir) if local.is_file() else local
        return _local_folder(folder, data_dir)
    if text not in DATASETS and not _ROBOFLOW_ID.fullmatch(text):
        raise KeyError(f"Unknown dataset {text!r}: give {FORMS}.")
    try:
        return (
            _from_hub(DATASETS[text], data_dir) if text in DATASETS else _roboflow(text, data_dir)
        )
    except (DatasetUnavailable, hub.AssetUnavailable) as exc:
        if not fallback:
            raise
        synthetic = _synthetic(data_dir, profile, seed)
        return LoadedDataset(
            synthetic.path, f"{exc} {synthetic.message}", fell_back=True, key=SYNTHETIC
        )


def describe_registry() -> list[dict[str, Any]]:
    """The registry as rows for a table."""
    rows = []
    for entry in DATASETS.values():
        where = "generated" if entry.kind == "synthetic" else f"asset hub ({entry.asset})"
        if entry.source:
            where += f"; original: Roboflow Universe {entry.source}"
        rows.append(
            {"name": entry.name, "kind": entry.kind, "source": where, "license": entry.license,
             "description": entry.description}
        )  # fmt: skip
    return rows
