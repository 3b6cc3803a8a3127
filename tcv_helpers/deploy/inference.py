"""Detection without torch (notebook 08): Ultralytics' predictor in numpy around a runtime.

:class:`Detector` runs a YOLO model exported by Ultralytics (``.onnx``, or OpenVINO IR) with a
runtime of :mod:`tcv_helpers.deploy.runtimes` and numpy only: the same letterbox
(:func:`tcv_helpers.imaging.letterbox`, the one training previews and export calibration use),
the same class-aware non-maximum suppression and the same box scaling as Ultralytics' own
predictor, so it finds the same boxes (to a fraction of a pixel) without torch, Ultralytics or
OpenCV installed. :func:`load_detector` picks the runtime; :class:`DetectionResult` holds one
image's boxes and turns them into ``sv.Detections``, the course's one detection type.

Example::

    detector = load_detector(cfg.workspace.models / "best.onnx")
    found = detector.detect(frame_bgr)            # a DetectionResult
    found.to_supervision()                         # sv.Detections
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from tcv_helpers.deploy.decode import to_rgb
from tcv_helpers.deploy.runtimes import OnnxRuntime, OpenVinoRuntime, Runtime
from tcv_helpers.env import usable_cores
from tcv_helpers.imaging import letterbox, letterbox_geometry

if TYPE_CHECKING:
    import supervision as sv

#: Confidence threshold of the service and of :meth:`Detector.detect` (Ultralytics' default).
DEFAULT_CONF = 0.25
#: IoU threshold of non-maximum suppression (Ultralytics' default).
DEFAULT_IOU = 0.7
#: Most detections kept per image (Ultralytics' default).
MAX_DET = 300
#: Most candidate boxes that enter non-maximum suppression (Ultralytics' ``max_nms``).
MAX_NMS = 30_000
#: Offset in pixels that keeps boxes of different classes apart in one NMS pass (Ultralytics).
MAX_WH = 7680
#: Backends :func:`load_detector` knows.
BACKENDS = ("auto", "onnxruntime", "openvino")
#: File written by :func:`tcv_helpers.deploy.optimize.benchmark`; ``backend="auto"`` on its folder
#: (``tcv serve --model FOLDER``) serves the fastest variant it recorded.
BENCHMARK_FILE = "benchmark.json"


# --------------------------------------------------------------------------------------------
# Pre- and post-processing: Ultralytics' predictor in numpy
# --------------------------------------------------------------------------------------------


def model_input(
    images: Sequence[np.ndarray],
    imgsz: int | tuple[int, int],
    *,
    auto: bool = False,
    stride: int = 32,
) -> np.ndarray:
    """The model's input for RGB images: letterboxed, channels first, float32 in 0-1.

    What the service, :meth:`Detector.preprocess` and export calibration
    (:func:`tcv_helpers.deploy.optimize.letterbox_frames`) feed a model, and, pixel for pixel,
    what Ultralytics' validation loader feeds it in training (``tests/test_inference.py``).

    Args:
        images: RGB ``(h, w, 3)`` uint8 arrays (all of one shape when ``auto``).
        imgsz: The model's input size: a square side or ``(height, width)``.
        auto: Pad only to a multiple of ``stride`` (a dynamic-size model).
        stride: The model's largest stride.

    Returns:
        A ``(n, 3, height, width)`` float32 batch.

    Raises:
        ValueError: If ``images`` is empty or an image or size is invalid (see
            :func:`tcv_helpers.imaging.letterbox`).
    """
    if not len(images):
        raise ValueError("model_input needs at least one image.")
    boxed = [letterbox(im, imgsz, auto=auto, stride=stride).image for im in images]
    batch = np.empty((len(boxed), 3, *boxed[0].shape[:2]), dtype=np.float32)
    for out, image in zip(batch, boxed, strict=True):  # HWC uint8 -> CHW float 0-1, one pass
        np.divide(image.transpose(2, 0, 1), np.float32(255), out=out)
    return batch


def _xywh2xyxy(xywh: np.ndarray) -> np.ndarray:
    out = np.empty_like(xywh)
    half = xywh[:, 2:] / 2
    out[:, :2] = xywh[:, :2] - half
    out[:, 2:] = xywh[:, :2] + half
    return out


def nms(
    boxes: np.ndarray, scores: np.ndarray, iou: float, *, limit: int | None = None
) -> np.ndarray:
    """Greedy non-maximum suppression, as ``torchvision.ops.nms`` computes it.

    Args:
        boxes: ``(n, 4)`` xyxy boxes.
        scores: ``(n,)`` scores.
        iou: Boxes overlapping a kept box by more than this IoU are dropped.
        limit: Stop after keeping this many (the same first boxes, found sooner).

    Returns:
        Indices of the kept boxes, highest score first.
    """
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    keep = []
    with np.errstate(divide="ignore", invalid="ignore"):
        while order.size and (limit is None or len(keep) < limit):
            best, rest = order[0], order[1:]
            keep.append(best)
            width = np.maximum(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0)
            height = np.maximum(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0)
            inter = width * height
            overlap = inter / (areas[best] + areas[rest] - inter)
            order = rest[~(overlap > iou)]  # NaN (two empty boxes) is kept, as in torchvision
    return np.asarray(keep, dtype=np.int64)


def non_max_suppression(
    prediction: np.ndarray,
    *,
    conf: float = DEFAULT_CONF,
    iou: float = DEFAULT_IOU,
    max_det: int = MAX_DET,
    end2end: bool = False,
    agnostic: bool = False,
) -> list[np.ndarray]:
    """Ultralytics' ``non_max_suppression`` (``multi_label=False``) in numpy.

    Args:
        prediction: The model's output: ``(batch, 4 + classes, anchors)`` with xywh boxes and
            per-class scores, or ``(batch, k, 6)`` xyxy-score-class rows of an end-to-end model.
        conf: Keep boxes whose best class scores more than this.
        iou: IoU threshold of the suppression (within one class).
        max_det: Most boxes kept per image.
        end2end: The output is already suppressed (YOLO26-style ``(batch, k, 6)``).
        agnostic: Suppress across classes too.

    Returns:
        Per image, an ``(n, 6)`` float32 array: x1, y1, x2, y2, confidence, class id.
    """
    if not (0 <= conf <= 1 and 0 <= iou <= 1):
        raise ValueError(f"conf and iou must be between 0 and 1, got conf={conf}, iou={iou}.")
    out = []
    if end2end or prediction.shape[-1] == 6:
        for rows in prediction:
            out.append(rows[rows[:, 4] > conf][:max_det].astype(np.float32))
        return out
    for image in prediction:
        rows = image.T  # (anchors, 4 + classes)
        scores = rows[:, 4:]
        best = scores.max(axis=1)
        candidates = best > conf
        if not candidates.any():
            out.append(np.zeros((0, 6), np.float32))
            continue
        classes = scores[candidates].argmax(axis=1).astype(np.float32)
        found = np.concatenate(
            [_xywh2xyxy(rows[candidates, :4]), best[candidates, None], classes[:, None]], axis=1
        ).astype(np.float32, copy=False)
        if len(found) > MAX_NMS:
            found = found[np.argsort(-found[:, 4], kind="stable")[:MAX_NMS]]
        offsets = found[:, 5:6] * (0 if agnostic else MAX_WH)
        keep = nms(found[:, :4] + offsets, found[:, 4], iou, limit=max_det)
        out.append(found[keep])
    return out


def scale_boxes(
    boxes: np.ndarray, input_shape: tuple[int, int], image_shape: tuple[int, int]
) -> np.ndarray:
    """Boxes from letterboxed-input pixels to original-image pixels, clipped (Ultralytics' way).

    The resize and padding are those :func:`tcv_helpers.imaging.letterbox` applied.

    Args:
        boxes: ``(n, 4)`` float32 xyxy boxes in the model input; changed in place.
        input_shape: The letterboxed input's ``(height, width)``.
        image_shape: The original image's ``(height, width)``.

    Returns:
        ``boxes``.
    """
    height, width = image_shape[:2]
    _, (new_w, new_h), (top, _, left, _) = letterbox_geometry(height, width, input_shape)
    boxes[:, [0, 2]] -= left
    boxes[:, [1, 3]] -= top
    boxes[:, [0, 2]] /= new_w / width
    boxes[:, [1, 3]] /= new_h / height
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    return boxes


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class DetectionResult:
    """The detections in one image, in original-image pixels.

    A light copy of ``sv.Detections`` for places without supervision (the Docker image has
    neither it nor OpenCV): :meth:`to_supervision` turns it into the course's one detection type.

    Attributes:
        xyxy: ``(n, 4)`` float32 boxes, x1 y1 x2 y2, highest confidence first.
        confidence: ``(n,)`` float32 scores.
        class_id: ``(n,)`` int64 class ids.
        names: The model's class names by id.
        width: Image width in pixels.
        height: Image height in pixels.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    names: Mapping[int, str]
    width: int
    height: int

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        if self.xyxy.shape != (n, 4):
            raise ValueError(f"xyxy must have shape (n, 4), got {self.xyxy.shape}.")
        if self.confidence.shape != (n,) or self.class_id.shape != (n,):
            raise ValueError(
                f"confidence and class_id must have shape ({n},), got {self.confidence.shape} "
                f"and {self.class_id.shape}."
            )

    @classmethod
    def empty(cls, *, names: Mapping[int, str], width: int, height: int) -> DetectionResult:
        """No detections."""
        return cls(
            xyxy=np.zeros((0, 4), np.float32), confidence=np.zeros(0, np.float32),
            class_id=np.zeros(0, np.int64), names=names, width=width, height=height,
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.xyxy)

    @property
    def class_name(self) -> list[str]:
        """The class name of every detection (``str(id)`` for an id the model does not name)."""
        return [self.names.get(int(k), str(int(k))) for k in self.class_id]

    def to_records(self) -> list[dict[str, Any]]:
        """The detections as the service returns them (``xyxy`` to 0.01 pixel)."""
        return [
            {
                "xyxy": [round(float(v), 2) for v in box],
                "confidence": round(float(score), 5),
                "class_id": int(k),
                "class_name": name,
            }
            for box, score, k, name in zip(
                self.xyxy, self.confidence, self.class_id, self.class_name, strict=True
            )
        ]

    def to_supervision(self) -> sv.Detections:
        """The same detections as ``sv.Detections`` (class names in ``data["class_name"]``)."""
        import supervision as sv

        return sv.Detections(
            xyxy=self.xyxy.astype(np.float32).reshape(-1, 4),
            confidence=self.confidence.astype(np.float32),
            class_id=self.class_id.astype(int),
            data={"class_name": np.array(self.class_name, dtype=str)},
        )


# --------------------------------------------------------------------------------------------
# The detector
# --------------------------------------------------------------------------------------------


def _file_digest(paths: Sequence[Path]) -> str:
    """The first 12 hex digits of the SHA-256 of the files, read in order."""
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(2**20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:12]


class Detector:
    """A YOLO detector without torch: Ultralytics' pre- and post-processing around a runtime.

    Build it with :func:`load_detector`. It is thread-safe: several threads may call
    :meth:`detect` at once (the service does).

    Attributes:
        path: The model file.
        backend: ``onnxruntime`` or ``openvino``.
        names: Class names by id (from the model's metadata).
        imgsz: The model's input ``(height, width)``.
        stride: The model's largest stride.
        name: A short name for the model (the file name without suffix).
        version: The first 12 hex digits of the model file's SHA-256: which weights answered.
    """

    def __init__(self, runtime: Runtime, *, path: Path, files: Sequence[Path]) -> None:
        meta = runtime.metadata
        if meta.get("task", "detect") != "detect":
            raise ValueError(
                f"{path} is a {meta['task']} model; the service runs detection models."
            )
        shape = runtime.input_shape
        if len(shape) != 4:
            raise ValueError(f"{path}: expected an image input (batch, 3, h, w), got {shape}.")
        size = meta.get("imgsz") or [shape[2], shape[3]]
        if isinstance(size, int):
            size = [size, size]
        if not all(isinstance(s, int) and s > 0 for s in size):
            raise ValueError(f"{path}: no input size in the metadata nor in the graph ({shape}).")
        names = meta.get("names")
        if not isinstance(names, dict):
            raise ValueError(
                f"{path} has no class names in its metadata: export it with Ultralytics "
                "(YOLO(weights).export(format='onnx'))."
            )
        self._runtime = runtime
        self.path = path
        self.backend: str = runtime.backend
        self.names: dict[int, str] = {int(k): str(v) for k, v in names.items()}
        self.imgsz: tuple[int, int] = (int(size[0]), int(size[1]))
        self.stride = int(meta.get("stride", 32))
        self.end2end = bool(meta.get("end2end", False))
        self.dynamic = not all(isinstance(d, int) for d in shape[2:])
        self.batch_size = shape[0] if isinstance(shape[0], int) else None
        self.name = path.stem if path.suffix else path.name
        self.version = _file_digest(files)

    def __repr__(self) -> str:
        return (
            f"Detector({self.path.name!r}, backend={self.backend!r}, imgsz={self.imgsz}, "
            f"classes={len(self.names)}, version={self.version!r})"
        )

    def preprocess(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """RGB uint8 images to the model's float input (letterbox, CHW, 0-1), as Ultralytics.

        Images of one shape go to a dynamic-size model padded only to the stride (Ultralytics'
        ``rect`` inference); otherwise every image is letterboxed to :attr:`imgsz`.

        Args:
            images: RGB ``(h, w, 3)`` uint8 arrays.

        Returns:
            A ``(n, 3, h, w)`` float32 batch.
        """
        auto = self.dynamic and len({im.shape for im in images}) == 1
        return model_input(images, self.imgsz, auto=auto, stride=self.stride)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        size = self.batch_size
        if size is None or size == len(batch):
            return self._runtime(batch)
        outputs = []
        for start in range(0, len(batch), size):
            chunk = batch[start : start + size]
            filled = len(chunk)
            if filled < size:
                chunk = np.concatenate(
                    [chunk, np.zeros((size - filled, *chunk.shape[1:]), chunk.dtype)]
                )
            outputs.append(self._runtime(chunk)[:filled])
        return np.concatenate(outputs)

    def detect_arrays(
        self,
        images: Sequence[np.ndarray],
        *,
        conf: float = DEFAULT_CONF,
        iou: float = DEFAULT_IOU,
        max_det: int = MAX_DET,
    ) -> list[DetectionResult]:
        """Detections for RGB arrays (the service's path; :meth:`detect` takes any image).

        Args:
            images: RGB ``(h, w, 3)`` uint8 arrays.
            conf: Keep detections scoring more than this.
            iou: NMS IoU threshold.
            max_det: Most detections per image.

        Returns:
            One :class:`DetectionResult` per image, in order.
        """
        if not images:
            return []
        batch = self.preprocess(images)
        raw = self._run(batch)
        kept = non_max_suppression(raw, conf=conf, iou=iou, max_det=max_det, end2end=self.end2end)
        results = []
        for rows, image in zip(kept, images, strict=True):
            height, width = image.shape[:2]
            boxes = scale_boxes(rows[:, :4].copy(), batch.shape[2:], (height, width))
            found = DetectionResult(
                xyxy=boxes, confidence=rows[:, 4].copy(), class_id=rows[:, 5].astype(np.int64),
                names=self.names, width=width, height=height,
            )  # fmt: skip
            results.append(found)
        return results

    def detect(
        self,
        image: np.ndarray | Image.Image | bytes | str | os.PathLike,
        *,
        conf: float = DEFAULT_CONF,
        iou: float = DEFAULT_IOU,
        max_det: int = MAX_DET,
    ) -> DetectionResult:
        """Detections in one image.

        Args:
            image: A BGR uint8 array (as OpenCV reads it, and as Ultralytics takes it), a PIL
                image, encoded image bytes, or an image file.
            conf: Keep detections scoring more than this.
            iou: NMS IoU threshold.
            max_det: Most detections kept.

        Returns:
            The detections, in original-image pixels.

        Raises:
            BadImage: If bytes or a file are not a usable image.
            FileNotFoundError: If the image file does not exist.
            ValueError: If an array is not uint8 with 1, 3 or 4 channels.
        """
        return self.detect_batch([image], conf=conf, iou=iou, max_det=max_det)[0]

    def detect_batch(
        self,
        images: Sequence[np.ndarray | Image.Image | bytes | str | os.PathLike],
        *,
        conf: float = DEFAULT_CONF,
        iou: float = DEFAULT_IOU,
        max_det: int = MAX_DET,
    ) -> list[DetectionResult]:
        """Detections in several images (one forward pass per model batch).

        Args:
            images: Images as :meth:`detect` takes them.
            conf: Keep detections scoring more than this.
            iou: NMS IoU threshold.
            max_det: Most detections kept per image.

        Returns:
            One :class:`DetectionResult` per image, in order.
        """
        return self.detect_arrays(
            [to_rgb(im) for im in images], conf=conf, iou=iou, max_det=max_det
        )


def _benchmark_choice(folder: Path) -> Path | None:
    """The fastest deployable variant recorded by ``tcv_helpers.deploy.optimize.benchmark`` in ``folder``."""
    record = folder / BENCHMARK_FILE
    if not record.is_file():
        return None
    try:
        fastest = json.loads(record.read_text(encoding="utf-8")).get("fastest") or {}
    except (json.JSONDecodeError, AttributeError) as exc:
        raise ValueError(f"{record} is not a benchmark record: {exc}") from None
    recorded = Path(str(fastest.get("path", "")))
    if not recorded.name or recorded.suffix == ".pt":
        return None
    for candidate in (
        recorded,
        folder / recorded.name,
        folder / recorded.parent.name / recorded.name,
    ):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(
        f"{record} names {recorded} as the fastest variant, but it is not there: run the "
        "benchmark again (notebook 07) or give the model file."
    )


def _resolve_model(path: Path, backend: str) -> tuple[Path, str, list[Path]]:
    """The model file, the backend to run it with, and the files that make up the weights."""
    if not path.exists():
        raise FileNotFoundError(
            f"Model {path} does not exist: export one with tcv_helpers.deploy.optimize.export_onnx "
            "(notebook 07) or YOLO(weights).export(format='onnx')."
        )
    if path.is_dir():
        chosen = _benchmark_choice(path) if backend == "auto" else None
        if chosen is not None:
            return _resolve_model(chosen, "auto")
        xmls = sorted(path.glob("*.xml"))
        if len(xmls) != 1:
            raise ValueError(
                f"{path} is a folder without a {BENCHMARK_FILE} naming a model nor one OpenVINO "
                "model (.xml): give the .onnx or .xml file."
            )
        path = xmls[0]
    if path.suffix == ".pt":
        raise ValueError(
            f"{path} is PyTorch weights; the service runs without torch: export to ONNX first "
            "(tcv_helpers.deploy.optimize.export_onnx)."
        )
    if path.suffix not in (".onnx", ".xml"):
        raise ValueError(
            f"{path}: expected an .onnx file or an OpenVINO .xml, got {path.suffix!r}."
        )
    files = [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]
    if backend == "auto":
        backend = "openvino" if path.suffix == ".xml" else "onnxruntime"
        if backend == "onnxruntime":
            try:
                import onnxruntime  # noqa: F401
            except ImportError:
                backend = "openvino"
    if backend == "onnxruntime" and path.suffix == ".xml":
        raise ValueError(f"{path} is an OpenVINO model: use backend='openvino'.")
    return path, backend, [f for f in files if f.is_file()]


def load_detector(
    path: str | os.PathLike,
    *,
    backend: str = "auto",
    threads: int | None = None,
    parallel: int = 1,
) -> Detector:
    """Loads an exported YOLO model for inference without torch.

    Args:
        path: An ``.onnx`` file exported by Ultralytics, an OpenVINO ``.xml`` (or its
            ``*_openvino_model`` folder), or a folder holding the ``benchmark.json`` of
            :func:`tcv_helpers.deploy.optimize.benchmark` (``auto`` then serves its fastest variant).
        backend: ``auto`` (OpenVINO for ``.xml``, ONNX Runtime for ``.onnx``), ``onnxruntime``
            or ``openvino`` (which also runs ``.onnx`` files).
        threads: CPU threads per inference (default: every core this process may use).
        parallel: Inferences that may run at the same time (the service's workers). ONNX
            Runtime runs concurrent calls side by side anyway; OpenVINO needs one execution
            stream per concurrent inference, or it queues them on one.

    Returns:
        The detector.

    Raises:
        FileNotFoundError: If the model does not exist.
        ValueError: If the backend is unknown or the file is not an exported detection model.
        ImportError: If the backend's runtime is not installed.
    """
    if backend not in BACKENDS:
        raise ValueError(f"Unknown backend {backend!r}; choose from {', '.join(BACKENDS)}.")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}.")
    if parallel < 1:
        raise ValueError(f"parallel must be at least 1, got {parallel}.")
    model, chosen, files = _resolve_model(Path(path), backend)
    try:
        if chosen == "onnxruntime":
            runtime: Runtime = OnnxRuntime(model, threads=threads or usable_cores())
        else:
            runtime = OpenVinoRuntime(model, threads=threads or usable_cores(), streams=parallel)
    except ImportError as exc:
        package = "onnxruntime" if chosen == "onnxruntime" else "openvino"
        raise ImportError(f"The {chosen} backend needs `pip install {package}` ({exc}).") from None
    return Detector(runtime, path=model, files=files)
