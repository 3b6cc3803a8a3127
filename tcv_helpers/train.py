"""Training detectors with Ultralytics YOLO: the profile's settings, checkpoints, resume, curves.

Pretrained weights are used when they can be had and verified; offline the model is built from
its YAML and trained from scratch, and :func:`resolve_model` says so in one sentence. A ``.pt``
file is a Python pickle — loading one runs code — so a weights file of unknown origin is refused.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from tcv_helpers.config import Profile
from tcv_helpers.registry import DatasetUnavailable, download


@dataclass(frozen=True)
class WeightsEntry:
    """Pretrained weights the course trusts: where they come from and their checksum.

    Attributes:
        name: File name (``yolo11n.pt``).
        url: Download URL.
        sha256: Pinned checksum; a file that differs is never loaded.
        license: Licence of the weights.
    """

    name: str
    url: str
    sha256: str
    license: str


#: Weights with a pinned sha256. Empty until a checksum has been recorded from a verified
#: download: without one, ``resolve_model`` trains from the architecture's YAML instead.
WEIGHTS: dict[str, WeightsEntry] = {}


class UntrustedWeights(ValueError):
    """A ``.pt`` file whose origin the course cannot vouch for."""


def resolve_model(
    name: str, *, trusted_dirs: tuple[str | os.PathLike, ...] = (), allow_download: bool = True
) -> tuple[str, str]:
    """Decides what to load for a model name, and explains the decision in one sentence.

    - ``*.yaml``: an architecture, trained from scratch.
    - a registered ``*.pt``: downloaded once, checked against its sha256, and used; when that is
      impossible (offline, no checksum) the matching ``.yaml`` is used instead.
    - a ``*.pt`` file inside one of ``trusted_dirs`` (weights this course trained, in the
      workspace): used.
    - any other ``*.pt``: refused.

    Args:
        name: ``yolo11n.yaml``, ``yolo11n.pt`` or a path to weights.
        trusted_dirs: Folders whose ``.pt`` files this course wrote (the workspace's models).
        allow_download: Try to download registered weights.

    Returns:
        What to pass to ``ultralytics.YOLO`` and the sentence to show.

    Raises:
        UntrustedWeights: For a ``.pt`` of unknown origin.
        ValueError: For a name that is neither ``.yaml`` nor ``.pt``.
    """
    path = Path(name)
    if path.suffix == ".yaml":
        return name, f"Training {path.stem} from scratch (architecture {name}, random weights)."
    if path.suffix != ".pt":
        raise ValueError(f"Model {name!r} must be an architecture (.yaml) or weights (.pt).")
    if path.is_file():
        resolved = path.resolve()
        if any(resolved.is_relative_to(Path(d).resolve()) for d in trusted_dirs):
            return str(resolved), f"Using weights trained by this course: {path.name}."
        raise UntrustedWeights(
            f"{name} is not from this course's workspace or weights registry. A .pt file is a "
            "Python pickle: loading it runs whatever code it contains. Use weights you trained "
            "here, or add the file with its sha256 to tcv_helpers.train.WEIGHTS after checking it."
        )
    fallback = f"{path.stem}.yaml"
    entry = WEIGHTS.get(path.name)
    if entry is None:
        return fallback, (
            f"No verified checksum for {path.name} in the weights registry, so it is not "
            f"downloaded: training {fallback} from scratch instead."
        )
    if not allow_download:
        return (
            fallback,
            f"Downloads are off: training {fallback} from scratch instead of {path.name}.",
        )
    try:
        return str(
            download(entry.url, entry.sha256)
        ), f"Using pretrained {path.name} ({entry.license})."
    except DatasetUnavailable as exc:
        return fallback, f"{exc} Training {fallback} from scratch instead."


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes:
        run_dir: Ultralytics' run folder (``results.csv``, ``weights/``, ``args.yaml``).
        best: Best weights (by validation fitness), copied to ``out_dir/best.pt``.
        last: Last checkpoint (what ``resume`` continues from).
        map50: mAP at IoU 0.5 on the validation split, from the final validation.
        map50_95: mAP at IoU 0.5:0.95.
        seconds: Wall-clock seconds of the run.
        images_per_second: Training images processed per second.
        settings: The arguments given to Ultralytics.
        model_note: The sentence from :func:`resolve_model`.
    """

    run_dir: Path
    best: Path
    last: Path
    map50: float
    map50_95: float
    seconds: float
    images_per_second: float
    settings: dict[str, Any] = field(default_factory=dict)
    model_note: str = ""

    def results(self):
        """Ultralytics' per-epoch ``results.csv`` as a DataFrame (column names stripped)."""
        import pandas as pd

        frame = pd.read_csv(self.run_dir / "results.csv")
        frame.columns = [c.strip() for c in frame.columns]
        return frame


def training_args(profile: Profile, **overrides: Any) -> dict[str, Any]:
    """Ultralytics ``train()`` arguments for a profile, with overrides on top."""
    args = {
        "epochs": profile.epochs,
        "imgsz": profile.imgsz,
        "batch": profile.batch,
        "patience": profile.patience,
        "device": "cpu" if profile.device == "cpu" else None,
        **profile.train_args(),
    }
    args.update({k: v for k, v in overrides.items() if v is not None})
    return {k: v for k, v in args.items() if v is not None}


def _count_train_images(data_yaml: Path) -> int:
    import yaml

    data = yaml.safe_load(data_yaml.read_text(encoding="utf-8"))
    base = Path(data.get("path") or data_yaml.parent)
    folder = base / data["train"]
    return sum(1 for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def train(
    data_yaml: str | os.PathLike,
    *,
    profile: Profile,
    out_dir: str | os.PathLike,
    model: str | None = None,
    name: str = "train",
    seed: int = 0,
    resume: bool = False,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    **overrides: Any,
) -> TrainResult:
    """Trains a YOLO detector (the engine behind notebook 05).

    Args:
        data_yaml: The dataset's ``data.yaml``.
        profile: Supplies epochs, image size, batch, patience and the optimiser settings.
        out_dir: The workspace's models folder; the run goes to ``out_dir/<name>/`` and the best
            weights are copied to ``out_dir/best.pt``.
        model: ``.yaml`` or ``.pt`` (default: the profile's model); see :func:`resolve_model`.
        name: Run name inside ``out_dir``.
        seed: Random seed (training is deterministic for a seed on the CPU).
        resume: Continue an interrupted run from ``out_dir/<name>/weights/last.pt``.
        on_epoch: Called after every epoch with its number and metrics (losses, mAP when
            validated): draw live curves with it.
        **overrides: Any Ultralytics training argument (``epochs=5``, ``lr0=0.01``, ...).

    Returns:
        The run's weights, metrics and timing.

    Raises:
        FileNotFoundError: If ``data_yaml`` is missing, or ``resume`` finds no checkpoint.
        UntrustedWeights: For weights of unknown origin.
    """
    import shutil

    from ultralytics import YOLO

    data = Path(data_yaml)
    if not data.is_file():
        raise FileNotFoundError(f"{data} does not exist: make the dataset first (notebook 02).")
    out = Path(out_dir).resolve()
    run_dir = out / name
    last = run_dir / "weights" / "last.pt"
    settings = training_args(profile, **overrides)
    if resume:
        if not last.is_file():
            raise FileNotFoundError(f"Nothing to resume: {last} does not exist.")
        source, note = str(last), f"Resuming {name} from {last.name}."
    else:
        source, note = resolve_model(model or profile.model, trusted_dirs=(out,))
    detector = YOLO(source)

    def report(trainer: Any) -> None:
        if trainer.epoch + 1 > trainer.epochs:
            return  # Ultralytics' final validation of best.pt: its numbers go into TrainResult
        if on_epoch is not None:
            metrics = {
                k: float(v)
                for k, v in trainer.label_loss_items(trainer.tloss, prefix="train").items()
            }
            metrics.update({k: float(v) for k, v in (trainer.metrics or {}).items()})
            on_epoch(int(trainer.epoch) + 1, metrics)

    detector.add_callback("on_fit_epoch_end", report)
    start = time.perf_counter()
    if resume:
        detector.train(resume=True)
    else:
        detector.train(
            data=str(data), project=str(out), name=name, exist_ok=True, seed=seed,
            deterministic=True, plots=False, verbose=False, **settings,
        )  # fmt: skip
    seconds = time.perf_counter() - start
    best = run_dir / "weights" / "best.pt"
    if not best.is_file():
        best = last
    shutil.copy2(best, out / "best.pt")
    metrics = detector.trainer.validator.metrics if detector.trainer.validator else None
    map50 = float(metrics.box.map50) if metrics is not None else float("nan")
    map50_95 = float(metrics.box.map) if metrics is not None else float("nan")
    epochs_run = int(detector.trainer.epoch) + 1
    images = _count_train_images(data) * epochs_run
    return TrainResult(
        run_dir=run_dir, best=out / "best.pt", last=last, map50=map50, map50_95=map50_95,
        seconds=seconds, images_per_second=images / seconds if seconds else 0.0,
        settings=settings, model_note=note,
    )  # fmt: skip


def plot_training(results) -> Figure:
    """Losses and validation mAP per epoch, from a run's ``results.csv`` (path or DataFrame)."""
    import pandas as pd

    frame = pd.read_csv(results) if isinstance(results, (str, os.PathLike)) else results
    frame = frame.rename(columns=lambda c: c.strip())
    fig = Figure(figsize=(11, 3.8))
    losses, quality = fig.subplots(1, 2)
    for column in [c for c in frame.columns if c.startswith("train/")]:
        losses.plot(frame["epoch"], frame[column], marker=".", label=column.removeprefix("train/"))
    losses.set_xlabel("epoch")
    losses.set_title("training losses")
    losses.legend()
    for column in ("metrics/mAP50(B)", "metrics/mAP50-95(B)"):
        if column in frame:
            quality.plot(frame["epoch"], frame[column], marker="o", label=column.split("/")[1])
    quality.set_xlabel("epoch")
    quality.set_ylim(0, 1)
    quality.set_title("validation mAP")
    quality.legend()
    fig.tight_layout()
    return fig
