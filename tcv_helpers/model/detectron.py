"""Detectron2's Faster R-CNN on the course's data, scored by the same code as YOLO.

Detectron2 is not on PyPI; it is built from its source repository (README, "Detectron2"). Where
it is not importable, :func:`detectron2_status` says so in one sentence and the notebooks skip
this part. Everything else of the course runs without it.

The model is Faster R-CNN R50-FPN from the model-zoo config
``COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml``. Without pretrained weights (offline, or weights
with no pinned checksum) its default *frozen* BatchNorm makes training diverge within a few
iterations, so the backbone and the FPN use GroupNorm instead (as in Detectron2's own
"train from scratch" configs). The dataset is registered from the workspace's COCO json
(``annotations/instances_<split>.json``); predictions come back as ``sv.Detections`` in
original-image pixels, like every other backend (:mod:`tcv_helpers.model.predict`).

Example::

    from tcv_helpers.model.detectron import detectron2_status, predict_detectron2, train_detectron2

    status = detectron2_status()  # status.available, status.message
    run = train_detectron2(data_root, out_dir=models / "detectron2", iterations=20)
    predictions = predict_detectron2(run.output_dir, image_paths)
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv

from tcv_helpers.doctor import (  # noqa: F401  (DETECTRON2_* are re-exported)
    DETECTRON2_COMMIT,
    DETECTRON2_INSTALL_HINT,
    DETECTRON2_SOURCE,
)
from tcv_helpers.env import Availability
from tcv_helpers.trust import check_weights, vouch_for

#: The model-zoo configuration the course trains.
ZOO_CONFIG = "COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml"
#: How to install Detectron2 (shown when it is missing): the commit the course is tested with.
INSTALL_HINT = DETECTRON2_INSTALL_HINT
#: Detectron2's default anchor sizes (pixels) for a 640-pixel-class input, one per FPN level.
BASE_ANCHORS = (32, 64, 128, 256, 512)
CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model_final.pth"


def detectron2_status() -> Availability:
    """Whether Detectron2 can be imported here, and one sentence saying so.

    Returns:
        ``.available`` and ``.message``; the message says how to install it when it is missing.
    """
    try:
        import detectron2
        from detectron2 import model_zoo  # noqa: F401  (fails with setuptools >= 81)
    except ImportError as exc:
        return Availability(False, f"Detectron2 is not importable here ({exc}); {INSTALL_HINT}.")
    return Availability(True, f"Detectron2 {detectron2.__version__} is available.")


def resolve_device(device: str = "auto") -> str:
    """Detectron2's device for a course setting: ``auto`` is the GPU when PyTorch sees one.

    Args:
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (a profile's device, or a digit for
            GPU N as Ultralytics takes it).

    Returns:
        ``cpu`` or ``cuda[:N]``.

    Raises:
        ValueError: For anything else.
    """
    import torch

    text = str(device).strip().lower()
    if text.isdigit():
        text = f"cuda:{text}"
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu" or text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise ValueError(f"device must be auto, cpu, cuda, cuda:N or a GPU number, got {device!r}.")


def _require() -> None:
    status = detectron2_status()
    if not status.available:
        raise ImportError(status.message)


def register_coco(name: str, json_file: str | os.PathLike, image_root: str | os.PathLike) -> str:
    """Registers a COCO json with Detectron2's catalogs (again if the name is taken).

    Args:
        name: The dataset name Detectron2 will know it by.
        json_file: A COCO ``instances_*.json``.
        image_root: The folder its ``file_name`` entries are relative to.

    Returns:
        ``name``.

    Raises:
        FileNotFoundError: If the json or the image folder is missing.
        ImportError: If Detectron2 is not importable.
    """
    _require()
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_coco_instances

    json_file, image_root = Path(json_file), Path(image_root)
    for path in (json_file, image_root):
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist: make the dataset first (notebook 02).")
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_coco_instances(name, {}, str(json_file), str(image_root))
    return name


def coco_split(root: str | os.PathLike, split: str) -> tuple[Path, Path, list[str]]:
    """The COCO json, image folder and class names of one split of a course dataset.

    Args:
        root: A dataset written by the course (``annotations/instances_<split>.json`` and
            ``images/<split>/``, as ``tcv data synth`` writes it).
        split: ``train``, ``val`` or ``test``.

    Returns:
        ``(json_file, image_root, class_names)``; class ``i`` is category id ``i``, the same
        ids as the YOLO labels.

    Raises:
        FileNotFoundError: If the split's json is missing.
        ValueError: If the category ids are not increasing (classes would be renumbered).
    """
    root = Path(root)
    json_file = root / "annotations" / f"instances_{split}.json"
    if not json_file.is_file():
        raise FileNotFoundError(
            f"{json_file} does not exist: the dataset has no COCO json for split {split!r}."
        )
    categories = json.loads(json_file.read_text(encoding="utf-8")).get("categories", [])
    ids = [int(c["id"]) for c in categories]
    if ids != sorted(set(ids)):
        raise ValueError(
            f"{json_file}: category ids {ids} are not listed in increasing order, so Detectron2's "
            "class ids (categories sorted by id) would not match the class list; rewrite the "
            "json with tcv data convert."
        )
    return json_file, root / "images" / split, [str(c["name"]) for c in categories]


def faster_rcnn_config(
    num_classes: int,
    *,
    output_dir: str | os.PathLike,
    imgsz: int = 640,
    iterations: int = 1000,
    batch: int = 4,
    lr: float = 0.01,
    weights: str | os.PathLike | None = None,
    device: str = "cpu",
    train_dataset: str | None = None,
    seed: int = 0,
) -> Any:
    """Detectron2's config for Faster R-CNN R50-FPN, set up for the course's data.

    Args:
        num_classes: Number of classes (the project's six).
        output_dir: Where checkpoints and ``metrics.json`` go.
        imgsz: Shorter image side for training and inference; the anchors are scaled with it
            (Detectron2's defaults assume about 800 pixels).
        iterations: Training iterations (batches).
        batch: Images per iteration.
        lr: Base learning rate (warm-up over the first tenth, at most 100 iterations).
        weights: A checkpoint to start from: a ``detectron2://`` model-zoo name, or a file the
            course trusts (a ``.pkl``/``.pth`` is a pickle:
            :func:`tcv_helpers.trust.check_weights`). None trains from scratch with
            GroupNorm, which is what works offline.
        device: ``"cpu"`` or ``"cuda"``.
        train_dataset: Registered dataset name to train on.
        seed: Random seed.

    Returns:
        A ``detectron2.config.CfgNode``.
    """
    _require()
    from detectron2 import model_zoo
    from detectron2.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file(ZOO_CONFIG))
    cfg.MODEL.DEVICE = device
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = num_classes
    if weights is None:
        # From scratch: frozen BatchNorm has no statistics to freeze, and training diverges.
        cfg.MODEL.WEIGHTS = ""
        cfg.MODEL.BACKBONE.FREEZE_AT = 0
        cfg.MODEL.RESNETS.NORM = "GN"
        cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False
        cfg.MODEL.FPN.NORM = "GN"
    else:
        if "://" not in str(weights):  # a local pickle: refused unless the course trusts it
            check_weights(weights)
        cfg.MODEL.WEIGHTS = str(weights)
    scale = imgsz / 800
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[max(4.0, round(s * scale, 1))] for s in BASE_ANCHORS]
    if imgsz < 400:  # small frames hold few objects: fewer proposals, much less work
        # Measured at 128 px on 2 cores: 1.4 s per iteration of 4 images (1.7 s with 500/128)
        # and 0.12 s per frame at inference (0.18 s with 300 proposals).
        cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 250
        cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 100
        cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 64
    cfg.INPUT.MIN_SIZE_TRAIN = (imgsz,)
    cfg.INPUT.MAX_SIZE_TRAIN = int(imgsz * 1333 / 800)
    cfg.INPUT.MIN_SIZE_TEST = imgsz
    cfg.INPUT.MAX_SIZE_TEST = int(imgsz * 1333 / 800)
    cfg.DATASETS.TRAIN = (train_dataset,) if train_dataset else ()
    cfg.DATASETS.TEST = ()  # evaluation is the course's own (tcv_helpers.model.evaluate)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SOLVER.IMS_PER_BATCH = batch
    cfg.SOLVER.BASE_LR = lr
    cfg.SOLVER.MAX_ITER = iterations
    cfg.SOLVER.STEPS = (int(iterations * 0.8),) if iterations >= 10 else ()
    cfg.SOLVER.WARMUP_ITERS = max(1, min(100, iterations // 10))
    cfg.SOLVER.CHECKPOINT_PERIOD = max(iterations, 1)
    cfg.TEST.EVAL_PERIOD = 0
    cfg.OUTPUT_DIR = str(output_dir)
    cfg.SEED = seed
    return cfg


@dataclass
class Detectron2Run:
    """What :func:`train_detectron2` produced.

    Attributes:
        output_dir: The run folder (``config.yaml``, ``model_final.pth``, ``metrics.json``).
        weights: The final checkpoint.
        class_names: Class names by id.
        iterations: Iterations trained.
        seconds: Wall-clock seconds of training.
        losses: ``total_loss`` per iteration.
        note: One sentence on how it was trained.
    """

    output_dir: Path
    weights: Path
    class_names: list[str]
    iterations: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    note: str = ""

    def summary(self) -> dict[str, float]:
        """The key numbers (for ``record_metrics``)."""
        last = self.losses[-1] if self.losses else math.nan
        return {
            "d2_iterations": self.iterations,
            "d2_train_seconds": round(self.seconds, 1),
            "d2_final_loss": round(last, 4),
        }


def _losses(metrics_file: Path) -> list[float]:
    if not metrics_file.is_file():
        return []
    values = []
    for line in metrics_file.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "total_loss" in record:
            values.append(float(record["total_loss"]))
    return values


def train_detectron2(
    dataset_root: str | os.PathLike,
    *,
    output_dir: str | os.PathLike,
    imgsz: int = 640,
    iterations: int = 100,
    batch: int = 4,
    lr: float = 0.01,
    weights: str | os.PathLike | None = None,
    device: str = "auto",
    seed: int = 0,
) -> Detectron2Run:
    """Trains Faster R-CNN R50-FPN on the train split of a course dataset.

    Args:
        dataset_root: A dataset with COCO json per split (see :func:`coco_split`).
        output_dir: The run folder (created; an earlier run there is replaced).
        imgsz: Shorter image side.
        iterations: Training iterations.
        batch: Images per iteration.
        lr: Base learning rate.
        weights: Starting checkpoint (None: from scratch with GroupNorm).
        device: ``auto`` (the GPU when there is one), ``cpu``, ``cuda`` or ``cuda:N``: the
            profile's device (:func:`resolve_device`).
        seed: Random seed.

    Returns:
        The run: weights, class names, losses and timing.

    Raises:
        ImportError: If Detectron2 is not importable (with how to install it).
        FloatingPointError: If the loss became NaN or infinite (Detectron2 stops the run).
    """
    _require()
    from detectron2.engine import DefaultTrainer

    device = resolve_device(device)
    json_file, image_root, names = coco_split(dataset_root, "train")
    dataset = register_coco(f"tcv_{Path(dataset_root).name}_train", json_file, image_root)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = faster_rcnn_config(
        len(names), output_dir=out, imgsz=imgsz, iterations=iterations, batch=batch, lr=lr,
        weights=weights, device=device, train_dataset=dataset, seed=seed,
    )  # fmt: skip
    (out / "metrics.json").unlink(missing_ok=True)
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=False)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    try:  # every iteration's loss (metrics.json keeps only every 20th)
        losses = [float(v) for v, _ in trainer.storage.history("total_loss").values()]
    except (AttributeError, KeyError):
        losses = _losses(out / "metrics.json")
    from tcv_helpers.io import atomic_write_json, atomic_write_text

    atomic_write_text(out / CONFIG_FILE, cfg.dump())
    atomic_write_json(out / "classes.json", names)
    if (out / WEIGHTS_FILE).is_file():
        vouch_for(out / WEIGHTS_FILE, made_by="train_detectron2")
    note = (
        f"Faster R-CNN R50-FPN trained {'from ' + str(weights) if weights else 'from scratch'} "
        f"(GroupNorm{'' if weights is None else ' off'}) for {iterations} iterations of {batch} "
        f"images at {imgsz} px on {device}."
    )
    return Detectron2Run(
        output_dir=out, weights=out / WEIGHTS_FILE, class_names=names, iterations=iterations,
        seconds=seconds, losses=losses, note=note,
    )  # fmt: skip


def load_predictor(run_dir: str | os.PathLike, *, conf: float = 0.001) -> Any:
    """A ``DefaultPredictor`` for a run folder written by :func:`train_detectron2`.

    Args:
        run_dir: The run folder (its own ``config.yaml`` and ``model_final.pth``).
        conf: Score threshold (low by default, for mAP).

    Returns:
        ``detectron2.engine.DefaultPredictor``.

    Raises:
        FileNotFoundError: If the folder holds no trained run.
    """
    _require()
    from detectron2.config import get_cfg
    from detectron2.engine import DefaultPredictor

    run = Path(run_dir)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (run / name).is_file():
            raise FileNotFoundError(f"{run / name} does not exist: train Detectron2 first.")
    cfg = get_cfg()
    cfg.set_new_allowed(True)
    cfg.merge_from_file(str(run / CONFIG_FILE))
    cfg.MODEL.WEIGHTS = str(check_weights(run / WEIGHTS_FILE))
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = conf
    if cfg.MODEL.DEVICE != "cpu":  # trained on a GPU, read where there may be none (Colab, CI)
        cfg.MODEL.DEVICE = resolve_device("auto")
    return DefaultPredictor(cfg)


def predict_detectron2(
    run_dir: str | os.PathLike,
    images: Sequence[str | os.PathLike | np.ndarray],
    *,
    conf: float = 0.001,
) -> list[sv.Detections]:
    """One ``sv.Detections`` per image from a trained Detectron2 run (the same type as YOLO's).

    Args:
        run_dir: A run folder from :func:`train_detectron2`.
        images: Image paths or BGR arrays.
        conf: Score threshold.

    Returns:
        Detections in original-image pixels with ``confidence`` and ``class_id``.

    Raises:
        FileNotFoundError: If the run or an image is missing.
        ValueError: If an image cannot be decoded.
    """
    import cv2

    predictor = load_predictor(run_dir, conf=conf)
    out = []
    for item in images:
        if isinstance(item, np.ndarray):
            frame = item
        else:
            if not Path(item).is_file():
                raise FileNotFoundError(f"Image {item} does not exist.")
            frame = cv2.imread(str(item))
            if frame is None:
                raise ValueError(f"{item} is not a readable image.")
        out.append(sv.Detections.from_detectron2(predictor(frame)))
    return out
