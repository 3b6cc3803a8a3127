"""Build your own model (notebook 04): a vehicle-crop classifier and the loop that trains it.

When no pretrained model fits, a project designs its own. The task here is small on purpose:
*which vehicle class is this crop?* The crops come from the course's labelled boxes, through
the dataset type, and the dataset's own splits keep cameras apart, so validation is on cameras
the model never saw.

* :func:`crops_from_dataset` cuts every labelled box out of a dataset (square, with context).
* :class:`SmallCNN` is the custom network; :func:`torchvision_backbone` a standard one
  (ResNet-18: ImageNet weights checked against their pinned checksum when they can be had,
  random weights offline).
* :func:`fit` is a plain PyTorch loop (forward, loss, backward, step), with a validation pass
  per epoch, a cosine learning-rate schedule, dropout and weight decay switchable, early
  stopping with patience and the best checkpoint kept.
* :func:`evaluate` gives accuracy, per-class precision and recall, the confusion matrix, the
  parameters and the CPU latency; :func:`regularisation_study` and :func:`grouped_kfold`
  measure over-fitting and its cure, and the spread of accuracy across cameras.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

#: Crop side in pixels: vehicles in the course's frames are tens of pixels tall.
CROP = 32
#: Share of the box's size added around it on each side (a little road helps tell a bus from a
#: truck).
CONTEXT = 0.15
#: Boxes smaller than this (pixels, shorter side) are skipped: nothing left to classify.
MIN_SIDE = 6

EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass
class Crops:
    """Labelled crops: one row per box.

    Attributes:
        images: ``(N, 3, CROP, CROP)`` uint8, RGB.
        labels: ``(N,)`` class ids.
        cameras: The camera of each crop (its image's camera: ``manifest.csv``'s ``camera_id``,
            else the image name up to its last ``_``).
        splits: The dataset split each crop comes from.
        names: Class names, by id.
    """

    images: np.ndarray
    labels: np.ndarray
    cameras: np.ndarray
    splits: np.ndarray
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray | Sequence[int]) -> Crops:
        """The crops at ``index`` (a boolean mask or positions)."""
        index = np.asarray(index)
        index = index if index.dtype == bool else index.astype(np.int64)
        return Crops(
            self.images[index], self.labels[index], self.cameras[index], self.splits[index],
            self.names,
        )  # fmt: skip

    def split(self, *names: str) -> Crops:
        """The crops of these dataset splits (``"train"``, ``"val"``...)."""
        return self.subset(np.isin(self.splits, names))

    def counts(self) -> dict[str, int]:
        """Crops per class name (classes without crops left out)."""
        ids, n = np.unique(self.labels, return_counts=True)
        return {self.names[i]: int(c) for i, c in zip(ids, n, strict=True)}


def _cameras(dataset: Any, images: Sequence[Path]) -> list[str]:
    import pandas as pd

    manifest = dataset.folder / "manifest.csv"
    by_image: dict[str, str] = {}
    if manifest.is_file():
        table = pd.read_csv(manifest, usecols=lambda c: c in {"image", "camera_id"})
        if {"image", "camera_id"} <= set(table.columns):
            by_image = {
                str((dataset.folder / image).resolve()): str(camera)
                for image, camera in zip(table["image"], table["camera_id"], strict=True)
            }
    return [by_image.get(str(p.resolve()), p.stem.rsplit("_", 1)[0]) for p in images]


def cut_crop(frame: np.ndarray, box: Sequence[float], *, size: int = CROP) -> np.ndarray:
    """A box cut out of a frame as the classifier sees it: square, with :data:`CONTEXT` around
    it, grey (114) beyond the frame's edge, resized to ``size``.

    Args:
        frame: The frame, ``(H, W, 3)`` BGR (as OpenCV reads it).
        box: ``x1, y1, x2, y2`` in the frame's pixels.
        size: Crop side in pixels.

    Returns:
        ``(3, size, size)`` uint8, RGB (a row of :attr:`Crops.images`).
    """
    import cv2

    x1, y1, x2, y2 = (float(v) for v in box)
    height, width = frame.shape[:2]
    side = max(x2 - x1, y2 - y1) * (1 + 2 * CONTEXT)
    edge = max(1, round(side))
    left = round((x1 + x2) / 2 - side / 2)
    top = round((y1 + y2) / 2 - side / 2)
    crop = np.full((edge, edge, 3), 114, dtype=np.uint8)  # grey beyond the frame
    x0, y0 = max(left, 0), max(top, 0)
    xe, ye = min(left + edge, width), min(top + edge, height)
    if xe > x0 and ye > y0:
        crop[y0 - top : ye - top, x0 - left : xe - left] = frame[y0:ye, x0:xe]
    crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(crop[:, :, ::-1].transpose(2, 0, 1))


def crops_from_dataset(
    data: str | os.PathLike,
    *,
    size: int = CROP,
    splits: Sequence[str] = ("train", "val"),
    max_per_class: int | None = None,
    seed: int = 0,
) -> Crops:
    """Cuts every labelled box of a dataset out as a square crop.

    Args:
        data: The dataset's folder or ``data.yaml``.
        size: Crop side in pixels.
        splits: Which splits to read.
        max_per_class: Keep at most this many crops of each class per split (a random sample;
            None: all). Rare classes keep all theirs.
        seed: Seed of that sample.

    Returns:
        The crops.

    Raises:
        DatasetError: If the dataset has no such split.
        ValueError: On a malformed label (the message names the file and line), an unreadable
            image (named), or a dataset without a single usable box.
    """
    import cv2

    from tcv_helpers.data.dataset import Dataset

    dataset = Dataset.from_yaml(data)
    images, labels, cameras, where = [], [], [], []
    rng = np.random.default_rng(seed)
    for split in splits:
        paths = dataset.unique_images(split)
        found: list[tuple[np.ndarray, int, str]] = []
        for path, camera in zip(paths, _cameras(dataset, paths), strict=True):
            frame = cv2.imread(str(path))
            if frame is None:
                raise ValueError(f"{path} is not a readable image.")
            height, width = frame.shape[:2]
            boxes = dataset.annotations(path, size=(width, height))
            for box, label in zip(boxes.xyxy, boxes.class_id, strict=True):
                if min(box[2] - box[0], box[3] - box[1]) < MIN_SIDE:
                    continue
                found.append((cut_crop(frame, box, size=size), int(label), camera))
        keep = np.arange(len(found))
        if max_per_class is not None and found:
            ids = np.array([f[1] for f in found])
            keep = np.concatenate([
                rng.permutation(np.flatnonzero(ids == c))[:max_per_class] for c in np.unique(ids)
            ])  # fmt: skip
            keep.sort()
        for i in keep:
            crop, label, camera = found[i]
            images.append(crop)
            labels.append(label)
            cameras.append(camera)
            where.append(split)
    if not labels:
        raise ValueError(f"{dataset.folder}: no labelled box of at least {MIN_SIDE} px to crop.")
    return Crops(
        images=np.ascontiguousarray(np.stack(images)), labels=np.array(labels),
        cameras=np.array(cameras), splits=np.array(where), names=tuple(dataset.names),
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """PyTorch's random state seeded inside, and restored after (nothing changes for None)."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class SmallCNN(nn.Module):
    """The custom network: three convolution blocks (conv, batch norm, ReLU, max-pool), global
    average pooling, dropout and one linear layer; about 53 thousand parameters (width 24, six classes).

    Args:
        num_classes: Output classes.
        width: Channels of the first block (doubled in each next one).
        dropout: Probability of dropping each pooled feature in training (0: off).
        seed: Seed of the initial weights (None: PyTorch's global random state).
    """

    def __init__(
        self, num_classes: int, *, width: int = 24, dropout: float = 0.0, seed: int | None = None
    ) -> None:
        super().__init__()
        with _seeded(seed):
            self._build(num_classes, width, dropout)

    def _build(self, num_classes: int, width: int, dropout: float) -> None:
        layers: list[Any] = []
        channels = 3
        for i in range(3):
            out = width * 2**i
            layers += [
                nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out),
                nn.ReLU(inplace=True), nn.MaxPool2d(2),
            ]  # fmt: skip
            channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels, num_classes)
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@dataclass(frozen=True)
class Backbone:
    """A torchvision backbone and how its weights were obtained.

    Attributes:
        model: The network, its last layer replaced for our classes.
        message: One sentence: pretrained (verified) or random weights, and why.
        pretrained: Whether ImageNet weights were loaded.
    """

    model: Any
    message: str
    pretrained: bool


