"""How much the service (`tcv serve`: its default, fastest variant) gains over the naive way.

The naive way is what a first deployment often looks like: a FastAPI endpoint that calls
Ultralytics' `model.predict` on the PyTorch `.pt` per request (one call at a time: the model
object is not thread-safe). The service runs what `tcv serve` runs by default: the variant the
benchmark of notebook 07 found fastest on this machine (`reports/benchmark.json`; OpenVINO INT8 on
these CPUs), built here from the same `.pt` at the input Ultralytics' predictor gives the `.pt`
for this camera's frames (1280 x 720 -> 640 x 384) and calibrated on frames of the same cameras.
Both servers get the same camera frame from `--concurrency` clients for `--seconds` each, one
after the other, each server in its own process. Targets (issue: deployment): service requests/s
>= 3x the naive endpoint's, and the service's p99 <= 3x its p50.

Dynamic batching (issue: faster) is measured beside it: the same variant exported with a dynamic
batch, served with `--batch-size` images per inference call at most and `--batch-wait-ms`, against
the one-image export (today's service), at `--concurrency` and at concurrency 1 (no loss there:
p50 within 10%). Target at concurrency 32: at least 90 requests/s with p99 <= 3x p50. Prints a
table, then the ratios and whether each target is met.

    python benchmarks/bench_service.py [--model-pt M.pt] [--variant openvino-int8] [--imgsz 640]
        [--seconds 20] [--concurrency 8] [--batch-size 8] [--batch-wait-ms 2] [--square] [--all]

Without `--model-pt` it uses workspace/models/best.pt (or notebooks/workspace/...) when there is
one, else an untrained
YOLO11n with the course's six classes (fine for throughput; it says so).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fastapi import FastAPI, File, UploadFile  # module level: FastAPI resolves the annotations

TARGET_RATIO = 3.0
VARIANTS = ("onnxruntime-fp32", "onnxruntime-int8", "openvino-fp32", "openvino-int8")
TARGET_TAIL = 3.0
TARGET_BATCHED_RPS = 90.0  # at concurrency 32, 1280 x 720 JPEGs
TARGET_LONE_LOSS = 0.10  # batching may cost a lone request at most 10% of its p50
BATCHED = "service (dynamic batching)"
BATCHED_LONE = "  the same, one client"
SINGLE_LONE = "  one image per call, one client"
CLASSES = ("car", "truck", "bus", "motorcycle", "bicycle", "person")
DEFAULT_WEIGHTS = (Path("workspace/models/best.pt"), Path("notebooks/workspace/models/best.pt"))


def naive_server(weights: str, port: int, imgsz: int) -> None:
    """The naive endpoint: Ultralytics' predict on the .pt, per request (run in a child)."""
    import threading

    import cv2
    import numpy as np
    import uvicorn
    from ultralytics import YOLO

    model = YOLO(weights)
    lock = threading.Lock()
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/detect")
    def detect(image: UploadFile = File(...)) -> dict:  # noqa: B008 (FastAPI's idiom)
        frame = cv2.imdecode(np.frombuffer(image.file.read(), np.uint8), cv2.IMREAD_COLOR)
        with lock:
            result = model.predict(frame, imgsz=imgsz, conf=0.25, verbose=False)[0]
        boxes = result.boxes
        return {
            "detections": [
                {"xyxy": b, "confidence": c, "class_id": int(k)}
                for b, c, k in zip(
                    boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist(), strict=True
                )
            ]
        }

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def _stride_up(size: float, stride: int = 32) -> int:
    return int(-(-size // stride) * stride)


def untrained_weights(out: Path) -> Path:
    """An untrained YOLO11n for the course's classes, saved as a .pt."""
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    yolo = YOLO("yolo11n.yaml")
    yolo.model = DetectionModel("yolo11n.yaml", nc=len(CLASSES), verbose=False)
    yolo.model.names = dict(enumerate(CLASSES))
    yolo.save(str(out))
    return out


def camera_frames(folder: Path, count: int = 16) -> list[Path]:
    """Synthetic 1280 x 720 traffic-camera frames (the first is the load test's frame)."""
    from tcv_helpers.data.synth import generate_dataset

    data = generate_dataset(
        folder, images=count, cameras=3, sequences=0, width=1280, height=720, workers=1
    )
    return sorted((data.root / "images").glob("*/*.jpg"))


def fastest_kind() -> str:
    """The variant notebook 07's benchmark found fastest here, else the usual winner on a CPU."""
    from tcv_helpers.deploy.optimize import fastest_variant

    for weights in DEFAULT_WEIGHTS:  # the workspaces' reports/benchmark.json (notebook 07)
        found = fastest_variant(weights.parent.parent / "reports" / "benchmark.json")
        if found and found.get("variant") in VARIANTS:
            return found["variant"]
    try:
        import openvino  # noqa: F401
    except ImportError:
        return "onnxruntime-int8"
    return "openvino-int8"


def build_variant(
    kind: str,
    weights: Path,
    shape: tuple[int, int],
    frames: list[Path],
    out: Path,
    *,
    dynamic: bool = False,
) -> Path:
    """Exports ``weights`` at ``shape`` (height, width) as ``kind``, calibrated on ``frames``;
    ``dynamic``: with a dynamic batch (and size), so that the service can batch."""
    from ultralytics import YOLO

    from tcv_helpers.deploy.optimize import export_openvino, letterbox_frames, quantize_onnx_int8
    from tcv_helpers.model.predict import quiet_ultralytics

    with quiet_ultralytics():
        onnx = Path(YOLO(str(weights)).export(format="onnx", imgsz=shape, dynamic=dynamic))
    tag = f"{shape[0]}x{shape[1]}{'-dynamic' if dynamic else ''}"
    fp32 = onnx.replace(out / f"onnxruntime-fp32-{tag}.onnx")
    calibration = letterbox_frames(frames, imgsz=shape) if kind.endswith("int8") else None
    if kind == "onnxruntime-fp32":
        return fp32
    if kind == "onnxruntime-int8":
        return quantize_onnx_int8(fp32, calibration, out=out / f"{kind}-{tag}.onnx")
    return export_openvino(
        fp32, out_dir=out / f"{kind}-{tag}_openvino_model", calibration=calibration
    )


def start_naive(weights: Path, imgsz: int) -> tuple[subprocess.Popen, str]:
    """Starts :func:`naive_server` in a child process; returns it and its URL once it answers."""
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    child = subprocess.Popen(
        [sys.executable, __file__, "--naive-server", "--model-pt", str(weights),
         "--port", str(port), "--imgsz", str(imgsz)],
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while child.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return child, url
        except httpx.HTTPError:
            time.sleep(0.2)
    child.kill()
    raise SystemExit("the naive server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-pt", type=Path, default=None)
    parser.add_argument(
        "--variant",
        choices=VARIANTS,
        default=None,
        help="What the service runs (default: the fastest kind in a reports/benchmark.json here, "
        "else openvino-int8 where OpenVINO installs).",
    )
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=8,
        help="Most images per inference call of the batching service (1: skip that part).",
    )
    parser.add_argument("--batch-wait-ms", type=float, default=2.0)
    parser.add_argument(
        "--square",
        action="store_true",
        help="Export the ONNX model at imgsz x imgsz (default: the frame's 16:9 letterbox, "
        "the input Ultralytics' predictor gives the .pt).",
    )
    parser.add_argument(
        "--all", action="store_true", help="Also measure the service on every other variant."
    )
    parser.add_argument(
        "--trust",
        action="store_true",
        help="Load --model-pt although the course did not write it (a .pt is a pickle).",
    )
    parser.add_argument("--naive-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive_server:
        naive_server(str(args.model_pt), args.port, args.imgsz)
        return

    from tcv_helpers.deploy.loadtest import load_test
    from tcv_helpers.deploy.server import serve_in_background
    from tcv_helpers.model.predict import quiet_ultralytics

    # Ultralytics letterboxes a 1280 x 720 frame for the .pt to 640 x 384 (the smallest multiple
    # of the stride); a fixed-size export for a fixed camera takes exactly that input.
    shape = (
        (args.imgsz, args.imgsz) if args.square else (_stride_up(args.imgsz * 9 / 16), args.imgsz)
    )
    default = args.variant or fastest_kind()
    kinds = [default] + ([k for k in VARIANTS if k != default] if args.all else [])
    with tempfile.TemporaryDirectory(prefix="tcv-bench-") as tmp:
        work = Path(tmp)
        weights, note = args.model_pt, ""
        if weights is None:
            weights = next((p for p in DEFAULT_WEIGHTS if p.is_file()), None)
        if weights is None:
            with quiet_ultralytics():
                weights = untrained_weights(work / "yolo11n-untrained.pt")
            note = " (untrained YOLO11n: throughput only)"
        from tcv_helpers.trust import UntrustedWeights, check_weights

        try:  # every later load of the .pt (the exports, the naive server) is of this file
            check_weights(weights, trusted=args.trust or bool(note))
        except UntrustedWeights as exc:
            raise SystemExit(f"bench_service.py: {exc}") from None
        frames = camera_frames(work / "frames")
        image = frames[0].read_bytes()
        models = {kind: build_variant(kind, weights, shape, frames, work) for kind in kinds}
        batched = None
        if args.batch_size > 1:
            batched = build_variant(default, weights, shape, frames, work, dynamic=True)
        cores = len(os.sched_getaffinity(0))
        print(
            f"model={weights}{note} service={default} input={shape[1]}x{shape[0]} cores={cores} "
            f"concurrency={args.concurrency} seconds={args.seconds:g} frame=1280x720"
        )
        rows = {}
        naive, naive_url = start_naive(weights, args.imgsz)
        try:
            load_test(naive_url, image, concurrency=2, requests=4)  # warm up
            rows["naive (.pt, predict per request)"] = load_test(
                naive_url, image, concurrency=args.concurrency, seconds=args.seconds
            )
        finally:
            naive.terminate()
            naive.wait(timeout=30)
        for kind, model in models.items():
            with serve_in_background(model, mode="process", api_key="") as server:
                load_test(server.url, image, concurrency=2, requests=4)
                label = f"service ({kind}{', default' if kind == default else ''})"
                rows[label] = load_test(
                    server.url, image, concurrency=args.concurrency, seconds=args.seconds
                )
                if batched is not None and kind == default:
                    rows[SINGLE_LONE] = load_test(
                        server.url, image, concurrency=1, seconds=args.seconds / 2
                    )
        if batched is not None:
            options = {"batch_size": args.batch_size, "batch_wait_ms": args.batch_wait_ms}
            with serve_in_background(batched, mode="process", api_key="", **options) as server:
                load_test(server.url, image, concurrency=2, requests=4)
                rows[BATCHED] = load_test(
                    server.url, image, concurrency=args.concurrency, seconds=args.seconds
                )
                rows[BATCHED_LONE] = load_test(
                    server.url, image, concurrency=1, seconds=args.seconds / 2
                )
    if batched is not None:
        print(
            f"batching: a {default} export with a dynamic batch, --batch-size {args.batch_size} "
            f"--batch-wait-ms {args.batch_wait_ms:g}"
        )
    print(f"{'server':40} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}  statuses")
    for name, row in rows.items():
        print(
            f"{name:40} {row['ok_per_s']:8.1f} {row['p50_ms']:8.1f} {row['p99_ms']:8.1f}  "
            f"{row['status_counts']} {row['errors'] or ''}"
        )
    naive_row = rows["naive (.pt, predict per request)"]
    service_row = rows[f"service ({default}, default)"]
    ratio = service_row["ok_per_s"] / max(naive_row["ok_per_s"], 1e-9)
    tail = service_row["p99_ms"] / service_row["p50_ms"]
    print(
        f"ratio_service_to_naive={ratio:.2f} target={TARGET_RATIO:g} "
        f"({'met' if ratio >= TARGET_RATIO else 'NOT met'}); service_p99_over_p50={tail:.2f} "
        f"({'met' if tail <= TARGET_TAIL else 'NOT met'}: <= {TARGET_TAIL:g})"
    )
    if batched is not None:
        report_batching(rows, service_row, rows[SINGLE_LONE], args.concurrency)


def report_batching(rows: dict, single: dict, single_lone: dict, concurrency: int) -> None:
    """The batching service against the one-image service: gain, tail, and a lone client's loss."""
    batched, lone = rows[BATCHED], rows[BATCHED_LONE]
    gain = batched["ok_per_s"] / max(single["ok_per_s"], 1e-9)
    tail = batched["p99_ms"] / max(batched["p50_ms"], 1e-9)
    loss = lone["p50_ms"] / max(single_lone["p50_ms"], 1e-9) - 1
    target = (
        f"target >= {TARGET_BATCHED_RPS:g} at concurrency 32: "
        f"{'met' if batched['ok_per_s'] >= TARGET_BATCHED_RPS else 'NOT met'}"
        if concurrency == 32
        else "the target is at --concurrency 32"
    )
    print(
        f"batching_gain={gain:.2f} (requests/s {batched['ok_per_s']:.1f} against "
        f"{single['ok_per_s']:.1f}; {target}); batched_p99_over_p50={tail:.2f} "
        f"({'met' if tail <= TARGET_TAIL else 'NOT met'}: <= {TARGET_TAIL:g}); "
        f"one_client_p50_change={loss:+.1%} "
        f"({'met' if loss <= TARGET_LONE_LOSS else 'NOT met'}: <= +{TARGET_LONE_LOSS:.0%})"
    )


if __name__ == "__main__":
    main()
