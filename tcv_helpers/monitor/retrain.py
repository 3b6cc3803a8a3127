"""Retraining on the reviewed frames, and the model before and after (notebook 09, steps 3-4).

:func:`merged_data_yaml` writes a new list-file ``data.yaml`` that trains on the base training
images plus the reviewed frames (:meth:`tcv_helpers.monitor.review.RelabelQueue.apply_review`)
without editing the base dataset; :func:`retrain_with_queue` fine-tunes the deployed weights on
it, optionally with a control run on the base images alone; :func:`compare_models` scores the
models on the held-out sets.

What to expect, measured in the smoke profile (the course's smoke model, seed 0; 120 night
production frames from the training cameras, 60 held-out night frames from the validation
cameras 8-9, budget 60; the defaults of :func:`retrain_with_queue`: 4 epochs on the reviewed
frames listed twice plus 150 base training images, at a tenth of the profile's learning rate
like notebook 05's fine-tune): held-out night mAP50 0.463 before, 0.491 after, and 0.469 for the
same fine-tune without the reviewed frames (``control=True``); the day validation split stayed
where it was (0.501 before, 0.497 after, the control's 0.485). At a third of the rate (the
setting before) the control won, 0.503 against 0.471: a fine-tune that moves the weights that
far gains from the extra epochs alone, and what the reviewed frames add is lost in it.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import supervision as sv
from matplotlib.figure import Figure

from tcv_helpers.data.dataset import Dataset
from tcv_helpers.data.labels import label_path_for, read_yolo_labels
from tcv_helpers.io import atomic_write_bytes, atomic_write_text, link_or_copy, write_path_list
from tcv_helpers.model.train import FINE_TUNE_ARGS, FINE_TUNE_LR_SCALE
from tcv_helpers.monitor.review import reviewed_images
from tcv_helpers.project import PROJECT_CLASSES

if TYPE_CHECKING:
    import pandas as pd

    from tcv_helpers.config import Profile
    from tcv_helpers.model.train import TrainResult


# --------------------------------------------------------------------------------------------
# Retraining
# --------------------------------------------------------------------------------------------


_LINKED = re.compile(r"^[rb]\d{6}-")


def merged_data_yaml(
    base_data_yaml: str | os.PathLike,
    reviewed_dir: str | os.PathLike,
    *,
    out_dir: str | os.PathLike,
    repeat: int = 1,
    base_images: int | None = None,
    seed: int = 0,
) -> Path:
    """A new ``data.yaml`` that trains on the base training images plus the reviewed frames.

    The training images are linked (symbolic links; copies where the file system has none)
    into ``out_dir/images`` with their labels copied to ``out_dir/labels``, and listed in
    ``out_dir/train.txt``: the reviewed frames first, each ``repeat`` times, then the base
    training images. ``out_dir/data.yaml`` holds the base file's entries with ``path`` made
    absolute and ``train`` replaced by that list, so validation and test are the base's, to
    the letter. The base dataset is only read: the links keep even Ultralytics' label cache of
    the new list (``out_dir/labels.cache``) out of it.

    Args:
        base_data_yaml: The original dataset's ``data.yaml``.
        reviewed_dir: A folder with ``images/`` and ``labels/``
            (:meth:`~tcv_helpers.monitor.review.RelabelQueue.apply_review`).
        out_dir: Where the links, the list and the new data.yaml go.
        repeat: How often each reviewed frame is listed (oversampling the few new frames).
        base_images: Use a random sample of this many base training images (None: all of them).
        seed: Seed of that sample.

    Returns:
        The new data.yaml.

    Raises:
        FileNotFoundError: If the base data.yaml is missing, or a reviewed image has no label
            file.
        ValueError: If the base data.yaml is unusable or names a split that does not exist
            (:class:`~tcv_helpers.data.dataset.DatasetError`, naming the key and the paths
            tried), a reviewed label file is malformed (the message names file and line), there
            are no reviewed images, or ``repeat`` is below 1.
    """
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, got {repeat!r}.")
    if base_images is not None and base_images < 0:
        raise ValueError(f"base_images must be None or at least 0, got {base_images!r}.")
    source = Dataset.from_yaml(base_data_yaml)
    reviewed = reviewed_images(Path(reviewed_dir))
    if not reviewed:
        raise ValueError(f"{reviewed_dir}: no reviewed images in images/ (apply a review first).")
    for image in reviewed:
        label = label_path_for(image)
        if not label.is_file():
            raise FileNotFoundError(f"{image} has no label file {label}.")
        read_yolo_labels(label, 1, 1, n_classes=len(source.names))  # errors name file and line
    reviewed_set = {p.resolve() for p in reviewed}
    train = [p for p in source.images("train") if p.resolve() not in reviewed_set]
    if base_images is not None:
        train = random.Random(seed).sample(train, min(base_images, len(train)))
    out = Path(out_dir)
    for folder in (out / "images", out / "labels"):  # links of an earlier merge
        if folder.is_dir():
            for stale in folder.iterdir():
                if _LINKED.match(stale.name):
                    stale.unlink()
    linked: dict[str, list[Path]] = {"r": [], "b": []}
    for tag, images in (("r", reviewed), ("b", train)):
        for index, image in enumerate(images):
            link = out / "images" / f"{tag}{index:06d}-{image.name}"
            link_or_copy(image, link)
            label = label_path_for(image)
            if label.is_file():  # no label file: a background image, as in the base
                atomic_write_bytes(out / "labels" / f"{link.stem}.txt", label.read_bytes())
            linked[tag].append(link)
    listing = write_path_list([*linked["r"] * repeat, *linked["b"]], out / "train.txt")
    header = (
        f"# {source.yaml_file.resolve()} with {len(reviewed)} reviewed frame(s) from "
        f"{Path(reviewed_dir).resolve()} (x{repeat}) added to train; val and test unchanged."
    )
    return source.to_yaml(out / "data.yaml", splits={"train": listing.resolve()}, header=header)


@dataclass
class RetrainResult:
    """What :func:`retrain_with_queue` produced.

    Attributes:
        weights: The fine-tuned weights (``out_dir/<publish_as>``).
        data_yaml: The merged data.yaml it trained on.
        run: The training run (history, settings, timing).
        reviewed_images: Reviewed frames in the training list (each listed ``repeat`` times).
        base_images: Base training images in the list.
        control: The same fine-tune without the reviewed frames, when asked for: it tells
            what the extra epochs alone do.
    """

    weights: Path
    data_yaml: Path
    run: TrainResult
    reviewed_images: int
    base_images: int
    control: TrainResult | None = None

    def summary(self) -> dict[str, Any]:
        """Key numbers for ``record_metrics`` and tables."""
        return {
            "reviewed_images": self.reviewed_images,
            "base_images": self.base_images,
            "epochs": self.run.epochs,
            "retrain_seconds": round(self.run.seconds, 1),
        }


def retrain_with_queue(
    weights: str | os.PathLike,
    base_data_yaml: str | os.PathLike,
    reviewed_dir: str | os.PathLike,
    *,
    out_dir: str | os.PathLike,
    profile: Profile,
    epochs: int = 4,
    repeat: int = 2,
    base_images: int | None = 150,
    seed: int = 0,
    name: str = "relabel",
    publish_as: str = "relabelled.pt",
    control: bool = False,
    **overrides: Any,
) -> RetrainResult:
    """Fine-tunes the current weights on the base training set plus the reviewed frames.

    The merged dataset (:func:`merged_data_yaml`) goes to ``out_dir/<name>-data/``; training is
    :func:`tcv_helpers.model.train.train` with the profile's settings, :data:`FINE_TUNE_ARGS`, a
    learning rate of :data:`FINE_TUNE_LR_SCALE` times the profile's, and ``overrides`` on top,
    from ``weights``, into ``out_dir/<name>/``; the best weights are copied to
    ``out_dir/<publish_as>`` (``out_dir/best.pt`` is left alone).

    Args:
        weights: The deployed model's ``.pt`` (inside ``out_dir``, or one
            :func:`tcv_helpers.model.train.resolve_model` trusts).
        base_data_yaml: The dataset the model was trained on.
        reviewed_dir: The reviewed frames
            (:meth:`~tcv_helpers.monitor.review.RelabelQueue.apply_review`).
        out_dir: The workspace's models folder.
        profile: Supplies image size, batch and the optimiser settings.
        epochs: Fine-tuning epochs.
        repeat: How often each reviewed frame is listed for training.
        base_images: Train on a random sample of this many base images (None: all); a sample
            keeps what the model knew at a fraction of the seconds.
        seed: Seed of the sample and of training.
        name: Run name inside ``out_dir``.
        publish_as: File name in ``out_dir`` for the fine-tuned weights.
        control: Also run the same fine-tune on the base images alone (``out_dir/<name>-control``,
            with ``data-control.yaml``), to tell the reviewed frames' effect from the extra
            epochs'.
        **overrides: Any Ultralytics training argument (``lr0=...``, ``freeze=10``...).

    Returns:
        The new weights, the merged data.yaml and the run(s).

    Raises:
        FileNotFoundError: If ``weights`` or a dataset file is missing.
        ValueError: See :func:`merged_data_yaml`.
    """
    from tcv_helpers.model.train import train

    start = Path(weights)
    if not start.is_file():
        raise FileNotFoundError(f"{start} does not exist: which weights are deployed?")
    out = Path(out_dir)
    data_dir = out / f"{name}-data"
    data_yaml = merged_data_yaml(
        base_data_yaml, reviewed_dir, out_dir=data_dir, repeat=repeat, base_images=base_images,
        seed=seed,
    )  # fmt: skip
    listed = [ln for ln in (data_dir / "train.txt").read_text(encoding="utf-8").splitlines() if ln]
    n_reviewed = len(reviewed_images(Path(reviewed_dir)))
    settings = {**FINE_TUNE_ARGS, "lr0": profile.lr0 * FINE_TUNE_LR_SCALE, **overrides}
    common: dict[str, Any] = {"profile": profile, "out_dir": out, "model": start, "epochs": epochs,
                              "seed": seed, **settings}  # fmt: skip
    run = train(data_yaml, name=name, publish_as=publish_as, **common)
    control_run = None
    if control:
        base_only = [Path(line) for line in listed[n_reviewed * repeat :]]
        listing = write_path_list(base_only, data_dir / "train-control.txt")
        text = data_yaml.read_text(encoding="utf-8").replace(
            str((data_dir / "train.txt").resolve()), str(listing.resolve())
        )
        control_yaml = atomic_write_text(data_dir / "data-control.yaml", text)
        control_run = train(control_yaml, name=f"{name}-control", publish_as=None, **common)
    return RetrainResult(
        weights=run.best, data_yaml=data_yaml, run=run, reviewed_images=n_reviewed,
        base_images=len(listed) - n_reviewed * repeat, control=control_run,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Before and after
# --------------------------------------------------------------------------------------------


EvalSet = str | os.PathLike | tuple[Sequence[str | os.PathLike], Sequence[sv.Detections]]


@dataclass
class ModelComparison:
    """Models scored on evaluation sets (:func:`compare_models`).

    Attributes:
        rows: One per (set, model): mAP50, mAP50-95, precision, recall, images, boxes.
        models: Model names in order (``before``, ``after``, then any others).
    """

    rows: list[dict[str, Any]]
    models: tuple[str, ...]

    def to_pandas(self) -> pd.DataFrame:
        """Every number, one row per (set, model)."""
        import pandas as pd

        return pd.DataFrame(self.rows).set_index(["set", "model"])

    def table(self, metric: str = "map50") -> pd.DataFrame:
        """One row per evaluation set, one column per model, and the change after - before.

        Raises:
            KeyError: For an unknown metric.
        """
        frame = self.to_pandas()
        if metric not in frame:
            raise KeyError(f"unknown metric {metric!r}; there are {', '.join(frame.columns)}.")
        wide = frame[metric].unstack("model")[list(self.models)]
        wide = wide.loc[list(dict.fromkeys(r["set"] for r in self.rows))]
        wide["change"] = wide[self.models[1]] - wide[self.models[0]]
        wide.columns.name = metric
        return wide

    def change(self, eval_set: str, metric: str = "map50") -> float:
        """After minus before on one set."""
        return float(self.table(metric).loc[eval_set, "change"])

    def plot(self, metric: str = "map50") -> Figure:
        """Grouped bars: the metric of each model on each set, values written on the bars."""
        wide = self.table(metric)
        fig = Figure(figsize=(max(5.0, 2.2 * len(wide)), 3.6))
        ax = fig.subplots()
        width = 0.8 / len(self.models)
        positions = np.arange(len(wide))
        for k, model in enumerate(self.models):
            values = wide[model].to_numpy(dtype=float)
            bars = ax.bar(positions + (k - (len(self.models) - 1) / 2) * width, values, width,
                          label=model)  # fmt: skip
            ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], fontsize=8, padding=2)
        ax.set_xticks(positions, list(wide.index))
        ax.set_ylim(0, 1)
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} before and after the relabel loop")
        ax.legend()
        fig.tight_layout()
        return fig


def _eval_set(
    name: str, spec: Any, split: str
) -> tuple[list[Path], list[sv.Detections], list[str] | None]:
    from tcv_helpers.model.evaluate import load_ground_truth

    if isinstance(spec, str | os.PathLike):
        paths, truth, names = load_ground_truth(spec, split)
        return list(paths), list(truth), list(names)
    if isinstance(spec, tuple) and len(spec) == 2:
        paths, truth = spec
        if len(paths) != len(truth):
            raise ValueError(f"eval set {name!r}: {len(paths)} images but {len(truth)} truths.")
        return [Path(p) for p in paths], list(truth), None
    raise TypeError(
        f"eval set {name!r}: give a data.yaml (or dataset folder) or (image paths, truths)."
    )


def compare_models(
    before: str | os.PathLike | Any,
    after: str | os.PathLike | Any,
    eval_sets: Mapping[str, EvalSet],
    *,
    imgsz: int,
    split: str = "val",
    class_names: Sequence[str] = PROJECT_CLASSES,
    names: tuple[str, str] = ("before", "after"),
    others: Mapping[str, str | os.PathLike | Any] | None = None,
    device: str = "cpu",
) -> ModelComparison:
    """Scores the model before and after retraining on each evaluation set.

    Each model predicts every set's images (:func:`tcv_helpers.model.predict.predict_yolo`) and is
    scored by :func:`tcv_helpers.model.evaluate.evaluate_detections` (COCO mAP via pycocotools).

    Args:
        before: Weights (or a YOLO object) before the loop.
        after: Weights after it.
        eval_sets: Name to a dataset (``data.yaml`` or its folder; its ``split`` is used) or to
            ``(image paths, true sv.Detections)``.
        imgsz: Inference size (the training size).
        split: The split of datasets given as data.yaml.
        class_names: Class names for sets given as paths and truths.
        names: What to call the two models.
        others: More models to score beside them (e.g. ``{"control": ...}``).
        device: Inference device.

    Returns:
        The comparison (:meth:`ModelComparison.table`, :meth:`ModelComparison.plot`).

    Raises:
        ValueError: If there is no evaluation set, names repeat, or a set has no true box.
    """
    from tcv_helpers.model.evaluate import evaluate_detections
    from tcv_helpers.model.predict import load_yolo, predict_yolo

    if not eval_sets:
        raise ValueError("compare_models needs at least one evaluation set.")
    models = {names[0]: before, names[1]: after, **dict(others or {})}
    if len(models) != 2 + len(others or {}):
        raise ValueError(f"model names must differ: {names} and {list(others or {})}.")
    loaded = {label: load_yolo(model) for label, model in models.items()}
    rows = []
    for set_name, spec in eval_sets.items():
        paths, truth, set_classes = _eval_set(set_name, spec, split)
        classes = set_classes or list(class_names)
        for label, model in loaded.items():
            predictions = predict_yolo(model, paths, imgsz=imgsz, device=device)
            result = evaluate_detections(truth, predictions, classes)
            rows.append(
                {
                    "set": set_name, "model": label, "map50": result.map50,
                    "map50_95": result.map50_95, "precision": result.precision,
                    "recall": result.recall, "images": len(paths),
                    "boxes": sum(len(t) for t in truth),
                }
            )  # fmt: skip
    return ModelComparison(rows=rows, models=tuple(models))
