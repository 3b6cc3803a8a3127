"""Dynamic batching for the service: images that arrive close together share one inference call.

It works as Triton's dynamic batcher does. A request's decoded images join a queue. As soon as a
model instance is free, a dispatcher thread takes the first waiting image and whatever else is
waiting, up to ``max_batch`` images, and runs them as one :meth:`Detector.detect_arrays` call on
that instance. It waits up to ``max_wait_ms`` for more images, but only while other admitted
requests are still being decoded (:meth:`DynamicBatcher.expect`): a lone request never waits, so
batching costs nothing at concurrency 1. Under load the queue fills while the instances are busy,
and the next batch takes it at once.

A batch is one forward pass only where the model takes several images: an export with a
dynamic batch (``YOLO.export(dynamic=True)``) or a fixed batch of N (``batch=N``). A model
exported for one image at a time would run a batch as N passes in a row on one instance, which
adds latency and gains nothing, so the batch size is then 1 (:func:`batch_limit`).

Imports numpy only (no torch, Ultralytics or OpenCV).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tcv_helpers.deploy.inference import DEFAULT_CONF, DEFAULT_IOU, Detector

LOGGER = logging.getLogger(__name__)

#: Most images in one inference call, by default (where the model takes a batch).
DEFAULT_BATCH_SIZE = 8
#: Most milliseconds the first image of a batch waits for more, by default.
DEFAULT_BATCH_WAIT_MS = 2.0


def batch_limit(detector: Detector, wanted: int) -> int:
    """The largest batch worth forming for ``detector``: ``wanted`` for a dynamic-batch model,
    at most the model's own batch for a fixed one, 1 for a model exported for single images."""
    if wanted < 1:
        raise ValueError(f"the batch size must be at least 1, got {wanted}.")
    fixed = detector.batch_size
    return wanted if fixed is None else min(wanted, fixed)


@dataclass
class _Pending:
    image: np.ndarray
    future: Future = field(default_factory=Future)


class DynamicBatcher:
    """Runs images through a detector in batches formed as they arrive (module docstring).

    Args:
        detector: The detector; its :meth:`~Detector.detect_arrays` is called from
            ``instances`` threads at once (it is thread-safe).
        max_batch: Most images in one call (cut to what the model takes: :func:`batch_limit`).
        max_wait_ms: Most milliseconds the first image of a batch waits for others announced
            by :meth:`expect`.
        instances: Calls that may run at once (the runtime's execution streams).
        conf: Confidence threshold.
        iou: NMS IoU threshold.
        on_batch: Called after each call with the batch's size and seconds (for metrics).

    Raises:
        ValueError: If a setting is out of range.
    """

    def __init__(
        self,
        detector: Detector,
        *,
        max_batch: int = DEFAULT_BATCH_SIZE,
        max_wait_ms: float = DEFAULT_BATCH_WAIT_MS,
        instances: int = 1,
        conf: float = DEFAULT_CONF,
        iou: float = DEFAULT_IOU,
        on_batch: Callable[[int, float], Any] | None = None,
    ) -> None:
        if not max_wait_ms >= 0:
            raise ValueError(f"the batch wait must be 0 ms or more, got {max_wait_ms}.")
        if instances < 1:
            raise ValueError(f"instances must be at least 1, got {instances}.")
        self.detector = detector
        self.max_batch = batch_limit(detector, max_batch)
        self.max_wait = max_wait_ms / 1000
        self.instances = instances
        self.conf, self.iou = conf, iou
        self._on_batch = on_batch
        self._queue: deque[_Pending] = deque()
        self._expected = 0
        self._closed = False
        self._cond = threading.Condition()
        self._free = threading.Semaphore(instances)
        self._pool = ThreadPoolExecutor(max_workers=instances, thread_name_prefix="tcv-infer")
        self._dispatcher = threading.Thread(target=self._dispatch, name="tcv-batcher", daemon=True)
        self._dispatcher.start()

    def __repr__(self) -> str:
        return (
            f"DynamicBatcher(max_batch={self.max_batch}, max_wait_ms={self.max_wait * 1000:g}, "
            f"instances={self.instances})"
        )

    def expect(self, count: int = 1) -> None:
        """Announces ``count`` images that will be submitted soon (a request being decoded):
        a batch being formed may wait for them, up to ``max_wait_ms``."""
        with self._cond:
            self._expected += count

    def forget(self, count: int = 1) -> None:
        """Takes back ``count`` announced images that will not come (their request failed)."""
        with self._cond:
            self._expected = max(0, self._expected - count)
            self._cond.notify_all()

    def submit(self, image: np.ndarray, *, expected: bool = False) -> Future:
        """Queues one RGB image; the future holds its :class:`DetectionResult` (or the error of
        the call it was in). ``expected=True`` settles one :meth:`expect`."""
        pending = _Pending(image)
        with self._cond:
            if expected:
                self._expected = max(0, self._expected - 1)
            if self._closed:
                raise RuntimeError("the batcher is closed")
            self._queue.append(pending)
            self._cond.notify_all()
        return pending.future

    def close(self) -> None:
        """Runs what is queued, then stops the dispatcher and the instances."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._dispatcher.join(timeout=30)
        self._pool.shutdown(wait=True)

    # ---- the dispatcher thread -----------------------------------------------------------

    def _dispatch(self) -> None:
        while True:
            self._free.acquire()  # form a batch only when an instance can run it
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:  # closed and drained
                    self._free.release()
                    return
                deadline = time.monotonic() + self.max_wait
                while len(self._queue) < self.max_batch and self._expected and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                taken = [
                    self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))
                ]
            # A request that went away has cancelled its future: its image is not run.
            batch = [item for item in taken if item.future.set_running_or_notify_cancel()]
            if batch:
                self._pool.submit(self._run, batch)
            else:
                self._free.release()

    def _run(self, batch: list[_Pending]) -> None:
        begin = time.perf_counter()
        try:
            results = self.detector.detect_arrays(
                [item.image for item in batch], conf=self.conf, iou=self.iou
            )
        except Exception as exc:  # every image of the call gets the call's error
            for item in batch:
                item.future.set_exception(exc)
        else:
            for item, result in zip(batch, results, strict=True):
                item.future.set_result(result)
        finally:
            self._free.release()
        if self._on_batch is not None:
            try:
                self._on_batch(len(batch), time.perf_counter() - begin)
            except Exception:  # metrics must never fail an answer already given
                LOGGER.exception("the batch callback failed")
