"""Runtimes that run an exported YOLO graph without torch (notebook 08): ONNX Runtime, OpenVINO.

A runtime loads one model file and maps an NCHW float batch to the model's raw output; it knows
the input's shape and type and the metadata Ultralytics wrote into the file (class names, input
size, stride). :class:`tcv_helpers.deploy.inference.Detector` does the rest (letterbox, NMS,
boxes) around any :class:`Runtime`. onnxruntime and openvino are imported when a runtime is made.
"""

from __future__ import annotations

import ast
import contextlib
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np


class Runtime(Protocol):
    """What :class:`tcv_helpers.deploy.inference.Detector` needs from a runtime.

    Attributes:
        backend: ``onnxruntime`` or ``openvino``.
        metadata: Ultralytics' metadata as Python values (``names``, ``imgsz``, ``stride``, ...).
        input_shape: The input's ``[batch, 3, height, width]``: an int per fixed dimension, None
            or a name (ONNX's ``"batch"``) per dynamic one.
    """

    backend: str
    metadata: dict[str, Any]
    input_shape: list[Any]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """The model's first output for an NCHW float32 batch, as float32."""
        ...


def parse_metadata(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Ultralytics' metadata strings (``"{0: 'car'}"``, ``"[640, 640]"``) as Python values.

    Args:
        raw: The metadata as the file holds it (ONNX custom metadata, OpenVINO rt_info).

    Returns:
        The same keys; a value that reads as a Python literal becomes it, others stay strings.
    """
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, str):
            with contextlib.suppress(ValueError, SyntaxError, MemoryError, RecursionError):
                value = ast.literal_eval(value)
        out[str(key)] = value
    return out


class OnnxRuntime:
    """One ONNX Runtime session on the CPU (thread-safe: concurrent calls run side by side).

    Args:
        path: An ``.onnx`` file.
        threads: CPU threads per inference.

    Raises:
        ValueError: If ONNX Runtime cannot load the file (the message names it).
        ImportError: If onnxruntime is not installed.
    """

    backend = "onnxruntime"

    def __init__(self, path: Path, *, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime's own error types (InvalidProtobuf, Fail, ...)
            raise ValueError(f"{path} is not a model ONNX Runtime can load: {exc}") from None
        spec = self.session.get_inputs()[0]
        self.input_name = spec.name
        self.input_shape = list(spec.shape)
        self.input_dtype = np.float16 if "float16" in spec.type else np.float32
        self.metadata = parse_metadata(self.session.get_modelmeta().custom_metadata_map)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """The model's first output for an NCHW float batch."""
        feed = {self.input_name: batch.astype(self.input_dtype, copy=False)}
        return np.asarray(self.session.run(None, feed)[0], dtype=np.float32)


class OpenVinoRuntime:
    """An OpenVINO model compiled for the CPU, with one inference request per calling thread.

    Args:
        path: An OpenVINO ``.xml`` (its ``.bin`` beside it) or an ``.onnx`` file.
        threads: CPU threads per inference.
        streams: Inferences that may run side by side (one execution stream each).

    Raises:
        ValueError: If OpenVINO cannot read the file (the message names it).
        ImportError: If openvino is not installed.
    """

    backend = "openvino"

    def __init__(self, path: Path, *, threads: int, streams: int = 1) -> None:
        import openvino as ov

        core = ov.Core()
        try:
            model = core.read_model(str(path))
        except RuntimeError as exc:
            raise ValueError(f"{path} is not a model OpenVINO can read: {exc}") from None
        self.metadata = self._metadata(model, path)
        shape = model.inputs[0].get_partial_shape()
        self.input_shape = [d.get_length() if d.is_static else None for d in shape]
        self.input_dtype = np.float32
        # f32: OpenVINO would otherwise run bf16 on CPUs that have it, moving boxes by pixels.
        # One stream runs one inference at a time with ``threads`` threads: ``streams`` of them
        # let that many worker threads infer side by side instead of queueing on one.
        config = {
            "PERFORMANCE_HINT": "LATENCY" if streams == 1 else "THROUGHPUT",
            "NUM_STREAMS": streams,
            "INFERENCE_NUM_THREADS": threads * streams,
            "INFERENCE_PRECISION_HINT": "f32",
        }
        self.compiled = core.compile_model(model, "CPU", config)
        self._local = threading.local()

    @staticmethod
    def _metadata(model: Any, path: Path) -> dict[str, Any]:
        for section in ("framework", "model_info"):
            if model.has_rt_info([section, "names"]):
                raw = model.get_rt_info()[section]
                return parse_metadata({k: model.get_rt_info([section, k]).astype(str) for k in raw})
        beside = path.parent / "metadata.yaml"
        if beside.is_file():
            import yaml

            return parse_metadata(yaml.safe_load(beside.read_text(encoding="utf-8")) or {})
        return {}

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """The model's first output for an NCHW float batch."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        request.infer({0: batch}, share_inputs=True)  # no copy of the input
        return np.array(request.get_output_tensor(0).data, dtype=np.float32)
