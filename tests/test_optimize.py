"""Optimization: export, INT8 quantization, OpenVINO, pruning, the benchmark, the search."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import yaml
from matplotlib.figure import Figure
from PIL import Image
from tiny import TINY

from tcv_helpers.data.synth import render_frame
from tcv_helpers.deploy.decode import decode_image
from tcv_helpers.deploy.inference import model_input
from tcv_helpers.deploy.optimize import (
    BENCHMARK_FILE,
    VARIANTS,
    benchmark,
    export_onnx,
    export_openvino,
    fastest_variant,
    head_nodes,
    letterbox_frames,
    prune_weights,
    quantize_onnx_int8,
    tune,
)
from tcv_helpers.model.evaluate import load_ground_truth
from tcv_helpers.model.train import UntrustedWeights


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tiny_model):
    """The session's tiny model, its data, its ONNX export, and a folder for this module's files."""
    work = tmp_path_factory.mktemp("optimize")
    data = tiny_model.data
    onnx_path = export_onnx(tiny_model.weights, imgsz=64, out=work / "variants" / "fp32.onnx")
    paths = load_ground_truth(data.root, "train")[0]
    return {
        "work": work,
        "data": data,
        "weights": tiny_model.weights,
        "onnx": onnx_path,
        "paths": paths,
    }


def test_letterbox_frames(tiny):
    (frame,) = letterbox_frames(tiny["paths"][:1], imgsz=64)
    assert frame.shape == (1, 3, 64, 64) and frame.dtype == np.float32
    assert frame.min() >= 0.0 and frame.max() <= 1.0
    (wide,) = letterbox_frames(tiny["paths"][:1], imgsz=(32, 64))  # a fixed camera's aspect
    assert wide.shape == (1, 3, 32, 64)
    with pytest.raises(FileNotFoundError, match=r"nope\.jpg"):
        letterbox_frames([tiny["work"] / "nope.jpg"], imgsz=64)


def test_calibration_frames_are_what_the_service_sends(tmp_path):
    """INT8 calibration sees the service's input: the same decoding and the same letterbox."""
    frame = np.asarray(render_frame(seed=4).image)
    path = tmp_path / "frame.jpg"
    Image.fromarray(frame).save(path, quality=90)
    served = model_input([decode_image(path.read_bytes())], (64, 96))
    (from_file,) = letterbox_frames([path], imgsz=(64, 96))
    (from_array,) = letterbox_frames([cv2.imread(str(path))], imgsz=(64, 96))  # BGR, as OpenCV
    np.testing.assert_array_equal(from_file, served)
    np.testing.assert_array_equal(from_array, served)
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"junk\.jpg"):
        letterbox_frames([tmp_path / "junk.jpg"], imgsz=64)


def test_export_keeps_ultralytics_metadata(tiny):
    model = onnx.load(str(tiny["onnx"]))
    meta = {p.key: p.value for p in model.metadata_props}
    assert "names" in meta and "car" in meta["names"] and meta["imgsz"] == "[64, 64]"
    with pytest.raises(FileNotFoundError, match="train a model first"):
        export_onnx(tiny["work"] / "none.pt", imgsz=64, out=tiny["work"] / "x.onnx")


def test_head_nodes_are_the_decoding_of_the_last_module(tiny):
    nodes = head_nodes(tiny["onnx"])
    assert nodes and all(n.startswith("/model.23/") for n in nodes)
    assert not any("/cv2." in n or "/cv3." in n for n in nodes)
    assert any("dfl" in n for n in nodes) and any("Concat" in n for n in nodes)


