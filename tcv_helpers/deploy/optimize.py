"""Optimization (notebook 07): hyper-parameter search, pruning, quantization, export, benchmark.

* :func:`tune` (from :mod:`tcv_helpers.deploy.search`) searches training settings with Optuna,
  pruning bad trials early with Optuna's median rule.
* :func:`prune_weights` zeroes the smallest weights with ``torch.nn.utils.prune``.
* :func:`export_onnx`, :func:`quantize_onnx_int8` (ONNX Runtime static INT8: QDQ, per channel,
  calibrated on real frames) and :func:`export_openvino` (FP32, or INT8 through NNCF) make the
  deployable variants. The detection head's post-processing (the DFL and the final
  Mul/Concat that decode boxes) stays in float: quantizing it wrecks the boxes.
* :func:`benchmark` measures every variant in one run on one machine: size on disk, latency
  p50/p95, throughput and mAP50 on the same evaluation images, and says which is fastest (what
  ``tcv serve --backend auto`` uses).

Example::

    from tcv_helpers.deploy.optimize import benchmark

    result = benchmark(models / "best.pt", data_yaml, out_dir=models / "variants")
    result.table(), result.fastest
"""

from __future__ import annotations

import ast
import json
import math
import os
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure

from tcv_helpers.deploy.decode import to_rgb
from tcv_helpers.deploy.inference import BENCHMARK_FILE, model_input
from tcv_helpers.deploy.search import SEARCH_SPACE, TuneResult, tune  # noqa: F401 (re-exported)
from tcv_helpers.env import usable_cores
from tcv_helpers.io import atomic_write_json, atomic_write_text
from tcv_helpers.model.predict import load_yolo, quiet_ultralytics
from tcv_helpers.trust import check_weights, vouch_for

if TYPE_CHECKING:
    import pandas as pd

#: The variants :func:`benchmark` builds and measures, in table order.
VARIANTS: tuple[str, ...] = (
    "pytorch-fp32",
    "onnxruntime-fp32",
    "onnxruntime-int8",
    "openvino-fp32",
    "openvino-int8",
)
#: The FP32 variant each INT8 variant is quantized from (an INT8 slower than it is flagged).
INT8_SOURCE = {"onnxruntime-int8": "onnxruntime-fp32", "openvino-int8": "openvino-fp32"}
#: Calibration frames for INT8 (more are slower to calibrate and rarely better).
CALIBRATION_FRAMES = 64
#: Calibration frames for INT8 variants built only to be timed (their accuracy is measured on
#: the variants built at the training size): the scales do not change the speed, and at 640 px
#: NNCF calibrates 16 frames in 7 s against 19 s for 64 (2 cores).
TIMING_CALIBRATION_FRAMES = 16


# --------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------


def letterbox_frames(
    images: Sequence[str | os.PathLike | np.ndarray], *, imgsz: int | tuple[int, int]
) -> list[np.ndarray]:
    """Frames as the exported models take them: letterboxed, RGB, float32 0-1, NCHW.

    Decoded and letterboxed as the service does (:func:`tcv_helpers.deploy.decode.to_rgb`,
    :func:`tcv_helpers.deploy.inference.model_input`), so INT8 calibration sees the tensors the
    deployed model will be sent.

    Args:
        images: Image paths or BGR arrays.
        imgsz: The model's input size: square side, or ``(height, width)`` for a model exported
            at a fixed camera's aspect ratio.

    Returns:
        One ``(1, 3, height, width)`` float32 array per image.

    Raises:
        FileNotFoundError: If an image path is missing.
        ValueError: If an image is unreadable (the message names the file) or not uint8.
    """
    return [model_input([to_rgb(item)], imgsz) for item in images]


# --------------------------------------------------------------------------------------------
# Export and quantization
# --------------------------------------------------------------------------------------------


