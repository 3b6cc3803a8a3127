"""Tests of tcv_helpers.deploy.server: tcv serve and python -m, one command; the image; overload."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import click
import httpx
import psutil
import pytest
import tomllib
import typer
from typer.testing import CliRunner

from tcv_helpers.cli import app as cli_app
from tcv_helpers.deploy.loadtest import load_test
from tcv_helpers.deploy.server import (
    _free_port,
    check_exposure,
    command_parser,
    serve_in_background,
)
from tests.conftest import ROOT
from tests.service_model import tiny_service_model

#: The modules the service imports (``python -m tcv_helpers.deploy.server``, the Docker image).
SERVICE_MODULES = (
    "tcv_helpers.deploy.server",
    "tcv_helpers.deploy.app",
    "tcv_helpers.deploy.inference",
    "tcv_helpers.deploy.runtimes",
    "tcv_helpers.deploy.decode",
    "tcv_helpers.deploy.reference",
    "tcv_helpers.deploy.loadtest",
    "tcv_helpers.deploy.healthcheck",
    "tcv_helpers.deploy.batching",
    "tcv_helpers.imaging",
    "tcv_helpers.env",
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_service_model(tmp_path_factory)


def test_the_service_imports_neither_torch_nor_ultralytics_nor_opencv():
    code = (
        f"import sys; import {', '.join(SERVICE_MODULES)}; "
        "print([m for m in ('torch', 'ultralytics', 'supervision', 'cv2', 'typer', 'matplotlib') "
        "if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
    deploy = {p.stem for p in (ROOT / "tcv_helpers" / "deploy").glob("*.py")}
    offline = {"__init__", "optimize", "throughput", "search", "distill"}  # optimizing, not serving
    assert deploy - offline == {m.rsplit(".", 1)[1] for m in SERVICE_MODULES[:9]}


def test_tcv_serve_and_python_m_take_the_same_options():
    """One command line: the Docker image's argparse entry point has tcv serve's options."""
    serve = typer.main.get_command(cli_app).commands["serve"]
    typer_options = {p.opts[0]: p.default for p in serve.params if isinstance(p, click.Option)}
    parser = command_parser()
    argparse_options = {
        a.option_strings[0]: a.default for a in parser._actions if "--help" not in a.option_strings
    }
    assert typer_options == argparse_options
    args = parser.parse_args(["--model", "m.onnx", "--max-queue", "4", "--log-level", "debug"])
    assert vars(args) == {
        "model": Path("m.onnx"), "host": "127.0.0.1", "port": 8000, "backend": "auto",
        "max_concurrency": None, "max_queue": 4, "threads": None, "reference": None,
        "log_level": "debug", "body_timeout": 30.0, "no_auth": False, "batch_size": 8,
        "batch_wait_ms": 2.0,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.3.2.1", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("0.0.0.0", False), ("::", False), ("192.168.1.20", False),
     ("cams.example.org", False)],
)  # fmt: skip
def test_only_loopback_serves_without_a_key(host, loopback):
    if loopback:
        check_exposure(host, "")
    else:
        with pytest.raises(
            ValueError, match=rf"Refusing to serve on {re.escape(host)} without a key"
        ):
            check_exposure(host, "  ")
    check_exposure(host, "a-real-key-1234")  # with a key: anywhere
    check_exposure(host, "", no_auth=True)  # open on purpose


def test_an_open_service_on_every_interface_is_refused_from_the_command_line(tmp_path, monkeypatch):
    monkeypatch.delenv("TCV_API_KEY", raising=False)
    model = tmp_path / "gone.onnx"  # refused before the model is even looked at
    result = CliRunner().invoke(cli_app, ["serve", "--model", str(model), "--host", "0.0.0.0"])
    assert result.exit_code != 0 and "Refusing to serve on 0.0.0.0 without a key" in result.output
    assert "--no-auth" in result.output and "Traceback" not in result.output
    module = subprocess.run(
        [sys.executable, "-m", "tcv_helpers.deploy.server", "--model", str(model), "--host", "0.0.0.0"],
        cwd=ROOT, capture_output=True, text=True, env={k: v for k, v in os.environ.items() if k != "TCV_API_KEY"},
    )  # fmt: skip
    assert module.returncode == 2 and "without a key" in module.stderr, module.stderr
    opened = CliRunner().invoke(
        cli_app, ["serve", "--model", str(model), "--host", "0.0.0.0", "--no-auth"]
    )
    assert opened.exit_code != 0 and "gone.onnx" in opened.output, "on purpose: on to the model"


# ---- the service on a real server ----------------------------------------------------------


def test_the_health_check_asks_the_port_the_service_serves(tiny):
    from urllib.parse import urlsplit

    from tcv_helpers.deploy import healthcheck

    with serve_in_background(tiny.onnx, api_key="") as server:
        port = urlsplit(server.url).port
        argv = ["python", "-m", "tcv_helpers.deploy.server", "--host", "0.0.0.0", "--port"]
        assert healthcheck.health_url([*argv, str(port)]) == f"http://127.0.0.1:{port}/healthz"
        assert healthcheck.main([*argv, str(port)]) == 0
        assert healthcheck.main([*argv[:-1], f"--port={port}"]) == 0
        assert healthcheck.main([*argv, str(_free_port("127.0.0.1"))]) == 1, "nothing listens there"
    assert healthcheck.health_url(["--host", "::"]) == "http://[::1]:8000/healthz"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert '"tcv_helpers.deploy.healthcheck"' in dockerfile and "127.0.0.1:8000" not in dockerfile


@pytest.mark.slow
def test_slow_uploads_hold_no_slot_and_get_408(tiny):
    """64 clients trickle an upload a byte at a time while 8 normal ones send theirs: the normal
    ones are answered 200 within a second, the slow ones get 408, the service lives on."""
    import socket
    import threading
    import time
    from urllib.parse import urlsplit

    with serve_in_background(
        tiny.onnx, mode="process", api_key="", max_concurrency=1, body_timeout=2.0
    ) as server:
        where = urlsplit(server.url)
        head = (
            b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n"
        )
        slow = [socket.create_connection((where.hostname, where.port)) for _ in range(64)]
        for sock in slow:
            sock.sendall(head)
        stop = threading.Event()

        def trickle() -> None:
            while not stop.wait(0.25):
                for sock in slow:
                    with contextlib.suppress(OSError):
                        sock.send(b"x")

        feeder = threading.Thread(target=trickle, daemon=True)
        feeder.start()
        try:
            time.sleep(0.5)  # every slow client is now inside the service, reading
            normal = load_test(server.url, tiny.jpeg, concurrency=8, requests=8, timeout=10)
            assert normal["status_counts"] == {"200": 8}, normal
            assert normal["p99_ms"] < 1000, normal
            answers = []
            for sock in slow:
                sock.settimeout(10)
                answers.append(sock.recv(64).split(b"\r\n", 1)[0])
        finally:
            stop.set()
            feeder.join(5)
            for sock in slow:
                sock.close()
        assert set(answers) == {b"HTTP/1.1 408 Request Timeout"}, set(answers)
        assert httpx.get(f"{server.url}/healthz").status_code == 200, "alive after"


@pytest.mark.slow
def test_500_concurrent_requests_get_answers_and_memory_comes_back(tiny):
    with serve_in_background(tiny.onnx, mode="process", api_key="", max_queue=32) as server:
        process = psutil.Process(server.pid)
        warm = load_test(server.url, tiny.jpeg, concurrency=4, requests=40)
        assert warm["status_counts"] == {"200": 40}
        gc.collect()
        before = process.memory_info().rss

        flood = load_test(server.url, tiny.jpeg, concurrency=500, requests=500, timeout=120)
        assert flood["errors"] == {}, flood
        assert set(flood["status_counts"]) <= {"200", "429", "503"}, flood
        assert flood["status_counts"].get("200", 0) >= 34  # the workers and the queue were used
        assert flood["status_counts"].get("429", 0) > 0  # and the rest was refused at once

        async def burst() -> list[httpx.Response]:
            files = {"image": ("a.jpg", tiny.jpeg)}
            limits = httpx.Limits(max_connections=100)
            async with httpx.AsyncClient(limits=limits, timeout=60) as session:
                calls = [session.post(f"{server.url}/v1/detect", files=files) for _ in range(100)]
                return await asyncio.gather(*calls)

        refused = [a for a in asyncio.run(burst()) if a.status_code == 429]
        assert refused and refused[0].headers["retry-after"] == "1"
        assert "busy" in refused[0].json()["error"]

        assert httpx.get(f"{server.url}/healthz").status_code == 200
        after = process.memory_info().rss
        assert after - before < 100e6, f"RSS grew by {(after - before) / 1e6:.0f} MB"
        still = load_test(server.url, tiny.jpeg, concurrency=2, requests=6)
        assert still["status_counts"] == {"200": 6}


# ---- the command line and the image ------------------------------------------------------------


def test_tcv_serve_help_and_a_missing_model(tmp_path):
    runner = CliRunner()
    usage = runner.invoke(cli_app, ["serve", "--help"])
    assert usage.exit_code == 0 and "--model" in usage.output and "TCV_API_KEY" in usage.output
    missing = runner.invoke(cli_app, ["serve", "--model", str(tmp_path / "gone.onnx")])
    assert missing.exit_code != 0 and "gone.onnx" in missing.output
    assert "Traceback" not in missing.output
    module = subprocess.run(
        [sys.executable, "-m", "tcv_helpers.deploy.server", "--model", str(tmp_path / "gone.onnx")],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert module.returncode == 2 and "gone.onnx" in module.stderr
    assert "Traceback" not in module.stderr


def _requirements(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not pinned exactly"
            pins[name.strip().lower()] = version.strip()
    return pins


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lock(path: Path) -> dict[str, tuple[str, list[str]]]:
    """``requirements-serve.lock``: name -> (version, sha256 hashes)."""
    entries: dict[str, tuple[str, list[str]]] = {}
    name = ""
    for line in path.read_text().splitlines():
        text = line.split("#", 1)[0].strip().rstrip("\\").strip()
        if not text:
            continue
        if text.startswith("--hash=sha256:"):
            digest = text.removeprefix("--hash=sha256:")
            assert re.fullmatch(r"[0-9a-f]{64}", digest), f"{path.name}: bad hash {text!r}"
            entries[name][1].append(digest)
        else:
            name, _, version = text.partition("==")
            assert version, f"{path.name}: {text!r} is not pinned exactly"
            name = _normalized(name)
            entries[name] = (version.strip(), [])
    return entries


def test_the_image_installs_exactly_the_locked_bytes():
    """Every package of the image, its dependencies and the build backend: exact and hashed."""
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    lock = _lock(ROOT / "requirements-serve.lock")
    assert all(hashes for _, hashes in lock.values()), "a locked package has no hash"
    for name, version in _requirements(ROOT / "requirements-serve.txt").items():
        assert lock.get(_normalized(name), ("",))[0] == version, f"{name}: the lock differs"
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    for requirement in map(Requirement, build):  # tcv_helpers is built without isolation
        locked = lock.get(_normalized(requirement.name))
        assert locked and locked[0] in SpecifierSet(str(requirement.specifier)), requirement
    # What the direct pins need (as installed here, on Linux) is all in the lock.
    todo = list(_requirements(ROOT / "requirements-serve.txt"))
    seen: set[str] = set()
    while todo:
        name = _normalized(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        assert name in lock, f"{name} is needed by the service's packages but is not locked"
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    dockerfile = (ROOT / "Dockerfile").read_text()
    install = (
        "pip install --no-cache-dir --require-hashes --only-binary=:all: -r requirements-serve.lock"
    )
    assert install in dockerfile
    assert "pip install --no-cache-dir --no-deps --no-build-isolation ." in dockerfile
    assert "requirements-serve.txt" not in dockerfile.split("FROM", 1)[1]


def test_docker_image_runs_the_service_without_torch():
    pins = _requirements(ROOT / "requirements-serve.txt")
    for name, version in pins.items():
        assert metadata.version(name) == version, f"{name} differs from the installed version"
    needed = {"fastapi", "uvicorn", "onnxruntime", "numpy", "pillow", "prometheus-client"}
    assert needed | {"python-multipart"} <= set(pins)
    assert not {"torch", "torchvision", "ultralytics", "opencv-python"} & set(pins)
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert (
        "ARG PYTHON_IMAGE=python:3.11-slim" in dockerfile and "FROM ${PYTHON_IMAGE}" in dockerfile
    )
    assert "EXPOSE 8000" in dockerfile and "HEALTHCHECK" in dockerfile
    users = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert '"tcv_helpers.deploy.server"' in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignored[0].strip() == "*", "the build context is an allow-list"
    assert "!tcv_helpers/" in ignored and "!requirements-serve.lock" in ignored
    # What the service imports from outside the standard library is installed in the image.
    third_party = set()
    for module in SERVICE_MODULES:
        path = ROOT / Path(*module.split(".")).with_suffix(".py")
        third_party |= {
            line.split()[1].split(".")[0]
            for line in path.read_text().splitlines()
            if line.startswith(("import ", "from ")) and not line.startswith("from __future__")
        }
    import_names = {"PIL": "pillow", "prometheus_client": "prometheus-client"}
    third_party -= set(sys.stdlib_module_names) | {"tcv_helpers"}
    assert {import_names.get(m, m) for m in third_party} - {"starlette"} <= set(pins)