#: The torchvision backbone compared with the custom network: ResNet-18, the classic residual
#: network (notebook 04 measures its family). Measured on 2 cores from random weights on the
#: smoke set's 972 training crops: 0.79 validation accuracy after 6 epochs at 2.9 ms per crop,
#: where MobileNetV3-Small reached 0.62 after 8 (1.9 ms per crop).
BACKBONE = "resnet18"


def torchvision_backbone(
    num_classes: int,
    *,
    name: str = BACKBONE,
    pretrained: bool = True,
    dropout: float | None = None,
    seed: int | None = None,
) -> Backbone:
    """A torchvision classification network with a new last layer for our classes.

    With ``pretrained``, its ImageNet weights are downloaded once into torch's cache and checked
    against the checksum torchvision pins in their file name (``check_hash``); when they cannot
    be had (offline), the network starts from random weights and the message says so.

    Args:
        num_classes: Output classes.
        name: A torchvision model name (``resnet18``, ``mobilenet_v3_small``...).
        pretrained: Try the ImageNet weights.
        dropout: Dropout before the new last layer (None: the network's own).
        seed: Seed of the random weights (None: PyTorch's global random state).

    Returns:
        The backbone and one sentence on its weights.

    Raises:
        ValueError: If torchvision has no model of that name.
    """
    from torchvision.models import get_model, get_model_weights, list_models

    if name not in list_models():
        raise ValueError(f"torchvision has no model {name!r}; e.g. resnet18, mobilenet_v3_small.")
    with _seeded(seed):
        model = get_model(name, weights=None)
    label, loaded = f"{name} from random weights.", False
    if pretrained:
        weights = get_model_weights(name).DEFAULT
        try:
            state = weights.get_state_dict(progress=False, check_hash=True)
        except (OSError, RuntimeError, ValueError) as exc:  # offline, or a corrupt download
            label = (
                f"{name} from random weights: its ImageNet weights could not be had "
                f"({type(exc).__name__}), so it learns from our crops alone."
            )
        else:
            model.load_state_dict(state)
            label, loaded = f"{name} with ImageNet weights (checksum verified).", True
    parent, attribute, last = _last_linear(model)
    with _seeded(seed):
        head: nn.Module = nn.Linear(last.in_features, num_classes)
        if dropout is not None:
            head = nn.Sequential(nn.Dropout(dropout), head)
    setattr(parent, attribute, head)
    return Backbone(model=model, message=label, pretrained=loaded)