def export_onnx(
    weights: str | os.PathLike,
    *,
    imgsz: int | tuple[int, int],
    out: str | os.PathLike,
    opset: int | None = None,
    trusted: bool = False,
) -> Path:
    """Exports YOLO weights to ONNX at a fixed input size (Ultralytics' exporter, simplified).

    Args:
        weights: A ``.pt`` file this course trained.
        imgsz: Input size baked into the graph: a square side, or ``(height, width)`` for a
            fixed camera's aspect ratio (``(384, 640)`` for 16:9 frames).
        out: The ``.onnx`` file to write.
        opset: ONNX opset (default: Ultralytics' choice).
        trusted: You vouch for a ``.pt`` the course did not write (see
            :func:`tcv_helpers.trust.check_weights`).

    Returns:
        ``out``. Ultralytics' metadata (class names, stride, size) is inside the file.

    Raises:
        FileNotFoundError: If ``weights`` does not exist.
        UntrustedWeights: For a ``.pt`` of unknown origin (refused before it is opened).
    """
    from ultralytics import YOLO

    weights = check_weights(weights, trusted=trusted)
    out = Path(out)
    with quiet_ultralytics():
        made = YOLO(str(weights)).export(
            format="onnx", imgsz=imgsz, dynamic=False, simplify=True, opset=opset, verbose=False
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(made), out)
    return out


def head_nodes(onnx_path: str | os.PathLike) -> list[str]:
    """The nodes of the detection head's decoding, which INT8 quantization must leave in float.

    Ultralytics names nodes after their module (``/model.23/dfl/...``); the head is the last
    module. Its two convolution branches (``cv2``: boxes, ``cv3``: classes) quantize well; the
    rest (the DFL softmax-convolution, the anchor arithmetic, the final Mul, Sigmoid and Concat)
    does not: one INT8 step there moves every box by pixels.

    Args:
        onnx_path: An ONNX file exported by Ultralytics.

    Returns:
        Node names to keep in float.
    """
    import onnx

    nodes = [n.name for n in onnx.load(str(onnx_path), load_external_data=False).graph.node]
    indices = [int(n.split("/")[1].split(".")[1]) for n in nodes if n.startswith("/model.")]
    if not indices:
        return []
    head = f"/model.{max(indices)}/"
    return [n for n in nodes if n.startswith(head) and "/cv2." not in n and "/cv3." not in n]


