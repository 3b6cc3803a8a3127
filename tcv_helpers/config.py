"""Profiles, the workspace layout and the configuration object every notebook builds.

The three profiles of the course (``smoke``, ``workshop``, ``full``) are defined here and only
here: notebooks, ``tcv run`` and the tests all read :data:`PROFILES`.

A notebook's ``parameters`` cell holds literals only (papermill overrides them); the cell after
it turns them into a :class:`Config`::

    cfg = tcv.config.load_config(PROFILE, WORKDIR)
    cfg.profile.epochs, cfg.workspace.models
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from tcv_helpers.env import gpu_available
from tcv_helpers.io import atomic_write_text
from tcv_helpers.trust import trust_folder

PROFILE_ENV = "TCV_PROFILE"
DEVICE_ENV = "TCV_DEVICE"
DEFAULT_WORKDIR = "workspace"
AUTO = "auto"


@dataclass(frozen=True)
class Profile:
    """How big every stage of the course runs.

    Attributes:
        name: ``smoke``, ``workshop`` or ``full``.
        description: One sentence for people choosing a profile.
        device: ``"cpu"`` or ``"auto"`` (the first GPU when there is one).
        imgsz: Training and inference image size in pixels (square letterbox).
        epochs: Training epochs.
        batch: Training batch size.
        patience: Early-stopping patience in epochs.
        synth_images: Frames of the embedded synthetic dataset to generate.
        synth_cameras: Distinct synthetic cameras (split by camera, so at least 3).
        model: Ultralytics model configuration trained by default.
        course_minutes: Target wall-clock minutes for the whole course in this profile.
        optimizer: Ultralytics optimiser (``auto``, ``SGD``, ``AdamW``).
        lr0: Initial learning rate.
        mosaic: Probability of mosaic augmentation (it makes objects small: off for tiny images).
        warmup_epochs: Epochs of learning-rate warm-up.
        validate_each_epoch: Validate after every epoch (needed for early stopping and live
            mAP curves); the smoke profile validates once, at the end, to save time.
        real_data: Field overrides applied when the dataset is real camera frames
            (:meth:`for_real_data`): real frames are larger and harder than the synthetic ones,
            so the smoke profile trains larger and longer on them. Empty: no change.
    """

    name: str
    description: str
    device: str
    imgsz: int
    epochs: int
    batch: int
    patience: int
    synth_images: int
    synth_cameras: int
    model: str
    course_minutes: float
    optimizer: str = "auto"
    lr0: float = 0.01
    mosaic: float = 1.0
    warmup_epochs: float = 3.0
    validate_each_epoch: bool = True
    real_data: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        known = {f.name for f in fields(self)} - {"name", "real_data"}
        unknown = sorted(set(self.real_data) - known)
        if unknown:
            raise ValueError(
                f"Profile {self.name!r}: real_data names unknown field(s) {', '.join(unknown)}."
            )
        object.__setattr__(self, "real_data", dict(self.real_data))

    def to_dict(self) -> dict[str, Any]:
        """Returns the profile as a plain dictionary (for tables and YAML)."""
        return asdict(self)

    def for_real_data(self) -> Profile:
        """The profile with its :attr:`real_data` overrides applied (itself when there are none).

        The overrides stay recorded, so applying them twice changes nothing more.

        Example:
            >>> PROFILES["smoke"].for_real_data().imgsz
            192
        """
        return replace(self, **self.real_data) if self.real_data else self

    def train_args(self) -> dict[str, Any]:
        """The optimiser and augmentation settings as Ultralytics ``train()`` arguments."""
        return {
            "optimizer": self.optimizer,
            "lr0": self.lr0,
            "mosaic": self.mosaic,
            "warmup_epochs": self.warmup_epochs,
            "val": self.validate_each_epoch,
        }


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        description="CPU, minutes for the whole course; tiny images and few epochs (what CI runs).",
        device="cpu",
        imgsz=128,
        # 18 epochs at lr0 0.003: mAP50 0.553 on the embedded set's validation cameras in 142 s
        # on 2 cores. Shorter runs were measured and kept out: 12 epochs at 0.006 gave 0.529
        # in 94 s, but its lower recall turned notebook 10's count error from 4% into 18% and
        # made notebook 09 raise a drift alarm on ordinary day frames; 12 at 0.003 gave 0.462,
        # 12 at 0.01 0.493, 13 at 0.005 0.521, 14 at 0.006 0.502 (seed 0; repeatable).
        epochs=18,
        batch=16,
        patience=18,
        synth_images=600,
        synth_cameras=12,
        model="yolo11n.yaml",
        course_minutes=10,
        optimizer="AdamW",
        lr0=0.003,
        mosaic=0.0,
        warmup_epochs=1.0,
        validate_each_epoch=False,
        # Real frames (up to 800 px, small vehicles) learn little at 128 px. Measured on 2 cores,
        # 18 epochs at lr0 0.003 from random weights on the Manaus set: mAP50 0.02 at 128 px,
        # 0.09 at 192 px (128 s), 0.10 at 256 px (211 s), 0.13 at 320 px (about 2.2x 256's
        # time); 12 epochs at 0.006 gave 0.05 at 192 px. 192 px keeps the real-data course within
        # the smoke profile's time.
        real_data={"imgsz": 192},
    ),
    "workshop": Profile(
        name="workshop",
        description="One free Colab GPU within a 2-3 hour workshop; real data.",
        device="auto",
        imgsz=640,
        epochs=30,
        batch=16,
        patience=10,
        synth_images=2000,
        synth_cameras=12,
        model="yolo11n.pt",
        course_minutes=150,
    ),
    "full": Profile(
        name="full",
        description="A real GPU node: larger models, longer training, sweeps.",
        device="auto",
        imgsz=640,
        epochs=150,
        batch=32,
        patience=30,
        synth_images=10000,
        synth_cameras=24,
        model="yolo11s.pt",
        course_minutes=600,
    ),
}


def resolve_profile(name: str = AUTO) -> Profile:
    """Turns a profile name, or ``"auto"``, into a :class:`Profile`.

    ``"auto"`` means: the ``TCV_PROFILE`` environment variable if it is set, else ``workshop``
    when a GPU is available and ``smoke`` without one.

    Args:
        name: ``"smoke"``, ``"workshop"``, ``"full"`` or ``"auto"`` (case-insensitive).

    Returns:
        The profile.

    Raises:
        ValueError: If the name (or the value of ``TCV_PROFILE``) is not a known profile.
    """
    key = str(name).strip().lower()
    source = "PROFILE"
    if key == AUTO:
        env = os.environ.get(PROFILE_ENV, "").strip().lower()
        if env:
            key, source = env, f"the environment variable {PROFILE_ENV}"
        else:
            key = "workshop" if gpu_available() else "smoke"
    if key not in PROFILES:
        known = ", ".join([*PROFILES, AUTO])
        raise ValueError(f"Unknown profile {name!r} (from {source}); choose one of: {known}.")
    return PROFILES[key]


def parse_device(value: Any, *, source: str = "device") -> str | None:
    """Turns a training device request into the text Ultralytics takes.

    Several GPUs train with DDP: ``"0,1"``, ``[0, 1]`` or ``(0, 1)`` all become ``"0,1"``.
    Indices count the GPUs this process sees (under Slurm: the ones the job was given).

    Args:
        value: None, ``""`` or ``"auto"`` (Ultralytics' default: the first GPU, else the CPU),
            ``"cpu"``, ``"mps"``, a GPU index (``0``, ``"cuda:1"``, ``-1`` for the idlest GPU)
            or several (``"0,1"``, ``[0, 1]``).
        source: What the value came from, for the error message (``TCV_DEVICE``, ``device``).

    Returns:
        ``None`` (the default), ``"cpu"``, ``"mps"`` or GPU indices such as ``"0"`` or ``"0,1"``.

    Raises:
        ValueError: If the value is none of these.
    """
    if isinstance(value, bool):
        raise ValueError(f"{source}={value!r}: give cpu, a GPU index (0) or several (0,1).")
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        items = [str(v).strip() for v in value]
    else:
        text = str(value).strip().lower()
        if text in ("", AUTO):
            return None
        if text in ("cpu", "mps"):
            return text
        if text == "cuda":
            return "0"
        text = text.replace("cuda:", "").strip("[]()")
        items = [part.strip() for part in text.split(",")]
    if not items or not all(item.lstrip("-").isdigit() and int(item) >= -1 for item in items):
        raise ValueError(
            f"{source}={value!r}: give cpu, a GPU index (0), several (0,1 or [0, 1]) or -1 "
            "for the idlest GPU."
        )
    return ",".join(str(int(item)) for item in items)


@dataclass(frozen=True)
class Workspace:
    """Where everything a notebook produces goes, and how notebooks hand artifacts on.

    Layout::

        WORKDIR/
          project.yaml   problem definition and success criteria (notebook 01)
          data/          datasets
          models/        weights and exported models
          reports/       evaluation reports, plots, benchmark tables

    Attributes:
        root: The workspace folder.
    """

    root: Path

    @property
    def data(self) -> Path:
        """Datasets folder."""
        return self.root / "data"

    @property
    def models(self) -> Path:
        """Weights and exported models."""
        return self.root / "models"

    @property
    def reports(self) -> Path:
        """Reports, plots and tables."""
        return self.root / "reports"

    @property
    def project_file(self) -> Path:
        """The problem definition written by notebook 01."""
        return self.root / "project.yaml"

    def create(self) -> Workspace:
        """Creates the folders (idempotent) and returns the workspace."""
        for folder in (self.data, self.models, self.reports):
            folder.mkdir(parents=True, exist_ok=True)
        return self


@dataclass(frozen=True)
class Config:
    """Everything a notebook needs to know about the run it is part of.

    Attributes:
        profile: The resolved profile.
        workspace: The workspace (already created on disk).
        params: The notebook's other parameters, as given.
        dataset: The dataset the profile was adjusted for by :meth:`for_dataset` (its registry
            key or folder name), or None before that.
    """

    profile: Profile
    workspace: Workspace
    params: dict[str, Any] = field(default_factory=dict)
    dataset: str | None = None

    def for_dataset(self, loaded: Any) -> Config:
        """The configuration adjusted for a dataset: the profile's real-data settings on real data.

        Args:
            loaded: What :func:`tcv_helpers.data.registry.load_dataset` returned; only its
                ``real`` flag (real camera frames or not), ``key`` and ``path`` are read.

        Returns:
            A new configuration; on real data its profile is :meth:`Profile.for_real_data`.

        Example:
            >>> cfg = cfg.for_dataset(load_dataset(DATASET, data_dir=..., profile=cfg.profile))  # doctest: +SKIP
            >>> cfg.profile.imgsz  # doctest: +SKIP
            256
        """
        real = bool(getattr(loaded, "real", False))
        key = getattr(loaded, "key", None)
        path = getattr(loaded, "path", None)
        label = key or (Path(path).name if path is not None else None)
        profile = self.profile.for_real_data() if real else self.profile
        return replace(
            self, profile=profile, dataset=f"{label} ({'real' if real else 'synthetic'})"
        )

    def describe(self) -> str:
        """One line for the notebook to show: profile (as adjusted for the dataset), workspace."""
        dataset = f" | dataset={self.dataset}" if self.dataset else ""
        return (
            f"profile={self.profile.name} (imgsz={self.profile.imgsz}, "
            f"epochs={self.profile.epochs}, device={self.profile.device}){dataset} | "
            f"workspace={self.workspace.root}"
        )


def load_config(
    profile: str = AUTO, workdir: str | os.PathLike = DEFAULT_WORKDIR, **params: Any
) -> Config:
    """Builds the :class:`Config` from a notebook's parameters cell.

    Args:
        profile: ``PROFILE`` from the parameters cell.
        workdir: ``WORKDIR`` from the parameters cell; created if missing.
        **params: Any other parameters, kept in :attr:`Config.params`.

    Returns:
        The configuration, with the workspace folders created.

    Raises:
        ValueError: If the profile is unknown or ``workdir`` is an existing file.
    """
    root = Path(workdir).expanduser()
    if root.exists() and not root.is_dir():
        raise ValueError(f"WORKDIR {str(root)!r} exists and is a file, not a folder.")
    workspace = Workspace(root.resolve()).create()
    # The learner's own workspace: weights in its models folder may be loaded (a .pt is a
    # pickle; see tcv_helpers.trust), e.g. notebook 05's model in a fresh Colab runtime.
    trust_folder(workspace.models)
    return Config(
        profile=resolve_profile(profile),
        workspace=workspace,
        params=dict(params),
    )


def with_overrides(profile: Profile, **changes: Any) -> Profile:
    """Returns a copy of a profile with some fields changed (unknown fields raise).

    Raises:
        ValueError: If a field name is not a profile field.
    """
    unknown = sorted(set(changes) - set(profile.to_dict()))
    if unknown:
        raise ValueError(f"Unknown profile field(s): {', '.join(unknown)}.")
    return replace(profile, **changes)


def save_yaml(path: Path, data: dict[str, Any]) -> Path:
    """Writes a dictionary as YAML atomically (the file is whole or untouched)."""
    import yaml

    return atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
