import pytest
from matplotlib.figure import Figure

from tcv_helpers.model.catalogue import (
    CATALOGUE,
    Measurement,
    build_model,
    choose,
    find_spec,
    measure,
    plot_tradeoff,
)
from tcv_helpers.project import ProjectDefinition, SuccessCriteria


def test_catalogue_covers_three_tasks_and_the_named_families():
    tasks = {s.task for s in CATALOGUE}
    families = {s.family for s in CATALOGUE}
    assert tasks == {"classification", "detection", "segmentation"}
    assert {
        "ResNet",
        "EfficientNet",
        "MobileNet",
        "YOLO",
        "Faster R-CNN",
        "SSD",
        "Mask R-CNN",
        "YOLO-seg",
        "DeepLab",
    } <= families
    with pytest.raises(KeyError, match="known: resnet18"):
        find_spec("alexnet")


@pytest.mark.parametrize(
    ("name", "params_m"),
    [("mobilenet_v3_small", 2.54), ("yolo11n", 2.62), ("ssdlite320_mobilenet_v3_large", 3.44)],
)
def test_built_offline_with_the_published_size(name, params_m):
    model = build_model(name)
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(params_m, abs=0.02)
    assert not model.training


def test_measure_counts_flops_and_time():
    m = measure("resnet18", repeats=1)
    assert m.imgsz == 224 and m.params_m == pytest.approx(11.69, abs=0.01)
    assert m.gflops == pytest.approx(3.64, rel=0.05)  # 1.82 GMACs, two FLOPs per multiply-add
    assert m.latency_ms > 0
    small = measure("yolo11n", imgsz=64, repeats=1)
    assert small.gflops < measure("yolo11n", imgsz=128, repeats=1).gflops
    with pytest.raises(ValueError):
        measure("yolo11n", imgsz=8)


def test_a_slow_model_is_timed_fewer_times_than_asked():
    """Repeats stop once the timed runs used the budget: a two-second model is timed once."""
    assert measure("yolo11n", imgsz=64, repeats=4, budget_s=0.0).runs == 1
    assert measure("yolo11n", imgsz=64, repeats=4, budget_s=60.0).runs == 4


def test_yolo26n_is_measured_beside_yolo11n():
    """The current, NMS-free family is in the catalogue and built offline like the others."""
    spec = find_spec("yolo26n")
    assert spec.task == "detection" and spec.published_value > find_spec("yolo11n").published_value
    new, old = measure("yolo26n", imgsz=64, repeats=1), measure("yolo11n", imgsz=64, repeats=1)
    assert 2.0 < new.params_m < 3.0 and new.latency_ms > 0
    assert new.gflops < old.gflops, "YOLO26n does fewer operations per frame than YOLO11n"


def _m(name, task, latency, value):
    return Measurement(name, task, "f", 1.0, 1.0, latency, 640, "metric", value)


ROWS = [
    _m("fast", "detection", 50, 30.0),
    _m("good", "detection", 90, 40.0),
    _m("best", "detection", 500, 50.0),
    _m("cls", "classification", 5, 80.0),
]


def test_choose_within_budget():
    chosen = choose(ROWS, ProjectDefinition(criteria=SuccessCriteria(max_latency_ms=100)))
    assert chosen.model.name == "good" and "within the 100 ms budget" in chosen.message


def test_choose_when_nothing_fits():
    chosen = choose(ROWS, ProjectDefinition(criteria=SuccessCriteria(max_latency_ms=10)))
    assert chosen.model.name == "fast" and "no detection model meets" in chosen.message


def test_choose_needs_the_task():
    with pytest.raises(ValueError, match="segmentation"):
        choose(ROWS, ProjectDefinition(task="segmentation"))


def test_plot():
    fig = plot_tradeoff(ROWS, budget_ms=100)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