def _onnx_metadata(onnx_path: Path) -> dict[str, str]:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def quantize_onnx_int8(
    onnx_path: str | os.PathLike,
    calibration: Sequence[np.ndarray],
    *,
    out: str | os.PathLike,
    per_channel: bool = True,
) -> Path:
    """ONNX Runtime static INT8 quantization: QDQ format, per-channel weights, calibrated.

    Static means the activation ranges are measured once, on calibration frames, instead of at
    every call (dynamic quantization, which for convolutions is often *slower* than FP32).

    Args:
        onnx_path: The FP32 model.
        calibration: Frames from :func:`letterbox_frames` (real frames of the dataset).
        out: The INT8 ``.onnx`` to write.
        per_channel: One scale per output channel of each convolution (more accurate).

    Returns:
        ``out``, with the source's metadata copied in.

    Raises:
        ValueError: If no calibration frames are given.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise ValueError("INT8 calibration needs at least one frame of the dataset.")
    source, out = Path(onnx_path), Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    prepared = out.with_name(out.stem + "-prep.onnx")
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    name = onnx.load(str(prepared), load_external_data=False).graph.input[0].name

    class Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            frame = next(self.items, None)
            return None if frame is None else {name: frame}

    quantize_static(
        str(prepared), str(out), Frames(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        nodes_to_exclude=head_nodes(prepared), calibrate_method=CalibrationMethod.MinMax,
    )  # fmt: skip
    prepared.unlink(missing_ok=True)
    model = onnx.load(str(out))
    del model.metadata_props[:]
    for key, value in _onnx_metadata(source).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(out))
    return out


def _metadata_yaml(metadata: dict[str, str]) -> str:
    import yaml

    data: dict[str, Any] = {}
    for key, value in metadata.items():
        try:
            data[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            data[key] = value
    return yaml.safe_dump(data, sort_keys=False)


def export_openvino(
    onnx_path: str | os.PathLike,
    *,
    out_dir: str | os.PathLike,
    calibration: Sequence[np.ndarray] | None = None,
    bias_correction: bool = True,
) -> Path:
    """Converts the ONNX model to OpenVINO IR: FP32, or INT8 through NNCF with calibration.

    Args:
        onnx_path: The FP32 ONNX model.
        out_dir: Folder for ``model.xml``/``.bin`` and ``metadata.yaml``; Ultralytics reads a
            folder whose name ends in ``_openvino_model``.
        calibration: Frames from :func:`letterbox_frames`; given, the model is quantized to
            INT8 (the head's decoding stays in float, see :func:`head_nodes`).
        bias_correction: NNCF's bias correction after quantization (it runs the model once
            more per layer): it restores accuracy, not speed, so a model built only to be
            timed skips it.

    Returns:
        The ``model.xml`` path.
    """
    import openvino as ov

    source, folder = Path(onnx_path), Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    model = ov.convert_model(str(source))
    if calibration is not None:
        import logging

        import nncf
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
        from nncf.quantization.range_estimator import RangeEstimatorParametersSet

        nncf.set_log_level(logging.ERROR)
        if not calibration:
            raise ValueError("INT8 calibration needs at least one frame of the dataset.")
        model = nncf.quantize(
            model,
            nncf.Dataset(list(calibration)),
            preset=nncf.QuantizationPreset.MIXED,
            subset_size=len(calibration),
            ignored_scope=nncf.IgnoredScope(names=head_nodes(source), validate=False),
            # The full min-max range of each activation, as ONNX Runtime calibrates: NNCF's
            # default (the mean of per-frame ranges) clips rare large values and costs about a
            # point of mAP50 on the course's model.
            advanced_parameters=AdvancedQuantizationParameters(
                activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX,
                disable_bias_correction=not bias_correction,
            ),
        )
    xml = folder / "model.xml"
    ov.save_model(model, str(xml), compress_to_fp16=False)
    atomic_write_text(folder / "metadata.yaml", _metadata_yaml(_onnx_metadata(source)))
    return xml


# --------------------------------------------------------------------------------------------
# Pruning
# --------------------------------------------------------------------------------------------


@dataclass
class PruneResult:
    """What :func:`prune_weights` did.

    Attributes:
        weights: The pruned checkpoint (dense: zeros are still stored).
        amount: Share of convolution weights set to zero.
        sparsity: Measured share of zero convolution weights afterwards.
        size_mb: File size of the checkpoint.
        compressed_mb: Size after zip compression (zeros compress: what sparsity saves on disk).
    """

    weights: Path
    amount: float
    sparsity: float
    size_mb: float
    compressed_mb: float


def _zip_mb(path: Path) -> float:
    import zlib

    return len(zlib.compress(path.read_bytes(), 6)) / 1e6


def prune_weights(
    weights: str | os.PathLike, *, amount: float, out: str | os.PathLike, trusted: bool = False
) -> PruneResult:
    """Global L1 unstructured pruning of every convolution with ``torch.nn.utils.prune``.

    The smallest ``amount`` of all convolution weights (by absolute value, across layers) are
    set to zero and the pruning made permanent. Unstructured zeros do not make dense
    convolutions faster; they compress on disk, and structured pruning or a sparse runtime is
    what turns them into speed.

    Args:
        weights: A ``.pt`` this course trained.
        amount: Share of weights to zero, between 0 and 1.
        out: The pruned ``.pt`` to write (a checkpoint Ultralytics loads); recorded as written
            by the course (:func:`tcv_helpers.trust.vouch_for`).
        trusted: You vouch for a ``.pt`` the course did not write.

    Returns:
        The result, with measured sparsity and sizes.

    Raises:
        ValueError: If ``amount`` is not in [0, 1).
        UntrustedWeights: For a ``.pt`` of unknown origin (refused before it is opened).
    """
    import torch
    from torch.nn.utils import prune

    if not 0.0 <= amount < 1.0:
        raise ValueError(f"amount must be in [0, 1), got {amount}.")
    check_weights(weights, trusted=trusted)
    checkpoint = torch.load(str(weights), map_location="cpu", weights_only=False)
    model = checkpoint["model"].float()
    convs = [(m, "weight") for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    if amount > 0:
        prune.global_unstructured(convs, pruning_method=prune.L1Unstructured, amount=amount)
        for module, name in convs:
            prune.remove(module, name)
    zeros = sum(int((m.weight == 0).sum()) for m, _ in convs)
    total = sum(m.weight.numel() for m, _ in convs)
    checkpoint["model"] = model.half()
    checkpoint.pop("ema", None)
    checkpoint.pop("optimizer", None)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    torch.save(checkpoint, partial)
    partial.replace(out)
    vouch_for(out, made_by="prune")
    return PruneResult(out, amount, zeros / total, out.stat().st_size / 1e6, _zip_mb(out))


# --------------------------------------------------------------------------------------------
# Benchmark
# --------------------------------------------------------------------------------------------


@dataclass
class VariantResult:
    """One row of the benchmark table.

    Attributes:
        variant: One of :data:`VARIANTS`.
        path: The model file measured.
        size_mb: Size on disk (the folder for OpenVINO: ``.xml`` + ``.bin``).
        p50_ms: Median latency of one frame (batch 1) at the speed size.
        p95_ms: 95th-percentile latency.
        throughput: Frames per second, one after another (1000 / mean latency).
        speedup: Throughput relative to ``pytorch-fp32``.
        map50: COCO mAP50 on the evaluation images at the evaluation size (NaN if not measured).
        slower_than_source: For INT8 variants: slower than the FP32 model they came from.
        eval_path: The same variant exported at the evaluation size (what a service of this
            model should run; equal to ``path`` when the sizes agree).
    """

    variant: str
    path: str
    size_mb: float
    p50_ms: float
    p95_ms: float
    throughput: float
    speedup: float = 1.0
    map50: float = math.nan
    slower_than_source: bool = False
    eval_path: str = ""


@dataclass
class BenchResult:
    """A benchmark run: one :class:`VariantResult` per variant, measured in one process.

    Attributes:
        rows: The variants, in :data:`VARIANTS` order.
        imgsz: Input size of the speed measurements.
        eval_imgsz: Input size of the mAP measurements (the size the model was trained at).
        cores: CPU cores used.
        machine: CPU description.
        throughput: Throughput-mode rows of the OpenVINO variants, when measured
            (:class:`tcv_helpers.deploy.throughput.ThroughputResult` as dictionaries).
    """

    rows: list[VariantResult]
    imgsz: int
    eval_imgsz: int
    cores: int
    machine: str = ""
    notes: list[str] = field(default_factory=list)
    throughput: list[dict[str, Any]] = field(default_factory=list)

    @property
    def fastest(self) -> VariantResult:
        """The variant with the highest throughput among those deployable without torch."""
        deployable = [r for r in self.rows if r.variant != "pytorch-fp32"] or self.rows
        return max(deployable, key=lambda r: r.throughput)

    def table(self) -> pd.DataFrame:
        """The rows as a table indexed by variant."""
        import pandas as pd

        frame = pd.DataFrame([asdict(r) for r in self.rows]).set_index("variant")
        return frame.drop(columns=["path", "eval_path"])

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (NaN as None)."""

        def clean(value: Any) -> Any:
            return None if isinstance(value, float) and not math.isfinite(value) else value

        return {
            "imgsz": self.imgsz,
            "eval_imgsz": self.eval_imgsz,
            "cores": self.cores,
            "machine": self.machine,
            "notes": self.notes,
            "fastest": {
                "variant": self.fastest.variant,
                "path": self.fastest.eval_path or self.fastest.path,
                "imgsz": self.eval_imgsz,
            },
            "rows": [{k: clean(v) for k, v in asdict(r).items()} for r in self.rows],
            "throughput": self.throughput,
        }

    def plot(self) -> Figure:
        """Throughput and mAP50 per variant, side by side."""
        fig = Figure(figsize=(11, 3.6))
        speed, accuracy = fig.subplots(1, 2)
        names = [r.variant for r in self.rows]
        speed.barh(names, [r.throughput for r in self.rows], color="tab:blue")
        speed.set_xlabel(f"frames per second at {self.imgsz} px ({self.cores} cores)")
        speed.invert_yaxis()
        accuracy.barh(names, [0 if math.isnan(r.map50) else r.map50 for r in self.rows])
        accuracy.set_xlabel(f"mAP50 at {self.eval_imgsz} px")
        accuracy.set_xlim(0, 1)
        accuracy.invert_yaxis()
        accuracy.set_yticklabels([])
        fig.tight_layout()
        return fig


