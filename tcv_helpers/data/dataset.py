"""The dataset type: the one reader of ``data.yaml``, resolving paths as Ultralytics does.

A :class:`Dataset` is what Ultralytics trains on, found the way Ultralytics finds it
(``ultralytics.data.utils.check_det_dataset`` and ``YOLODataset.get_img_files``), so a Roboflow
export, a ``.txt`` image list and the course's own merged sets are read alike by the QA, the
converters, the widgets, training and evaluation:

* The dataset root is the ``path:`` key. Without it, the folder of the yaml file. An absolute
  ``path:`` is itself. A relative ``path:`` is taken from the **working folder** when it exists
  there, else from Ultralytics' datasets folder (its ``datasets_dir`` setting); never from the
  yaml file's folder.
* ``train``, ``val`` (or ``validation``) and ``test`` name folders or image-list files, relative
  to the root, one entry or a list of them. A single entry that starts with ``../`` and does not
  exist is tried again without the ``../`` (Roboflow's exports write ``train: ../train/images``
  beside a ``data.yaml`` at the root of the export); entries of a list are not retried.
* A folder holds every image file below it, recursively; hidden files and folders are skipped.
  A file is a list of images, one per line: ``./x.jpg`` is relative to the list's folder, an
  absolute line is itself, and another relative line is relative to the working folder.
* The images of a split are sorted by path, as Ultralytics sorts them; an image listed twice
  stays twice (that is how a list oversamples frames).
* The label file of an image: its last ``images`` folder becomes ``labels`` and its suffix
  ``.txt`` (:func:`~tcv_helpers.data.labels.label_path_for`).
* ``names`` is a list or an ``{id: name}`` mapping with ids ``0..n-1``; a file with only ``nc``
  gets ``class_0``, ``class_1``, ...; ``nc`` must agree with ``names``.

:meth:`Dataset.from_yaml` raises :class:`DatasetError` naming every problem (a missing split
names its key and every path tried); :meth:`Dataset.read` returns the problems instead, for the
QA, which reports them as issues. :func:`write_data_yaml` and :meth:`Dataset.to_yaml` write
``data.yaml`` files atomically.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tcv_helpers.data.labels import label_path_for, read_yolo_labels
from tcv_helpers.io import atomic_write_text, read_yaml_mapping

if TYPE_CHECKING:
    import supervision as sv

#: The split keys of ``data.yaml``, in order.
SPLIT_KEYS: tuple[str, ...] = ("train", "val", "test")
#: The split keys Ultralytics requires.
REQUIRED_SPLITS: tuple[str, ...] = ("train", "val")
#: Other spellings of split names (Roboflow's folders, Ultralytics' old key).
SPLIT_ALIASES: dict[str, str] = {"valid": "val", "validation": "val"}
#: File suffixes Ultralytics takes for images (``ultralytics.data.utils.IMG_FORMATS``).
ULTRALYTICS_IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {
        "avif",
        "bmp",
        "dng",
        "heic",
        "heif",
        "jp2",
        "jpeg",
        "jpg",
        "mpo",
        "png",
        "tif",
        "tiff",
        "webp",
    }
)
#: The file :meth:`Dataset.from_yaml` looks for in a folder.
DATA_YAML = "data.yaml"

ProblemKind = Literal["unreadable", "invalid", "missing_key", "missing_split"]

_EXIF_ORIENTATION = 274
_QUARTER_TURNS = (5, 6, 7, 8)


@dataclass(frozen=True)
class DatasetProblem:
    """One thing wrong with a ``data.yaml``.

    Attributes:
        kind: ``unreadable`` (no file, not YAML, not a mapping), ``invalid`` (a key with a wrong
            value), ``missing_key`` (``train``, ``val`` or ``names`` absent) or
            ``missing_split`` (a split entry names a path that does not exist).
        key: The key concerned, or None for the whole file.
        message: What is wrong, for a person; a missing split names every path tried.
    """

    kind: ProblemKind
    key: str | None
    message: str


class DatasetError(ValueError):
    """A ``data.yaml`` that Ultralytics could not train on; the message lists every problem.

    Attributes:
        yaml_file: The file.
        problems: What is wrong with it.
    """

    def __init__(self, yaml_file: Path, problems: Sequence[DatasetProblem]) -> None:
        self.yaml_file = Path(yaml_file)
        self.problems = tuple(problems)
        lines = [problem.message for problem in self.problems] or ["not a usable dataset file."]
        if len(lines) == 1:
            super().__init__(f"{self.yaml_file}: {lines[0]}")
        else:
            super().__init__(f"{self.yaml_file}:\n" + "\n".join(f"- {line}" for line in lines))


@dataclass(frozen=True)
class SplitSource:
    """One entry of a split: a folder of images or a file listing them.

    Attributes:
        entry: The entry as ``data.yaml`` writes it.
        path: Where it resolved to (absolute, symbolic links resolved, as Ultralytics does).
        is_list: True for a file listing images, False for a folder.
        images: The image files it names, sorted by path (a list keeps its repeats).
    """

    entry: str
    path: Path
    is_list: bool
    images: tuple[Path, ...]


@dataclass(frozen=True)
class Dataset:
    """A YOLO detection dataset as Ultralytics reads it (see the module docstring for the rules).

    Build one with :meth:`from_yaml`. Image paths are absolute and keep symbolic links (the
    label file is found beside the link, as Ultralytics finds it).

    Attributes:
        yaml_file: The ``data.yaml`` (absolute).
        root: The dataset root the split entries are relative to (Ultralytics' ``path``).
        names: Class names; a label's class id indexes this tuple.
        sources: The entries of each split present, by split key (``train``, ``val``, ``test``).
        config: The yaml file's keys as written (:meth:`to_yaml` keeps the ones it does not set).
        splits: The images of each split, in Ultralytics' order (derived from ``sources``).

    Example:
        >>> ds = Dataset.from_yaml("data/manaus-traffic")  # doctest: +SKIP
        >>> len(ds.images("val")), ds.names[:2]  # doctest: +SKIP
        (76, ('biker', 'car'))
    """

    yaml_file: Path
    root: Path
    names: tuple[str, ...]
    sources: Mapping[str, tuple[SplitSource, ...]]
    config: Mapping[str, Any] = field(default_factory=dict)
    splits: Mapping[str, tuple[Path, ...]] = field(init=False)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.sources) - set(SPLIT_KEYS))
        if unknown:
            raise ValueError(f"{self.yaml_file}: unknown split(s) {unknown}; use {SPLIT_KEYS}.")
        object.__setattr__(self, "yaml_file", Path(self.yaml_file))
        object.__setattr__(self, "root", Path(self.root))
        object.__setattr__(self, "names", tuple(str(name) for name in self.names))
        ordered = {key: tuple(self.sources[key]) for key in SPLIT_KEYS if key in self.sources}
        object.__setattr__(self, "sources", ordered)
        object.__setattr__(
            self,
            "splits",
            {
                key: tuple(sorted((p for s in sources for p in s.images), key=str))
                for key, sources in ordered.items()
            },
        )

    # -- reading ---------------------------------------------------------------------------------

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> Dataset:
        """Reads a dataset from its ``data.yaml`` (or the folder holding ``data.yaml``).

        Args:
            path: The yaml file, or a folder with ``data.yaml`` in it.

        Returns:
            The dataset.

        Raises:
            FileNotFoundError: If the file (or the folder) does not exist.
            DatasetError: A ``ValueError`` naming every problem: not YAML or not a mapping,
                ``train``, ``val`` or ``names`` missing, a bad value, or a split entry naming a
                path that does not exist (the message names the key and every path tried).
        """
        yaml_file = yaml_path(path)
        if not yaml_file.is_file():
            raise FileNotFoundError(f"{yaml_file} does not exist: is {path} a YOLO dataset?")
        dataset, problems = cls.read(yaml_file)
        if problems or dataset is None:
            raise DatasetError(yaml_file, problems)
        return dataset

    @classmethod
    def read(
        cls, path: str | os.PathLike, *, required: Iterable[str] = REQUIRED_SPLITS
    ) -> tuple[Dataset | None, tuple[DatasetProblem, ...]]:
        """Reads what it can of a ``data.yaml`` and every problem found, without raising.

        For the QA (which reports each problem as an issue) and readers that accept less than
        Ultralytics does (the format converter reads a file without ``train``).

        Args:
            path: The yaml file, or a folder with ``data.yaml`` in it.
            required: Split keys whose absence is a ``missing_key`` problem.

        Returns:
            ``(dataset, problems)``. The dataset holds the splits that resolved (and no class
            names when ``names`` is unusable); it is None when the file cannot be read as a
            mapping at all.
        """
        yaml_file, required = yaml_path(path), tuple(required)
        try:
            config = read_yaml_mapping(
                yaml_file, error=_Unreadable, what="Dataset file", holds="a mapping of keys"
            )
        except _Unreadable as exc:
            return None, (DatasetProblem("unreadable", None, str(exc)),)
        problems: list[DatasetProblem] = []
        names = _names(config, problems)
        root, root_note = _root(config, yaml_file, problems)
        sources: dict[str, tuple[SplitSource, ...]] = {}
        for key in SPLIT_KEYS:
            value = config.get(key)
            if key == "val" and value is None:
                value = config.get("validation")
            if value in (None, "", []):
                if key in required:
                    problems.append(
                        DatasetProblem(
                            "missing_key",
                            key,
                            f"key '{key}' is missing: Ultralytics needs 'train' and 'val'.",
                        )
                    )
                continue
            found = _resolve_split(key, value, root, root_note, problems)
            if found is not None:
                sources[key] = found
        dataset = cls(
            yaml_file=yaml_file, root=root, names=names, sources=sources, config=dict(config)
        )
        return dataset, tuple(problems)

    # -- what it holds ----------------------------------------------------------------------------

    @property
    def folder(self) -> Path:
        """The folder holding the yaml file."""
        return self.yaml_file.parent

    @property
    def class_map(self) -> dict[int, str]:
        """Class id to class name."""
        return dict(enumerate(self.names))

    @property
    def split_keys(self) -> tuple[str, ...]:
        """The splits present, in :data:`SPLIT_KEYS` order."""
        return tuple(self.splits)

    def split_key(self, split: str) -> str:
        """The key of a split, accepting ``valid`` and ``validation`` for ``val``.

        Args:
            split: A split name.

        Returns:
            The key in :attr:`splits`.

        Raises:
            DatasetError: If the dataset has no such split (the message lists those it has).
        """
        key = SPLIT_ALIASES.get(split, split)
        if key not in self.splits:
            raise DatasetError(
                self.yaml_file,
                [
                    DatasetProblem(
                        "missing_key",
                        split,
                        f"no images in split {split!r}; splits present: "
                        f"{', '.join(self.splits) or 'none'}.",
                    )
                ],
            )
        return key

    def images(self, split: str) -> tuple[Path, ...]:
        """The images of one split, in Ultralytics' order (repeats of a list kept).

        Args:
            split: ``train``, ``val`` (or ``valid``) or ``test``.

        Returns:
            Absolute image paths.

        Raises:
            DatasetError: If the dataset has no such split.
        """
        return self.splits[self.split_key(split)]

    def unique_images(self, split: str | None = None) -> list[Path]:
        """Each image once: of one split, or of every split (an image in two splits once, under
        the first).

        Args:
            split: A split, or None for all.

        Returns:
            The images, in split order and then Ultralytics' order.
        """
        keys = [self.split_key(split)] if split is not None else list(self.splits)
        return list(dict.fromkeys(p for key in keys for p in self.splits[key]))

    @staticmethod
    def label_path(image: str | os.PathLike) -> Path:
        """The label file Ultralytics reads for an image (``images`` -> ``labels``, ``.txt``).

        Args:
            image: The image path.

        Returns:
            The label path (it may not exist: an image without one has no objects).
        """
        return label_path_for(image)

    def annotations(
        self, image: str | os.PathLike, *, size: tuple[int, int] | None = None
    ) -> sv.Detections:
        """The labelled boxes of one image, in pixels.

        Args:
            image: The image (absolute, or relative to :attr:`folder`).
            size: ``(width, height)``; None reads it from the image file.

        Returns:
            ``xyxy`` float64 pixels and ``class_id`` int64, in label-file order.

        Raises:
            ValueError: On a malformed label line or a class id outside :attr:`names` (the
                message names the file and line), or an unreadable image.
        """
        import supervision as sv

        path = Path(image)
        path = path if path.is_absolute() else self.folder / path
        width, height = size if size is not None else image_size(path)
        boxes, ids = read_yolo_labels(
            label_path_for(path), width, height, n_classes=len(self.names)
        )
        return sv.Detections(xyxy=boxes, class_id=ids)

    def ground_truth(self, split: str) -> tuple[list[Path], list[sv.Detections]]:
        """The images of one split and their boxes.

        Args:
            split: ``train``, ``val`` (or ``valid``) or ``test``.

        Returns:
            ``(image_paths, detections)``: :meth:`images` and one ``sv.Detections`` each.

        Raises:
            DatasetError: If the dataset has no such split.
            ValueError: On malformed labels (the message names the file and line).
        """
        paths = list(self.images(split))
        return paths, [self.annotations(path) for path in paths]

    # -- writing ----------------------------------------------------------------------------------

    def to_yaml(
        self,
        path: str | os.PathLike,
        *,
        splits: Mapping[str, str | os.PathLike | Sequence[str | os.PathLike]] | None = None,
        root: str | os.PathLike | Literal["same"] | None = "same",
        names: Sequence[str] | None = None,
        header: str = "",
    ) -> Path:
        """Writes a ``data.yaml`` describing this dataset, with some entries changed.

        Keys other than ``path``, the splits, ``names`` and ``nc`` are copied as written.

        Args:
            path: The file to write (atomically).
            splits: New entries for some splits; the others keep their entries as written.
            root: ``"same"`` writes this dataset's root as an absolute ``path:`` (links
                resolved; entries kept as written resolve as before, wherever the new file is);
                None writes no ``path:`` (the entries are relative to the new file's folder);
                else that folder, as given.
            names: New class names (default: :attr:`names`).
            header: Comment lines to put first (each starting with ``#``).

        Returns:
            The written file.
        """
        entries: dict[str, Any] = {}
        for key in SPLIT_KEYS:
            if splits is not None and key in splits:
                entries[key] = splits[key]
            elif key in self.sources:
                value = self.config.get(key)
                entries[key] = value if value is not None else self.config.get("validation")
        extra = {
            k: v
            for k, v in self.config.items()
            if k not in ("path", "names", "nc", "validation", *SPLIT_KEYS)
        }
        if "nc" in self.config:
            extra["nc"] = None  # rewritten from the names
        target_root = self.root.resolve() if root == "same" else root
        return write_data_yaml(
            path,
            names=list(names) if names is not None else list(self.names),
            splits=entries,
            root=target_root,
            extra=extra,
            header=header,
        )


class _Unreadable(Exception):
    """The yaml file cannot be read as a mapping (turned into a problem)."""


def yaml_path(path: str | os.PathLike) -> Path:
    """The yaml file a dataset argument names: the file itself, or ``data.yaml`` in a folder.

    Args:
        path: A ``.yaml``/``.yml`` file or a dataset folder.

    Returns:
        The absolute path of the yaml file (it may not exist).
    """
    given = Path(path).expanduser()
    file = given if given.suffix in (".yaml", ".yml") and not given.is_dir() else given / DATA_YAML
    return file.absolute()


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """Width and height of an image as decoders show it (EXIF quarter turns swap them).

    Args:
        path: The image file.

    Returns:
        ``(width, height)`` in pixels.

    Raises:
        ValueError: If the file is not a readable image (the message names it).
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(_EXIF_ORIENTATION)
    except OSError as exc:
        raise ValueError(f"{path}: not a readable image ({exc}).") from exc
    return (height, width) if orientation in _QUARTER_TURNS else (width, height)


def write_data_yaml(
    path: str | os.PathLike,
    *,
    names: Sequence[str],
    splits: Mapping[str, str | os.PathLike | Sequence[str | os.PathLike]],
    root: str | os.PathLike | None = None,
    extra: Mapping[str, Any] | None = None,
    header: str = "",
) -> Path:
    """Writes a ``data.yaml`` atomically: ``path``, the splits, other keys, then ``names``.

    Args:
        path: The file to write.
        names: Class names in class-id order (written as an ``{id: name}`` mapping).
        splits: Entry (or entries) of each split key (``train``, ``val``, ``test``); paths are
            written as POSIX text.
        root: The dataset root written as ``path:``; None writes none, so the entries are
            relative to the file's folder. A relative root is written as given (Ultralytics
            reads it from the working folder: prefer an absolute one).
        extra: Other keys to write after the splits (``nc`` is set from ``names`` when present).
        header: Comment lines to put first (each starting with ``#``).

    Returns:
        The written file.

    Raises:
        ValueError: For an unknown split key or no class names.
    """
    import yaml

    unknown = sorted(set(splits) - set(SPLIT_KEYS))
    if unknown:
        raise ValueError(f"unknown split key(s) {unknown}; data.yaml keys are {SPLIT_KEYS}.")
    if not names:
        raise ValueError(f"{path}: a data.yaml needs at least one class name.")

    def text(value: str | os.PathLike) -> str:
        return value if isinstance(value, str) else Path(value).as_posix()

    data: dict[str, Any] = {}
    if root is not None:
        data["path"] = text(root)
    for key in SPLIT_KEYS:
        if key in splits:
            value = splits[key]
            if isinstance(value, (str, os.PathLike)):
                data[key] = text(value)
            else:
                items = [text(v) for v in value]
                data[key] = items[0] if len(items) == 1 else items
    for key, value in (extra or {}).items():
        data[key] = len(names) if key == "nc" else value
    data["names"] = {index: str(name) for index, name in enumerate(names)}
    if header and not header.endswith("\n"):
        header += "\n"
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return atomic_write_text(path, header + body)


# ----------------------------------------------------------------------------------------------
# Ultralytics' resolution rules


def _names(config: Mapping[str, Any], problems: list[DatasetProblem]) -> tuple[str, ...]:
    """Class names from ``names`` (list or ``{id: name}``) or ``nc``, checked as Ultralytics does."""
    raw = config.get("names")
    nc = config.get("nc")
    if raw is None:
        if isinstance(nc, int) and not isinstance(nc, bool) and nc > 0:
            return tuple(f"class_{i}" for i in range(nc))
        problems.append(
            DatasetProblem(
                "missing_key",
                "names",
                "key 'names' is missing or not a list / {id: name} mapping of class names.",
            )
        )
        return ()
    names: tuple[str, ...] = ()
    if isinstance(raw, list) and raw:
        names = tuple(str(n) for n in raw)
    elif isinstance(raw, dict) and raw:
        try:
            ids = {int(k): str(v) for k, v in raw.items()}
        except (TypeError, ValueError):
            ids = {}
        if sorted(ids) != list(range(len(raw))):
            problems.append(
                DatasetProblem(
                    "invalid",
                    "names",
                    f"key 'names': class ids must be 0..{len(raw) - 1}, got "
                    f"{', '.join(str(k) for k in raw)}.",
                )
            )
            return ()
        names = tuple(ids[i] for i in range(len(ids)))
    else:
        problems.append(
            DatasetProblem(
                "invalid",
                "names",
                "key 'names' is missing or not a list / {id: name} mapping of class names.",
            )
        )
        return ()
    if nc is not None and nc != len(names):
        problems.append(
            DatasetProblem(
                "invalid", "nc", f"key 'nc' is {nc!r} but 'names' lists {len(names)} classes."
            )
        )
    return names


def _datasets_dir() -> Path | None:
    """Ultralytics' datasets folder (its ``datasets_dir`` setting), or None without Ultralytics."""
    try:
        from ultralytics.data import utils as ultralytics_data
    except ImportError:
        return None
    return Path(ultralytics_data.DATASETS_DIR)


def _root(
    config: Mapping[str, Any], yaml_file: Path, problems: list[DatasetProblem]
) -> tuple[Path, str]:
    """The dataset root and, for a relative ``path:``, a sentence saying where it was looked for."""
    given = config.get("path")
    if given in (None, ""):
        return yaml_file.parent, ""
    if not isinstance(given, str):
        problems.append(
            DatasetProblem("invalid", "path", f"key 'path' must be a folder, got {given!r}.")
        )
        return yaml_file.parent, ""
    folder = Path(given)  # as Ultralytics reads it: no ~ expansion
    if folder.is_absolute():
        return folder, ""
    here = Path.cwd() / folder
    if here.exists():
        return here, ""
    datasets = _datasets_dir()
    tried = [str(here)] + ([str(datasets / folder)] if datasets is not None else [])
    note = (
        f"'path: {given}' is relative, so Ultralytics takes it from the working folder, else "
        f"from its datasets folder (tried {' and '.join(tried)})"
    )
    if (yaml_file.parent / folder).is_dir():
        note += (
            f"; it is not read from data.yaml's folder, where {yaml_file.parent / folder} is: "
            "write an absolute 'path:', or drop it when the splits are relative to data.yaml"
        )
    if datasets is None:
        return here, note
    return (datasets / folder).resolve(), note


def _resolve_split(
    key: str, value: Any, root: Path, root_note: str, problems: list[DatasetProblem]
) -> tuple[SplitSource, ...] | None:
    """The sources of one split entry, or None (with a problem) when it does not resolve."""
    single = isinstance(value, str)
    entries = [value] if single else value
    if not isinstance(entries, list) or not all(isinstance(e, str) and e for e in entries):
        problems.append(
            DatasetProblem(
                "invalid", key, f"key '{key}' must be a folder or list file, or a list of them."
            )
        )
        return None
    sources: list[SplitSource] = []
    missing: list[tuple[str, list[Path]]] = []
    for entry in entries:
        tried = [(root / entry).resolve()]
        if single and entry.startswith("../"):  # Roboflow's ../train/images
            tried.append((root / entry[3:]).resolve())
        found = next((p for p in tried if p.exists()), None)
        if found is None:
            missing.append((entry, tried))
            continue
        try:
            sources.append(_source(entry, found))
        except ValueError as exc:
            problems.append(DatasetProblem("invalid", key, f"key '{key}': {exc}"))
            return None
    for entry, tried in missing:
        message = (
            f"key '{key}': {entry!r} does not exist (tried {', '.join(str(p) for p in tried)})"
        )
        problems.append(
            DatasetProblem(
                "missing_split", key, message + (f"; {root_note}." if root_note else ".")
            )
        )
    return tuple(sources) if not missing else None


def _is_image_name(name: str) -> bool:
    return name.rpartition(".")[-1].lower() in ULTRALYTICS_IMAGE_SUFFIXES


def _source(entry: str, path: Path) -> SplitSource:
    """The images an existing entry names, listed as ``YOLODataset.get_img_files`` lists them."""
    if path.is_dir():
        pattern = str(Path(glob.escape(str(path))) / "**" / "*.*")
        files = [f for f in glob.glob(pattern, recursive=True) if _is_image_name(f)]
        images = sorted((f for f in files if not os.path.isdir(f)), key=str)
        return SplitSource(entry, path, False, tuple(Path(f) for f in images))
    try:
        lines = path.read_text(encoding="utf-8-sig").strip().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not a text list of images ({exc}).") from None
    parent = str(path.parent) + os.sep
    listed = [line.replace("./", parent, 1) if line.startswith("./") else line for line in lines]
    images = sorted((x for x in listed if _is_image_name(x)), key=str)
    return SplitSource(entry, path, True, tuple(Path(os.path.abspath(x)) for x in images))
