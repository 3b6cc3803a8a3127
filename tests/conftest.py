"""Fixtures for the unit tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


@pytest.fixture
def sample_data() -> Path:
    """The real sample data folder (``TCV_SAMPLE_DATA``), or a skip saying why it is missing."""
    value = os.environ.get("TCV_SAMPLE_DATA", "")
    if not value or not (Path(value) / "manaus-traffic").is_dir():
        pytest.skip("real sample data absent: set TCV_SAMPLE_DATA to the shared data folder")
    return Path(value)


@pytest.fixture(autouse=True)
def _no_colab_or_slurm(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see a plain machine unless they set the platform variables themselves."""
    for name in (
        "COLAB_RELEASE_TAG",
        "COLAB_GPU",
        "SLURM_JOB_ID",
        "BINDER_REPO_URL",
        "BINDER_LAUNCH_HOST",
        "BINDER_SERVICE_HOST",
        "TCV_PLATFORM",
    ):
        monkeypatch.delenv(name, raising=False)
