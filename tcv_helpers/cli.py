"""The ``tcv`` command: a thin Typer layer over the same functions the notebooks call."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from tcv_helpers import doctor as doctor_mod
from tcv_helpers import runner

app = typer.Typer(
    help="traffic-cams-cv: run the course's notebooks, check your set-up.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
notebooks_app = typer.Typer(help="Check course notebooks against the rules (for contributors).")
app.add_typer(notebooks_app, name="notebooks")
data_app = typer.Typer(help="Make, collect, check and convert datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"tcv: {message}", err=True)
    raise typer.Exit(code)


@app.command()
def doctor(
    workdir: Annotated[Path, typer.Option(help="Workspace the course will write to.")] = Path(
        "workspace"
    ),
    profile: Annotated[
        str, typer.Option(help="Profile to check for (smoke, workshop, full, auto).")
    ] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
) -> None:
    """Where the course runs, GPU/CUDA, versions, disk and memory, with fixes for what is wrong."""
    try:
        checks = doctor_mod.run_checks(workdir, profile)
    except ValueError as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(doctor_mod.checks_as_records(checks), indent=2))
    else:
        typer.echo(doctor_mod.format_checks(checks))
    if any(c.status == doctor_mod.FAIL for c in checks):
        raise typer.Exit(1)


@app.command()
def run(
    profile: Annotated[
        str | None, typer.Option(help="smoke, workshop, full or auto (default: auto).")
    ] = None,
    only: Annotated[str | None, typer.Option(help="Notebooks to run, e.g. 02,05-06.")] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("-p", "--param", help="KEY=VALUE passed to the notebooks that declare KEY."),
    ] = None,
    params: Annotated[
        Path | None, typer.Option(help="A parameter file (a run's params.yaml) to reproduce.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for runs/<run-id>/.")] = Path("runs"),
    resume: Annotated[
        Path | None, typer.Option(help="Continue a run folder: skip the notebooks that succeeded.")
    ] = None,
    notebooks: Annotated[
        Path | None, typer.Option(help="Notebook folder (default: ./notebooks or the course's).")
    ] = None,
    cell_timeout: Annotated[
        int | None, typer.Option(help="Seconds one cell may run before the run fails.")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Execute the notebooks in order with papermill into runs/<run-id>/."""
    if resume and (profile or only or param or params):
        _fail("--resume reuses the run's own profile and parameters; give no other options.")
    try:
        settings = runner.load_params_file(params) if params else {}
        parameters = dict(settings.get("parameters") or {})
        for item in param or []:
            key, value = runner.parse_parameter(item)
            parameters[key] = value
        folder = notebooks or (Path("notebooks") if resume else runner.default_notebooks_dir())
        result = runner.run_notebooks(
            folder,
            out=out,
            profile=profile or settings.get("profile") or "auto",
            only=only or settings.get("only"),
            parameters=parameters,
            resume=resume,
            progress=progress and sys.stderr.isatty(),
            cell_timeout=cell_timeout,
            on_event=lambda line: typer.echo(line, err=True),
        )
    except (runner.RunError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(runner.main_message(result))
    if not result.ok:
        raise typer.Exit(1)


@notebooks_app.command("check")
def notebooks_check(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Notebooks (default: notebooks/*.ipynb).")
    ] = None,
) -> None:
    """Check notebooks against the course rules; exit 1 naming each problem."""
    from tcv_helpers import nbcheck

    files = paths or sorted(runner.default_notebooks_dir().glob("*.ipynb"))
    bad = 0
    for file in files:
        problems = nbcheck.check_notebook(file)
        for problem in problems:
            typer.echo(f"{file}: {problem}")
        bad += bool(problems)
    typer.echo(f"{len(files) - bad} of {len(files)} notebooks follow the rules.")
    if bad:
        raise typer.Exit(1)


@notebooks_app.command("sync")
def notebooks_sync(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Notebooks (default: notebooks/*.ipynb).")
    ] = None,
) -> None:
    """Rewrite Colab badges and set-up cells from pyproject.toml's repository URL and version."""
    from tcv_helpers import nbcheck

    files = paths or sorted(runner.default_notebooks_dir().glob("*.ipynb"))
    for file in files:
        if nbcheck.sync_notebook(file):
            typer.echo(f"updated {file}")


@data_app.command("synth")
def data_synth(
    out: Annotated[Path, typer.Option(help="Dataset folder to write.")],
    images: Annotated[int, typer.Option(help="Labelled frames.")] = 240,
    cameras: Annotated[int, typer.Option(help="Distinct cameras (split whole: at least 3).")] = 6,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same files.")] = 0,
    sequences: Annotated[
        int, typer.Option(help="Frame sequences with track ids (for counting).")
    ] = 2,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """The embedded synthetic traffic-camera dataset: YOLO layout, data.yaml, COCO json, manifest.csv."""
    from tcv_helpers.synth import generate_dataset

    try:
        result = generate_dataset(
            out, images=images, cameras=cameras, seed=seed, sequences=sequences,
            progress=progress and sys.stderr.isatty(),
        )  # fmt: skip
    except ValueError as exc:
        _fail(str(exc))
    splits = ", ".join(f"{k} {v}" for k, v in sorted(result.images.items()))
    boxes = ", ".join(f"{k} {v}" for k, v in sorted(result.boxes.items()))
    typer.echo(f"Wrote {sum(result.images.values())} frames ({splits}) to {result.root}")
    typer.echo(
        f"Boxes: {boxes}; sequences: {len(result.sequences)}; Ultralytics: {result.data_yaml}"
    )


@data_app.command("roboflow")
def data_roboflow(
    source: Annotated[str, typer.Argument(help="WORKSPACE/PROJECT/VERSION on Roboflow Universe.")],
    out: Annotated[Path, typer.Option(help="Folder to download into.")],
    format: Annotated[str, typer.Option("--format", help="Roboflow export format.")] = "yolov11",
) -> None:
    """Download a Roboflow dataset version; the key comes from ROBOFLOW_API_KEY."""
    from tcv_helpers.registry import DatasetUnavailable, download_roboflow

    try:
        path = download_roboflow(source, out, model_format=format)
    except (DatasetUnavailable, ValueError) as exc:
        _fail(str(exc), code=1)
    typer.echo(f"Downloaded {source} to {path}")


@data_app.command("check")
def data_check(
    root: Annotated[Path, typer.Argument(help="Dataset folder (with data.yaml) or its data.yaml.")],
    fix: Annotated[
        Path | None,
        typer.Option("--fix", help="Write a cleaned copy here (the original is untouched)."),
    ] = None,
    near_duplicates: Annotated[bool, typer.Option(help="Look for near-duplicate frames.")] = True,
) -> None:
    """Label and image QA: every problem with its file and line; exit 1 when there are errors."""
    from tcv_helpers.qa import check_dataset, fix_dataset

    progress = sys.stderr.isatty()
    try:
        report = check_dataset(root, near_duplicates=near_duplicates, progress=progress)
    except FileNotFoundError as exc:
        _fail(str(exc))
    if report.issues:
        typer.echo(report.format())
    typer.echo(report.summary())
    if fix is not None:
        try:
            fixed = fix_dataset(
                root, fix, report=report, near_duplicates=near_duplicates, progress=progress
            )
        except (ValueError, FileExistsError) as exc:
            _fail(str(exc))
        typer.echo(f"Cleaned copy in {fix}: {fixed.summary()}")
    if not report.ok:
        raise typer.Exit(1)


@data_app.command("convert")
def data_convert(
    src: Annotated[Path, typer.Argument(help="Source dataset folder.")],
    dst: Annotated[Path, typer.Argument(help="Destination folder (separate from the source).")],
    from_format: Annotated[str, typer.Option("--from", help="yolo, coco, voc, labelme or cvat.")],
    to_format: Annotated[str, typer.Option("--to", help="yolo, coco, voc, labelme or cvat.")],
    copy_images: Annotated[bool, typer.Option(help="Copy the images into the destination.")] = True,
) -> None:
    """Convert labels between YOLO, COCO, Pascal VOC, LabelMe and CVAT (the source is never changed)."""
    from tcv_helpers.formats import convert

    try:
        labels = convert(
            src, dst, src_format=from_format, dst_format=to_format, copy_images=copy_images
        )
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    boxes = sum(labels.box_counts().values())
    typer.echo(
        f"Converted {len(labels)} images, {boxes} boxes, {from_format} -> {to_format}: {dst}"
    )


@data_app.command("scrape")
def data_scrape(
    cameras: Annotated[
        Path, typer.Option(help="Camera list (YAML: id, url, name, source, license, interval).")
    ],
    out: Annotated[
        Path, typer.Option(help="Folder for <camera id>/<UTC time>.jpg and manifest.csv.")
    ],
    interval: Annotated[float, typer.Option(help="Seconds between fetches of one camera.")] = 60.0,
    rounds: Annotated[int, typer.Option(help="How many times to fetch every camera.")] = 1,
    per_host_delay: Annotated[
        float, typer.Option(help="Seconds between requests to one host.")
    ] = 1.0,
) -> None:
    """Polite, resumable snapshot collection from public camera URLs (run it again to resume)."""
    from tcv_helpers.scrape import scrape

    try:
        report = scrape(
            cameras, out, rounds=rounds, interval=interval, per_host_delay=per_host_delay,
            progress=sys.stderr.isatty(),
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail(
            f"stopped; what was fetched is in {out / 'manifest.csv'}; run the same command to resume.",
            code=130,
        )
    for note in report.notes:
        typer.echo(note)
    typer.echo(report.summary())


@app.command()
def bench(
    model: Annotated[Path, typer.Argument(help="Trained YOLO weights (.pt) to benchmark.")],
    data: Annotated[Path, typer.Option(help="data.yaml: evaluation split and calibration frames.")],
    out: Annotated[
        Path, typer.Option(help="Folder for the exported variants and benchmark.json.")
    ] = Path("variants"),
    imgsz: Annotated[int, typer.Option(help="Input size for latency and throughput.")] = 640,
    eval_imgsz: Annotated[
        int | None, typer.Option(help="Input size for mAP50 (default: the training size).")
    ] = None,
    variants: Annotated[
        str, typer.Option(help="Comma-separated variants, e.g. pytorch-fp32,openvino-int8 [all].")
    ] = "",
    repeats: Annotated[int, typer.Option(help="Timed frames per variant.")] = 30,
    accuracy: Annotated[bool, typer.Option(help="Measure mAP50 of every variant (slower).")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Size, latency, throughput and mAP50 of a model across formats (PyTorch, ONNX, OpenVINO)."""
    from tcv_helpers.optimize import VARIANTS, benchmark

    chosen = [v.strip() for v in variants.split(",") if v.strip()] or list(VARIANTS)
    if not model.is_file():
        _fail(f"{model} does not exist: give the trained .pt (workspace/models/best.pt).")
    if not data.is_file():
        _fail(f"{data} does not exist: give the dataset's data.yaml.")
    try:
        result = benchmark(
            model, data, out_dir=out, imgsz=imgsz, eval_imgsz=eval_imgsz,
            variants=chosen, repeats=repeats,
            accuracy=accuracy, progress=sys.stderr.isatty(),
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    typer.echo(result.table().round(3).to_string())
    for note in result.notes:
        typer.echo(note)
    typer.echo(
        f"Fastest: {result.fastest.variant} ({result.fastest.speedup:.2f}x PyTorch FP32 at "
        f"{imgsz} px); written to {out / 'benchmark.json'}"
    )


@app.command()
def serve(
    model: Annotated[
        Path, typer.Option(help="The exported model: .onnx, OpenVINO .xml, or a benchmark folder.")
    ],
    host: Annotated[
        str, typer.Option(help="Interface to listen on (0.0.0.0: every interface).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    backend: Annotated[
        str, typer.Option(help="auto, onnxruntime or openvino (auto: by the model's file type).")
    ] = "auto",
    max_concurrency: Annotated[
        int | None, typer.Option(help="Images decoded and run at once (default: the CPU cores).")
    ] = None,
    max_queue: Annotated[
        int | None, typer.Option(help="Requests that may wait for a worker; more get 429 [32].")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads per inference (default: cores / concurrency).")
    ] = None,
) -> None:
    """The detection service (FastAPI): /healthz, /metrics, /v1/detect; key from TCV_API_KEY."""
    from tcv_helpers import serve as serve_mod

    try:
        per_image = threads or serve_mod.service_threads(max_concurrency)
        detector = serve_mod.load_detector(model, backend=backend, threads=per_image)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        _fail(str(exc))
    key = "set" if os.environ.get(serve_mod.API_KEY_ENV) else "not set: open to all"
    typer.echo(
        f"Serving {detector.path} ({detector.backend}, version {detector.version}) on "
        f"http://{host}:{port}; API key {key}.",
        err=True,
    )
    queue = serve_mod.DEFAULT_MAX_QUEUE if max_queue is None else max_queue
    serve_mod.run_server(
        detector, host=host, port=port, max_concurrency=max_concurrency, max_queue=queue
    )
