"""Throughput of the deployable variants against PyTorch FP32 eager, in one run on this machine.

Targets (issue: optimization and deployment), at 640 px on 2 CPU cores, same model: ONNX Runtime
INT8 >= 3.5x PyTorch FP32 eager, ONNX Runtime FP32 >= 1.8x, the fastest variant >= 5x, and every
variant's mAP50 within 1.0 point of PyTorch FP32 on the same evaluation images (at the size the
model was trained at). Prints the table, one line per target, and last the fastest variant's
speed-up (>= 5 meets it).

Throughput mode (issue: faster), beside the one-frame-at-a-time latency: the OpenVINO variants
with the THROUGHPUT hint and several asynchronous infer requests (batch 1, 2, 4 where the model
can be reshaped), at 640 x 640 and at the 16:9 camera input 640 x 384; targets for INT8 on
2 cores: >= 75 images/s at 640 x 640 and >= 110 at 640 x 384 (set on CPUs with VNNI INT8
instructions; the script prints which INT8 instructions this CPU has). YOLO26n (Ultralytics'
current, NMS-free family; untrained, from its YAML: speed only) is measured beside the course's
YOLO11n in both modes.

    python benchmarks/bench_variants.py [--weights best.pt --data data.yaml] [--repeats 60]
        [--no-yolo26]

Without --weights it trains the smoke profile's model on the embedded synthetic set first
(about a minute), exactly as notebook 05 does.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from tcv_helpers.config import PROFILES
from tcv_helpers.deploy.optimize import benchmark
from tcv_helpers.deploy.throughput import ThroughputResult

TARGETS = {"onnxruntime-int8": 3.5, "onnxruntime-fp32": 1.8}
FASTEST_TARGET = 5.0
MAX_MAP50_DROP = 0.01
#: Throughput-mode targets of OpenVINO INT8 on 2 cores, images/s, by input (width x height).
THROUGHPUT_TARGETS = {"640x640": 75.0, "640x384": 110.0}
BATCHES = (1, 2, 4)
CAMERA_SHAPE = (384, 640)  # (height, width): a 1280 x 720 frame letterboxed to 640 wide


def int8_instructions() -> str:
    """The CPU's INT8 dot-product instructions (what INT8 inference speed rests on)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "unknown (no /proc/cpuinfo)"
    found = sorted(flags & {"avx512_vnni", "avx_vnni", "amx_int8", "avx512_bf16", "avx2"})
    vnni = "VNNI" if {"avx512_vnni", "avx_vnni", "amx_int8"} & flags else "no VNNI"
    return f"{', '.join(found) or 'none of avx2/vnni/amx'} ({vnni})"


def yolo26_weights(folder: Path) -> Path:
    """An untrained YOLO26n with the course's six classes, saved as a .pt (speed only)."""
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    from tcv_helpers.project import PROJECT_CLASSES

    yolo = YOLO("yolo26n.yaml")
    yolo.model = DetectionModel("yolo26n.yaml", nc=len(PROJECT_CLASSES), verbose=False)
    yolo.model.names = dict(enumerate(PROJECT_CLASSES))
    out = folder / "yolo26n-untrained.pt"
    yolo.save(str(out))
    return out


