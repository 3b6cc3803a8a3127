"""Predictions as ``sv.Detections``: one detection type for every backend and stage.

A YOLO model (Ultralytics), a Detectron2 model (:mod:`tcv_helpers.model.detectron`) and, later, the
ONNX service all hand back one ``sv.Detections`` per image (``xyxy`` pixels of the original
image, ``confidence``, ``class_id``), so :mod:`tcv_helpers.model.evaluate` scores them all the same way.

Example::

    from tcv_helpers.model.evaluate import load_ground_truth
    from tcv_helpers.model.predict import predict_yolo

    paths, truth, names = load_ground_truth(data_root, "val")
    predictions = predict_yolo(cfg.workspace.models / "best.pt", paths, imgsz=128)
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv

from tcv_helpers.env import use_every_core

#: Confidence threshold for predictions that are scored by mAP: low, as in Ultralytics' own
#: validation, so that the precision-recall curve is traced to its end.
EVAL_CONFIDENCE = 0.001
#: IoU threshold of non-maximum suppression for scoring (Ultralytics' validation default).
EVAL_NMS_IOU = 0.7


@contextlib.contextmanager
def quiet_ultralytics(verbose: bool = False) -> Iterator[None]:
    """Keeps Ultralytics' per-batch progress bars and info lines out of the output.

    Its console log is thousands of lines in a notebook; the course shows its own progress
    (live curves, one line per result). Warnings still show. ``verbose=True`` changes nothing.
    Every Ultralytics call the course makes goes through here or :func:`load_yolo`, which also
    keep PyTorch on every core (:func:`tcv_helpers.env.use_every_core`).
    """
    use_every_core()
    if verbose:
        yield
        return
    from ultralytics.utils import LOGGER

    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)
    try:
        yield
    finally:
        LOGGER.setLevel(level)


def _batches(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def load_yolo(model: str | os.PathLike | Any, *, trusted: bool = False) -> Any:
    """An Ultralytics YOLO model from weights this course trained (or an existing model object).

    A ``.pt`` is a Python pickle, so it goes through the course's trust check first
    (:func:`tcv_helpers.trust.check_weights`): weights this course wrote, registered ones,
    or files in the workspace's models folder. Exported models (ONNX, an OpenVINO folder) are
    not pickles and load as they are. For pretrained COCO weights, verified against their pinned
    sha256, load ``tcv_helpers.model.train.resolve_model("yolo11n.pt").model``.

    Args:
        model: A ``.pt`` (or exported model) path, or a ``YOLO`` object (returned as it is).
        trusted: You vouch for a ``.pt`` the course did not write (you made it yourself).

    Returns:
        The ``ultralytics.YOLO`` model.

    Raises:
        FileNotFoundError: If the weights file does not exist.
        UntrustedWeights: For a ``.pt`` of unknown origin.
    """
    from ultralytics import YOLO

    from tcv_helpers.trust import check_weights

    use_every_core()
    if not isinstance(model, str | os.PathLike):
        return model
    path = Path(model)
    if not path.exists():  # a file, or a folder for formats such as OpenVINO
        raise FileNotFoundError(f"{path} does not exist: train a model first (notebook 05).")
    return YOLO(str(check_weights(path, trusted=trusted)))


def predict_yolo(
    model: str | os.PathLike | Any,
    images: Sequence[str | os.PathLike | np.ndarray],
    *,
    imgsz: int,
    conf: float = EVAL_CONFIDENCE,
    iou: float = EVAL_NMS_IOU,
    batch: int = 16,
    device: str = "cpu",
    max_det: int = 300,
) -> list[sv.Detections]:
    """Runs a YOLO model over images and returns one ``sv.Detections`` per image, in order.

    Args:
        model: ``.pt`` weights or an ``ultralytics.YOLO`` object.
        images: Image paths or BGR arrays (as OpenCV reads them).
        imgsz: Inference size in pixels (the size the model was trained at).
        conf: Keep detections at least this confident (default: low, for mAP).
        iou: NMS IoU threshold.
        batch: Images per forward pass.
        device: ``"cpu"``, ``"0"`` ...
        max_det: Most detections kept per image.

    Returns:
        One ``sv.Detections`` per image (original-image pixels, ``confidence``, ``class_id``).

    Raises:
        FileNotFoundError: If the weights or an image path does not exist.
        ValueError: If ``imgsz`` or ``batch`` is not positive.
    """
    if imgsz <= 0 or batch <= 0:
        raise ValueError(f"imgsz and batch must be positive, got imgsz={imgsz}, batch={batch}.")
    for item in images:
        if not isinstance(item, np.ndarray) and not Path(item).is_file():
            raise FileNotFoundError(f"Image {item} does not exist.")
    yolo = load_yolo(model)
    out: list[sv.Detections] = []
    for chunk in _batches(list(images), batch):
        sources = [i if isinstance(i, np.ndarray) else str(i) for i in chunk]
        results = yolo.predict(
            sources, imgsz=imgsz, conf=conf, iou=iou, device=device, max_det=max_det,
            verbose=False,
        )  # fmt: skip
        out.extend(sv.Detections.from_ultralytics(r) for r in results)
    return out


@dataclass
class Validation:
    """Ultralytics' own validation of a model: its numbers and the predictions behind them.

    Attributes:
        map50: Ultralytics' mAP50.
        map50_95: Ultralytics' mAP50-95.
        precision: Ultralytics' mean precision (at its F1-optimal confidence).
        recall: Ultralytics' mean recall.
        predictions: One ``sv.Detections`` per image of ``image_paths``, in that order: the
            boxes Ultralytics scored (its letterbox, its resizing, multi-label NMS).
    """

    map50: float
    map50_95: float
    precision: float
    recall: float
    predictions: list[sv.Detections]

    def numbers(self) -> dict[str, float]:
        """The four numbers, for tables and ``record_metrics``."""
        return {
            "map50": self.map50,
            "map50_95": self.map50_95,
            "precision": self.precision,
            "recall": self.recall,
        }


def _capture_predictions(store: dict[str, sv.Detections]) -> Any:
    """An ``on_val_start`` callback that records every image's scored boxes into ``store``.

    It wraps the validator's ``update_metrics`` (which receives the post-NMS predictions) and
    scales the boxes to the original image exactly as Ultralytics does for its COCO json.
    """

    def on_val_start(validator: Any) -> None:
        original = validator.update_metrics

        def update_metrics(preds: list[dict[str, Any]], batch: dict[str, Any]) -> None:
            for index, pred in enumerate(preds):
                pbatch = validator._prepare_batch(index, batch)
                scaled = validator.scale_preds(validator._prepare_pred(dict(pred)), pbatch)
                store[str(Path(batch["im_file"][index]).resolve())] = sv.Detections(
                    xyxy=scaled["bboxes"].detach().cpu().numpy().astype(float).reshape(-1, 4),
                    confidence=scaled["conf"].detach().cpu().numpy().astype(float),
                    class_id=scaled["cls"].detach().cpu().numpy().astype(int),
                )
            original(preds, batch)

        validator.update_metrics = update_metrics

    return on_val_start


def validate_yolo(
    model: str | os.PathLike | Any,
    data_yaml: str | os.PathLike,
    *,
    imgsz: int,
    image_paths: Sequence[str | os.PathLike] = (),
    split: str = "val",
    batch: int = 16,
    device: str = "cpu",
    rect: bool = True,
) -> Validation:
    """Ultralytics' own validation of a model, with the predictions it scored.

    The predictions let the course's evaluation (pycocotools) score exactly the boxes that
    Ultralytics scored, so the two numbers can be compared (:mod:`tcv_helpers.model.evaluate`).

    Args:
        model: ``.pt`` weights or an ``ultralytics.YOLO`` object.
        data_yaml: The dataset's ``data.yaml``.
        imgsz: Validation size in pixels.
        image_paths: The split's images, in the order the predictions should follow (as
            :func:`tcv_helpers.model.evaluate.load_ground_truth` returns them); images are matched by
            path.
        split: ``val`` or ``test``.
        batch: Validation batch size.
        device: ``"cpu"``, ``"0"`` ...
        rect: Batch images of similar shape with minimal padding (Ultralytics' default);
            False letterboxes every image to the full square, as a fixed-size exported model
            (ONNX, OpenVINO) must, so compare such variants with ``rect=False``.

    Returns:
        Ultralytics' numbers and one ``sv.Detections`` per image of ``image_paths``.
    """
    yolo = load_yolo(model)
    captured: dict[str, sv.Detections] = {}
    yolo.add_callback("on_val_start", _capture_predictions(captured))
    with tempfile.TemporaryDirectory(prefix="tcv-val-") as scratch, quiet_ultralytics():
        metrics = yolo.val(
            data=str(data_yaml), imgsz=imgsz, split=split, batch=batch, device=device,
            plots=False, verbose=False, workers=0, project=scratch, name="val", exist_ok=True,
            rect=rect,
        )  # fmt: skip
    yolo.callbacks["on_val_start"].pop()
    box = metrics.box
    return Validation(
        map50=float(box.map50),
        map50_95=float(box.map),
        precision=float(box.mp),
        recall=float(box.mr),
        predictions=[
            captured.get(str(Path(p).resolve()), sv.Detections.empty()) for p in image_paths
        ],
    )