def test_int8_quantization_is_static_qdq_and_leaves_the_head_in_float(tiny):
    import onnxruntime as ort

    frames = letterbox_frames(tiny["paths"][:8], imgsz=64)
    out = quantize_onnx_int8(tiny["onnx"], frames, out=tiny["work"] / "variants" / "int8.onnx")
    model = onnx.load(str(out))
    types = [n.op_type for n in model.graph.node]
    assert types.count("QuantizeLinear") > 10 and types.count("DequantizeLinear") > 10
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    head = set(head_nodes(tiny["onnx"]))
    decoding = [n for n in model.graph.node if n.name in head and n.op_type in ("Mul", "Sigmoid")]
    assert decoding, "the head's decoding is still in the graph"
    for node in decoding:  # in QDQ format a quantized op reads DequantizeLinear outputs
        assert not dequantized & set(node.input), f"{node.name} was quantized"
    convs = [n for n in model.graph.node if n.op_type == "Conv" and n.name not in head]
    assert all(dequantized & set(n.input) for n in convs), "the convolutions are quantized"
    assert {p.key for p in model.metadata_props} >= {"names", "stride", "imgsz"}
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    reference = ort.InferenceSession(str(tiny["onnx"]), providers=["CPUExecutionProvider"])
    (a,) = session.run(None, {"images": frames[0]})
    (b,) = reference.run(None, {"images": frames[0]})
    assert a.shape == b.shape
    boxes = np.abs(a[0, :4] - b[0, :4])
    assert np.median(boxes) < 2.0, "box coordinates survive quantization (pixels at 64 px)"
    with pytest.raises(ValueError, match="at least one frame"):
        quantize_onnx_int8(tiny["onnx"], [], out=tiny["work"] / "never.onnx")


def test_openvino_fp32_and_int8(tiny):
    import openvino as ov
    import yaml

    frames = letterbox_frames(tiny["paths"][:8], imgsz=64)
    fp32 = export_openvino(tiny["onnx"], out_dir=tiny["work"] / "fp32_openvino_model")
    int8 = export_openvino(
        tiny["onnx"], out_dir=tiny["work"] / "int8_openvino_model", calibration=frames
    )
    meta = yaml.safe_load((fp32.parent / "metadata.yaml").read_text())
    assert meta["names"][0] == "car" and meta["imgsz"] == [64, 64]
    ops = {op.get_type_name() for op in ov.Core().read_model(str(int8)).get_ops()}
    assert "FakeQuantize" in ops
    plain = {op.get_type_name() for op in ov.Core().read_model(str(fp32)).get_ops()}
    assert "FakeQuantize" not in plain


def test_throughput_mode_keeps_several_requests_in_flight_and_batches(tiny):
    from tcv_helpers.deploy.throughput import measure_throughput

    frames = letterbox_frames(tiny["paths"][:3], imgsz=64)
    folder = export_openvino(tiny["onnx"], out_dir=tiny["work"] / "thr_openvino_model").parent
    # The course's exports are static (batch 1): YOLO11's attention block cannot be reshaped.
    with pytest.warns(UserWarning, match="cannot take a batch of 4"):
        rows = measure_throughput(folder, frames, batches=(1, 4), seconds=0.3, threads=2)
    assert [r.batch for r in rows] == [1]
    for row in rows:
        assert row.input == "64x64" and row.requests >= 1 and row.streams >= 1
        assert row.images_per_second > 0 and row.request_ms > 0 and row.seconds >= 0.3
        assert row.model == "thr" and row.to_dict()["batch"] == row.batch
    with pytest.raises(ValueError, match="at least one frame"):
        measure_throughput(folder, [])
    with pytest.raises(ValueError, match="at least 1"):
        measure_throughput(folder, frames, batches=(0,))
    with pytest.raises(FileNotFoundError, match="not an OpenVINO"):
        measure_throughput(tiny["onnx"], frames)


def test_pruning_zeroes_weights_and_still_loads(tiny):
    from ultralytics import YOLO

    none = prune_weights(tiny["weights"], amount=0.0, out=tiny["work"] / "p0.pt")
    half = prune_weights(tiny["weights"], amount=0.5, out=tiny["work"] / "p50.pt")
    assert none.sparsity < 0.05 and half.sparsity >= 0.5
    assert half.compressed_mb < none.compressed_mb, "zeros compress"
    assert YOLO(str(half.weights)).predict(tiny["paths"][0], imgsz=64, verbose=False)
    with pytest.raises(ValueError, match=r"amount must be in \[0, 1\)"):
        prune_weights(tiny["weights"], amount=1.0, out=tiny["work"] / "never.pt")