def speed_rows(
    family: str, weights: Path, shape: tuple[int, int], calibration: list, frames: list,
    folder: Path, *, trusted: bool, repeats: int,
) -> tuple[list[dict], list]:  # fmt: skip
    """Latency (one at a time) and throughput mode of OpenVINO FP32 and INT8 at ``shape``."""
    from tcv_helpers.deploy.optimize import (
        export_onnx,
        export_openvino,
        time_variant,
        variant_runner,
    )
    from tcv_helpers.deploy.throughput import measure_throughput
    from tcv_helpers.env import usable_cores

    tag = f"{family}-{shape[1]}x{shape[0]}"
    onnx = export_onnx(weights, imgsz=shape, out=folder / f"{tag}.onnx", trusted=trusted)
    latency, throughput = [], []
    for kind, cal in (("fp32", None), ("int8", calibration)):
        xml = export_openvino(
            onnx, out_dir=folder / f"{tag}-{kind}_openvino_model", calibration=cal
        )
        times = time_variant(
            variant_runner("openvino-" + kind, xml, usable_cores()), frames, repeats=repeats
        )
        latency.append({
            "model": f"{family} openvino-{kind}", "input": f"{shape[1]}x{shape[0]}",
            "latency_ms": sum(times) / len(times), "images_per_second": 1000 * len(times) / sum(times),
        })  # fmt: skip
        throughput += measure_throughput(
            xml, frames, batches=BATCHES, label=f"{family} openvino-{kind}"
        )
    return latency, throughput


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--no-yolo26", action="store_true", help="Leave out the YOLO26n rows.")
    parser.add_argument(
        "--trust",
        action="store_true",
        help="Load --weights although the course did not write it (a .pt is a pickle).",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        weights, data = args.weights, args.data
        if weights is None or data is None:
            from tcv_helpers.data.registry import load_dataset
            from tcv_helpers.model.train import train

            smoke = PROFILES["smoke"]
            root = load_dataset("synthetic", data_dir=Path(tmp) / "data", profile=smoke).path
            data = root / "data.yaml"
            weights = train(data, profile=smoke, out_dir=Path(tmp) / "models").best
        result = benchmark(
            weights, data, out_dir=Path(tmp) / "variants", imgsz=args.imgsz,
            repeats=args.repeats, trusted=args.trust, throughput_batches=BATCHES,
        )  # fmt: skip
        from tcv_helpers.deploy.optimize import letterbox_frames
        from tcv_helpers.model.evaluate import load_ground_truth

        train_images = load_ground_truth(data, "train")[0][:64]
        eval_images = load_ground_truth(data, "val")[0][:16]
        latency, throughput = [], [ThroughputResult(**row) for row in result.throughput]
        families = [("yolo11n (course model)", Path(weights), [CAMERA_SHAPE])]
        if not args.no_yolo26:
            square = (args.imgsz, args.imgsz)
            families.append(("yolo26n", yolo26_weights(Path(tmp)), [square, CAMERA_SHAPE]))
        for family, pt, shapes in families:
            for shape in shapes:
                lat, thr = speed_rows(
                    family.split()[0], pt, shape, letterbox_frames(train_images, imgsz=shape),
                    letterbox_frames(eval_images, imgsz=shape), Path(tmp),
                    trusted=args.trust or family == "yolo26n", repeats=args.repeats,
                )  # fmt: skip
                latency += lat
                throughput += thr
    print(f"cpu: {result.machine}, {result.cores} cores, INT8 instructions: {int8_instructions()}")
    print(result.table().round(3).to_string())
    rows = {r.variant: r for r in result.rows}
    reference = rows["pytorch-fp32"].map50
    for name, target in TARGETS.items():
        ok = rows[name].speedup >= target
        print(f"{name}: {rows[name].speedup:.2f}x (target {target}x) {'ok' if ok else 'MISSED'}")
    for name, row in rows.items():
        drop = reference - row.map50
        print(
            f"{name}: mAP50 {row.map50:.4f} ({-drop:+.4f}) {'ok' if abs(drop) <= MAX_MAP50_DROP else 'MISSED'}"
        )
    for note in result.notes:
        print(note)
    import pandas as pd

    print("\nLatency mode, OpenVINO (one frame at a time):")
    print(pd.DataFrame(latency).round(1).to_string(index=False))
    print("\nThroughput mode, OpenVINO (THROUGHPUT hint, asynchronous requests):")
    table = pd.DataFrame([row.to_dict() for row in throughput])
    table["model"] = table["model"].str.replace("^openvino", "yolo11n openvino", regex=True)
    print(table.drop(columns=["path", "seconds"]).round(1).to_string(index=False))
    for size, target in THROUGHPUT_TARGETS.items():
        rows = table[(table["model"] == "yolo11n openvino-int8") & (table["input"] == size)]
        best = float(rows["images_per_second"].max()) if len(rows) else float("nan")
        verdict = "ok" if best >= target else "MISSED"
        print(
            f"throughput yolo11n openvino-int8 {size}: {best:.1f} images/s (target {target:g}) {verdict}"
        )
    fastest = result.fastest
    print(f"fastest={fastest.variant} target={FASTEST_TARGET}x")
    print(f"fastest_speedup={fastest.speedup:.2f}")


if __name__ == "__main__":
    main()