def _last_linear(model: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """The module holding a network's last ``nn.Linear``, its attribute name, and the layer."""
    found = None
    for path, module in model.named_modules():
        if isinstance(module, nn.Linear):
            found = (path, module)
    if found is None:
        raise ValueError(f"{type(model).__name__} has no linear layer to replace.")
    path, layer = found
    parent_path, _, attribute = path.rpartition(".")
    return model.get_submodule(parent_path) if parent_path else model, attribute, layer


def parameters(model: Any) -> int:
    """Trainable parameters of a network."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


# --------------------------------------------------------------------------------------------
# The training loop
# --------------------------------------------------------------------------------------------

#: ImageNet's channel statistics: what the torchvision backbone expects, and harmless for ours.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _tensor(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images).float().div_(255)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    return (x - mean) / torch.tensor(STD).view(1, 3, 1, 1)


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flips and brightness/contrast changes (what a camera varies)."""
    n = x.shape[0]
    flip = torch.rand(n, generator=generator) < 0.5
    x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
    gain = 1 + (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.4
    shift = (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.4
    return x * gain + shift


@dataclass
class FitResult:
    """A training run of :func:`fit`.

    Attributes:
        model: The network with its best weights (highest validation accuracy).
        history: One row per epoch: ``epoch``, ``lr``, ``train_loss``, ``train_acc``,
            ``val_loss``, ``val_acc``.
        best_epoch: The epoch of the best weights.
        stopped_at: The last epoch run.
        stopped_early: True when patience ran out before the last epoch.
        seconds: Wall-clock seconds.
        checkpoint: Where the best weights were saved (None: not saved).
    """

    model: Any
    history: pd.DataFrame
    best_epoch: int
    stopped_at: int
    stopped_early: bool
    seconds: float
    checkpoint: Path | None = None

    @property
    def best(self) -> dict[str, float]:
        """The best epoch's row."""
        return self.history.set_index("epoch").loc[self.best_epoch].to_dict()

    def message(self) -> str:
        """One sentence: how the run ended."""
        row = self.best
        end = (
            f"stopped early after epoch {self.stopped_at} (no better validation accuracy for "
            f"{self.stopped_at - self.best_epoch} epochs)"
            if self.stopped_early
            else f"ran all {self.stopped_at} epochs"
        )
        return (
            f"Best validation accuracy {row['val_acc']:.3f} at epoch {self.best_epoch} "
            f"(train {row['train_acc']:.3f}); {end}, {self.seconds:.0f} s."
        )


def _pass(
    model: Any, x: torch.Tensor, y: torch.Tensor, *, batch: int, loss_fn: Any
) -> tuple[float, float]:
    """Mean loss and accuracy of a model over tensors, without gradients."""
    model.eval()
    total, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(y), batch):
            out = model(x[start : start + batch])
            target = y[start : start + batch]
            total += float(loss_fn(out, target)) * len(target)
            correct += int((out.argmax(1) == target).sum())
    return total / max(len(y), 1), correct / max(len(y), 1)


def fit(
    model: Any,
    train: Crops,
    val: Crops,
    *,
    epochs: int = 20,
    lr: float = 3e-3,
    weight_decay: float = 0.0,
    patience: int | None = 5,
    augment: bool = True,
    batch: int = 64,
    seed: int = 0,
    checkpoint: str | os.PathLike | None = None,
    on_epoch: EpochCallback | None = None,
    measure_train: bool = False,
) -> FitResult:
    """Trains a classifier with a hand-written PyTorch loop.

    Every epoch: shuffle, and for each batch the four steps of all training (forward, loss,
    backward, optimiser step); then the learning rate follows a cosine schedule and a validation
    pass measures loss and accuracy on ``val``. The weights of the best validation accuracy are
    kept (and saved to ``checkpoint``); when it has not improved for ``patience`` epochs the
    loop stops early.

    Args:
        model: The network (:class:`SmallCNN`, a :class:`Backbone`'s model...); trained in place.
        train: Training crops.
        val: Validation crops (other cameras).
        epochs: Most epochs to run.
        lr: Peak learning rate of AdamW.
        weight_decay: AdamW's decoupled weight decay (L2-like regularisation; 0: off).
        patience: Epochs without a better validation accuracy before stopping (None: never).
        augment: Random flips and brightness/contrast changes of the training crops.
        batch: Crops per step.
        seed: Seed of the batch order and the augmentation (the initial weights are the
            model's: ``SmallCNN(..., seed=...)``).
        checkpoint: File for the best weights (written atomically), or None.
        on_epoch: Called after each epoch with ``(epoch, metrics)``, e.g. live curves.
        measure_train: Measure the training loss and accuracy in a pass of their own after
            each epoch, as the validation is measured (no dropout, no augmentation, the
            epoch's final weights), instead of averaging them over the epoch's batches: the
            fair side of a train/validation gap, at the cost of that pass.

    Returns:
        The run, with the best weights loaded into ``model``.

    Raises:
        ValueError: If ``train`` or ``val`` is empty, or a setting is out of range.
    """
    import pandas as pd

    if not len(train) or not len(val):
        raise ValueError(
            f"fit needs crops to train and to validate on: {len(train)} and {len(val)}."
        )
    if epochs < 1 or batch < 1 or lr <= 0 or weight_decay < 0:
        raise ValueError("epochs and batch must be positive, lr > 0 and weight_decay >= 0.")
    generator = torch.Generator().manual_seed(seed)
    x_train, y_train = _tensor(train.images), torch.from_numpy(train.labels).long()
    x_val, y_val = _tensor(val.images), torch.from_numpy(val.labels).long()
    loss_fn = nn.CrossEntropyLoss()
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=epochs)
    rows, best_acc, best_epoch, best_state = [], -1.0, 0, None
    start = time.perf_counter()
    epoch = 0
    with _seeded(seed):  # dropout draws from PyTorch's global generator: seeded, then restored
        for epoch in range(1, epochs + 1):
            model.train()
            order = torch.randperm(len(y_train), generator=generator)
            if len(order) % batch == 1 and len(order) > 1:  # batch norm cannot train on one crop
                order = order[:-1]
            seen_loss, seen_correct = 0.0, 0
            for first in range(0, len(order), batch):
                index = order[first : first + batch]
                x, y = x_train[index], y_train[index]
                if augment:
                    x = _augment(x, generator)
                out = model(x)  # forward
                loss = loss_fn(out, y)  # loss
                optimiser.zero_grad()
                loss.backward()  # backward: gradients of the loss for every weight
                optimiser.step()  # step: move the weights against their gradients
                seen_loss += float(loss.detach()) * len(y)
                seen_correct += int((out.argmax(1) == y).sum())
            row = {"epoch": epoch, "lr": schedule.get_last_lr()[0]}
            schedule.step()
            row["train_loss"] = seen_loss / len(order)
            row["train_acc"] = seen_correct / len(order)
            if measure_train:
                row["train_loss"], row["train_acc"] = _pass(
                    model, x_train, y_train, batch=256, loss_fn=loss_fn
                )
            row["val_loss"], row["val_acc"] = _pass(model, x_val, y_val, batch=256, loss_fn=loss_fn)
            rows.append(row)
            if row["val_acc"] > best_acc:
                best_acc, best_epoch = row["val_acc"], epoch
                best_state = copy.deepcopy(model.state_dict())
            if on_epoch is not None:
                on_epoch(epoch, dict(row))
            if patience is not None and epoch - best_epoch >= patience:
                break
    seconds = time.perf_counter() - start
    model.load_state_dict(best_state)
    model.eval()
    saved = None
    if checkpoint is not None:
        import io

        from tcv_helpers.io import atomic_write_bytes

        buffer = io.BytesIO()
        torch.save(
            {"state_dict": best_state, "names": list(train.names), "epoch": best_epoch}, buffer
        )
        saved = atomic_write_bytes(Path(checkpoint), buffer.getvalue())
    return FitResult(
        model=model, history=pd.DataFrame(rows), best_epoch=best_epoch, stopped_at=epoch,
        stopped_early=epoch < epochs, seconds=seconds, checkpoint=saved,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------


@dataclass
class ClassifierReport:
    """A classifier measured on crops.

    Attributes:
        accuracy: Share of crops classified right.
        per_class: One row per class present: precision, recall, support.
        confusion: Counts, rows the true class and columns the predicted one.
        parameters: Trainable parameters.
        latency_ms: Median CPU milliseconds for one crop (batch 1).
    """

    accuracy: float
    per_class: pd.DataFrame
    confusion: pd.DataFrame
    parameters: int
    latency_ms: float

    def summary(self) -> dict[str, float]:
        """Accuracy, parameters and latency as one flat dictionary."""
        return {
            "accuracy": round(self.accuracy, 4),
            "parameters": self.parameters,
            "latency_ms": round(self.latency_ms, 2),
        }


def predict(model: Any, crops: Crops, *, batch: int = 256) -> np.ndarray:
    """The class id a model gives each crop."""
    x = _tensor(crops.images)
    model.eval()
    with torch.no_grad():
        parts = [model(x[i : i + batch]).argmax(1) for i in range(0, len(x), batch)]
    return torch.cat(parts).numpy() if parts else np.zeros(0, dtype=np.int64)


def evaluate(model: Any, crops: Crops, *, repeats: int = 20) -> ClassifierReport:
    """Accuracy, per-class precision and recall, confusion matrix, parameters and latency.

    Args:
        model: A trained classifier.
        crops: The crops to measure on (validation: other cameras).
        repeats: Timed single-crop calls for the latency.

    Returns:
        The report.
    """
    import pandas as pd
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    predicted = predict(model, crops)
    present = sorted(set(crops.labels.tolist()) | set(predicted.tolist()))
    names = [crops.names[i] for i in present]
    precision, recall, _, support = precision_recall_fscore_support(
        crops.labels, predicted, labels=present, zero_division=0
    )
    per_class = pd.DataFrame(
        {"precision": precision, "recall": recall, "support": support}, index=names
    )
    confusion = pd.DataFrame(
        confusion_matrix(crops.labels, predicted, labels=present),
        index=pd.Index(names, name="true"), columns=pd.Index(names, name="predicted"),
    )  # fmt: skip
    one = _tensor(crops.images[:1])
    times = []
    with torch.no_grad():
        model(one)
        for _ in range(repeats):
            start = time.perf_counter()
            model(one)
            times.append((time.perf_counter() - start) * 1000)
    return ClassifierReport(
        accuracy=float((predicted == crops.labels).mean()), per_class=per_class,
        confusion=confusion, parameters=parameters(model), latency_ms=float(np.median(times)),
    )  # fmt: skip


@dataclass
class Comparison:
    """Several trained classifiers measured on the same crops (:func:`compare`).

    Attributes:
        runs: Name -> its training run.
        reports: Name -> its :class:`ClassifierReport`.
    """

    runs: dict[str, FitResult]
    reports: dict[str, ClassifierReport]

    def table(self) -> pd.DataFrame:
        """One row per model: accuracy, parameters, latency, epochs run and training seconds."""
        import pandas as pd

        rows = {
            name: {**report.summary(), "epochs": self.runs[name].stopped_at,
                   "seconds": round(self.runs[name].seconds, 1)}
            for name, report in self.reports.items()
        }  # fmt: skip
        return pd.DataFrame(rows).T

    def per_class(self) -> pd.DataFrame:
        """Precision, recall and support per class, the models side by side."""
        import pandas as pd

        return pd.concat({name: r.per_class for name, r in self.reports.items()}, axis=1)


def compare(runs: dict[str, FitResult], crops: Crops) -> Comparison:
    """Measures every run's model on the same crops (:func:`evaluate`)."""
    return Comparison(
        runs=dict(runs), reports={k: evaluate(r.model, crops) for k, r in runs.items()}
    )


#: The runs of :func:`regularisation_study`: name -> (dropout, weight decay, augmentation).
REGULARISATION_RUNS: dict[str, tuple[float, float, bool]] = {
    "none": (0.0, 0.0, False),
    "dropout": (0.5, 0.0, False),
    "weight decay": (0.0, 0.05, False),
    "both": (0.5, 0.05, False),
    "both + augmentation": (0.5, 0.05, True),
}


def regularisation_study(
    train: Crops,
    val: Crops,
    *,
    runs: dict[str, tuple[float, float, bool]] | None = None,
    epochs: int = 12,
    seed: int = 0,
    train_size: int | None = None,
    val_size: int | None = None,
    **options: Any,
) -> pd.DataFrame:
    """The same :class:`SmallCNN` trained with and without each regulariser, to measure them.

    Every run has the same crops, epochs (no early stopping, so over-fitting can show) and seed,
    and measures its training accuracy as its validation accuracy (``measure_train``).

    Args:
        train: Training crops (a small set over-fits sooner).
        val: Validation crops.
        runs: Name -> (dropout, weight decay, augmentation); default :data:`REGULARISATION_RUNS`.
        epochs: Epochs of every run.
        seed: Seed of every run.
        train_size: Train on this many crops, evenly spread over ``train`` (None: all):
            a small set over-fits sooner, and the study stays as fast on a large dataset.
        val_size: Validate on this many crops of ``val``, evenly spread (None: all).
        **options: Passed to :func:`fit` (``lr``, ``batch``).

    Returns:
        One row per run: its settings, train and validation accuracy at the last epoch, their
        gap, and the best validation accuracy.
    """
    import pandas as pd

    train, val = _spread(train, train_size), _spread(val, val_size)
    rows = []
    for name, (dropout, decay, augment) in (runs or REGULARISATION_RUNS).items():
        model = SmallCNN(len(train.names), dropout=dropout, seed=seed)
        run = fit(
            model, train, val, epochs=epochs, weight_decay=decay, augment=augment, patience=None,
            seed=seed, measure_train=True, **options,
        )  # fmt: skip
        last = run.history.iloc[-1]
        rows.append(
            {"run": name, "dropout": dropout, "weight_decay": decay, "augmentation": augment,
             "train_acc": last["train_acc"], "val_acc": last["val_acc"],
             "gap": last["train_acc"] - last["val_acc"], "best_val_acc": run.best["val_acc"]}
        )  # fmt: skip
    return pd.DataFrame(rows).set_index("run")


def _spread(crops: Crops, size: int | None) -> Crops:
    """``size`` crops spread evenly through ``crops`` (all of them for None)."""
    if size is None or len(crops) <= size:
        return crops
    return crops.subset(np.unique(np.linspace(0, len(crops) - 1, size).round().astype(np.int64)))


def regularisation_metrics(table: pd.DataFrame) -> dict[str, float]:
    """A :func:`regularisation_study` table as flat metrics for ``record_metrics``:
    ``reg_<run>_gap`` and ``reg_<run>_val_acc`` (``both + augmentation`` -> ``both_augmentation``)."""
    out = {}
    for run, row in table.iterrows():
        key = str(run).replace(" + ", "_").replace(" ", "_")
        out[f"reg_{key}_gap"] = round(float(row["gap"]), 4)
        out[f"reg_{key}_val_acc"] = round(float(row["val_acc"]), 4)
    return out


@dataclass
class FoldResult:
    """k-fold cross-validation grouped by camera (:func:`grouped_kfold`).

    Attributes:
        folds: One row per fold: its held-out cameras, crops and validation accuracy.
    """

    folds: pd.DataFrame = field(repr=False)

    @property
    def mean(self) -> float:
        """Mean validation accuracy over the folds."""
        return float(self.folds["val_acc"].mean())

    @property
    def std(self) -> float:
        """Their standard deviation (the spread between groups of cameras)."""
        return float(self.folds["val_acc"].std(ddof=1)) if len(self.folds) > 1 else math.nan


def grouped_kfold(
    crops: Crops,
    *,
    k: int = 3,
    epochs: int = 10,
    seed: int = 0,
    make_model: Callable[[int], Any] | None = None,
    **options: Any,
) -> FoldResult:
    """k-fold cross-validation with every camera's crops in one fold only (scikit-learn's
    ``GroupKFold``): each fold's accuracy is on cameras its model never saw.

    Args:
        crops: All crops to cross-validate on (every split together).
        k: Folds (at most the number of cameras).
        epochs: Epochs per fold (early stopping as :func:`fit`'s default).
        seed: Seed of every fold's training.
        make_model: Classes -> a new network (default :class:`SmallCNN`).
        **options: Passed to :func:`fit`.

    Returns:
        The folds.

    Raises:
        ValueError: If there are fewer cameras than folds.
    """
    import pandas as pd
    from sklearn.model_selection import GroupKFold

    cameras = sorted(set(crops.cameras.tolist()))
    if k < 2 or len(cameras) < k:
        raise ValueError(
            f"{k}-fold grouped by camera needs k >= 2 and at least {k} cameras; got {len(cameras)}."
        )
    build = make_model or (lambda n: SmallCNN(n, seed=seed))
    rows = []
    for fold, (inside, held) in enumerate(
        GroupKFold(n_splits=k).split(crops.labels, groups=crops.cameras)
    ):
        run = fit(
            build(len(crops.names)),
            crops.subset(inside),
            crops.subset(held),
            epochs=epochs,
            seed=seed,
            **options,
        )
        rows.append(
            {"fold": fold, "cameras": ", ".join(sorted(set(crops.cameras[held].tolist()))),
             "crops": len(held), "val_acc": run.best["val_acc"], "epochs_run": run.stopped_at}
        )  # fmt: skip
    return FoldResult(folds=pd.DataFrame(rows).set_index("fold"))


def draw_history(fig: Figure, history: pd.DataFrame, *, label: str = "") -> Figure:
    """Draws one run's loss and accuracy per epoch, training (dashed) and validation (solid),
    into ``fig`` (cleared first): what :class:`tcv_helpers.model.curves.LiveCurves` redraws."""
    fig.clear()
    loss_ax, acc_ax = fig.subplots(1, 2)
    _draw_run(loss_ax, acc_ax, history, label=label, colour="tab:blue")
    fig.tight_layout()
    return fig


def _draw_run(loss_ax: Any, acc_ax: Any, history: pd.DataFrame, *, label: str, colour: str) -> None:
    name = f"{label} " if label else ""
    if "train_loss" in history:
        loss_ax.plot(
            history["epoch"], history["train_loss"], "--", color=colour, label=f"{name}train"
        )
        loss_ax.plot(
            history["epoch"], history["val_loss"], "-", color=colour, label=f"{name}validation"
        )
        acc_ax.plot(
            history["epoch"], history["train_acc"], "--", color=colour, label=f"{name}train"
        )
        acc_ax.plot(
            history["epoch"], history["val_acc"], "-", color=colour, label=f"{name}validation"
        )
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("cross-entropy loss")
    acc_ax.set_xlabel("epoch")
    acc_ax.set_ylabel("accuracy")
    acc_ax.legend(fontsize=8)


def plot_history(runs: dict[str, FitResult]) -> Figure:
    """Loss and accuracy per epoch of one or more runs, the best epoch of each marked."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.6))
    loss_ax, acc_ax = fig.subplots(1, 2)
    colours = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")
    for (label, run), colour in zip(runs.items(), colours, strict=False):
        _draw_run(loss_ax, acc_ax, run.history, label=label, colour=colour)
        acc_ax.axvline(run.best_epoch, color=colour, alpha=0.3)
    fig.tight_layout()
    return fig


def plot_crops(crops: Crops, *, per_class: int = 8, seed: int = 0) -> Figure:
    """A few crops of each class, one row per class: what the classifier sees."""
    from matplotlib.figure import Figure

    present = sorted(set(crops.labels.tolist()))
    rng = np.random.default_rng(seed)
    fig = Figure(figsize=(per_class * 0.9, len(present) * 0.95))
    axes = fig.subplots(len(present), per_class, squeeze=False)
    for row, label in zip(axes, present, strict=True):
        chosen = rng.permutation(np.flatnonzero(crops.labels == label))[:per_class]
        for ax in row:
            ax.set_axis_off()
        for ax, i in zip(row, chosen, strict=False):
            ax.imshow(crops.images[i].transpose(1, 2, 0))
        row[0].set_title(crops.names[label], fontsize=8, loc="left")
    fig.tight_layout()
    return fig


def load_crop_classifier(checkpoint: str | os.PathLike) -> tuple[Any, tuple[str, ...]]:
    """The crop classifier notebook 04 saved (:func:`fit`).

    The checkpoint holds only tensors, names and numbers, so it is read with
    ``weights_only=True``: no pickled code can run, and no trust check is needed.

    Args:
        checkpoint: ``models/crop_classifier.pt``.

    Returns:
        ``(model, class names)``, the model in evaluation mode.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If it is not a :class:`SmallCNN` checkpoint.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: notebook 04 saves the crop classifier.")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        state, names = saved["state_dict"], tuple(saved["names"])
        model = SmallCNN(len(names), width=int(state["features.0.weight"].shape[0]))
        model.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, ValueError, OSError) as exc:
        raise ValueError(
            f"{path} is not a crop classifier saved by notebook 04 ({type(exc).__name__}: {exc})."
        ) from None
    return model.eval(), names