def test_benchmark_measures_every_variant_and_names_the_fastest(tiny):
    out = tiny["work"] / "bench"
    result = benchmark(
        tiny["weights"], tiny["data"].data_yaml, out_dir=out, imgsz=64, repeats=3,
        calibration=8, accuracy=False, throughput_batches=(1,),
    )  # fmt: skip
    assert [r.variant for r in result.rows] == list(VARIANTS)
    assert [row["model"] for row in result.throughput] == ["openvino-fp32", "openvino-int8"]
    assert all(row["images_per_second"] > 0 for row in result.throughput)
    assert result.rows[0].speedup == 1.0
    for row in result.rows:
        assert row.throughput > 0 and row.p95_ms >= row.p50_ms > 0 and row.size_mb > 0
        assert math.isnan(row.map50)
    assert result.fastest.variant != "pytorch-fp32"
    saved = json.loads((out / BENCHMARK_FILE).read_text())
    assert saved["fastest"]["variant"] == result.fastest.variant
    assert saved["throughput"] == result.throughput
    assert fastest_variant(out / BENCHMARK_FILE) == saved["fastest"]
    assert fastest_variant(out / "missing.json") is None
    assert list(result.table().index) == list(VARIANTS)
    assert isinstance(result.plot(), Figure)
    with pytest.raises(ValueError, match="Unknown variants"):
        benchmark(tiny["weights"], tiny["data"].data_yaml, out_dir=out, variants=["tflite"])


def test_variants_built_only_to_be_timed_calibrate_on_fewer_frames(tiny, monkeypatch):
    """Speed at 640, accuracy at the training size: the timing build's INT8 scales change no
    number the benchmark reports, so it calibrates on a few frames; the scored build on all."""
    from tcv_helpers.deploy import optimize

    real, seen = optimize.build_variants, {}

    def recording(weights, *, imgsz, calibration_images, **kwargs):
        seen[imgsz] = len(calibration_images)
        timed_only[imgsz] = kwargs.get("timing_only", False)
        return real(weights, imgsz=imgsz, calibration_images=calibration_images, **kwargs)

    timed_only = {}

    monkeypatch.setattr(optimize, "build_variants", recording)
    monkeypatch.setattr(optimize, "TIMING_CALIBRATION_FRAMES", 3)
    variants = ("pytorch-fp32", "onnxruntime-fp32")
    common = {"variants": variants, "repeats": 1, "calibration": 8, "eval_imgsz": 32}
    result = benchmark(
        tiny["weights"], tiny["data"].data_yaml, out_dir=tiny["work"] / "two", imgsz=64, **common
    )
    assert seen == {64: 3, 32: 8}
    assert timed_only == {64: True, 32: False}, "only the timed build skips bias correction"
    assert all(not math.isnan(row.map50) for row in result.rows)
    seen.clear()  # one size for both: the one build is scored, so it gets every frame
    benchmark(
        tiny["weights"], tiny["data"].data_yaml, out_dir=tiny["work"] / "one", imgsz=32, **common
    )
    assert seen == {32: 8} and timed_only == {64: True, 32: False}


def test_timing_builds_skip_bias_correction(monkeypatch, tmp_path):
    from tcv_helpers.deploy import optimize

    calls = []
    monkeypatch.setattr(optimize, "export_onnx", lambda weights, *, imgsz, out, trusted: out)
    monkeypatch.setattr(optimize, "letterbox_frames", lambda images, *, imgsz: ["frame"])
    monkeypatch.setattr(
        optimize, "export_openvino", lambda fp32, **kw: calls.append(kw) or Path(kw["out_dir"])
    )
    for timing_only in (True, False):
        optimize.build_variants(
            "best.pt", imgsz=64, calibration_images=["a.jpg"], out_dir=tmp_path,
            variants=("openvino-fp32", "openvino-int8"), timing_only=timing_only,
        )  # fmt: skip
    int8 = [call for call in calls if call.get("calibration")]
    assert [call["bias_correction"] for call in int8] == [False, True]


def test_search_runs_trials_and_reports_the_best(tiny):
    result = tune(
        tiny["data"].data_yaml, profile=TINY, out_dir=tiny["work"] / "tune", n_trials=2,
        epochs=1, space={"lr0": ("float", 1e-3, 1e-2, True)}, sampler="random",
    )  # fmt: skip
    table = result.table()
    assert len(table) == 2 and set(table["state"]) <= {"complete", "pruned"}
    assert "lr0" in result.best_params and 1e-3 <= result.best_params["lr0"] <= 1e-2
    assert isinstance(result.plot(), Figure)
    with pytest.raises(ValueError, match="Unknown sampler"):
        tune(tiny["data"].data_yaml, profile=TINY, out_dir=tiny["work"], sampler="annealing")


