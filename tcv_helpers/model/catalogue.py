"""Model selection: the families of the three task types, measured live, side by side.

Every architecture is built from its definition (torchvision with ``weights=None``, Ultralytics
from its YAML), so nothing is downloaded; its size, FLOPs and CPU latency are then measured on
this machine, and shown next to the accuracy its authors published on a standard benchmark.
The choice follows the criteria in ``project.yaml``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from tcv_helpers.project import ProjectDefinition


@dataclass(frozen=True)
class ModelSpec:
    """A model family member and what its authors published about it.

    Attributes:
        name: Short name.
        task: ``classification``, ``detection`` or ``segmentation``.
        family: Architecture family (ResNet, YOLO, Faster R-CNN, ...).
        source: Where the definition comes from (``torchvision`` or ``ultralytics``).
        published_metric: The benchmark metric (e.g. ``ImageNet top-1``, ``COCO box mAP50-95``).
        published_value: Its published value, in percent.
        reference: Where the number is published.
        imgsz: Input size it is used and measured at (ImageNet models 224, SSDlite 320, else 640).
        fixed_size: True when the model resizes every input to ``imgsz`` itself (SSDlite).
    """

    name: str
    task: str
    family: str
    source: str
    published_metric: str
    published_value: float
    reference: str
    imgsz: int = 640
    fixed_size: bool = False


TORCHVISION_DOCS = "torchvision model docs (pytorch.org/vision/stable/models.html)"
ULTRALYTICS_DOCS = "Ultralytics YOLO11 docs (docs.ultralytics.com/models/yolo11)"
#: YOLO26 is end-to-end (no NMS); its end-to-end COCO figure is the one that matches how it runs.
YOLO26_DOCS = "Ultralytics YOLO26 docs (docs.ultralytics.com/models/yolo26), end-to-end"

CATALOGUE: tuple[ModelSpec, ...] = (
    ModelSpec("resnet18", "classification", "ResNet", "torchvision", "ImageNet top-1", 69.758, TORCHVISION_DOCS, 224),
    ModelSpec("efficientnet_b0", "classification", "EfficientNet", "torchvision", "ImageNet top-1", 77.692, TORCHVISION_DOCS, 224),
    ModelSpec("mobilenet_v3_small", "classification", "MobileNet", "torchvision", "ImageNet top-1", 67.668, TORCHVISION_DOCS, 224),
    ModelSpec("yolo11n", "detection", "YOLO", "ultralytics", "COCO box mAP50-95", 39.5, ULTRALYTICS_DOCS),
    ModelSpec("yolo11s", "detection", "YOLO", "ultralytics", "COCO box mAP50-95", 47.0, ULTRALYTICS_DOCS),
    ModelSpec("yolo26n", "detection", "YOLO", "ultralytics", "COCO box mAP50-95", 40.1, YOLO26_DOCS),
    ModelSpec("fasterrcnn_mobilenet_v3_large_fpn", "detection", "Faster R-CNN", "torchvision", "COCO box mAP50-95", 32.8, TORCHVISION_DOCS),
    ModelSpec("fasterrcnn_resnet50_fpn", "detection", "Faster R-CNN", "torchvision", "COCO box mAP50-95", 37.0, TORCHVISION_DOCS),
    ModelSpec("ssdlite320_mobilenet_v3_large", "detection", "SSD", "torchvision", "COCO box mAP50-95", 21.3, TORCHVISION_DOCS, 320, True),
    ModelSpec("yolo11n-seg", "segmentation", "YOLO-seg", "ultralytics", "COCO mask mAP50-95", 32.0, ULTRALYTICS_DOCS),
    ModelSpec("maskrcnn_resnet50_fpn", "segmentation", "Mask R-CNN", "torchvision", "COCO mask mAP50-95", 34.6, TORCHVISION_DOCS),
    ModelSpec("deeplabv3_mobilenet_v3_large", "segmentation", "DeepLab", "torchvision", "VOC-on-COCO mIoU", 60.3, TORCHVISION_DOCS),
    ModelSpec("lraspp_mobilenet_v3_large", "segmentation", "LR-ASPP", "torchvision", "VOC-on-COCO mIoU", 57.9, TORCHVISION_DOCS),
)  # fmt: skip


def find_spec(name: str) -> ModelSpec:
    """The catalogue entry called ``name``.

    Raises:
        KeyError: For an unknown name, listing the known ones.
    """
    for spec in CATALOGUE:
        if spec.name == name:
            return spec
    raise KeyError(f"Unknown model {name!r}; known: {', '.join(s.name for s in CATALOGUE)}.")


def build_model(spec: ModelSpec | str, *, imgsz: int | None = None, num_classes: int | None = None):
    """Builds an architecture with random weights (no download), in eval mode.

    Args:
        spec: A catalogue entry or its name.
        imgsz: Input size (default: the spec's); torchvision detectors resize to it, not to 800.
        num_classes: Output classes (default: the benchmark's).

    Returns:
        A ``torch.nn.Module``.
    """
    import torchvision

    spec = find_spec(spec) if isinstance(spec, str) else spec
    imgsz = imgsz or spec.imgsz
    if spec.source == "ultralytics":
        from ultralytics import YOLO

        module = YOLO(f"{spec.name}.yaml").model
        return module.eval()
    builder: Callable = getattr(torchvision.models, spec.name, None) or getattr(
        torchvision.models.detection, spec.name, None
    ) or getattr(torchvision.models.segmentation, spec.name)  # fmt: skip
    kwargs: dict = {"weights": None}
    if spec.task != "classification":
        kwargs["weights_backbone"] = None
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if (spec.task == "detection" or spec.name.startswith("maskrcnn")) and not spec.fixed_size:
        kwargs.update(min_size=imgsz, max_size=imgsz)
    return builder(**kwargs).eval()


@dataclass(frozen=True)
class Measurement:
    """What one model costs here.

    Attributes:
        name: Model name.
        task: Task type.
        family: Architecture family.
        params_m: Parameters, in millions.
        gflops: Billions of floating-point operations for one image at ``imgsz``.
        latency_ms: Median CPU latency for one image at ``imgsz``.
        imgsz: Input size measured at (the size the model is used at).
        published_metric: The benchmark metric.
        published_value: Its published value.
        runs: Timed runs the latency is the median of.
    """

    name: str
    task: str
    family: str
    params_m: float
    gflops: float
    latency_ms: float
    imgsz: int
    published_metric: str
    published_value: float
    runs: int = 1


def measure(
    spec: ModelSpec | str,
    *,
    imgsz: int | None = None,
    repeats: int = 3,
    threads: int | None = None,
    budget_s: float = 2.0,
) -> Measurement:
    """Measures parameters, FLOPs and CPU latency of one architecture.

    Args:
        spec: A catalogue entry or its name.
        imgsz: Square input size (default: the spec's, the size the model is used at).
        repeats: Timed runs after one warm-up (the median counts).
        threads: Torch CPU threads (default: as configured).
        budget_s: Stop repeating once the timed runs took this long (at least one run): a
            model at two seconds a frame is measured once, not ``repeats`` times.

    Returns:
        The measurement.

    Raises:
        ValueError: If ``imgsz`` is below 32 or ``repeats`` below 1.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    spec = find_spec(spec) if isinstance(spec, str) else spec
    imgsz = imgsz or spec.imgsz
    if imgsz < 32 or repeats < 1:
        raise ValueError("imgsz must be at least 32 and repeats at least 1.")
    model = build_model(spec, imgsz=imgsz)
    if threads:
        torch.set_num_threads(threads)
    params = sum(p.numel() for p in model.parameters())
    image = torch.rand(1, 3, imgsz, imgsz)
    batch = (
        [image[0]]
        if spec.source == "torchvision"
        and spec.task != "classification"
        and not spec.name.startswith(("deeplab", "lraspp"))
        else image
    )
    with torch.inference_mode():
        counter = FlopCounterMode(display=False)
        with counter:
            model(batch)
        times: list[float] = []
        while len(times) < repeats and (not times or sum(times) < budget_s):
            start = time.perf_counter()
            model(batch)
            times.append(time.perf_counter() - start)
    latency = sorted(times)[len(times) // 2] * 1000
    return Measurement(
        name=spec.name,
        task=spec.task,
        family=spec.family,
        params_m=params / 1e6,
        gflops=counter.get_total_flops() / 1e9,
        latency_ms=latency,
        imgsz=imgsz,
        published_metric=spec.published_metric,
        published_value=spec.published_value,
        runs=len(times),
    )


def measure_all(
    names: Sequence[str] | None = None,
    *,
    repeats: int = 3,
    progress: bool = False,
) -> list[Measurement]:
    """Measures several catalogue models (default: all of them), in catalogue order."""
    from tqdm.auto import tqdm

    specs = [find_spec(n) for n in names] if names is not None else list(CATALOGUE)
    return [measure(s, repeats=repeats) for s in tqdm(specs, disable=not progress, desc="measure")]


def measurements_table(rows: Sequence[Measurement]):
    """The measurements as a pandas DataFrame, rounded for reading."""
    import pandas as pd

    frame = pd.DataFrame([asdict(r) for r in rows])
    return frame.round({"params_m": 2, "gflops": 2, "latency_ms": 1})


@dataclass(frozen=True)
class Selection:
    """The model chosen for the project, and one sentence why.

    Attributes:
        model: The chosen model's measurement (``.name``, ``.latency_ms``, ...).
        message: Why it was chosen.
    """

    model: Measurement
    message: str


def choose(rows: Sequence[Measurement], project: ProjectDefinition) -> Selection:
    """Picks the model for the project: its task, within its latency budget, most accurate.

    The budget (``criteria.max_latency_ms``) is per frame on the deployment target; the latency
    measured here, at the size each model is used at, stands in for it. When nothing fits, the
    fastest model of the task is chosen and the reason says so.

    Args:
        rows: Measurements (from :func:`measure_all`).
        project: The project definition (``project.yaml``).

    Returns:
        The chosen model (``.model``) and one sentence why (``.message``).

    Raises:
        ValueError: If no measured model is of the project's task.
    """
    candidates = [r for r in rows if r.task == project.task]
    if not candidates:
        raise ValueError(f"No measured model for the task {project.task!r}.")
    budget = project.criteria.max_latency_ms
    fitting = [r for r in candidates if r.latency_ms <= budget]
    if fitting:
        best = max(fitting, key=lambda r: (r.published_value, -r.latency_ms))
        why = (
            f"{best.name}: the most accurate {project.task} model ({best.published_metric} "
            f"{best.published_value}) within the {budget:.0f} ms budget "
            f"(about {best.latency_ms:.0f} ms per frame here)."
        )
    else:
        best = min(candidates, key=lambda r: r.latency_ms)
        why = (
            f"{best.name}: no {project.task} model meets the {budget:.0f} ms budget on this machine; "
            f"this is the fastest (about {best.latency_ms:.0f} ms per frame): "
            "optimise it (notebook 07) or relax the budget."
        )
    return Selection(best, why)


def plot_tradeoff(rows: Sequence[Measurement], *, budget_ms: float | None = None) -> Figure:
    """Published accuracy against measured latency, one panel per task; bubble area = parameters."""
    tasks = list(dict.fromkeys(r.task for r in rows))
    fig = Figure(figsize=(5 * len(tasks), 4.2))
    axes = fig.subplots(1, len(tasks), squeeze=False)[0]
    for ax, task in zip(axes, tasks, strict=True):
        mine = [r for r in rows if r.task == task]
        ax.scatter(
            [r.latency_ms for r in mine],
            [r.published_value for r in mine],
            s=[max(20.0, r.params_m * 8) for r in mine],
            alpha=0.6,
        )
        for r in mine:
            ax.annotate(
                r.name,
                (r.latency_ms, r.published_value),
                fontsize=8,
                xytext=(4, 4),
                textcoords="offset points",
            )
        if budget_ms and task == "detection":
            ax.axvline(budget_ms, color="red", linestyle="--", label=f"budget {budget_ms:.0f} ms")
            ax.legend(loc="lower right")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("CPU latency per image, ms (measured here, log scale)")
        metrics = sorted({r.published_metric for r in mine})
        ax.set_ylabel(f"{metrics[0]} (published)" if len(metrics) == 1 else "published accuracy, %")
        if len(metrics) > 1:  # say which benchmark each number is on: they do not compare directly
            ax.set_title(f"{task}\n({'; '.join(metrics)})", fontsize=9)
            continue
        ax.set_title(task)
    fig.tight_layout()
    return fig
