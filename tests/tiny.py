"""The one tiny profile of the test suite: a model trains on it in seconds on a CPU.

Test modules import ``TINY`` from here; ``tests/conftest.py`` trains the one tiny model of the
session with it (the ``tiny_model`` fixture), so tests that only need *a* trained model share it.
"""

from __future__ import annotations

import numpy as np

from tcv_helpers.config import PROFILES, with_overrides

#: The smoke profile at 64 px, 2 epochs and a 24-frame synthetic set of 3 cameras.
TINY = with_overrides(
    PROFILES["smoke"], imgsz=64, epochs=2, batch=8, synth_images=24, synth_cameras=3
)


def toy_crops(n: int = 96, seed: int = 0):
    """Crops of two classes anyone can tell apart (dark or bright), six cameras: four train,
    two validate. Returns ``(train, val)`` :class:`tcv_helpers.model.classify.Crops`."""
    from tcv_helpers.model.classify import Crops

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.integers(0, 60, (n, 3, 16, 16)).astype(np.uint8)
    images[labels == 1] += 150
    cameras = np.array([f"cam-{i % 6}" for i in range(n)])
    splits = np.where(np.isin(cameras, ["cam-4", "cam-5"]), "val", "train")
    everything = Crops(images, labels, cameras, splits, ("car", "truck"))
    return everything.split("train"), everything.split("val")
