"""Throughput of the deployable variants against PyTorch FP32 eager, in one run on this machine.

Targets (issue: optimization and deployment), at 640 px on 2 CPU cores, same model: ONNX Runtime
INT8 >= 3.5x PyTorch FP32 eager, ONNX Runtime FP32 >= 1.8x, the fastest variant >= 5x, and every
variant's mAP50 within 1.0 point of PyTorch FP32 on the same evaluation images (at the size the
model was trained at). Prints the table, one line per target, and last the fastest variant's
speed-up (>= 5 meets it).

    python benchmarks/bench_variants.py [--weights best.pt --data data.yaml] [--repeats 60]

Without --weights it trains the smoke profile's model on the embedded synthetic set first
(about a minute), exactly as notebook 05 does.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from tcv_helpers.config import PROFILES
from tcv_helpers.deploy.optimize import benchmark

TARGETS = {"onnxruntime-int8": 3.5, "onnxruntime-fp32": 1.8}
FASTEST_TARGET = 5.0
MAX_MAP50_DROP = 0.01


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=60)
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
            weights, data, out_dir=Path(tmp) / "variants", imgsz=args.imgsz, repeats=args.repeats
        )
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
    fastest = result.fastest
    print(f"fastest={fastest.variant} target={FASTEST_TARGET}x")
    print(f"fastest_speedup={fastest.speedup:.2f}")


if __name__ == "__main__":
    main()
