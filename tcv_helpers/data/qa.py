"""Label and image QA for a YOLO dataset: find broken files, bad boxes and leakage; write a fix.

The dataset is read by :class:`~tcv_helpers.data.dataset.Dataset`, so the images checked are
exactly the ones Ultralytics trains on: split folders, ``.txt`` image lists (the relabel loop's
merged sets), Roboflow's ``../train/images`` entries and the ``path:`` key are resolved by
Ultralytics' rules, and whatever would stop Ultralytics (a missing key, a split that is not
there) is an issue naming the key and the paths tried. Each image's label file is found by
Ultralytics' rule: the last ``/images/`` component of the path becomes ``/labels/`` and the
suffix becomes ``.txt``.

:func:`check_dataset` reports every problem as an :class:`~tcv_helpers.data.qa_checks.Issue`
naming the file (relative to the dataset folder) and the line; :func:`fix_dataset` writes a
cleaned copy; :func:`plant_defects` makes a copy with one defect of each kind, for teaching. The
checks of single files (label lines, decoding, perceptual hashes) are in
:mod:`tcv_helpers.data.qa_checks`.
"""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tcv_helpers.data.dataset import SPLIT_KEYS, Dataset, yaml_path
from tcv_helpers.data.labels import IMAGE_SUFFIXES, label_path_for
from tcv_helpers.data.qa_checks import (
    ImageInfo,
    Issue,
    LabelResult,
    inspect_all,
    issue,
    near_duplicate_pairs,
    read_label,
)
from tcv_helpers.imaging import NEAR_DUPLICATE_DISTANCE, SUFFIX_TYPES, sniff_type
from tcv_helpers.io import atomic_write_bytes, atomic_write_text

#: Kinds about ``data.yaml`` itself, which :func:`fix_dataset` cannot repair.
CONFIG_KINDS = frozenset({"bad_data_yaml", "missing_split", "split_overlap"})
#: Kinds for which :func:`fix_dataset` drops the image (and its label).
DROPPED_IMAGE_KINDS = frozenset(
    {"missing_image", "empty_file", "corrupt_image", "truncated_image", "unreadable_label"}
)
#: What each kind of :class:`~tcv_helpers.data.dataset.DatasetProblem` is as an issue.
PROBLEM_ISSUES: dict[str, str] = {
    "unreadable": "bad_data_yaml",
    "invalid": "bad_data_yaml",
    "missing_key": "bad_data_yaml",
    "missing_split": "missing_split",
}

_POOL_MIN_IMAGES = 128
_SUFFIX_FOR_TYPE = {"jpeg": ".jpg", "png": ".png", "gif": ".gif", "bmp": ".bmp", "webp": ".webp"}
#: Where :func:`fix_dataset` puts images that lie outside the dataset root (a list's frames).
OUTSIDE_FOLDER = "outside"


@dataclass(frozen=True)
class SplitCounts:
    """What one split holds.

    Attributes:
        images: Image files found (broken ones included).
        labels: Label files found for those images.
        boxes: Valid boxes per class name (every class of ``names`` present, zero included).
    """

    images: int
    labels: int
    boxes: dict[str, int]


