"""The ``tcv`` command: a thin Typer layer over the same functions the notebooks call."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from tcv_helpers import doctor as doctor_mod
from tcv_helpers.batch import runner

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


def _note(line: str) -> None:
    """A progress line: on standard error, so that standard output stays for results."""
    typer.echo(line, err=True)


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
    try:
        result = runner.run_command(
            profile=profile, only=only, parameters=param or (), params_file=params, out=out,
            resume=resume, notebooks=notebooks, cell_timeout=cell_timeout,
            progress=progress and sys.stderr.isatty(), on_event=_note,
        )  # fmt: skip
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
    from tcv_helpers.batch import nbcheck

    try:
        found = nbcheck.check_notebooks(paths)
    except runner.RunError as exc:
        _fail(str(exc))
    for file, problems in found.items():
        for problem in problems:
            typer.echo(f"{file}: {problem}")
    bad = sum(bool(problems) for problems in found.values())
    typer.echo(f"{len(found) - bad} of {len(found)} notebooks follow the rules.")
    if bad:
        raise typer.Exit(1)


@notebooks_app.command("sync")
def notebooks_sync(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Notebooks (default: notebooks/*.ipynb).")
    ] = None,
) -> None:
    """Rewrite Colab badges and set-up cells from pyproject.toml's repository URL and version."""
    from tcv_helpers.batch import nbcheck

    try:
        changed = nbcheck.sync_notebooks(paths)
    except runner.RunError as exc:
        _fail(str(exc))
    for file in changed:
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
    """The embedded synthetic traffic-camera dataset: YOLO layout, data.yaml, COCO json, manifest.csv,
    and its instance masks as a YOLO segmentation dataset (segment/)."""
    from tcv_helpers.data.synth import generate_dataset

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
    if result.segment_yaml is not None:
        typer.echo(f"Instance masks (YOLO segmentation): {result.segment_yaml}")