def test_three_search_methods_run_on_the_same_budget_side_by_side(tiny, tmp_path):
    from tcv_helpers.deploy.search import METHODS, compare_searches

    with pytest.raises(ValueError, match="distinct names"):
        compare_searches(tiny["data"].data_yaml, profile=TINY, out_dir=tmp_path, methods=("sa",))
    space = {"lr0": ("float", 1e-3, 1e-2, True)}
    result = compare_searches(
        tiny["data"].data_yaml, profile=TINY, out_dir=tmp_path / "search", n_trials=2, epochs=1,
        space=space, seed=0,
    )  # fmt: skip
    assert list(result.results) == list(METHODS)
    assert [len(r.study.trials) for r in result.results.values()] == [2, 2, 2], "same budget"
    grid_lr = {t.params["lr0"] for t in result.results["grid"].study.trials}
    assert grid_lr <= {1e-3, 5.5e-3, 1e-2}, "the grid tries the ends and the middle of a range"
    random, tpe = result.results["random"].study.trials, result.results["tpe"].study.trials
    # TPE starts with a third of the budget (at least one trial) at random, from the same seed
    # as random search: that trial is random's first, replayed rather than trained again.
    assert tpe[0].params == random[0].params and tpe[0].user_attrs == {"replayed": True}
    assert (
        tpe[0].value == random[0].value
        and tpe[0].intermediate_values == random[0].intermediate_values
    )
    assert not (tmp_path / "search" / "tpe" / "trial-0").exists(), "not trained twice"
    assert (
        not tpe[1].user_attrs.get("replayed") and (tmp_path / "search" / "tpe" / "trial-1").is_dir()
    )
    assert all((tmp_path / "search" / m / "trial-0").is_dir() for m in ("grid", "random"))
    table = result.table()
    assert list(table.index) == ["grid", "random", "Bayesian (TPE)"]
    assert list(table["replayed"]) == [0, 0, 1]
    assert list(result.results["tpe"].table()["replayed"]) == [True, False]
    assert (table["trials"] == 2).all() and (table["complete"] + table["pruned"] == 2).all()
    curves = result.best_so_far()
    assert curves.shape == (2, 3)
    for name in curves:  # best so far never goes down
        values = curves[name].dropna().tolist()
        assert values == sorted(values)
    scores = {m: r.best_value for m, r in result.results.items()}
    assert scores[result.best_method] == max(v for v in scores.values() if not math.isnan(v))
    assert result.best is result.results[result.best_method]
    assert set(result.metrics()) <= {f"search_best_map50_{m}" for m in METHODS}
    figure = result.plot()
    assert isinstance(figure, Figure) and len(figure.axes) == 1
    assert len(figure.axes[0].get_lines()) == 3, "one line per method, in one plot"


def test_search_can_start_every_trial_from_trained_weights(tiny, tmp_path):
    weights = Path(tiny["weights"])
    result = tune(
        tiny["data"].data_yaml, profile=TINY, out_dir=tmp_path / "search", n_trials=1, epochs=1,
        space={"lr0": ("float", 1e-3, 1e-2, True)}, sampler="random", model=weights,
        trusted_dirs=(weights.parent,),
    )  # fmt: skip
    assert len(result.table()) == 1
    args = yaml.safe_load((tmp_path / "search" / "trial-0" / "args.yaml").read_text())
    assert Path(args["model"]).resolve() == weights.resolve(), "the trial fine-tuned the weights"
    stranger = tmp_path / "downloaded" / "best.pt"  # not the trained bytes: never vouched for
    stranger.parent.mkdir()
    stranger.write_bytes(weights.read_bytes() + b"\0")
    with pytest.raises(UntrustedWeights):
        tune(
            tiny["data"].data_yaml, profile=TINY, out_dir=tmp_path / "search2", n_trials=1,
            epochs=1, model=stranger, trusted_dirs=(weights.parent,),
        )  # fmt: skip
