"""Choosing compute: an estimator of training time and cost for each place the course runs.

The throughput figures are rough reference numbers for training YOLO11n at 640 px with batch
16 (images per second, forward and backward), meant for planning, not promises. Replace them
with your own measurement: notebook 05 prints the images per second it reached.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from tcv_helpers.config import Profile

#: Image size the reference throughputs were taken at.
REFERENCE_IMGSZ = 640
#: Validation, data loading and checkpointing on top of the pure training steps.
OVERHEAD = 1.25
#: Training time a 3-hour workshop can spend waiting for one model.
WORKSHOP_TRAINING_HOURS = 1.0
#: Jetstream2 charges GPU instances per vCPU-hour (docs.jetstream-cloud.org, "Instance Flavors";
#: the rate has been 2 and 4 over time: check the current page before you budget).
JETSTREAM2_GPU_SU_PER_VCPU_HOUR = 2


@dataclass(frozen=True)
class Hardware:
    """A place to train, with its reference speed and price.

    Attributes:
        name: What to call it in a table.
        platform: ``colab``, ``jetstream2``, ``slurm`` or ``local``.
        accelerator: ``cpu`` or the GPU model.
        images_per_second: Reference YOLO11n training throughput at 640 px.
        price_per_hour: What an hour costs, in ``unit``.
        unit: ``USD``, ``SU`` (Jetstream2 service units) or ``GPU-h`` (a Slurm allocation).
        access: How to get it.
    """

    name: str
    platform: str
    accelerator: str
    images_per_second: float
    price_per_hour: float
    unit: str
    access: str


HARDWARE: tuple[Hardware, ...] = (
    Hardware(
        "Laptop or CI runner, 2 CPU cores",
        "local",
        "cpu",
        1.0,
        0.0,
        "USD",
        "your own machine: nothing to request",
    ),
    Hardware(
        "Colab free, T4",
        "colab",
        "T4",
        55.0,
        0.0,
        "USD",
        "colab.research.google.com, Runtime > Change runtime type > T4 GPU; sessions end after some hours",
    ),
    Hardware(
        "Colab Pro, A100",
        "colab",
        "A100",
        300.0,
        1.3,
        "USD",
        "Colab Pro compute units (about 13 units an hour at roughly 0.10 USD each)",
    ),
    Hardware(
        "Jetstream2 g3.medium (quarter A100)",
        "jetstream2",
        "A100 slice",
        75.0,
        8 * JETSTREAM2_GPU_SU_PER_VCPU_HOUR,
        "SU",
        "an ACCESS allocation (Explore is enough for a course) exchanged for Jetstream2 GPU",
    ),
    Hardware(
        "Jetstream2 g3.xl (full A100)",
        "jetstream2",
        "A100",
        300.0,
        32 * JETSTREAM2_GPU_SU_PER_VCPU_HOUR,
        "SU",
        "an ACCESS allocation exchanged for Jetstream2 GPU; g3.xl may need a request",
    ),
    Hardware(
        "Slurm cluster node, V100 (e.g. Koa)",
        "slurm",
        "V100",
        140.0,
        1.0,
        "GPU-h",
        "an account on the cluster through your institution; GPU hours come from your group's allocation",
    ),
)


@dataclass(frozen=True)
class Estimate:
    """Estimated training time and cost of one profile on one piece of hardware.

    Attributes:
        hardware: The hardware's name.
        accelerator: ``cpu`` or the GPU model.
        hours: Estimated wall-clock hours.
        cost: Estimated cost in ``unit``.
        unit: Currency or allocation unit.
        fits_workshop: Whether training fits the hour a 3-hour workshop can give it.
    """

    hardware: str
    accelerator: str
    hours: float
    cost: float
    unit: str
    fits_workshop: bool


def training_hours(
    profile: Profile,
    images_per_second: float,
    *,
    train_images: int | None = None,
    imgsz: int | None = None,
) -> float:
    """Estimated hours to train a profile at a given reference throughput.

    Compute per image grows with the number of pixels, so the throughput is scaled by
    ``(640 / imgsz)**2``; :data:`OVERHEAD` covers validation and data loading.

    Args:
        profile: The profile (its epochs, image size and dataset size are used).
        images_per_second: Reference training throughput at 640 px.
        train_images: Training images (default: 80 % of the profile's synthetic frames).
        imgsz: Image size (default: the profile's).

    Returns:
        Hours.

    Raises:
        ValueError: If the throughput, image count or size is not positive.
    """
    size = imgsz or profile.imgsz
    images = train_images if train_images is not None else math.ceil(0.8 * profile.synth_images)
    if images_per_second <= 0 or images <= 0 or size <= 0:
        raise ValueError("images_per_second, train_images and imgsz must all be positive.")
    speed = images_per_second * (REFERENCE_IMGSZ / size) ** 2
    return profile.epochs * images / speed * OVERHEAD / 3600


def estimate(
    profile: Profile,
    hardware: tuple[Hardware, ...] = HARDWARE,
    *,
    train_images: int | None = None,
) -> list[Estimate]:
    """Estimates a profile's training time and cost on each piece of hardware.

    Args:
        profile: The profile to estimate.
        hardware: Hardware to compare (default: :data:`HARDWARE`).
        train_images: Training images (default: 80 % of the profile's synthetic frames).

    Returns:
        One estimate per hardware, in the given order.
    """
    rows = []
    for hw in hardware:
        hours = training_hours(profile, hw.images_per_second, train_images=train_images)
        rows.append(
            Estimate(
                hardware=hw.name,
                accelerator=hw.accelerator,
                hours=hours,
                cost=hours * hw.price_per_hour,
                unit=hw.unit,
                fits_workshop=hours <= WORKSHOP_TRAINING_HOURS,
            )
        )
    return rows


def estimates_table(rows: list[Estimate]):
    """The estimates as a pandas DataFrame with readable columns."""
    import pandas as pd

    frame = pd.DataFrame([asdict(r) for r in rows])
    frame["minutes"] = (frame["hours"] * 60).round(1)
    frame["cost"] = frame["cost"].round(2)
    return frame[["hardware", "accelerator", "minutes", "cost", "unit", "fits_workshop"]]


def measure_matmul_gflops(size: int = 1024, repeats: int = 3, *, device: str = "cpu") -> float:
    """Measures matrix-multiplication speed, the operation deep learning spends its time on.

    Args:
        size: Side of the square float32 matrices.
        repeats: Timed repetitions (the best one counts).
        device: ``"cpu"`` (NumPy) or ``"cuda"`` (PyTorch, which must be installed with a GPU).

    Returns:
        Billions of floating-point operations per second (GFLOP/s).

    Raises:
        ValueError: If size or repeats is not positive.
        RuntimeError: If ``device="cuda"`` and no CUDA GPU is usable.
    """
    import time

    import numpy as np

    if size <= 0 or repeats <= 0:
        raise ValueError("size and repeats must be positive.")
    flops = 2.0 * size**3
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("device='cuda' but PyTorch sees no CUDA GPU.")
        a = torch.randn(size, size, device="cuda")
        b = torch.randn(size, size, device="cuda")
        a @ b  # warm-up: CUDA kernels load on first use
        torch.cuda.synchronize()
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        return flops / best / 1e9
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    a @ b
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return flops / best / 1e9