def _size_mb(path: Path) -> float:
    if path.suffix == ".xml":
        return sum(p.stat().st_size for p in (path, path.with_suffix(".bin"))) / 1e6
    return path.stat().st_size / 1e6


def variant_runner(
    variant: str, path: Path, threads: int, *, trusted: bool = False
) -> Callable[[np.ndarray], Any]:
    """A function running one frame through a variant (batch 1, this process, ``threads``)."""
    if variant == "pytorch-fp32":
        import torch

        with quiet_ultralytics():  # Conv+BN folded, as predict() runs it
            net = load_yolo(path, trusted=trusted).model.float().fuse().eval()

        def run_torch(frame: np.ndarray) -> Any:
            with torch.inference_mode():
                return net(torch.from_numpy(frame))

        return run_torch
    if variant.startswith("onnxruntime"):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda frame: session.run(None, {name: frame})
    import openvino as ov

    compiled = ov.Core().compile_model(
        str(path), "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    )
    request = compiled.create_infer_request()
    return lambda frame: request.infer({0: frame})


def time_variant(
    run: Callable[[np.ndarray], Any], frames: Sequence[np.ndarray], *, repeats: int, warmup: int = 3
) -> list[float]:
    """Latencies in milliseconds of ``repeats`` calls, cycling through ``frames``."""
    for i in range(warmup):
        run(frames[i % len(frames)])
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        run(frames[i % len(frames)])
        times.append((time.perf_counter() - start) * 1000)
    return times


def _map50(
    model_path: Path, data_yaml: Path, imgsz: int, split: str, *, trusted: bool = False
) -> float:
    from tcv_helpers.model.evaluate import evaluate_detections, load_ground_truth
    from tcv_helpers.model.predict import validate_yolo

    paths, truth, names = load_ground_truth(data_yaml, split)
    if model_path.suffix == ".xml":  # Ultralytics loads OpenVINO from the *_openvino_model folder
        model_path = model_path.parent
    validation = validate_yolo(
        load_yolo(model_path, trusted=trusted),
        data_yaml,
        imgsz=imgsz,
        image_paths=paths,
        split=split,
        rect=False,
    )
    return evaluate_detections(truth, validation.predictions, names).map50


def _trained_imgsz(weights: Path, *, trusted: bool = False) -> int:
    import torch

    check_weights(weights, trusted=trusted)
    checkpoint = torch.load(str(weights), map_location="cpu", weights_only=False)
    return int((checkpoint.get("train_args") or {}).get("imgsz", 640))


def build_variants(
    weights: str | os.PathLike,
    *,
    imgsz: int,
    calibration_images: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    variants: Sequence[str] = VARIANTS,
    trusted: bool = False,
    timing_only: bool = False,
) -> dict[str, Path]:
    """Exports and quantizes the variants of one model at one input size.

    Args:
        weights: The trained ``.pt``.
        imgsz: Square input size of the exported models.
        calibration_images: Real frames for INT8 calibration (the training split).
        out_dir: Folder for the files (``<variant>-<imgsz>.onnx``, ``..._openvino_model/``).
        variants: Which of :data:`VARIANTS` to build.
        trusted: You vouch for a ``.pt`` the course did not write.
        timing_only: The variants are only timed (their accuracy is measured on another build):
            OpenVINO INT8 skips bias correction, which changes values, not speed.

    Returns:
        Variant name -> model path.
    """
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise ValueError(f"Unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}.")
    folder = Path(out_dir)
    paths: dict[str, Path] = {"pytorch-fp32": Path(weights)}
    fp32 = export_onnx(
        weights, imgsz=imgsz, out=folder / f"onnxruntime-fp32-{imgsz}.onnx", trusted=trusted
    )
    paths["onnxruntime-fp32"] = fp32
    needs_frames = {"onnxruntime-int8", "openvino-int8"} & set(variants)
    frames = letterbox_frames(calibration_images, imgsz=imgsz) if needs_frames else []
    if "onnxruntime-int8" in variants:
        paths["onnxruntime-int8"] = quantize_onnx_int8(
            fp32, frames, out=folder / f"onnxruntime-int8-{imgsz}.onnx"
        )
    if "openvino-fp32" in variants:
        paths["openvino-fp32"] = export_openvino(
            fp32, out_dir=folder / f"openvino-fp32-{imgsz}_openvino_model"
        )
    if "openvino-int8" in variants:
        paths["openvino-int8"] = export_openvino(
            fp32, out_dir=folder / f"openvino-int8-{imgsz}_openvino_model", calibration=frames,
            bias_correction=not timing_only,
        )  # fmt: skip
    return {name: paths[name] for name in variants}


def benchmark(
    weights: str | os.PathLike,
    data_yaml: str | os.PathLike,
    *,
    out_dir: str | os.PathLike,
    imgsz: int = 640,
    eval_imgsz: int | None = None,
    variants: Sequence[str] = VARIANTS,
    repeats: int = 30,
    split: str = "val",
    calibration: int = CALIBRATION_FRAMES,
    threads: int | None = None,
    accuracy: bool = True,
    progress: bool = False,
    trusted: bool = False,
    throughput_batches: Sequence[int] = (),
) -> BenchResult:
    """Builds every variant of a model and measures them in one run on this machine.

    Speed is measured at ``imgsz`` (640 by default: what a deployed camera model sees), one
    frame at a time, on the evaluation images. Accuracy (COCO mAP50, pycocotools) is measured at
    ``eval_imgsz``, the size the model was trained at, with variants exported at that size: a
    model trained on 128-pixel images does not find vehicles at 640, and its mAP there would
    compare nothing. INT8 variants are calibrated on ``calibration`` frames of the training split
    (:data:`TIMING_CALIBRATION_FRAMES` for those built only to be timed).

    Args:
        weights: The trained ``.pt``.
        data_yaml: The dataset (evaluation split and calibration frames).
        out_dir: Folder for the exported variants; ``benchmark.json`` is written there too.
        imgsz: Input size for latency and throughput.
        eval_imgsz: Input size for mAP (default: the size the model was trained at).
        variants: Which of :data:`VARIANTS` to measure.
        repeats: Timed frames per variant.
        split: Evaluation split.
        calibration: Calibration frames for INT8.
        threads: CPU threads for every runtime (default: all cores this process may use).
        accuracy: Measure mAP50 (the slow part); False for speed only.
        progress: Show a progress bar over the variants.
        trusted: You vouch for a ``.pt`` the course did not write (``tcv bench --trust``).
        throughput_batches: Also measure the OpenVINO variants in throughput mode at these
            batch sizes (:func:`tcv_helpers.deploy.throughput.measure_throughput`; none: skip).

    Returns:
        The benchmark; :attr:`BenchResult.fastest` is what the service should run.

    Raises:
        UntrustedWeights: For a ``.pt`` of unknown origin (refused before anything is built).
    """
    import platform

    from tqdm.auto import tqdm

    from tcv_helpers.model.evaluate import load_ground_truth

    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise ValueError(f"Unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}.")
    weights, data_yaml, folder = Path(weights), Path(data_yaml), Path(out_dir)
    check_weights(weights, trusted=trusted)
    trusted = True  # checked once, here: every load below is of this same file
    cores = threads or usable_cores()
    eval_size = eval_imgsz or _trained_imgsz(weights, trusted=trusted)
    train_images = load_ground_truth(data_yaml, "train")[0][:calibration]
    eval_images = load_ground_truth(data_yaml, split)[0]
    timing_only = accuracy and eval_size != imgsz  # accuracy comes from a second build
    speed_paths = build_variants(
        weights, imgsz=imgsz, out_dir=folder, variants=variants, trusted=trusted,
        timing_only=timing_only,
        calibration_images=train_images[:TIMING_CALIBRATION_FRAMES] if timing_only else train_images,
    )  # fmt: skip
    eval_paths = speed_paths
    if timing_only:
        eval_paths = build_variants(
            weights, imgsz=eval_size, calibration_images=train_images, out_dir=folder,
            variants=variants, trusted=trusted,
        )  # fmt: skip
    frames = letterbox_frames(eval_images[:16], imgsz=imgsz)
    rows = []
    for name in tqdm(list(variants), desc="variants", disable=not progress):
        runner = variant_runner(name, speed_paths[name], cores, trusted=trusted)
        times = time_variant(runner, frames, repeats=repeats)
        mean = statistics.fmean(times)
        map50 = math.nan
        if accuracy:
            with quiet_ultralytics():
                map50 = _map50(eval_paths[name], data_yaml, eval_size, split, trusted=trusted)
        rows.append(
            VariantResult(
                variant=name,
                path=str(speed_paths[name]),
                size_mb=_size_mb(speed_paths[name]),
                p50_ms=statistics.median(times),
                p95_ms=float(np.percentile(times, 95)),
                throughput=1000.0 / mean,
                map50=map50,
                eval_path=str(eval_paths[name]),
            )
        )
    by_name = {r.variant: r for r in rows}
    base = by_name.get("pytorch-fp32")
    for row in rows:
        row.speedup = row.throughput / base.throughput if base else math.nan
        source = by_name.get(INT8_SOURCE.get(row.variant, ""))
        row.slower_than_source = bool(source and row.throughput < source.throughput)
    result = BenchResult(
        rows=rows, imgsz=imgsz, eval_imgsz=eval_size, cores=cores,
        machine=platform.processor() or platform.machine(),
    )  # fmt: skip
    if throughput_batches:
        from tcv_helpers.deploy.throughput import measure_throughput

        for name in (n for n in variants if n.startswith("openvino")):
            measured = measure_throughput(
                speed_paths[name], frames, batches=throughput_batches, threads=cores, label=name
            )
            result.throughput += [row.to_dict() for row in measured]
    for row in rows:
        if row.slower_than_source:
            result.notes.append(
                f"{row.variant} is slower than {INT8_SOURCE[row.variant]} on this machine: "
                "do not deploy it here."
            )
    atomic_write_json(folder / BENCHMARK_FILE, result.to_dict())
    return result


def fastest_variant(benchmark_json: str | os.PathLike) -> dict[str, str] | None:
    """The fastest variant a benchmark recorded (``{"variant", "path", "imgsz"}``), or None.

    ``path`` is that variant exported at the size the model was trained at: the file to serve.
    """
    path = Path(benchmark_json)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("fastest")
    except json.JSONDecodeError:
        return None


def evaluate_map50(
    model: str | os.PathLike, data_yaml: str | os.PathLike, *, imgsz: int, split: str = "val"
) -> float:
    """COCO mAP50 (pycocotools) of any model file Ultralytics loads, every image letterboxed.

    Args:
        model: ``.pt``, ``.onnx``, or an OpenVINO ``model.xml`` / ``*_openvino_model`` folder.
        data_yaml: The dataset.
        imgsz: Input size.
        split: Evaluation split.

    Returns:
        mAP50 on the split.
    """
    with quiet_ultralytics():
        return _map50(Path(model), Path(data_yaml), imgsz, split)


def pruning_study(
    weights: str | os.PathLike,
    data_yaml: str | os.PathLike,
    *,
    amounts: Sequence[float],
    out_dir: str | os.PathLike,
    imgsz: int = 640,
    eval_imgsz: int | None = None,
    repeats: int = 10,
) -> pd.DataFrame:
    """Size, speed and accuracy of the model pruned by each amount (0 is the original).

    Args:
        weights: The trained ``.pt``.
        data_yaml: The dataset.
        amounts: Shares of convolution weights to zero (see :func:`prune_weights`).
        out_dir: Folder for the pruned checkpoints.
        imgsz: Input size for the latency (PyTorch, CPU).
        eval_imgsz: Input size for mAP50 (default: the size the model was trained at).
        repeats: Timed frames per model.

    Returns:
        One row per amount: sparsity, file and compressed size, latency, mAP50.
    """
    import pandas as pd

    from tcv_helpers.model.evaluate import load_ground_truth

    eval_size = eval_imgsz or _trained_imgsz(Path(weights))
    frames = letterbox_frames(load_ground_truth(data_yaml, "val")[0][:4], imgsz=imgsz)
    rows = []
    for amount in sorted({0.0, *amounts}):
        pruned = prune_weights(weights, amount=amount, out=Path(out_dir) / f"pruned-{amount:g}.pt")
        times = time_variant(variant_runner("pytorch-fp32", pruned.weights, usable_cores()), frames,
                             repeats=repeats)  # fmt: skip
        rows.append(
            {"amount": amount, "sparsity": round(pruned.sparsity, 3),
             "size_mb": round(pruned.size_mb, 2), "zipped_mb": round(pruned.compressed_mb, 2),
             "latency_ms": round(statistics.median(times), 1),
             "map50": round(evaluate_map50(pruned.weights, data_yaml, imgsz=eval_size), 4)}
        )  # fmt: skip
    return pd.DataFrame(rows).set_index("amount")
