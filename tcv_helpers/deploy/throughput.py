"""Throughput mode: as many images per second as the CPU gives, not the fastest single answer.

A camera service answers one frame as fast as it can (latency mode: :func:`time_variant` in
:mod:`tcv_helpers.deploy.optimize`, one frame at a time). A batch job over a day of recordings
wants the most frames per second instead: OpenVINO's ``THROUGHPUT`` performance hint splits the
cores into several execution *streams*, and several asynchronous *infer requests* keep every
stream busy (an ``AsyncInferQueue``: the next frame is handed over while others still run);
a batch of several frames per request can help further on CPUs with wide vector units. The two
modes answer different questions, so the benchmark reports both.

    from tcv_helpers.deploy.throughput import measure_throughput

    rows = measure_throughput("variants/openvino-int8-640_openvino_model/model.xml", frames,
                              batches=(1, 2, 4))
    max(rows, key=lambda r: r.images_per_second)
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tcv_helpers.env import usable_cores


@dataclass
class ThroughputResult:
    """One throughput measurement.

    Attributes:
        model: The model measured (a label: variant and family, e.g. ``yolo11n openvino-int8``).
        path: Its ``model.xml``.
        input: Input size as ``WIDTHxHEIGHT``.
        batch: Frames per infer request.
        requests: Asynchronous infer requests kept in flight.
        streams: OpenVINO execution streams the hint chose.
        images_per_second: Frames finished per second over the measurement.
        request_ms: Mean time of one request, start to finish (what one frame waits, with
            the others in flight).
        seconds: Length of the measurement.
    """

    model: str
    path: str
    input: str
    batch: int
    requests: int
    streams: int
    images_per_second: float
    request_ms: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """The row as a plain dictionary (for JSON and tables)."""
        return asdict(self)


def _openvino_xml(path: str | os.PathLike) -> Path:
    model = Path(path)
    if model.is_dir():  # an Ultralytics-style *_openvino_model folder
        found = sorted(model.glob("*.xml"))
        if not found:
            raise FileNotFoundError(f"{model} holds no OpenVINO .xml model.")
        return found[0]
    if model.suffix != ".xml" or not model.is_file():
        raise FileNotFoundError(f"{model} is not an OpenVINO .xml model (or its folder).")
    return model


def measure_throughput(
    model_path: str | os.PathLike,
    frames: Sequence[np.ndarray],
    *,
    batches: Sequence[int] = (1,),
    seconds: float = 3.0,
    threads: int | None = None,
    label: str = "",
) -> list[ThroughputResult]:
    """Frames per second of an OpenVINO model with the ``THROUGHPUT`` hint and async requests.

    For each batch size the model is reshaped to it (frames stacked along the batch axis),
    compiled with the hint, and fed through an ``AsyncInferQueue`` of the number of requests
    OpenVINO finds optimal for ``seconds`` after a warm-up round.

    Args:
        model_path: ``model.xml`` or its ``*_openvino_model`` folder (FP32 or INT8).
        frames: Inputs from :func:`tcv_helpers.deploy.optimize.letterbox_frames`, each
            ``(1, 3, height, width)``.
        batches: Batch sizes to try.
        seconds: Length of each timed measurement.
        threads: CPU threads (default: every core this process may use).
        label: What to call the model in the rows (default: the folder's name).

    Returns:
        One row per batch size; a batch size the model cannot be reshaped to (an export with a
        fixed batch of 1, as the course's exports are) is left out with a warning.

    Raises:
        FileNotFoundError: If the model is not an OpenVINO model.
        ValueError: If there are no frames or a batch size is below 1.
    """
    import openvino as ov

    xml = _openvino_xml(model_path)
    if not frames:
        raise ValueError("measure_throughput needs at least one frame.")
    if any(int(b) < 1 for b in batches):
        raise ValueError(f"Batch sizes must be at least 1, got {list(batches)}.")
    _, channels, height, width = frames[0].shape
    core = ov.Core()
    cores = threads or usable_cores()
    rows = []
    for batch in (int(b) for b in batches):
        model = core.read_model(str(xml))
        if batch != 1:
            try:
                model.reshape({model.input(0).get_any_name(): [batch, channels, height, width]})
            except RuntimeError:
                warnings.warn(
                    f"{xml} cannot take a batch of {batch} (exported for batch 1; export the ONNX "
                    "model with dynamic=True to try it): left out.",
                    stacklevel=2,
                )
                continue
        compiled = core.compile_model(
            model, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_NUM_THREADS": cores}
        )
        requests = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        streams = int(compiled.get_property("NUM_STREAMS"))
        stacked = [
            np.concatenate([frames[(i + k) % len(frames)] for k in range(batch)])
            for i in range(max(len(frames), requests))
        ]
        queue = ov.AsyncInferQueue(compiled, requests)
        for i in range(requests):  # warm-up: every request once
            queue.start_async({0: stacked[i % len(stacked)]})
        queue.wait_all()
        started, submitted = time.perf_counter(), 0
        while time.perf_counter() - started < seconds:
            queue.start_async({0: stacked[submitted % len(stacked)]})  # waits for a free request
            submitted += 1
        queue.wait_all()
        elapsed = time.perf_counter() - started
        rows.append(
            ThroughputResult(
                model=label or xml.parent.name.removesuffix("_openvino_model"),
                path=str(xml),
                input=f"{width}x{height}",
                batch=batch,
                requests=requests,
                streams=streams,
                images_per_second=submitted * batch / elapsed,
                request_ms=1000.0 * elapsed * requests / submitted,
                seconds=elapsed,
            )
        )
    return rows
