import pytest

from tcv_helpers.compute import (
    HARDWARE,
    Hardware,
    estimate,
    estimates_table,
    measure_matmul_gflops,
    training_hours,
)
from tcv_helpers.config import PROFILES, with_overrides


def test_time_scales_with_epochs_images_and_pixels():
    base = with_overrides(PROFILES["workshop"], epochs=10, imgsz=640)
    one = training_hours(base, 100.0, train_images=1000)
    assert training_hours(
        with_overrides(base, epochs=20), 100.0, train_images=1000
    ) == pytest.approx(2 * one)
    assert training_hours(base, 100.0, train_images=2000) == pytest.approx(2 * one)
    assert training_hours(base, 100.0, train_images=1000, imgsz=320) == pytest.approx(one / 4)
    assert training_hours(base, 200.0, train_images=1000) == pytest.approx(one / 2)
    assert one == pytest.approx(10 * 1000 / 100 * 1.25 / 3600)


@pytest.mark.parametrize(
    "kwargs", [{"images_per_second": 0}, {"images_per_second": 5, "train_images": 0}]
)
def test_bad_inputs(kwargs):
    with pytest.raises(ValueError):
        training_hours(PROFILES["smoke"], **kwargs)


def test_estimate_table_orders_gpus_faster_and_costs():
    rows = estimate(PROFILES["workshop"])
    assert len(rows) == len(HARDWARE)
    cpu = next(r for r in rows if r.accelerator == "cpu")
    t4 = next(r for r in rows if r.accelerator == "T4")
    assert cpu.hours > 10 * t4.hours and t4.cost == 0
    js = next(r for r in rows if r.unit == "SU")
    assert js.cost == pytest.approx(js.hours * 16)
    table = estimates_table(rows)
    assert list(table.columns) == [
        "hardware",
        "accelerator",
        "minutes",
        "cost",
        "unit",
        "fits_workshop",
    ]
    custom = estimate(PROFILES["smoke"], (Hardware("mine", "local", "cpu", 2.0, 0, "USD", ""),))
    assert [r.hardware for r in custom] == ["mine"]


def test_matmul_speed_is_measured():
    assert measure_matmul_gflops(128, repeats=2) > 0.01
    with pytest.raises(ValueError):
        measure_matmul_gflops(0)
