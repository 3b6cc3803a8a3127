"""Training detectors with Ultralytics YOLO: the profile's settings, checkpoints, resume, curves.

Pretrained weights are used when they can be had and verified; offline the model is built from
its YAML and trained from scratch, and :func:`resolve_model` says so in one sentence. A ``.pt``
file is a Python pickle (loading one runs the code inside it), so a weights file of unknown
origin is refused.

The engine behind notebook 05::

    from tcv_helpers.model.train import train

    result = train(data_yaml, profile=cfg.profile, out_dir=cfg.workspace.models, dataset=ds.key)
    result.map50, result.best        # workspace/models/best.pt, read by the later notebooks

Published weights carry a sidecar (``best.pt`` -> ``best.meta.json``: profile, dataset, image
size, class names, mAP50, seed), which :func:`ensure_trained` reads to tell whether the
workspace's model fits the dataset, and the release build reads to publish it as the course's
checkpoint for that profile and dataset.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure

from tcv_helpers.config import DEVICE_ENV, Profile, parse_device
from tcv_helpers.env import usable_cores
from tcv_helpers.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from tcv_helpers.model.curves import LOSS_PREFIX, read_results
from tcv_helpers.model.predict import quiet_ultralytics
from tcv_helpers.trust import (
    UntrustedWeights,  # noqa: F401  (re-exported)
    check_weights,
    register_hashes,
    vouch_for,
)

if TYPE_CHECKING:
    import pandas as pd

#: Ultralytics' licence for its released YOLO11 weights.
ULTRALYTICS_LICENSE = "AGPL-3.0 (https://ultralytics.com/license)"
_RELEASE = "https://github.com/ultralytics/assets/releases/download/v8.3.0"

#: Per-epoch callback: ``on_epoch(epoch, metrics)`` with the 1-based epoch number.
EpochCallback = Callable[[int, dict[str, float]], None]

#: Suffix of the sidecar beside published weights (``best.pt`` -> ``best.meta.json``).
META_SUFFIX = ".meta.json"


@dataclass(frozen=True)
class ModelChoice:
    """What to load for training, and one sentence saying why.

    Attributes:
        model: What to pass to ``ultralytics.YOLO``: an architecture ``.yaml`` or a ``.pt`` path.
        message: The decision in one sentence, for the notebook to print.
    """

    model: str
    message: str


@dataclass(frozen=True)
class TrainedModel:
    """The workspace's trained weights, and where they came from.

    Attributes:
        weights: The ``.pt`` file.
        message: Where it came from: found in the workspace, fetched from the asset hub, or
            trained just now (with its numbers and why there was no checkpoint).
        trained_now: True when a model was trained by this call.
        source: ``workspace``, ``hub`` or ``trained``.
    """

    weights: Path
    message: str
    trained_now: bool
    source: str


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


#: Weights with a pinned sha256 (the Ultralytics v8.3.0 release assets). Each checksum was
#: found, identical, in several independent public projects that verify these files.
WEIGHTS: dict[str, WeightsEntry] = {
    "yolo11n.pt": WeightsEntry(
        "yolo11n.pt",
        f"{_RELEASE}/yolo11n.pt",
        "0ebbc80d4a7680d14987a577cd21342b65ecfd94632bd9a8da63ae6417644ee1",
        ULTRALYTICS_LICENSE,
    ),
    "yolo11s.pt": WeightsEntry(
        "yolo11s.pt",
        f"{_RELEASE}/yolo11s.pt",
        "85a76fe86dd8afe384648546b56a7a78580c7cb7b404fc595f97969322d502d5",
        ULTRALYTICS_LICENSE,
    ),
}

register_hashes("pretrained weights (tcv_helpers.model.train.WEIGHTS)", lambda: (
    entry.sha256 for entry in WEIGHTS.values()
))  # fmt: skip

#: Ultralytics arguments a profile needs beyond its fields, by profile name. ``nbs`` (nominal
#: batch size: gradients are accumulated up to it) given as ``"batch"`` means the batch size:
#: one optimiser step per batch, which is what lets a short CPU run learn (measured: mAP50 0.42
#: with Ultralytics' default nbs=64 against 0.57 with nbs=batch, same images and epochs).
#: ``workers=0``: with cached images, loading in the main process is fastest on 2 cores.
EXTRA_TRAIN_ARGS: dict[str, dict[str, Any]] = {
    "smoke": {"cache": True, "nbs": "batch", "workers": 0},
}

#: A trained model is fine-tuned without warm-up (Ultralytics' warm-up starts the biases at a
#: learning rate of 0.1) and at a tenth of the profile's rate: Adam's first steps move every
#: weight by about the learning rate, which undoes what was learned. Measured in the smoke
#: profile (4 epochs on 80 frames of new synthetic cameras, mAP50 0.244 before fine-tuning):
#: 0.001 with the profile's rate and warm-up, 0.005 without warm-up, 0.205 at a third of the
#: rate, 0.243 at a tenth, 0.252 at a thirtieth.
FINE_TUNE_ARGS: dict[str, Any] = {"warmup_epochs": 0.0}
FINE_TUNE_LR_SCALE = 0.1
#: Both runs of :func:`fine_tune` validate after every epoch and stop after this many epochs
#: without a better validation fitness (mAP50-95): a trained model often has little left to
#: learn from a small dataset, and early stopping says so instead of spending the epochs.
FINE_TUNE_PATIENCE = 2


def resolve_model(
    name: str | os.PathLike,
    *,
    allow_download: bool = True,
    trusted: bool = False,
    trusted_dirs: tuple[str | os.PathLike, ...] = (),
) -> ModelChoice:
    """Decides what to load for a model name, and explains the decision in one sentence.

    - ``*.yaml``: an architecture, trained from scratch.
    - a registered ``*.pt`` (:data:`WEIGHTS`): downloaded once, checked against its sha256, and
      used; when that is impossible (offline, downloads off) the matching ``.yaml`` is used.
    - an existing ``*.pt`` file that :func:`tcv_helpers.trust.check_weights` accepts
      (written by this course, registered, inside ``trusted_dirs`` or the workspace's models
      folder, or given with ``trusted=True``): used.
    - any other ``*.pt``: refused.

    Args:
        name: ``yolo11n.yaml``, ``yolo11n.pt`` or a path to weights.
        allow_download: Try to download registered weights.
        trusted: The caller vouches for a local ``.pt`` file (it made it).
        trusted_dirs: Folders whose ``.pt`` files this course wrote (the workspace's models).

    Returns:
        What to pass to ``ultralytics.YOLO`` (``.model``) and the sentence to show (``.message``).

    Raises:
        UntrustedWeights: For a ``.pt`` of unknown origin.
        ValueError: For a name that is neither ``.yaml`` nor ``.pt``.
    """
    name = str(name)
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        return ModelChoice(
            name, f"Training {path.stem} from scratch (architecture {path.name}, random weights)."
        )
    if path.suffix != ".pt":
        raise ValueError(f"Model {name!r} must be an architecture (.yaml) or weights (.pt).")
    if path.is_file():
        resolved = check_weights(path, trusted=trusted, trusted_dirs=trusted_dirs).resolve()
        return ModelChoice(str(resolved), f"Using weights trained by this course: {resolved}.")
    fallback = f"{path.stem}.yaml"
    entry = WEIGHTS.get(path.name)
    if entry is None:
        return ModelChoice(
            fallback,
            f"No verified checksum for {path.name} in the weights registry, so it is not "
            f"downloaded: training {fallback} from scratch instead.",
        )
    if not allow_download:
        return ModelChoice(
            fallback, f"Downloads are off: training {fallback} from scratch instead of {path.name}."
        )
    weights, why = _fetch_weights(entry)
    if weights is None:
        return ModelChoice(
            fallback, f"{why} Training {fallback} from scratch instead of pretrained {path.name}."
        )
    return ModelChoice(
        str(weights), f"Using pretrained {path.name} (COCO, {entry.license}), checksum verified."
    )


def _fetch_weights(entry: WeightsEntry, *, timeout: float = 30.0) -> tuple[Path | None, str]:
    """Downloads registered weights once into the course cache, verified against their sha256.

    A file already in the cache with the right checksum is used without any network access.

    Returns:
        ``(file, "")``, or ``(None, why)`` with one sentence when the weights cannot be had.
    """
    import pooch
    import requests

    from tcv_helpers.io import cache_dir

    logger = pooch.get_logger()  # quiet: the caller says what happened in its own sentence
    level = logger.level
    logger.setLevel("WARNING")
    try:
        file = pooch.retrieve(
            entry.url,
            known_hash=f"sha256:{entry.sha256}",
            fname=f"{entry.sha256[:16]}-{entry.name}",
            path=cache_dir() / "weights",
            downloader=pooch.HTTPDownloader(progressbar=False, timeout=timeout),
        )
    except ValueError:  # pooch: the checksum differs (the file is not kept)
        return None, f"{entry.url} did not match its pinned sha256, so it was not used."
    except (requests.RequestException, OSError) as exc:
        return None, f"Could not download {entry.url} ({type(exc).__name__})."
    finally:
        logger.setLevel(level)
    vouch_for(file, made_by=f"download of {entry.name}, sha256 verified")
    return Path(file), ""


def model_to_train(
    profile: Profile, reports_dir: str | os.PathLike, model: str | None = None
) -> ModelChoice:
    """The model notebook 05 trains, and why.

    An explicit ``model`` wins. Otherwise the choice notebook 04 wrote to
    ``reports/model_selection.json`` is used when it is a YOLO detector (pretrained weights when
    they can be had), except in the smoke profile, which trains its own small model from its
    YAML to stay within minutes on a CPU. Without a choice, the profile's model.

    Args:
        profile: The profile (its ``model`` is the default).
        reports_dir: The workspace's reports folder.
        model: An explicit model (``yolo11s.pt``, ``yolo11n.yaml``, a path).

    Returns:
        The model (``.model``) and one sentence saying why (``.message``).
    """
    import json

    if model:
        return ModelChoice(str(model), f"Training {model}, as the MODEL parameter says.")
    selection = Path(reports_dir) / "model_selection.json"
    chosen = None
    if selection.is_file():
        try:
            chosen = json.loads(selection.read_text(encoding="utf-8")).get("model")
        except (json.JSONDecodeError, AttributeError):
            chosen = None
    if not chosen:
        return ModelChoice(
            profile.model, f"Training {profile.model}, the {profile.name} profile's model."
        )
    if not str(chosen).startswith("yolo") or "-" in str(chosen):
        return ModelChoice(
            profile.model,
            f"Notebook 04 chose {chosen}, which Ultralytics does not train as a detector here; "
            f"training {profile.model}, the {profile.name} profile's model.",
        )
    if profile.name == "smoke":
        return ModelChoice(
            profile.model,
            f"Notebook 04 chose {chosen}; the smoke profile trains {profile.model} from scratch "
            "to stay within minutes on a CPU.",
        )
    if f"{chosen}.pt" not in WEIGHTS:  # from scratch it would lose to pinned pretrained weights
        return ModelChoice(
            profile.model,
            f"Notebook 04 chose {chosen}, but this course pins no checksum for its pretrained "
            f"weights ({chosen}.pt is not in tcv_helpers.model.train.WEIGHTS), and from scratch "
            f"it would lose to pretrained weights: training {profile.model}, the "
            f"{profile.name} profile's model (MODEL = '{chosen}.yaml' trains it from scratch).",
        )
    return ModelChoice(
        f"{chosen}.pt", f"Training {chosen}, notebook 04's choice (reports/model_selection.json)."
    )


def training_args(profile: Profile, **overrides: Any) -> dict[str, Any]:
    """Ultralytics ``train()`` arguments for a profile, with overrides on top.

    The device is ``TCV_DEVICE`` when it is set (``0,1`` trains on two GPUs with DDP; a Slurm
    job asking for several GPUs sets it), else the profile's. A ``device`` override wins over
    both; lists such as ``[0, 1]`` become ``"0,1"`` (see :func:`tcv_helpers.config.parse_device`).

    Args:
        profile: Supplies epochs, image size, batch, patience, device and optimiser settings,
            plus :data:`EXTRA_TRAIN_ARGS` for its name.
        **overrides: Ultralytics arguments; a value of None changes nothing.

    Returns:
        The arguments (None values dropped).

    Raises:
        ValueError: If ``TCV_DEVICE`` or the ``device`` override is not a device request.
    """
    device = os.environ.get(DEVICE_ENV, "").strip()
    args: dict[str, Any] = {
        "epochs": profile.epochs,
        "imgsz": profile.imgsz,
        "batch": profile.batch,
        "patience": profile.patience,
        "device": parse_device(device, source=DEVICE_ENV)
        if device
        else ("cpu" if profile.device == "cpu" else None),
        **profile.train_args(),
        **EXTRA_TRAIN_ARGS.get(profile.name, {}),
    }
    args.update({k: v for k, v in overrides.items() if v is not None})
    if overrides.get("device") is not None:
        args["device"] = parse_device(overrides["device"])
    if args.get("nbs") == "batch":
        args["nbs"] = args["batch"]
    return {k: v for k, v in args.items() if v is not None}


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes:
        run_dir: Ultralytics' run folder (``results.csv``, ``weights/``, ``args.yaml``).
        best: Best weights (by validation fitness), copied to ``out_dir/best.pt``.
        last: Last checkpoint (what ``resume`` continues from).
        history: ``results.csv``, one row per epoch (column names stripped).
        map50: mAP at IoU 0.5 on the validation split, from the final validation.
        map50_95: mAP at IoU 0.5:0.95.
        seconds: Wall-clock seconds of this call (a resumed run counts only its own part).
        images_per_second: Training images processed per second in this call.
        epochs: Epochs completed in total (including those before a resume).
        settings: The arguments given to Ultralytics.
        model_note: The sentence from :func:`resolve_model` (or about the resume).
        epochs_asked: Epochs the run was set to train (0: not known).
        best_epoch: The epoch of the best validation fitness (mAP50-95), whose weights are
            ``best``, when every epoch was validated; None when only the last one was (the
            smoke profile's main run), since early stopping then has nothing to act on.
    """

    run_dir: Path
    best: Path
    last: Path
    history: pd.DataFrame
    map50: float
    map50_95: float
    seconds: float
    images_per_second: float
    epochs: int
    settings: dict[str, Any] = field(default_factory=dict)
    model_note: str = ""
    epochs_asked: int = 0
    best_epoch: int | None = None

    @property
    def stopped_early(self) -> bool:
        """True when early stopping ended the run before the epochs it was set to train."""
        return self.best_epoch is not None and 0 < self.epochs < self.epochs_asked

    def stopping_note(self) -> str:
        """One sentence on early stopping: where it stopped the run, or why it did not."""
        patience = self.settings.get("patience")
        if self.best_epoch is None:
            return (
                f"Validated only after the last of {self.epochs} epochs, so early stopping had "
                "nothing to act on (set val=True to validate every epoch)."
            )
        if self.stopped_early:
            return (
                f"Early stopping ended the run after epoch {self.epochs} of {self.epochs_asked}: "
                f"validation mAP50-95 had not improved for {patience} epochs since epoch "
                f"{self.best_epoch}, whose weights are best.pt."
            )
        return (
            f"All {self.epochs} epochs ran: validation mAP50-95 never went {patience} epochs "
            f"without improving (best at epoch {self.best_epoch}, kept as best.pt)."
        )

    def summary(self) -> dict[str, Any]:
        """The key numbers as a flat dictionary (for ``record_metrics`` and tables)."""
        return {
            "map50": round(self.map50, 4),
            "map50_95": round(self.map50_95, 4),
            "epochs": self.epochs,
            "train_seconds": round(self.seconds, 1),
            "images_per_second": round(self.images_per_second, 1),
        }


def _count_images(data_yaml: Path, split: str = "train") -> int:
    """Images Ultralytics trains on per epoch: the split's list as it reads it (repeats count)."""
    from tcv_helpers.data.dataset import Dataset

    return len(Dataset.from_yaml(data_yaml).images(split))


def _epoch_reporter(on_epoch: EpochCallback) -> dict[str, Callable[[Any], None]]:
    """Ultralytics callbacks (event name -> function) that feed ``on_epoch`` once per epoch.

    Validation metrics are passed only for epochs that were validated (the smoke profile
    validates once, at the end; other epochs carry only the training losses). Ultralytics' own
    extra ``on_fit_epoch_end`` after the final validation of ``best.pt`` is not an epoch and is
    not reported.
    """
    state = {"trained": False, "validated": False}

    def on_train_epoch_end(_trainer: Any) -> None:
        state["trained"], state["validated"] = True, False

    def on_val_end(_validator: Any) -> None:
        state["validated"] = True

    def on_fit_epoch_end(trainer: Any) -> None:
        if not state["trained"]:
            return
        metrics = {
            k: float(v) for k, v in trainer.label_loss_items(trainer.tloss, prefix="train").items()
        }
        if state["validated"]:
            metrics.update({k: float(v) for k, v in (trainer.metrics or {}).items()})
        metrics.update({k: float(v) for k, v in (getattr(trainer, "lr", None) or {}).items()})
        state["trained"] = state["validated"] = False
        on_epoch(int(trainer.epoch) + 1, metrics)

    return {
        "on_train_epoch_end": on_train_epoch_end,
        "on_val_end": on_val_end,
        "on_fit_epoch_end": on_fit_epoch_end,
    }


def _tensorboard_writer(log_dir: Path) -> Any:
    """A TensorBoard ``SummaryWriter`` for a run's epochs, or None without TensorBoard."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a dependency of the course; a bare install may lack it
        return None
    return SummaryWriter(log_dir=str(log_dir))


def _cpu_threads(trainer: Any, threads: int) -> None:
    """``on_train_start`` callback: PyTorch threads for CPU training (GPU runs are left alone)."""
    import torch

    if getattr(trainer.device, "type", "cpu") == "cpu":
        torch.set_num_threads(threads)


def _vouch_for_checkpoints(*files: str | os.PathLike | None) -> None:
    """Records the checkpoints of a run that exist as written by the course.

    Called after every save (``on_model_save``: each epoch's ``last.pt``, and ``best.pt`` when it
    improved), so a run interrupted before its end can still be resumed, evaluated or exported
    anywhere on this machine, and once more at the end (Ultralytics strips the optimizer from
    both files then).
    """
    for file in files:
        if file is not None and Path(file).is_file():
            vouch_for(file, made_by="train")


def _prepare_resume(last: Path, results_csv: Path) -> int:
    """Reads the epoch a checkpoint ends with and cuts ``results.csv`` back to it.

    A run killed between writing an epoch's row and its checkpoint would otherwise repeat that
    epoch in ``results.csv``. The checkpoint is one this course wrote (in ``out_dir``).

    Returns:
        The number of epochs the checkpoint has completed.

    Raises:
        FileNotFoundError: If the checkpoint is unreadable (the run died while writing it).
    """
    import torch

    check_weights(last, trusted_dirs=(last.parent,))  # in out_dir: written by this course
    try:
        done = int(torch.load(last, map_location="cpu", weights_only=False)["epoch"]) + 1
    except (RuntimeError, EOFError, KeyError, OSError) as exc:
        raise FileNotFoundError(
            f"Cannot resume: {last} is incomplete or damaged ({exc}); start the run again."
        ) from exc
    if results_csv.is_file():
        lines = results_csv.read_text(encoding="utf-8").splitlines(keepends=True)
        if len(lines) > done + 1:
            atomic_write_text(results_csv, "".join(lines[: done + 1]))
    return done


def train(
    data_yaml: str | os.PathLike,
    *,
    profile: Profile,
    out_dir: str | os.PathLike,
    model: str | os.PathLike | None = None,
    epochs: int | None = None,
    imgsz: int | None = None,
    batch: int | None = None,
    patience: int | None = None,
    seed: int = 0,
    resume: bool = False,
    on_epoch: EpochCallback | None = None,
    name: str = "train",
    publish_as: str | None = "best.pt",
    allow_download: bool = True,
    threads: int | None = None,
    verbose: bool = False,
    dataset: str | None = None,
    trusted_dirs: tuple[str | os.PathLike, ...] = (),
    **overrides: Any,
) -> TrainResult:
    """Trains a YOLO detector (the engine behind notebook 05).

    The run goes to ``out_dir/<name>/`` (``weights/last.pt`` after every epoch,
    ``weights/best.pt``, ``results.csv``, TensorBoard logs in ``tensorboard/``); the best weights
    are copied to ``out_dir/best.pt``, the file the later notebooks read, with its sidecar
    ``best.meta.json`` (:func:`write_model_meta`).

    Args:
        data_yaml: The dataset's ``data.yaml``.
        profile: Supplies epochs, image size, batch, patience and the optimiser settings.
        out_dir: The workspace's models folder.
        model: ``.yaml`` or ``.pt`` (default: the profile's model); see :func:`resolve_model`.
            ``.pt`` files inside ``out_dir`` (and ``trusted_dirs``) count as trained by this
            course.
        epochs: Overrides the profile's epochs.
        imgsz: Overrides the profile's image size.
        batch: Overrides the profile's batch size.
        patience: Overrides the profile's early-stopping patience (epochs without improvement
            of the validation fitness; it acts only on validated epochs).
        seed: Random seed (training is deterministic for a seed on the CPU).
        resume: Continue an interrupted run from ``out_dir/<name>/weights/last.pt`` with the
            settings stored in it (``epochs`` and the like cannot change on resume).
        on_epoch: Called after every epoch as ``on_epoch(epoch, metrics)``: training losses,
            learning rates and, for validated epochs, precision/recall/mAP. Draw live curves
            with it (:class:`LiveCurves`).
        name: Run name inside ``out_dir``.
        publish_as: File name in ``out_dir`` the best weights are copied to (None: no copy).
        allow_download: Let :func:`resolve_model` download registered pretrained weights.
        threads: PyTorch threads while training on the CPU (default: every core this process
            may use). Ultralytics would use one core fewer than there are, which on a 2-core
            machine halves the speed; the previous setting is restored afterwards.
        verbose: Show Ultralytics' own console log (thousands of lines of progress bars);
            off, only warnings show and ``on_epoch`` is the progress.
        dataset: The dataset's registry key (``synthetic``, ``manaus-traffic``; None for any
            other), recorded in the published weights' sidecar (:func:`write_model_meta`).
        trusted_dirs: Further folders whose ``.pt`` files count as trained by this course (the
            workspace's models folder, when ``out_dir`` is one of its subfolders).
        **overrides: Any other Ultralytics training argument (``lr0=0.01``, ``workers=0``...).

    Returns:
        The run's weights, per-epoch history, metrics and timing.

    Raises:
        FileNotFoundError: If ``data_yaml`` is missing, or ``resume`` finds no checkpoint.
        UntrustedWeights: For weights of unknown origin.
    """
    import torch
    from ultralytics import YOLO

    data = Path(data_yaml)
    if not data.is_file():
        raise FileNotFoundError(f"{data} does not exist: make the dataset first (notebook 02).")
    out = Path(out_dir).resolve()
    run_dir = out / name
    last = run_dir / "weights" / "last.pt"
    settings = training_args(
        profile, epochs=epochs, imgsz=imgsz, batch=batch, patience=patience, **overrides
    )
    done_before = 0
    if resume:
        if not last.is_file():
            raise FileNotFoundError(f"Nothing to resume: {last} does not exist.")
        done_before = _prepare_resume(last, run_dir / "results.csv")
        source, note = str(last), f"Resuming {name} from {last} after epoch {done_before}."
    else:
        choice = resolve_model(
            model or profile.model, allow_download=allow_download,
            trusted_dirs=(out, *trusted_dirs),
        )  # fmt: skip
        source, note = choice.model, choice.message
    detector = YOLO(source)
    writer = _tensorboard_writer(run_dir / "tensorboard")

    def report(epoch: int, metrics: dict[str, float]) -> None:
        if writer is not None:
            for key, value in metrics.items():
                writer.add_scalar(key, value, epoch)
            writer.flush()
        if on_epoch is not None:
            on_epoch(epoch, metrics)

    for event, function in _epoch_reporter(report).items():
        detector.add_callback(event, function)
    threads_before = torch.get_num_threads()
    wanted = threads or usable_cores()
    detector.add_callback("on_train_start", lambda trainer: _cpu_threads(trainer, wanted))
    detector.add_callback(
        "on_model_save", lambda trainer: _vouch_for_checkpoints(trainer.last, trainer.best)
    )
    start = time.perf_counter()
    try:
        with quiet_ultralytics(verbose):
            if resume:
                keep = ("device", "workers", "cache")
                detector.train(
                    resume=True, plots=False, **{k: settings[k] for k in keep if k in settings}
                )
            else:
                out.mkdir(parents=True, exist_ok=True)
                detector.train(
                    data=str(data), project=str(out), name=name, exist_ok=True, seed=seed,
                    deterministic=True, plots=False, **settings,
                )  # fmt: skip
    finally:
        torch.set_num_threads(threads_before)
        if writer is not None:
            writer.close()
    seconds = time.perf_counter() - start
    trainer = detector.trainer
    run_dir = Path(trainer.save_dir)
    last = run_dir / "weights" / "last.pt"
    best = run_dir / "weights" / "best.pt"
    _vouch_for_checkpoints(last, best)
    if not best.is_file():
        best = last
    if publish_as:
        best = atomic_write_bytes(out / publish_as, best.read_bytes())  # never half a file
        vouch_for(best, made_by="train")
    validator = trainer.validator
    metrics = getattr(validator, "metrics", None)
    map50 = float(metrics.box.map50) if metrics is not None else math.nan
    map50_95 = float(metrics.box.map) if metrics is not None else math.nan
    history = read_results(run_dir / "results.csv")
    if metrics is None and getattr(trainer, "ddp", False) and len(history):
        # Several GPUs (DDP): the epochs ran in worker processes, so this process has no
        # validator; the final validation is the last row of results.csv.
        map50 = float(history["metrics/mAP50(B)"].iloc[-1])
        map50_95 = float(history["metrics/mAP50-95(B)"].iloc[-1])
    if publish_as:
        from tcv_helpers.data.dataset import Dataset

        write_model_meta(
            best, profile=profile.name, dataset=dataset, imgsz=int(trainer.args.imgsz),
            names=list(Dataset.from_yaml(data).names),
            map50=round(map50, 4) if math.isfinite(map50) else None, seed=seed,
        )  # fmt: skip
    images = _count_images(data) * max(len(history) - done_before, 0)
    stopper = getattr(trainer, "stopper", None)  # its best epoch counts from 1
    every_epoch = bool(getattr(trainer.args, "val", False)) and stopper is not None
    return TrainResult(
        run_dir=run_dir, best=best, last=last, history=history, map50=map50, map50_95=map50_95,
        seconds=seconds, images_per_second=images / seconds if seconds > 0 else 0.0,
        epochs=len(history), settings=dict(trainer.args.__dict__) if resume else settings,
        model_note=note, epochs_asked=int(getattr(trainer, "epochs", 0) or 0),
        best_epoch=int(stopper.best_epoch) if every_epoch and stopper.best_epoch else None,
    )  # fmt: skip


def meta_path(weights: str | os.PathLike) -> Path:
    """The sidecar of a weights file: ``best.pt`` -> ``best.meta.json`` beside it."""
    path = Path(weights)
    return path.with_name(path.stem + META_SUFFIX)


def write_model_meta(weights: str | os.PathLike, **meta: Any) -> Path:
    """Writes the sidecar of published weights atomically (see :func:`meta_path`).

    Args:
        weights: The ``.pt`` file (it need not exist yet).
        **meta: What the weights are: ``profile``, ``dataset`` (registry key, or None for any
            other dataset), ``imgsz``, ``names``, ``map50``, ``seed``; any JSON value.

    Returns:
        The sidecar file.

    Example:
        >>> write_model_meta(models / "best.pt", profile="smoke", dataset="synthetic")  # doctest: +SKIP
        PosixPath('.../best.meta.json')
    """
    return atomic_write_json(meta_path(weights), meta)


def read_model_meta(weights: str | os.PathLike) -> dict[str, Any]:
    """The sidecar of a weights file, or ``{}`` when it is absent or not a JSON object.

    Args:
        weights: The ``.pt`` file.

    Returns:
        The recorded fields (see :func:`write_model_meta`); never raises on a bad file.
    """
    try:
        value = json.loads(meta_path(weights).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _set_aside(weights: Path, trained_on: str) -> Path:
    """Renames a workspace model trained on another dataset (and its sidecar) out of the way."""
    kept = weights.with_name(f"{weights.stem}-{trained_on}{weights.suffix}")
    os.replace(weights, kept)
    if meta_path(weights).is_file():
        os.replace(meta_path(weights), meta_path(kept))
    return kept


def _fetch_checkpoint(profile: Profile, dataset: str, weights: Path) -> tuple[bool, str]:
    """The course's checkpoint for a profile and dataset, copied to ``weights`` with its sidecar.

    Returns:
        ``(True, what was fetched)`` or ``(False, why not)``, one sentence each.
    """
    from tcv_helpers.data import hub

    name = hub.checkpoint_asset(profile.name, dataset)
    asset = hub.assets().get(name)
    if asset is None:
        return False, (
            f"The asset hub lists no course checkpoint for the {profile.name} profile on "
            f"{dataset} ({name})."
        )
    got = hub.try_fetch(name)
    if got.path is None:
        return False, got.message
    # Trusted: its sha256 matched the course's registry, and it lands in the workspace.
    atomic_write_bytes(weights, Path(got.path).read_bytes())
    meta = {**dict(asset.meta), "profile": profile.name, "dataset": dataset}
    write_model_meta(weights, **meta)
    map50 = meta.get("map50")
    score = f"mAP50 {map50:.2f}" if isinstance(map50, (int, float)) else "mAP50 not recorded"
    return True, (
        f"Fetched the course's trained checkpoint for the {profile.name} profile on {dataset} "
        f"({score}) from the asset hub instead of training: {weights}."
    )


def ensure_trained(
    data_yaml: str | os.PathLike,
    *,
    profile: Profile,
    out_dir: str | os.PathLike,
    dataset: str | None = None,
    fetch: bool = True,
    name: str = "best.pt",
    **train_kwargs: Any,
) -> TrainedModel:
    """The workspace's trained model; else the course's checkpoint; else one trained now.

    This is what lets a later notebook (06 and on) run standalone, on Colab in a fresh runtime
    too, without waiting for a training run:

    1. ``out_dir/name`` exists and its sidecar names ``dataset`` (or no dataset): it is used.
    2. Else, with ``fetch`` and a registry ``dataset``: the course's checkpoint for the profile
       and dataset is fetched from the asset hub (checked against the registry's sha256) into
       ``out_dir/name``.
    3. Else a model is trained at the profile's size, and the message says why there was no
       checkpoint.

    A workspace model trained on another dataset is kept, renamed ``best-<its dataset>.pt``.

    Args:
        data_yaml: The dataset to train on when training is needed.
        profile: Sizes the training, and names the checkpoint to fetch.
        out_dir: The workspace's models folder.
        dataset: The dataset's registry key (``LoadedDataset.key``: ``synthetic``,
            ``manaus-traffic``), or None for any other dataset (never fetched).
        fetch: Try the asset hub before training (a notebook's ``TRAIN`` parameter turns it off).
        name: The weights file in ``out_dir`` (notebook 05 writes ``best.pt``).
        **train_kwargs: Passed to :func:`train` when training is needed.

    Returns:
        The weights (``.weights``), one sentence saying where they came from (``.message``),
        whether they were trained just now (``.trained_now``) and ``.source``.
    """
    from tcv_helpers.data.registry import DATASETS

    weights = Path(out_dir) / name
    notes = []
    if weights.is_file():
        trained_on = read_model_meta(weights).get("dataset")
        if trained_on is None or trained_on == dataset:
            return TrainedModel(
                weights, f"Using the model trained earlier: {weights}.", False, "workspace"
            )
        kept = _set_aside(weights, str(trained_on))
        notes.append(
            f"The workspace's model was trained on {trained_on}, so it was kept as {kept.name}."
        )
    if not fetch:
        notes.append("Fetching the course's checkpoint is off (TRAIN).")
    elif dataset not in DATASETS:
        notes.append(f"The course publishes no checkpoint for {dataset or 'this dataset'}.")
    else:
        fetched, note = _fetch_checkpoint(profile, dataset, weights)
        notes.append(note)
        if fetched:
            return TrainedModel(weights, " ".join(notes), False, "hub")
    result = train(
        data_yaml, profile=profile, out_dir=out_dir, publish_as=name, dataset=dataset,
        **train_kwargs,
    )  # fmt: skip
    notes.append(
        f"No trained model in the workspace, so one was trained now ({profile.name} profile, "
        f"{result.epochs} epochs, {result.seconds:.0f} s, mAP50 {result.map50:.2f}): {result.best}."
    )
    return TrainedModel(result.best, " ".join(notes), True, "trained")


@dataclass
class FineTuneResult:
    """Transfer learning compared with training from scratch.

    Attributes:
        pretrained: The run on the source dataset (the synthetic set), when known.
        fine_tuned: The target dataset, starting from ``pretrained``'s best weights.
        scratch: The target dataset from random weights, for the epochs fine-tuning used.
        before: The pretrained weights scored on the target's validation split before any
            fine-tuning (mAP50, mAP50-95): what fine-tuning has to improve on.
    """

    pretrained: TrainResult | None
    fine_tuned: TrainResult
    scratch: TrainResult
    before: dict[str, float] = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        """One row per run: mAP50, mAP50-95, epochs, seconds (and the score before fine-tuning)."""
        import pandas as pd

        rows = {
            "pretrain (source)": self.pretrained,
            "fine-tuned (target)": self.fine_tuned,
            "from scratch (target)": self.scratch,
        }
        table = [{"run": k, **v.summary()} for k, v in rows.items() if v is not None]
        if self.before:
            table.insert(-2, {"run": "before fine-tuning (target)", **self.before, "epochs": 0})
        return pd.DataFrame(table).set_index("run")

    def plot(self) -> Figure:
        """Two training losses and the validation mAP50-95 (what early stopping watches) per
        epoch of the fine-tuned and the from-scratch runs; a run's best epoch is ringed."""
        fig = Figure(figsize=(11, 3.8))
        axes = fig.subplots(1, 3)
        runs = {"fine-tuned": self.fine_tuned, "from scratch": self.scratch}
        columns = (f"{LOSS_PREFIX}box_loss", f"{LOSS_PREFIX}cls_loss", "metrics/mAP50-95(B)")
        titles = ("target box_loss", "target cls_loss", "validation mAP50-95 (fitness)")
        for ax, column, title in zip(axes, columns, titles, strict=True):
            for label, run in runs.items():
                history = run.history
                if column not in history:
                    continue
                if column.startswith("metrics/") and run.best_epoch is None:
                    history = history.tail(1)  # validated only after the last epoch
                line = ax.plot(history["epoch"], history[column], marker=".", label=label)
                best = history[history["epoch"] == run.best_epoch]
                if column.startswith("metrics/") and len(best):
                    ax.plot(best["epoch"], best[column], "o", mfc="none", ms=12,
                            color=line[0].get_color())  # fmt: skip
            if column.startswith("metrics/") and "map50_95" in self.before:
                ax.axhline(self.before["map50_95"], color="grey", ls=":", label="before")
            ax.set_xlabel("epoch")
            ax.set_title(title)
            if ax.lines:
                ax.legend()
        fig.tight_layout()
        return fig


def fine_tune(
    pretrained: TrainResult | str | os.PathLike,
    target_yaml: str | os.PathLike,
    *,
    profile: Profile,
    out_dir: str | os.PathLike,
    epochs: int | None = None,
    patience: int = FINE_TUNE_PATIENCE,
    seed: int = 0,
    on_epoch: EpochCallback | None = None,
    **overrides: Any,
) -> FineTuneResult:
    """Fine-tunes a trained model on another dataset and compares with training from scratch.

    The usual story: the synthetic set taught the model what vehicles on a road look like; the
    real sample (target) is small. Two runs, for the same epochs, go to ``out_dir/finetune`` (starting from ``pretrained``) and ``out_dir/scratch`` (random weights,
    same architecture). Fine-tuning validates after every epoch and stops early after
    ``patience`` epochs without a better validation fitness (:meth:`TrainResult.stopping_note`
    says where); the run from scratch then trains for the epochs fine-tuning used, with the
    profile's settings. The fine-tuned best weights are copied to ``out_dir/finetuned.pt``
    (``out_dir/best.pt`` is left alone). Both datasets must share the class list (map the
    target's classes first: :func:`tcv_helpers.data.formats.remap_dataset`).

    Args:
        pretrained: The source run (or its ``best.pt``; a ``.pt`` outside ``out_dir`` must be
            one :func:`resolve_model` trusts).
        target_yaml: ``data.yaml`` to fine-tune on and to train from scratch on.
        profile: Supplies the training settings.
        out_dir: The workspace's models folder.
        epochs: Most epochs of fine-tuning (default: the profile's).
        patience: Validated epochs without improvement before fine-tuning stops.
        seed: Random seed of both runs.
        on_epoch: Called after every epoch of both runs.
        **overrides: Any Ultralytics training argument, for both runs.

    Returns:
        The source run (when given as a :class:`TrainResult`) and the two target runs.
    """
    from tcv_helpers.model.predict import load_yolo, validate_yolo

    weights = pretrained.best if isinstance(pretrained, TrainResult) else Path(pretrained)
    out = Path(out_dir).resolve()
    architecture = _architecture_of_weights(weights, default=profile.model, trusted_dirs=(out,))
    common: dict[str, Any] = {
        "profile": profile,
        "out_dir": out,
        "seed": seed,
        "on_epoch": on_epoch,
    }
    before = validate_yolo(
        load_yolo(weights, trusted=True), target_yaml, imgsz=profile.imgsz,  # checked above
        device=training_args(profile).get("device") or "cpu",
    )  # fmt: skip
    gentle = {
        **FINE_TUNE_ARGS, "lr0": profile.lr0 * FINE_TUNE_LR_SCALE, "val": True,
        "patience": patience, **overrides,
    }  # fmt: skip
    fine_tuned = train(
        target_yaml, model=weights, name="finetune", publish_as="finetuned.pt", epochs=epochs,
        **common, **gentle,
    )  # fmt: skip
    scratch = train(
        target_yaml, model=architecture, name="scratch", publish_as=None,
        epochs=fine_tuned.epochs, **common, **overrides,
    )  # fmt: skip
    return FineTuneResult(
        pretrained=pretrained if isinstance(pretrained, TrainResult) else None,
        fine_tuned=fine_tuned,
        scratch=scratch,
        before={"map50": round(before.map50, 4), "map50_95": round(before.map50_95, 4)},
    )


def _architecture_of_weights(
    weights: Path, *, default: str, trusted_dirs: tuple[Path, ...] = ()
) -> str:
    """The ``.yaml`` a trained checkpoint was built from (``yolo11n.yaml``), else ``default``'s."""
    import torch

    check_weights(weights, trusted_dirs=trusted_dirs)  # as fine_tune's training did
    try:
        checkpoint = torch.load(weights, map_location="cpu", weights_only=False)
        yaml_file = checkpoint["model"].yaml.get("yaml_file")
    except (OSError, RuntimeError, KeyError, AttributeError):
        yaml_file = None
    return _architecture_of(Path(yaml_file).name if yaml_file else default)


def _architecture_of(model: str | os.PathLike) -> str:
    """The ``.yaml`` architecture of a model name (``yolo11n.pt`` -> ``yolo11n.yaml``)."""
    path = Path(model)
    return str(model) if path.suffix in (".yaml", ".yml") else f"{path.stem}.yaml"