@data_app.command("roboflow")
def data_roboflow(
    source: Annotated[str, typer.Argument(help="WORKSPACE/PROJECT/VERSION on Roboflow Universe.")],
    out: Annotated[Path, typer.Option(help="Folder to download into.")],
    format: Annotated[str, typer.Option("--format", help="Roboflow export format.")] = "yolov11",
) -> None:
    """Download a Roboflow dataset version; the key comes from ROBOFLOW_API_KEY."""
    from tcv_helpers.data.registry import DatasetUnavailable, download_roboflow

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
    from tcv_helpers.data.qa import check_dataset, fix_dataset

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
    from tcv_helpers.data.formats import convert

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
        Path,
        typer.Option(help="Camera list (YAML: id, url, name, source, license, interval, fetch)."),
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
    from tcv_helpers.data.scrape import scrape
    from tcv_helpers.io import FolderBusy

    try:
        report = scrape(
            cameras, out, rounds=rounds, interval=interval, per_host_delay=per_host_delay,
            progress=sys.stderr.isatty(),
        )  # fmt: skip
    except (ValueError, FileNotFoundError, FolderBusy) as exc:
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
    throughput: Annotated[
        bool,
        typer.Option(
            help="Also measure the OpenVINO variants in throughput mode (THROUGHPUT hint, "
            "asynchronous requests, batch 1, 2 and 4): frames per second for batch jobs."
        ),
    ] = False,
    trust: Annotated[
        bool,
        typer.Option(
            "--trust",
            help="Load MODEL although the course did not write it (you made it yourself): a "
            ".pt is a pickle that runs code when loaded.",
        ),
    ] = False,
) -> None:
    """Size, latency, throughput and mAP50 of a model across formats (PyTorch, ONNX, OpenVINO)."""
    from tcv_helpers.deploy.optimize import VARIANTS, benchmark

    chosen = [v.strip() for v in variants.split(",") if v.strip()] or list(VARIANTS)
    if not model.is_file():
        _fail(f"{model} does not exist: give the trained .pt (workspace/models/best.pt).")
    if not data.is_file():
        _fail(f"{data} does not exist: give the dataset's data.yaml.")
    try:
        result = benchmark(
            model, data, out_dir=out, imgsz=imgsz, eval_imgsz=eval_imgsz,
            variants=chosen, repeats=repeats,
            accuracy=accuracy, progress=sys.stderr.isatty(), trusted=trust,
            throughput_batches=(1, 2, 4) if throughput else (),
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as exc:  # UntrustedWeights is a ValueError
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    typer.echo(result.table().round(3).to_string())
    if result.throughput:
        import pandas as pd

        typer.echo("Throughput mode (many frames at once, for batch jobs):")
        table = pd.DataFrame(result.throughput).drop(columns=["path", "seconds"])
        typer.echo(table.round(1).to_string(index=False))
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
    reference: Annotated[
        Path | None,
        typer.Option(
            help="Reference profile JSON of the training images, for the drift alert "
            "(default: reference.json beside the model, if any)."
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
    body_timeout: Annotated[
        float, typer.Option(help="Seconds a client has to send its upload; a slower one gets 408.")
    ] = 30.0,
    no_auth: Annotated[
        bool,
        typer.Option(
            "--no-auth",
            help="Serve without TCV_API_KEY on an interface other machines reach (0.0.0.0, a "
            "LAN address): refused unless this says it is on purpose.",
        ),
    ] = False,
    batch_size: Annotated[
        int,
        typer.Option(
            help="Most images in one inference call (dynamic batching; 1 where the model takes "
            "one image)."
        ),
    ] = 8,
    batch_wait_ms: Annotated[
        float, typer.Option(help="Most milliseconds a batch waits for images still being decoded.")
    ] = 2.0,
) -> None:
    """The detection service (FastAPI): /healthz, /metrics, /v1/detect; key from TCV_API_KEY."""
    from tcv_helpers.deploy.server import serve_command

    try:
        serve_command(
            model, host=host, port=port, backend=backend, max_concurrency=max_concurrency,
            max_queue=max_queue, threads=threads, reference=reference, log_level=log_level,
            body_timeout=body_timeout, no_auth=no_auth, batch_size=batch_size,
            batch_wait_ms=batch_wait_ms,
        )  # fmt: skip
    except (FileNotFoundError, ValueError, ImportError) as exc:
        _fail(str(exc))


@app.command()
def slurm(
    sweep: Annotated[
        Path | None,
        typer.Option(help="A sweep file (YAML, grid or list): write a job array, one task each."),
    ] = None,
    jupyter: Annotated[
        bool, typer.Option("--jupyter", help="Write a JupyterLab job (127.0.0.1, token, tunnel).")
    ] = False,
    resubmit_failed: Annotated[
        Path | None,
        typer.Option(
            "--resubmit-failed",
            help="A sweep folder (runs/<sweep>/): write its script again and resubmit only the "
            "tasks that failed (--array=<ids>).",
        ),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(help="Site preset: generic, koa, or a YAML file (default: generic)."),
    ] = None,
    profile: Annotated[
        str | None, typer.Option(help="smoke, workshop, full or auto (a sweep: its file's).")
    ] = None,
    only: Annotated[str | None, typer.Option(help="Notebooks to run, e.g. 02,05-06.")] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("-p", "--param", help="KEY=VALUE for the notebooks (one run; not a sweep)."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Runs folder; a sweep goes to OUT/<sweep>/.")] = Path(
        "runs"
    ),
    notebooks: Annotated[
        Path | None, typer.Option(help="Notebook folder (default: ./notebooks or the course's).")
    ] = None,
    partition: Annotated[
        str | None, typer.Option(help="Partition (default: the preset's).")
    ] = None,
    account: Annotated[str | None, typer.Option(help="--account to charge.")] = None,
    qos: Annotated[str | None, typer.Option(help="--qos.")] = None,
    gpus: Annotated[
        int | None, typer.Option(help="GPUs per job: --gres=gpu:N; above 1 trains with DDP.")
    ] = None,
    gpu_type: Annotated[
        str | None, typer.Option(help="GPU type in --gres=gpu:TYPE:N (e.g. a100).")
    ] = None,
    cpus: Annotated[int | None, typer.Option(help="--cpus-per-task.")] = None,
    mem: Annotated[str | None, typer.Option(help="--mem, e.g. 32G.")] = None,
    time: Annotated[
        str | None, typer.Option("--time", help="--time, e.g. 04:00:00 or 1-00:00:00.")
    ] = None,
    module: Annotated[
        list[str] | None,
        typer.Option(
            "--module", help="Environment module to load (repeat; replaces the preset's)."
        ),
    ] = None,
    conda: Annotated[str | None, typer.Option(help="Conda environment to activate.")] = None,
    venv: Annotated[Path | None, typer.Option(help="Virtual environment to activate.")] = None,
    require_env: Annotated[
        list[str] | None,
        typer.Option(
            "--require-env",
            help="NAME of a variable the job needs (e.g. ROBOFLOW_API_KEY): checked, never written.",
        ),
    ] = None,
    job_name: Annotated[str | None, typer.Option(help="--job-name (default: tcv-...).")] = None,
    max_parallel: Annotated[
        int | None, typer.Option(help="Sweep: at most N tasks at once (--array=...%N).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="JupyterLab's port on the node (default: random).")
    ] = None,
    script: Annotated[
        Path | None, typer.Option(help="Where to write the script (one run or JupyterLab).")
    ] = None,
    submit: Annotated[
        bool, typer.Option("--submit", help="Submit with sbatch and print the job id.")
    ] = False,
    test_only: Annotated[
        bool,
        typer.Option("--test-only", help="Ask Slurm whether it would run it (sbatch --test-only)."),
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="With --submit: wait until the job has left the queue.")
    ] = False,
    wait_timeout: Annotated[float, typer.Option(help="Seconds --wait waits at most.")] = 86400.0,
) -> None:
    """Write an sbatch script for a run, a job-array sweep or JupyterLab; --submit submits it."""
    from tcv_helpers.batch import slurm as slurm_mod
    from tcv_helpers.batch.slurm_site import SlurmError
    from tcv_helpers.batch.sweep import SweepError

    try:
        result = slurm_mod.write_and_submit(
            sweep=sweep, jupyter=jupyter, resubmit_failed=resubmit_failed, preset=preset,
            profile=profile, only=only, parameters=param or (), out=out, notebooks=notebooks,
            resources={
                "partition": partition, "account": account, "qos": qos, "gpus": gpus,
                "gpu_type": gpu_type, "cpus": cpus, "mem": mem, "time": time,
            },
            modules=module, conda=conda, venv=venv, require_env=require_env, job_name=job_name,
            max_parallel=max_parallel, port=port, script=script, submit=submit,
            test_only=test_only, wait=wait, wait_timeout=wait_timeout,
            on_event=_note, on_output=typer.echo,
        )  # fmt: skip
    except (SlurmError, SweepError, runner.RunError, TimeoutError) as exc:
        _fail(str(exc))
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def release(
    out: Annotated[Path, typer.Option(help="Release folder: the files to upload and assets.json.")],
    sample_data: Annotated[
        Path | None,
        typer.Option(help="The real sample data folder (manaus-traffic/, videos/): data assets."),
    ] = None,
    workspace: Annotated[
        list[Path] | None,
        typer.Option(
            "--workspace",
            help="A course workspace (repeat): its models/best.pt and best.meta.json become a "
            "checkpoint-<profile>-<dataset>.pt asset.",
        ),
    ] = None,
    registry: Annotated[
        Path | None,
        typer.Option(
            help="A registry file to merge the entries into (tcv_helpers/resources/assets.json)."
        ),
    ] = None,
) -> None:
    """Build the asset hub's release files and their registry entries (for maintainers)."""
    from tcv_helpers.data.release import build_release

    try:
        result = build_release(
            out, sample_data=sample_data, workspaces=workspace or (), registry=registry
        )
    except (ValueError, OSError) as exc:
        _fail(str(exc))
    for asset in result.assets.values():
        typer.echo(
            f"{asset.name}: {asset.file} ({asset.size / 1e6:.1f} MB, sha256 {asset.sha256[:12]}…)"
        )
    typer.echo(f"Registry entries of these {len(result.assets)}: {result.assets_json}")
    if result.registry is not None:
        typer.echo(f"Merged their entries into {result.registry}")


sweep_app = typer.Typer(help="Parameter sweeps: gather their results.", no_args_is_help=True)
app.add_typer(sweep_app, name="sweep")


@sweep_app.command("report")
def sweep_report(
    run_dir: Annotated[Path, typer.Argument(help="A sweep folder (runs/<sweep>/) or runs folder.")],
    out: Annotated[
        Path | None, typer.Option(help="Folder for sweep.csv and sweep.html (default: RUN_DIR).")
    ] = None,
    queue: Annotated[
        bool, typer.Option(help="Ask Slurm which tasks are still queued (squeue).")
    ] = True,
) -> None:
    """Every task's summary.json in one table (sweep.csv, sweep.html with plots); exit 1 on failures."""
    from tcv_helpers.batch import sweep as sweep_mod

    try:
        report = sweep_mod.sweep_report(run_dir, out=out, queue=queue)
    except sweep_mod.SweepError as exc:
        _fail(str(exc))
    result = report.result
    typer.echo(sweep_mod.format_table(result))
    counts = ", ".join(f"{n} {s}" for s, n in result.counts().items())
    typer.echo(f"{len(result.tasks)} tasks: {counts}. Wrote {report.csv} and {report.html}")
    for task in result.unfinished:
        typer.echo(task.describe())
    if result.unfinished:
        if report.resubmittable:
            typer.echo(f"Resubmit only these: tcv slurm --resubmit-failed {run_dir} --submit")
        raise typer.Exit(1)
