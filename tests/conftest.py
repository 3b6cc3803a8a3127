"""Fixtures for the unit tests."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from tiny import TINY

from tcv_helpers.config import Profile
from tcv_helpers.data.synth import SynthDataset

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


@dataclass(frozen=True)
class TinyModel:
    """The session's tiny trained model and the synthetic set it was trained on.

    Shared by every test that needs *a* trained model: tests read it and write their own outputs
    elsewhere (``tmp_path``), never into ``data`` or beside ``weights``.
    """

    data: SynthDataset
    weights: Path
    profile: Profile


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> SynthDataset:
    """A 30-frame synthetic set of 3 cameras (train, val and test splits), made once."""
    from tcv_helpers.data.synth import generate_dataset

    root = tmp_path_factory.mktemp("tiny-data") / "data"
    return generate_dataset(root, images=30, cameras=3, sequences=0, workers=1)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, tiny_dataset) -> TinyModel:
    """YOLO11n trained once for the session with :data:`tiny.TINY` on :func:`tiny_dataset`."""
    from tcv_helpers.model.train import train

    models = tmp_path_factory.mktemp("tiny-models")
    result = train(tiny_dataset.data_yaml, profile=TINY, out_dir=models, workers=0)
    return TinyModel(data=tiny_dataset, weights=result.best, profile=TINY)
