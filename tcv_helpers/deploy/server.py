"""The service's server (notebook 08): ``tcv serve``, the Docker image, a background server.

:func:`serve_command` is what ``tcv serve`` and ``python -m tcv_helpers.deploy.server`` (the
Docker image's entry point) run, with the same options: it loads the model with
:func:`service_detector` (the CPU cores shared out between the workers), reads the reference
profile and serves the app of :mod:`tcv_helpers.deploy.app` with uvicorn (:func:`run_server`)
until interrupted. :func:`serve_in_background` starts the same service in a thread or a child
process for a notebook or a test and returns a :class:`ServerHandle`.

Example::

    with serve_in_background(cfg.workspace.models / "best.onnx") as server:
        stats = load_test(server.url, jpeg_bytes, concurrency=8, requests=200)

The API key comes from ``TCV_API_KEY`` only, never a command-line option (options show in
``ps`` and shell history). uvicorn is imported when a server starts; nothing here imports torch,
Ultralytics or OpenCV.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tcv_helpers.deploy.app import (
    API_KEY_ENV,
    BODY_TIMEOUT_SECONDS,
    DEFAULT_MAX_QUEUE,
    create_app,
)
from tcv_helpers.deploy.batching import DEFAULT_BATCH_SIZE, DEFAULT_BATCH_WAIT_MS, batch_limit
from tcv_helpers.deploy.inference import BACKENDS, Detector, load_detector
from tcv_helpers.deploy.reference import REFERENCE_FILE, load_reference
from tcv_helpers.env import stop_process, usable_cores

#: Open connections beyond which uvicorn itself answers 503 (a flood guard, far above the queue).
CONNECTION_LIMIT = 1000
#: uvicorn's log levels.
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
BODY_TIMEOUT_HELP = "Seconds a client has to send its upload; a slower one gets 408."
BATCH_SIZE_HELP = (
    "Most images in one inference call (dynamic batching; 1 where the model takes one image)."
)
BATCH_WAIT_HELP = "Most milliseconds a batch waits for images still being decoded."
NO_AUTH_HELP = (
    f"Serve without {API_KEY_ENV} on an interface other machines reach (0.0.0.0, a LAN "
    "address): refused unless this says it is on purpose."
)


# --------------------------------------------------------------------------------------------
# The detector of a service
# --------------------------------------------------------------------------------------------


def service_threads(max_concurrency: int | None = None) -> int:
    """CPU threads per inference for a service running ``max_concurrency`` images at once.

    The cores shared out: on a small CPU, two one-thread inferences side by side get through
    more frames than one two-thread inference at a time (at 640 pixels on 2 cores: about 36
    against 22 frames/s), and no thread waits for another.

    Args:
        max_concurrency: Images run at once (default: the CPU cores).

    Returns:
        At least 1.
    """
    cores = usable_cores()
    return max(1, cores // (max_concurrency or cores))


def service_detector(
    model: str | os.PathLike | Detector,
    *,
    backend: str = "auto",
    threads: int | None = None,
    max_concurrency: int | None = None,
) -> Detector:
    """The detector for a service running ``max_concurrency`` requests at once.

    The cores are shared out (:func:`service_threads`) and the runtime may run that many
    inferences side by side (``parallel`` of :func:`tcv_helpers.deploy.inference.load_detector`).

    Args:
        model: A model path (see :func:`tcv_helpers.deploy.inference.load_detector`), or a
            detector (returned as it is).
        backend: ``auto``, ``onnxruntime`` or ``openvino``.
        threads: CPU threads per inference (default: :func:`service_threads`).
        max_concurrency: Requests run at once (default: the CPU cores).

    Returns:
        The detector.
    """
    if isinstance(model, Detector):
        return model
    return load_detector(
        model,
        backend=backend,
        threads=threads or service_threads(max_concurrency),
        parallel=max_concurrency or usable_cores(),
    )


# --------------------------------------------------------------------------------------------
# Serving
# --------------------------------------------------------------------------------------------


def run_server(
    model: str | os.PathLike | Detector,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    backend: str = "auto",
    threads: int | None = None,
    max_concurrency: int | None = None,
    max_queue: int = DEFAULT_MAX_QUEUE,
    log_level: str = "info",
    reference: str | os.PathLike | Mapping[str, Any] | None = None,
    body_timeout: float = BODY_TIMEOUT_SECONDS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS,
) -> None:
    """Serves the model until interrupted (:func:`serve_command` runs it for ``tcv serve``).

    The API key comes from ``TCV_API_KEY`` only (never a command-line flag: flags show in
    ``ps`` and shell history).

    Args:
        model: A model path (see :func:`tcv_helpers.deploy.inference.load_detector`) or a
            detector.
        host: Interface to listen on (``0.0.0.0`` inside a container).
        port: TCP port.
        backend: ``auto``, ``onnxruntime`` or ``openvino``.
        threads: CPU threads per inference (default: :func:`service_threads`).
        max_concurrency: Requests run at once (default: the CPU cores).
        max_queue: Requests that may wait; more get 429.
        log_level: uvicorn's log level.
        reference: The reference profile (see :func:`tcv_helpers.deploy.app.create_app`; None:
            beside the model).
        body_timeout: Seconds a client has to send its upload; a slower one gets 408.
        batch_size: Most images in one inference call (dynamic batching).
        batch_wait_ms: Most milliseconds a batch waits for images being decoded.
    """
    import uvicorn

    detector = service_detector(
        model, backend=backend, threads=threads, max_concurrency=max_concurrency
    )
    app = create_app(
        detector, max_concurrency=max_concurrency, max_queue=max_queue, reference=reference,
        body_timeout=body_timeout, batch_size=batch_size, batch_wait_ms=batch_wait_ms,
    )  # fmt: skip
    uvicorn.run(
        app, host=host, port=port, log_level=log_level, server_header=False,
        limit_concurrency=CONNECTION_LIMIT, timeout_graceful_shutdown=10,
    )  # fmt: skip


@dataclass
class ServerHandle:
    """A service running in the background (see :func:`serve_in_background`).

    Attributes:
        url: Base URL, e.g. ``http://127.0.0.1:53211``.
        pid: The serving process (this one, for a thread).
        log: The server's log file (process mode, removed by :meth:`stop`), else None.
    """

    url: str
    pid: int
    log: Path | None = None
    _stop: Callable[[], None] = field(default=lambda: None, repr=False)

    def stop(self) -> None:
        """Stops the server and waits for it (idempotent)."""
        self._stop()
        self._stop = lambda: None

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _wait_healthy(url: str, *, timeout: float, alive: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    return False


def serve_in_background(
    model: str | os.PathLike | Detector,
    *,
    mode: str = "thread",
    host: str = "127.0.0.1",
    port: int | None = None,
    backend: str = "auto",
    api_key: str | None = None,
    threads: int | None = None,
    max_concurrency: int | None = None,
    max_queue: int = DEFAULT_MAX_QUEUE,
    log_level: str = "warning",
    startup_timeout: float = 60.0,
    reference: str | os.PathLike | Mapping[str, Any] | None = None,
    body_timeout: float = BODY_TIMEOUT_SECONDS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS,
) -> ServerHandle:
    """Starts the service on loopback and returns once ``/healthz`` answers.

    ``mode="thread"`` runs uvicorn in a thread of this process (a notebook's kernel);
    ``mode="process"`` runs ``python -m tcv_helpers.deploy.server`` (:func:`serve_command`) in a
    child process, as the Docker image does, so that a load test in this process does not compete
    with it for the GIL.

    Args:
        model: A model path, or (thread mode) a detector.
        mode: ``thread`` or ``process``.
        host: Interface (loopback by default).
        port: TCP port (default: a free one).
        backend: ``auto``, ``onnxruntime`` or ``openvino``.
        api_key: The key (None: ``TCV_API_KEY`` from the environment; ``""``: none). A child
            process gets it through its environment, never its command line.
        threads: CPU threads per inference (default: :func:`service_threads`).
        max_concurrency: Requests run at once (default: the CPU cores).
        max_queue: Requests that may wait; more get 429.
        log_level: uvicorn's log level.
        startup_timeout: Seconds to wait for ``/healthz``.
        reference: The reference profile (see :func:`tcv_helpers.deploy.app.create_app`; None:
            beside the model); a child process needs a file.
        body_timeout: Seconds a client has to send its upload; a slower one gets 408.
        batch_size: Most images in one inference call (dynamic batching).
        batch_wait_ms: Most milliseconds a batch waits for images being decoded.

    Returns:
        A handle with ``url`` and ``stop()`` (also a context manager).

    Raises:
        RuntimeError: If the server does not come up (the message has its log's end).
        ValueError: If ``mode`` is unknown or a detector is given to a child process.
    """
    if mode not in ("thread", "process"):
        raise ValueError(f"mode must be 'thread' or 'process', got {mode!r}.")
    port = port or _free_port(host)
    url = f"http://{host}:{port}"
    if mode == "thread":
        import uvicorn

        detector = service_detector(
            model, backend=backend, threads=threads, max_concurrency=max_concurrency
        )
        app = create_app(
            detector, api_key=api_key, max_concurrency=max_concurrency, max_queue=max_queue,
            reference=reference, body_timeout=body_timeout, batch_size=batch_size,
            batch_wait_ms=batch_wait_ms,
        )  # fmt: skip
        config = uvicorn.Config(
            app, host=host, port=port, log_level=log_level, access_log=False,
            limit_concurrency=CONNECTION_LIMIT, server_header=False,
            log_config=None,  # leave this process's logging set-up (a notebook's) alone
        )  # fmt: skip
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name=f"tcv-serve-{port}", daemon=True)
        thread.start()
        if not _wait_healthy(url, timeout=startup_timeout, alive=thread.is_alive):
            server.should_exit = True
            thread.join(timeout=10)
            raise RuntimeError(
                f"The service did not start on {url} within {startup_timeout:.0f} s."
            )

        def stop_thread() -> None:
            server.should_exit = True
            thread.join(timeout=30)

        return ServerHandle(url=url, pid=os.getpid(), _stop=stop_thread)

    if isinstance(model, Detector):
        raise ValueError("A child process needs the model's path, not a Detector object.")
    if isinstance(reference, Mapping):
        raise ValueError("A child process needs the reference profile's file, not a mapping.")
    env = dict(os.environ)
    if api_key is not None:
        env[API_KEY_ENV] = api_key
    command = [
        sys.executable, "-m", "tcv_helpers.deploy.server", "--model", str(model), "--host", host,
        "--port", str(port), "--backend", backend, "--max-queue", str(max_queue), "--body-timeout", str(body_timeout),
        "--log-level", log_level, "--batch-size", str(batch_size),
        "--batch-wait-ms", str(batch_wait_ms),
    ]  # fmt: skip
    if threads:
        command += ["--threads", str(threads)]
    if max_concurrency:
        command += ["--max-concurrency", str(max_concurrency)]
    if reference is not None:
        command += ["--reference", str(reference)]
    log_fd, log_name = tempfile.mkstemp(prefix="tcv-serve-", suffix=".log")
    with os.fdopen(log_fd, "wb") as log:
        child = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    log_path = Path(log_name)

    def stop_child() -> None:
        stop_process(child)
        log_path.unlink(missing_ok=True)

    if not _wait_healthy(url, timeout=startup_timeout, alive=lambda: child.poll() is None):
        tail = log_path.read_text(errors="replace")[-2000:]
        stop_child()
        raise RuntimeError(f"The service did not start on {url}; its log ends:\n{tail}")
    return ServerHandle(url=url, pid=child.pid, log=log_path, _stop=stop_child)


# --------------------------------------------------------------------------------------------
# The command: tcv serve, python -m tcv_helpers.deploy.server
# --------------------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """True for an interface only this machine reaches (``127.0.0.1``, ``::1``, ``localhost``)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def check_exposure(host: str, api_key: str, *, no_auth: bool = False) -> None:
    """Refuses to serve without a key on an interface other machines reach.

    ``0.0.0.0`` (the container's default) or a LAN address without ``TCV_API_KEY`` would let
    anyone who reaches the machine use the model; that needs ``--no-auth``, said on purpose.

    Raises:
        ValueError: For a non-loopback ``host``, an empty ``api_key`` and no ``no_auth``.
    """
    if api_key.strip() or no_auth or is_loopback(host):
        return
    raise ValueError(
        f"Refusing to serve on {host} without a key: anyone who can reach this machine could "
        f"use the service. Set {API_KEY_ENV}, listen on 127.0.0.1, or pass --no-auth to serve "
        "openly on purpose."
    )


def serve_command(
    model: str | os.PathLike,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    backend: str = "auto",
    max_concurrency: int | None = None,
    max_queue: int | None = None,
    threads: int | None = None,
    reference: str | os.PathLike | None = None,
    log_level: str = "info",
    body_timeout: float = BODY_TIMEOUT_SECONDS,
    no_auth: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS,
) -> None:
    """The service from a command line: what ``tcv serve`` and the Docker image run.

    Loads the model and the reference profile first, so that a wrong path or a bad file ends
    the command with its error before anything listens, writes one line to stderr (what is
    served, where, and whether ``TCV_API_KEY`` is set), then serves until interrupted.

    Args:
        model: The exported model: ``.onnx``, OpenVINO ``.xml``, or a benchmark folder.
        host: Interface to listen on (``0.0.0.0``: every interface, as in a container).
        port: TCP port.
        backend: ``auto``, ``onnxruntime`` or ``openvino`` (auto: by the model's file type).
        max_concurrency: Images decoded and run at once (default: the CPU cores).
        max_queue: Requests that may wait for a worker; more get 429 (default 32).
        threads: CPU threads per inference (default: the cores shared out, :func:`service_threads`).
        reference: Reference profile JSON of the training images, for the drift alert (default:
            ``reference.json`` beside the model, if any).
        log_level: uvicorn's log level.
        body_timeout: Seconds a client has to send its upload; a slower one gets 408 (and held
            no worker meanwhile).
        no_auth: Serve without a key on an interface other machines reach, on purpose
            (without it, that is refused: see :func:`check_exposure`).
        batch_size: Most images in one inference call (dynamic batching; 1 where the model
            takes one image at a time).
        batch_wait_ms: Most milliseconds a batch waits for images being decoded.

    Raises:
        FileNotFoundError: If the model or the reference file does not exist.
        ValueError: If an option is out of range, a file is not what it should be, or the
            service would be open to the network without a key.
        ImportError: If the backend's runtime is not installed.
    """
    if log_level not in LOG_LEVELS:
        raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}.")
    check_exposure(host, os.environ.get(API_KEY_ENV, ""), no_auth=no_auth)
    detector = service_detector(
        model, backend=backend, threads=threads, max_concurrency=max_concurrency
    )
    profile = load_reference(reference) if reference is not None else None
    key = "set" if os.environ.get(API_KEY_ENV) else "not set: open to all (--no-auth)"
    if is_loopback(host) and not os.environ.get(API_KEY_ENV):
        key = "not set: open to this machine's users"
    print(
        f"Serving {detector.path} ({detector.backend}, version {detector.version}) on "
        f"http://{host}:{port}; API key {key}; {_batching_line(detector, batch_size)}.",
        file=sys.stderr,
        flush=True,
    )
    run_server(
        detector, host=host, port=port, max_concurrency=max_concurrency,
        max_queue=DEFAULT_MAX_QUEUE if max_queue is None else max_queue, log_level=log_level,
        reference=profile, body_timeout=body_timeout, batch_size=batch_size,
        batch_wait_ms=batch_wait_ms,
    )  # fmt: skip


def _batching_line(detector: Detector, batch_size: int) -> str:
    """What dynamic batching will do with this model, in a few words."""
    size = batch_limit(detector, batch_size)
    if size > 1:
        return f"batches of up to {size} images"
    if batch_size > 1:
        return (
            "one image per inference (the model was exported for one; export with dynamic=True "
            "to batch)"
        )
    return "one image per inference (--batch-size 1)"


def command_parser() -> argparse.ArgumentParser:
    """The options of ``python -m tcv_helpers.deploy.server``: those of ``tcv serve``.

    The Docker image has no Typer, so its entry point parses with argparse;
    ``tests/test_server.py`` checks that the names and defaults equal ``tcv serve``'s.

    Returns:
        The parser; its namespace holds :func:`serve_command`'s arguments.
    """
    parser = argparse.ArgumentParser(
        prog="python -m tcv_helpers.deploy.server",
        description=(
            "The detection service (FastAPI): /healthz, /metrics, /v1/detect; key from "
            f"{API_KEY_ENV}. The same command as `tcv serve`."
        ),
    )
    parser.add_argument(
        "--model",
        required=True,
        type=Path,
        help="The exported model: .onnx, OpenVINO .xml, or a benchmark folder.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="Interface to listen on (0.0.0.0: every interface)."
    )
    parser.add_argument("--port", type=int, default=8000, help="TCP port.")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="auto, onnxruntime or openvino (auto: by the model's file type).",
    )
    parser.add_argument(
        "--max-concurrency",
        type=int,
        default=None,
        help="Images decoded and run at once (default: the CPU cores).",
    )
    parser.add_argument(
        "--max-queue",
        type=int,
        default=None,
        help=f"Requests that may wait for a worker; more get 429 [{DEFAULT_MAX_QUEUE}].",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads per inference (default: cores / concurrency).",
    )
    parser.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="Reference profile JSON of the training images, for the drift alert (default: "
        f"{REFERENCE_FILE} beside the model, if any).",
    )
    parser.add_argument(
        "--log-level", choices=LOG_LEVELS, default="info", help="uvicorn's log level."
    )
    parser.add_argument(
        "--body-timeout", type=float, default=BODY_TIMEOUT_SECONDS, help=BODY_TIMEOUT_HELP
    )
    parser.add_argument("--no-auth", action="store_true", default=False, help=NO_AUTH_HELP)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help=BATCH_SIZE_HELP)
    parser.add_argument(
        "--batch-wait-ms", type=float, default=DEFAULT_BATCH_WAIT_MS, help=BATCH_WAIT_HELP
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m tcv_helpers.deploy.server``: :func:`serve_command` without Typer or torch.

    Args:
        argv: The arguments (default: the command line's).
    """
    parser = command_parser()
    args = parser.parse_args(argv)
    try:
        serve_command(**vars(args))
    except (FileNotFoundError, ValueError, ImportError) as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")


if __name__ == "__main__":
    main()
