"""Test settings shared by the unit tests and nbval's notebook runs (which inherit this env).

Besides the profile and the sample data, the session serves the course asset hub (COURSE.md
section 9) on loopback: the release's data assets are built from the real sample data into a
temporary folder and served over HTTP for the whole session, and ``TCV_ASSETS_URL`` points at
it, so notebooks and ``tcv run`` subprocesses download the real camera set and videos as a
learner would, without the internet. Where the sample data is absent nothing is set and the
notebooks fall back (synthetic data), as they do offline.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent
HUB_DIR_ENV = "TCV_TEST_HUB_DIR"  # the session hub's folder, for tests that serve a copy of it

# The notebooks run in the smoke profile under test, whatever the machine has.
os.environ.setdefault("TCV_PROFILE", "smoke")
# The real sample data lives beside the repository (never inside it); tests that need it skip
# with a reason when it is absent. An explicit TCV_SAMPLE_DATA wins.
_shared = ROOT.parent / "shared" / "data"
if "TCV_SAMPLE_DATA" not in os.environ and _shared.is_dir():
    os.environ["TCV_SAMPLE_DATA"] = str(_shared)

_HUB = pytest.StashKey[tuple[Any, Path, dict[str, str | None]]]()


def _hub_server_module() -> Any:
    """``tests/hub_server.py``, loaded once as the module ``hub_server`` (tests import it so)."""
    if "hub_server" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "hub_server", ROOT / "tests" / "hub_server.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["hub_server"] = module
        spec.loader.exec_module(module)
    return sys.modules["hub_server"]


_CACHE = pytest.StashKey[tuple[Path, str | None]]()


def _own_cache(config: pytest.Config) -> None:
    """A course cache of the session's own: tests never write into the user's
    ``~/.cache/traffic-cams-cv`` (downloads, the ledger of trusted weights), unless
    ``TCV_CACHE`` names one."""
    if os.environ.get("TCV_CACHE"):
        return
    tmp = Path(tempfile.mkdtemp(prefix="tcv-test-cache-"))
    config.stash[_CACHE] = (tmp, os.environ.get("TCV_CACHE"))
    os.environ["TCV_CACHE"] = str(tmp)


_STARTED = pytest.StashKey[float]()
#: Tests that reuse what the notebooks of the same session trained, so they run after them.
AFTER_NOTEBOOKS = ("tests/test_model_behaviour.py",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Moves :data:`AFTER_NOTEBOOKS` after the notebooks (nbval), keeping every other order."""
    later = [item for item in items if item.nodeid.startswith(AFTER_NOTEBOOKS)]
    if later and any(item.nodeid.startswith("notebooks/") for item in items):
        items[:] = [item for item in items if item not in later] + later


@pytest.fixture(scope="session")
def session_started(pytestconfig: pytest.Config) -> float:
    """When this test session started (``time.time()``): files older than it are not its own."""
    return pytestconfig.stash[_STARTED]


def pytest_configure(config: pytest.Config) -> None:
    """Builds the data assets from the sample data and serves them for the session."""
    config.stash[_STARTED] = time.time()
    sample = Path(os.environ.get("TCV_SAMPLE_DATA", ""))
    if os.environ.get("TCV_ASSETS_URL") or not (sample / "manaus-traffic").is_dir():
        _own_cache(config)
        return
    from tcv_helpers.data.release import build_release

    tmp = Path(tempfile.mkdtemp(prefix="tcv-test-hub-"))
    try:
        build_release(tmp / "hub", sample_data=sample)
    except (ValueError, OSError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        config.issue_config_time_warning(
            pytest.PytestWarning(f"No loopback asset hub for this session: {exc}"), stacklevel=2
        )
        _own_cache(config)
        return
    server = _hub_server_module().HubServer(tmp / "hub").start()
    settings = {
        "TCV_ASSETS_URL": server.url,
        "TCV_CACHE": str(tmp / "cache"),
        HUB_DIR_ENV: str(tmp / "hub"),
    }
    config.stash[_HUB] = (server, tmp, {name: os.environ.get(name) for name in settings})
    os.environ.update(settings)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stops the session's hub, restores the variables it set and removes its folder."""
    if _CACHE in config.stash:
        tmp, before = config.stash[_CACHE]
        if before is None:
            os.environ.pop("TCV_CACHE", None)
        else:
            os.environ["TCV_CACHE"] = before
        shutil.rmtree(tmp, ignore_errors=True)
    if _HUB not in config.stash:
        return
    server, tmp, before = config.stash[_HUB]
    server.stop()
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    shutil.rmtree(tmp, ignore_errors=True)