@dataclass(frozen=True)
class QAReport:
    """The result of :func:`check_dataset`.

    Attributes:
        root: The dataset folder (the one holding ``data.yaml``).
        issues: Every problem found, sorted by file and line.
        splits: Counts per split key (``train``, ``val``, ``test``).
        class_names: Class names from ``data.yaml``, index = class id.
    """

    root: Path
    issues: tuple[Issue, ...]
    splits: dict[str, SplitCounts] = field(default_factory=dict)
    class_names: tuple[str, ...] = ()

    @property
    def errors(self) -> list[Issue]:
        """The issues of severity ``error``."""
        return [issue for issue in self.issues if issue.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        """The issues of severity ``warning``."""
        return [issue for issue in self.issues if issue.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when there are no errors (warnings allowed)."""
        return not self.errors

    def by_kind(self, kind: str) -> list[Issue]:
        """The issues of one kind.

        Args:
            kind: A key of :data:`ISSUE_KINDS`.

        Returns:
            Those issues, in report order.
        """
        return [issue for issue in self.issues if issue.kind == kind]

    def to_pandas(self) -> Any:
        """The issues as a table.

        Returns:
            A ``pandas.DataFrame`` with columns ``kind, severity, file, line, message``
            (``line`` is a nullable integer).
        """
        import pandas as pd

        frame = pd.DataFrame(
            [(i.kind, i.severity, i.file, i.line, i.message) for i in self.issues],
            columns=["kind", "severity", "file", "line", "message"],
        )
        frame["line"] = frame["line"].astype("Int64")
        return frame

    def summary(self) -> str:
        """A short text: images and boxes per split, then issue counts per kind.

        Returns:
            A few lines of text, without a trailing newline.
        """
        lines = [f"Dataset {self.root}"]
        for key, counts in self.splits.items():
            boxes = ", ".join(
                f"{name} {n}" for name, n in sorted(counts.boxes.items(), key=lambda kv: -kv[1])
            )
            lines.append(
                f"  {key}: {counts.images} images, {counts.labels} label files, "
                f"{sum(counts.boxes.values())} boxes ({boxes or 'none'})"
            )
        verdict = "OK" if self.ok else "FAILED"
        lines.append(f"{verdict}: {len(self.errors)} errors, {len(self.warnings)} warnings")
        kinds = Counter((i.severity, i.kind) for i in self.issues)
        for (severity, kind), n in sorted(kinds.items(), key=lambda kv: (kv[0][0], -kv[1])):
            lines.append(f"  {severity} {kind}: {n}")
        return "\n".join(lines)

    def format(self) -> str:
        """Every issue, one line each (see :meth:`Issue.format`).

        Returns:
            The lines joined by newlines; an empty string when there is no issue.
        """
        return "\n".join(issue.format() for issue in self.issues)


@dataclass
class _Entry:
    """One image of the dataset, its label and what was found."""

    split: str
    image: Path
    label: Path
    info: ImageInfo | None = None
    has_label: bool = False


def _labels_dir_for(images_dir: Path) -> Path:
    return label_path_for(images_dir / "x.jpg").parent


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return Path(os.path.relpath(path, root)).as_posix()


def _read_dataset(yaml_file: Path, root: Path) -> tuple[Dataset | None, list[Issue]]:
    """The dataset as far as it resolves, and an issue for each problem of its yaml file."""
    dataset, problems = Dataset.read(yaml_file)
    name = _rel(yaml_file, root)
    return dataset, [issue(PROBLEM_ISSUES[p.kind], name, p.message) for p in problems]


def _collect(root: Path, dataset: Dataset) -> tuple[list[_Entry], list[Issue]]:
    """Every image of every split (each file once), and missing-image and split-overlap issues."""
    entries: list[_Entry] = []
    issues: list[Issue] = []
    seen: dict[Path, str] = {}
    overlaps: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for key, images in dataset.splits.items():
        lists = [s for s in dataset.sources[key] if s.is_list]
        for image in images:
            if not image.is_file():
                if image not in seen:
                    seen[image] = key
                    named = ", ".join(_rel(s.path, root) for s in lists) or "data.yaml"
                    issues.append(
                        issue(
                            "missing_image",
                            _rel(image, root),
                            f"image of split '{key}' listed in {named} does not exist",
                        )
                    )
                continue
            resolved = image.resolve()
            if resolved in seen:
                if seen[resolved] != key:
                    overlaps[(seen[resolved], key)].append(image)
                continue
            seen[resolved] = key
            label = label_path_for(image)
            entries.append(_Entry(key, image, label, has_label=label.is_file()))
    yaml_name = _rel(dataset.yaml_file, root)
    issues += [
        issue(
            "split_overlap",
            yaml_name,
            f"'{first}' and '{second}' share {len(images)} image files (e.g. "
            f"{_rel(images[0], root)}): their folders overlap",
        )
        for (first, second), images in overlaps.items()
    ]
    return entries, issues


def _orphans(root: Path, dataset: Dataset, entries: list[_Entry]) -> list[Issue]:
    """Issues for label files in the label folders of the split folders that belong to no image
    (an image list has no label folder of its own: its labels are not searched)."""
    expected = {e.label.resolve() for e in entries}
    issues: list[Issue] = []
    seen: set[Path] = set()
    for key, sources in dataset.sources.items():
        for folder in (s.path for s in sources if not s.is_list):
            labels_dir = _labels_dir_for(folder)
            if not labels_dir.is_dir():
                continue
            for label in sorted(labels_dir.rglob("*.txt")):
                resolved = label.resolve()
                if resolved in expected or resolved in seen or not label.is_file():
                    continue
                seen.add(resolved)
                image_dir = folder / label.parent.relative_to(labels_dir)
                issues.append(
                    issue(
                        "orphan_label",
                        _rel(label, root),
                        f"label file of split '{key}' has no image: no "
                        f"{_rel(image_dir, root)}/{label.stem}.* (one of {', '.join(IMAGE_SUFFIXES)})",
                    )
                )
    return issues


def _split_rank(key: str) -> int:
    return SPLIT_KEYS.index(key) if key in SPLIT_KEYS else len(SPLIT_KEYS)


def _near_duplicate_issues(root: Path, entries: list[_Entry], max_distance: int) -> list[Issue]:
    """Near-duplicate issues: each on the later image of a pair (the later split across splits)."""
    hashes = {k: e.info.hash for k, e in enumerate(entries) if e.info is not None}
    hashed = [k for k, h in hashes.items() if h is not None]
    pairs = near_duplicate_pairs([hashes[k] for k in hashed], max_distance)
    partners: dict[tuple[int, str], list[tuple[int, int]]] = defaultdict(list)
    for a, b, distance in pairs:
        first, second = hashed[a], hashed[b]
        ea, eb = entries[first], entries[second]
        if ea.split == eb.split:
            partners[(second, "near_duplicate_in_split")].append((first, distance))
            continue
        if _split_rank(eb.split) < _split_rank(ea.split):
            first, second = second, first
        partners[(second, "near_duplicate_across_splits")].append((first, distance))
    issues = []
    for (index, kind), found in partners.items():
        entry = entries[index]
        other_index, distance = min(found, key=lambda item: (item[1], item[0]))
        other = entries[other_index]
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        if kind == "near_duplicate_in_split":
            message = (
                f"near-duplicate of {_rel(other.image, root)} in the same split "
                f"'{entry.split}' (hash distance {distance}){more}"
            )
        else:
            message = (
                f"leakage: this '{entry.split}' image is a near-duplicate of "
                f"{_rel(other.image, root)} in '{other.split}' (hash distance {distance}){more}"
            )
        issues.append(issue(kind, _rel(entry.image, root), message))
    return issues


def _imbalance_issues(
    root: Path, dataset: Dataset, counts: dict[str, SplitCounts], ratio: float
) -> list[Issue]:
    issues = []
    for key, split in counts.items():
        if not sum(split.boxes.values()):
            continue
        (most, high), (least, low) = (
            max(split.boxes.items(), key=lambda kv: kv[1]),
            min(split.boxes.items(), key=lambda kv: kv[1]),
        )
        actual = high / low if low else math.inf
        if actual > ratio:
            shown = "no boxes at all" if not low else f"{actual:.1f}:1"
            issues.append(
                issue(
                    "class_imbalance",
                    _rel(dataset.sources[key][0].path, root),
                    f"'{key}': class imbalance {shown} (threshold {ratio:g}:1): "
                    f"'{most}' has {high} boxes, '{least}' {low}",
                )
            )
    return issues


@dataclass(frozen=True)
class Analysis:
    """What checking a dataset found, image by image (what :func:`fix_dataset` works from).

    Attributes:
        report: The report.
        dataset: The dataset, or None when its yaml file is unusable.
        entries: Each image once, with its split, label file and decoding result.
        labels: The checked label file of each entry that has one, by entry index.
    """

    report: QAReport
    dataset: Dataset | None
    entries: list[_Entry]
    labels: dict[int, LabelResult]


def _dataset_folder(root: str | os.PathLike) -> tuple[Path, Path]:
    """``(folder, yaml file)`` of a dataset argument (a folder or its yaml file), resolved."""
    given = Path(root).expanduser()
    folder = given.parent if given.is_file() and given.suffix in (".yaml", ".yml") else given
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset folder {folder} does not exist")
    folder = folder.resolve()
    return folder, folder / yaml_path(given).name


def analyse(
    root: str | os.PathLike,
    *,
    near_duplicates: bool,
    max_distance: int,
    imbalance_ratio: float,
    require_labels: bool,
    progress: bool,
    workers: int | None,
    inspect_images: bool = True,
) -> Analysis:
    """Checks a dataset and keeps what was found per image (see :func:`check_dataset`).

    Args:
        root: The dataset folder, or its yaml file.
        near_duplicates: Look for near-duplicate images.
        max_distance: Largest hash distance counted as a near-duplicate.
        imbalance_ratio: Class-imbalance warning threshold.
        require_labels: A missing label file is an error.
        progress: Show a progress bar while decoding.
        workers: Decoding processes; None picks.
        inspect_images: Decode and hash the images (False: labels and layout only).

    Returns:
        The analysis.

    Raises:
        FileNotFoundError: When ``root`` is not a folder.
    """
    folder, yaml_file = _dataset_folder(root)
    dataset, issues = _read_dataset(yaml_file, folder)
    if dataset is None:
        report = QAReport(root=folder, issues=tuple(issues))
        return Analysis(report, None, [], {})
    entries, collect_issues = _collect(folder, dataset)
    issues += collect_issues
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if len(entries) >= _POOL_MIN_IMAGES else 1
    if inspect_images:
        infos: list[ImageInfo] = inspect_all([e.image for e in entries], workers, progress)
        for entry, info in zip(entries, infos, strict=True):
            entry.info = info
    labels: dict[int, LabelResult] = {}
    n_classes = len(dataset.names)
    for index, entry in enumerate(entries):
        info = entry.info
        file = _rel(entry.image, folder)
        if info is not None and info.problem is not None:
            issues.append(issue(info.problem, file, f"{info.message}"))
        expected = SUFFIX_TYPES.get(entry.image.suffix.lower())
        if info is not None and info.kind is not None and info.kind != expected:
            issues.append(
                issue(
                    "extension_mismatch",
                    file,
                    f"content is {info.kind} but the extension says {expected or 'unknown'}",
                )
            )
        label_file = _rel(entry.label, folder)
        if not entry.has_label:
            message = f"no label file {label_file} (treated as a background image)"
            found = issue("missing_label", file, message)
            if require_labels:
                found = Issue("missing_label", "error", file, None, f"no label file {label_file}")
            issues.append(found)
            continue
        labels[index] = read_label(entry.label, label_file, n_classes)
        issues += labels[index].issues
    issues += _orphans(folder, dataset, entries)
    if near_duplicates:
        issues += _near_duplicate_issues(folder, entries, max_distance)
    counts: dict[str, SplitCounts] = {}
    for key in dataset.splits:
        members = [k for k, e in enumerate(entries) if e.split == key]
        per_class = Counter(c for k in members if k in labels for c in labels[k].classes)
        counts[key] = SplitCounts(
            images=len(members),
            labels=sum(entries[k].has_label for k in members),
            boxes={name: per_class.get(i, 0) for i, name in enumerate(dataset.names)},
        )
    if dataset.names:
        issues += _imbalance_issues(folder, dataset, counts, imbalance_ratio)
    issues.sort(key=lambda i: (i.file, i.line or 0, i.kind, i.message))
    report = QAReport(
        root=folder, issues=tuple(issues), splits=counts, class_names=tuple(dataset.names)
    )
    return Analysis(report, dataset, entries, labels)


def check_dataset(
    root: str | os.PathLike,
    *,
    near_duplicates: bool = True,
    max_distance: int = NEAR_DUPLICATE_DISTANCE,
    imbalance_ratio: float = 20.0,
    require_labels: bool = False,
    progress: bool = False,
    workers: int | None = None,
) -> QAReport:
    """Checks a YOLO dataset: ``data.yaml``, every image, every label line, leakage, balance.

    Each image is read and decoded once (in a pool of ``workers`` processes); its perceptual
    hash is taken from a downscaled copy.

    Args:
        root: The dataset folder holding ``data.yaml`` (or the ``data.yaml`` file itself).
        near_duplicates: Look for near-duplicate images within and across splits.
        max_distance: Largest hash distance (bits of 64) counted as a near-duplicate.
        imbalance_ratio: Warn when the most common class of a split has more than this many
            times the boxes of the rarest one.
        require_labels: Make an image without a label file an error instead of a warning
            (by default it is a background image).
        progress: Show a tqdm progress bar while decoding images.
        workers: Processes decoding images; None means ``min(2, cpu_count)`` from
            128 images on and 1 (no pool) below.

    Returns:
        The report; ``report.ok`` is False when there is any error.

    Raises:
        FileNotFoundError: When ``root`` is not a folder.
    """
    return analyse(
        root,
        near_duplicates=near_duplicates,
        max_distance=max_distance,
        imbalance_ratio=imbalance_ratio,
        require_labels=require_labels,
        progress=progress,
        workers=workers,
    ).report


def _check_out_folder(root: Path, out: Path) -> None:
    if out == root or root in out.parents:
        raise ValueError(f"output folder {out} is inside the dataset {root}; choose another place")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise FileExistsError(f"output folder {out} is not empty; give a new or empty folder")


def _is_within(path: Path, base: Path) -> bool:
    resolved = path.resolve()
    return resolved == base or base in resolved.parents


def _inside(image: Path, base: Path) -> Path | None:
    """``image`` relative to ``base`` (as written, else with links resolved), or None."""
    for candidate in (Path(os.path.abspath(image)), image.resolve()):
        if candidate == base or base in candidate.parents:
            return candidate.relative_to(base)
    return None


def _placements(entries: list[_Entry], base: Path) -> dict[Path, Path]:
    """Where each image goes in the cleaned copy, relative to it: its place under the dataset
    root, or ``outside/<split>/images/<name>`` for an image a list names from elsewhere."""
    placed: dict[Path, Path] = {}
    taken: set[str] = set()
    for entry in entries:
        relative = _inside(entry.image, base)
        if relative is None:
            folder = Path(OUTSIDE_FOLDER, entry.split, "images")
            relative, number = folder / entry.image.name, 0
            while relative.as_posix().lower() in taken:
                number += 1
                relative = folder / f"{entry.image.stem}-{number}{entry.image.suffix}"
        taken.add(relative.as_posix().lower())
        placed[entry.image] = relative
    return placed


def fix_dataset(
    root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    report: QAReport | None = None,
    near_duplicates: bool = True,
    max_distance: int = NEAR_DUPLICATE_DISTANCE,
    progress: bool = False,
    workers: int | None = None,
) -> QAReport:
    """Writes a cleaned copy of a dataset to ``out``; the original is only read.

    The rules:

    - Images that are missing, empty, corrupt or truncated are dropped with their label file,
      and so are images whose label file cannot be read as text. Orphan label files are not
      copied.
    - Label files are rewritten without malformed, non-numeric, NaN, out-of-range-class and
      zero-area lines and without duplicate boxes (the first of a duplicate group stays).
      Boxes partly outside the image are clipped to it when at least half of their area lies
      inside (:data:`~tcv_helpers.data.qa_checks.MIN_INSIDE_FRACTION`); others are dropped.
      Unchanged lines keep their text.
    - An image without a label file gets an empty one (an explicit background image).
    - An image whose content does not match its extension is renamed to the right extension
      (unless that name is taken).
    - Leakage: of each near-duplicate pair across splits, the image in the later split
      (order ``train``, ``val``, ``test``) is dropped, so ``train`` always keeps its images.
      Near-duplicates within one split are kept (they are warnings, not errors).
    - The yaml file is written without ``path:``, so the splits resolve inside ``out``. A split
      made of folders inside the dataset root keeps its folders; a split with an image list
      (or a folder outside the root) becomes ``out/<split>.txt`` listing the copies (``./``
      lines, repeats kept), images from outside the root going to ``out/outside/<split>/``.

    Args:
        root: The dataset folder (or its yaml file).
        out: New or empty folder for the copy, outside ``root``.
        report: A report of ``root`` from :func:`check_dataset` (with the same
            ``near_duplicates`` setting), to decide which images to drop without decoding them
            again; None checks ``root`` first.
        near_duplicates: Look for (and drop) cross-split near-duplicates when checking.
        max_distance: Largest hash distance counted as a near-duplicate.
        progress: Show progress bars.
        workers: Processes decoding images; None means ``min(2, cpu_count)``.

    Returns:
        The report of checking ``out``.

    Raises:
        ValueError: When ``out`` is inside ``root``, ``report`` belongs to another dataset, or
            the yaml file has errors that need a person (missing keys or splits, overlapping
            splits).
        FileExistsError: When ``out`` exists and is not an empty folder.
        FileNotFoundError: When ``root`` is not a folder.
        RuntimeError: When the copy still has errors (for example a stale ``report``).
    """
    source, yaml_file = _dataset_folder(root)
    target = Path(out).expanduser().resolve()
    _check_out_folder(source, target)
    if report is not None and report.root != source:
        raise ValueError(f"the report given is for {report.root}, not for {source}")
    analysis = analyse(
        root,
        near_duplicates=near_duplicates and report is None,
        max_distance=max_distance,
        imbalance_ratio=math.inf,
        require_labels=False,
        progress=progress,
        workers=workers,
        inspect_images=report is None,
    )
    report = report if report is not None else analysis.report
    dataset = analysis.dataset
    blocking = [i for i in report.issues if i.kind in CONFIG_KINDS]
    if dataset is None or blocking:
        lines = "\n".join(i.format() for i in blocking or analysis.report.issues)
        raise ValueError(
            f"cannot fix {source}: {yaml_file.name} needs a person's fix first:\n{lines}"
        )
    base = dataset.root.resolve()
    drop_kinds = DROPPED_IMAGE_KINDS | {"near_duplicate_across_splits"}
    dropped = {i.file for i in report.issues if i.kind in drop_kinds}
    mismatched = {i.file for i in report.issues if i.kind == "extension_mismatch"}
    placed = _placements(analysis.entries, base)
    taken = {relative.as_posix().lower() for relative in placed.values()}
    copied: dict[Path, Path] = {}
    entries: Iterable[tuple[int, _Entry]] = enumerate(analysis.entries)
    if progress:
        from tqdm.auto import tqdm

        entries = tqdm(list(entries), desc="copy", unit="img")
    for index, entry in entries:
        file = _rel(entry.image, source)
        if file in dropped or _rel(entry.label, source) in dropped:
            continue
        relative = placed[entry.image]
        data = entry.image.read_bytes()
        kind = sniff_type(data)
        if file in mismatched and kind is not None:
            renamed = relative.with_suffix(_SUFFIX_FOR_TYPE[kind])
            if renamed.as_posix().lower() not in taken:
                taken.add(renamed.as_posix().lower())
                relative = renamed
        atomic_write_bytes(target / relative, data)
        result = analysis.labels.get(index)
        lines = result.fixed_lines if result is not None else []
        atomic_write_text(label_path_for(target / relative), "".join(f"{x}\n" for x in lines))
        copied[entry.image.resolve()] = relative
    splits: dict[str, list[str] | str] = {}
    for key, sources in dataset.sources.items():
        folders = [s.path for s in sources if not s.is_list]
        if len(folders) == len(sources) and all(_is_within(f, base) for f in folders):
            relative_folders = [f.resolve().relative_to(base) for f in folders]
            for folder in relative_folders:
                (target / folder).mkdir(parents=True, exist_ok=True)
            splits[key] = [f.as_posix() for f in relative_folders]
            continue
        listed = [copied.get(p.resolve()) for p in dataset.splits[key] if p.is_file()]
        lines = "".join(f"./{relative.as_posix()}\n" for relative in listed if relative)
        atomic_write_text(target / f"{key}.txt", lines)
        splits[key] = f"{key}.txt"
    dataset.to_yaml(
        target / yaml_file.name,
        splits=splits,
        root=None,
        header=f"# Cleaned copy of {source} written by tcv_helpers.data.qa.fix_dataset.",
    )
    checked = check_dataset(
        target / yaml_file.name,
        near_duplicates=near_duplicates,
        max_distance=max_distance,
        progress=progress,
        workers=workers,
    )
    if not checked.ok:
        raise RuntimeError(
            f"the cleaned copy {target} still has errors:\n"
            + "\n".join(i.format() for i in checked.errors)
        )
    return checked


def plant_defects(root: str | os.PathLike, out: str | os.PathLike) -> dict[str, str]:
    """Copies a YOLO dataset and plants one defect of each common kind in the copy.

    For teaching and testing label QA: the copy has a truncated, an empty and a mislabelled
    image file, malformed, non-numeric, NaN, out-of-range, outside, zero-area and duplicate label
    lines, an orphan label, an image without labels and a frame copied into another split. The
    original is only read.

    Args:
        root: A YOLO dataset (any layout its ``data.yaml`` describes: ``images/train`` as
            ``tcv data synth`` writes, or Roboflow's ``train/images``) with at least eight train
            images and one val image inside its folder.
        out: Where to write the copy (must not exist yet).

    Returns:
        Each planted kind with the file (relative to ``out``) that holds it.

    Raises:
        FileExistsError: If ``out`` exists.
        ValueError: If the dataset has too few images to plant everything.
    """
    import shutil

    src, dst = Path(root), Path(out)
    if dst.exists():
        raise FileExistsError(f"{dst} exists; plant_defects writes a fresh copy.")
    source = Dataset.from_yaml(src)
    base = source.root.resolve()

    def inside(split: str) -> list[Path]:
        found = source.images(split) if split in source.splits else []
        jpegs = (p.resolve() for p in found if p.suffix.lower() == ".jpg")
        return sorted(Path(os.path.relpath(p, base)) for p in jpegs)

    train, val = inside("train"), inside("val")
    if len(train) < 8 or not val or any(p.parts[0] == ".." for p in (*train, *val)):
        raise ValueError(
            f"{src}: need at least 8 train images and 1 val image (JPEG, inside the dataset's "
            "folder) to plant defects."
        )
    shutil.copytree(src, dst)
    copy = Dataset.from_yaml(dst)
    if "path" in copy.config:  # the copy must describe itself, not the original
        copy.to_yaml(dst / "data.yaml", root=dst.resolve(), header=f"# {src} with defects planted.")
    images = [dst / p for p in train]
    labels = [label_path_for(p) for p in images]
    planted: dict[str, str] = {}

    def rel(path: Path) -> str:
        return path.relative_to(dst).as_posix()

    data = images[0].read_bytes()
    atomic_write_bytes(images[0], data[: len(data) // 2])
    planted["truncated_image"] = rel(images[0])
    atomic_write_bytes(images[1], b"")
    planted["empty_file"] = rel(images[1])
    atomic_write_text(images[2], "<html><body>camera offline</body></html>")
    planted["corrupt_image"] = rel(images[2])
    bad_lines = {
        "malformed_line": "0 0.5 0.5 0.1",
        "non_numeric": "car 0.5 0.5 0.1 0.1",
        "nan_value": "0 nan 0.5 0.1 0.1",
        "class_out_of_range": "42 0.5 0.5 0.1 0.1",
        "box_outside": "0 1.4 0.5 0.2 0.2",
    }
    for label, (kind, line) in zip(labels[3:8], bad_lines.items(), strict=True):
        atomic_write_text(label, label.read_text(encoding="utf-8") + line + "\n")
        planted[kind] = rel(label)
    first = next(
        (ln for ln in labels[3].read_text(encoding="utf-8").splitlines() if ln.strip()), None
    )
    if first is not None:
        atomic_write_text(labels[3], labels[3].read_text(encoding="utf-8") + first + "\n")
        planted["duplicate_box"] = rel(labels[3])
    orphan = labels[0].parent / "no_such_frame.txt"
    atomic_write_text(orphan, "0 0.5 0.5 0.1 0.1\n")
    planted["orphan_label"] = rel(orphan)
    leaked = (dst / val[0]).with_name(f"copy_of_{train[-1].name}")
    atomic_write_bytes(leaked, (base / train[-1]).read_bytes())
    atomic_write_bytes(label_path_for(leaked), label_path_for(base / train[-1]).read_bytes())
    planted["near_duplicate_across_splits"] = rel(leaked)
    return planted
